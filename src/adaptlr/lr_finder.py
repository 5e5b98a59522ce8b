r"""The LR range test (Smith, 2017; fastai's ``lr_find``), for any optimizer.

:func:`lr_find` trains for at most ``num_steps`` steps while the learning rate grows
exponentially, records the loss of every step, and suggests learning rates from the smoothed
curve; the model and the optimizer are then put back exactly as they were.

The sweep. Before step :math:`i` (:math:`i = 0, \dots, N-1`) every param group's ``lr`` is set
from

.. math:: \eta_i = \eta_{start} \, (\eta_{end} / \eta_{start})^{i / (N - 1)},

so the first step uses ``start_lr`` and the last ``end_lr``. Groups with different lrs keep their
ratios: the group with the largest initial lr gets :math:`\eta_i`, every other group
:math:`\eta_i \cdot lr_g / \max_g lr_g` (a group at lr 0 stays at 0; if every group is at 0,
all get :math:`\eta_i`). The recorded lrs and the suggestions are in the largest group's unit.
Step :math:`i` records the loss of its batch computed before its update (as fastai and
torch-lr-finder pair them), then steps.

The smoothed loss is an exponential moving average with bias correction (fastai's
``AvgSmoothLoss``), :math:`a_i = \beta a_{i-1} + (1 - \beta) \ell_i`, :math:`a_{-1} = 0`,
:math:`s_i = a_i / (1 - \beta^{i+1})`, with :math:`\beta` = ``beta`` = 0.98.

Divergence. The sweep stops after recording step :math:`i` when :math:`\ell_i` is not finite
or :math:`s_i > k \min_{j \le i} s_j`, with :math:`k` = ``divergence_factor`` = 4 (fastai's;
the test assumes a positive loss, such as a cross-entropy or a squared error).

Suggestions, computed as fastai does on the smoothed curve without its first ``num_steps // 10``
points and its last 5 (the noisy start and the blow-up; all finite points if that leaves
fewer than 3), and never past the first non-finite value. With :math:`(\eta_j, s_j)` that
window:

- ``"steepest"``: :math:`\eta_{j^*}`, :math:`j^* = \arg\min_j (s_{j+1} - s_j) /
  (\ln \eta_{j+1} - \ln \eta_j)`, the left end of the steepest descending segment against
  :math:`\log \eta` (fastai's ``steep``).
- ``"minimum/10"``: :math:`\eta_{\arg\min_j s_j} / 10` (fastai's ``minimum``, its old
  ``lr_min``).
- ``"valley"`` (fastai's default since 2.5): let :math:`L_j` be the length of the longest
  strictly decreasing subsequence of :math:`s` ending at :math:`j`, :math:`e` the first
  index with the largest :math:`L_e`, :math:`b = e - L_e` and :math:`d = (e - b) / 3`; the
  suggestion is :math:`\eta_{b + \lfloor d \rfloor + \lfloor d/2 \rfloor}`, about half-way
  through the longest valley. (fastai can index :math:`b = -1`, wrapping to the last point, on
  a curve that only falls; here the index is at least 0.)
- ``"half-drop"``: the first :math:`\eta_j` where the smoothed loss has come down half of the
  way from the window's first value to its minimum, :math:`s_j \le (s_{first} + \min s) / 2`.

``result.suggestion`` is :data:`RECOMMENDED`, ``"half-drop"``: trained with warm-up and
cosine decay, it reached the target on both benchmark tasks (``adaptlr.lab.tasks``) as fast as
the best lr of a 7-point grid, with the default sweep (1e-7 to 10 in 100 steps, beta 0.98);
the smoothing lags by about 1/(1 - beta) steps, so on a sweep of another length it reads
another point of the curve (``docs/lr_find.md`` has the tables and their commands).

>>> import torch
>>> from adaptlr.lr_finder import lr_find
>>> torch.manual_seed(0)  # doctest: +ELLIPSIS
<torch._C.Generator object at ...>
>>> model = torch.nn.Linear(4, 1)
>>> batch = (torch.randn(64, 4), torch.randn(64, 1))
>>> res = lr_find(model, torch.nn.functional.mse_loss, [batch],
...               optimizer=lambda p: torch.optim.SGD(p, lr=0.1))
>>> list(res.suggestions)
['steepest', 'minimum/10', 'valley', 'half-drop']
>>> res.suggestion == res.suggestions[RECOMMENDED]
True
"""

from __future__ import annotations

import copy
import math
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ._checks import Integer, Number, fail_type, fail_value
from ._group_keys import SCHEDULE_KEY

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["LRFinderResult", "lr_find", "suggest", "RECOMMENDED", "SUGGESTIONS"]

BETA = 0.98
DIVERGENCE_FACTOR = 4.0
SKIP_END = 5  # points dropped before the end of the curve for the suggestions, as fastai

Batch = tuple[Any, Any]
OptimizerArg = (
    torch.optim.Optimizer | Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer] | None
)


# -- the suggestions: pure functions of a (lrs, smoothed losses) window --------------------------
def steepest(lrs: Sequence[float], losses: Sequence[float]) -> float:
    slopes = [
        (losses[j + 1] - losses[j]) / (math.log(lrs[j + 1]) - math.log(lrs[j]))
        for j in range(len(lrs) - 1)
    ]
    return lrs[min(range(len(slopes)), key=slopes.__getitem__)]


def _argmin(losses: Sequence[float]) -> int:
    return min(range(len(losses)), key=losses.__getitem__)


def minimum_over(factor: float) -> Callable[[Sequence[float], Sequence[float]], float]:
    def rule(lrs: Sequence[float], losses: Sequence[float]) -> float:
        return lrs[_argmin(losses)] / factor

    return rule


def valley(lrs: Sequence[float], losses: Sequence[float]) -> float:
    n = len(losses)
    longest = [1] * n  # longest strictly decreasing subsequence ending at j
    for j in range(1, n):
        longest[j] = 1 + max((longest[i] for i in range(j) if losses[j] < losses[i]), default=0)
    end = _argmin([-v for v in longest])  # the first index of the longest
    start = end - longest[end]
    third = (end - start) / 3
    return lrs[max(0, start + int(third) + int(third / 2))]


def half_drop(lrs: Sequence[float], losses: Sequence[float]) -> float:
    half = (losses[0] + min(losses)) / 2
    return lrs[next(j for j, v in enumerate(losses) if v <= half)]


#: every suggestion, by name, in the order they are reported
SUGGESTIONS: dict[str, Callable[[Sequence[float], Sequence[float]], float]] = {
    "steepest": steepest,
    "minimum/10": minimum_over(10.0),
    "valley": valley,
    "half-drop": half_drop,
}
#: the suggestion `LRFinderResult.suggestion` holds (docs/lr_find.md: why this one)
RECOMMENDED = "half-drop"


def window(smoothed: Sequence[float], num_steps: int) -> tuple[int, int]:
    """The index range ``[lo, hi)`` of the curve the suggestions read (see the module doc)."""
    finite = next((i for i, s in enumerate(smoothed) if not math.isfinite(s)), len(smoothed))
    lo, hi = num_steps // 10, min(finite, len(smoothed) - SKIP_END)
    if hi - lo < 3:
        lo, hi = 0, finite
    return lo, hi


def suggest(lrs: Sequence[float], smoothed: Sequence[float], num_steps: int) -> dict[str, float]:
    """Every suggestion of :data:`SUGGESTIONS` on the window of a recorded curve; empty when
    fewer than 2 finite points were recorded.

    Args:
        lrs: the lr of each recorded step, increasing.
        smoothed: the smoothed loss of each recorded step (as many as ``lrs``; a non-finite one
            ends the curve).
        num_steps: the steps the sweep was asked for (the first tenth of them is left out of
            the window); an int >= 0.
    """
    lo, hi = window(smoothed, num_steps)
    if hi - lo < 2:
        return {}
    xs, ys = list(lrs[lo:hi]), list(smoothed[lo:hi])
    return {name: float(rule(xs, ys)) for name, rule in SUGGESTIONS.items()}


# -- the result -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class LRFinderResult:
    """What :func:`lr_find` measured: the lr and loss of every recorded step, the smoothed
    loss, the suggestions by name and the recommended one (``nan`` when the sweep stopped
    before 2 finite points), and whether divergence ended it before ``num_steps``.

    Attributes:
        lrs: the lr of each recorded step.
        losses: the loss of each recorded step.
        smoothed: the smoothed loss of each recorded step.
        suggestions: the lr each rule of :data:`SUGGESTIONS` suggests, by the rule's name.
        suggestion: the recommended lr (the :data:`RECOMMENDED` rule's), ``nan`` when there is
            none.
        stopped_early: whether divergence ended the sweep before ``num_steps``.
        num_steps: the steps the sweep was asked for (default 0).
    """

    lrs: tuple[float, ...]
    losses: tuple[float, ...]
    smoothed: tuple[float, ...]
    suggestions: dict[str, float]
    suggestion: float
    stopped_early: bool
    num_steps: int = field(default=0, repr=False)

    def summary(self) -> list[str]:
        """The sweep and every suggestion, one line each, the recommended one marked."""
        head = f"LR range test: {len(self.lrs)} steps"
        if self.lrs:
            head += f", lr {self.lrs[0]:.3g} to {self.lrs[-1]:.3g}"
        head += " (stopped at divergence)" if self.stopped_early else ""
        width = max((len(n) for n in self.suggestions), default=0)
        return [head] + [
            f"  {name:<{width}}  {lr:.3g}" + ("  (recommended)" if name == RECOMMENDED else "")
            for name, lr in self.suggestions.items()
        ]

    def plot(self, path_or_ax: str | os.PathLike[str] | Axes) -> Path | Axes:
        """Draw the raw and smoothed loss against the lr (log axis), each suggestion marked.

        Given a matplotlib ``Axes``, draws on it and returns it; given a path, writes a figure
        there (any format matplotlib knows by its suffix) and returns the path.

        Args:
            path_or_ax: a matplotlib ``Axes`` to draw on, or the path (str or path-like) of the
                figure to write, whose suffix names the format (``.png``, ``.svg``, ...).
        """
        from matplotlib.axes import Axes

        if isinstance(path_or_ax, Axes):
            self._draw(path_or_ax)
            return path_or_ax
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(8.4, 4.2), layout="constrained")
        FigureCanvasAgg(fig)
        self._draw(fig.add_subplot())
        path = Path(path_or_ax)
        fig.savefig(path, dpi=100)
        return path

    def _draw(self, ax: Axes) -> None:
        pts = [(x, r, s) for x, r, s in zip(self.lrs, self.losses, self.smoothed)]
        finite = [(x, r, s) for x, r, s in pts if math.isfinite(r) and math.isfinite(s)]
        if finite:
            xs, raw, sm = zip(*finite)
            ax.plot(xs, raw, color="0.75", lw=0.8, label="loss")
            ax.plot(xs, sm, color="C0", lw=1.6, label="smoothed loss")
            top = max(sm[: max(1, len(sm) // 10)])  # the curve's start, not its blow-up
            ax.set_ylim(min(sm) - 0.05 * abs(min(sm)), max(top, min(sm)) * 1.15 + 1e-12)
        ax.set_xscale("log")
        for k, (name, lr) in enumerate(self.suggestions.items()):
            rec = name == RECOMMENDED
            ax.axvline(
                lr, color=f"C{k + 1}", lw=2.2 if rec else 1.0, ls="-" if rec else "--",
                label=f"{name}: {lr:.2e}" + (" (recommended)" if rec else ""),
            )  # fmt: skip
        ax.set_xlabel("learning rate")
        ax.set_ylabel("training loss")
        ax.set_title("LR range test" + (" (stopped at divergence)" if self.stopped_early else ""))
        # (to the right of the axes: inside, it covered the flat start of the curve)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)


# -- saving and restoring ------------------------------------------------------------------------
class _Snapshot:
    """The model's tensors (parameters and buffers, by the object each module holds), their
    values and gradients, every module's training flag, and the optimizer's state dict."""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None) -> None:
        self.slots: list[tuple[dict[str, Any], str, Any]] = []
        self.values: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]] = {}
        for m in model.modules():
            for table in (m._parameters, m._buffers):
                for name, t in table.items():
                    self.slots.append((table, name, t))
                    self._keep(t)
        if optimizer is not None:
            for g in optimizer.param_groups:
                for p in g["params"]:
                    self._keep(p)
        self.training = [(m, m.training) for m in model.modules()]
        # state_dict() holds references to the live state: deepcopy keeps the values
        self.optimizer = optimizer
        self.opt_state = copy.deepcopy(optimizer.state_dict()) if optimizer is not None else None

    def _keep(self, t: torch.Tensor | None) -> None:
        if t is not None and id(t) not in self.values:
            grad = None if t.grad is None else t.grad.detach().clone()
            self.values[id(t)] = (t, t.detach().clone(), grad)

    def restore(self) -> None:
        for table, name, t in self.slots:
            table[name] = t  # a module that replaced a buffer gets the original back
        with torch.no_grad():
            for t, value, grad in self.values.values():
                t.copy_(value)
                t.grad = grad
        for m, mode in self.training:
            m.training = mode
        if self.optimizer is not None:
            self.optimizer.load_state_dict(self.opt_state)


# -- the sweep ------------------------------------------------------------------------------------
def _batch_source(batches: Iterable[Batch] | Callable[[], Batch]) -> Callable[[], Batch]:
    if callable(batches) and not isinstance(batches, Iterable):
        return batches
    if not isinstance(batches, Iterable):
        fail_type("lr_find", "batches", "an iterable of (input, target) or a callable", batches)
    it: Iterator[Batch] = iter(batches)
    taken = 0

    def next_batch() -> Batch:
        nonlocal it, taken
        try:
            b = next(it)
        except StopIteration:
            # cycle: iterate again from the start (a DataLoader reshuffles)
            it = iter(batches)
            b = next(it, None)
            if b is None:
                raise ValueError(
                    f"lr_find: batches ran out after {taken} batches and iterating it again "
                    "gave none; pass a list, a DataLoader or a callable that returns a batch"
                ) from None
        taken += 1
        return b

    return next_batch


def _unpack(batch: Any) -> Batch:
    if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
        fail_type("lr_find", "batches", "batches that are (input, target) pairs", batch)
    return batch[0], batch[1]


def lr_find(
    model: torch.nn.Module,
    loss_fn: Callable[[Any, Any], torch.Tensor],
    batches: Iterable[Batch] | Callable[[], Batch],
    optimizer: OptimizerArg = None,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_steps: int = 100,
    *,
    beta: float = BETA,
    divergence_factor: float = DIVERGENCE_FACTOR,
) -> LRFinderResult:
    """Run the LR range test on `model` and return its curve and suggestions.

    Args:
        model: the network; set to train mode for the sweep. Its parameters, buffers
            (BatchNorm running statistics included), gradients and modes are restored
            bit for bit afterwards, also when the sweep raises.
        loss_fn: ``loss_fn(model(input), target)``, a scalar tensor.
        batches: an iterable of ``(input, target)`` (a list, a DataLoader), iterated again from
            its start whenever it runs out, or a callable returning the next batch; used as
            given (on the model's device).
        optimizer: an optimizer over the model's parameters (torch.optim's or adaptlr's),
            whose state and param groups are restored exactly afterwards (through its
            ``load_state_dict``); or a callable ``params -> optimizer`` making a fresh one;
            ``None``: ``adaptlr.AdamW`` at its defaults. A group given a schedule as lr
            (adaptlr's ``lr_schedule``) follows the sweep meanwhile.
        start_lr: the first lr, a finite number > 0.
        end_lr: the last lr, a finite number > `start_lr`.
        num_steps: the most steps, an integer >= 2.
        beta: the smoothing of the loss, in [0, 1).
        divergence_factor: stop when the smoothed loss exceeds this times its minimum, > 1.

    While it runs it holds a copy of the model's tensors, their gradients and the optimizer's
    state. The definitions of the sweep, the smoothing, the stop and every suggestion are in
    the module's docstring (:mod:`adaptlr.lr_finder`).
    """
    owner = "lr_find"
    if not isinstance(model, torch.nn.Module):
        fail_type(owner, "model", "a torch.nn.Module", model)
    if not callable(loss_fn):
        fail_type(owner, "loss_fn", "a callable (output, target) -> scalar tensor", loss_fn)
    start_lr = Number(0.0, lo_open=True).check(owner, "start_lr", start_lr)
    end_lr = Number(0.0, lo_open=True).check(owner, "end_lr", end_lr)
    if end_lr <= start_lr:
        fail_value(owner, "end_lr", f"a finite number > start_lr ({start_lr!r})", end_lr)
    num_steps = Integer(2).check(owner, "num_steps", num_steps)
    beta = Number(0.0, 1.0, hi_open=True).check(owner, "beta", beta)
    divergence_factor = Number(1.0, lo_open=True).check(
        owner, "divergence_factor", divergence_factor
    )
    given = isinstance(optimizer, torch.optim.Optimizer)
    if not (given or optimizer is None or callable(optimizer)):
        allowed = "a torch.optim.Optimizer, a callable params -> optimizer, or None"
        fail_type(owner, "optimizer", allowed, optimizer)
    next_batch = _batch_source(batches)

    snapshot = _Snapshot(model, optimizer if given else None)
    try:
        if given:
            opt = optimizer
        elif optimizer is None:
            from .optimizers import AdamW

            opt = AdamW(model.parameters(), lr=start_lr)
        else:
            opt = optimizer(model.parameters())
            if not isinstance(opt, torch.optim.Optimizer):
                fail_type(owner, "optimizer", "a callable returning a torch.optim.Optimizer", opt)
        return _sweep(
            model, loss_fn, next_batch, opt, start_lr, end_lr, num_steps, beta, divergence_factor
        )
    finally:
        snapshot.restore()


def _sweep(
    model: torch.nn.Module,
    loss_fn: Callable[[Any, Any], torch.Tensor],
    next_batch: Callable[[], Batch],
    opt: torch.optim.Optimizer,
    start_lr: float,
    end_lr: float,
    num_steps: int,
    beta: float,
    k: float,
) -> LRFinderResult:
    groups = opt.param_groups
    for g in groups:
        if g.get(SCHEDULE_KEY) is not None:
            g[SCHEDULE_KEY] = None  # hand lr to the sweep; the snapshot puts the schedule back
    initial = [float(g["lr"]) for g in groups]
    top = max(initial)
    ratios = [lr / top for lr in initial] if top > 0 else [1.0] * len(groups)
    model.train()
    lrs: list[float] = []
    losses: list[float] = []
    smoothed: list[float] = []
    avg, best, stopped = 0.0, math.inf, False
    for i in range(num_steps):
        lr = start_lr * (end_lr / start_lr) ** (i / (num_steps - 1))
        for g, r in zip(groups, ratios):
            g["lr"] = lr * r
        x, y = _unpack(next_batch())
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        if not (isinstance(loss, torch.Tensor) and loss.numel() == 1):
            fail_type("lr_find", "loss_fn", "a callable returning a scalar tensor", loss)
        value = float(loss.detach())
        avg = beta * avg + (1.0 - beta) * value
        s = avg / (1.0 - beta ** (i + 1))
        lrs.append(lr)
        losses.append(value)
        smoothed.append(s)
        best = min(best, s)
        if not math.isfinite(value) or s > k * best:
            stopped = i < num_steps - 1
            break
        if i < num_steps - 1:  # the last loss is recorded; its update would go unseen
            loss.backward()
            opt.step()
    suggestions = suggest(lrs, smoothed, num_steps)
    if not suggestions:
        warnings.warn(
            f"lr_find: the sweep diverged after {len(lrs)} step(s), too few for a suggestion; "
            f"try a smaller start_lr than {start_lr:g}",
            RuntimeWarning,
            stacklevel=3,
        )
    return LRFinderResult(
        lrs=tuple(lrs),
        losses=tuple(losses),
        smoothed=tuple(smoothed),
        suggestions=suggestions,
        suggestion=suggestions.get(RECOMMENDED, math.nan),
        stopped_early=stopped,
        num_steps=num_steps,
    )
