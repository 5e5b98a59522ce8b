r"""Polynomial-decay iterate averaging (Shamir & Zhang, 2013), which DoG relies on."""

from __future__ import annotations

from copy import deepcopy
from typing import Any

import torch
from torch import nn

from .. import _checks


class PolynomialDecayAverager:
    r"""A running average of a model's weights that forgets early iterates polynomially, as
    ``dog-optimizer`` 1.0.3's ``PolynomialDecayAverager`` (the same API and results).

    .. math::
        \bar x_t = \Bigl(1 - \frac{1+\gamma}{t+\gamma}\Bigr)\bar x_{t-1}
        + \frac{1+\gamma}{t+\gamma}\, x_t \qquad (t = 1, 2, \dots;\ \bar x_1 = x_1)

    over every entry of the model's ``state_dict()`` (BatchNorm's running statistics too);
    entries that are not floating point (BatchNorm's ``num_batches_tracked``) are copied.
    ``gamma = 0`` is the uniform average; DoG's authors use 8. Call :meth:`step` after each
    ``optimizer.step()``; evaluate :attr:`averaged_model`, a copy of the model made at
    construction (moved, at the first :meth:`step`, to the device of the model's first
    parameter, or to ``model.device`` where the model has one). The package copies only
    ``int64`` entries and averages other integer ones; here every non-floating entry is copied.

    Args:
        model: the model being trained (a ``torch.nn.Module``), whose ``state_dict()`` entries are
            averaged.
        gamma: γ, how fast early iterates are forgotten (default 8.0; 0: the uniform average); a
            finite number >= 0.

    Example:
        >>> import torch, adaptlr
        >>> model = torch.nn.Linear(1, 1, bias=False)
        >>> avg = adaptlr.PolynomialDecayAverager(model, gamma=0.0)   # the uniform average
        >>> for w in (1.0, 2.0, 6.0):
        ...     _ = model.weight.data.fill_(w)
        ...     avg.step()
        >>> avg.averaged_model.weight.item()
        3.0
    """

    def __init__(self, model: nn.Module, gamma: float = 8.0) -> None:
        if not isinstance(model, nn.Module):
            _checks.fail_type(type(self).__name__, "model", "a torch.nn.Module", model)
        self.gamma = _checks.NONNEGATIVE.check(type(self).__name__, "gamma", gamma)
        self.t = 1
        self.model = model
        self.av_model = deepcopy(model)
        self._matched_devices = False

    @torch.no_grad()
    def step(self) -> None:
        """Fold the model's current weights into the average."""
        self._match_devices()
        w = (self.gamma + 1) / (self.gamma + self.t)
        current = self.model.state_dict()
        for k, avg in self.av_model.state_dict().items():
            if not (avg.is_floating_point() or avg.is_complex()):
                avg.copy_(current[k])  # a count, not a weight
                continue
            # the package's order of operations, so that the average is the same to the bit
            avg.mul_(1 - w).add_(current[k], alpha=w)
        self.t += 1

    def _match_devices(self) -> None:
        """Move the averaged copy to the model's device, once (the model may be moved after
        the averager is made)."""
        if self._matched_devices:
            return
        device = getattr(self.model, "device", None)
        if device is None:
            first = next(self.model.parameters(), None)
            device = None if first is None else first.device
        if device is not None:
            self.av_model = self.av_model.to(device)
        self._matched_devices = True

    def reset(self) -> None:
        """Restart the average: the next :meth:`step` replaces it by the model's weights."""
        self.t = 1

    @property
    def averaged_model(self) -> nn.Module:
        """The model with the averaged weights (evaluate this one)."""
        return self.av_model

    @property
    def base_model(self) -> nn.Module:
        """The model being trained."""
        return self.model

    def state_dict(self) -> dict[str, Any]:
        """``{"t", "av_model"}``, as the package's (the averaged model's own weights, to load
        as a model, are ``averaged_model.state_dict()``)."""
        return {"t": self.t, "av_model": self.av_model.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load what :meth:`state_dict` returned (this class's or the package's).

        Args:
            state_dict: ``{"t": int >= 1, "av_model": the averaged model's state dict}``.
        """
        t = _checks.Integer(1).check(type(self).__name__, "state_dict['t']", state_dict["t"])
        self.av_model.load_state_dict(state_dict["av_model"])
        self.t = t
