"""``python -m adaptlr``: the same as the ``adaptlr`` console script."""

import sys

from .cli import main

sys.exit(main())
