"""from_spec, argument validation, step validation, pickling and the docstring examples."""

import doctest
import io
import math
import pickle

import pytest
import torch

import adaptlr.schedules as S
from adaptlr.schedules import base, hf, shapes, spec, torch_adapter
from adaptlr.schedules.shapes import SCHEDULE_CLASSES

# one instance of every schedule class, with non-default arguments
EXAMPLES = [
    S.constant(0.1),
    S.step_decay(0.1, step_size=3, gamma=0.5),
    S.multi_step(0.1, milestones=[5, 2, 5], gamma=0.3),
    S.exponential(0.1, gamma=0.99),
    S.polynomial(0.1, total_steps=20, power=2.0, min_lr=0.01),
    S.inverse_sqrt(0.1, warmup=5),
    S.inverse_time(0.1, decay=0.2),
    S.cosine(0.1, total_steps=20, min_lr=0.001),
    S.linear_warmup(0.1, warmup=5, start_lr=0.01),
    S.warmup_linear(0.1, warmup=5, total_steps=20),
    S.warmup_cosine(0.1, warmup=5, total_steps=20, min_lr=0.01, num_cycles=1.0),
    S.transformer(64, warmup=5, scale=2.0),
    S.cyclic(0.01, 0.1, step_size_up=3, step_size_down=5, mode="exp_range", gamma=0.9),
    S.cosine_restarts(0.1, T_0=3, T_mult=2, min_lr=0.001),
    S.one_cycle(0.1, total_steps=20, pct_start=0.25, anneal_strategy="linear", three_phase=True),
    S.join([S.constant(0.1), S.cosine(0.1, total_steps=10)], boundaries=[4]),
    S.cosine_wave(0.1, total_steps=20, num_cycles=1.5, min_lr=0.01),
    S.cosine_hard_restarts(0.1, total_steps=45, num_cycles=2, min_lr=0.001),
    S.warmup_stable_decay(0.1, 3, 4, 5, min_lr=0.01, warmup_type="1-sqrt", decay_type="cosine"),
    S.shift(S.linear_warmup(0.1, warmup=5), 2),
]


def test_examples_cover_every_class():
    assert {type(s) for s in EXAMPLES} == set(SCHEDULE_CLASSES)
    assert all(isinstance(s, S.Schedule) for s in EXAMPLES)


@pytest.mark.parametrize("s", EXAMPLES, ids=lambda s: type(s).__name__)
def test_pickle_and_torch_save_round_trip(s):
    back = pickle.loads(pickle.dumps(s))
    assert back == s and type(back) is type(s)
    assert hash(back) == hash(s)  # hashable: optimizers may cache by hyperparameter values
    assert S.sample(back, 40) == S.sample(s, 40)
    buf = io.BytesIO()
    torch.save({"schedule": s}, buf)
    buf.seek(0)
    assert torch.load(buf, weights_only=True)["schedule"] == s


@pytest.mark.parametrize("s", EXAMPLES, ids=lambda s: type(s).__name__)
def test_values_are_finite_python_floats_and_schedules_are_frozen(s):
    vals = S.sample(s, 60)
    assert all(type(v) is float and math.isfinite(v) and v >= 0 for v in vals)
    with pytest.raises(AttributeError):
        s.lr = 1.0  # frozen dataclass


@pytest.mark.parametrize("s", EXAMPLES, ids=lambda s: type(s).__name__)
@pytest.mark.parametrize("bad", [-1, -100, 1.5, float("nan"), "3", None, True])
def test_bad_steps_raise(s, bad):
    with pytest.raises(ValueError, match="step"):
        s(bad)


def test_integer_like_steps_are_accepted():
    s = S.cosine(1.0, total_steps=10)
    assert s(torch.tensor(3.0)) == s(torch.tensor(3)) == s(3.0) == s(3)


def test_sample():
    assert S.sample(S.step_decay(1.0, 1, 0.5), 3) == [1.0, 0.5, 0.25]
    assert S.sample(S.constant(1.0), 0) == []
    with pytest.raises(ValueError, match="steps"):
        S.sample(S.constant(1.0), -1)


# --- argument validation: ValueError naming the argument ----------------------------------

BAD = [
    (S.constant, dict(lr=-0.1), "lr"),
    (S.constant, dict(lr=float("nan")), "lr"),
    (S.constant, dict(lr=float("inf")), "lr"),
    (S.constant, dict(lr="0.1"), "lr"),
    (S.step_decay, dict(lr=0.1, step_size=0), "step_size"),
    (S.step_decay, dict(lr=0.1, step_size=2.5), "step_size"),
    (S.step_decay, dict(lr=0.1, step_size=2, gamma=-0.5), "gamma"),
    (S.multi_step, dict(lr=0.1, milestones=[3, 0]), "milestones"),
    (S.multi_step, dict(lr=0.1, milestones=5), "milestones"),
    (S.exponential, dict(lr=0.1, gamma=0.0), "gamma"),
    (S.exponential, dict(lr=-1.0, gamma=0.9), "lr"),
    (S.polynomial, dict(lr=0.1, total_steps=0), "total_steps"),
    (S.polynomial, dict(lr=0.1, total_steps=10, power=0.0), "power"),
    (S.polynomial, dict(lr=0.1, total_steps=10, min_lr=float("nan")), "min_lr"),
    (S.inverse_sqrt, dict(lr=0.1, warmup=-1), "warmup"),
    (S.inverse_time, dict(lr=0.1, decay=-0.1), "decay"),
    (S.cosine, dict(lr=0.1, total_steps=-5), "total_steps"),
    (S.cosine, dict(lr=0.1, total_steps=5, min_lr=-1.0), "min_lr"),
    (S.linear_warmup, dict(lr=0.1, warmup=-1), "warmup"),
    (S.linear_warmup, dict(lr=0.1, warmup=3, start_lr=float("inf")), "start_lr"),
    (S.warmup_linear, dict(lr=0.1, warmup=20, total_steps=10), "warmup"),
    (S.warmup_linear, dict(lr=0.1, warmup=0, total_steps=0), "total_steps"),
    (S.warmup_cosine, dict(lr=0.1, warmup=1, total_steps=10, num_cycles=0), "num_cycles"),
    (S.warmup_cosine, dict(lr=0.1, warmup=1, total_steps=10, min_lr=-0.1), "min_lr"),
    (S.transformer, dict(d_model=0, warmup=10), "d_model"),
    (S.transformer, dict(d_model=512, warmup=0), "warmup"),
    (S.transformer, dict(d_model=512, warmup=10, scale=float("nan")), "scale"),
    (S.cyclic, dict(base_lr=0.1, max_lr=1.0, step_size_up=0), "step_size_up"),
    (S.cyclic, dict(base_lr=0.1, max_lr=1.0, step_size_up=2, step_size_down=0), "step_size_down"),
    (S.cyclic, dict(base_lr=0.1, max_lr=1.0, step_size_up=2, mode="sine"), "mode"),
    (S.cyclic, dict(base_lr=-0.1, max_lr=1.0, step_size_up=2), "base_lr"),
    (S.cyclic, dict(base_lr=0.1, max_lr=1.0, step_size_up=2, gamma=0.0), "gamma"),
    (S.cosine_restarts, dict(lr=0.1, T_0=0), "T_0"),
    (S.cosine_restarts, dict(lr=0.1, T_0=5, T_mult=0), "T_mult"),
    (S.cosine_restarts, dict(lr=0.1, T_0=5, T_mult=1.5), "T_mult"),
    (S.one_cycle, dict(max_lr=0.1, total_steps=0), "total_steps"),
    (S.one_cycle, dict(max_lr=0.1, total_steps=10, pct_start=1.5), "pct_start"),
    (S.one_cycle, dict(max_lr=0.1, total_steps=10, anneal_strategy="exp"), "anneal_strategy"),
    (S.one_cycle, dict(max_lr=0.1, total_steps=10, div_factor=0.0), "div_factor"),
    (S.one_cycle, dict(max_lr=0.1, total_steps=10, final_div_factor=-1.0), "final_div_factor"),
    (S.one_cycle, dict(max_lr=0.1, total_steps=10, three_phase="yes"), "three_phase"),
    (S.join, dict(schedules=[], boundaries=[]), "schedules"),
    (S.join, dict(schedules=[S.constant(1.0), 3], boundaries=[2]), "schedules"),
    (S.join, dict(schedules=[S.constant(1.0)] * 2, boundaries=[]), "boundaries"),
    (S.join, dict(schedules=[S.constant(1.0)] * 3, boundaries=[5, 2]), "boundaries"),
    (S.join, dict(schedules=[S.constant(1.0)] * 2, boundaries=[-1]), "boundaries"),
    (S.inverse_sqrt, dict(lr=0.1, timescale=0), "timescale"),
    (S.cosine_wave, dict(lr=0.1, total_steps=0), "total_steps"),
    (S.cosine_wave, dict(lr=0.1, total_steps=5, num_cycles=0.0), "num_cycles"),
    (S.cosine_wave, dict(lr=0.1, total_steps=5, min_lr=-0.1), "min_lr"),
    (S.cosine_hard_restarts, dict(lr=0.1, total_steps=2.5), "total_steps"),
    (S.cosine_hard_restarts, dict(lr=0.1, total_steps=5, num_cycles=-1), "num_cycles"),
    (S.warmup_stable_decay, dict(lr=0.1, warmup=-1, stable=0, decay=5), "warmup"),
    (S.warmup_stable_decay, dict(lr=0.1, warmup=1, stable=1.5, decay=5), "stable"),
    (S.warmup_stable_decay, dict(lr=0.1, warmup=1, stable=1, decay=None), "decay"),
    (S.warmup_stable_decay, dict(lr=0.1, warmup=1, stable=1, decay=1, min_lr=-1), "min_lr"),
    (
        S.warmup_stable_decay,
        dict(lr=0.1, warmup=1, stable=1, decay=1, warmup_type="sqrt"),
        "warmup_type",
    ),
    (
        S.warmup_stable_decay,
        dict(lr=0.1, warmup=1, stable=1, decay=1, decay_type="exp"),
        "decay_type",
    ),
    (S.warmup_stable_decay, dict(lr=0.1, warmup=1, stable=1, decay=1, num_cycles=0), "num_cycles"),
    (S.shift, dict(schedule=0.1, steps=1), "schedule"),
    (S.shift, dict(schedule=S.constant(0.1), steps=-1), "steps"),
]


@pytest.mark.parametrize("factory,kwargs,arg", BAD, ids=lambda x: getattr(x, "__name__", None))
def test_bad_arguments_raise_value_error_naming_the_argument(factory, kwargs, arg):
    with pytest.raises(ValueError, match=rf"\b{arg}\b") as info:
        factory(**kwargs)
    msg = str(info.value)
    assert "\n" not in msg and factory.__name__ in msg


# --- from_spec --------------------------------------------------------------------------


def test_registry_has_every_spec_schedule():
    assert set(S.SCHEDULES) == set(shapes.__all__) - {"join", "shift"}
    assert all(callable(f) for f in S.SCHEDULES.values())


@pytest.mark.parametrize(
    "text,lr,expected",
    [
        ("constant:lr=0.01", None, S.constant(0.01)),
        ("constant", 0.3, S.constant(0.3)),
        ("cosine:lr=0.1,total_steps=100", None, S.cosine(0.1, 100)),
        ("cosine:lr=0.1,total_steps=100", 0.5, S.cosine(0.1, 100)),  # the spec wins
        (" warmup_cosine : warmup=50, total_steps=500 ", 0.1, S.warmup_cosine(0.1, 50, 500)),
        ("warmup_linear:lr=1e-3,warmup=5,total_steps=50", None, S.warmup_linear(1e-3, 5, 50)),
        ("multi_step:milestones=[30,60],gamma=0.5", 0.1, S.multi_step(0.1, [30, 60], 0.5)),
        ("step_decay:step_size=10", 1.0, S.step_decay(1.0, 10)),
        ("inverse_sqrt:warmup=100", 0.1, S.inverse_sqrt(0.1, 100)),
        ("transformer:d_model=512,warmup=4000", 0.1, S.transformer(512, 4000)),
        (
            "cyclic:base_lr=0.001,max_lr=0.1,step_size_up=20,mode=exp_range,gamma=0.99",
            None,
            S.cyclic(0.001, 0.1, 20, mode="exp_range", gamma=0.99),
        ),
        (
            "one_cycle:total_steps=100,anneal_strategy=linear,three_phase=true",
            0.2,
            S.one_cycle(0.2, 100, anneal_strategy="linear", three_phase=True),
        ),
        ("cosine_restarts:T_0=10,T_mult=2", 0.1, S.cosine_restarts(0.1, 10, 2)),
    ],
)
def test_from_spec_good(text, lr, expected):
    got = S.from_spec(text, lr=lr)
    assert got == expected
    assert S.sample(got, 30) == S.sample(expected, 30)


@pytest.mark.parametrize(
    "text,lr,needles",
    [
        ("cosin:lr=0.1", None, ["unknown schedule", "cosine", "warmup_cosine"]),
        ("", None, ["unknown schedule", "constant"]),
        ("cosine:lr=0.1,total=100", None, ["unknown key 'total'", "lr, total_steps, min_lr"]),
        ("cosine:lr=0.1", None, ["missing", "total_steps"]),
        ("cosine:total_steps=100", None, ["missing", "lr"]),
        ("cosine:lr=0.1,total_steps", None, ["bad item"]),
        ("cosine:lr=0.1,lr=0.2,total_steps=3", None, ["twice"]),
        ("cosine:lr=abc,total_steps=100", None, ["lr"]),
        ("cosine:lr=-1,total_steps=100", None, ["lr", ">= 0"]),
        ("cosine:lr=0.1,total_steps=10.5", None, ["total_steps", "positive integer"]),
        ("cyclic:max_lr=1,step_size_up=3", 0.1, ["missing", "base_lr"]),
        ("cyclic:base_lr=0.1,max_lr=1,step_size_up=3,mode=sin", None, ["mode", "triangular2"]),
        ("join:schedules=1", None, ["unknown schedule"]),
    ],
)
def test_from_spec_errors_are_one_line_value_errors(text, lr, needles):
    with pytest.raises(ValueError) as info:
        S.from_spec(text, lr=lr)
    msg = str(info.value)
    assert "\n" not in msg
    for needle in needles:
        assert needle in msg


# --- the docstring examples run ----------------------------------------------------------


@pytest.mark.parametrize(
    "module", [S, base, shapes, spec, torch_adapter, hf], ids=lambda m: m.__name__
)
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0


def test_public_factories_document_formula_and_example():
    for name, factory in S.SCHEDULES.items():
        doc = factory.__doc__ or ""
        assert ".. math::" in doc and ">>>" in doc, name
    assert ".. math::" in S.join.__doc__ and ".. math::" in S.shift.__doc__


# -- old keys: the same idea had two names (total / total_steps, end_lr / min_lr) --------------
OLD_KEYS = [
    (lambda: S.warmup_cosine(0.1, 5, total=50), S.warmup_cosine(0.1, 5, total_steps=50)),
    (lambda: S.warmup_linear(0.1, 5, total=50), S.warmup_linear(0.1, 5, total_steps=50)),
    (lambda: S.polynomial(0.1, 50, end_lr=0.01), S.polynomial(0.1, 50, min_lr=0.01)),
    (
        lambda: S.from_spec("warmup_cosine:warmup=5,total=50", lr=0.1),
        S.warmup_cosine(0.1, 5, total_steps=50),
    ),
    (
        lambda: S.from_spec("polynomial:lr=0.1,total_steps=50,end_lr=0.01"),
        S.polynomial(0.1, 50, min_lr=0.01),
    ),
]


@pytest.mark.parametrize("old, new", OLD_KEYS)
def test_an_old_key_still_works_with_a_future_warning(old, new):
    with pytest.warns(FutureWarning, match="the key every schedule uses"):
        got = old()
    assert got == new and [got(t) for t in range(60)] == [new(t) for t in range(60)]


def test_old_and_new_key_together_or_neither_is_an_error():
    with pytest.raises(TypeError, match="give 'total_steps' only"):
        S.warmup_cosine(0.1, 5, 50, total=50)
    with pytest.raises(TypeError, match="missing required argument 'total_steps'"):
        S.warmup_linear(0.1, 5)
    with pytest.raises(ValueError, match="give 'min_lr' only"):
        S.from_spec("polynomial:lr=0.1,total_steps=5,end_lr=0.0,min_lr=0.0")
    with pytest.raises(ValueError, match="missing required key"):
        S.from_spec("warmup_cosine:warmup=5", lr=0.1)


#: WarmupCosine(lr=0.1, warmup=5, total=50) pickled by adaptlr before the field was renamed
#: (torch.save of {"s": schedule}; the state holds "total", not "total_steps")
def _old_pickle(tmp_path):
    s = S.warmup_cosine(0.1, 5, total_steps=50)
    state = dict(s.__dict__)
    state["total"] = state.pop("total_steps")

    old = object.__new__(type(s))  # as the class was: its __dict__ is what pickles
    old.__dict__.update(state)
    path = tmp_path / "old.pt"
    torch.save({"s": old}, path)
    return path


def test_a_schedule_saved_with_an_old_field_name_loads(tmp_path):
    loaded = torch.load(_old_pickle(tmp_path), weights_only=True)["s"]
    want = S.warmup_cosine(0.1, 5, total_steps=50)
    assert loaded == want and loaded(30) == want(30)
