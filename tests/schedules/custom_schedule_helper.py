"""A user's own schedules, defined in an importable module (for test_custom_schedules.py)."""

from dataclasses import dataclass

from adaptlr.schedules import Schedule


@dataclass(frozen=True)
class StepHalving(Schedule):
    """Halve ``lr`` every ``every`` steps."""

    lr: float
    every: int

    def value(self, t: int) -> float:
        return self.lr * 0.5 ** (t // self.every)


@dataclass(frozen=True, slots=True)
class SlottedLinear(Schedule):
    """``lr`` falling linearly to 0 at ``total``; ``slots=True`` rebuilds the class."""

    lr: float
    total: int

    def value(self, t: int) -> float:
        return self.lr * max(0.0, 1.0 - t / self.total)
