"""Each hyperparameter of a named optimizer is declared once (name, default, allowed values,
torch's order); the constructor, the checks and the chain follow from that declaration.

The reference for the constructors is torch.optim 2.13 itself: ``inspect.signature`` of every
registered optimizer equals its torch counterpart's in names, kinds and defaults, followed by
adaptlr's own keyword-only arguments (listed here by hand).
"""

from __future__ import annotations

import inspect
import math
import warnings

import pytest
import torch

import adaptlr
from adaptlr import _checks, core
from adaptlr.optimizers._common import wrap
from adaptlr.optimizers._declare import LR, MAXIMIZE, Declared, Hyper
from adaptlr.optimizers.registry import REGISTRY
from adaptlr.torch_optim import IMPLEMENTATION_KEYS

OWN = ["state_dtype", "nonfinite"]
#: adaptlr's arguments that torch's counterpart lacks, all keyword-only, after torch's
EXTRA = {
    "sgd": OWN,
    "adagrad": OWN,
    "rmsprop": ["init", "fused", *OWN],
    "adam": OWN,
    "adamw": OWN,
    "nadam": ["fused", *OWN],
    "radam": ["fused", *OWN],
}
WITH_TORCH = [name for name, info in REGISTRY.items() if info.torch_cls is not None]
CLASSES = [info.cls for info in REGISTRY.values()]


def _described(sig: inspect.Signature) -> list[tuple[str, str, str]]:
    return [(p.name, p.kind.name, repr(p.default)) for p in sig.parameters.values()]


def test_every_optimizer_with_a_torch_counterpart_is_covered():
    assert sorted(WITH_TORCH) == sorted(EXTRA)


@pytest.mark.parametrize("name", WITH_TORCH)
def test_signature_is_torch_optims_plus_keyword_only_extras(name):
    info = REGISTRY[name]
    ours = _described(inspect.signature(info.cls))
    theirs = _described(inspect.signature(info.torch_cls))
    n = len(theirs)
    assert ours[:n] == theirs
    assert [p[0] for p in ours[n:]] == EXTRA[name]
    assert all(p[1] == "KEYWORD_ONLY" for p in ours[n:])
    # the constructor is a real function: help() and inspect see it without __signature__
    assert "__signature__" not in vars(info.cls)
    assert inspect.signature(info.cls.__init__).parameters["self"].kind.name == (
        "POSITIONAL_OR_KEYWORD"
    )


@pytest.mark.parametrize(
    "cls, torch_cls, args",
    [
        (adaptlr.Adam, torch.optim.Adam, (0.02, (0.8, 0.9), 1e-6, 0.1, True)),
        (adaptlr.RMSprop, torch.optim.RMSprop, (0.02, 0.9, 1e-6, 0.1, 0.5, True)),
        (adaptlr.Adagrad, torch.optim.Adagrad, (0.02, 0.1, 0.2, 0.3, 1e-6)),
        (adaptlr.NAdam, torch.optim.NAdam, (0.02, (0.8, 0.9), 1e-6, 0.1, 0.01, True)),
        (adaptlr.SGD, torch.optim.SGD, (0.02, 0.9, 0.0, 0.1, True)),
    ],
    ids=lambda x: getattr(x, "__name__", None),
)
def test_positional_arguments_land_where_torch_puts_them(cls, torch_cls, args):
    ours = cls([torch.zeros(1, requires_grad=True)], *args).defaults
    theirs = torch_cls([torch.zeros(1, requires_grad=True)], *args).defaults
    assert {k: ours[k] for k in theirs} == theirs


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_each_declared_hyperparameter_reaches_constructor_check_and_chain(cls):
    sig = inspect.signature(cls).parameters
    opt = cls([torch.zeros(1, requires_grad=True)])
    assert [h.name for h in cls.hyperparameters] == [k for k in sig if k != "params"]
    for h in cls.hyperparameters:
        assert sig[h.name].default == h.default
        assert opt.defaults[h.name] == h.default
        assert h.name in (cls.__doc__ or "")  # the generated Args section explains it
        # what the adapter passes to the chain: every hyperparameter but the switches
        assert (h.name in opt._hyper) == (h.name not in IMPLEMENTATION_KEYS)
        if isinstance(h.allowed, _checks.Number):
            for bad in (math.nan, -1e9 if h.allowed.lo > -math.inf else math.inf):
                with pytest.raises(ValueError, match=rf"{cls.__name__}: {h.name} must be"):
                    cls([torch.zeros(1, requires_grad=True)], **{h.name: bad})
                with pytest.raises(ValueError, match=rf"{h.name} must be"):
                    cls.transform(**{h.name: bad})
            with pytest.raises(TypeError, match=rf"{cls.__name__}: {h.name} must be"):
                cls([torch.zeros(1, requires_grad=True)], **{h.name: "x"})


# -- a declaration written here: one line reaches every place ---------------------------------
GAIN = Hyper("gain", 0.5, _checks.Number(0.0, 1.0, lo_open=True), "the factor of each step")


class Gain(Declared):
    """Gradient descent with a gain: u = -η·gain·g."""

    hyperparameters = (LR(0.1), GAIN, "*", MAXIMIZE)

    @staticmethod
    def _chain(h):
        return wrap(h, core.scale(h.gain))


def test_a_hyperparameter_listed_once_reaches_constructor_check_and_chain():
    params = list(inspect.signature(Gain).parameters.values())
    assert [(p.name, p.kind.name, p.default) for p in params[:3]] == [
        ("params", "POSITIONAL_OR_KEYWORD", inspect.Parameter.empty),
        ("lr", "POSITIONAL_OR_KEYWORD", 0.1),
        ("gain", "POSITIONAL_OR_KEYWORD", 0.5),
    ]
    assert [p.name for p in params[3:]] == ["maximize", "fused", "state_dtype", "nonfinite"]
    assert "gain (float, default 0.5): the factor of each step; a number in (0, 1]" in " ".join(
        Gain.__doc__.split()
    )
    # the check: by the declared range and type, at construction and for a group
    with pytest.raises(ValueError, match=r"Gain: gain must be a number in \(0, 1\], got 0"):
        Gain([torch.zeros(1, requires_grad=True)], gain=0)
    with pytest.raises(TypeError, match="Gain: gain must be"):
        Gain([torch.zeros(1, requires_grad=True)], 0.1, "big")
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = Gain([w], 0.1, 0.25)  # positional, where the declaration put it
    with pytest.raises(ValueError, match="gain"):
        opt.add_param_group({"params": [torch.zeros(1, requires_grad=True)], "gain": 2.0})
    assert len(opt.param_groups) == 1
    # the chain: the functional form, and a step against the closed form θ - η·gain·g
    assert repr(Gain.transform(gain=0.25)) == repr(
        core.chain(core.scale(0.25), core.scale_by_learning_rate(0.1))
    )
    for fused in (False, None):
        w = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
        opt = Gain([w], lr=0.1, gain=0.25, fused=fused)
        w.grad = torch.tensor([4.0, 8.0], dtype=torch.float64)
        opt.step()
        assert torch.equal(w.detach(), torch.tensor([1.0 - 0.1, -2.0 - 0.2], dtype=torch.float64))
        opt.param_groups[0]["gain"] = 0.5  # a new group value reaches the chain too
        opt.step()
        expected = torch.tensor([0.9 - 0.1 * 0.5 * 4, -2.2 - 0.1 * 0.5 * 8], dtype=torch.float64)
        assert torch.allclose(w.detach(), expected, rtol=0, atol=1e-15)


def test_build_is_a_deprecated_alias_of_the_chain():
    with pytest.warns(DeprecationWarning, match=r"Adam.build is deprecated.*Adam.transform"):
        old = adaptlr.Adam.build(0.1, (0.8, 0.9), 1e-6, 0.0, False, False, False)
    assert repr(old) == repr(adaptlr.Adam.transform(lr=0.1, betas=(0.8, 0.9), eps=1e-6))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        adaptlr.Adam.transform(lr=0.1)  # the public way warns nothing


def test_a_subclass_with_its_own_init_keeps_it():
    class Mine(adaptlr.Adam):
        def __init__(self, params, lr=0.5):
            super().__init__(params, lr=lr, amsgrad=True)

    opt = Mine([torch.zeros(1, requires_grad=True)])
    assert opt.defaults["lr"] == 0.5 and opt.defaults["amsgrad"] is True
