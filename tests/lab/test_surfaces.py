"""Surfaces: analytic gradients against autograd and finite differences, minima by hand."""

from __future__ import annotations

import math

import pytest
import torch

from adaptlr.lab import SURFACES, Surface, get_surface
from adaptlr.lab.surfaces import ELONGATED, HIMMELBLAU, elongated_hessian


def _points(surface: Surface, n: int = 50) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    (x0, x1), (y0, y1) = surface.window
    u = torch.rand(n, 2, generator=g, dtype=torch.float64)
    return torch.stack((x0 + (x1 - x0) * u[:, 0], y0 + (y1 - y0) * u[:, 1]), dim=-1)


@pytest.mark.parametrize("name", list(SURFACES))
def test_gradient_matches_autograd(name: str) -> None:
    s = SURFACES[name]
    p = _points(s).requires_grad_(True)
    (auto,) = torch.autograd.grad(s.loss(p).sum(), p)
    torch.testing.assert_close(s.grad(p.detach()), auto, rtol=1e-10, atol=1e-9)


@pytest.mark.parametrize("name", list(SURFACES))
def test_gradient_matches_central_differences(name: str) -> None:
    s = SURFACES[name]
    p = _points(s, 10)
    h = 1e-6
    fd = torch.stack(
        [
            (s.loss(p + h * e) - s.loss(p - h * e)) / (2 * h)
            for e in torch.eye(2, dtype=torch.float64)
        ],
        dim=-1,
    )
    scale = s.grad(p).abs().max().clamp(min=1.0)
    assert ((s.grad(p) - fd).abs().max() / scale) < 1e-6


# loss values computed by hand from the formulas in the docstrings
HAND = [
    ("elongated", (1.0, 0.5), 0.0),
    # e1 = -9, v = (1 - 0.5) - 0.1 * (-9) = 1.4: 81/2 + 100 * 1.96 / 2
    ("elongated", (-8.0, 1.0), 138.5),
    ("rosenbrock", (1.0, 1.0), 0.0),
    ("rosenbrock", (0.0, 0.0), 1.0),
    ("beale", (3.0, 0.5), 0.0),
    ("beale", (0.0, 0.0), 1.5**2 + 2.25**2 + 2.625**2),
    ("himmelblau", (3.0, 2.0), 0.0),
    ("himmelblau", (0.0, 0.0), 121.0 + 49.0),
    ("saddle", (0.0, 1.0), -0.25),
    ("saddle", (0.0, -1.0), -0.25),
    ("saddle", (0.0, 0.0), 0.0),
    ("rastrigin", (0.0, 0.0), 0.0),
    ("rastrigin", (0.5, 0.5), 2 * (10 + 0.25 + 10)),
]


@pytest.mark.parametrize(("name", "point", "value"), HAND)
def test_values_by_hand(name: str, point: tuple[float, float], value: float) -> None:
    s = get_surface(name)
    assert float(s.loss(torch.tensor(point, dtype=torch.float64))) == pytest.approx(
        value, abs=1e-12
    )


@pytest.mark.parametrize("name", list(SURFACES))
def test_known_minima_are_minima(name: str) -> None:
    s = SURFACES[name]
    m = torch.tensor(s.minima, dtype=torch.float64)
    assert s.loss(m).sub(s.min_value).abs().max() < 1e-12
    assert s.grad(m).abs().max() < 1e-9
    # nothing on a fine grid of the window is lower than the known minimum
    (x0, x1), (y0, y1) = s.window
    gx, gy = torch.meshgrid(
        torch.linspace(x0, x1, 200, dtype=torch.float64),
        torch.linspace(y0, y1, 200, dtype=torch.float64),
        indexing="xy",
    )
    assert float(s.loss(torch.stack((gx, gy), -1)).min()) >= s.min_value - 1e-12
    assert s.distance_to_minimum(m).max() == 0


def test_himmelblau_has_four_minima_and_saddle_has_a_saddle() -> None:
    assert len(HIMMELBLAU.minima) == 4
    s = get_surface("saddle")
    h = torch.autograd.functional.hessian(s.loss, torch.zeros(2, dtype=torch.float64))
    eig = torch.linalg.eigvalsh(h)
    assert eig[0] < 0 < eig[1]  # a saddle: one direction down, one up


def test_elongated_is_convex_and_elongated() -> None:
    eig = torch.linalg.eigvalsh(elongated_hessian(ELONGATED))
    assert eig.min() > 0
    assert 90 < float(eig.max() / eig.min()) < 120  # curvatures differ ~100x
    # Hessian by hand: [[a + b c^2, -b c], [-b c, b]] with a=1, b=100, c=0.1
    torch.testing.assert_close(
        elongated_hessian(ELONGATED), torch.tensor([[2.0, -10.0], [-10.0, 100.0]]).double()
    )


def test_from_function_two_forms_and_autograd_gradient() -> None:
    s2 = Surface.from_function(lambda x, y: (x - 1) ** 2 + 10 * y**2, minima=[(1.0, 0.0)])
    s1 = Surface.from_function(lambda xy: (xy[..., 0] - 1) ** 2 + 10 * xy[..., 1] ** 2)
    p = torch.tensor([[2.0, 3.0], [0.0, -1.0]], dtype=torch.float64)
    expected = torch.tensor([[2.0, 60.0], [-2.0, -20.0]], dtype=torch.float64)
    with torch.no_grad():  # the lab calls gradients under no_grad
        torch.testing.assert_close(s2.grad(p), expected)
        torch.testing.assert_close(s1.grad(p), expected)
    assert s2.min_value == 0.0


def test_scaled_surface() -> None:
    s = get_surface("rastrigin").scaled(0.01)
    p = torch.tensor([0.3, -0.2], dtype=torch.float64)
    r = get_surface("rastrigin")
    torch.testing.assert_close(s.grad(p), 0.01 * r.grad(p))
    assert s.minima == r.minima
    assert math.isclose(float(s.loss(p)), 0.01 * float(r.loss(p)))


def test_unknown_surface_lists_allowed() -> None:
    with pytest.raises(ValueError, match="allowed: elongated, rosenbrock"):
        get_surface("nope")
