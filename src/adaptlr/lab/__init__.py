"""The lab: the lecture's error-surface experiments, and any optimizer on any surface.

The lab runs adaptlr's real optimizers (it has no optimizer math of its own) on 2-D surfaces
and draws what they did::

    from adaptlr import lab
    tr = lab.run(lab.ROSENBROCK, "adam:lr=0.05", steps=500)
    lab.plots.save(lab.plots.contour(lab.ROSENBROCK, [tr]), "adam.png")

``lab.SCENARIOS`` holds the lecture's six reproductions and the course's three optimizers
(AdaBound, Lookahead, SWATS); ``adaptlr demo`` runs them all.
"""

# _requires first: without the lab extra it names what to install instead of failing deep inside
from . import _requires  # noqa: F401, I001
from . import plots
from .report import write_demo
from .runs import Trajectory, run, run_many
from .scenarios import SCENARIOS, Scenario, bursts
from .specs import OPTIMIZERS, OptimizerSpec, parse_optimizer, parse_schedule
from .surfaces import (
    BEALE,
    ELONGATED,
    HIMMELBLAU,
    RASTRIGIN,
    ROSENBROCK,
    SADDLE,
    SURFACES,
    Surface,
    elongated,
    get_surface,
)

__all__ = [
    "BEALE",
    "ELONGATED",
    "HIMMELBLAU",
    "OPTIMIZERS",
    "RASTRIGIN",
    "ROSENBROCK",
    "SADDLE",
    "SCENARIOS",
    "SURFACES",
    "OptimizerSpec",
    "Scenario",
    "Surface",
    "Trajectory",
    "bursts",
    "elongated",
    "get_surface",
    "parse_optimizer",
    "parse_schedule",
    "plots",
    "run",
    "run_many",
    "write_demo",
]
