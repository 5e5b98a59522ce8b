"""Training diagnostics: why is my training stuck, with evidence.

`Monitor` attaches to any `torch.optim.Optimizer` through its step hooks and records, per step
(or every k steps), the loss, gradient norms, update norms, effective learning rates, the cosine
between consecutive gradients and non-finite counts. `Monitor.diagnose` names the case
(progressing, crawling, critical point, oscillating, diverging, bursting) with its evidence and a
suggestion; `Monitor.curvature` tells a saddle point from a minimum. `Monitor.state_dict` /
`Monitor.load_state_dict` continue a run across a resume; `split_runs` reads a log's runs.
"""

from .curvature import Curvature, hessian_extremes
from .dashboard import plot_dashboard, write_report
from .demo import demo_section
from .diagnosis import KINDS, Diagnosis, diagnose_records
from .log import Run, load_log, split_runs
from .monitor import Monitor

__all__ = [
    "KINDS",
    "Curvature",
    "Diagnosis",
    "Monitor",
    "Run",
    "demo_section",
    "diagnose_records",
    "hessian_extremes",
    "load_log",
    "plot_dashboard",
    "split_runs",
    "write_report",
]
