"""Settings the whole test session needs before any test module is imported.

Triton reads ``TRITON_INTERPRET`` when it is imported, and test modules collected early import
it indirectly (transformers, lightning and timm in ``tests/integrations`` pull in torch's
compiler stack): the Triton interpreter tests (``tests/kernels/test_triton_interpret.py``,
``test_low_precision.py``, ``test_stats.py``) need it set first.
"""

import os
from collections.abc import Iterator

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402  (after TRITON_INTERPRET: torch may import triton)


def pytest_collection_modifyitems(config, items):
    """Run the longest tests first, then those marked slow (their file order otherwise).

    The suite runs on two workers (``pytest -n 2``), which take tests in collection order: a
    test of minutes collected last (tests/test_long_run.py) would run alone at the end, one
    core idle. Started first, the short tests fill the other core around it.
    """
    items.sort(
        key=lambda item: (
            not any(item.nodeid.startswith(f) for f in LONGEST),
            item.get_closest_marker("slow") is None,
        )
    )


#: the files whose tests take minutes each: started before everything else
LONGEST = (
    "tests/test_long_run.py",
    "tests/kernels/test_numba_cache.py",
    "tests/lab/test_demo_report.py",
)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """torch on one thread for the test: the lab's models are small, and a second thread only
    waits (a busy machine makes it wait long; the charlm test once ran 18x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
