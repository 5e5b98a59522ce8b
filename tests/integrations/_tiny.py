"""A tiny deterministic model and data set, and an observer of the η each step really applies.

Shared by the integration tests (HF Trainer, Lightning, timm). Everything is float64 so that η
can be recovered from a parameter's change to ~1e-13 and compared to 1e-9.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import nn
from torch.nn import functional as F

D_IN, HIDDEN, D_OUT = 4, 8, 2
DTYPE = torch.float64


#: the float-lr runs, adaptlr against torch.optim: (optimizer kwargs, EtaProbe kwargs)
COUNTERPARTS = {
    "AdamW": ({"weight_decay": 0.1}, {"kind": "adamw", "weight_decay": 0.1}),
    "SGD": (
        {"momentum": 0.9, "weight_decay": 0.1},
        {"kind": "sgd", "momentum": 0.9, "weight_decay": 0.1},
    ),
}


def counterpart(lib, name: str, lr: float):
    """``params -> lib.<name>(params, lr, ...)``, ``lib`` being adaptlr or torch.optim."""
    kwargs = COUNTERPARTS[name][0]
    return lambda params: getattr(lib, name)(params, lr=lr, **kwargs)


def data(n: int = 48, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A synthetic regression set: y = tanh(x W) + noise."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, D_IN, generator=g, dtype=DTYPE)
    w = torch.randn(D_IN, D_OUT, generator=g, dtype=DTYPE)
    y = torch.tanh(x @ w) + 0.1 * torch.randn(n, D_OUT, generator=g, dtype=DTYPE)
    return x, y


class PairDataset(torch.utils.data.Dataset):
    """(x, labels) rows as dicts, the shape HF's default collator stacks."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[i], "labels": self.y[i]}


class MLP(nn.Module):
    """Linear-tanh-linear, no dropout; the same weights for the same seed."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(D_IN, HIDDEN, dtype=DTYPE)
        self.fc2 = nn.Linear(HIDDEN, D_OUT, dtype=DTYPE)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(0.5 * torch.randn(p.shape, generator=g, dtype=DTYPE))

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None):
        out = self.fc2(torch.tanh(self.fc1(x)))
        if labels is None:
            return out
        return {"loss": F.mse_loss(out, labels), "logits": out}


class EtaProbe:
    """Recovers the η of every step from one parameter's change, without asking the optimizer.

    The update of ``param`` is Δ = −η·d, with d SGD's momentum buffer (the gradient without
    momentum) or, for ``kind="adamw"``, λθ + m̂/(√v̂ + ε), recomputed here in float64 from the
    gradients seen.
    η is the least-squares fit of Δ = −η·d, and the fit must be exact (every element agrees),
    so a step of another form fails here. The gradient is read after the step: Lightning runs
    forward and backward inside ``step(closure)``, after the pre-hook.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        param: torch.Tensor,
        kind: str = "sgd",
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
    ) -> None:
        assert kind in ("sgd", "adamw")
        self.param, self.kind = param, kind
        self.betas, self.eps, self.weight_decay = betas, eps, weight_decay
        self.momentum = momentum
        self.group = next(g for g in optimizer.param_groups if any(p is param for p in g["params"]))
        self.etas: list[float] = []
        self.lr_before: list[object] = []  # group["lr"] as the step found it
        self._m = torch.zeros_like(param, dtype=DTYPE)
        self._v = torch.zeros_like(param, dtype=DTYPE)
        self._t = 0
        self._before: torch.Tensor | None = None
        optimizer.register_step_pre_hook(self._pre)
        optimizer.register_step_post_hook(self._post)

    def _pre(self, optimizer, args, kwargs) -> None:
        self._before = self.param.detach().to(DTYPE, copy=True)
        self.lr_before.append(self.group["lr"])

    def _post(self, optimizer, args, kwargs) -> None:
        before, grad = self._before, self.param.grad.detach().to(DTYPE)
        delta = self.param.detach().to(DTYPE) - before
        if self.kind == "sgd":
            # torch.optim.SGD (dampening 0, no Nesterov): buf = μ·buf + g + λθ, from buf = g + λθ
            d = grad + self.weight_decay * before
            if self.momentum:
                d = d if self._t == 0 else self._m.mul_(self.momentum).add_(d)
                self._m, self._t = d, self._t + 1
        else:
            # torch.optim.AdamW's formula, recomputed from the gradients this probe has seen
            b1, b2 = self.betas
            self._t += 1
            self._m.mul_(b1).add_(grad, alpha=1 - b1)
            self._v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
            denom = self._v.sqrt() / math.sqrt(1 - b2**self._t) + self.eps
            d = self.weight_decay * before + self._m / (1 - b1**self._t) / denom
        eta = -float((delta * d).sum() / (d * d).sum())
        residual = float((delta + eta * d).abs().max())
        assert residual <= 1e-9 * float(delta.abs().max()) + 1e-300, (
            f"step {len(self.etas)}: the update is not -eta * d (residual {residual:.3g})"
        )
        self.etas.append(eta)


def assert_etas(actual: list[float], expected: list[float], what: str = "eta") -> None:
    assert len(actual) == len(expected), (what, len(actual), len(expected))
    for k, (a, e) in enumerate(zip(actual, expected)):
        assert math.isclose(a, e, rel_tol=1e-9, abs_tol=1e-15), (
            f"{what} at step {k}: {a!r} != {e!r}"
        )


def params(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def assert_params_close(a: nn.Module, b: nn.Module, rtol: float = 1e-6) -> None:
    """Every parameter equal to ``rtol`` relative to its own largest element."""
    pa, pb = params(a), params(b)
    assert pa.keys() == pb.keys()
    for name in pa:
        scale = float(pb[name].abs().max())
        torch.testing.assert_close(pa[name], pb[name], rtol=rtol, atol=rtol * scale, msg=name)


def assert_params_equal(a: nn.Module, b: nn.Module) -> None:
    pa, pb = params(a), params(b)
    assert pa.keys() == pb.keys()
    for name in pa:
        diff = float((pa[name] - pb[name]).abs().max())
        assert torch.equal(pa[name], pb[name]), f"{name} differs by up to {diff:.3g}"


def assert_trained(model: nn.Module, seed: int = 0) -> None:
    """Training moved every parameter (so an equality above is not two untouched models)."""
    init = params(MLP(seed))
    for name, p in params(model).items():
        assert not torch.equal(p, init[name]), f"{name} did not change"


def adaptlr_warnings(records: list[warnings.WarningMessage]) -> list[warnings.WarningMessage]:
    """The warnings adaptlr raised (its own categories, or raised from its source files)."""
    return [
        w
        for w in records
        if w.category.__module__.split(".")[0] == "adaptlr"
        or "/adaptlr/" in str(w.filename).replace("\\", "/")
    ]


def schedule_override_warning() -> type[Warning]:
    import adaptlr

    cls = getattr(adaptlr, "ScheduleOverrideWarning", None)
    assert cls is not None, "adaptlr.ScheduleOverrideWarning does not exist"
    assert issubclass(cls, UserWarning)
    return cls


def assert_saved_groups(groups: list[dict], schedule: object | None) -> None:
    """A state dict's param groups, as ``torch.load(weights_only=True)`` gave them back."""
    assert groups
    for g in groups:
        assert type(g["lr"]) is float, g["lr"]
        assert g.get("lr_schedule") == schedule, (g.get("lr_schedule"), schedule)
        if schedule is not None:
            assert math.isclose(g["lr"], schedule(g["applied_steps"]), rel_tol=1e-15)


def assert_float_values(values: list[object], what: str) -> None:
    assert values, f"no {what} logged"
    for v in values:
        assert type(v) is float and math.isfinite(v), f"{what}: {v!r} is not a finite float"
