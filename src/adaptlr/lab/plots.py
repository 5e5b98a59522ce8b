"""Pictures of runs: contours with trajectories, 3D, loss curves, effective lr, schedules, GIF.

Every function returns a :class:`matplotlib.figure.Figure` built without ``pyplot``, so no
global figure state leaks between calls and nothing needs a display (the Agg canvas is used).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: the lab runs in CI and from the CLI

import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from PIL import Image  # noqa: E402

from .runs import Trajectory  # noqa: E402
from .surfaces import Surface  # noqa: E402

__all__ = [
    "COLORS",
    "contour",
    "surface3d",
    "loss_curves",
    "effective_lr",
    "schedules",
    "animate",
    "save",
]

#: one colour per optimizer, in order
COLORS = [
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#ff7f0e",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#7f7f7f",
    "#bcbd22",
]


def new_figure(w: float, h: float) -> Figure:
    fig = Figure(figsize=(w, h), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _grid(surface: Surface, n: int = 300) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    (x0, x1), (y0, y1) = surface.window
    xs = torch.linspace(x0, x1, n, dtype=torch.float64)
    ys = torch.linspace(y0, y1, n, dtype=torch.float64)
    gx, gy = torch.meshgrid(xs, ys, indexing="xy")
    with torch.no_grad():
        z = surface.loss(torch.stack((gx, gy), dim=-1))
    return gx.numpy(), gy.numpy(), z.numpy()


def _draw_contour(ax: Axes, surface: Surface) -> None:
    gx, gy, z = _grid(surface)
    zmin = float(np.nanmin(z))
    if surface.log_levels:
        # valleys span many decades: equal steps in log(loss - min) show the floor and walls
        gap = np.log10(z - zmin + 1e-7 * (np.nanmax(z) - zmin) + 1e-12)
        ax.contourf(gx, gy, gap, levels=30, cmap="viridis", alpha=0.85)
        ax.contour(gx, gy, gap, levels=15, colors="k", linewidths=0.3, alpha=0.4)
    else:
        ax.contourf(gx, gy, z, levels=30, cmap="viridis", alpha=0.85)
        ax.contour(gx, gy, z, levels=15, colors="k", linewidths=0.3, alpha=0.4)
    for m in surface.minima:
        ax.plot(*m, marker="*", color="white", markeredgecolor="k", markersize=14, zorder=5)
    for s in surface.saddles:
        ax.plot(*s, marker="X", color="white", markeredgecolor="k", markersize=9, zorder=5)
    (x0, x1), (y0, y1) = surface.window
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_xlabel("$w_1$")
    ax.set_ylabel("$w_2$")


def _draw_paths(
    ax: Axes, trajectories: Sequence[Trajectory], max_paths: int, upto: int | None = None
) -> list:
    lines = []
    for i, tr in enumerate(trajectories):
        color = COLORS[i % len(COLORS)]
        n = min(tr.runs, max_paths)
        lw = 1.6 if n == 1 else 0.7
        for r in range(n):
            pts = tr.params[: (upto if upto is not None else None), r]
            (line,) = ax.plot(
                pts[:, 0],
                pts[:, 1],
                "-",
                color=color,
                lw=lw,
                alpha=1.0 if n == 1 else 0.6,
                marker="." if n == 1 and tr.steps <= 300 else None,
                markersize=3,
                label=tr.label if r == 0 else None,
            )
            lines.append(line)
            ax.plot(*tr.params[0, r], "o", color=color, markersize=4 if n > 1 else 6)
    return lines


def contour(
    surface: Surface,
    trajectories: Sequence[Trajectory] = (),
    *,
    title: str | None = None,
    max_paths: int = 64,
    ax: Axes | None = None,
    size: tuple[float, float] = (7.0, 5.0),
) -> Figure:
    """Contour plot of ``surface`` with one colour per trajectory and a legend."""
    fig = ax.figure if ax is not None else new_figure(*size)
    ax = ax or fig.add_subplot()
    _draw_contour(ax, surface)
    _draw_paths(ax, trajectories, max_paths)
    if trajectories:
        ax.legend(loc="best", fontsize=8, framealpha=0.85)
    ax.set_title(title or surface.name)
    return fig  # type: ignore[return-value]


def surface3d(
    surface: Surface, trajectories: Sequence[Trajectory] = (), *, title: str | None = None
) -> Figure:
    """The surface in 3D with the trajectories drawn on it."""
    fig = new_figure(7.0, 5.5)
    ax = fig.add_subplot(projection="3d")
    gx, gy, z = _grid(surface, 80)
    ax.plot_surface(gx, gy, z, cmap="viridis", alpha=0.7, linewidth=0)
    for i, tr in enumerate(trajectories):
        r = 0  # the first start only: 3D gets unreadable fast
        ax.plot(
            tr.params[:, r, 0],
            tr.params[:, r, 1],
            tr.loss[:, r],
            color=COLORS[i % len(COLORS)],
            lw=1.5,
            label=tr.label,
        )
    if trajectories:
        ax.legend(fontsize=8)
    ax.set_xlabel("$w_1$")
    ax.set_ylabel("$w_2$")
    ax.set_zlabel("loss")
    ax.set_title(title or surface.name)
    return fig


def _band(ax: Axes, y: np.ndarray, color: str, label: str, floor: float = 1e-30) -> None:
    """Median over runs with a 10-90% band; values are floored so log axes accept them."""
    y = np.maximum(np.where(np.isfinite(y), y, np.nan), floor)
    t = np.arange(y.shape[0])
    if y.shape[1] == 1:
        ax.plot(t, y[:, 0], color=color, lw=1.2, label=label)
        return
    lo, med, hi = np.nanpercentile(y, [10, 50, 90], axis=1)
    ax.plot(t, med, color=color, lw=1.2, label=f"{label} (median)")
    ax.fill_between(t, lo, hi, color=color, alpha=0.2, lw=0)


def loss_curves(trajectories: Sequence[Trajectory], *, title: str | None = None) -> Figure:
    """Loss above the minimum and gradient norm over the steps, both on log scales."""
    fig = new_figure(9.0, 3.6)
    ax1, ax2 = fig.subplots(1, 2)
    for i, tr in enumerate(trajectories):
        color = COLORS[i % len(COLORS)]
        _band(ax1, tr.gap(), color, tr.label)
        _band(ax2, tr.grad_norm, color, tr.label)
    known = trajectories and trajectories[0].surface.min_value is not None
    ax1.set_ylabel("loss − min" if known else "loss")
    ax2.set_ylabel("‖gradient‖")
    for ax in (ax1, ax2):
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.grid(True, which="major", alpha=0.3)
    ax1.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


def effective_lr(trajectories: Sequence[Trajectory], *, title: str | None = None) -> Figure:
    """Per coordinate: eta_t/sigma_t (left) and the size of the step |Δw_i| (right)."""
    fig = new_figure(9.0, 3.6)
    ax1, ax2 = fig.subplots(1, 2)
    for i, tr in enumerate(trajectories):
        color = COLORS[i % len(COLORS)]
        for c, style in ((0, "-"), (1, "--")):
            lab = f"{tr.label}, $w_{c + 1}$"
            if tr.effective_lr is not None:
                y = np.nanmedian(tr.effective_lr[:, :, c], axis=1)
                ax1.plot(y, style, color=color, lw=1.1, label=lab)
            else:
                ax1.plot(tr.lr, style, color=color, lw=1.1, label=f"{lab} (η, no σ)")
            s = np.nanmedian(np.abs(tr.step[:, :, c]), axis=1)
            ax2.plot(np.maximum(s, 1e-20), style, color=color, lw=1.0, label=lab)
    ax1.set_ylabel("effective lr  η_t / σ_t")
    ax2.set_ylabel("step size |Δw_i|")
    for ax in (ax1, ax2):
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.grid(True, alpha=0.3)
    ax1.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    return fig


def schedules(
    curves: Mapping[str, Callable[[int], float]], steps: int, *, title: str | None = None
) -> Figure:
    """Learning rate against step for each named schedule."""
    fig = new_figure(7.0, 3.6)
    ax = fig.add_subplot()
    t = np.arange(steps)
    for i, (name, fn) in enumerate(curves.items()):
        ax.plot(t, [float(fn(int(k))) for k in t], color=COLORS[i % len(COLORS)], label=name)
    ax.set_xlabel("step t")
    ax.set_ylabel("η_t")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or "learning-rate schedule")
    return fig


def animate(
    surface: Surface,
    trajectories: Sequence[Trajectory],
    path: str | Path,
    *,
    frames: int = 60,
    fps: int = 12,
    max_paths: int = 16,
    title: str | None = None,
) -> Path:
    """An animated GIF of the trajectories growing over the contour plot; returns its path.

    The contour is drawn once; each frame only moves the lines' data, then the Agg buffer is
    handed to Pillow (no ffmpeg, no pyplot).
    """
    fig = new_figure(6.0, 4.2)
    ax = fig.add_subplot()
    _draw_contour(ax, surface)
    lines = _draw_paths(ax, trajectories, max_paths, upto=1)
    ax.legend(loc="best", fontsize=8, framealpha=0.85)
    ax.set_title(title or surface.name)
    label = ax.text(0.02, 0.03, "", transform=ax.transAxes, fontsize=9, color="w")
    for artist in (*lines, label):
        artist.set_animated(True)
    canvas = fig.canvas
    canvas.draw()
    # blitting: the contour (and constrained layout) is drawn once; frames redraw the lines
    fig.set_layout_engine("none")
    background = canvas.copy_from_bbox(fig.bbox)
    steps = max(tr.steps for tr in trajectories)
    # more frames early, where trajectories change most
    marks = np.unique(np.round(np.geomspace(1, steps + 1, frames)).astype(int))
    images = []
    for k in marks:
        canvas.restore_region(background)
        i = 0
        for tr in trajectories:
            for r in range(min(tr.runs, max_paths)):
                pts = tr.params[:k, r]
                lines[i].set_data(pts[:, 0], pts[:, 1])
                ax.draw_artist(lines[i])
                i += 1
        label.set_text(f"step {k - 1}")
        ax.draw_artist(label)
        canvas.blit(fig.bbox)
        rgba = np.asarray(canvas.buffer_rgba())
        images.append(Image.fromarray(rgba).convert("RGB").quantize(colors=128))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    return path


def save(fig: Figure, path: str | Path, dpi: int = 100) -> Path:
    """Write ``fig`` as PNG (parents created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path
