r"""Two-dimensional error surfaces with analytic gradients, known minima and a view window.

A surface maps points ``xy`` of shape ``(..., 2)`` to losses of shape ``(...)``; its gradient
maps ``(..., 2)`` to ``(..., 2)``. Every row is independent, which is what lets the lab run many
start points as one ``(R, 2)`` parameter (see :mod:`adaptlr.lab.runs`).

The lecture's surface is :data:`ELONGATED`: a convex quadratic whose two curvatures differ by a
factor of about 100. Its valley is tilted slightly (slope ``c``) so that the steep coordinate
keeps a small, non-zero gradient while the flat one still moves; on a perfectly axis-aligned
quadratic in float64 the steep coordinate lands *exactly* on its minimum and the lecture's
burst can never start (measured: the steep gradient became exactly 0.0 within 30 steps).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

__all__ = [
    "Surface",
    "SURFACES",
    "ELONGATED",
    "ROSENBROCK",
    "BEALE",
    "HIMMELBLAU",
    "SADDLE",
    "RASTRIGIN",
    "get_surface",
    "elongated",
]

Point = tuple[float, float]
Window = tuple[tuple[float, float], tuple[float, float]]


@dataclass(frozen=True)
class Surface:
    """A 2-D error surface: loss, gradient, known minima and where to look at it.

    Attributes:
        name: short name used by the CLI (``adaptlr lab run --surface NAME``).
        loss: ``(..., 2) -> (...)``.
        grad: ``(..., 2) -> (..., 2)``; analytic for the built-in surfaces.
        minima: the global minima (empty if unknown).
        min_value: the loss at the global minima (``None`` if unknown).
        window: ``((xmin, xmax), (ymin, ymax))`` for plots.
        start: a start point that shows the surface's character.
        description: one line for ``adaptlr lab surfaces``.
        log_levels: draw contours on a log scale of ``loss - min_value`` (valleys with
            a huge range of heights, e.g. Rosenbrock).
        saddles: known saddle points, for plots.
    """

    name: str
    loss: Callable[[Tensor], Tensor]
    grad: Callable[[Tensor], Tensor]
    minima: tuple[Point, ...] = ()
    min_value: float | None = None
    window: Window = ((-5.0, 5.0), (-5.0, 5.0))
    start: Point = (0.0, 0.0)
    description: str = ""
    log_levels: bool = False
    saddles: tuple[Point, ...] = field(default=())

    def __call__(self, xy: Tensor) -> Tensor:
        """The loss at ``xy`` (shape ``(..., 2)``).

        Args:
            xy: points, a tensor of shape ``(..., 2)``.
        """
        return self.loss(xy)

    def distance_to_minimum(self, xy: Tensor) -> Tensor:
        """Euclidean distance from ``xy`` (``(..., 2)``) to the nearest known minimum.

        Args:
            xy: points, a tensor of shape ``(..., 2)``; ``ValueError`` if the surface has no
                known minimum.
        """
        if not self.minima:
            raise ValueError(f"surface {self.name!r} has no known minimum")
        m = torch.tensor(self.minima, dtype=xy.dtype, device=xy.device)  # (M, 2)
        return (xy.unsqueeze(-2) - m).norm(dim=-1).min(dim=-1).values

    def scaled(self, factor: float, name: str | None = None) -> Surface:
        """The same surface with its loss (and gradient) multiplied by ``factor``.

        Scale-invariant methods (Adam, RMSProp) do not notice; methods whose step is
        proportional to the gradient (SGD, RAdam's first steps) do.

        Args:
            factor: the multiplier of the loss and the gradient; a finite number.
            name: the new surface's name; None: ``"<name>*<factor>"``.
        """
        loss, grad = self.loss, self.grad
        return replace(
            self,
            name=name or f"{self.name}*{factor:g}",
            loss=lambda xy: factor * loss(xy),
            grad=lambda xy: factor * grad(xy),
            min_value=None if self.min_value is None else factor * self.min_value,
        )

    @classmethod
    def from_function(
        cls,
        f: Callable[..., Tensor],
        *,
        name: str = "custom",
        minima: Sequence[Point] = (),
        min_value: float | None = None,
        window: Window = ((-5.0, 5.0), (-5.0, 5.0)),
        start: Point | None = None,
        description: str = "user surface (gradient by autograd)",
        log_levels: bool = False,
    ) -> Surface:
        """A surface from a Python function; its gradient comes from autograd.

        ``f`` is either ``f(xy)`` with ``xy`` of shape ``(..., 2)`` or ``f(x, y)`` with two
        tensors of shape ``(...)``; it must be written with torch operations and treat each
        point independently (it is called on a batch of points).

        Args:
            f: the loss, ``f(xy)`` or ``f(x, y)``, written with torch operations.
            name: short name (default ``"custom"``).
            minima: the global minima, (x, y) pairs (default: unknown).
            min_value: the loss at the minima; None: ``f`` at the first of ``minima`` (or
                unknown without them).
            window: ``((xmin, xmax), (ymin, ymax))`` for plots (default the square ±5).
            start: the default start point; None: 20% across and 80% up the window.
            description: one line for ``adaptlr lab surfaces``.
            log_levels: draw contours on a log scale of ``loss - min_value``; True or False.

        >>> s = Surface.from_function(lambda x, y: x**2 + 3 * y**2, minima=[(0.0, 0.0)])
        >>> s.grad(torch.tensor([[1.0, 1.0]]))
        tensor([[2., 6.]])
        """
        n_args = _positional_arity(f)
        loss_fn: Callable[[Tensor], Tensor]
        if n_args >= 2:

            def loss_fn(xy: Tensor) -> Tensor:
                return f(xy[..., 0], xy[..., 1])

        else:
            loss_fn = f

        def grad_fn(xy: Tensor) -> Tensor:
            # the lab steps under no_grad; the gradient needs a graph, so enable it here only
            with torch.enable_grad():
                x = xy.detach().requires_grad_(True)
                (g,) = torch.autograd.grad(loss_fn(x).sum(), x)
            return g

        if min_value is None and minima:
            min_value = float(loss_fn(torch.tensor(minima[0], dtype=torch.float64)))
        (x0, x1), (y0, y1) = window
        return cls(
            name=name,
            loss=loss_fn,
            grad=grad_fn,
            minima=tuple((float(a), float(b)) for a, b in minima),
            min_value=min_value,
            window=window,
            start=start if start is not None else (x0 + 0.2 * (x1 - x0), y0 + 0.8 * (y1 - y0)),
            description=description,
            log_levels=log_levels,
        )


def _positional_arity(f: Callable[..., Tensor]) -> int:
    try:
        params = inspect.signature(f).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature: assume f(xy)
        return 1
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(1 for p in params if p.kind in kinds and p.default is inspect.Parameter.empty)


def _xy(p: Tensor) -> tuple[Tensor, Tensor]:
    return p[..., 0], p[..., 1]


# --------------------------------------------------------------------------- the lecture's


def elongated(
    flat: float = 1.0,
    steep: float = 100.0,
    tilt: float = 0.1,
    minimum: Point = (1.0, 0.5),
    name: str = "elongated",
) -> Surface:
    r"""The lecture's convex, elongated error surface, a quadratic with a tilted valley.

    .. math::
        L(w) = \tfrac{a}{2}\,e_1^2 + \tfrac{b}{2}\,(e_2 - c\,e_1)^2,
        \qquad e = w - w^\ast

    ``a = flat``, ``b = steep``, ``c = tilt``. Along ``w1`` the surface is flat, along ``w2``
    steep; the Hessian is ``[[a + b c^2, -b c], [-b c, b]]`` (eigenvalues about 0.99 and
    101.01 for the defaults), the minimum is ``w*`` with loss 0.

    Args:
        flat: a, the curvature along the valley (default 1.0).
        steep: b, the curvature across it (default 100.0).
        tilt: c, the slope of the valley's floor (default 0.1).
        minimum: w*, the minimum (default (1.0, 0.5)).
        name: the surface's name (default ``"elongated"``).
    """
    a, b, c = float(flat), float(steep), float(tilt)
    m1, m2 = float(minimum[0]), float(minimum[1])

    def loss(p: Tensor) -> Tensor:
        x, y = _xy(p)
        e1 = x - m1
        v = (y - m2) - c * e1
        return 0.5 * a * e1 * e1 + 0.5 * b * v * v

    hess = torch.tensor([[a + b * c * c, -b * c], [-b * c, b]], dtype=torch.float64)
    mins = torch.tensor([m1, m2], dtype=torch.float64)

    def grad(p: Tensor) -> Tensor:
        # H (w - w*) as one matmul: this gradient runs 100,000 times in scenario 2
        return (p - mins.to(p.dtype)) @ hess.to(p.dtype)

    return Surface(
        name=name,
        loss=loss,
        grad=grad,
        minima=((m1, m2),),
        min_value=0.0,
        window=((m1 - 10.5, m1 + 2.5), (m2 - 2.0, m2 + 1.5)),
        start=(m1 - 9.0, m2 + 0.5),
        description=(
            f"the lecture's convex elongated valley: quadratic, curvatures ~{a:g} and ~{b:g}, "
            f"tilt {c:g}, minimum ({m1:g}, {m2:g})"
        ),
        log_levels=True,
    )


def elongated_hessian(surface: Surface | None = None) -> Tensor:
    """The (constant) Hessian of a quadratic surface, by differentiating its gradient."""
    s = surface or ELONGATED
    p = torch.tensor(s.minima[0], dtype=torch.float64)
    return torch.autograd.functional.jacobian(s.grad, p)


# --------------------------------------------------------------------------- classics


def _rosenbrock_loss(p: Tensor) -> Tensor:
    x, y = _xy(p)
    return (1 - x) ** 2 + 100 * (y - x * x) ** 2


def _rosenbrock_grad(p: Tensor) -> Tensor:
    x, y = _xy(p)
    r = y - x * x
    return torch.stack((-2 * (1 - x) - 400 * x * r, 200 * r), dim=-1)


def _beale_terms(p: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    x, y = _xy(p)
    t1 = 1.5 - x + x * y
    t2 = 2.25 - x + x * y * y
    t3 = 2.625 - x + x * y**3
    return x, y, t1, t2, t3


def _beale_loss(p: Tensor) -> Tensor:
    _, _, t1, t2, t3 = _beale_terms(p)
    return t1 * t1 + t2 * t2 + t3 * t3


def _beale_grad(p: Tensor) -> Tensor:
    x, y, t1, t2, t3 = _beale_terms(p)
    gx = 2 * t1 * (y - 1) + 2 * t2 * (y * y - 1) + 2 * t3 * (y**3 - 1)
    gy = 2 * t1 * x + 2 * t2 * (2 * x * y) + 2 * t3 * (3 * x * y * y)
    return torch.stack((gx, gy), dim=-1)


def _himmelblau_loss(p: Tensor) -> Tensor:
    x, y = _xy(p)
    return (x * x + y - 11) ** 2 + (x + y * y - 7) ** 2


def _himmelblau_grad(p: Tensor) -> Tensor:
    x, y = _xy(p)
    a = x * x + y - 11
    b = x + y * y - 7
    return torch.stack((4 * x * a + 2 * b, 2 * a + 4 * y * b), dim=-1)


def _saddle_loss(p: Tensor) -> Tensor:
    x, y = _xy(p)
    return x * x + 0.25 * y**4 - 0.5 * y * y


def _saddle_grad(p: Tensor) -> Tensor:
    x, y = _xy(p)
    return torch.stack((2 * x, y**3 - y), dim=-1)


_RASTRIGIN_A = 10.0


def _rastrigin_loss(p: Tensor) -> Tensor:
    return 2 * _RASTRIGIN_A + (p * p - _RASTRIGIN_A * torch.cos(2 * math.pi * p)).sum(-1)


def _rastrigin_grad(p: Tensor) -> Tensor:
    return 2 * p + 2 * math.pi * _RASTRIGIN_A * torch.sin(2 * math.pi * p)


ELONGATED = elongated()

ROSENBROCK = Surface(
    name="rosenbrock",
    loss=_rosenbrock_loss,
    grad=_rosenbrock_grad,
    minima=((1.0, 1.0),),
    min_value=0.0,
    window=((-2.0, 2.0), (-1.0, 3.0)),
    start=(-1.5, 2.0),
    description="Rosenbrock's banana valley (1-x)^2 + 100(y-x^2)^2, minimum (1, 1)",
    log_levels=True,
)

BEALE = Surface(
    name="beale",
    loss=_beale_loss,
    grad=_beale_grad,
    minima=((3.0, 0.5),),
    min_value=0.0,
    window=((-4.5, 4.5), (-4.5, 4.5)),
    start=(1.0, 1.5),
    description="Beale's function: flat plateaus and sharp ridges, minimum (3, 0.5)",
    log_levels=True,
)

# the three non-integer minima: roots of the gradient, refined by Newton's method in float64
# (tests check that the gradient vanishes there)
HIMMELBLAU = Surface(
    name="himmelblau",
    loss=_himmelblau_loss,
    grad=_himmelblau_grad,
    minima=(
        (3.0, 2.0),
        (-2.805118086952745, 3.131312518250573),
        (-3.779310253377747, -3.283185991286170),
        (3.584428340330492, -1.848126526964404),
    ),
    min_value=0.0,
    window=((-5.0, 5.0), (-5.0, 5.0)),
    start=(-0.3, -0.9),
    description="Himmelblau's function: four global minima of value 0",
    log_levels=True,
)

SADDLE = Surface(
    name="saddle",
    loss=_saddle_loss,
    grad=_saddle_grad,
    minima=((0.0, 1.0), (0.0, -1.0)),
    min_value=-0.25,
    window=((-2.0, 2.0), (-1.8, 1.8)),
    start=(-1.8, 1e-3),
    description="x^2 + y^4/4 - y^2/2: a saddle at (0, 0) between minima (0, +-1) of value -1/4",
    saddles=((0.0, 0.0),),
)

RASTRIGIN = Surface(
    name="rastrigin",
    loss=_rastrigin_loss,
    grad=_rastrigin_grad,
    minima=((0.0, 0.0),),
    min_value=0.0,
    window=((-5.12, 5.12), (-5.12, 5.12)),
    start=(2.3, -1.7),
    description="Rastrigin (A = 10): a bowl covered in local minima, global minimum (0, 0)",
)

#: every built-in surface by name
SURFACES: dict[str, Surface] = {
    s.name: s for s in (ELONGATED, ROSENBROCK, BEALE, HIMMELBLAU, SADDLE, RASTRIGIN)
}


def get_surface(name: str) -> Surface:
    """The built-in surface ``name``; ``ValueError`` listing the allowed names otherwise.

    Args:
        name: a key of :data:`SURFACES` (``"elongated"``, ``"rosenbrock"``, ``"beale"``,
            ``"himmelblau"``, ``"saddle"``, ``"rastrigin"``).
    """
    try:
        return SURFACES[name]
    except KeyError:
        raise ValueError(f"unknown surface {name!r}; allowed: {', '.join(SURFACES)}") from None
