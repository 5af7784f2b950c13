"""SO3LR trained from scratch by so3krates-torch's own training code (muse_ff.baselines.so3lr.train_so3lr) and
evaluated through its own calculator: a tiny run (6 frames, 2 epochs, 16 features), its reproducibility and the
working folder's protection."""

import importlib.util

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.skipif(importlib.util.find_spec("so3krates_torch") is None,
                                reason="so3krates-torch is not installed (the so3lr extra)")

TINY = {"num_features": 16, "energy_regression_dim": 16, "num_heads": 2, "num_layers": 1, "degrees": [1, 2],
        "num_radial_basis_fn": 8}
SETTINGS = {"epochs": 2, "batch_size": 3, "architecture": TINY, "r_max_lr": 40.0}


def _frames():
    from muse_ff.training.data import read_frames
    from muse_ff.training.demo import demo_data

    frames = read_frames([str(demo_data())])
    train = [a for a in frames if a.info["split"] == "train"]
    valid = [a for a in frames if a.info["split"] == "valid"]
    # both neutral and charged frames (the ion + water pairs carry a total charge of +-1)
    charged = [a for a in train if a.info["charge"] != 0][:2]
    return [a for a in train if a.info["charge"] == 0][:4] + charged, valid[:3]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from muse_ff.baselines.so3lr import train_so3lr

    train, valid = _frames()
    base = tmp_path_factory.mktemp("so3lr")
    out = {"frames": (train, valid), "base": base}
    out["init"] = train_so3lr(train, valid, base / "init", seed=0, **{**SETTINGS, "epochs": 0})
    out["a"] = train_so3lr(train, valid, base / "a", seed=0, **SETTINGS)
    out["b"] = train_so3lr(train, valid, base / "b", seed=0, **SETTINGS)
    return out


def _energy(calc, atoms):
    atoms = atoms.copy()
    atoms.calc = calc
    return atoms.get_potential_energy()


def test_training_changes_the_model_and_evaluates(runs):
    from muse_ff.baselines.so3lr import interaction_curve, trained_so3lr_calculator

    train, _ = runs["frames"]
    a = runs["a"]
    assert a["best_epoch"] in (0, 1) and a["checkpoint"] and a["n_train"] == 6 and a["n_valid"] == 3
    assert a["config"]["ARCHITECTURE"]["r_max"] == 5.0
    assert a["config"]["TRAINING"]["keys"]["total_charge_key"] == "charge"
    assert runs["init"]["checkpoint"] is None and runs["init"]["best_epoch"] is None
    dtype = torch.get_default_dtype()
    init = trained_so3lr_calculator(runs["base"] / "init")
    trained = trained_so3lr_calculator(runs["base"] / "a")
    assert torch.get_default_dtype() == dtype  # the package sets it globally; the adapter restores it
    e_init, e_trained = _energy(init, train[0]), _energy(trained, train[0])
    assert np.isfinite(e_init) and np.isfinite(e_trained) and abs(e_trained - e_init) > 1e-3
    # the best checkpoint (EMA weights) is what is evaluated, not the last epoch's raw weights in the file
    assert abs(_energy(trained_so3lr_calculator(runs["base"] / "a", weights="last"), train[0]) - e_trained) > 1e-6
    # the total charge is an input read at every call
    charged = train[0].copy()
    charged.info["charge"] = 1.0
    assert abs(_energy(trained, charged) - e_trained) > 1e-4
    assert trained.results["partial_charges"].sum() == pytest.approx(1.0, abs=1e-4)
    curve = interaction_curve(trained, train[:2])
    assert curve.shape == (2,) and np.isfinite(curve).all()
    assert torch.get_default_dtype() == dtype


def test_same_seed_same_model(runs):
    """Bit-reproducible on CPU: the same seed gives the same checkpoint, weight for weight."""
    base = runs["base"]
    a = torch.load(base / "a" / "checkpoints" / runs["a"]["checkpoint"])["model"]
    b = torch.load(base / "b" / "checkpoints" / runs["b"]["checkpoint"])["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert runs["a"]["best_valid"] == runs["b"]["best_valid"]


def test_work_folder_is_protected_and_reused(runs, tmp_path):
    from muse_ff.baselines.so3lr import train_so3lr

    train, valid = runs["frames"]
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="not empty"):
        train_so3lr(train, valid, user, seed=0, **SETTINGS)
    assert [p.name for p in user.iterdir()] == ["notes.txt"] and (user / "notes.txt").read_text() == "keep"
    # a finished run with the same config is reused as it is, one with another config is refused
    again = train_so3lr(train, valid, runs["base"] / "a", seed=0, **SETTINGS)
    assert again == runs["a"]
    with pytest.raises(FileExistsError, match="another config"):
        train_so3lr(train, valid, runs["base"] / "a", seed=1, **SETTINGS)


def test_muse_loader_refuses_the_trained_pickle(runs):
    from muse_ff import ModelFileError, load_model

    with pytest.raises(ModelFileError):
        load_model(runs["base"] / "a" / runs["a"]["model_file"])
