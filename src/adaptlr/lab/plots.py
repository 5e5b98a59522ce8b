"""Pictures of runs: contours with trajectories, 3D, loss curves, effective lr, schedules, GIF.

Every function returns a :class:`matplotlib.figure.Figure` built without ``pyplot``, so no
global figure state leaks between calls and nothing needs a display (the Agg canvas is used).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import matplotlib
import matplotlib.lines

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
    "bounds",
    "slow_fast",
    "switch",
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

    Args:
        fig: the figure to put the legend on.
        handles: the legend's entries, each an artist or a tuple of artists drawn over each
            other (a line over its band); ``None`` (default): those of every axes of ``fig``,
            each label once (the first artist with it). No handles at all: no legend.
        labels: one text per handle; ``None`` (default): each handle's ``get_label()``
            (so give ``labels`` with tuple handles). Ignored where ``handles`` is ``None``
            (the axes' labels are used).
        ncols: the number of columns (default 2), at most the number of handles.
        fontsize: the font size of the entries and of the title, in points (default 8).
        title: the legend's title; ``None`` (default): none.
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

    Args:
        y: numbers of any shape (an array or anything ``np.asarray`` takes), read as float.
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


def _draw_contour(ax: Axes, surface: Surface, *, true_min: bool = False) -> None:
    """Filled contours of ``surface`` over its window; ``true_min``: log levels from the
    surface's known minimum value, not the window's lowest point (for a window that does not
    hold the minimum: its own lowest point would look like one)."""
    gx, gy, z = _grid(surface)
    zmin = float(np.nanmin(z))
    if true_min and surface.min_value is not None:
        zmin = surface.min_value
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

    Args:
        surface: the surface whose filled contours are drawn over its ``window`` (where its
            ``log_levels`` is set: of the log of the loss above the window's lowest loss),
            its minima marked with stars and its saddles with crosses.
        trajectories: the runs drawn over it, the i-th in ``COLORS[i % len(COLORS)]``, each
            start point's path from a dot at the start; default ``()``: none.
        title: the axes' title; ``None`` (default): the surface's ``name``.
        max_paths: how many of each run's start points are drawn, the first ones (default
            64).
        ax: the axes to draw on; the figure returned is then its figure, with no legend
            added. ``None`` (default): a new figure of ``size``, with the legend.
        size: ``(width, height)`` of the new figure in inches (default ``(7.0, 5.0)``);
            unused where ``ax`` is given.
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

    Args:
        trajectories: the runs, at least one: one panel each, left to right, titled with its
            ``label``, over the contours of its own ``surface``; the i-th in
            ``COLORS[i % len(COLORS)]``. The panels share their x and y axes.
        title: the figure's title; ``None`` (default) or empty: none.
        max_paths: how many of each run's start points are drawn, the first ones (default
            64).
        size: ``(width, height)`` of the figure in inches; ``None`` (default):
            ``(4.6 * n, 4.2)`` for ``n`` panels.
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
    """The surface in 3D with the trajectories drawn on it.

    Args:
        surface: the surface, drawn from an 80 x 80 grid over its ``window``.
        trajectories: the runs drawn on it as (w1, w2, loss), from their first start point
            only, the i-th in ``COLORS[i % len(COLORS)]``, with a legend below; default
            ``()``: none.
        title: the axes' title; ``None`` (default): the surface's ``name``.
    """
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
    Zeros and non-finite values are left out of both log axes (:func:`positive`).

    Args:
        trajectories: the runs, the i-th in ``COLORS[i % len(COLORS)]``: left, its
            ``gap()`` (the loss above its surface's ``min_value``, the loss itself where that
            is ``None``; the axis reads "loss - min" or "loss" after the first run's
            surface); right, its ``grad_norm``.
        title: the figure's title; ``None`` (default) or empty: none.
        linestyles: matplotlib line styles (format strings such as ``"-"``, ``"--"``,
            ``":"``, ``"-."``); the i-th run uses ``linestyles[i % len(linestyles)]``.
            Default ``("-",)``: all solid.
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
    r"""Per coordinate: :math:`\eta_t/\sigma_t` (left) and the size of the step
    :math:`|\Delta w_i|` (right).

    ``by_run``: one row per trajectory (shared axes), for runs whose curves coincide.
    Both axes are logarithmic; zeros and non-finite values are left out (:func:`positive`).

    Args:
        trajectories: the runs, the i-th in ``COLORS[i % len(COLORS)]``, w1 solid and w2
            dashed: left, the median over its start points of its ``effective_lr`` (its
            ``lr``, :math:`\eta_t`, where that is ``None``: an optimizer without
            :math:`\sigma`); right, the median over its start points of the size of its
            ``step``.
        title: the figure's title; ``None`` (default) or empty: none.
        by_run: ``True``: one row of two panels per run, titled with its ``label``;
            ``False`` (default): every run in one row.
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
    """Learning rate against step for each named schedule.

    Args:
        curves: the schedules by legend name, each a function from the step (an ``int``
            from 0) to the learning rate (anything ``float`` takes), drawn in
            ``COLORS`` in order.
        steps: how many steps are drawn: ``t = 0, 1, ..., steps - 1``.
        title: the axes' title; ``None`` (default): ``"learning-rate schedule"``.
    """
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

    Args:
        surface: the surface whose contours are drawn under the paths (as in
            :func:`contour`).
        trajectories: the runs, at least one, the i-th in ``COLORS[i % len(COLORS)]``; a
            frame shows the first k points of each (k up to the longest run's steps + 1).
        path: the file to write; its name should end in ``.gif`` (Pillow picks the format
            from it). Missing parent folders are made.
        frames: the most frames, a positive int (default 60): k runs over ``frames`` values
            spaced geometrically from 1 to steps + 1, rounded, repeats dropped (so short
            runs get fewer, and early steps more of them).
        fps: frames per second (default 12): each frame is shown ``int(1000 / fps)`` ms.
        max_paths: how many of each run's start points are drawn, the first ones (default
            16).
        title: the axes' title; ``None`` (default): the surface's ``name``.
        linestyles: matplotlib line styles (format strings such as ``"-"``, ``"--"``); the
            i-th run uses ``linestyles[i % len(linestyles)]``. Default ``("-",)``: all
            solid.
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
    """Write ``fig`` as PNG (parents created); returns the path.

    Args:
        fig: the figure to write.
        path: the file; its extension picks the format (matplotlib's ``savefig``: ``.png``,
            ``.svg``, ``.pdf``, ...). Without one, ``.png`` is appended to the file written,
            which the returned path does not show. Missing parent folders are made.
        dpi: pixels per inch (default 100): a figure of 7 x 5 inches is 700 x 500 pixels.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path


def bounds(
    t: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    final: float,
    eff: np.ndarray,
    *,
    title: str | None = None,
) -> Figure:
    r"""Bounds on :math:`\eta_t/\sigma_t` closing over the steps, with the run's values.

    Args:
        t: ``(T,)`` the steps (1, 2, ...), drawn on a log axis.
        lower, upper: ``(T,)`` the lower and upper bound at each step.
        final: the step size both bounds converge to (a dashed line).
        eff: ``(T, N)`` :math:`\eta_t/\sigma_t` of N elements; their median, 10-90% band and
            extremes are drawn.
        title: the axes' title.
    """
    fig = new_figure(8.0, 4.6)
    ax = fig.add_subplot()
    lo, med, hi = np.percentile(eff, [BAND[0], 50, BAND[1]], axis=1)
    band = ax.fill_between(t, lo, hi, color=COLORS[2], alpha=0.3, lw=0)
    (mid,) = ax.plot(t, med, color=COLORS[2], lw=1.6)
    (ext,) = ax.plot(t, eff.min(axis=1), ":", color=COLORS[2], lw=0.9)
    ax.plot(t, eff.max(axis=1), ":", color=COLORS[2], lw=0.9)
    # the bounds over the band, thicker: where the band touches one, η/σ is clipped
    (up,) = ax.plot(t, upper, color=COLORS[1], lw=1.6)
    (down,) = ax.plot(t, lower, color=COLORS[0], lw=1.6)
    star = ax.axhline(final, color="k", ls="--", lw=1.0)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("step $t$")
    ax.set_ylabel(r"$\eta_t/\sigma_t$")
    ax.grid(True, which="major", alpha=0.3)
    legend_outside(
        fig,
        [up, down, star, (band, mid), ext],
        [
            r"upper bound $\eta_u(t)$",
            r"lower bound $\eta_l(t)$",
            r"final step size $\alpha^\star$",
            rf"$\eta_t/\sigma_t$ of the run: median, band {BAND[0]}–{BAND[1]}%",
            "smallest and largest",
        ],
        ncols=3,
    )
    ax.set_title(title or r"bounds on $\eta_t/\sigma_t$")
    return fig


def slow_fast(
    fast: Trajectory,
    slow: np.ndarray,
    syncs: np.ndarray,
    *,
    others: Sequence[Trajectory] = (),
    others_shown: int = 12,
    zoom: int = 40,
    title: str | None = None,
) -> Figure:
    r"""Lookahead: the fast weights' path with the slow weights at each synchronisation, over
    the whole surface and over the first ``zoom`` steps, and their distances to the minimum
    and to each other.

    Args:
        fast: the run (its parameters are the fast weights :math:`\theta`), first start only.
        slow: ``(T, 2)`` the slow weights :math:`\phi` after each step.
        syncs: the steps (1-based) after which a synchronisation happened.
        others: runs drawn dashed for comparison (e.g. the inner optimizer alone).
        others_shown: the contours show their first so many steps (a diverging run's
            later steps would only cross the picture).
        zoom: the middle panel shows the first ``zoom`` steps, at their own scale.
        title: the figure's title.
    """
    fig = new_figure(14.0, 4.8)
    axes = fig.subplots(1, 3, width_ratios=[1.2, 1.0, 1.0])
    sp = slow[syncs - 1]
    # the zoom: the box around the first steps' fast and slow weights, with a margin
    first = np.vstack([fast.params[: zoom + 1, 0], sp[syncs <= zoom]])
    lo, hi = first.min(axis=0), first.max(axis=0)
    pad = 0.08 * (hi - lo)
    box = ((lo[0] - pad[0], hi[0] + pad[0]), (lo[1] - pad[1], hi[1] + pad[1]))
    surfaces = (fast.surface, replace(fast.surface, window=box))
    for ax, surface, upto in zip(axes[:2], surfaces, (None, zoom)):
        # the zoom draws its own contour (the box may leave the surface's window)
        _draw_contour(ax, surface, true_min=True)
        for i, tr in enumerate(others):
            n = others_shown + 1
            ax.plot(tr.params[:n, 0, 0], tr.params[:n, 0, 1], "--", color=COLORS[2 + i], lw=1.0)
        pts = fast.params[: (upto + 1 if upto else None), 0]
        ax.plot(pts[:, 0], pts[:, 1], color=COLORS[0], lw=0.8, marker=".", ms=3)
        shown = sp if upto is None else sp[syncs <= upto]
        ax.plot(shown[:, 0], shown[:, 1], "o-", color=COLORS[1], lw=1.3, ms=4, mec="k", mew=0.4)
        ax.plot(*fast.params[0, 0], "o", color=COLORS[0], ms=6)
        ax.set_xlim(*surface.window[0])  # a diverging comparison run must not widen the view
        ax.set_ylim(*surface.window[1])
    axes[0].set_title("the whole path", fontsize=9)
    axes[1].set_title(f"the first {zoom} steps", fontsize=9)
    ax2 = axes[2]
    t = np.arange(1, slow.shape[0] + 1)
    handles = []
    (h,) = ax2.plot(t, positive(fast.distance()[1:, 0]), color=COLORS[0], lw=1.0)
    handles.append((h, fast.label))
    slow_dist = fast.surface.distance_to_minimum(torch.from_numpy(sp)).numpy()
    # open circles: the fast weights' line stays visible through them
    (h,) = ax2.plot(syncs, positive(slow_dist), "o", color=COLORS[1], ms=3.5, mfc="none", mew=0.8)
    handles.append((h, r"slow weights $\phi$ at each synchronisation"))
    gap = np.linalg.norm(fast.params[1:, 0] - slow, axis=1)
    (h,) = ax2.plot(t, positive(gap), color="k", lw=0.6, alpha=0.7)
    handles.append((h, r"$\|\theta - \phi\|$ (0 at a synchronisation: not drawn)"))
    for i, tr in enumerate(others):
        (h,) = ax2.plot(
            np.arange(tr.steps + 1), positive(tr.distance()[:, 0]), "--", color=COLORS[2 + i]
        )
        handles.append((h, tr.label))
    ax2.set_yscale("log")
    # a diverging comparison run leaves the top: the Lookahead run keeps its scale
    top = float(np.nanmax(fast.distance()))
    ax2.set_ylim(top=30 * top)
    ax2.set_xlabel("step $t$")
    ax2.set_ylabel("distance")
    ax2.grid(True, which="major", alpha=0.3)
    ax2.set_title("distance to the minimum, and between θ and φ", fontsize=9)
    legend_outside(fig, [h for h, _ in handles], [lab for _, lab in handles], ncols=2)
    if title:
        fig.suptitle(title)
    return fig


def switch(
    tr: Trajectory,
    switch_step: int,
    sgd_lr: float,
    *,
    others: Sequence[Trajectory] = (),
    title: str | None = None,
) -> Figure:
    r"""SWATS: the path with its Adam and SGD phases and the switch marked, over the whole
    surface and around the switch, and :math:`\eta_t/\sigma_t` per coordinate with the SGD
    step size it switched to.

    Args:
        tr: the run (first start only); its ``effective_lr`` is Adam's :math:`\eta_t/\sigma_t`
            before the switch and the SGD step size after it.
        switch_step: the step count at the switch (the first SGD step is the next one);
            0: it never switched.
        sgd_lr: :math:`\Lambda`, the SGD step size it switched to.
        others: runs drawn for comparison (e.g. Adam alone), in their own colours, dashed;
            the zoom and the step sizes show them from the switch on, where they differ.
        title: the figure's title.
    """
    fig = new_figure(14.0, 4.9)
    axes = fig.subplots(1, 3, width_ratios=[1.2, 1.0, 1.1])
    k = switch_step if switch_step > 0 else tr.steps
    path = tr.params[:, 0]
    # the zoom: the box around the SGD phase and the other runs after the switch (without
    # a switch: around the last quarter of the steps)
    z = k if switch_step > 0 else (3 * tr.steps) // 4
    after = np.vstack([path[z:], *[o.params[z:, 0] for o in others]])
    lo, hi = after.min(axis=0), after.max(axis=0)
    pad = 0.1 * np.maximum(hi - lo, 1e-12)
    box = ((lo[0] - pad[0], hi[0] + pad[0]), (lo[1] - pad[1], hi[1] + pad[1]))
    for ax, surface in zip(axes[:2], (tr.surface, replace(tr.surface, window=box))):
        _draw_contour(ax, surface, true_min=True)
        for i, other in enumerate(others):
            ax.plot(other.params[k:, 0, 0], other.params[k:, 0, 1], "--", color=COLORS[2 + i])
        ax.plot(path[: k + 1, 0], path[: k + 1, 1], color=COLORS[0], lw=1.4, marker=".", ms=3)
        if switch_step > 0:
            ax.plot(path[k:, 0], path[k:, 1], color=COLORS[1], lw=1.2, marker=".", ms=3)
            ax.plot(*path[k], "D", color="w", mec="k", ms=8, zorder=6)
        ax.plot(*path[0], "o", color=COLORS[0], ms=6)
        ax.set_xlim(*surface.window[0])
        ax.set_ylim(*surface.window[1])
    axes[0].set_title("path", fontsize=9)
    axes[1].set_title("around the switch" if switch_step > 0 else "the end", fontsize=9)
    ax = axes[2]
    t = np.arange(1, tr.steps + 1)
    for c, style in ((0, "-"), (1, "--")):
        e = positive(tr.effective_lr[:, 0, c])
        ax.plot(t[:k], e[:k], style, color=COLORS[0], lw=1.2)
        ax.plot(t[k - 1 :], e[k - 1 :], style, color=COLORS[1], lw=1.2)
        for i, other in enumerate(others):
            if other.effective_lr is not None:
                oe = positive(other.effective_lr[:, 0, c])
                ax.plot(t[k - 1 :], oe[k - 1 :], style, color=COLORS[2 + i], lw=0.9)
    if switch_step > 0:
        ax.axvline(switch_step, color="grey", ls=":", lw=1.0)
    ax.set_yscale("log")
    ax.set_xlabel("step $t$")
    ax.set_ylabel(r"$\eta_t/\sigma_t$, after the switch $\Lambda$")
    ax.grid(True, which="major", alpha=0.3)
    ax.set_title(r"step size per coordinate (solid $w_1$, dashed $w_2$)", fontsize=9)
    line = matplotlib.lines.Line2D
    phase = "Adam phase" if switch_step > 0 else "Adam phase, no switch"
    handles = [(line([], [], color=COLORS[0], lw=1.4), f"{tr.label}: {phase}")]
    if switch_step > 0:
        handles += [
            (
                line([], [], color=COLORS[1], lw=1.4),
                rf"SGD phase, step size $\Lambda$ = {sgd_lr:.3g}",
            ),
            (
                line([], [], ls="none", marker="D", color="w", mec="k", ms=8),
                f"the switch, after step {switch_step}",
            ),
        ]
    handles += [(line([], [], ls="--", color=COLORS[2 + i]), o.label) for i, o in enumerate(others)]
    legend_outside(fig, [h for h, _ in handles], [lab for _, lab in handles], ncols=2)
    if title:
        fig.suptitle(title)
    return fig
