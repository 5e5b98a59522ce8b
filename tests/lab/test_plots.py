"""Figures have content: right size, many colours, and the GIF animates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from adaptlr import schedules
from adaptlr.lab import ELONGATED, SURFACES, plots, run


def _check_png(path: Path, min_colors: int = 50) -> None:
    img = Image.open(path)
    w, h = img.size
    assert w >= 300 and h >= 200
    arr = np.asarray(img.convert("RGB")).reshape(-1, 3)
    assert len(np.unique(arr, axis=0)) >= min_colors  # not blank, not a single colour


def test_every_kind_of_figure(tmp_path: Path) -> None:
    trs = [run(ELONGATED, "rms:lr=0.3", steps=200), run(ELONGATED, "sgd:lr=0.01", steps=200)]
    figs = {
        "contour": plots.contour(ELONGATED, trs),
        "3d": plots.surface3d(ELONGATED, trs),
        "loss": plots.loss_curves(trs),
        "eff": plots.effective_lr(trs),
        "sched": plots.schedules({"cos": schedules.cosine(0.1, 100)}, 100),
    }
    for name, fig in figs.items():
        _check_png(plots.save(fig, tmp_path / f"{name}.png"), 20 if name == "sched" else 50)


def test_contour_draws_trajectory_colours(tmp_path: Path) -> None:
    tr = run(ELONGATED, "rms:lr=0.3", steps=200)
    path = plots.save(plots.contour(ELONGATED, [tr]), tmp_path / "c.png")
    arr = np.asarray(Image.open(path).convert("RGB")).astype(int)
    blue = np.array([0x1F, 0x77, 0xB4])  # the first trajectory colour
    assert (np.abs(arr - blue).sum(-1) < 30).sum() > 200


def test_all_surfaces_render(tmp_path: Path) -> None:
    for name, s in SURFACES.items():
        _check_png(plots.save(plots.contour(s), tmp_path / f"{name}.png"))


def test_gif_animates(tmp_path: Path) -> None:
    tr = run(ELONGATED, "rms:lr=0.3", steps=300)
    path = plots.animate(ELONGATED, [tr], tmp_path / "a.gif", frames=20)
    img = Image.open(path)
    assert img.is_animated and img.n_frames >= 10
    img.seek(0)
    first = np.asarray(img.convert("RGB")).copy()
    img.seek(img.n_frames - 1)
    last = np.asarray(img.convert("RGB"))
    assert (first != last).any()  # the path grows between frames
