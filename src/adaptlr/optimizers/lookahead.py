r"""Lookahead (Zhang et al., 2019): k steps forward with any optimizer, one step back."""

from __future__ import annotations

from collections import OrderedDict, defaultdict
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

__all__ = ["Lookahead"]

#: where the slow weights start (see :class:`Lookahead`)
SLOW_STARTS = ("after_first_step", "initial")
#: what a synchronisation does to the inner optimizer's state
INNER_STATES = ("keep", "reset")


def lookahead_sync(fast: list[Tensor], slow: list[Tensor], alpha: float) -> None:
    r"""The outer step, in place: :math:`\theta \leftarrow \alpha\theta + (1-\alpha)\phi`,
    :math:`\phi \leftarrow \theta`.

    Written as ``torch_optimizer.Lookahead`` rounds it (:math:`\alpha\theta + (1-\alpha)\phi`,
    not the paper's :math:`\phi + \alpha(\theta - \phi)`), so results match it bit for bit.
    """
    if not fast:
        return
    torch._foreach_mul_(fast, alpha)
    torch._foreach_add_(fast, slow, alpha=1.0 - alpha)
    torch._foreach_copy_(slow, fast)


class Lookahead(torch.optim.Optimizer):
    r"""Lookahead: wrap any optimizer; every ``k`` of its steps, pull back towards slow weights.

    With :math:`\theta` the parameters (fast weights) that the inner optimizer ``A`` updates and
    :math:`\phi` the slow weights, every synchronisation (the outer step) does

    .. math::
        \phi \leftarrow \phi + \alpha(\theta - \phi), \qquad \theta \leftarrow \phi,

    and between synchronisations ``A`` takes ``k`` steps,
    :math:`\theta_{t+1} = \theta_t + A(g_t)` (Zhang et al., 2019, "Lookahead Optimizer: k steps
    forward, 1 step back", Algorithm 1). The defaults follow ``torch_optimizer.Lookahead``
    (torch-optimizer 0.3.0) and give its results bit for bit: its slow weights are taken after
    the first inner step, so it synchronises after steps ``1, k+1, 2k+1, ...`` (the first one
    only records :math:`\phi`), and the inner optimizer keeps its state (momentum, moments)
    across synchronisations. ``slow_start="initial"`` is the paper's Algorithm 1
    (:math:`\phi_0 = \theta_0`, synchronisations after steps ``k, 2k, ...``);
    ``inner_state="reset"`` is the paper's other option for the inner state, cleared at each
    synchronisation so that the next inner step starts afresh.

    ``param_groups`` are the inner optimizer's (the same dicts: a scheduler or a hand edit of
    ``lr`` reaches it), ``state`` holds each parameter's slow weights (``"slow_buffer"``; the
    inner state stays in ``optimizer.state``). Every parameter of a synchronising group is
    pulled back, also one without a gradient (as in the package and the paper).

    Args:
        optimizer: the inner optimizer (any ``torch.optim.Optimizer``: adaptlr's or torch's).
        k: inner steps per synchronisation, a positive int (default 5).
        alpha: slow-weight step size :math:`\alpha \in [0, 1]` (default 0.5); 1 follows the inner
            optimizer, 0 keeps the slow weights.
        slow_start: ``"after_first_step"`` (default, the package's) or ``"initial"`` (the paper's:
            the slow weights are the parameters before the first step).
        inner_state: ``"keep"`` (default, the package's and the paper's main experiments) or
            ``"reset"`` (clear the inner optimizer's state of every parameter at each
            synchronisation).

    ``state_dict()`` holds the inner optimizer's state dict (``"inner"``), the slow weights
    (``"state"``), each group's count of steps in its cycle (``"counter"``) and the arguments;
    all plain containers and tensors, so ``torch.load(..., weights_only=True)`` reads it, and
    :meth:`load_state_dict` continues bit for bit, also mid-cycle.

    Example:
        >>> import torch
        >>> from adaptlr.optimizers import Lookahead
        >>> w = torch.nn.Parameter(torch.tensor([1.0]))
        >>> opt = Lookahead(torch.optim.SGD([w], lr=0.1), k=2, alpha=0.5)
        >>> for _ in range(3):  # loss w²/2: each SGD step multiplies w by 0.9
        ...     w.grad = w.detach().clone()
        ...     opt.step()
        >>> w.detach()  # φ = 0.9 after step 1; step 3 syncs: 0.5·0.729 + 0.5·0.9
        tensor([0.8145])
        >>> opt.state[w]["slow_buffer"]
        tensor([0.8145])
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        k: int = 5,
        alpha: float = 0.5,
        *,
        slow_start: str = "after_first_step",
        inner_state: str = "keep",
    ) -> None:
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(
                f"Lookahead: optimizer must be a torch.optim.Optimizer (adaptlr's or torch's) "
                f"to wrap, got {type(optimizer).__name__}"
            )
        _check_args(k, alpha, slow_start, inner_state)
        self.optimizer = optimizer
        self.k, self.alpha = k, alpha
        self.slow_start, self.inner_state = slow_start, inner_state
        self.defaults = {"k": k, "alpha": alpha, **optimizer.defaults}
        self.state: defaultdict[Tensor, dict[str, Any]] = defaultdict(dict)
        #: per group: inner steps taken in the current cycle
        self._counter = [0] * len(optimizer.param_groups)
        # what torch.optim.Optimizer.__init__ sets up besides the groups (hooks, profiling)
        for name in (
            "_optimizer_step_pre_hooks",
            "_optimizer_step_post_hooks",
            "_optimizer_state_dict_pre_hooks",
            "_optimizer_state_dict_post_hooks",
            "_optimizer_load_state_dict_pre_hooks",
            "_optimizer_load_state_dict_post_hooks",
        ):
            setattr(self, name, OrderedDict())
        self._patch_step_function()

    # The inner optimizer's own list, also after its load_state_dict replaces it.
    @property  # type: ignore[override]
    def param_groups(self) -> list[dict[str, Any]]:
        return self.optimizer.param_groups

    @param_groups.setter
    def param_groups(self, value: list[dict[str, Any]]) -> None:
        self.optimizer.param_groups = value

    def __getstate__(self) -> dict[str, Any]:
        return dict(self.__dict__)  # torch's keeps only defaults, state and groups

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._patch_step_function()

    def __repr__(self) -> str:
        return (
            f"Lookahead (k={self.k}, alpha={self.alpha}, slow_start={self.slow_start!r}, "
            f"inner_state={self.inner_state!r})\n{self.optimizer!r}"
        )

    def _counters(self) -> list[int]:
        # groups added to the inner optimizer directly start their cycle now
        n = len(self.param_groups)
        if len(self._counter) < n:
            self._counter.extend([0] * (n - len(self._counter)))
        return self._counter

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group to the inner optimizer; its cycle starts at its first step.

        Args:
            param_group: a param group as the inner optimizer's ``add_param_group`` takes it (a dict
                with ``"params"`` and, optionally, its hyperparameters).
        """
        self.optimizer.add_param_group(param_group)
        self._counters()

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def _slow(self, p: Tensor) -> Tensor:
        st = self.state[p]
        if "slow_buffer" not in st:
            st["slow_buffer"] = p.detach().clone()
        return st["slow_buffer"]

    def _sync(self, group: dict[str, Any]) -> None:
        params = list(group["params"])
        slow = [self._slow(p) for p in params]
        lookahead_sync([p.detach() for p in params], slow, self.alpha)
        if self.inner_state == "reset":
            for p in params:
                st = self.optimizer.state.get(p)
                if st:
                    st.clear()  # the inner optimizer re-creates it at its next step

    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """One inner step; then each group whose cycle ends synchronises.

        Args:
            closure: None, or a callable that recomputes the loss and returns it, passed to the
                inner optimizer's ``step``.
        """
        counters = self._counters()
        with torch.no_grad():
            if self.slow_start == "initial":
                for group in self.param_groups:
                    for p in group["params"]:
                        self._slow(p)
        loss = self.optimizer.step() if closure is None else self.optimizer.step(closure)
        with torch.no_grad():
            for gi, group in enumerate(self.param_groups):
                if self.slow_start == "initial":
                    counters[gi] = (counters[gi] + 1) % self.k
                    if counters[gi] == 0:
                        self._sync(group)
                else:
                    if counters[gi] == 0:
                        self._sync(group)
                    counters[gi] = (counters[gi] + 1) % self.k
        return loss

    # -- resume ------------------------------------------------------------------------------
    def _params(self) -> list[Tensor]:
        return [p for g in self.param_groups for p in g["params"]]

    def state_dict(self) -> dict[str, Any]:
        """The inner state dict, the slow weights by parameter index, the counters, the args."""
        index = {id(p): i for i, p in enumerate(self._params())}
        return {
            "inner": self.optimizer.state_dict(),
            "state": {
                index[id(p)]: {"slow_buffer": st["slow_buffer"]}
                for p, st in self.state.items()
                if "slow_buffer" in st and id(p) in index
            },
            "counter": list(self._counters()),
            "k": self.k,
            "alpha": self.alpha,
            "slow_start": self.slow_start,
            "inner_state": self.inner_state,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a :meth:`state_dict` (this class's, or ``torch_optimizer.Lookahead``'s).

        Everything is checked before anything changes; the arguments saved (``k``, ``alpha``,
        the options) replace this wrapper's, as a state dict's hyperparameters do in torch.

        Args:
            state_dict: a dict as :meth:`state_dict` returns it, or as
                ``torch_optimizer.Lookahead.state_dict`` does.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(
                f"Lookahead.load_state_dict: expected a dict, got {type(state_dict).__name__}"
            )
        if "fast_state" in state_dict and "inner" not in state_dict:
            state_dict = _from_torch_optimizer(state_dict, self)
        for key in ("inner", "state", "counter"):
            if key not in state_dict:
                raise ValueError(f"Lookahead.load_state_dict: the state dict has no {key!r} entry")
        k = state_dict.get("k", self.k)
        alpha = state_dict.get("alpha", self.alpha)
        slow_start = state_dict.get("slow_start", self.slow_start)
        inner_state = state_dict.get("inner_state", self.inner_state)
        _check_args(k, alpha, slow_start, inner_state)
        counter = state_dict["counter"]
        n_groups = len(self.param_groups)
        if (
            not isinstance(counter, (list, tuple))
            or len(counter) != n_groups
            or not all(isinstance(c, int) and 0 <= c < k for c in counter)
        ):
            raise ValueError(
                f"Lookahead.load_state_dict: 'counter' must list one int in [0, k={k}) per param "
                f"group ({n_groups}), got {counter!r}"
            )
        params = self._params()
        slow: dict[Tensor, Tensor] = {}
        for i, st in state_dict["state"].items():
            if not isinstance(i, int) or not 0 <= i < len(params):
                raise ValueError(
                    f"Lookahead.load_state_dict: slow weights for parameter index {i!r}, but "
                    f"this optimizer has {len(params)} parameters"
                )
            buf = st.get("slow_buffer") if isinstance(st, Mapping) else None
            p = params[i]
            if not isinstance(buf, Tensor) or buf.shape != p.shape:
                raise ValueError(
                    f"Lookahead.load_state_dict: parameter {i} needs a 'slow_buffer' tensor of "
                    f"shape {tuple(p.shape)}, got {buf!r:.80}"
                )
            slow[p] = buf
        self.optimizer.load_state_dict(state_dict["inner"])  # checks its own before changing
        self.state = defaultdict(dict)
        for p, buf in slow.items():
            self.state[p]["slow_buffer"] = buf.to(device=p.device, dtype=p.dtype, copy=True)
        self._counter = list(counter)
        self.k, self.alpha, self.slow_start, self.inner_state = k, alpha, slow_start, inner_state
        self.defaults.update(k=k, alpha=alpha)


def _check_args(k: Any, alpha: Any, slow_start: Any, inner_state: Any) -> None:
    if isinstance(k, bool) or not isinstance(k, int):
        raise TypeError(f"Lookahead: k must be a positive int, got {type(k).__name__} {k!r}")
    if k < 1:
        raise ValueError(f"Lookahead: k must be a positive int (steps per sync), got {k}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
        raise TypeError(f"Lookahead: alpha must be a float in [0, 1], got {type(alpha).__name__}")
    if not 0.0 <= alpha <= 1.0:  # also refuses NaN
        raise ValueError(f"Lookahead: alpha must be in [0, 1], got {alpha}")
    for name, value, allowed in (
        ("slow_start", slow_start, SLOW_STARTS),
        ("inner_state", inner_state, INNER_STATES),
    ):
        if not isinstance(value, str):
            raise TypeError(
                f"Lookahead: {name} must be one of {allowed}, got {type(value).__name__}"
            )
        if value not in allowed:
            raise ValueError(f"Lookahead: {name} must be one of {allowed}, got {value!r}")


def _from_torch_optimizer(sd: Mapping[str, Any], opt: Lookahead) -> dict[str, Any]:
    """``torch_optimizer.Lookahead``'s state dict in this class's form (its counters live in
    the groups, its slow weights under ``slow_param``)."""
    groups = [dict(g) for g in sd["param_groups"]]
    counter = [g.pop("counter", 0) for g in groups]
    return {
        "inner": {"state": sd["fast_state"], "param_groups": groups},
        "state": {i: {"slow_buffer": st["slow_param"]} for i, st in sd["slow_state"].items()},
        "counter": counter,
        "k": opt.k,
        "alpha": opt.alpha,
    }
