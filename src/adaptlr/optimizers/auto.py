"""``Auto``: adaptlr's answer to "I do not want to choose a learning rate".

Schedule-Free AdamW whose step size is Prodigy's distance estimate, measured along the
sequence z that takes Schedule-Free's plain steps. How it was chosen, and the measured table
it rests on, are in docs/time_to_target.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .. import core
from ..core import Transform, resolve
from ..core.base import Value
from ._declare import EPS, Hyper, Hyperparameters
from .dadapt import D0, GROWTH_RATE, LR_FREE, PROCESS_GROUP, DistanceOptimizer, growth
from .prodigy import BETA3, D_COEF
from .schedule_free import SF_BETAS, SF_WEIGHT_DECAY, WEIGHT_LR_POWER, R, _decay, _ScheduleFree

AUTO_D0 = Hyper(
    "d0",
    1e-3,
    D0.allowed,
    "the initial estimate d, which is also the smallest step size d·η (the estimate only "
    "grows); the default is torch's AdamW lr. Lower it for a model that needs smaller steps "
    "(fine-tuning a pretrained network)",
)


@dataclass(frozen=True)
class _Root:
    """``count -> √β2``: β3's default, as Prodigy's (β2 stays group data, not a constant)."""

    b2: Value

    def __call__(self, count: int) -> float:
        return math.sqrt(resolve(self.b2, count))


class Auto(_ScheduleFree, DistanceOptimizer):
    r"""No learning rate to choose: Schedule-Free AdamW (Defazio et al., 2024) with the step
    size estimated as Prodigy does (Mishchenko & Defazio, 2023), along z.

    .. math::
        v_k = \beta_2 v_{k-1} + (1-\beta_2) g_k^2,\quad
        u_k = \frac{g_k}{\sqrt{v_k/(1-\beta_2^{k+1})}+\epsilon} + \lambda y_k,\quad
        \gamma_k = d_k\eta,\\
        r_{k+1} = \beta_3 r_k + \tfrac{d_k}{d_0}\gamma_k\langle u_k, z_0 - z_k\rangle,\quad
        s_{k+1} = \beta_3 s_k + \tfrac{d_k}{d_0}\gamma_k u_k,\quad
        d_{k+1} = \min\Bigl(\max\bigl(d_k, c\,\tfrac{r_{k+1}}{\|s_{k+1}\|_1}\bigr),\
            \Gamma d_k\Bigr),\\
        c_{k+1} = \frac{(\max_{i\le k}\gamma_i)^2}{\sum_{j\le k}(\max_{i\le j}\gamma_i)^2},
        \quad
        y_{k+1} = y_k + c_{k+1}(z_k - y_k) + \gamma_k\bigl(\beta_1(1-c_{k+1})-1\bigr)u_k,\quad
        z_{k+1} = z_k - \gamma_k u_k

    (weights :math:`(k+1)^r\gamma_{\max}^p` with ``r`` and ``weight_lr_power``; the
    estimate also keeps Prodigy's ``d_max``). The inner product and the norm run over every
    param group; η = ``lr`` (leave it at 1), c = ``d_coef``, Γ = ``growth_rate``.

    **Where it comes from.** Schedule-Free AdamW reached the benchmark's targets soonest
    of every method tried, but at a learning rate chosen from a grid; Prodigy estimates
    that rate with no grid. Prodigy's estimate measures how far the iterate has travelled;
    in Schedule-Free the point y where gradients are taken moves only about 1−β1 as far
    as z, so the estimate is taken along z (:class:`adaptlr.core.schedule_free_distance`).
    The averaging weighs each step by γ_max², so the early steps, taken while d was still
    small, count little in x. No warm-up: the growing estimate is one.

    **When to use it, and when not**: README's "No learning rate to choose" and the
    section ``adaptlr.Auto`` of docs/time_to_target.md, from its measured tables. In short:
    training from scratch with no lr to choose. The
    estimate never falls below ``d0`` (torch's AdamW lr, 1e-3, by default): for fine-tuning
    a pretrained model, whose steps must stay small, lower ``d0`` or choose an lr.

    As every Schedule-Free optimizer, the parameters hold y while training:
    call ``optimizer.eval()`` before evaluating or saving the model, and
    ``optimizer.train()`` before training again (``step()`` in eval mode is an error). The
    estimate is in every group's dict (``d``, as Prodigy keeps it), in the state dict and
    in :mod:`adaptlr.monitor`'s records.

    The chain: ``group_clock(ema_sq), [add_decayed_weights], schedule_free_distance``.

    Example:
        >>> import torch, adaptlr
        >>> torch.manual_seed(0)
        <torch._C.Generator object at ...>
        >>> model = torch.nn.Linear(4, 1)
        >>> opt = adaptlr.Auto(model.parameters())
        >>> x, y = torch.randn(64, 4), torch.randn(64, 1)
        >>> for _ in range(20):
        ...     opt.zero_grad()
        ...     torch.nn.functional.mse_loss(model(x), y).backward()
        ...     opt.step()
        >>> opt.param_groups[0]["d"] > 1e-3   # the step size grew from d0
        True
        >>> opt.eval()   # the average x, to evaluate or save
    """

    hyperparameters = (
        LR_FREE, SF_BETAS, EPS, SF_WEIGHT_DECAY, AUTO_D0, D_COEF, BETA3, GROWTH_RATE, "*",
        R, WEIGHT_LR_POWER, PROCESS_GROUP,
    )  # fmt: skip
    same_in_every_group = (
        "betas", "beta3", "d0", "d_coef", "growth_rate", "r", "weight_lr_power", "process_group",
    )  # fmt: skip
    reference = "adaptlr.Auto"

    @staticmethod
    def _chain(h: Hyperparameters) -> Transform:
        b1, b2 = h.betas
        return core.chain(
            core.group_clock(core.ema_sq(b2, eps=h.eps, debias=True)),
            *_decay(h),
            core.schedule_free_distance(
                lr=h.lr, b1=b1, beta3=_Root(b2) if h.beta3 is None else h.beta3, d0=h.d0,
                d_coef=h.d_coef, growth_rate=growth(h), r=h.r, weight_lr_power=h.weight_lr_power,
                process_group=h.process_group,
            ),
        )  # fmt: skip

    torch_class = None
