"""adaptlr optimizers trained by Lightning's ``Trainer`` with ``LearningRateMonitor`` (issue 16).

What Lightning does, which the assertions follow (lightning 2.6): ``LearningRateMonitor`` with
``logging_interval="step"`` logs each optimizer's ``param_groups[i]["lr"]`` in
``on_train_batch_start``, at ``step = _batches_that_stepped`` (updates done so far): the value
logged at step k is the η update k (0-based) is about to apply. A scheduler returned by
``configure_optimizers`` with ``interval="step"`` is stepped after each update, so with a
competing torch scheduler the monitor logs what that scheduler wrote, which adaptlr's schedule
then overrides (with one warning). Resuming from a checkpoint taken mid-epoch does not continue
bit for bit even with ``torch.optim.AdamW`` (checked by hand: Lightning does not fast-forward a
plain ``DataLoader`` to the batch it stopped at), so the checkpoint for the bit-for-bit
comparison is taken at an epoch end (ModelCheckpoint's ``every_n_epochs=1``).
"""

from __future__ import annotations

import csv
import logging
import warnings

import pytest

pytest.importorskip("lightning")

import _tiny
import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, Logger

import adaptlr
from adaptlr.schedules import ScheduleLR, cosine, warmup_cosine

BATCH, N, EPOCHS = 8, 32, 3  # 4 updates an epoch, 12 in all
STEPS = EPOCHS * N // BATCH
LR = 0.05
ADAMW_PROBE = _tiny.COUNTERPARTS["AdamW"][1]
WD = ADAMW_PROBE["weight_decay"]


@pytest.fixture(autouse=True)
def _quiet():
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)


class MemoryLogger(Logger):
    """Keeps every ``log_metrics`` call, values as given (to check that they are floats)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[int, dict[str, object]]] = []

    @property
    def name(self) -> str:
        return "memory"

    @property
    def version(self) -> int:
        return 0

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass

    def log_metrics(self, metrics, step=None) -> None:
        self.rows.append((step, dict(metrics)))

    def series(self, key: str) -> dict[int, object]:
        return {step: m[key] for step, m in self.rows if key in m}


class Module(pl.LightningModule):
    def __init__(self, make_opt, make_sched=None) -> None:
        super().__init__()
        self.model = _tiny.MLP()
        self.make_opt, self.make_sched = make_opt, make_sched

    def training_step(self, batch, batch_idx):
        x, y = batch
        return self.model(x, y)["loss"]

    def configure_optimizers(self):
        opt = self.make_opt(self.model.parameters())
        kw = self.probe_kw
        self.probe = None if kw is None else _tiny.EtaProbe(opt, self.model.fc1.weight, **kw)
        if self.make_sched is None:
            return opt
        return {
            "optimizer": opt,
            "lr_scheduler": {"scheduler": self.make_sched(opt), "interval": "step"},
        }


def _loader():
    x, y = _tiny.data(N)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=BATCH)


def _fit(
    make_opt,
    make_sched=None,
    *,
    probe: dict | None = ADAMW_PROBE,
    checkpoint_dir=None,
    ckpt_path=None,
    csv_dir=None,
):
    module = Module(make_opt, make_sched)
    module.probe_kw = probe  # the EtaProbe's arguments, or None for no probe
    logger = MemoryLogger()
    callbacks = [LearningRateMonitor(logging_interval="step")]
    if checkpoint_dir is not None:
        callbacks.append(ModelCheckpoint(dirpath=checkpoint_dir, every_n_epochs=1, save_top_k=-1))
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=EPOCHS,
        precision="64-true",
        logger=[logger] + ([CSVLogger(csv_dir, name="csv")] if csv_dir else []),
        callbacks=callbacks,
        log_every_n_steps=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=checkpoint_dir is not None,
        num_sanity_val_steps=0,
    )
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        # weights_only=True, as torch.load's default is: a schedule in the state must survive it
        trainer.fit(module, train_dataloaders=_loader(), ckpt_path=ckpt_path, weights_only=True)
    assert trainer.global_step == STEPS
    return module, logger, records


def _logged(logger: MemoryLogger, key: str) -> list[object]:
    series = logger.series(key)
    assert sorted(series) == list(range(STEPS)), (key, sorted(series))
    return [series[k] for k in range(STEPS)]


def _step_lr(opt):
    return torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)


@pytest.mark.parametrize("name", sorted(_tiny.COUNTERPARTS))
def test_float_lr_with_torch_scheduler_equals_torch_optim(name):
    probe = _tiny.COUNTERPARTS[name][1]
    opt, ref_opt = (_tiny.counterpart(lib, name, LR) for lib in (adaptlr, torch.optim))
    module, logger, records = _fit(opt, _step_lr, probe=probe)
    ref, ref_logger, _ = _fit(ref_opt, _step_lr, probe=probe)

    _tiny.assert_trained(module.model)
    _tiny.assert_params_close(module.model, ref.model)
    expected = [LR * 0.5 ** (k // 3) for k in range(STEPS)]
    _tiny.assert_etas(ref.probe.etas, expected, f"torch.optim.{name} eta")  # the probe is right
    _tiny.assert_etas(module.probe.etas, expected)
    key = f"lr-{name}"  # LearningRateMonitor names it by the optimizer's class
    logged = _logged(logger, key)
    _tiny.assert_float_values(logged, key)
    _tiny.assert_etas(logged, module.probe.etas, f"logged {key}")
    assert logged == _logged(ref_logger, key)
    assert _tiny.adaptlr_warnings(records) == []


@pytest.mark.parametrize("scheduler", [None, ScheduleLR], ids=["alone", "with ScheduleLR"])
def test_schedule_lr_is_logged_as_applied(tmp_path, scheduler):
    # ScheduleLR(opt) follows the optimizer's own schedule, for code that wants a scheduler
    s = warmup_cosine(LR, 3, STEPS)
    make_opt = lambda ps: adaptlr.AdamW(ps, lr=s, weight_decay=WD)  # noqa: E731
    module, logger, records = _fit(make_opt, scheduler, csv_dir=tmp_path)

    _tiny.assert_trained(module.model)
    _tiny.assert_etas(module.probe.etas, [s(k) for k in range(STEPS)])
    logged = _logged(logger, "lr-AdamW")
    _tiny.assert_float_values(logged, "lr-AdamW")
    _tiny.assert_etas(logged, module.probe.etas, "logged lr-AdamW")
    # and as numbers in CSVLogger's file (not a schedule's repr)
    with open(tmp_path / "csv" / "version_0" / "metrics.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("lr-AdamW")]
    assert [int(r["step"]) for r in rows] == list(range(STEPS))
    assert [float(r["lr-AdamW"]) for r in rows] == logged
    assert _tiny.adaptlr_warnings(records) == []


def test_schedule_lr_against_torch_scheduler_warns_once_and_the_schedule_wins():
    warning = _tiny.schedule_override_warning()
    s = cosine(LR, STEPS, min_lr=LR / 10)
    module, logger, records = _fit(lambda ps: adaptlr.SGD(ps, lr=s), _step_lr, probe={})

    _tiny.assert_trained(module.model)
    ours = _tiny.adaptlr_warnings(records)
    assert [w.category for w in ours] == [warning], [str(w.message) for w in ours]
    _tiny.assert_etas(module.probe.etas, [s(k) for k in range(STEPS)])
    # StepLR is chainable: it rescales whatever lr it finds, s(k), by 0.5 at k = 3, 6, 9 only.
    # The monitor logs the group's lr before each step, so there it shows StepLR's value.
    logged = _logged(logger, "lr-SGD")
    _tiny.assert_float_values(logged, "lr-SGD")
    expected = [s(k) * (0.5 if k and k % 3 == 0 else 1.0) for k in range(STEPS)]
    _tiny.assert_etas(logged, expected, "logged lr-SGD")


@pytest.mark.parametrize("lr", ["float", "schedule", "schedule+ScheduleLR"])
def test_resume_from_lightning_checkpoint_is_bit_for_bit(tmp_path, lr):
    s = None
    if lr == "float":
        make_opt, make_sched = _tiny.counterpart(adaptlr, "AdamW", LR), _step_lr
    else:
        s = warmup_cosine(LR, 3, STEPS)
        make_opt = lambda ps: adaptlr.AdamW(ps, lr=s, weight_decay=WD)  # noqa: E731
        make_sched = ScheduleLR if lr == "schedule+ScheduleLR" else None
    full, full_logger, records = _fit(make_opt, make_sched, checkpoint_dir=tmp_path)
    ckpt = tmp_path / f"epoch=0-step={N // BATCH}.ckpt"
    assert ckpt.exists(), sorted(p.name for p in tmp_path.iterdir())
    saved = torch.load(ckpt, weights_only=True)
    _tiny.assert_saved_groups(saved["optimizer_states"][0]["param_groups"], s)

    # no probe: its recomputed AdamW moments would start from zero
    resumed, logger, resumed_records = _fit(make_opt, make_sched, probe=None, ckpt_path=ckpt)
    _tiny.assert_trained(full.model)
    _tiny.assert_params_equal(resumed.model, full.model)
    expected = [s(k) if s is not None else LR * 0.5 ** (k // 3) for k in range(STEPS)]
    _tiny.assert_etas(full.probe.etas, expected)
    # the resumed run logs the same lr as the uninterrupted one from the checkpoint on
    full_lr, resumed_lr = full_logger.series("lr-AdamW"), logger.series("lr-AdamW")
    assert sorted(resumed_lr) == list(range(N // BATCH, STEPS))
    for step, value in resumed_lr.items():
        assert value == full_lr[step], (step, value, full_lr[step])
    assert _tiny.adaptlr_warnings(records + resumed_records) == []
