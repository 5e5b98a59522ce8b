"""DoG and LDoG: SGD whose step size is the distance travelled over the gradients seen."""

from __future__ import annotations

import dataclasses

from .. import _checks, core
from ..core import Transform
from ..core.dog import INIT_ETA as INIT_ETA_ALLOWED
from ._declare import EPS, LR, WEIGHT_DECAY, Hyper, Hyperparameters, Rule
from .dadapt import PROCESS_GROUP, SumsAcrossProcesses

REPS_REL = Hyper(
    "reps_rel",
    1e-6,
    _checks.NONNEGATIVE,
    "α, the relative initial movement: the first step size is α(1 + ‖x_0‖)/√(‖g_0‖² + ε) "
    "(the paper's r_ε = α(1 + ‖x_0‖)); 1e-4 is suggested for models with batch normalization; "
    "> 0 unless init_eta is given",
)
DOG_LR = dataclasses.replace(
    LR,
    default=1.0,
    allowed=_checks.NumberOrSchedule(0.0, lo_open=True),
    doc="c, the paper's constant multiplier of η_t (the authors advise against changing it); "
    "group['lr'] holds it, so a scheduler may scale η_t",
)
DOG_EPS = dataclasses.replace(
    EPS,
    doc="ε, added to G (the sum of squared gradient norms) once, on the first step; 0 is the "
    "paper's Algorithm 1",
)
DOG_WEIGHT_DECAY = dataclasses.replace(
    WEIGHT_DECAY,
    default=0.0,
    doc="λ: λθ is added to the gradient (L2) before G sums its square; p.grad is left as it "
    "was (the package adds λθ to p.grad in place)",
)
INIT_ETA = Hyper(
    "init_eta",
    None,
    INIT_ETA_ALLOWED,
    "η_0, the first step size itself, in place of the one reps_rel gives (r̄_0 is then 0)",
    "float | None",
)


class DoG(SumsAcrossProcesses):
    r"""DoG, "distance over gradients" (Ivgi, Hinder & Carmon, 2023), with the arguments,
    defaults and results of the authors' ``dog-optimizer`` 1.0.3 package.

    .. math::
        g_t \leftarrow g_t + \lambda x_t,\quad
        \bar r_t = \begin{cases} \alpha(1 + \lVert x_0\rVert) & t = 0\\
        \max(\bar r_{t-1}, \lVert x_t - x_0\rVert) & t > 0 \end{cases},\quad
        G_t = \epsilon + \sum_{i \le t}\lVert g_i\rVert^2,\\
        \eta_t = c\,\frac{\bar r_t}{\sqrt{G_t}},\qquad x_{t+1} = x_t - \eta_t\, g_t

    with norms over the whole param group, as one long vector (:class:`LDoG`: per tensor),
    :math:`c` = ``lr``, α = ``reps_rel``, λ = ``weight_decay``, ε = ``eps``; ``init_eta``
    replaces :math:`\eta_0`. There is no learning rate to choose; since η_t does not decay,
    the authors average the iterates (:class:`adaptlr.PolynomialDecayAverager`).

    The state, as the package keeps it: ``group["rbar"]``, ``group["G"]`` and ``group["eta"]``
    (the η of the last step: Python floats; the package keeps 0-d tensors, and ``eta`` as a
    list repeating it once per parameter) and ``state[p]["x0"]``, the package's
    ``group["init_buffer"][i]``. The package departs from the paper's Algorithm 1 by ε;
    ``eps=0`` is the paper's form. Where they differ: a parameter without a gradient is left
    out of the step's sums (‖x_0‖, G and the distance; the package fails on it) and its
    :math:`x_0` is its value at its first update; while G is 0 (possible with ``eps=0``
    only), η is 0 where the package stops on an assertion; ``p.grad`` is not changed by
    weight decay; each group starts on its own first step (the package's first step is the
    optimizer's, so a group added later fails there).

    Where each process holds only part of a group's parameters as plain tensors
    (``ZeroRedundancyOptimizer``), ``process_group`` adds the group's sums (G, the distance,
    ‖x_0‖) across processes; under DDP (each process holds every parameter) and FSDP2
    (DTensors, summed whole) it is not needed. (:class:`LDoG`'s sums are per tensor, whole on
    each process under ZeRO: it accepts ``process_group`` and has nothing to add.)

    The chain: ``[add_decayed_weights], dog`` (:class:`adaptlr.core.dog`, which also puts
    DoG's step size around any other direction). ``effective_lr()`` reports η_t everywhere.

    Example:
        >>> import torch, adaptlr
        >>> w = torch.nn.Parameter(torch.tensor([3.0, 4.0]))
        >>> opt = adaptlr.DoG([w], reps_rel=0.1, eps=0.0)
        >>> w.grad = torch.tensor([0.6, 0.8])
        >>> opt.step()   # η_0 = 0.1·(1 + ‖(3, 4)‖) / ‖(0.6, 0.8)‖ = 0.6
        >>> w.detach()
        tensor([2.6400, 3.5200])
    """

    hyperparameters = (REPS_REL, DOG_LR, DOG_WEIGHT_DECAY, DOG_EPS, INIT_ETA, "*", PROCESS_GROUP)
    rules = (
        Rule(
            lambda h: h.init_eta is not None or h.reps_rel > 0,
            "reps_rel must be > 0 unless init_eta is given (r̄ would stay 0 and η with it)",
        ),
    )

    #: one distance and one G for the whole group (LDoG: per tensor)
    layerwise = False

    @classmethod
    def _chain(cls, h: Hyperparameters) -> Transform:  # type: ignore[override]
        step = core.dog(
            lr=h.lr,
            reps_rel=h.reps_rel,
            eps=h.eps,
            init_eta=h.init_eta,
            layerwise=cls.layerwise,
            process_group=h.process_group,
        )
        # L2 decay before DoG, so that G sums the squares of the decayed gradient
        decay = (core.add_decayed_weights(h.weight_decay),) if h.weight_decay else ()
        return core.chain(*decay, step)

    torch_class = None


class LDoG(DoG):
    r"""LDoG, layer-wise DoG (Ivgi, Hinder & Carmon, 2023), with the arguments, defaults and
    results of ``dog-optimizer`` 1.0.3's ``LDoG``: :class:`DoG` with :math:`\bar r`, G and η
    of each tensor alone.

    .. math::
        \bar r^{(l)}_t = \max\bigl(\bar r^{(l)}_{t-1}, \lVert x^{(l)}_t - x^{(l)}_0\rVert\bigr),
        \quad G^{(l)}_t = G^{(l)}_{t-1} + \lVert g^{(l)}_t\rVert^2,\quad
        x^{(l)}_{t+1} = x^{(l)}_t - c\,\frac{\bar r^{(l)}_t}{\sqrt{G^{(l)}_t}}\, g^{(l)}_t

    for each tensor :math:`l`, starting from :math:`\bar r^{(l)}_0 = \alpha(1 +
    \lVert x^{(l)}_0\rVert)` and :math:`G^{(l)}_0 = \epsilon + \lVert g^{(l)}_0\rVert^2`.
    The state is per tensor: ``state[p]["rbar"]``, ``["G"]``, ``["eta"]`` (the package's
    ``group["rbar"][i]``, ``group["G"][i]``, ``group["eta"][i]``) and ``["x0"]``. A tensor
    whose first gradient comes late starts its own :math:`\bar r` then. Everything else as
    :class:`DoG`; ``effective_lr()`` reports each tensor's η_t.

    Example:
        >>> import torch, adaptlr
        >>> a = torch.nn.Parameter(torch.tensor([3.0, 4.0]))
        >>> b = torch.nn.Parameter(torch.tensor([0.0]))
        >>> opt = adaptlr.LDoG([a, b], reps_rel=0.1, eps=0.0)
        >>> a.grad, b.grad = torch.tensor([0.6, 0.8]), torch.tensor([2.0])
        >>> opt.step()   # η_0: 0.1·6/1 for a, 0.1·1/2 for b
        >>> a.detach(), b.detach()
        (tensor([2.6400, 3.5200]), tensor([-0.1000]))
    """

    hyperparameters = DoG.hyperparameters  # (listed again: LDoG gets its own chain factory)
    layerwise = True
