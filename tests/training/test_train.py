"""End-to-end training runs on a tiny dataset: loss goes down, resume after a crash, files written."""

import csv
import json

import pytest
import torch

from muse_ff import load_model
from muse_ff.training import train
from muse_ff.training.callbacks import StopAfterEpoch


def _epoch_rows(out):
    with open(out / "logs" / "metrics.csv") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("val_loss")]
    return rows


def test_tiny_training_reduces_the_validation_loss(dimer_file, tmp_path, make_config):
    out = tmp_path / "run"
    result = train(make_config(dimer_file, out, epochs=6), progress=False)
    rows = _epoch_rows(out)
    assert len(rows) == 6
    assert float(rows[-1]["val_loss"]) < 0.5 * float(rows[0]["val_loss"])
    for name in ("model.pt", "last_model.pt", "summary.json", "config.yaml", "checkpoints/last.ckpt",
                 "checkpoints/best.ckpt", "checkpoints/epoch0000.ckpt"):
        assert (out / name).exists(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["test"]["energy_mae"] > 0 and summary["frames"]["train"] > 0
    model = load_model(result.model_path)
    assert model.species == [1, 8]  # species taken from the data when the config does not list them
    assert len(list(out.glob("**/*.tmp"))) == 0  # atomic writes leave no temporaries


def test_training_is_reproducible_with_the_same_seed(dimer_file, tmp_path, make_config):
    cfg = dict(epochs=2, shuffle=True, ema_decay=0.9)
    a = train(make_config(dimer_file, tmp_path / "a", **cfg), progress=False)
    b = train(make_config(dimer_file, tmp_path / "b", **cfg), progress=False)
    sa, sb = load_model(a.model_path).state_dict(), load_model(b.model_path).state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_resume_after_a_crash_continues_and_matches_an_uninterrupted_run(dimer_file, tmp_path, make_config):
    cfg = dict(epochs=4, shuffle=True, ema_decay=0.9, schedule="plateau", plateau_patience=0,
               plateau_factor=0.5)
    full = train(make_config(dimer_file, tmp_path / "full", **cfg), progress=False)
    crashed = tmp_path / "crashed"
    with pytest.raises(RuntimeError, match="simulated crash after epoch 1"):
        train(make_config(dimer_file, crashed, **cfg), progress=False, callbacks=[StopAfterEpoch(1)])
    # the crash hits before epoch 1's checkpoint (checkpoint callbacks run last): epoch 0 is on disk
    ckpt = torch.load(crashed / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["epoch"] == 0 and not (crashed / "model.pt").exists()
    resumed = train(make_config(dimer_file, crashed, **cfg), resume=True, progress=False)
    assert resumed.summary["epochs"] == 4
    epochs = [int(r["epoch"]) for r in _epoch_rows(crashed)]
    assert epochs[-3:] == [1, 2, 3]
    sa, sb = (torch.load(r.output_dir / "last_model.pt", weights_only=True)["state_dict"] for r in (full, resumed))
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], rtol=1e-5, atol=1e-6, msg=k)


def test_resume_without_checkpoint_says_so(dimer_file, tmp_path, make_config):
    with pytest.raises(FileNotFoundError, match="cannot resume: no checkpoint"):
        train(make_config(dimer_file, tmp_path / "none"), resume=True, progress=False)


def test_batch_size_must_split_over_processes(dimer_file, tmp_path, make_config):
    with pytest.raises(ValueError, match="must be divisible by the number of processes"):
        train(make_config(dimer_file, tmp_path / "x", batch_size=3), devices=2, progress=False)


def test_energy_only_frames_train_and_missing_forces_otherwise_stop_the_run(tmp_path, make_config, make_dimers):
    from ase.io import write

    from muse_ff.training.data import LabelError

    frames = make_dimers(15)
    for k in (0, 4, 7):
        del frames[k].arrays["REF_forces"]
    write(tmp_path / "d.extxyz", frames)
    with pytest.raises(LabelError, match=r"d.extxyz:0: REF_forces"):
        train(make_config(tmp_path / "d.extxyz", tmp_path / "err"), progress=False)
    cfg = make_config(tmp_path / "d.extxyz", tmp_path / "ok", epochs=1)
    cfg["data"]["missing_labels"] = "energy_only"
    result = train(cfg, progress=False)
    assert result.summary["last_metrics"]["val_forces_mae"] > 0


def test_stress_is_trained_and_reported_for_periodic_frames(tmp_path, make_config):
    import numpy as np
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.io import write

    rng = np.random.default_rng(0)
    frames = []
    for k in range(10):
        atoms = bulk("Cu", "fcc", a=3.6 + 0.05 * rng.normal(), cubic=True)
        atoms.rattle(0.05, seed=k)
        atoms.calc = EMT()
        atoms.info.update(REF_energy=atoms.get_potential_energy(), REF_stress=atoms.get_stress(),
                          split="valid" if k % 5 == 0 else "train")
        atoms.arrays["REF_forces"] = atoms.get_forces()
        atoms.calc = None
        frames.append(atoms)
    write(tmp_path / "cu.extxyz", frames)
    result = train(make_config(tmp_path / "cu.extxyz", tmp_path / "cu", epochs=2, batch_size=2), progress=False)
    metrics = result.summary["last_metrics"]
    assert metrics["val_stress_mae"] > 0 and np.isfinite(metrics["val_loss"])


def test_divergence_stops_with_a_message_that_names_the_learning_rate(dimer_file, tmp_path, make_config):
    from muse_ff.training.module import TrainingDivergedError

    cfg = make_config(dimer_file, tmp_path / "run", epochs=3, lr=1e12, grad_clip=None)
    with pytest.raises(TrainingDivergedError, match=r"training diverged at epoch \d+, step \d+: .*training\.lr"):
        train(cfg, progress=False)


def test_training_with_physical_terms_and_charge_input(tmp_path, make_config, make_dimers):
    """``model.physical`` + ``model.charges`` train from extxyz (charged frames given by info['charge'] and
    per-atom initial charges), and the saved model conserves each molecule's charge."""
    from ase.io import write

    frames = make_dimers(12)
    for k, a in enumerate(frames):
        if k % 3 == 0:  # a "cation" on the first molecule, given per atom
            a.set_initial_charges([1, 0, 0, 0, 0, 0])
            a.info["charge"] = 1
    write(tmp_path / "d.extxyz", frames)
    cfg = make_config(tmp_path / "d.extxyz", tmp_path / "run", epochs=2)
    cfg["model"].update({"physical": {"ewald": {"cutoff": 6.0, "switch_width": 1.0}}, "charges": True})
    model = load_model(train(cfg, progress=False).model_path)
    assert model.physical is not None and model.charge_embedding is not None
    g = model.graph_from_atoms(frames[0])
    q = model(g)["charges"].detach()
    assert float(q[:3].sum()) == pytest.approx(1.0, abs=1e-5) and float(q[3:].sum()) == pytest.approx(0, abs=1e-5)
