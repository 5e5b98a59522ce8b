"""AdaBound and AMSBound: Adam (AMSGrad) with η/σ clipped to bounds that close on SGD."""

from __future__ import annotations

from typing import Any

from .. import _checks, core
from ..core import Transform
from ._declare import BETAS, EPS, LR, WEIGHT_DECAY, Declared, Hyper, Hyperparameters

FINAL_LR = Hyper(
    "final_lr",
    0.1,
    _checks.NONNEGATIVE,
    "α*, the SGD step size both bounds converge to (scaled by lr / base_lr, so that an lr "
    "scheduler moves the bounds too)",
)
GAMMA = Hyper(
    "gamma",
    1e-3,
    core.bounds.GAMMA,
    "γ, how fast the bounds close: η_l = α*(1 - 1/(γt+1)), η_u = α*(1 + 1/(γt)) (the paper "
    "uses 1 - β2; 0: no clipping at all)",
)
AMSBOUND = Hyper(
    "amsbound",
    False,
    _checks.FLAG,
    "divide by the running maximum of v_t (AMSBound: AMSGrad's σ inside the bounds)",
    "bool",
)
BIAS_CORRECTION = Hyper(
    "bias_correction",
    True,
    _checks.FLAG,
    "scale lr by sqrt(1 - β2^t)/(1 - β1^t) before clipping, as the adabound package does; "
    "False: the paper's Algorithm 2, lr/σ without corrections",
    "bool",
)
SQRT_T = Hyper(
    "sqrt_t",
    False,
    _checks.FLAG,
    "divide the clipped step size by √t, as the paper's Algorithm 2 (its convergence "
    "analysis) does; the adabound package does not",
    "bool",
)


class _BaseLR(_checks.Number):
    """None (the group's lr when it is added) or a finite number >= 0."""

    def __str__(self) -> str:
        return "None or " + super().__str__()

    def check(self, owner: str, name: str, value: Any) -> Any:
        return None if value is None else super().check(owner, name, value)


BASE_LR = Hyper(
    "base_lr",
    None,
    _BaseLR(0.0),
    "α0, the lr that final_lr is given for: the bounds converge to final_lr·lr/base_lr "
    "(the package's base_lrs). None: the group's lr when the group is added, kept in the "
    "group (so in the state dict); 0: final_lr unscaled",
    "float | None",
)


class AdaBound(Declared):
    r"""AdaBound (Luo et al., 2019) with the arguments, defaults and results of the authors'
    ``adabound`` 0.0.5 package.

    .. math::
        g_t \leftarrow g_t + \lambda\theta_{t-1},\quad
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\quad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,\\
        \alpha^*_t = \alpha^\star\,\frac{\alpha_t}{\alpha_0},\quad
        \eta_l(t) = \alpha^*_t\Bigl(1-\frac{1}{\gamma t+1}\Bigr),\quad
        \eta_u(t) = \alpha^*_t\Bigl(1+\frac{1}{\gamma t}\Bigr),\\
        \theta_t = \theta_{t-1} - m_t\cdot\mathrm{clip}\Bigl(
        \frac{\alpha_t\sqrt{1-\beta_2^t}/(1-\beta_1^t)}{\sqrt{v_t}+\epsilon},
        \eta_l(t), \eta_u(t)\Bigr)

    with :math:`\alpha_t` = ``lr`` (as a scheduler or a schedule sets it), :math:`\alpha_0` =
    ``base_lr`` (the lr at construction), :math:`\alpha^\star` = ``final_lr``. Early on the
    bounds are wide (Adam); as t grows both close on :math:`\alpha^*_t` (SGD with momentum).
    With ``amsbound=True`` (:class:`AMSBound`) σ uses the running maximum of :math:`v_t`.

    The package departs from the paper's Algorithm 2 in three ways, each of which is an
    option here: its step size carries Adam's bias corrections (``bias_correction=True``; the
    paper: :math:`\alpha/\sqrt{v_t}`), the paper divides the clipped step by :math:`\sqrt t`
    (``sqrt_t=True``; the package does not), and the bounds' speed is its own ``gamma`` (the
    paper's :math:`1-\beta_2`). ``bias_correction=False, sqrt_t=True, eps=0,
    gamma=1-β2`` is the paper's algorithm. ``weight_decay`` is L2 (added to the gradient).

    The chain: ``[add_decayed_weights], bound(ema, ema_sq, lr, final_lr, gamma, ...),
    negate`` (the lr is inside the bound, which clips η/σ as a whole).

    Example:
        >>> import torch, adaptlr
        >>> w = torch.nn.Parameter(torch.tensor([1.0, -3.0]))
        >>> opt = adaptlr.optimizers.AdaBound([w], lr=0.1, final_lr=0.1)
        >>> (w**2).sum().backward(); opt.step()   # η/σ ≈ 1/|g| is inside [1e-4, 100.1]: lr·sign(g)
        >>> w.detach()
        tensor([ 0.9000, -2.9000])
    """

    hyperparameters = (
        LR, BETAS, FINAL_LR, GAMMA, EPS, WEIGHT_DECAY, AMSBOUND,
        "*", BIAS_CORRECTION, SQRT_T, BASE_LR,
    )  # fmt: skip

    @staticmethod
    def _chain(h: Hyperparameters) -> Transform:
        b1, b2 = h.betas
        magnitude = core.ema_sq(b2, eps=h.eps, amsgrad=h.amsbound)
        clipped = core.bound(
            core.ema(b1, debias=False),
            magnitude,
            lr=h.lr,
            final_lr=h.final_lr,
            gamma=h.gamma,
            base_lr=h.base_lr,
            b1=b1 if h.bias_correction else None,
            b2=b2 if h.bias_correction else None,
            sqrt_t=h.sqrt_t,
        )
        decay = (core.add_decayed_weights(h.weight_decay),) if h.weight_decay else ()
        return core.chain(*decay, clipped, core.negate())

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        if group.get("base_lr") is None:
            # the package's base_lrs: the lr a group starts with, which final_lr is given for
            group["base_lr"] = group["lr"]

    torch_class = None


class AMSBound(AdaBound):
    r"""AMSBound (Luo et al., 2019): :class:`AdaBound` with AMSGrad's σ, the running maximum
    of :math:`v_t`, as the ``adabound`` package's ``AdaBound(amsbound=True)``.

    .. math::
        \hat v_t = \max(\hat v_{t-1}, v_t),\qquad
        \theta_t = \theta_{t-1} - m_t\cdot\mathrm{clip}\Bigl(
        \frac{\alpha_t\sqrt{1-\beta_2^t}/(1-\beta_1^t)}{\sqrt{\hat v_t}+\epsilon},
        \eta_l(t), \eta_u(t)\Bigr)

    Everything else (bounds, options, the paper's forms) as :class:`AdaBound`.

    Example:
        >>> import torch, adaptlr
        >>> w = torch.nn.Parameter(torch.tensor([1.0, -3.0]))
        >>> opt = adaptlr.optimizers.AMSBound([w], lr=0.1)
        >>> (w**2).sum().backward(); opt.step()
        >>> w.detach()
        tensor([ 0.9000, -2.9000])
        >>> sorted(opt.state[w])
        ['exp_avg', 'exp_avg_sq', 'max_exp_avg_sq', 'step']
    """

    hyperparameters = (
        LR, BETAS, FINAL_LR, GAMMA, EPS, WEIGHT_DECAY,
        "*", BIAS_CORRECTION, SQRT_T, BASE_LR,
    )  # fmt: skip
    fixed = {"amsbound": True}
