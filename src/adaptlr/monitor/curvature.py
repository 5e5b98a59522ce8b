"""Curvature check at a critical point: extreme Hessian eigenvalues by Lanczos on HVPs.

A flat loss with a small gradient is either a minimum or a saddle point; the sign of the
smallest Hessian eigenvalue decides. Lanczos needs only Hessian-vector products (double backward
through torch.autograd), never the Hessian, and its extreme Ritz values converge first, so a few
tens of iterations give both ends of the spectrum on a model of any size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch


@dataclass
class Curvature:
    """Estimated extreme eigenvalues of the Hessian of a loss at the current parameters.

    Attributes:
        min_eigenvalue, max_eigenvalue: the extreme Ritz values.
        kind: ``"saddle"`` (a clearly negative and a clearly positive eigenvalue), ``"minimum"``
            (none clearly negative), ``"maximum"`` (none clearly positive).
        iters: Lanczos iterations run (fewer than asked when the Krylov space was exhausted).
        ritz: all Ritz values, ascending.
    """

    min_eigenvalue: float
    max_eigenvalue: float
    kind: str
    iters: int
    ritz: list[float] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"{self.kind}: Hessian eigenvalues between {self.min_eigenvalue:.4g} and "
            f"{self.max_eigenvalue:.4g} ({self.iters} Lanczos iterations)"
        )


def hessian_extremes(
    loss_fn: Callable[[], torch.Tensor],
    params: Iterable[torch.Tensor],
    iters: int = 20,
    *,
    rtol: float = 1e-4,
    seed: int = 0,
) -> Curvature:
    """Estimate the smallest and largest Hessian eigenvalues of ``loss_fn()`` w.r.t. `params`.

    Args:
        loss_fn: recomputes the scalar loss on a batch from the current parameters (called once;
            its graph is kept for all Hessian-vector products).
        params: the tensors to differentiate against (they must require grad).
        iters: Lanczos iterations (the memory is `iters` vectors of the parameters' size).
        rtol: an eigenvalue counts as negative (positive) when below ``-rtol`` (above ``rtol``)
            times the largest magnitude, which keeps round-off from calling a minimum a saddle.
        seed: seeds the random start vector, for reproducible estimates.
    """
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ValueError("params: no tensor requires grad; nothing to measure curvature against")
    if not isinstance(iters, int) or isinstance(iters, bool) or iters < 1:
        raise ValueError(f"iters must be a positive int, got {iters!r}")
    loss = loss_fn()
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise ValueError("loss_fn must return a scalar tensor")
    grads = torch.autograd.grad(loss.reshape(()), params, create_graph=True)
    sizes = [p.numel() for p in params]
    n = sum(sizes)
    # Lanczos loses orthogonality in low precision; keep the Krylov basis in at least float32
    # and reorthogonalise fully (cheap for a few tens of vectors).
    dtype = torch.float64 if params[0].dtype == torch.float64 else torch.float32
    device = params[0].device

    def hvp(v: torch.Tensor) -> torch.Tensor:
        chunks = [c.view_as(p).to(p.dtype) for c, p in zip(v.split(sizes), params, strict=True)]
        hv = torch.autograd.grad(grads, params, grad_outputs=chunks, retain_graph=True)
        return torch.cat([h.reshape(-1).to(dtype) for h in hv])

    gen = torch.Generator(device="cpu").manual_seed(seed)
    q = torch.randn(n, generator=gen, dtype=dtype).to(device)
    q = q / torch.linalg.vector_norm(q)
    basis = [q]
    alphas: list[float] = []
    betas: list[float] = []
    m = min(iters, n)
    for j in range(m):
        w = hvp(basis[j])
        alpha = torch.dot(w, basis[j])
        alphas.append(float(alpha))
        Q = torch.stack(basis)
        w = w - Q.T @ (Q @ w)  # full reorthogonalisation against the whole basis
        w = w - Q.T @ (Q @ w)
        beta = float(torch.linalg.vector_norm(w))
        scale = max(abs(a) for a in alphas) or 1.0
        if j == m - 1 or beta <= 1e-10 * scale:
            break  # the Krylov space is exhausted: the Ritz values are exact
        betas.append(beta)
        basis.append(w / beta)
    k = len(alphas)
    T = torch.diag(torch.tensor(alphas, dtype=torch.float64))
    if k > 1:
        off = torch.tensor(betas[: k - 1], dtype=torch.float64)
        T += torch.diag(off, 1) + torch.diag(off, -1)
    ritz = torch.linalg.eigvalsh(T).tolist()
    lo, hi = ritz[0], ritz[-1]
    big = max(abs(lo), abs(hi))
    neg, pos = lo < -rtol * big, hi > rtol * big
    kind = "saddle" if neg and pos else ("maximum" if neg else "minimum")
    return Curvature(lo, hi, kind, k, ritz)
