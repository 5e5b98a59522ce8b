"""The benchmark tasks: real training on data that ships with the packages, specified in code.

Three tasks: the two the time-to-target issue defines, and a third of another kind; each has
a seeded model, a seeded stream of ``(input, target)`` batches, the loss they train, and a
validation metric with a target:

- ``digits``: scikit-learn's ``load_digits`` (1,797 8x8 images), X/16,
  ``train_test_split(test_size=0.25, random_state=0, stratify=y)`` (1,347 train, 450
  validation); a 64-128(ReLU)-10 MLP; batches of 64 from a fresh permutation of the training set
  each epoch (the last 3 samples of a permutation, a partial batch, are left out: 21 batches an
  epoch); 1,000 steps; target validation accuracy 0.97, evaluated after every step.
- ``charlm``: the first 2,000,000 characters of the concatenation of the standard library's
  ``*.py`` files (``sysconfig.get_paths()["stdlib"]``, every subdirectory except
  ``site-packages``, ``dist-packages`` and ``__pycache__``, sorted by their relative POSIX path,
  read as UTF-8 with undecodable bytes replaced), each character its ASCII code and every
  non-ASCII character one extra symbol (129 symbols); the first 90% trains, the last 10%
  validates; a 2-layer pre-LN causal transformer (d=64, 4 heads, MLP 256 with GELU, learned
  positions, context 64); batches of 32 windows at uniformly drawn offsets; 600 steps; target
  validation loss 2.10 nats/char, the mean over 128 fixed, evenly spaced validation windows,
  evaluated every 10 steps. The text depends on the Python version (its standard library).
- ``digits_cnn``: the digits split above as 1x8x8 images; a convolutional network
  conv3x3(1->16)-ReLU-conv3x3(16->32)-ReLU-maxpool2-linear(512->10) (padding 1); batches of
  32 from a fresh permutation each epoch (42 batches an epoch, 3 samples left out); 500 steps;
  target validation accuracy 0.965, evaluated every 5 steps. The target was fixed before any
  adaptlr optimizer ran on this task, by a rule stated in advance: the median over seeds 0-2
  of torch AdamW's (its defaults) validation accuracy at half the budget, rounded down to a
  multiple of 0.005 (the measurement: docs/time_to_target.md).

``seed`` seeds the model's initialisation and the data order, each from its own generator, so
two runs with one seed give the same losses bit for bit (on one thread count).
:func:`train` trains a task with any optimizer and an optional schedule and returns the metric
curve and the steps to the target.
"""

from __future__ import annotations

import functools
import math
import os
import sysconfig
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .._checks import Integer, as_choice, fail_type
from ..lr_finder import LRFinderResult
from ..lr_finder import lr_find as _lr_find

__all__ = [
    "TASKS",
    "Task",
    "best_metric",
    "TrainResult",
    "get_task",
    "lr_find",
    "train",
    "warmup_cosine_factor",
]

Batch = tuple[torch.Tensor, torch.Tensor]
MakeOptimizer = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]


def cross_entropy(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over every position: logits ``(..., classes)``, targets ``(...)``."""
    return F.cross_entropy(output.flatten(0, -2), target.flatten())


@dataclass(frozen=True)
class Task:
    """A benchmark task: its budget, its metric and target, and how to build and feed it."""

    name: str
    steps: int  #: the step budget
    target: float
    metric: str
    higher_is_better: bool
    eval_every: int

    def model(self, seed: int) -> nn.Module:
        """The task's network, initialised from `seed` (the caller's random stream untouched)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self._build()

    def batches(self, seed: int) -> Iterator[Batch]:
        """An endless stream of training batches in the order `seed` draws."""
        raise NotImplementedError

    def evaluate(self, model: nn.Module) -> float:
        """The validation metric of `model` (in eval mode, without gradients)."""
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                return self._evaluate(model)
        finally:
            model.train(was_training)

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The training loss, cross-entropy for both tasks."""
        return cross_entropy(output, target)

    def reached(self, value: float) -> bool:
        """Whether a metric value meets the target."""
        return value >= self.target if self.higher_is_better else value <= self.target

    def _build(self) -> nn.Module:
        raise NotImplementedError

    def _evaluate(self, model: nn.Module) -> float:
        raise NotImplementedError


# -- digits ---------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def digits_split() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x_train, y_train, x_val, y_val)``: X/16 and the issue's stratified 75/25 split."""
    from sklearn.model_selection import train_test_split

    from ..monitor.demo import digits_data

    x, y = digits_data()
    # splitting the indices draws the same permutation as splitting X and y themselves
    tr, va = train_test_split(
        torch.arange(len(y)).numpy(), test_size=0.25, random_state=0, stratify=y.numpy()
    )
    tr, va = torch.from_numpy(tr), torch.from_numpy(va)
    return x[tr], y[tr], x[va], y[va]


@dataclass(frozen=True)
class Digits(Task):
    batch_size: int = 64

    def _build(self) -> nn.Module:
        return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))

    def batches(self, seed: int) -> Iterator[Batch]:
        x, y, _, _ = digits_split()
        gen = torch.Generator().manual_seed(seed)
        per_epoch = len(y) // self.batch_size
        while True:
            perm = torch.randperm(len(y), generator=gen)
            for k in range(per_epoch):
                idx = perm[k * self.batch_size : (k + 1) * self.batch_size]
                yield x[idx], y[idx]

    def _evaluate(self, model: nn.Module) -> float:
        _, _, xv, yv = digits_split()
        return (model(xv).argmax(dim=1) == yv).double().mean().item()


@dataclass(frozen=True)
class DigitsCNN(Digits):
    """The digits data as 1x8x8 images through a small convolutional network."""

    batch_size: int = 32

    def _build(self) -> nn.Module:
        return nn.Sequential(
            nn.Unflatten(1, (1, 8, 8)),
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(32 * 4 * 4, 10),
        )


# -- charlm ---------------------------------------------------------------------------------------
#: characters of the corpus, vocabulary (ASCII + one symbol for everything else)
CHARLM_CHARS = 2_000_000
VOCAB = 129
OTHER = 128


def stdlib_files(root: str | os.PathLike[str] | None = None) -> list[Path]:
    """The standard library's ``*.py`` files, sorted by path relative to `root`."""
    base = Path(root if root is not None else sysconfig.get_paths()["stdlib"])
    skip = {"site-packages", "dist-packages", "__pycache__"}
    rel: list[str] = []
    for d, dirs, files in os.walk(base):
        dirs[:] = [s for s in dirs if s not in skip]
        here = Path(d).relative_to(base)
        rel += [(here / f).as_posix() for f in files if f.endswith(".py")]
    return [base / r for r in sorted(rel)]


@functools.lru_cache(maxsize=1)
def charlm_codes() -> torch.Tensor:
    """The corpus as int64 symbol codes (2,000,000 of them), built once per process."""
    parts: list[str] = []
    n = 0
    for f in stdlib_files():
        s = f.read_bytes().decode("utf-8", errors="replace")
        parts.append(s)
        n += len(s)
        if n >= CHARLM_CHARS:
            break
    text = "".join(parts)[:CHARLM_CHARS]
    if len(text) < CHARLM_CHARS:
        raise RuntimeError(f"charlm: the standard library holds only {len(text)} characters")
    return encode(text)


def encode(text: str) -> torch.Tensor:
    """Each character's ASCII code, every non-ASCII character `OTHER` (int64)."""
    # UTF-32 gives one 4-byte code point per character, so every non-ASCII one is found
    codes = torch.from_numpy(np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).copy())
    codes = codes.to(torch.int64)
    codes[codes >= OTHER] = OTHER
    return codes


class _Block(nn.Module):
    """Pre-LN transformer block: x + attn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, d: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, hidden), nn.GELU(), nn.Linear(hidden, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, d))
        return x + self.mlp(self.ln2(x))


class CharTransformer(nn.Module):
    """Causal character model: embeddings + learned positions, blocks, final LN, linear head."""

    def __init__(
        self, vocab: int, d: int, heads: int, hidden: int, context: int, layers: int
    ) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(context, d)
        self.blocks = nn.Sequential(*(_Block(d, heads, hidden) for _ in range(layers)))
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(idx.shape[1], device=idx.device)
        return self.head(self.ln(self.blocks(self.tok(idx) + self.pos(pos))))


@dataclass(frozen=True)
class CharLM(Task):
    batch_size: int = 32
    context: int = 64
    eval_windows: int = 128

    def _build(self) -> nn.Module:
        return CharTransformer(VOCAB, d=64, heads=4, hidden=256, context=self.context, layers=2)

    def split(self) -> tuple[torch.Tensor, torch.Tensor]:
        codes = charlm_codes()
        n = len(codes) * 9 // 10
        return codes[:n], codes[n:]

    def _windows(self, data: torch.Tensor, starts: torch.Tensor) -> Batch:
        w = data[starts[:, None] + torch.arange(self.context + 1)]
        return w[:, :-1], w[:, 1:]

    def batches(self, seed: int) -> Iterator[Batch]:
        train, _ = self.split()
        gen = torch.Generator().manual_seed(seed)
        hi = len(train) - self.context  # the last start whose target window fits
        while True:
            yield self._windows(train, torch.randint(0, hi, (self.batch_size,), generator=gen))

    def eval_starts(self) -> torch.Tensor:
        """The validation windows' offsets: evenly spaced from the first to the last that fits."""
        _, val = self.split()
        last = len(val) - self.context - 1
        return torch.arange(self.eval_windows) * last // (self.eval_windows - 1)

    def _evaluate(self, model: nn.Module) -> float:
        _, val = self.split()
        x, y = self._windows(val, self.eval_starts())
        return cross_entropy(model(x), y).item()


TASKS: dict[str, Task] = {
    "digits": Digits(
        "digits", steps=1000, target=0.97, metric="val_accuracy", higher_is_better=True,
        eval_every=1,
    ),
    "charlm": CharLM(
        "charlm", steps=600, target=2.10, metric="val_loss", higher_is_better=False,
        eval_every=10,
    ),
    "digits_cnn": DigitsCNN(
        "digits_cnn", steps=500, target=0.965, metric="val_accuracy", higher_is_better=True,
        eval_every=5,
    ),
}  # fmt: skip


def get_task(name: str | Task) -> Task:
    """A task by name (``"digits"``, ``"charlm"``, ``"digits_cnn"``), or the task itself."""
    if isinstance(name, Task):
        return name
    return TASKS[as_choice("get_task", "task", name, TASKS)]


# -- training -------------------------------------------------------------------------------------


def best_metric(metric: Sequence[float], higher_is_better: bool) -> float:
    """The best finite value of a run's metric curve (NaN if none is finite).

    Args:
        metric: the metric at each evaluation.
        higher_is_better: whether the largest value is the best (accuracy) or the smallest
            (loss).
    """
    finite = [m for m in metric if math.isfinite(m)]
    if not finite:
        return math.nan
    return max(finite) if higher_is_better else min(finite)


@dataclass(frozen=True)
class TrainResult:
    """One run: training losses per step, the metric at ``eval_steps``, the steps to target."""

    task: str
    seed: int
    losses: tuple[float, ...]
    eval_steps: tuple[int, ...]
    metric: tuple[float, ...]
    steps_to_target: int | None  #: the first evaluated step count meeting the target
    diverged: bool  #: a non-finite training loss ended the run

    @property
    def final(self) -> float:
        return self.metric[-1]

    def best(self, higher_is_better: bool) -> float:
        return best_metric(self.metric, higher_is_better)


def warmup_cosine_factor(steps: int, warmup_fraction: float = 0.05) -> Callable[[int], float]:
    """Linear warm-up over ``round(warmup_fraction * steps)`` steps, then cosine to 0 at
    `steps`: a factor for :func:`train`'s `schedule` (``adaptlr.schedules.warmup_cosine``)."""
    from ..schedules import warmup_cosine

    return warmup_cosine(1.0, max(1, round(warmup_fraction * steps)), steps)


def train(
    task: str | Task,
    make_optimizer: MakeOptimizer,
    steps: int | None = None,
    seed: int = 0,
    *,
    schedule: Callable[[int], float] | None = None,
    stop_at_target: bool = False,
) -> TrainResult:
    """Train `task` from `seed` for `steps` (default: its budget) with ``make_optimizer(params)``.

    `schedule` maps the step (updates applied before it) to a factor of each group's initial lr,
    written into ``group["lr"]`` before every step, as ``torch.optim.lr_scheduler.LambdaLR``
    does, so it drives any optimizer. The metric is evaluated before training and every
    ``task.eval_every`` steps; `stop_at_target` ends the run at the first evaluation that meets
    the target (the curve up to it is what it would have been). A non-finite training loss
    ends the run (``diverged``). An optimizer with ``train()`` and ``eval()`` methods
    (Schedule-Free) is evaluated between ``opt.eval()`` and ``opt.train()``. The models are
    small: on a CPU, one thread (``torch.set_num_threads(1)``) is the fastest.
    """
    task = get_task(task)
    steps = task.steps if steps is None else Integer(1).check("train", "steps", steps)
    seed = Integer(0).check("train", "seed", seed)
    if not callable(make_optimizer):
        fail_type("train", "make_optimizer", "a callable params -> optimizer", make_optimizer)
    model = task.model(seed)
    model.train()
    opt = make_optimizer(model.parameters())
    base = [float(g["lr"]) for g in opt.param_groups]
    data = task.batches(seed)
    losses: list[float] = []
    # a Schedule-Free optimizer evaluates at its averaged point x: eval() before, train() after
    two_points = callable(getattr(opt, "eval", None)) and callable(getattr(opt, "train", None))

    def evaluate() -> float:
        if not two_points:
            return task.evaluate(model)
        opt.eval()  # type: ignore[attr-defined]
        try:
            return task.evaluate(model)
        finally:
            opt.train()  # type: ignore[attr-defined]

    eval_steps, metric = [0], [evaluate()]
    reached = 0 if task.reached(metric[0]) else None
    diverged = False
    for t in range(steps):
        if reached is not None and stop_at_target:
            break
        if schedule is not None:
            f = schedule(t)
            for g, lr in zip(opt.param_groups, base):
                g["lr"] = lr * f
        x, y = next(data)
        opt.zero_grad(set_to_none=True)
        loss = task.loss(model(x), y)
        losses.append(loss.item())
        if not math.isfinite(losses[-1]):
            diverged = True
            break
        loss.backward()
        opt.step()
        if (t + 1) % task.eval_every == 0 or t + 1 == steps:
            eval_steps.append(t + 1)
            metric.append(evaluate())
            if reached is None and task.reached(metric[-1]):
                reached = t + 1
    return TrainResult(
        task.name, seed, tuple(losses), tuple(eval_steps), tuple(metric), reached, diverged
    )


def lr_find(
    task: str | Task, make_optimizer: MakeOptimizer | None = None, seed: int = 0, **kwargs: Any
) -> LRFinderResult:
    """:func:`adaptlr.lr_finder.lr_find` on the task's model and batches of `seed` (the
    model is built for it and left as built); `kwargs` go to it (``start_lr``, ...)."""
    task = get_task(task)
    seed = Integer(0).check("lr_find", "seed", seed)
    return _lr_find(
        task.model(seed), task.loss, task.batches(seed), optimizer=make_optimizer, **kwargs
    )
