"""load_state_dict: every mismatch is a clear error raised before anything changes."""

from __future__ import annotations

import copy
import re

import pytest
import torch

import adaptlr
from adaptlr import core
from adaptlr.optimizers.registry import REGISTRY


def param(*shape, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=gen, dtype=torch.float64).requires_grad_()


def trained(cls, params, steps=2, **kw):
    """An optimizer of ``cls`` over ``params`` after ``steps`` steps of a quadratic loss.

    The reference path unless ``fused`` is given: the checks do not depend on the path, and
    this keeps the tests free of kernel compilation.
    """
    if cls is not adaptlr.Optimizer and issubclass(cls, adaptlr.Optimizer):
        kw.setdefault("fused", False)
    opt = cls(params, **kw)
    for _ in range(steps):
        opt.zero_grad()
        sum((p**2).sum() for p in params).backward()
        opt.step()
    return opt


def snapshot(opt):
    """Everything load_state_dict could touch, deep-copied for comparison."""
    return copy.deepcopy(
        (
            {id(p): dict(s) for p, s in opt.state.items()},
            [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups],
            [[id(p) for p in g["params"]] for g in opt.param_groups],
        )
    )


def assert_unchanged(opt, before):
    after = snapshot(opt)
    assert after[1] == before[1] and after[2] == before[2]
    assert after[0].keys() == before[0].keys()
    for k in before[0]:
        assert after[0][k].keys() == before[0][k].keys()
        for key in before[0][k]:
            assert torch.equal(after[0][k][key], before[0][k][key])


def two_group_adam():
    a, b, c = param(3), param(2, 2, seed=1), param(4, seed=2)
    opt = trained(adaptlr.Adam, [a, b], lr=0.1)
    opt.add_param_group({"params": [c], "lr": 0.01})
    return opt


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_round_trip_into_recreated_parameters_resumes_exactly(name):
    info = REGISTRY[name]
    cfg = info.all_configs[-1]
    a, b = param(3), param(3)
    oa = trained(info.cls, [a], steps=3, fused=None, **cfg)
    b.data.copy_(a.detach())
    ob = info.cls([b], **cfg)
    ob.load_state_dict(oa.state_dict())
    for w, o in [(a, oa), (b, ob)]:
        for _ in range(3):
            o.zero_grad()
            (w**2).sum().backward()
            o.step()
    assert torch.equal(a, b)
    assert oa.param_groups[0]["applied_steps"] == ob.param_groups[0]["applied_steps"] == 6


@pytest.mark.parametrize("saved, loaded", [(None, False), (False, None)])
def test_fused_and_reference_paths_load_each_others_state(saved, loaded):
    """The state layout does not depend on the path (the fused path keeps flat buffers)."""
    a, b, ref = param(3, 2), param(3, 2), param(3, 2)
    oa = trained(adaptlr.Adam, [a], steps=3, fused=saved, lr=0.1, amsgrad=True)
    b.data.copy_(a.detach())
    ob = adaptlr.Adam([b], lr=0.1, amsgrad=True, fused=loaded)
    ob.load_state_dict(oa.state_dict())
    oa.step()  # a live source must not write through into the loaded copy
    ob.zero_grad()
    (b**2).sum().backward()
    ob.step()
    straight = trained(adaptlr.Adam, [ref], steps=4, fused=False, lr=0.1, amsgrad=True)
    torch.testing.assert_close(b, ref, rtol=1e-12, atol=1e-14)
    assert int(ob.state[b]["step"]) == 4 == int(straight.state[ref]["step"])


def test_other_optimizers_state_dict_is_refused_before_any_change():
    w = param(3)
    target = trained(adaptlr.Adam, [w], lr=0.1)
    before = snapshot(target)
    sgd = trained(adaptlr.SGD, [param(3)], lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match=r"param group 0 .*lacks \['amsgrad'|betas|eps"):
        target.load_state_dict(sgd.state_dict())
    assert_unchanged(target, before)
    # RAdam has Adam's buffers, but not Adam's `amsgrad`
    radam = trained(adaptlr.RAdam, [param(3)], lr=0.1)
    with pytest.raises(ValueError, match=r"param group 0 of the state dict has \['amsgrad'\]"):
        radam.load_state_dict(target.state_dict())


def test_state_keys_of_another_chain_are_named():
    w = param(3)
    target = trained(adaptlr.Adam, [w], lr=0.1)
    before = snapshot(target)
    sd = copy.deepcopy(target.state_dict())
    sd["state"][0]["momentum_buffer"] = sd["state"][0].pop("exp_avg")
    with pytest.raises(
        ValueError,
        match=r"param group 0, parameter 0: .*unknown \['momentum_buffer'\], missing \['exp_avg'\]",
    ):  # noqa: E501
        target.load_state_dict(sd)
    assert_unchanged(target, before)
    # amsgrad=True in the state dict needs max_exp_avg_sq
    sd = copy.deepcopy(target.state_dict())
    sd["param_groups"][0]["amsgrad"] = True
    with pytest.raises(ValueError, match=r"missing \['max_exp_avg_sq'\]"):
        target.load_state_dict(sd)
    assert_unchanged(target, before)


def test_user_chain_state_keys_are_checked():
    lr = core.scale_by_learning_rate(0.1)
    chain = core.chain(core.rule(core.momentum(0.9), core.mean_sq()), lr)
    w = param(3)
    opt = trained(adaptlr.Optimizer, [w], transform=chain)
    sd = copy.deepcopy(opt.state_dict())
    adam_sd = trained(adaptlr.Adam, [param(3)], lr=0.1).state_dict()
    fresh = adaptlr.Optimizer([param(3)], chain)
    with pytest.raises(ValueError, match="unknown"):
        fresh.load_state_dict(adam_sd)
    assert len(fresh.state) == 0
    fresh.load_state_dict(sd)
    assert set(fresh.state[fresh.param_groups[0]["params"][0]]) == {
        "step",
        "momentum_buffer",
        "mean_square",
    }


def test_number_of_groups_and_of_params_per_group():
    opt = two_group_adam()
    before = snapshot(opt)
    one_group = trained(adaptlr.Adam, [param(3), param(2, 2)], lr=0.1).state_dict()
    with pytest.raises(ValueError, match=r"1 parameter group\(s\), this optimizer 2"):
        opt.load_state_dict(one_group)
    sd = copy.deepcopy(opt.state_dict())
    sd["param_groups"][1]["params"] = sd["param_groups"][1]["params"] + [99]
    with pytest.raises(
        ValueError, match=r"param group 1 has 2 parameter\(s\) in the state dict, 1"
    ):
        opt.load_state_dict(sd)
    assert_unchanged(opt, before)


@pytest.mark.parametrize("key", ["exp_avg", "exp_avg_sq"])
def test_state_shape_mismatch_names_group_param_key_and_shapes(key):
    opt = two_group_adam()
    before = snapshot(opt)
    sd = copy.deepcopy(opt.state_dict())
    # the second parameter of group 0 is 2x2; give it a 4-vector
    sd["state"][1][key] = torch.zeros(4, dtype=torch.float64)
    msg = f"param group 0, parameter 1: state '{key}' has shape (4,), expected (2, 2)"
    with pytest.raises(ValueError, match=re.escape(msg)):
        opt.load_state_dict(sd)
    assert_unchanged(opt, before)


def test_step_must_be_a_scalar_and_applied_steps_an_int():
    opt = two_group_adam()
    before = snapshot(opt)
    sd = copy.deepcopy(opt.state_dict())
    sd["state"][0]["step"] = torch.zeros(2)
    with pytest.raises(ValueError, match=re.escape("state 'step' has shape (2,), expected ()")):
        opt.load_state_dict(sd)
    sd = copy.deepcopy(opt.state_dict())
    sd["param_groups"][0]["applied_steps"] = -1
    with pytest.raises(ValueError, match="applied_steps=-1"):
        opt.load_state_dict(sd)
    sd = copy.deepcopy(opt.state_dict())
    sd["state"][0]["exp_avg"] = [0.0, 0.0, 0.0]
    with pytest.raises(TypeError, match="'exp_avg' must be a tensor, got list"):
        opt.load_state_dict(sd)
    assert_unchanged(opt, before)


def test_bad_hyperparameters_in_the_state_dict_are_refused():
    opt = two_group_adam()
    before = snapshot(opt)
    sd = copy.deepcopy(opt.state_dict())
    sd["param_groups"][1]["betas"] = (1.5, 0.9)
    with pytest.raises(ValueError, match=r"param group 1: Adam: betas\[0\]"):
        opt.load_state_dict(sd)
    assert_unchanged(opt, before)


def test_state_for_an_unlisted_parameter_and_malformed_dicts():
    opt = two_group_adam()
    before = snapshot(opt)
    sd = copy.deepcopy(opt.state_dict())
    sd["state"][7] = sd["state"][0]
    with pytest.raises(ValueError, match="state for parameter 7"):
        opt.load_state_dict(sd)
    with pytest.raises(ValueError, match="no 'param_groups'"):
        opt.load_state_dict({"state": {}})
    with pytest.raises(TypeError, match="expected a dict"):
        opt.load_state_dict([1, 2])
    assert_unchanged(opt, before)


def test_the_given_state_dict_is_not_modified():
    opt = two_group_adam()
    sd = torch.optim.Adam([param(3), param(2, 2)], lr=0.1).state_dict()
    sd["param_groups"].append({**sd["param_groups"][0], "params": [2]})
    original = copy.deepcopy(sd)
    opt.load_state_dict(sd)
    assert sd == original


def test_never_stepped_parameters_and_groups_load():
    a, b = param(3), param(3, seed=1)
    opt = adaptlr.Adam([a, b], lr=0.1)
    a.grad = torch.ones(3, dtype=torch.float64)
    opt.step()  # b has no state
    fresh = adaptlr.Adam([param(3), param(3)], lr=0.5)
    fresh.load_state_dict(opt.state_dict())
    assert fresh.param_groups[0]["lr"] == 0.1
    assert len(fresh.state) == 1


def test_missing_hyperparameters_torch_lacks_take_defaults():
    """A torch.optim.RMSprop state dict has no `init` or `fused`: they take RMSprop's defaults."""
    w = param(3)
    theirs = trained(torch.optim.RMSprop, [w], lr=0.01, momentum=0.5, foreach=False)
    ours = adaptlr.RMSprop([param(3)], lr=0.01, momentum=0.5)
    ours.load_state_dict(theirs.state_dict())
    g = ours.param_groups[0]
    assert g["init"] == "zero" and g["fused"] is None and g["applied_steps"] == 2
