"""A user's own Schedule subclass saves and loads with torch.load(weights_only=True)."""

import io
import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from custom_schedule_helper import SlottedLinear, StepHalving

import adaptlr.schedules as S

HERE = Path(__file__).resolve().parent


def schedules():
    custom = StepHalving(0.4, every=3)
    return {
        "custom": custom,
        "slotted": SlottedLinear(0.2, total=10),
        # a built-in combinator holding a custom schedule, and a subclass of a built-in
        "joined": S.join([S.linear_warmup(0.4, 5), custom], boundaries=[5]),
    }


def state_dict_with(schedule):
    # what an optimizer's state dict looks like with a schedule kept in its param group
    p = torch.zeros(2, requires_grad=True)
    opt = torch.optim.SGD([p], lr=0.1)
    opt.param_groups[0]["lr_schedule"] = schedule
    return opt.state_dict()


def round_trip(obj):
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


@pytest.mark.parametrize("key", list(schedules()))
def test_custom_schedules_round_trip_with_weights_only(key):
    s = schedules()[key]
    back = round_trip(s)
    assert back == s and type(back) is type(s)
    assert S.sample(back, 30) == S.sample(s, 30)
    sd = round_trip({"param_groups": [{"lr_schedule": s}]})
    assert sd["param_groups"][0]["lr_schedule"] == s
    sd = round_trip(state_dict_with(s))
    assert S.sample(sd["param_groups"][0]["lr_schedule"], 30) == S.sample(s, 30)


def test_subclasses_register_themselves():
    safe = torch.serialization.get_safe_globals()
    assert StepHalving in safe and SlottedLinear in safe and type(S.cosine(1, 1)) in safe

    @dataclass(frozen=True)
    class SubOfBuiltin(type(S.cosine(1.0, 1))):  # a subclass of a built-in shape, too
        pass

    assert SubOfBuiltin in torch.serialization.get_safe_globals()


def test_a_class_defined_again_replaces_the_old_one():
    def define():
        @dataclass(frozen=True)
        class Redefined(S.Schedule):
            lr: float

            def value(self, t: int) -> float:
                return self.lr

        return Redefined

    old, new = define(), define()
    safe = torch.serialization.get_safe_globals()
    assert new in safe and old not in safe
    assert StepHalving in safe  # the others stay


def test_custom_schedule_loads_in_a_fresh_process(tmp_path):
    path = tmp_path / "ckpt.pt"
    scheds = schedules()
    torch.save({"state": state_dict_with(scheds["joined"]), "alone": scheds}, path)
    want = {k: S.sample(s, 30) for k, s in scheds.items()}
    code = textwrap.dedent(
        f"""
        import json, pickle, sys, torch
        import adaptlr.schedules  # registers the built-in shapes
        path = {str(path)!r}
        try:  # before the user's class is imported, torch cannot know it is safe
            torch.load(path, weights_only=True)
            before = "loaded"
        except pickle.UnpicklingError as e:
            before = str(e)
        import custom_schedule_helper  # noqa: F401  (what a user's training script does)
        ck = torch.load(path, weights_only=True)
        from adaptlr.schedules import sample
        out = {{k: sample(s, 30) for k, s in ck["alone"].items()}}
        out["state"] = sample(ck["state"]["param_groups"][0]["lr_schedule"], 30)
        print(json.dumps({{"before": before, "values": out}}))
        """
    )
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])
    )
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert "custom_schedule_helper.StepHalving" in got["before"]
    assert got["values"]["state"] == want["joined"]
    for k in scheds:
        assert got["values"][k] == want[k], k
