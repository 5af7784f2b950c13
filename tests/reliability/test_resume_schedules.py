"""Issue #13 item 6: a resumed run must be the same run as an uninterrupted one, for every LR schedule.

With ``schedule: plateau`` the ReduceLROnPlateau step of the checkpointed epoch was lost on resume
(Lightning stepped it after the epoch's checkpoint had been written), so the learning rate and then the
weights diverged from the uninterrupted run. Each case here trains a tiny model without interruption,
then crashes the same run after an epoch, resumes it from ``last.ckpt`` and compares every per-epoch
checkpoint: weights (and EMA), optimiser learning rate and scheduler state must be identical.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import get_args

import pytest
import torch
from ase.io import write

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
from tiny_runs import tiny_config, water_dimers  # noqa: E402

from muse_ff.training import train  # noqa: E402
from muse_ff.training.callbacks import StopAfterEpoch  # noqa: E402
from muse_ff.training.config import TrainingConfig  # noqa: E402

SCHEDULES = get_args(TrainingConfig.model_fields["schedule"].annotation)
EPOCHS, CRASH_AFTER = 6, 3  # the crash hits before epoch 3's checkpoint: the run resumes from epoch 2


@pytest.fixture(scope="module")
def frames_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "dimers.extxyz"
    write(path, water_dimers(15))
    return path


def _config(data, out, schedule: str, validation: bool) -> dict:
    cfg = tiny_config(data, out, epochs=EPOCHS, schedule=schedule, shuffle=True, ema_decay=0.5,
                      plateau_patience=0, plateau_factor=0.5, lr=5e-3, patience=None)
    if not validation:  # the plateau schedule then monitors the training loss
        cfg["data"] = {"train": str(data), "valid_fraction": 0.0}
    return cfg


def _epoch_checkpoints(out: Path) -> dict[int, dict]:
    ckpts = {int(p.stem.removeprefix("epoch")): torch.load(p, weights_only=True)
             for p in (out / "checkpoints").glob("epoch*.ckpt")}
    assert sorted(ckpts) == list(range(EPOCHS))
    return ckpts


def _lr(ckpt: dict) -> float:
    return ckpt["optimizer_states"][0]["param_groups"][0]["lr"]


CASES = [pytest.param(s, True, id=s) for s in SCHEDULES] + [pytest.param("plateau", False, id="plateau-no-valid")]


@pytest.mark.parametrize(("schedule", "validation"), CASES)
def test_crash_and_resume_equals_an_uninterrupted_run(frames_file, tmp_path, schedule, validation):
    train(_config(frames_file, tmp_path / "full", schedule, validation), progress=False)
    crashed = tmp_path / "crashed"
    cfg = _config(frames_file, crashed, schedule, validation)
    with pytest.raises(RuntimeError, match=f"simulated crash after epoch {CRASH_AFTER}"):
        train(cfg, progress=False, callbacks=[StopAfterEpoch(CRASH_AFTER)])
    assert torch.load(crashed / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == CRASH_AFTER - 1
    train(cfg, resume=True, progress=False)

    full, resumed = _epoch_checkpoints(tmp_path / "full"), _epoch_checkpoints(crashed)
    lrs = [_lr(full[e]) for e in range(EPOCHS)]
    if schedule != "constant":  # the schedule must act after the resume point, or the test shows nothing
        assert len(set(lrs[CRASH_AFTER - 1:])) > 1, f"{schedule}: learning rate never changed: {lrs}"
    for epoch in range(EPOCHS):
        a, b = full[epoch], resumed[epoch]
        assert _lr(b) == _lr(a), f"epoch {epoch}: lr {_lr(b)} after resume, {_lr(a)} uninterrupted ({lrs})"
        assert b["lr_schedulers"] == a["lr_schedulers"], f"epoch {epoch}: scheduler state differs"
        for key in a["state_dict"]:
            torch.testing.assert_close(b["state_dict"][key], a["state_dict"][key], rtol=0, atol=0,
                                       msg=f"epoch {epoch}: {key}")
    final = [torch.load(d / "last_model.pt", weights_only=True)["state_dict"] for d in (tmp_path / "full", crashed)]
    for key in final[0]:
        assert torch.equal(final[0][key], final[1][key]), key
