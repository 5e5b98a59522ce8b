"""Drive any ``torch.optim.Optimizer`` with schedules: ``ScheduleLR`` and ``to_torch``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.optim.lr_scheduler import LRScheduler

from .base import Schedule

__all__ = ["ScheduleLR", "to_torch"]

# Schedules need no registration here for torch.load(..., weights_only=True): every Schedule
# subclass registers itself when defined (Schedule.__init_subclass__).


class ScheduleLR(LRScheduler):
    r"""A ``torch`` LR scheduler that sets each group's lr to ``schedule(last_epoch)``.

    Values are absolute, not multiplicative: after ``k`` calls of ``step()`` the lr of group
    ``i`` is ``schedules[i](k)``, whatever the group's lr was before. ``schedule`` is one
    :class:`Schedule` for every group or a sequence with one per group.

    Without ``schedule`` it follows the optimizer: an adaptlr optimizer given a schedule as
    ``lr`` applies it itself (``group["lr_schedule"]``) and keeps ``group["lr"]`` at the η of
    its next step, so ``ScheduleLR(optimizer)`` changes nothing and its ``get_last_lr()`` reports
    those values, for a framework that wants a scheduler object (HF ``Trainer(optimizers=(opt,
    ScheduleLR(opt)))``).

    The state dict holds the step count only (not the schedules, which are configuration,
    like ``LambdaLR``'s functions); :meth:`load_state_dict` also writes the resumed lr into
    the optimizer, so the order of loading optimizer and scheduler does not matter.

    Args:
        optimizer: the ``torch.optim.Optimizer`` (adaptlr's or torch's) whose groups' lr it sets.
        schedule: one :class:`Schedule` for every group, a sequence of one per param group, or
            None: follow the optimizer's own schedules and change nothing (default).
        last_epoch: the index of the last step taken, as torch's schedulers count it (default
            -1: none yet; the constructor then sets step 0's lr); an int >= -1.

    >>> import torch
    >>> from adaptlr.schedules import cosine
    >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    >>> sched = ScheduleLR(opt, cosine(0.1, total_steps=10))
    >>> for _ in range(5):
    ...     opt.step()
    ...     sched.step()
    >>> round(opt.param_groups[0]["lr"], 12)
    0.05
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        schedule: Schedule | Sequence[Schedule] | None = None,
        last_epoch: int = -1,
    ) -> None:
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise ValueError(
                f"ScheduleLR: optimizer must be a torch.optim.Optimizer, "
                f"got {type(optimizer).__name__}"
            )
        n = len(optimizer.param_groups)
        if schedule is None:
            # follow the optimizer's own schedules (adaptlr's group["lr_schedule"]), for a
            # framework that wants a scheduler object: it reports them and changes nothing
            schedules = None
        elif isinstance(schedule, Schedule):
            schedules = [schedule] * n
        elif isinstance(schedule, Sequence) and all(isinstance(s, Schedule) for s in schedule):
            schedules = list(schedule)
            if len(schedules) != n:
                raise ValueError(
                    f"ScheduleLR: schedule must be one Schedule or a list of {n} "
                    f"(one per param group), got a list of {len(schedules)}"
                )
        else:
            raise ValueError(
                f"ScheduleLR: schedule must be a Schedule or a list of Schedule, "
                f"got {type(schedule).__name__}"
            )
        self.schedules = schedules
        for group in optimizer.param_groups:
            # torch's base class wants it when resuming with last_epoch >= 0; unused here
            group.setdefault("initial_lr", group["lr"])
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:  # type: ignore[override]
        if self.schedules is None:
            return [group["lr"] for group in self.optimizer.param_groups]
        return [s(self.last_epoch) for s in self.schedules]

    def _get_closed_form_lr(self) -> list[float]:
        return self.get_lr()

    def state_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "schedules")}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = {k: v for k, v in state_dict.items() if k not in ("optimizer", "schedules")}
        self.__dict__.update(state)
        lrs = self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, lrs, strict=True):
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(lr)  # a tensor lr (capturable / fused optimizers) stays one
            else:
                group["lr"] = lr
        self._last_lr = list(lrs)


def to_torch(
    optimizer: torch.optim.Optimizer, schedule: Schedule | Sequence[Schedule]
) -> ScheduleLR:
    """A :class:`ScheduleLR` driving ``optimizer`` with ``schedule`` (call its ``step()``
    after each ``optimizer.step()``).

    Args:
        optimizer: the ``torch.optim.Optimizer`` whose groups' lr it sets.
        schedule: one :class:`Schedule` for every group, or a sequence of one per param group.

    >>> import torch
    >>> from adaptlr.schedules import constant
    >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    >>> _ = to_torch(opt, constant(0.01))
    >>> opt.param_groups[0]["lr"]
    0.01
    """
    return ScheduleLR(optimizer, schedule)
