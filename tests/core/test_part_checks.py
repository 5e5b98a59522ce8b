"""Parts check their own hyperparameters where they are given, in the one vocabulary of
``adaptlr._checks``: a TypeError for a wrong type, a ValueError for a number out of range, each
naming the part, the field and what is allowed; a callable (a schedule, or a live value read
from a param group) is accepted unchecked.

The ranges are compared with torch.optim's own checks where a part mirrors a torch argument
(an independent reference), and every numeric field of every exported part must be listed.
"""

from __future__ import annotations

import dataclasses
import math
import re

import pytest
import torch

from adaptlr import _checks, core, schedules

#: (part, the other arguments it needs, field, a number out of range)
FIELDS = [
    (core.bound, {"direction": None, "magnitude": core.ema_sq(0.9)}, "lr", -0.1),
    (core.bound, {"direction": None, "magnitude": core.ema_sq(0.9)}, "final_lr", -0.1),
    (core.bound, {"direction": None, "magnitude": core.ema_sq(0.9)}, "gamma", 1.0),
    (core.switch_to_sgd, {"direction": None, "magnitude": core.ema_sq(0.9)}, "lr", -0.1),
    (core.switch_to_sgd, {"direction": None, "magnitude": core.ema_sq(0.9)}, "b1", 1.0),
    (core.switch_to_sgd, {"direction": None, "magnitude": core.ema_sq(0.9)}, "b2", -0.5),
    (core.switch_to_sgd, {"direction": None, "magnitude": core.ema_sq(0.9)}, "tol", -1.0),
    (core.add_constant, {}, "value", -1.0),
    (core.momentum, {}, "momentum", -1.0),
    (core.momentum, {"momentum": 0.9}, "dampening", 1.5),
    (core.ema, {}, "b1", 1.5),
    (core.nesterov_ema, {}, "b1", 1.0),
    (core.nesterov_ema, {"b1": 0.9}, "momentum_decay", -0.1),
    (core.sum_sq, {}, "eps", -1e-3),
    (core.sum_sq, {}, "initial_accumulator_value", -1.0),
    (core.mean_sq, {}, "eps", -1.0),
    (core.ema_sq, {}, "b2", -3.0),
    (core.ema_sq, {"b2": 0.9}, "eps", -1.0),
    (core.rectified, {}, "b2", 1.0),
    (core.rectified, {"b2": 0.9}, "eps", -1.0),
    (core.scale_by_learning_rate, {}, "lr", -0.1),
    (core.scale_by_lr_decay, {}, "lr_decay", -0.1),
    (core.scale, {}, "factor", math.inf),
    (core.add_decayed_weights, {}, "weight_decay", -0.1),
    (core.clip_by_value, {}, "max_value", -1.0),
    (core.clip_by_global_norm, {}, "max_norm", -1.0),
    (core.dog, {}, "lr", -0.1),
    (core.dog, {}, "reps_rel", -1.0),
    (core.dog, {}, "eps", -1.0),
    (core.schedule_free, {}, "lr", -0.1),
    (core.schedule_free, {"lr": 0.1}, "b1", 1.5),
    (core.schedule_free, {"lr": 0.1}, "warmup_steps", -1.0),
    (core.schedule_free, {"lr": 0.1}, "r", math.inf),
    (core.schedule_free, {"lr": 0.1}, "weight_lr_power", -1.0),
    (core.schedule_free, {"lr": 0.1}, "lr_factor", -1.0),
    (core.schedule_free_distance, {}, "lr", -0.1),
    (core.schedule_free_distance, {}, "b1", 0.0),
    (core.schedule_free_distance, {}, "beta3", 1.5),
    (core.schedule_free_distance, {}, "d0", 0.0),
    (core.schedule_free_distance, {}, "d_coef", 0.0),
    (core.schedule_free_distance, {}, "r", math.nan),
    (core.schedule_free_distance, {}, "weight_lr_power", -1.0),
    (core.scale_by_distance, {}, "lr", -0.1),
    (core.scale_by_distance, {}, "beta3", 1.5),
    (core.scale_by_distance, {}, "d0", 0.0),
    (core.scale_by_distance, {}, "d_coef", 0.0),
    (core.prodigy, {}, "lr", -0.1),
    (core.prodigy, {}, "b1", 1.0),
    (core.prodigy, {}, "b2", 1.0),
    (core.prodigy, {}, "eps", 0.0),
    (core.prodigy, {}, "weight_decay", -0.1),
    (core.prodigy, {}, "d0", 0.0),
    (core.prodigy, {}, "d_coef", 0.0),
    (core.dadapt_adam, {}, "lr", -0.1),
    (core.dadapt_adam, {}, "b1", 1.0),
    (core.dadapt_adam, {}, "b2", 1.0),
    (core.dadapt_adam, {}, "eps", 0.0),
    (core.dadapt_adam, {}, "weight_decay", -0.1),
    (core.dadapt_adam, {}, "d0", 0.0),
    (core.dadapt_adam, {}, "layer_scale", -1.0),
    (core.dadapt_sgd, {}, "lr", -0.1),
    (core.dadapt_sgd, {}, "momentum", -1.0),
    (core.dadapt_sgd, {}, "weight_decay", -0.1),
    (core.dadapt_sgd, {}, "d0", 0.0),
    (core.dadapt_adagrad, {}, "lr", -0.1),
    (core.dadapt_adagrad, {}, "momentum", -1.0),
    (core.dadapt_adagrad, {}, "eps", 0.0),
    (core.dadapt_adagrad, {}, "d0", 0.0),
]
IDS = [f"{part.__name__}-{name}" for part, _, name, _ in FIELDS]


def _make(part, others, name, value):
    return part(**others, **{name: value})


def test_every_numeric_field_of_every_part_is_listed():
    parts = [getattr(core, n) for n in core.__all__]
    parts = [p for p in parts if dataclasses.is_dataclass(p) and issubclass(p, core.Part)]
    numeric = {
        (p.__name__, f.name)
        for p in parts
        for f in dataclasses.fields(p)
        if str(f.type) in ("float", "Value")
    }
    assert numeric == {(p.__name__, n) for p, _, n, _ in FIELDS}


@pytest.mark.parametrize("part, others, name, bad", FIELDS, ids=IDS)
def test_a_number_out_of_range_is_a_value_error_naming_part_field_and_range(
    part, others, name, bad
):
    with pytest.raises(ValueError, match=rf"^{part.__name__}: {name} must be .+, got ") as info:
        _make(part, others, name, bad)
    assert not isinstance(info.value, TypeError)
    for nonfinite in (math.nan, math.inf):
        with pytest.raises(ValueError, match=rf"^{part.__name__}: {name} must be "):
            _make(part, others, name, nonfinite)


@pytest.mark.parametrize("part, others, name, bad", FIELDS, ids=IDS)
@pytest.mark.parametrize("wrong", ["0.1", None, [0.1], True], ids=["str", "None", "list", "bool"])
def test_a_wrong_type_is_a_type_error_naming_part_and_field(part, others, name, bad, wrong):
    with pytest.raises(TypeError, match=rf"^{part.__name__}: {name} must be .+, got "):
        _make(part, others, name, wrong)


@pytest.mark.parametrize("part, others, name, bad", FIELDS, ids=IDS)
def test_a_callable_is_accepted_unchecked(part, others, name, bad):
    for live in (lambda step: 0.5, schedules.constant(0.5)):
        made = _make(part, others, name, live)
        assert getattr(made, name) is live


def test_flags_and_choices_of_parts():
    for make, name in [
        (lambda v: core.momentum(0.9, nesterov=v), "nesterov"),
        (lambda v: core.ema(0.9, debias=v), "debias"),
        (lambda v: core.ema_sq(0.9, amsgrad=v), "amsgrad"),
        (lambda v: core.ema_sq(0.9, centered=v), "centered"),
    ]:
        with pytest.raises(TypeError, match=rf": {name} must be True or False"):
            make("yes")
    with pytest.raises(ValueError, match="init must be one of 'zero', 'first_gradient'"):
        core.ema_sq(0.9, init="ones")
    with pytest.raises(TypeError, match="init must be one of"):
        core.ema_sq(0.9, init=0)
    with pytest.raises(TypeError, match="name must be a non-empty string"):
        core.ema_sq(0.9, name=3)


def test_ema_sq_allows_b2_one_only_without_debias():
    """b2 = 1 keeps v at its start (RMSprop's alpha may be 1); with debias it would divide by
    1 - b2**t = 0."""
    assert core.ema_sq(1.0).b2 == 1.0
    with pytest.raises(ValueError, match=re.escape("b2 must be a number in [0, 1)")):
        core.ema_sq(1.0, debias=True)


# torch.optim's own checks as the reference: the part refuses exactly what torch refuses
TRIAL = [-1.0, -1e-12, 0.0, 1e-12, 0.5, 1.0 - 1e-12, 1.0, 1.5, 10.0]
MIRRORS = [
    (lambda v: core.ema(v), lambda p, v: torch.optim.Adam(p, betas=(v, 0.999)), "ema.b1"),
    (
        lambda v: core.ema_sq(v, debias=True),
        lambda p, v: torch.optim.Adam(p, betas=(0.9, v)),
        "ema_sq.b2 (debias)",
    ),
    (lambda v: core.nesterov_ema(v), lambda p, v: torch.optim.NAdam(p, betas=(v, 0.9)), "b1"),
    (
        lambda v: core.nesterov_ema(0.9, v),
        lambda p, v: torch.optim.NAdam(p, momentum_decay=v),
        "nesterov_ema.momentum_decay",
    ),
    (lambda v: core.rectified(v), lambda p, v: torch.optim.RAdam(p, betas=(0.9, v)), "b2"),
    (lambda v: core.ema_sq(0.9, eps=v), lambda p, v: torch.optim.Adam(p, eps=v), "eps"),
    (lambda v: core.sum_sq(eps=v), lambda p, v: torch.optim.Adagrad(p, eps=v), "rss.eps"),
    (
        lambda v: core.sum_sq(initial_accumulator_value=v),
        lambda p, v: torch.optim.Adagrad(p, initial_accumulator_value=v),
        "initial_accumulator_value",
    ),
    (
        lambda v: core.scale_by_lr_decay(v),
        lambda p, v: torch.optim.Adagrad(p, lr_decay=v),
        "lr_decay",
    ),
    (
        lambda v: core.add_decayed_weights(v),
        lambda p, v: torch.optim.Adam(p, weight_decay=v),
        "weight_decay",
    ),
    (lambda v: core.scale_by_learning_rate(v), lambda p, v: torch.optim.SGD(p, lr=v), "lr"),
    (lambda v: core.momentum(v), lambda p, v: torch.optim.SGD(p, momentum=v), "momentum"),
]


def _accepts(make):
    try:
        make()
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("part, torch_opt, what", MIRRORS, ids=[m[2] for m in MIRRORS])
def test_ranges_agree_with_torch_optim(part, torch_opt, what):
    p = [torch.zeros(1, requires_grad=True)]
    ours = [_accepts(lambda v=v: part(v)) for v in TRIAL]
    theirs = [_accepts(lambda v=v: torch_opt(p, v)) for v in TRIAL]
    assert ours == theirs, list(zip(TRIAL, ours, theirs))


def test_one_message_form_across_parts_schedules_and_optimizers():
    import adaptlr

    form = r"^{}: {} must be (.+), got {}( \(\w+\))?$"
    cases = [
        (lambda: core.ema(1.5), "ema", "b1", "1.5", ValueError),
        (lambda: core.ema("a"), "ema", "b1", "'a'", TypeError),
        (lambda: schedules.cosine(-0.1, 10), "cosine", "lr", "-0.1", ValueError),
        (lambda: schedules.cosine("a", 10), "cosine", "lr", "'a'", TypeError),
        (lambda: adaptlr.SGD([torch.zeros(1, requires_grad=True)], momentum=-1), "SGD",
         "momentum", "-1", ValueError),
        (lambda: adaptlr.SGD([torch.zeros(1, requires_grad=True)], momentum="a"), "SGD",
         "momentum", "'a'", TypeError),
    ]  # fmt: skip
    for make, owner, name, got, error in cases:
        with pytest.raises(error) as info:
            make()
        assert re.match(form.format(owner, name, re.escape(got)), str(info.value)), info.value
        # a wrong type is a TypeError, and (for one release) also the ValueError it used to be
        assert isinstance(info.value, _checks.WrongType) == (error is TypeError)
