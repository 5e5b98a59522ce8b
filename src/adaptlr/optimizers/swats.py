"""SWATS: Adam until the SGD step size it implies settles, then SGD with momentum."""

from __future__ import annotations

from .. import _checks, core
from ..core import Transform
from ..core.switch import SWITCH_FORMS
from ._declare import BETAS, EPS, LR, WEIGHT_DECAY, Declared, Hyper, Hyperparameters, Rule
from .adam import AMSGRAD
from .sgd import NESTEROV

FORM = Hyper(
    "form",
    "package",
    _checks.Choice(SWITCH_FORMS),
    "'package': torch-optimizer 0.3.0's code (a projection per tensor, the first tensor "
    "whose estimate settles switches the group mid-step, its in-place momentum); 'paper': "
    "Algorithm 1 of Keskar & Socher (one projection over the group, the switch from the next "
    "step, SGD as b = β1·b + g, θ -= (1 - β1)·Λ·b)",
    "str",
)
TOL = Hyper(
    "tol",
    1e-9,
    _checks.NONNEGATIVE,
    "ε_s, form='paper' only: the switch fires when |Λ_t - γ_t| < tol (the package form "
    "tests allclose(Λ_t, γ_t, rtol=1e-6) instead)",
)


class SWATS(Declared):
    r"""SWATS (Keskar & Socher, 2017) with the arguments, defaults and results of
    ``torch_optimizer.SWATS`` (torch-optimizer 0.3.0): Adam steps while it estimates the SGD
    step size they amount to, then SGD with momentum at that step size.

    .. math::
        g_t \leftarrow g_t + \lambda\theta_{t-1},\quad
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\quad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,\\
        x_t = \eta\,\frac{\sqrt{1-\beta_2^t}}{1-\beta_1^t}\,\frac{m_t}{\sqrt{v_t}+\epsilon},
        \quad \theta_t = \theta_{t-1} - x_t\quad\text{(Adam phase)},\\
        \gamma_t = \frac{x_t^\top x_t}{x_t^\top g_t},\quad
        \lambda_t = \beta_2\lambda_{t-1} + (1-\beta_2)\gamma_t,\quad
        \Lambda_t = \frac{\lambda_t}{1-\beta_2^t},\\
        |\Lambda_t - \gamma_t| \le 10^{-8} + 10^{-6}|\gamma_t|,\ \Lambda_t > 0,\ t > 1
        \ \Rightarrow\ \text{SGD phase at step size } \Lambda = \Lambda_t:\quad
        \theta_k = \theta_{k-1} - \Lambda\,u_k

    with the package's momentum :math:`u_k` (see :class:`adaptlr.core.switch.switch_to_sgd`:
    the first SGD step moves by :math:`(1-\beta_1)\Lambda g`, later ones by
    :math:`b_k = (1-\beta_1)(\beta_1 b_{k-1} + g_k)`, because its code scales the buffer in
    place). The estimate is made per tensor (each keeps its own :math:`\lambda`,
    ``state["exp_avg2"]``), and the first tensor whose estimate settles switches the whole
    group; the tensors after it take that step as SGD already. ``group["switch_step"]`` is the
    group's step count at the switch (0: still Adam), ``group["sgd_lr"]`` is Λ; after the
    switch the SGD step size is :math:`\Lambda\,\eta_t/\eta_{\text{switch}}`, so an lr
    schedule keeps moving it (the package instead overwrites ``group["lr"]`` with Λ, which the
    next scheduler step overwrites again; with a constant lr the two agree).
    ``weight_decay`` is L2 (added to the gradient) in both phases.

    ``form="paper"`` follows the paper's Algorithm 1 instead: one projection over the whole
    group, the switch from the next step, SGD as :math:`b_k = \beta_1 b_{k-1} + g_k`,
    :math:`\theta_k = \theta_{k-1} - (1-\beta_1)\Lambda b_k` from :math:`b = 0`, and the
    test :math:`|\Lambda_t - \gamma_t| <` ``tol``.

    The chain: ``[add_decayed_weights], switch_to_sgd(ema, ema_sq, ...), negate``; the step
    size of each phase is inside the switch.

    Example:
        >>> import torch, adaptlr
        >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
        >>> opt = adaptlr.SWATS([w], lr=0.1, eps=0.0)
        >>> (w**2).sum().backward(); opt.step()  # an Adam step: with ε = 0, lr·sign(g)
        >>> w.detach()
        tensor([ 0.9000, -1.9000])
        >>> opt.param_groups[0]["switch_step"]
        0.0
    """

    hyperparameters = (
        LR, BETAS, EPS(1e-3), WEIGHT_DECAY, AMSGRAD, NESTEROV, "*", FORM, TOL,
    )  # fmt: skip
    rules = (
        Rule(
            lambda h: not (h.nesterov and h.form == "paper"),
            "nesterov=True requires form='package' (the paper's SGD phase has no Nesterov form)",
        ),
    )

    @staticmethod
    def _chain(h: Hyperparameters) -> Transform:
        b1, b2 = h.betas
        switch = core.switch_to_sgd(
            core.ema(b1, debias=False),
            core.ema_sq(b2, eps=h.eps, amsgrad=h.amsgrad),
            lr=h.lr,
            b1=b1,
            b2=b2,
            nesterov=h.nesterov,
            form=h.form,
            tol=h.tol,
        )
        decay = (core.add_decayed_weights(h.weight_decay),) if h.weight_decay else ()
        return core.chain(*decay, switch, core.negate())

    torch_class = None
