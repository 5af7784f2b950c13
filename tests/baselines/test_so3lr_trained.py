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


def test_dipole_option_config_and_training(tmp_path):
    """Trained on the dipole labels too: the package config gets the weight, the loss and the key, the labels are
    written as they are (e Å, about the frame's origin), the package reads them back, and a tiny run trains and
    logs the validation dipole error."""
    from so3krates_torch.data.utils import KeySpecification, load_from_xyz, update_keyspec_from_kwargs
    from so3krates_torch.tools.default_keys import DefaultKeys

    from muse_ff.baselines.so3lr import (
        DIPOLE_KEY,
        matched_dipole_weight,
        so3lr_training_config,
        train_so3lr,
        trained_so3lr_calculator,
    )

    train, valid = _frames()
    plain = so3lr_training_config(seed=0)
    assert "dipole_weight" not in plain["TRAINING"] and "dipole_key" not in plain["TRAINING"]["keys"]
    assert so3lr_training_config(seed=0, dipole_weight=0.0) == plain  # 0: the config without the option
    cfg = so3lr_training_config(seed=0, dipole_weight=631.0)
    assert cfg["TRAINING"]["dipole_weight"] == 631.0 and cfg["TRAINING"]["loss_type"] == "energy_forces_dipole"
    assert cfg["TRAINING"]["keys"]["dipole_key"] == DIPOLE_KEY == "REF_dipole"
    with pytest.raises(ValueError, match="dipole_weight"):
        so3lr_training_config(dipole_weight=-1.0)
    # the mapping: w_mu / mean(1 / n^2), so that frames of n atoms weigh as in MuSE's mean of dmu^2
    n = np.array([len(a) for a in train], dtype=float)
    assert matched_dipole_weight(train, 10.0) == pytest.approx(10.0 / np.mean(1.0 / n ** 2))
    same = [a.copy() for a in train[:1]] * 3
    assert matched_dipole_weight(same, 10.0) == pytest.approx(10.0 * len(same[0]) ** 2)

    w = matched_dipole_weight(train)
    run = train_so3lr(train, valid, tmp_path / "mu", seed=0, dipole_weight=w, **SETTINGS)
    assert run["config"]["TRAINING"]["dipole_weight"] == w
    assert "dipole_mae_me_A" in run["best_valid"] and np.isfinite(run["best_valid"]["dipole_mae_me_A"])
    log = (tmp_path / "mu" / "train.log").read_text()
    assert "Explicit loss type: energy_forces_dipole" in log and f"dipole={w}" in log
    # the package reads our labels from the file it trains on, unchanged
    keys = update_keyspec_from_kwargs(KeySpecification(), {**DefaultKeys.keydict(),
                                                           **run["config"]["TRAINING"]["keys"]})
    _, configs = load_from_xyz(str(tmp_path / "mu" / "train.xyz"), key_specification=keys)
    read = np.array([c.properties["dipole"] for c in configs])
    assert np.allclose(read, [a.info["REF_dipole"] for a in train], atol=1e-7)
    # its dipole is sum_i q_i r_i of its charges about the origin: for a charged frame it moves by Q t under a
    # shift t, for a neutral one it does not
    calc = trained_so3lr_calculator(tmp_path / "mu")
    for atoms in (train[0], train[-1]):
        atoms = atoms.copy()
        atoms.calc = calc
        atoms.get_potential_energy()
        q, mu = np.array(calc.results["partial_charges"]), np.array(calc.results["dipole"]).reshape(3)
        assert np.allclose(mu, q @ atoms.positions, atol=1e-6)
        shifted = atoms.copy()
        shifted.positions += [3.0, -2.0, 1.0]
        shifted.calc = calc
        shifted.get_potential_energy()
        mu_shifted = np.array(calc.results["dipole"]).reshape(3)
        assert np.allclose(mu_shifted - mu, atoms.info["charge"] * np.array([3.0, -2.0, 1.0]), atol=1e-4)
    # a frame without the label is refused, not trained towards (0, 0, 0)
    bare = [a.copy() for a in train]
    del bare[0].info["REF_dipole"]
    with pytest.raises(ValueError, match="REF_dipole"):
        train_so3lr(bare, valid, tmp_path / "bare", seed=0, dipole_weight=w, **SETTINGS)
