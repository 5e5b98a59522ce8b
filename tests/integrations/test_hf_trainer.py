"""adaptlr optimizers trained by Hugging Face's ``Trainer`` (issue 16).

What HF does, which the assertions follow (transformers 5.x ``Trainer._inner_training_loop``):
``optimizer.step()``, then ``learning_rate = _get_learning_rate()`` (the scheduler's
``get_last_lr()``, taken *before* ``lr_scheduler.step()``), then ``lr_scheduler.step()``; so the
``learning_rate`` logged at global step k is the η of update k (1-based). With
``optimizers=(opt, None)`` HF builds its own scheduler (``lr_scheduler_type``, a ``LambdaLR`` of
the group's initial lr) and logs *that scheduler's* value: with an adaptlr schedule as lr that
scheduler competes, adaptlr warns once and applies its schedule, and HF's log shows its own
scheduler's value, not the η applied (asserted as such below). ``ScheduleLR(opt)`` is the
scheduler to hand HF with a schedule as lr: it follows the optimizer, and the log is the η.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import pytest

pytest.importorskip("transformers")

import _tiny
import torch
from transformers import Trainer, TrainingArguments
from transformers.trainer_callback import PrinterCallback
from transformers.utils import logging as hf_logging

import adaptlr
from adaptlr.schedules import ScheduleLR, cosine, warmup_cosine

STEPS, BATCH, N = 8, 8, 48  # 6 batches an epoch: the run crosses an epoch boundary
LR, WARMUP = 0.05, 2
SAVE_AT = 4
ADAMW_PROBE = _tiny.COUNTERPARTS["AdamW"][1]
WD = ADAMW_PROBE["weight_decay"]


@pytest.fixture(autouse=True)
def _quiet():
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def _schedule():
    return warmup_cosine(LR, WARMUP, STEPS)


def _hf_linear(k: int) -> float:
    """transformers' get_linear_schedule_with_warmup at step k, written out here."""
    if k < WARMUP:
        return LR * k / max(1, WARMUP)
    return LR * max(0.0, (STEPS - k) / max(1, STEPS - WARMUP))


def _args(out: Path, save_steps: int | None = None) -> TrainingArguments:
    return TrainingArguments(
        output_dir=str(out),
        report_to=[],
        use_cpu=True,
        max_steps=STEPS,
        per_device_train_batch_size=BATCH,
        learning_rate=LR,  # what HF's own scheduler starts from when it builds the optimizer
        lr_scheduler_type="linear",
        warmup_steps=WARMUP,
        logging_steps=1,
        save_strategy="steps" if save_steps else "no",
        save_steps=save_steps or 500,
        dataloader_num_workers=0,
        remove_unused_columns=False,
        disable_tqdm=True,
        seed=0,
    )


def _fit(trainer: Trainer, resume: str | None = None) -> list[warnings.WarningMessage]:
    trainer.remove_callback(PrinterCallback)  # with tqdm off it prints every log line
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        trainer.train(resume_from_checkpoint=resume)
    return records


def _train(
    out: Path,
    make_opt,
    *,
    follow: bool = False,
    probe: dict | None = None,
    save_steps: int | None = None,
    resume: str | None = None,
):
    """One HF run; ``follow``: hand HF ``ScheduleLR(opt)`` instead of letting it build one;
    ``probe``: the EtaProbe's arguments, if one should watch the run."""
    model = _tiny.MLP()
    opt = make_opt(model.parameters())
    probe = None if probe is None else _tiny.EtaProbe(opt, model.fc1.weight, **probe)
    trainer = Trainer(
        model=model,
        args=_args(out, save_steps),
        train_dataset=_tiny.PairDataset(*_tiny.data(N)),
        optimizers=(opt, ScheduleLR(opt) if follow else None),
    )
    records = _fit(trainer, resume)
    return model, trainer, probe, records


def _logged_lr(trainer) -> dict[int, object]:
    return {
        e["step"]: e["learning_rate"] for e in trainer.state.log_history if "learning_rate" in e
    }


@pytest.mark.parametrize("name", sorted(_tiny.COUNTERPARTS))
def test_float_lr_equals_torch_optim_and_logs_the_applied_lr(tmp_path, name):
    probe_kw = _tiny.COUNTERPARTS[name][1]
    opt, ref_opt = (_tiny.counterpart(lib, name, LR) for lib in (adaptlr, torch.optim))
    model, trainer, probe, records = _train(tmp_path / "a", opt, probe=probe_kw)
    ref, _, ref_probe, _ = _train(tmp_path / "t", ref_opt, probe=probe_kw)

    _tiny.assert_trained(model)
    _tiny.assert_params_close(model, ref)
    expected = [_hf_linear(k) for k in range(STEPS)]
    _tiny.assert_etas(ref_probe.etas, expected, f"torch.optim.{name} eta")  # the probe is right
    _tiny.assert_etas(probe.etas, expected)
    logged = _logged_lr(trainer)
    assert sorted(logged) == list(range(1, STEPS + 1))
    _tiny.assert_float_values(list(logged.values()), "learning_rate")
    _tiny.assert_etas([logged[k + 1] for k in range(STEPS)], probe.etas, "logged learning_rate")
    assert _tiny.adaptlr_warnings(records) == []


def test_schedule_lr_with_schedulelr_follows_the_schedule(tmp_path):
    opt_cls = lambda ps: adaptlr.SGD(ps, lr=_schedule())  # noqa: E731
    model, trainer, probe, records = _train(tmp_path, opt_cls, follow=True, probe={})

    _tiny.assert_trained(model)
    s = _schedule()
    _tiny.assert_etas(probe.etas, [s(k) for k in range(STEPS)])
    logged = _logged_lr(trainer)
    _tiny.assert_float_values(list(logged.values()), "learning_rate")
    _tiny.assert_etas([logged[k + 1] for k in range(STEPS)], probe.etas, "logged learning_rate")
    assert _tiny.adaptlr_warnings(records) == []


def test_schedule_lr_against_hf_scheduler_warns_once_and_the_schedule_wins(tmp_path):
    warning = _tiny.schedule_override_warning()
    # a schedule that starts at LR, so that HF's LambdaLR (initial lr LR) logs non-zero values
    sched = cosine(LR, STEPS, min_lr=LR / 10)
    opt_cls = lambda ps: adaptlr.SGD(ps, lr=sched)  # noqa: E731
    model, trainer, probe, records = _train(tmp_path, opt_cls, probe={})

    _tiny.assert_trained(model)
    ours = _tiny.adaptlr_warnings(records)
    assert [w.category for w in ours] == [warning], [str(w.message) for w in ours]
    _tiny.assert_etas(probe.etas, [sched(k) for k in range(STEPS)])
    # HF logs its own LambdaLR's value (linear warm-up and decay of LR), not the η applied:
    # HF's logging reads its scheduler; the warning above is what tells the user.
    logged = _logged_lr(trainer)
    _tiny.assert_float_values(list(logged.values()), "learning_rate")
    hf = [_hf_linear(k) for k in range(STEPS)]
    _tiny.assert_etas([logged[k + 1] for k in range(STEPS)], hf, "HF's logged lr")


def test_schedule_through_optimizer_cls_and_kwargs_warns_once_per_group(tmp_path):
    # HF builds the optimizer itself (weights with decay, biases without: two groups) and always
    # its own scheduler next to it, which competes with the schedule in each group
    warning = _tiny.schedule_override_warning()
    sched = cosine(LR, STEPS, min_lr=LR / 10)
    model = _tiny.MLP()
    trainer = Trainer(
        model=model,
        args=_args(tmp_path),
        train_dataset=_tiny.PairDataset(*_tiny.data(N)),
        optimizer_cls_and_kwargs=(adaptlr.SGD, {"lr": sched}),
    )
    opt = trainer.create_optimizer()  # built now (train() keeps it), to put probes on it
    assert isinstance(opt, adaptlr.SGD) and len(opt.param_groups) == 2
    probes = [_tiny.EtaProbe(opt, model.fc1.weight), _tiny.EtaProbe(opt, model.fc1.bias)]
    records = _fit(trainer)

    _tiny.assert_trained(model)
    ours = _tiny.adaptlr_warnings(records)
    assert [w.category for w in ours] == [warning] * 2, [str(w.message) for w in ours]
    for probe in probes:
        _tiny.assert_etas(probe.etas, [sched(k) for k in range(STEPS)])
    logged = _logged_lr(trainer)
    _tiny.assert_float_values(list(logged.values()), "learning_rate")
    hf = [_hf_linear(k) for k in range(STEPS)]  # HF's LambdaLR again, as above
    _tiny.assert_etas([logged[k + 1] for k in range(STEPS)], hf, "HF's logged lr")


def _check_trainer_state(checkpoint: Path, etas: list[float]) -> None:
    """The checkpoint's trainer_state.json is JSON whose learning_rate are the η applied."""
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    lrs = [e["learning_rate"] for e in state["log_history"] if "learning_rate" in e]
    for v in lrs:
        assert isinstance(v, float) and math.isfinite(v), v
    _tiny.assert_etas(lrs, etas[:SAVE_AT], "learning_rate in trainer_state.json")


@pytest.mark.parametrize("lr", ["float", "schedule"])
def test_resume_from_hf_checkpoint_is_bit_for_bit(tmp_path, lr):
    if lr == "float":
        make_opt, follow, sched = _tiny.counterpart(adaptlr, "AdamW", LR), False, None
    else:
        sched = _schedule()
        make_opt = lambda ps: adaptlr.AdamW(ps, lr=_schedule(), weight_decay=WD)  # noqa: E731
        follow = True
    full, _, full_probe, records = _train(
        tmp_path / "full", make_opt, follow=follow, save_steps=SAVE_AT, probe=ADAMW_PROBE
    )
    checkpoint = tmp_path / "full" / f"checkpoint-{SAVE_AT}"
    assert (checkpoint / "optimizer.pt").exists()
    _check_trainer_state(checkpoint, full_probe.etas)
    # HF reloads the optimizer with torch.load(weights_only=True); do it here too, to say so
    saved = torch.load(checkpoint / "optimizer.pt", weights_only=True)
    _tiny.assert_saved_groups(saved["param_groups"], sched)

    # no probe on the resumed run: its recomputed AdamW moments would start from zero
    resumed, _, _, resumed_records = _train(
        tmp_path / "resumed", make_opt, follow=follow, resume=str(checkpoint)
    )
    _tiny.assert_trained(full)
    _tiny.assert_params_equal(resumed, full)
    expected = [_hf_linear(k) if sched is None else sched(k) for k in range(STEPS)]
    _tiny.assert_etas(full_probe.etas, expected)
    assert _tiny.adaptlr_warnings(records + resumed_records) == []
