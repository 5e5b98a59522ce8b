"""`Monitor`: measures every k-th optimizer step through torch's step hooks.

Usage, one added line per step::

    monitor = Monitor(optimizer, every=1, log="run.jsonl")
    for x, y in data:
        loss = loss_fn(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        monitor.record(loss)        # before or after step(); the first call decides which
    print(monitor.diagnose())

Across a checkpoint, save ``monitor.state_dict()`` beside the optimizer's and call
``monitor.load_state_dict(...)`` on the new process's monitor: the step count, the records
`diagnose` judges and the log's run continue (``docs/monitor.md``).

Cost model. With adaptlr's optimizers the step measures itself (``optimizer.request_stats``,
:mod:`adaptlr.stats`): on the fast path the fused kernel adds up the squares of the gradient,
of the update and of the new parameters in its own pass over memory and writes the gradient
and the state at a fixed, evenly spread sample of elements, from which the cosine between
consecutive gradients and the eta_t/sigma_t percentiles are computed (norms exact; cosine and
percentiles estimated once the model exceeds the sample). Measured on 48M parameters
(``benchmarks/monitor_overhead.py``, ``docs/monitor_overhead.md``). With any other optimizer the
monitor evaluates the same statistics (``adaptlr.stats.STATISTICS``) itself: a recorded step
reads the gradients once (norms), copies them once when the next step's cosine needs them, and
copies the parameters once to measure the update exactly; ``sample=m``
measures on a fixed random subset of about `m` elements instead. Steps that are not recorded
cost two Python calls. All figures of a recorded step are brought to the host in one transfer.
"""

from __future__ import annotations

import math
import os
import time
import uuid
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from .. import stats as _stats
from ..core.base import LOW_PRECISION
from ..kernels import has_dtensor, shard
from ..stats import SAMPLE, Leaves, StepStats
from ..torch_optim import SCHEDULE_KEY
from .curvature import Curvature, hessian_extremes
from .diagnosis import SUGGESTIONS, Diagnosis, diagnose_records
from .log import JsonlLog

PathLike = str | os.PathLike[str]


def _loss_value(loss: Any) -> tuple[float | None, list[str]]:
    """A float for the log plus flags; never raises (it runs inside the user's loop)."""
    flags: list[str] = []
    value: float | None
    try:
        if isinstance(loss, torch.Tensor):
            n = loss.numel()
            if n == 1:
                value = float(loss.item())
            else:
                flags.append("non_scalar")
                value = float(loss.detach().float().mean()) if n else None
        elif isinstance(loss, bool):
            flags.append("not_a_number")
            value = None
        elif isinstance(loss, (int, float)):
            value = float(loss)
        elif hasattr(loss, "__array__"):  # numpy scalars and arrays
            import numpy as np

            arr = np.asarray(loss, dtype=np.float64)
            if arr.size != 1:
                flags.append("non_scalar")
            value = float(arr.mean()) if arr.size else None
        else:
            flags.append("not_a_number")
            value = None
    except Exception:  # noqa: BLE001 - a monitor must not crash the training loop
        flags.append("unreadable")
        value = None
    if value is not None and not math.isfinite(value):
        flags.append("non_finite")
    if value is None and "not_a_number" not in flags and "unreadable" not in flags:
        flags.append("empty")
    return value, flags


def _percentiles(values: np.ndarray, percentiles: Sequence[float]) -> list[float]:
    """``np.nanpercentile(values, percentiles)`` (linear interpolation) in two or three numpy
    calls: it runs right after the step's pass over memory, where every library call starts
    from cold caches (``docs/monitor_overhead.md``)."""
    x = values
    if math.isnan(float(x.sum())):  # a NaN (or inf - inf): drop the NaNs
        x = x[~np.isnan(x)]
    n = len(x)
    if not n:
        return [math.nan] * len(percentiles)
    pos = [(n - 1) * q / 100 for q in percentiles]
    lo = [math.floor(p) for p in pos]
    hi = [min(i + 1, n - 1) for i in lo]
    x = np.partition(x, sorted(set(lo + hi)))
    out = []
    for p, i, j in zip(pos, lo, hi, strict=True):
        a, b = float(x[i]), float(x[j])
        # equal neighbours give that value exactly, inf included (numpy would give NaN there)
        out.append(a if a == b else a + (b - a) * (p - i))
    return out


def _whole(t: torch.Tensor) -> torch.Tensor:
    """A DTensor reduction (a norm, a count) as one plain tensor over every shard."""
    return t.full_tensor() if hasattr(t, "full_tensor") else t


class _Lists:
    """The monitor's operand for :data:`adaptlr.stats.STATISTICS`: one tensor per parameter
    (whole, or its sampled elements), or the difference of two such operands, computed when
    its sum of squares is taken. ``scratch`` marks the monitor's own copies (the parameters
    before the step, the previous gradient): a difference is written into one, so it costs
    no memory of its own, and the copy is spent. ``sq``: the per-tensor sums of squares once
    taken (the previous gradient's come from its own step)."""

    def __init__(
        self,
        tensors: list[torch.Tensor] | None = None,
        scratch: bool = False,
        sq: torch.Tensor | None = None,
        diff: tuple[_Lists, _Lists] | None = None,
    ) -> None:
        self.tensors, self.scratch, self.sq, self.diff = tensors, scratch, sq, diff
        self.spent = False

    def __sub__(self, other: Any) -> _Lists:
        if not isinstance(other, _Lists):
            return NotImplemented
        return _Lists(diff=(self, other))

    def values(self) -> list[torch.Tensor]:
        """The tensors, a difference computed now (into a scratch operand where there is one)."""
        if self.diff is None:
            if self.spent or self.tensors is None:
                raise RuntimeError("Monitor: a statistic read a copy that a difference overwrote")
            return self.tensors
        x, y = self.diff
        a, b = x.values(), y.values()
        if y.scratch:  # b <- a - b
            if b and b[0].is_cuda:
                torch._foreach_sub_(b, a)
                torch._foreach_neg_(b)
            else:  # torch's CPU foreach kernels run a tensor at a time: see _copy_into
                for u, v in zip(a, b, strict=True):
                    if hasattr(v, "full_tensor"):  # a DTensor takes no out=
                        v.sub_(u).neg_()
                    else:
                        torch.sub(u, v, out=v)
            y.spent, out = True, b
        elif x.scratch:  # a <- a - b
            Monitor._sub_(a, b)
            x.spent, out = True, a
        else:
            out = list(torch._foreach_sub(a, b))
        self.tensors, self.diff = out, None
        return out


@dataclass
class _Figures:
    """One recorded step's figures, per group, from either source: the step's own
    measurement (``StepStats``) or the monitor's passes. ``cos_terms`` is Σg·g', Σg², Σg'²
    over the sample (the cosine's three sums); ``eff`` each group's η/σ sample."""

    grad_sq: Sequence[float] | None
    update_sq: Sequence[float] | None
    param_sq: Sequence[float] | None
    cos_terms: tuple[float, float, float] | None
    lr: list[float | None]
    eff: list[np.ndarray | None]
    sampled: bool = False
    tb: dict[str, Any] | None = None


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _check_path(name: str, value: Any) -> PathLike | None:
    if value is None or isinstance(value, (str, os.PathLike)):
        return value
    raise TypeError(f"{name} must be None or a path, got {type(value).__name__}")


class Monitor:
    """Training diagnostics for any `torch.optim.Optimizer`, attached through its step hooks.

    Args:
        optimizer: adaptlr's or torch's optimizer.
        every: record one step in `every` (steps 0, every, 2*every, ...).
        log: path of an append-only JSON Lines log (one flushed line per record), or None.
        tensorboard: a TensorBoard log directory, or None; ignored with a warning when the
            ``tensorboard`` package is not installed.
        window: how many recorded steps `diagnose` judges.
        update: measure the update norm (costs one copy of the parameters per recorded step).
        cosine: measure the cosine between consecutive gradients (costs one copy of the
            gradients per recorded step).
        sample: with adaptlr's optimizers, how many elements per group the cosine and the
            eta_t/sigma_t percentiles are taken on (default ``adaptlr.stats.SAMPLE``, 16,384;
            norms are always exact). With other optimizers: None for exact figures, or an int
            `m` to estimate every figure on a fixed random subset of about `m` parameter
            elements (norms rescaled), for very large models.
        eff_lr: record eta_t/sigma_t percentiles. adaptlr's optimizers give them from the
            step's own sample; other optimizers with an ``effective_lr()`` method build a
            full-size tensor per parameter there: on large models turn it off or record
            rarely.
        percentiles: effective learning-rate percentiles to record, each in [0, 100].
        keep: how many recorded steps to keep in memory (the log keeps them all).

    Recorded figures (keys of each record): ``loss``, ``grad_norm``, ``group_grad_norm``,
    ``update_norm``, ``group_update_norm``, ``param_norm``, ``update_ratio``, ``cos``,
    ``nonfinite``, ``lr``, ``eff_lr`` (per group: percentiles of eta_t / sigma_t when the
    optimizer has an ``effective_lr()`` method, else None).
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        every: int = 1,
        log: PathLike | None = None,
        tensorboard: PathLike | None = None,
        window: int = 50,
        *,
        update: bool = True,
        cosine: bool = True,
        sample: int | None = None,
        eff_lr: bool = True,
        percentiles: Sequence[float] = (5, 25, 50, 75, 95),
        keep: int = 10_000,
    ) -> None:
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(
                f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
            )
        self.every = _check_int("every", every, 1)
        self.window = _check_int("window", window, 3)
        self.keep = _check_int("keep", keep, 1)
        if sample is not None:
            sample = _check_int("sample", sample, 1)
        self.sample = sample
        for name, flag in (("update", update), ("cosine", cosine), ("eff_lr", eff_lr)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be a bool, got {type(flag).__name__}")
        self.update, self.cosine, self.eff_lr = update, cosine, eff_lr
        try:
            pct = [float(q) for q in percentiles]
        except (TypeError, ValueError):
            raise TypeError("percentiles must be a sequence of numbers") from None
        if not pct or any(not 0 <= q <= 100 for q in pct):
            raise ValueError(f"percentiles must be non-empty and within [0, 100], got {pct}")
        self.percentiles = sorted(pct)
        _check_path("log", log)
        _check_path("tensorboard", tensorboard)

        self.optimizer = optimizer
        self.history: deque[dict[str, Any]] = deque(maxlen=self.keep)
        self._t = 0  # optimizer steps completed since attaching
        self._m: dict[str, Any] | None = None  # measurements of the step in flight
        self._prev: _Lists | None = None  # gradient snapshot of step _prev_step
        self._prev_step = -2
        self._prev_keys: tuple[int, ...] = ()
        self._param_bufs: list[torch.Tensor] = []
        self._idx: dict[int, torch.Tensor] = {}  # sample mode: fixed element indices per param
        self._gen = torch.Generator().manual_seed(0)
        self._loss_mode: str | None = None  # "before" or "after" optimizer.step()
        self._pending_loss: Any = None
        self._awaiting: dict[str, Any] | None = None  # finished record still waiting for a loss
        self._warned_loss = False
        self._tb_extra: dict[int, dict[str, Any]] = {}  # histogram data until the record is out
        # adaptlr's optimizers measure their own step (adaptlr.stats): no pass of the monitor's
        # (not over DTensor shards: whole-tensor norms need the DTensors' own collectives)
        params = [p for g in optimizer.param_groups for p in g["params"]]
        self._native = callable(getattr(optimizer, "request_stats", None)) and not has_dtensor(
            params
        )
        self._prev_native: tuple[int, list[tuple[int, float] | None]] | None = None

        self.run_id = uuid.uuid4().hex  # names this run in the log; a resume keeps it
        self._log = JsonlLog(log) if log is not None else None
        self._tb = None
        if tensorboard is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(log_dir=os.fspath(tensorboard))
            except ImportError:
                warnings.warn(
                    "tensorboard is not installed; Monitor(tensorboard=...) writes no events "
                    "(pip install tensorboard)",
                    stacklevel=2,
                )
        if self._log is not None:
            self._log.write(
                {
                    "type": "meta",
                    "run_id": self.run_id,
                    "optimizer": type(optimizer).__name__,
                    "every": self.every,
                    "window": self.window,
                    "sample": self.sample,
                    "groups": len(optimizer.param_groups),
                    "params": [sum(p.numel() for p in g["params"]) for g in optimizer.param_groups],
                    "time": time.time(),
                }
            )
        self._hooks = [
            optimizer.register_step_pre_hook(self._pre_hook),
            optimizer.register_step_post_hook(self._post_hook),
        ]

    # ------------------------------------------------------------------ measuring
    def _items(self, with_grad: bool) -> list[tuple[int, torch.Tensor]]:
        """(group index, param) for the dense params that take part in this step."""
        out = []
        for gi, group in enumerate(self.optimizer.param_groups):
            for p in group["params"]:
                g = p.grad
                if with_grad:
                    if g is not None and not g.is_sparse:
                        out.append((gi, p))
                elif p.requires_grad:
                    out.append((gi, p))
        return out

    def _views(self, tensors: list[torch.Tensor], params: list[torch.Tensor]) -> list[torch.Tensor]:
        """Exact mode: the tensors. Sample mode: the same fixed random elements of each."""
        if self.sample is None:
            return tensors
        total = sum(p.numel() for p in params) or 1
        out = []
        for t, p in zip(tensors, params, strict=True):
            idx = self._idx.get(id(p))
            if idx is None or idx.device != t.device:
                k = min(p.numel(), max(1, round(self.sample * p.numel() / total)))
                idx = torch.randperm(p.numel(), generator=self._gen)[:k].to(t.device)
                self._idx[id(p)] = idx
            out.append(t.reshape(-1).index_select(0, idx))
        return out

    def _scales(self, params: list[torch.Tensor]) -> torch.Tensor | None:
        """Sample mode: numel / sampled elements, to turn sampled sums of squares into totals."""
        if self.sample is None:
            return None
        return torch.tensor([p.numel() / max(1, self._idx[id(p)].numel()) for p in params])

    def _sq_norms(self, tensors: list[torch.Tensor], scales: torch.Tensor | None) -> torch.Tensor:
        """Per-tensor squared norms as one float32 vector (one fused pass per device)."""
        if not tensors:
            return torch.zeros(0)
        dev = tensors[0].device
        low = any(t.dtype in LOW_PRECISION for t in tensors)
        acc = torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32
        # float32 accumulation: an fp16 norm of a large tensor overflows at 65504.
        norms = torch._foreach_norm(tensors, 2, dtype=torch.float32) if low else None
        if norms is None:
            norms = torch._foreach_norm(tensors, 2)
        norms = [_whole(n) for n in norms]  # a DTensor's norm: over every process's shard
        same = all(n.device == dev and n.dtype == acc for n in norms)
        sq = torch.stack(norms if same else [n.to(dev, acc) for n in norms]) ** 2
        return sq * scales.to(dev) if scales is not None else sq

    @staticmethod
    def _group_sum(values: torch.Tensor, gidx: list[int], groups: int) -> torch.Tensor:
        index = torch.tensor(gidx, device=values.device, dtype=torch.long)
        out = torch.zeros(groups, device=values.device, dtype=values.dtype)
        return out.index_add_(0, index, values)

    @staticmethod
    def _copy_into(dst: list[torch.Tensor], src: list[torch.Tensor]) -> None:
        # torch's CPU foreach kernels run one tensor at a time, slower than a plain loop; CUDA
        # benefits from foreach (one launch)
        if src and src[0].is_cuda:
            torch._foreach_copy_(dst, src)
        else:
            for d, s in zip(dst, src, strict=True):
                d.copy_(s)

    @staticmethod
    def _sub_(dst: list[torch.Tensor], src: list[torch.Tensor]) -> None:
        """dst -= src, tensor by tensor (foreach on CUDA, a loop on CPU: see _copy_into)."""
        if dst and dst[0].is_cuda:
            torch._foreach_sub_(dst, src)
        else:
            for d, s in zip(dst, src, strict=True):
                d.sub_(s)

    def _sums(
        self, names: Sequence[str], leaves: Leaves, scales: torch.Tensor | None
    ) -> list[torch.Tensor]:
        """Per tensor, the statistics ``names`` (:data:`adaptlr.stats.STATISTICS`) on the
        monitor's lists. A sum of squares is one fused norm pass per device; Σ a·b is
        (Σa² + Σb² - Σ(b - a)²) / 2, two such passes instead of a dot (and a launch) per
        tensor. Sums over the leaves themselves are taken first, as a difference may overwrite
        a leaf's scratch copy."""
        pairs = [_stats.STATISTIC[n].factors(leaves) for n in names]
        order = sorted(range(len(names)), key=lambda k: any(f.diff is not None for f in pairs[k]))
        out: list[torch.Tensor] = [torch.zeros(0)] * len(names)
        for k in order:
            a, b = pairs[k]
            if a is b:
                out[k] = self._sq_of(a, scales)
            else:
                sq_a, sq_b = self._sq_of(a, scales), self._sq_of(b, scales)
                out[k] = (sq_a + sq_b - self._sq_of(b - a, scales)) / 2
        return out

    def _sq_of(self, x: _Lists, scales: torch.Tensor | None) -> torch.Tensor:
        if x.sq is None:
            x.sq = self._sq_norms(x.values(), scales)
        return x.sq

    def _measure_grads(self, record: bool, keep_for_next: bool) -> None:
        """The gradient's statistics, Σg² per tensor and, against the previous step's kept
        gradient, the cosine's sums; keeps a copy of the gradient for the next step's."""
        items = self._items(with_grad=True)
        params = [p for _, p in items]
        grads = self._views([p.grad for p in params], params)
        g = _Lists(grads)
        scales = self._scales(params)
        keys = tuple(id(p) for p in params)
        (sq,) = self._sums(["grad_sq"], Leaves(g=g), scales)
        if record and self._m is not None:
            m = self._m
            m["keys"] = keys
            m["gsq_groups"] = self._group_sum(sq, [gi for gi, _ in items], self._groups())
            m["grad_tensors"] = sq
            prev = self._prev
            prev_ok = prev is not None and self._prev_step == m["step"] - 1
            if self.cosine and prev_ok and self._prev_keys == keys and grads:
                assert prev is not None
                # the previous gradient's Σg² is its own step's; the product overwrites its
                # copy, which is replaced by this gradient below or never used again
                (bb,) = self._sums(["sample_sq"], Leaves(g=prev), scales)
                at = Leaves(g=g, g_prev=prev)
                dot, aa = self._sums(["sample_dot_prev", "sample_sq"], at, scales)
                m["cos_terms"] = torch.stack([dot.sum(), aa.sum(), bb.sum()])
        if keep_for_next and grads:
            if self.sample is not None:
                bufs = grads  # already fresh gathered copies
            else:
                bufs = (self._prev.tensors or []) if self._prev is not None else []
                same = len(bufs) == len(grads) and all(
                    b.shape == x.shape and b.dtype == x.dtype and b.device == x.device
                    for b, x in zip(bufs, grads, strict=True)
                )
                if not same:
                    bufs = [torch.empty_like(x) for x in grads]
                self._copy_into(bufs, grads)
            self._prev = _Lists(bufs, scratch=True, sq=sq)
            self._prev_step = self._t
            self._prev_keys = keys

    def _groups(self) -> int:
        return len(self.optimizer.param_groups)

    def _snapshot_params(self) -> None:
        assert self._m is not None
        items = self._items(with_grad=False)
        params = [p for _, p in items]
        views = self._views([p.detach() for p in params], params)
        if self.sample is None:
            bufs = self._param_bufs
            if len(bufs) != len(views) or any(
                b.shape != v.shape or b.dtype != v.dtype or b.device != v.device
                for b, v in zip(bufs, views, strict=True)
            ):
                bufs = self._param_bufs = [torch.empty_like(v) for v in views]
            with torch.no_grad():
                self._copy_into(bufs, views)
            views = bufs
        self._m["before"] = (items, views)

    def _wrap_closure(self, closure: Callable, record: bool, keep: bool) -> Callable:
        """Measure the gradient after the closure's first call: the one step() uses."""
        done = False

        def wrapped(*a: Any, **k: Any) -> Any:
            nonlocal done
            loss = closure(*a, **k)
            if not done:
                done = True
                if not self._native:  # adaptlr's step measures itself
                    with torch.no_grad():
                        self._measure_grads(record, keep)
                if record and self._m is not None:
                    self._m["closure_loss"] = (
                        loss.detach() if isinstance(loss, torch.Tensor) else loss
                    )
            return loss

        return wrapped

    def _pre_hook(self, optimizer: torch.optim.Optimizer, args: tuple, kwargs: dict) -> Any:
        t = self._t
        record = t % self.every == 0
        keep = self.cosine and (t + 1) % self.every == 0
        if not (record or keep):
            return None
        self._m = {"step": t} if record else None
        # torch passes step()'s own arguments, the optimizer itself first.
        at = 1 if args and args[0] is optimizer else 0
        closure = kwargs.get("closure", args[at] if len(args) > at else None)
        result = None
        with torch.no_grad():
            if callable(closure):
                wrapped = self._wrap_closure(closure, record, keep)
                if "closure" in kwargs:
                    kwargs = {**kwargs, "closure": wrapped}
                else:
                    args = (*args[:at], wrapped, *args[at + 1 :])
                result = (args, kwargs)
            elif not self._native:
                self._measure_grads(record, keep)
            if self._native:
                # the step measures itself, in its own pass over memory (adaptlr.stats)
                optimizer.request_stats(  # type: ignore[attr-defined]
                    sample=self.sample or SAMPLE, eff_lr=self.eff_lr and record
                )
            elif record and self.update:
                self._snapshot_params()
        return result

    def _eff_lr(self) -> list[torch.Tensor | None]:
        """Per group: a sample of eta_t/sigma_t from the optimizer's ``effective_lr()``, or
        None."""
        fn = getattr(self.optimizer, "effective_lr", None)
        groups = self._groups()
        if not self.eff_lr or not callable(fn):
            return [None] * groups
        try:
            per_group = fn()
        except Exception:  # noqa: BLE001 - an optimizer's helper must not break training
            return [None] * groups
        samples: list[torch.Tensor | None] = []
        for tensors in per_group:
            # DTensor state (FSDP2): the percentiles of this process's shard
            ts = [shard(t) for t in (tensors or []) if isinstance(t, torch.Tensor)]
            ts = [t for t in ts if t.numel()]
            if not ts:
                samples.append(None)
                continue
            total = sum(t.numel() for t in ts)
            cap = 65_536  # percentiles of a 65k sample are within ~0.5% of rank of the exact ones
            parts = []
            for t in ts:
                flat = t.detach().reshape(-1)
                if total > cap:
                    k = max(1, round(cap * flat.numel() / total))
                    idx = torch.randint(flat.numel(), (k,), generator=self._gen)
                    flat = flat.index_select(0, idx.to(flat.device))
                parts.append(flat.to(ts[0].device, torch.float32))
            samples.append(torch.cat(parts))
        return samples

    def _take_native(self, m: dict[str, Any] | None, t: int) -> dict[str, Any] | None:
        """The record of a step that measured itself (``optimizer.last_stats``), if ``m`` asks
        for one. Python floats and numpy only: a recorded step runs no tensor operation."""
        stats: list[StepStats | None] = list(getattr(self.optimizer, "last_stats", None) or [])
        groups = self._groups()
        stats += [None] * (groups - len(stats))
        have = [s for s in stats if s is not None]
        # the cosine between consecutive gradients comes from the step itself: the sampled
        # gradient's product with the previous measured step's (see adaptlr.stats.StepStats)
        prev = self._prev_native
        if self.cosine and have and (t + 1) % self.every == 0:
            self._prev_native = (t, [None if s is None else (s.serial, s.sample_sq) for s in stats])
        if m is None:
            return None
        if not have:
            # nothing stepped (no gradient, or a step skipped for NaN/inf): the gradients are
            # still there to be measured; the state did not change (no η/σ)
            self._m = m
            with torch.no_grad():
                self._measure_grads(True, False)
            self._m = None
            m["no_eff"] = True
            return self._finish(m)
        update = self.update
        cos_terms = None
        if self.cosine and prev is not None and prev[0] == t - 1:
            pairs = list(zip(stats, prev[1], strict=True))
            # every group measured at both steps, against that very previous step
            if all(
                (s is None) == (q is None) and (s is None or s.prev_serial == q[0])
                for s, q in pairs
            ):
                cos_terms = (
                    sum(s.sample_dot_prev for s, _ in pairs if s is not None),  # type: ignore[misc]
                    sum(s.sample_sq for s, _ in pairs if s is not None),
                    sum(q[1] for _, q in pairs if q is not None),
                )
        lrs, tensors = self._group_lrs()
        samples = [None if s is None or not self.eff_lr else s.eff_lr for s in stats]
        samples = [None if e is None or not e.numel() else e for e in samples]
        tb = None
        if self._tb is not None:
            tb = {"grad_tensors": torch.cat([s.tensor_grad_sq for s in have]), "eff": samples}
        return self._record(
            m["step"],
            _Figures(
                grad_sq=[0.0 if s is None else s.grad_sq for s in stats],
                update_sq=[0.0 if s is None else s.update_sq for s in stats] if update else None,
                param_sq=[0.0 if s is None else s.param_sq for s in stats] if update else None,
                cos_terms=cos_terms,
                lr=[float(tensors[f"lr{i}"]) if lr == "tensor" else lr for i, lr in enumerate(lrs)],
                eff=[None if e is None else e.numpy() for e in samples],
                tb=tb,
            ),
        )

    def _post_hook(self, optimizer: torch.optim.Optimizer, args: tuple, kwargs: dict) -> None:
        m, self._m = self._m, None
        t = self._t
        self._t += 1
        try:
            rec = self._take_native(m, t) if self._native else None
            if m is None:
                return
            if rec is None:
                rec = self._finish(m)
        except Exception as exc:  # noqa: BLE001 - never break the user's training step
            warnings.warn(f"Monitor could not measure step {t}: {exc!r}", stacklevel=2)
            return
        if self._loss_mode == "before":
            loss = self._pending_loss if self._pending_loss is not None else m.get("closure_loss")
            self._pending_loss = None
            self._attach_loss(rec, loss)
            self._emit(rec)
        else:
            if self._awaiting is not None:
                self._emit(self._awaiting)
            if "closure_loss" in m:
                self._attach_loss(rec, m["closure_loss"])
            self._awaiting = rec

    def _finish(self, m: dict[str, Any]) -> dict[str, Any]:
        """The record of a step measured by the monitor's own passes (optimizers that do not
        measure their own step): the update's statistics, then every figure brought to the
        host in one transfer."""
        groups = self._groups()
        dev = m["gsq_groups"].device if "gsq_groups" in m else torch.device("cpu")
        parts: dict[str, torch.Tensor] = {}
        if "gsq_groups" in m:
            parts["grad_sq"] = m["gsq_groups"]
        if "cos_terms" in m:
            parts["cos"] = m["cos_terms"]
        before = m.get("before")
        if before is not None:
            items, bufs = before
            params = [p for _, p in items]  # the originals: sample indices are keyed by them
            if params:
                after = self._views([p.detach() for p in params], params)
                # the snapshot is scratch: it ends up holding the update, reused next time
                leaves = Leaves(p_old=_Lists(bufs, scratch=True), p_new=_Lists(after))
                scales = self._scales(params)
                gidx = [gi for gi, _ in items]
                names = ["update_sq", "param_sq"]
                with torch.no_grad():
                    for name, sq in zip(names, self._sums(names, leaves, scales), strict=True):
                        parts[name] = self._group_sum(sq, gidx, groups)
        samples = [None] * groups if m.get("no_eff") else self._eff_lr()
        for gi, e in enumerate(samples):
            if e is not None:
                parts[f"eff{gi}"] = e
        lrs, lr_tensors = self._group_lrs()
        parts.update(lr_tensors)
        # One device-to-host transfer for all figures of the step.
        names = list(parts)
        flat = (
            torch.cat([parts[k].reshape(-1).to(dev, torch.float64) for k in names]).cpu().numpy()
            if names
            else np.zeros(0)
        )
        vals: dict[str, np.ndarray] = {}
        pos = 0
        for k in names:
            vals[k] = flat[pos : pos + parts[k].numel()]
            pos += parts[k].numel()

        def floats(k: str) -> list[float] | None:
            return vals[k].tolist() if k in vals else None

        cos = floats("cos")
        tb = None
        if self._tb is not None:
            tb = {"grad_tensors": m.get("grad_tensors"), "eff": samples}
        return self._record(
            m["step"],
            _Figures(
                grad_sq=floats("grad_sq"),
                update_sq=floats("update_sq"),
                param_sq=floats("param_sq"),
                cos_terms=None if cos is None else (cos[0], cos[1], cos[2]),
                lr=[float(vals[f"lr{i}"][0]) if lr == "tensor" else lr for i, lr in enumerate(lrs)],
                eff=[vals.get(f"eff{gi}") for gi in range(groups)],
                sampled=self.sample is not None,
                tb=tb,
            ),
        )

    def _record(self, step: int, f: _Figures) -> dict[str, Any]:
        """The one builder of a step's record, from either source's figures."""
        rec: dict[str, Any] = {"type": "step", "step": step, "time": time.time()}
        rec["loss"] = None
        if f.grad_sq is not None:
            rec["grad_norm"] = math.sqrt(sum(f.grad_sq))
            rec["group_grad_norm"] = [math.sqrt(x) for x in f.grad_sq]
        else:
            rec["grad_norm"] = None  # no parameter had a gradient
            rec["group_grad_norm"] = [None] * self._groups()
        if f.update_sq is not None and f.param_sq is not None:
            self._update_figures(rec, f.update_sq, f.param_sq)
        rec["cos"] = None
        if f.cos_terms is not None:
            dot, aa, bb = f.cos_terms
            rec["cos"] = dot / max(math.sqrt(aa * bb), 1e-30)
        rec["lr"] = f.lr
        rec["eff_lr"] = [
            None if e is None else self._eff_entry(_percentiles(e, self.percentiles)) for e in f.eff
        ]
        rec["nonfinite"] = self._nonfinite(rec)
        state = self._group_state()
        if state is not None:
            rec["group_state"] = state
        if f.sampled:
            rec["sampled"] = True
        if f.tb is not None:
            self._tb_extra[step] = f.tb
        return rec

    def _group_state(self) -> list[dict[str, float]] | None:
        """Each group's scalars that an adaptlr optimizer keeps once per group (Prodigy's and
        D-Adaptation's estimate ``d``, DoG's ``rbar``, SWATS's ``switch_step`` and ``sgd_lr``,
        ...), as its last step left them; ``None`` for an optimizer that keeps none."""
        transform_for = getattr(self.optimizer, "transform_for", None)
        if transform_for is None:
            return None
        out = []
        for gi, group in enumerate(self.optimizer.param_groups):
            keys = transform_for(group, gi).shared_keys
            out.append({k: float(group[k]) for k in keys if k in group})
        return out if any(out) else None

    @staticmethod
    def _update_figures(rec: dict[str, Any], usq: Sequence[float], psq: Sequence[float]) -> None:
        """Update and parameter norms, overall and per group, from their sums of squares."""
        u, p = math.sqrt(sum(usq)), math.sqrt(sum(psq))
        rec["update_norm"] = u
        rec["group_update_norm"] = [math.sqrt(x) for x in usq]
        rec["param_norm"] = p
        rec["update_ratio"] = u / p if p > 0 else (0.0 if u == 0 else math.inf)

    def _eff_entry(self, values: Sequence[float]) -> dict[str, float]:
        """One group's η/σ percentiles as recorded: ``{"p5": ..., "p50": ...}``."""
        return {f"p{q:g}": float(v) for q, v in zip(self.percentiles, values, strict=True)}

    def _group_lrs(self) -> tuple[list[Any], dict[str, torch.Tensor]]:
        """Each group's lr as recorded: a float, None (no number there), or ``"tensor"``: its
        value is then the entry ``lr{i}`` of the returned tensors.

        A group with an adaptlr schedule (``lr_schedule``) records the η of the step just
        taken; its ``lr`` already holds the next step's."""
        lrs: list[Any] = []
        tensors: dict[str, torch.Tensor] = {}
        for i, group in enumerate(self.optimizer.param_groups):
            lr, sched = group.get("lr"), group.get(SCHEDULE_KEY)
            if callable(sched) and group.get("applied_steps", 0) > 0:
                lrs.append(float(sched(group["applied_steps"] - 1)))
            elif isinstance(lr, torch.Tensor) and lr.numel() == 1:
                tensors[f"lr{i}"] = lr.detach().reshape(1).float()
                lrs.append("tensor")
            elif isinstance(lr, (int, float)) and not isinstance(lr, bool):
                lrs.append(float(lr))
            else:
                lrs.append(None)
        return lrs, tensors

    def _nonfinite(self, rec: dict[str, Any]) -> int:
        """Exact non-finite counts, only when a norm says there are some (rare: no extra
        passes otherwise)."""
        nonfinite = 0
        if rec["grad_norm"] is not None and not math.isfinite(rec["grad_norm"]):
            nonfinite += sum(
                int(_whole((~torch.isfinite(p.grad)).sum())) for _, p in self._items(with_grad=True)
            )
        if "param_norm" in rec and not (
            math.isfinite(rec["param_norm"]) and math.isfinite(rec["update_norm"])
        ):
            nonfinite += sum(
                int(_whole((~torch.isfinite(p.detach())).sum()))
                for _, p in self._items(with_grad=False)
            )
        return nonfinite

    # ------------------------------------------------------------------ recording
    def _attach_loss(self, rec: dict[str, Any], loss: Any) -> None:
        if loss is None:
            return
        value, flags = _loss_value(loss)
        rec["loss"] = value
        if flags:
            rec["loss_flags"] = flags
            if not self._warned_loss:
                self._warned_loss = True
                warnings.warn(
                    f"Monitor.record: loss at step {rec['step']} flagged {flags}; it is recorded "
                    "and counted by diagnose()",
                    stacklevel=3,
                )

    def record(self, loss: Any) -> None:
        """Record the loss of the current step; call once per step, before or after step().

        Never raises: a non-scalar loss is recorded as its mean with the flag ``"non_scalar"``,
        a non-finite one with ``"non_finite"`` (and counted by `diagnose` as diverging),
        anything else unreadable with ``"not_a_number"``.

        Args:
            loss: the step's loss: a number or a tensor (a 0-d one, or any other, recorded as
                its mean); anything else is recorded as unreadable.
        """
        try:
            if self._loss_mode is None:
                # The first call tells the loop's order: before any step means "before step()".
                self._loss_mode = "before" if self._t == 0 and self._awaiting is None else "after"
            if self._loss_mode == "before":
                if self._t % self.every == 0:
                    self._pending_loss = loss.detach() if isinstance(loss, torch.Tensor) else loss
                return
            rec = self._awaiting
            if rec is None or rec["step"] != self._t - 1:
                return  # the last step was not a recorded one
            self._awaiting = None
            self._attach_loss(rec, loss)
            self._emit(rec)
        except Exception as exc:  # noqa: BLE001 - never break the user's loop
            warnings.warn(f"Monitor.record failed: {exc!r}", stacklevel=2)

    def _emit(self, rec: dict[str, Any]) -> None:
        tb = self._tb_extra.pop(rec["step"], None)
        self.history.append(rec)
        if self._log is not None:
            self._log.write(rec)
        if self._tb is not None:
            self._write_tb(rec, tb or {})

    def _write_tb(self, rec: dict[str, Any], extra: dict[str, Any]) -> None:
        w, step = self._tb, rec["step"]
        assert w is not None
        for key in ("loss", "grad_norm", "update_norm", "update_ratio", "cos", "nonfinite"):
            v = rec.get(key)
            if isinstance(v, (int, float)) and math.isfinite(v):
                w.add_scalar(f"monitor/{key}", v, step)
        for gi, v in enumerate(rec.get("group_grad_norm") or []):
            if v is not None and math.isfinite(v):
                w.add_scalar(f"monitor/group{gi}/grad_norm", v, step)
        for gi, e in enumerate(rec.get("eff_lr") or []):
            for name, v in (e or {}).items():
                if math.isfinite(v):
                    w.add_scalar(f"monitor/group{gi}/eff_lr_{name}", v, step)
        if extra.get("grad_tensors") is not None and extra["grad_tensors"].numel():
            w.add_histogram("monitor/tensor_grad_norm", extra["grad_tensors"].sqrt().cpu(), step)
        for gi, s in enumerate(extra.get("eff") or []):
            if s is not None:
                finite = s[torch.isfinite(s)].cpu()
                if finite.numel():
                    w.add_histogram(f"monitor/group{gi}/eff_lr", finite, step)
        w.flush()

    # ------------------------------------------------------------------ results
    @property
    def records(self) -> list[dict[str, Any]]:
        """The recorded steps still in memory (the last `keep`), oldest first."""
        out = list(self.history)
        if self._awaiting is not None:
            out.append(self._awaiting)
        return out

    @property
    def steps(self) -> int:
        """Optimizer steps taken since the monitor was attached."""
        return self._t

    def curvature(
        self,
        loss_fn: Callable[[], torch.Tensor],
        params: Iterable[torch.Tensor] | None = None,
        iters: int = 20,
    ) -> Curvature:
        """Extreme Hessian eigenvalues of ``loss_fn()`` at the current parameters (Lanczos).

        Args:
            loss_fn: recomputes the loss on a batch you choose (e.g. ``lambda: crit(model(x),
                y)``); it is differentiated twice.
            params: defaults to the optimizer's parameters that require grad.
            iters: Lanczos iterations.
        """
        if params is None:
            params = [p for _, p in self._items(with_grad=False)]
        return hessian_extremes(loss_fn, params, iters)

    def diagnose(
        self,
        window: int | None = None,
        curvature: Callable[[], torch.Tensor] | None = None,
        **thresholds: float,
    ) -> Diagnosis:
        """Diagnose the last `window` recorded steps (default: the constructor's `window`).

        Args:
            window: recorded steps to judge.
            curvature: a loss closure; when the diagnosis is ``"critical_point"`` the curvature
                check runs on it and tells a saddle point from a minimum.
            thresholds: overrides for `diagnose_records`' thresholds.
        """
        w = self.window if window is None else _check_int("window", window, 3)
        recs = self.records
        d = diagnose_records(recs, w, **thresholds)
        if curvature is not None and d.kind == "critical_point":
            c = self.curvature(curvature)
            d.evidence["curvature"] = asdict(c)
            d.suggestion = SUGGESTIONS["saddle" if c.kind == "saddle" else "minimum"]
            d.reason += f" Curvature check: {c}."
        if self._log is not None:
            self._log.write({"type": "diagnosis", "step": self._t, **d.to_dict()})
        return d

    # ------------------------------------------------------------------ resume
    def _positions(self) -> dict[int, int]:
        """Each parameter's place in the optimizer's groups, laid end to end: what names it
        across processes (``id`` does not)."""
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        return {id(p): i for i, p in enumerate(params)}

    def state_dict(self) -> dict[str, Any]:
        """Everything the monitor needs to continue a run exactly after a resume.

        Save it beside the model's and the optimizer's (``adaptlr.checkpoint.save``); it holds
        only tensors, numbers, strings, lists and dicts, so ``torch.load(weights_only=True)``
        reads it. It holds the step count, the run's id (the log names the run by it), the
        recorded steps kept in memory (what `diagnose` judges), a record still waiting for its
        loss, the loss's place in the loop, and, for optimizers that do not measure their own
        step, the previous gradient's copy (the next step's cosine), the sampled elements and
        the sampling generator. adaptlr's optimizers keep the previous step's gradient sample
        themselves and do not save it, so the first step after a resume records no cosine.
        """
        pos = self._positions()
        prev = self._prev
        keep_prev = prev is not None and not prev.spent and prev.tensors is not None
        return {
            "version": 1,
            "run_id": self.run_id,
            "step": self._t,
            "every": self.every,
            "history": list(self.history),
            "awaiting": self._awaiting,
            "loss_mode": self._loss_mode,
            "pending_loss": self._pending_loss
            if isinstance(self._pending_loss, (int, float, torch.Tensor))
            else None,
            "warned_loss": self._warned_loss,
            "prev_step": self._prev_step if keep_prev else -2,
            "prev_grads": [t.detach().clone() for t in prev.tensors] if keep_prev else [],  # type: ignore[union-attr]
            "prev_sq": prev.sq.detach().clone() if keep_prev and prev.sq is not None else None,  # type: ignore[union-attr]
            "prev_params": [pos[k] for k in self._prev_keys if k in pos],
            "sample_idx": {pos[k]: v.clone() for k, v in self._idx.items() if k in pos},
            "generator": self._gen.get_state(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Continue the run saved by `state_dict`: the step count goes on from the saved one,
        `diagnose` judges the saved records with the new ones, and the log (given to this
        monitor's constructor; it may be the same file) gets a ``"resume"`` line naming the
        run and the step, so `split_runs` draws the two parts as one run.

        Args:
            state_dict: what `state_dict` returned (after ``torch.load``), for a monitor on the
                same optimizer's parameters.

        Raises:
            TypeError: `state_dict` is not a dict.
            ValueError: it lacks an entry, or names parameters this optimizer does not have.
            Nothing is changed when it raises.
        """
        if not isinstance(state_dict, dict):
            raise TypeError(f"state_dict must be a dict, got {type(state_dict).__name__}")
        needed = ("version", "run_id", "step", "history", "prev_params", "generator")
        missing = [k for k in needed if k not in state_dict]
        if missing:
            raise ValueError(f"state_dict lacks {missing}: not a Monitor.state_dict()")
        if state_dict["version"] != 1:
            raise ValueError(f"state_dict version must be 1, got {state_dict['version']!r}")
        step = state_dict["step"]
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"state_dict['step'] must be an int >= 0, got {step!r}")
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        places = list(state_dict["prev_params"]) + list(state_dict.get("sample_idx", {}))
        if any(not 0 <= i < len(params) for i in places):
            raise ValueError(
                f"state_dict names parameters beyond this optimizer's {len(params)}: it was "
                "saved with another model or optimizer"
            )
        grads = list(state_dict.get("prev_grads") or [])
        gen = torch.Generator()
        try:
            gen.set_state(state_dict["generator"])
        except (TypeError, RuntimeError) as exc:
            raise ValueError(f"state_dict['generator'] is not a generator state: {exc}") from None
        self._t = step
        self.run_id = str(state_dict["run_id"])
        self.history.clear()
        self.history.extend(state_dict["history"])
        self._awaiting = state_dict.get("awaiting")
        self._loss_mode = state_dict.get("loss_mode")
        self._pending_loss = state_dict.get("pending_loss")
        self._warned_loss = bool(state_dict.get("warned_loss", False))
        self._prev_keys = tuple(id(params[i]) for i in state_dict["prev_params"])
        if grads:
            dev = [params[i].device for i in state_dict["prev_params"]]
            if len(dev) != len(grads):  # sample mode keeps one gathered copy per parameter
                dev = [grads[0].device] * len(grads)
            sq = state_dict.get("prev_sq")
            self._prev = _Lists([t.to(d) for t, d in zip(grads, dev, strict=True)], True, sq)
            self._prev_step = int(state_dict.get("prev_step", -2))
        else:
            self._prev, self._prev_step = None, -2
        self._idx = {
            id(params[i]): v.to(params[i].device)
            for i, v in state_dict.get("sample_idx", {}).items()
        }
        self._gen = gen
        self._prev_native = None
        if self._log is not None:
            self._log.write(
                {"type": "resume", "run_id": self.run_id, "step": step, "time": time.time()}
            )

    def close(self) -> None:
        """Write any record still waiting for its loss, detach the hooks, close the outputs."""
        if self._awaiting is not None:
            self._emit(self._awaiting)
            self._awaiting = None
        for h in self._hooks:
            h.remove()
        self._hooks = []
        if self._log is not None:
            self._log.close()
        if self._tb is not None:
            self._tb.close()
            self._tb = None

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
