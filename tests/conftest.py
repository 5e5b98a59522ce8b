"""Settings the whole test session needs before any test module is imported.

Triton reads ``TRITON_INTERPRET`` when it is imported, and test modules collected early import
it indirectly (transformers, lightning and timm in ``tests/integrations`` pull in torch's
compiler stack): the Triton interpreter tests (``tests/kernels/test_triton_interpret.py``,
``test_low_precision.py``, ``test_stats.py``) need it set first.
"""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")
