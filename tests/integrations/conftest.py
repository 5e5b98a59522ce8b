"""Make torchvision importable next to a CPU-only torch, for lightning and timm.

PyPI's torchvision wheels for Linux are CUDA builds: next to torch's CPU build their C extension
cannot load (it needs libc10_cuda.so), and ``import torchvision`` then fails in
``_meta_registrations`` (``RuntimeError: operator torchvision::nms does not exist``). timm imports
torchvision unconditionally and lightning imports it through torchmetrics, so without this the
integration tests could not even be collected. These tests use none of torchvision's C ops, only
pure-Python parts (``FrozenBatchNorm2d``, transforms), which import once the meta registrations of
the missing ops are skipped.
"""

import importlib.util
import sys
import types


def _torchvision_without_ops() -> None:
    if importlib.util.find_spec("torchvision") is None or "torchvision" in sys.modules:
        return
    try:
        import torchvision  # noqa: F401
    except RuntimeError as err:
        if "torchvision::" not in str(err):
            raise
        # drop the half-imported package, then import it again without the meta registrations
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
        stub = types.ModuleType("torchvision._meta_registrations")
        sys.modules["torchvision._meta_registrations"] = stub
        import torchvision  # noqa: F401, F811


_torchvision_without_ops()
