"""The benchmark tasks (``adaptlr.lab.tasks``): data, split, sizes, determinism, training."""

from __future__ import annotations

import dataclasses
import math
import sysconfig
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from adaptlr.lab import tasks
from adaptlr.lab.tasks import TASKS, get_task, train

pytestmark = pytest.mark.usefixtures("one_thread")  # (tests/conftest.py)


def test_digits_split_is_the_issues_split() -> None:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    xt, xv, yt, yv = train_test_split(x / 16, y, test_size=0.25, random_state=0, stratify=y)
    got = tasks.digits_split()
    assert [len(t) for t in got] == [1347, 1347, 450, 450]
    for mine, ref in zip(got, (xt, yt, xv, yv)):
        np.testing.assert_array_equal(mine.numpy(), ref.astype(mine.numpy().dtype))
    assert got[0].dtype == torch.float32 and got[1].dtype == torch.int64


def test_digits_batches_are_a_fresh_permutation_each_epoch() -> None:
    task = get_task("digits")
    stream = task.batches(3)
    epochs = [[next(stream) for _ in range(21)] for _ in range(2)]  # 1347 // 64 = 21
    train_rows = Counter(tuple(r.tolist()) for r in tasks.digits_split()[0])
    for epoch in epochs:
        assert all(b[0].shape == (64, 64) and b[1].shape == (64,) for b in epoch)
        # 1344 of the 1347 training rows, none drawn twice (rows as a multiset: a few images
        # repeat in the data)
        rows = Counter(tuple(r.tolist()) for b in epoch for r in b[0])
        assert sum(rows.values()) == 1344 and all(n <= train_rows[r] for r, n in rows.items())
    assert not torch.equal(epochs[0][0][0], epochs[1][0][0])


def test_models_have_the_specified_shapes() -> None:
    mlp = get_task("digits").model(0)
    assert sum(p.numel() for p in mlp.parameters()) == 64 * 128 + 128 + 128 * 10 + 10
    lm = get_task("charlm").model(0)
    x = torch.randint(0, tasks.VOCAB, (2, 64))
    assert lm(x).shape == (2, 64, 129)
    d, mlp_w, blocks = 64, 256, 2
    per_block = 2 * 2 * d + (d * 3 * d + 3 * d) + (d * d + d) + (d * mlp_w + mlp_w + mlp_w * d + d)
    expected = 129 * d + 64 * d + blocks * per_block + 2 * d + d * 129 + 129
    assert sum(p.numel() for p in lm.parameters()) == expected


def test_digits_cnn_is_the_digits_split_as_images() -> None:
    task = get_task("digits_cnn")
    cnn = task.model(0)
    convs = (1 * 16 * 9 + 16) + (16 * 32 * 9 + 32)
    assert sum(p.numel() for p in cnn.parameters()) == convs + 32 * 4 * 4 * 10 + 10
    x, y = next(task.batches(0))
    assert x.shape == (32, 64) and y.shape == (32,) and cnn(x).shape == (32, 10)
    # the first conv sees the 8x8 image: a pixel moves only the outputs within one pixel of it
    conv = cnn[1]
    img = torch.zeros(1, 64)
    img[0, 8 * 3 + 5] = 1.0  # row 3, column 5
    out = conv(cnn[0](img)) - conv(cnn[0](torch.zeros(1, 64)))
    moved = out.abs().sum(dim=(0, 1)).nonzero().tolist()
    assert moved == [[r, c] for r in (2, 3, 4) for c in (4, 5, 6)]
    stream = task.batches(3)
    rows = Counter(tuple(r.tolist()) for _ in range(42) for r in next(stream)[0])
    assert sum(rows.values()) == 1344  # 1347 // 32 = 42 batches an epoch
    assert (task.steps, task.target, task.eval_every) == (500, 0.965, 5)


def test_charlm_is_causal() -> None:
    lm = get_task("charlm").model(0).eval()
    x = torch.randint(0, tasks.VOCAB, (1, 64))
    y = x.clone()
    y[0, 40:] = (y[0, 40:] + 1) % tasks.VOCAB
    with torch.no_grad():
        a, b = lm(x), lm(y)
    assert torch.equal(a[0, :40], b[0, :40]) and not torch.equal(a[0, 40:], b[0, 40:])


def test_charlm_text_is_the_sorted_stdlib_source() -> None:
    codes = tasks.charlm_codes()
    assert codes.shape == (2_000_000,) and codes.dtype == torch.int64
    assert int(codes.min()) >= 0 and int(codes.max()) < 129
    root = Path(sysconfig.get_paths()["stdlib"])
    first = tasks.stdlib_files()[0]
    assert first == root / "__future__.py"  # "_" sorts before the letters
    text = first.read_text(encoding="utf-8")
    assert bytes(codes[: len(text)].tolist()).decode("ascii") == text
    train_part, val_part = get_task("charlm").split()
    assert len(train_part) == 1_800_000 and len(val_part) == 200_000
    assert torch.equal(torch.cat([train_part, val_part]), codes)


def test_non_ascii_becomes_one_symbol(tmp_path: Path) -> None:
    (tmp_path / "b.py").write_text("é\n", encoding="utf-8")
    (tmp_path / "a.py").write_text("x = 'ü€'\n", encoding="utf-8")
    (tmp_path / "site-packages").mkdir()
    (tmp_path / "site-packages" / "c.py").write_text("skipped\n")
    files = tasks.stdlib_files(tmp_path)
    assert [f.name for f in files] == ["a.py", "b.py"]
    assert tasks.encode("x = 'ü€'\né").tolist() == [120, 32, 61, 32, 39, 128, 128, 39, 10, 128]


def test_charlm_windows() -> None:
    task = get_task("charlm")
    x, y = next(task.batches(0))
    assert x.shape == y.shape == (32, 64)
    assert torch.equal(x[:, 1:], y[:, :-1])  # targets are the next characters
    starts = task.eval_starts()
    _, val = task.split()
    assert len(starts) == 128 and starts[0] == 0 and starts[-1] == len(val) - 65
    gaps = starts.diff()
    assert int(gaps.max() - gaps.min()) <= 1  # evenly spaced


@pytest.mark.parametrize("name", TASKS)
def test_same_seed_same_losses_bit_for_bit(name: str) -> None:
    def run(seed: int) -> tuple[float, ...]:
        return train(name, lambda p: torch.optim.AdamW(p, lr=1e-3), steps=4, seed=seed).losses

    a, b, c = run(0), run(0), run(1)
    assert a == b and a != c and all(math.isfinite(v) for v in a)


def test_train_counts_steps_to_target_and_applies_the_schedule() -> None:
    easy = dataclasses.replace(get_task("digits"), name="easy", target=0.5, eval_every=5)
    seen: list[float] = []

    def make(params):  # noqa: ANN001, ANN202
        opt = torch.optim.SGD(params, lr=0.5)
        step = opt.step

        def logged_step(*a, **k):  # noqa: ANN002, ANN003, ANN202
            seen.append(opt.param_groups[0]["lr"])
            return step(*a, **k)

        opt.step = logged_step  # type: ignore[method-assign]
        return opt

    sched = tasks.warmup_cosine_factor(40)
    run = train(easy, make, steps=40, seed=0, schedule=sched)
    assert seen == pytest.approx([0.5 * sched(t) for t in range(40)], rel=1e-12)
    assert run.eval_steps == (0, *range(5, 41, 5))
    first = next(s for s, m in zip(run.eval_steps, run.metric) if m >= 0.5)
    assert run.steps_to_target == first
    stopped = train(easy, make, steps=40, seed=0, schedule=sched, stop_at_target=True)
    assert stopped.eval_steps[-1] == first and stopped.metric == run.metric[: len(stopped.metric)]


def test_bad_arguments() -> None:
    with pytest.raises(
        ValueError, match="task must be one of 'digits', 'charlm', 'digits_cnn', got 'mnist'"
    ):
        get_task("mnist")
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        train("digits", lambda p: torch.optim.SGD(p, lr=0.1), steps=0)
    with pytest.raises(TypeError, match="make_optimizer must be a callable"):
        train("digits", "adam")  # type: ignore[arg-type]
