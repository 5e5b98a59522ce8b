"""Figures have content: right size, many colours, and the GIF animates."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
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


def _outside_every_axes(fig) -> None:
    """Each figure or axes legend overlaps no axes' data area (after a draw)."""
    fig.canvas.draw()
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    assert legends
    for leg in legends:
        box = leg.get_window_extent()
        for ax in fig.axes:
            assert not box.overlaps(ax.get_window_extent()), (leg, ax)


def test_legends_lie_outside_the_data() -> None:
    trs = [run(ELONGATED, "rms:lr=0.3", steps=100), run(ELONGATED, "sgd:lr=0.01", steps=100)]
    for fig in (
        plots.contour(ELONGATED, trs),
        plots.loss_curves(trs),
        plots.effective_lr(trs),
        plots.effective_lr(trs, by_run=True),
        plots.schedules({"cos": schedules.cosine(0.1, 100)}, 100),
    ):
        _outside_every_axes(fig)


def test_math_labels_are_mathtext() -> None:
    trs = [run(ELONGATED, "rms:lr=0.3", steps=50)]
    labels = [ax.get_ylabel() for ax in plots.effective_lr(trs).axes]
    labels.append(plots.schedules({"c": schedules.constant(0.1)}, 10).axes[0].get_ylabel())
    for lab in labels:  # "η_t" outside $...$ shows its underscore raw
        outside = lab.split("$")[::2]
        assert lab.count("$") == 2 and not any("_" in t or "^" in t for t in outside), lab
    assert r"$\eta_t/\sigma_t$" in labels[0] and labels[-1] == r"$\eta_t$"


def test_loss_band_in_legend_and_zeros_off_the_log_axis() -> None:
    starts = torch.tensor(
        [[-8.0, 1.0], [-7.0, 0.5], [-6.0, -0.5], [-5.0, 1.5]], dtype=torch.float64
    )
    tr = run(ELONGATED, "sgd:lr=0.01", starts, steps=60, label="GD")
    loss = tr.loss.copy()
    loss[30:] = ELONGATED.min_value  # exactly at the minimum from step 30: gap 0
    fig = plots.loss_curves([dataclasses.replace(tr, loss=loss)])
    (leg,) = fig.legends
    (text,) = [t.get_text() for t in leg.get_texts()]
    assert "median" in text and "10–90%" in text and "4 starts" in text
    bottom = fig.axes[0].get_ylim()[0]
    # the axis shows the data, not a floor thirty decades down
    assert bottom > 1e-3 * np.nanmin(np.where(tr.gap()[:30] > 0, tr.gap()[:30], np.nan))


def test_contour_grid_one_panel_per_run() -> None:
    trs = [run(ELONGATED, "rms:lr=0.3", steps=50), run(ELONGATED, "sgd:lr=0.01", steps=50)]
    fig = plots.contour_grid(trs)
    assert len(fig.axes) == 2
    for i, ax in enumerate(fig.axes):
        colours = {ln.get_color() for ln in ax.get_lines() if len(ln.get_xdata()) > 1}
        assert colours == {plots.COLORS[i]}  # each panel draws its own run alone


def test_course_figures_without_a_switch_and_with_synthetic_bounds(tmp_path: Path) -> None:
    # the demo draws them with a switch and with real bounds; here the other branches
    tr = run(ELONGATED, "rms:lr=0.3", steps=60)  # the optimizer the other tests here use
    fig = plots.switch(tr, 0, 0.0)
    _outside_every_axes(fig)  # (draws it)
    (leg,) = fig.legends
    assert [t.get_text() for t in leg.get_texts()] == [f"{tr.label}: Adam phase, no switch"]
    t = np.arange(1, 101, dtype=float)
    lower, upper = 0.1 * (1 - 1 / (0.05 * t + 1)), 0.1 * (1 + 1 / (0.05 * t))
    eff = np.clip(
        np.geomspace(1e-3, 1, 8)[None, :] * np.ones((100, 1)), lower[:, None], upper[:, None]
    )
    fig = plots.bounds(t, lower, upper, 0.1, eff, title="synthetic")
    _outside_every_axes(fig)
    _check_png(plots.save(fig, tmp_path / "bounds.png"), 20)
    red = np.array([0xD6, 0x27, 0x28])  # the upper bound's colour is drawn
    arr = np.asarray(Image.open(tmp_path / "bounds.png").convert("RGB")).astype(int)
    assert (np.abs(arr - red).sum(-1) < 30).sum() > 100
