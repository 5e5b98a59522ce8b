"""Prodigy (Mishchenko & Defazio, 2023): Adam with an estimated step size, no lr to choose."""

from __future__ import annotations

from .. import _checks, core
from ..core import Transform
from ..core.distance import NoneOr
from ._declare import BETAS, WEIGHT_DECAY, Hyper, Hyperparameters
from .dadapt import (
    D0,
    DECOUPLE,
    EPS_POSITIVE,
    FSDP_IN_USE,
    GROWTH_RATE,
    LR_FREE,
    POSITIVE,
    PROCESS_GROUP,
    USE_BIAS_CORRECTION,
    DistanceOptimizer,
    Exactly,
    _coupled,
    _decoupled,
    growth,
    process_group,
)  # fmt: skip

BETA3 = Hyper(
    "beta3",
    None,
    NoneOr(0.0, 1.0, what="√β2"),
    "β3, the decay rate of the estimate's running sums (None: √β2)",
    "float | None",
)
SAFEGUARD_WARMUP = Hyper(
    "safeguard_warmup",
    False,
    _checks.FLAG,
    "leave η out of the estimate's denominator s (avoids an overestimate during an lr warm-up)",
    "bool",
)
D_COEF = Hyper(
    "d_coef",
    1.0,
    POSITIVE,
    "c, a factor of the estimate d̂ (the preferred way to tune Prodigy: 0.5 to 2)",
)
SLICE_P = Hyper(
    "slice_p",
    1,
    Exactly(
        1,
        "adaptlr keeps s and p0 shaped like the parameter; the package's slice_p > 1 "
        "estimates from every p-th element only",
    ),
    "the package's memory-saving approximation",
    "int",
)
PAPER = Hyper(
    "paper",
    False,
    _checks.FLAG,
    "the paper's Algorithm 3: ε (and, with β1 = 0, the step's factor d) use d_k, the estimate "
    "the step began with; the package (False) uses the new d_{k+1}",
    "bool",
)


class Prodigy(DistanceOptimizer):
    r"""Prodigy (Mishchenko & Defazio, 2023) with the arguments, defaults and results of
    ``prodigyopt.Prodigy`` (prodigyopt 1.1.2).

    .. math::
        \lambda_k = d_k\eta\,\tfrac{\sqrt{1-\beta_2^{k+1}}}{1-\beta_1^{k+1}},\quad
        m_{k+1} = \beta_1 m_k + d_k(1-\beta_1)g_k,\quad
        v_{k+1} = \beta_2 v_k + d_k^2(1-\beta_2)g_k^2,\\
        r_{k+1} = \beta_3 r_k + \tfrac{d_k}{d_0}\lambda_k\langle g_k, \theta_0 - \theta_k\rangle,
        \quad s_{k+1} = \beta_3 s_k + \tfrac{d_k}{d_0}\lambda_k g_k,\quad
        \hat d_{k+1} = c\,\frac{r_{k+1}}{\|s_{k+1}\|_1},\\
        d_{k+1} = \min\bigl(\max(d_0, \hat d_1, \dots, \hat d_{k+1}),\ \gamma d_k\bigr),\quad
        \theta_{k+1} = \theta_k - \lambda_k\omega\theta_k
            - \lambda_k\frac{m_{k+1}}{\sqrt{v_{k+1}} + d_{k+1}\epsilon}

    with inner products and norms over every param group, η = ``lr``, β3 = ``beta3`` (None:
    √β2), c = ``d_coef``, γ = ``growth_rate``, ω = ``weight_decay`` when ``decouple`` (the
    default; else λθ is added to g first), the bias correction only with
    ``use_bias_correction``, and with ``safeguard_warmup`` s taking
    :math:`(d_k/d_0)d_k g_k` (no η). With β1 = 0 there is no ``exp_avg``: the step is
    :math:`\lambda_k d_{k+1} g_k/(\sqrt{v_{k+1}} + d_{k+1}\epsilon)`. The estimate and its
    parts are in every group's dict as the package keeps them (``d``, ``d_max``,
    ``d_numerator``, ``d_denom``, ``d_hat``); ``effective_lr()`` gives
    d·η·(bias correction)/(√v + dε), the factor of ``exp_avg`` in the step.

    The package departs from the paper's Algorithm 3 in its ε term (and the β1 = 0 step),
    which use the new estimate :math:`d_{k+1}` where the paper uses :math:`d_k`:
    ``paper=True`` gives the paper's form. (Its d/d_0 weights and its ``d_max`` bookkeeping
    give the paper's d̂ and :math:`d_{k+1} = \max(d_k, \hat d_{k+1})` when γ is inf.)

    As in the package, ``betas``, ``beta3``, ``d0``, ``d_coef``, ``growth_rate``,
    ``use_bias_correction`` and ``decouple`` must be the same in every group (the package
    reads the first group's), and ``lr`` too except that a group with lr 0 is frozen;
    ``weight_decay``, ``eps`` and ``safeguard_warmup`` may differ. Differences, all outside
    the package's documented use: a frozen group does not move at all (the package still
    moves it by its last ``exp_avg`` and its decoupled decay); a step whose gradients are
    all zero before any other leaves d as it is but still counts; ``slice_p`` must be 1;
    ``p0`` and ``s`` are shaped like the parameter (the package keeps them flat, and ``p0``
    as a 0-d zero for an all-zero parameter).

    Where each process holds only part of the parameters as plain tensors
    (``ZeroRedundancyOptimizer``, FSDP1), ``process_group`` (or the package's
    ``fsdp_in_use=True``, which means every process) adds the sums across processes; under
    DDP (each process holds every parameter) and FSDP2 (DTensors, summed whole) it is not
    needed.

    The chain: ``[add_decayed_weights], prodigy``.

    Example:
        >>> import torch, adaptlr
        >>> w = torch.nn.Parameter(torch.tensor([1.0, -3.0]))
        >>> opt = adaptlr.Prodigy([w], weight_decay=0.01)
        >>> for _ in range(5):
        ...     opt.zero_grad(); (w**2).sum().backward(); opt.step()
        >>> opt.param_groups[0]["d"] > 1e-6   # the estimate grew from d0
        True
        >>> sorted(opt.state[w])
        ['exp_avg', 'exp_avg_sq', 'p0', 's', 'step']
    """

    hyperparameters = (
        LR_FREE, BETAS, BETA3, EPS_POSITIVE, WEIGHT_DECAY, DECOUPLE(True), USE_BIAS_CORRECTION,
        SAFEGUARD_WARMUP, D0, D_COEF, GROWTH_RATE, FSDP_IN_USE, SLICE_P, "*", PAPER,
        PROCESS_GROUP,
    )  # fmt: skip
    same_in_every_group = (
        "betas", "beta3", "d0", "d_coef", "growth_rate", "use_bias_correction", "decouple",
        "paper", "fsdp_in_use", "process_group",
    )  # fmt: skip
    reference = "prodigyopt"

    @staticmethod
    def _chain(h: Hyperparameters) -> Transform:
        b1, b2 = h.betas
        part = core.prodigy(
            lr=h.lr, b1=b1, b2=b2, beta3=h.beta3, eps=h.eps, weight_decay=_decoupled(h),
            use_bias_correction=h.use_bias_correction, safeguard_warmup=h.safeguard_warmup,
            d0=h.d0, d_coef=h.d_coef, growth_rate=growth(h), first_moment=bool(b1),
            paper=h.paper, process_group=process_group(h),
        )  # fmt: skip
        return core.chain(*_coupled(h), part)

    torch_class = None
