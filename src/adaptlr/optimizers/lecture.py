"""Deprecated: :class:`RootMeanSquare` lives in :mod:`adaptlr.optimizers.root_mean_square`.

Kept for one release so that ``from adaptlr.optimizers.lecture import RootMeanSquare`` still
works; import it as ``adaptlr.RootMeanSquare``.
"""

import warnings

from .root_mean_square import RootMeanSquare

warnings.warn(
    "adaptlr.optimizers.lecture is renamed adaptlr.optimizers.root_mean_square (or use "
    "adaptlr.RootMeanSquare); the old module goes in the next release",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = ["RootMeanSquare"]
