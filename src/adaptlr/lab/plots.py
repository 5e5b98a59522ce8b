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
    "contour_grid",
    "surface3d",
    "loss_curves",
    "effective_lr",
    "schedules",
    "animate",
    "save",
    "legend_outside",
    "positive",
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
    """A figure with constrained layout on the Agg canvas (no pyplot)."""
    fig = Figure(figsize=(w, h), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def legend_outside(
    fig: Figure,
    handles: Sequence | None = None,
    labels: Sequence[str] | None = None,
    *,
    ncols: int = 2,
    fontsize: float = 8,
    title: str | None = None,
) -> None:
    """One legend for the whole figure, below its axes: it never covers a curve.

    ``handles``/``labels`` default to those of every axes, each label once.
    """
    if handles is None:
        seen: dict[str, object] = {}
        for ax in fig.axes:
            for h, lab in zip(*ax.get_legend_handles_labels()):
                seen.setdefault(lab, h)
        labels, handles = list(seen), list(seen.values())
    if not handles:
        return
    fig.legend(
        handles,
        labels if labels is not None else [h.get_label() for h in handles],
        loc="outside lower center",
        ncols=min(ncols, len(handles)),
        fontsize=fontsize,
        frameon=False,
        title=title,
        title_fontsize=fontsize,
    )


def positive(y: np.ndarray) -> np.ndarray:
    """``y`` with zeros, negatives and non-finite values as NaN: log axes skip them.

    A floor (1e-30) instead would stretch the axis over thirty decades for one zero.
    """
    y = np.asarray(y, dtype=float)
    return np.where(np.isfinite(y) & (y > 0), y, np.nan)


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
    ax: Axes,
    trajectories: Sequence[Trajectory],
    max_paths: int,
    upto: int | None = None,
    color: str | None = None,
    linestyles: Sequence[str] = ("-",),
) -> list:
    lines = []
    for i, tr in enumerate(trajectories):
        color_i = color or COLORS[i % len(COLORS)]
        ls = linestyles[i % len(linestyles)]
        n = min(tr.runs, max_paths)
        lw = 1.6 if n == 1 else 0.7
        for r in range(n):
            pts = tr.params[: (upto if upto is not None else None), r]
            (line,) = ax.plot(
                pts[:, 0],
                pts[:, 1],
                ls,
                color=color_i,
                lw=lw,
                alpha=1.0 if n == 1 else 0.6,
                marker="." if n == 1 and tr.steps <= 300 else None,
                markersize=3,
                label=tr.label if r == 0 else None,
            )
            lines.append(line)
            ax.plot(*tr.params[0, r], "o", color=color_i, markersize=4 if n > 1 else 6)
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
    """Contour plot of ``surface`` with one colour per trajectory and a legend below it.

    Given ``ax``, draws there and leaves the legend to the caller.
    """
    own = ax is None
    fig = new_figure(*size) if own else ax.figure
    ax = ax or fig.add_subplot()
    _draw_contour(ax, surface)
    _draw_paths(ax, trajectories, max_paths)
    if trajectories and own:
        legend_outside(fig)
    ax.set_title(title or surface.name)
    return fig  # type: ignore[return-value]


def contour_grid(
    trajectories: Sequence[Trajectory],
    *,
    title: str | None = None,
    max_paths: int = 64,
    size: tuple[float, float] | None = None,
) -> Figure:
    """Small multiples: one contour panel per trajectory, each on its own surface.

    Paths that follow each other closely (the same rule with a slightly different η) hide
    one another on one contour; side by side, each is seen whole, in its own colour.
    """
    n = len(trajectories)
    fig = new_figure(*(size or (4.6 * n, 4.2)))
    axes = np.atleast_1d(fig.subplots(1, n, sharex=True, sharey=True))
    for i, (ax, tr) in enumerate(zip(axes, trajectories)):
        _draw_contour(ax, tr.surface)
        _draw_paths(ax, [tr], max_paths, color=COLORS[i % len(COLORS)])
        ax.set_title(tr.label, fontsize=9)
        if i:
            ax.set_ylabel("")
    if title:
        fig.suptitle(title)
    return fig


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
        legend_outside(fig)
    ax.set_xlabel("$w_1$")
    ax.set_ylabel("$w_2$")
    ax.set_zlabel("loss")
    ax.set_title(title or surface.name)
    return fig


BAND = (10, 90)  #: percentiles of the shaded band around the median over start points


def _band(ax: Axes, y: np.ndarray, color: str, ls: str = "-") -> tuple | object:
    """Median over runs with a 10-90% band (one run: its line); returns the legend handle.

    Zeros (a run exactly at the minimum) are left out of the log axis, not floored; a band
    whose lower edge is 0 reaches down to the lowest value drawn.
    """
    y = np.where(np.isfinite(y), y, np.nan)
    t = np.arange(y.shape[0])
    if y.shape[1] == 1:
        (line,) = ax.plot(t, positive(y[:, 0]), ls, color=color, lw=1.2)
        return line
    lo, med, hi = np.nanpercentile(y, [BAND[0], 50, BAND[1]], axis=1)
    lo, med, hi = positive(lo), positive(med), positive(hi)
    (line,) = ax.plot(t, med, ls, color=color, lw=1.2)
    shown = np.concatenate([lo, med])
    if np.isfinite(shown).any():
        lo = np.where(np.isnan(lo) & ~np.isnan(hi), np.nanmin(shown), lo)
    patch = ax.fill_between(t, lo, hi, color=color, alpha=0.2, lw=0)
    return (patch, line)  # drawn in the legend as the line over its band


def loss_curves(
    trajectories: Sequence[Trajectory],
    *,
    title: str | None = None,
    linestyles: Sequence[str] = ("-",),
) -> Figure:
    """Loss above the minimum and gradient norm over the steps, both on log scales.

    Several start points: the median with the 10-90% band, both in the legend.
    ``linestyles`` cycle over the trajectories, so curves that coincide stay visible.
    """
    fig = new_figure(9.0, 3.6 + 0.25 * ((len(trajectories) + 1) // 2))
    ax1, ax2 = fig.subplots(1, 2)
    handles, labels = [], []
    for i, tr in enumerate(trajectories):
        color = COLORS[i % len(COLORS)]
        ls = linestyles[i % len(linestyles)]
        handles.append(_band(ax1, tr.gap(), color, ls))
        _band(ax2, tr.grad_norm, color, ls)
        many = tr.runs > 1
        labels.append(
            f"{tr.label}: median, band {BAND[0]}–{BAND[1]}% of {tr.runs} starts"
            if many
            else tr.label
        )
    known = trajectories and trajectories[0].surface.min_value is not None
    ax1.set_ylabel(r"loss $-$ min" if known else "loss")
    ax2.set_ylabel(r"$\|\nabla L\|$ (gradient norm)")
    for ax in (ax1, ax2):
        ax.set_yscale("log")
        ax.set_xlabel("step $t$")
        ax.grid(True, which="major", alpha=0.3)
    legend_outside(fig, handles, labels)
    if title:
        fig.suptitle(title)
    return fig


def effective_lr(
    trajectories: Sequence[Trajectory], *, title: str | None = None, by_run: bool = False
) -> Figure:
    """Per coordinate: eta_t/sigma_t (left) and the size of the step |Δw_i| (right).

    ``by_run``: one row per trajectory (shared axes), for runs whose curves coincide.
    """
    rows = len(trajectories) if by_run else 1
    fig = new_figure(9.0, 2.9 * rows + 0.9)
    axes = fig.subplots(rows, 2, sharex=True, sharey="col", squeeze=False)
    for i, tr in enumerate(trajectories):
        color = COLORS[i % len(COLORS)]
        ax1, ax2 = axes[i if by_run else 0]
        for c, style in ((0, "-"), (1, "--")):
            lab = f"{tr.label}, $w_{c + 1}$"
            if tr.effective_lr is not None:
                y = np.nanmedian(tr.effective_lr[:, :, c], axis=1)
                ax1.plot(positive(y), style, color=color, lw=1.1, label=lab)
            else:
                ax1.plot(
                    positive(tr.lr),
                    style,
                    color=color,
                    lw=1.1,
                    label=rf"{lab} ($\eta$, no $\sigma$)",
                )
            s = np.nanmedian(np.abs(tr.step[:, :, c]), axis=1)
            # an exact 0 step (the run sits on the minimum) is left out, not floored
            ax2.plot(positive(s), style, color=color, lw=1.0, label=lab)
        if by_run:
            ax1.set_title(tr.label, fontsize=9, loc="left")
    for ax1, ax2 in axes:
        ax1.set_ylabel(r"effective lr $\eta_t/\sigma_t$")
        ax2.set_ylabel(r"step size $|\Delta w_i|$")
        for ax in (ax1, ax2):
            ax.set_yscale("log")
            ax.grid(True, alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("step $t$")
    legend_outside(fig, ncols=2 if len(trajectories) < 3 else 3, fontsize=7)
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
    ax.set_xlabel("step $t$")
    ax.set_ylabel(r"$\eta_t$")
    ax.grid(True, alpha=0.3)
    legend_outside(fig, ncols=len(curves))
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
    linestyles: Sequence[str] = ("-",),
) -> Path:
    """An animated GIF of the trajectories growing over the contour plot; returns its path.

    The contour is drawn once; each frame only moves the lines' data, then the Agg buffer is
    handed to Pillow (no ffmpeg, no pyplot). ``linestyles`` cycle over the trajectories:
    dashes let a path that follows another show both colours.
    """
    fig = new_figure(6.0, 4.2)
    ax = fig.add_subplot()
    _draw_contour(ax, surface)
    lines = _draw_paths(ax, trajectories, max_paths, upto=1, linestyles=linestyles)
    legend_outside(fig)
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
