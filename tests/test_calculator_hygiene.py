"""Issue #17 item 4, calculator hygiene.

- ``calc.results`` holds standard ASE properties only: ``atoms.get_properties([...])`` raised
  ``KeyError: 'energy_levels'`` (ASE 3.29 builds ``ase.outputs.Properties`` from every key of ``results``).
  The per-level energies are an extra beside it: ``calc.get_energy_levels(atoms)`` and
  ``calc.extra_results['energy_levels']``.
- ``MuSECalculator(model, dtype="float64")`` (and ``--dtype`` on ``muse eval``, ``muse md``, ``muse hessian``)
  evaluates a float32 model in float64: forces are then minus the finite-difference gradient to ~1e-7.
- The calculator works on a copy: the caller's model keeps its training flag, device, dtype, requires_grad
  and weights.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import bulk, molecule
from ase.calculators.emt import EMT
from ase.io import read, write

from muse_ff import MuSECalculator, build_model, save_model
from muse_ff.calculator import check_dtype, evaluation_model
from muse_ff.cli.main import main

TINY = {"name": "painn", "features": 8, "layers": 1, "num_basis": 4}


def _tiny(dtype="float32", **extra):
    torch.manual_seed(0)
    model = build_model({"species": ["H", "C", "O", "Si"], "backbone": TINY, "dtype": dtype, **extra})
    model.reference.set(e0=[-13.6, -1030.0, -2040.0, -100.0], scale=0.5)
    return model


@pytest.fixture
def float32_muse():
    """An untrained float32 MuSE(PaiNN) with one coarse level, in training mode as built."""
    return _tiny(levels=[{}])


@pytest.fixture
def physical_model():
    return _tiny(physical={"hidden": 8})


def _snapshot(model):
    return {"training": [m.training for m in model.modules()],
            "params": {n: (p.detach().clone(), p.dtype, p.device, p.requires_grad)
                       for n, p in model.named_parameters()},
            "buffers": {n: (b.clone(), b.dtype, b.device) for n, b in model.named_buffers()},
            "dtype_": model.dtype_, "config": model.config}


def _assert_same(model, snap):
    assert [m.training for m in model.modules()] == snap["training"]
    assert model.dtype_ == snap["dtype_"] and model.config == snap["config"]
    for n, p in model.named_parameters():
        value, dtype, device, grad = snap["params"][n]
        assert (p.dtype, p.device, p.requires_grad) == (dtype, device, grad), n
        assert torch.equal(p.detach(), value), n
    for n, b in model.named_buffers():
        value, dtype, device = snap["buffers"][n]
        assert (b.dtype, b.device) == (dtype, device) and torch.equal(b, value), n


# ---------------------------------------------------------------- standard ASE results

def test_get_properties_of_a_molecule(float32_muse):
    atoms = molecule("CH3CH2OH")
    atoms.calc = MuSECalculator(float32_muse)
    props = atoms.get_properties(["energy", "free_energy", "forces", "energies"])  # was KeyError: 'energy_levels'
    assert props["energy"] == pytest.approx(atoms.get_potential_energy())
    assert props["free_energy"] == props["energy"]
    assert props["forces"].shape == (9, 3) and props["energies"].shape == (9,)
    assert props["energies"].sum() == pytest.approx(props["energy"])
    from ase.outputs import all_outputs

    assert set(atoms.calc.results) <= set(all_outputs)
    assert set(atoms.calc.implemented_properties) <= set(all_outputs)


def test_get_properties_with_stress_of_a_crystal():
    si = bulk("Si", "diamond", a=5.43)
    si.calc = MuSECalculator(_tiny())
    props = si.get_properties(["energy", "forces", "stress", "energies"])
    assert props["stress"].shape == (6,) and props["forces"].shape == (2, 3)
    np.testing.assert_allclose(props["stress"], si.get_stress())


def test_get_properties_with_charges_and_dipole(physical_model):
    atoms = molecule("H2O")
    atoms.calc = MuSECalculator(physical_model)
    props = atoms.get_properties(["energy", "forces", "charges", "dipole"])
    assert props["charges"].shape == (3,) and props["charges"].sum() == pytest.approx(0.0, abs=1e-6)
    np.testing.assert_allclose(props["charges"], atoms.get_charges())
    np.testing.assert_allclose(props["dipole"], atoms.get_dipole_moment())


def test_energy_levels_are_an_extra_outside_results(float32_muse):
    calc = MuSECalculator(float32_muse)
    with pytest.raises(ValueError, match="get_energy_levels needs atoms"):
        calc.get_energy_levels()
    atoms = molecule("CH3CH2OH")
    atoms.calc = calc
    levels = calc.get_energy_levels(atoms)  # computes on its own
    assert levels.shape == (2,) and levels.dtype == np.float64
    assert levels.sum() == pytest.approx(atoms.get_potential_energy())
    assert "energy_levels" not in calc.results
    np.testing.assert_array_equal(calc.extra_results["energy_levels"], levels)
    levels[0] = 0.0  # a copy
    assert calc.get_energy_levels()[0] != 0.0
    moved = atoms.copy()
    moved.positions[0] += 0.05
    new = calc.get_energy_levels(moved)  # recomputed for the new structure
    assert new.sum() == pytest.approx(calc.get_potential_energy(moved)) and new.sum() != pytest.approx(levels.sum())
    calc.reset()
    assert calc.extra_results == {} and calc.results == {}


# ---------------------------------------------------------------- dtype

def _fd_forces(calc, atoms, indices, h=1e-5):
    """Minus the central finite-difference gradient of the energy for the atoms ``indices``."""
    fd = np.zeros((len(indices), 3))
    for k, i in enumerate(indices):
        for d in range(3):
            e = []
            for sign in (1, -1):
                a = atoms.copy()
                a.positions[i, d] += sign * h
                e.append(calc.get_potential_energy(a))
            fd[k, d] = -(e[0] - e[1]) / (2 * h)
    return fd


def test_float64_evaluation_of_a_float32_model_is_rounding_away_and_fd_exact(float32_muse):
    atoms = molecule("CH3OH")
    atoms.rattle(0.05, seed=1)
    snap = _snapshot(float32_muse)
    c32, c64 = MuSECalculator(float32_muse), MuSECalculator(float32_muse, dtype="float64")
    assert c32.dtype == torch.float32 and c64.dtype == torch.float64
    assert {p.dtype for p in c64.model.parameters()} == {torch.float64}
    assert c64.model.reference.e0.dtype == torch.float64 and c64.model.config.dtype == "float64"
    e32, e64 = c32.get_potential_energy(atoms), c64.get_potential_energy(atoms)
    f32, f64 = c32.get_forces(atoms), c64.get_forces(atoms)
    # the same function: they differ by float32 rounding only
    assert e64 != e32 and abs(e64 - e32) < 1e-5 * abs(e64)
    assert np.abs(f64 - f32).max() < 1e-4 * max(1.0, np.abs(f64).max())
    np.testing.assert_allclose(c64.get_energy_levels(atoms).sum(), e64, rtol=1e-14)
    # float64 forces are minus the gradient of the float64 energy; in float32 finite differences are noise
    some = [0, 1, 2]  # C, O and an H: enough, and fast
    err64 = np.abs(f64[some] - _fd_forces(c64, atoms, some)).max()
    err32 = np.abs(f32[some] - _fd_forces(c32, atoms, some)).max()
    assert err64 < 1e-7
    assert err32 > 100 * err64
    _assert_same(float32_muse, snap)  # the caller's model: float32 as it was


def test_dtype_accepts_names_torch_dtypes_and_none():
    model = _tiny()
    assert MuSECalculator(model, dtype=torch.float64).dtype == torch.float64
    assert MuSECalculator(model, dtype="float32").dtype == torch.float32
    assert MuSECalculator(model, dtype=None).dtype == torch.float32  # the model's own
    m64 = _tiny("float64")
    assert MuSECalculator(m64).dtype == torch.float64
    down = MuSECalculator(m64, dtype="float32")  # the other way round works too
    assert down.dtype == torch.float32 and {p.dtype for p in down.model.parameters()} == {torch.float32}
    assert down.model.reference.e0.dtype == torch.float64  # reference energies stay float64, as built
    atoms = molecule("H2O")
    assert down.get_potential_energy(atoms) == pytest.approx(MuSECalculator(m64).get_potential_energy(atoms),
                                                             rel=1e-5)


def test_a_cast_model_matches_one_built_in_that_dtype():
    built64 = _tiny("float64")
    cast = evaluation_model(_tiny("float32"), dtype="float64")
    built32 = _tiny("float32")
    # same weights rounded to float32 then cast up: built64 loaded with built32's weights is the same model
    built64.load_state_dict(built32.state_dict())
    atoms = molecule("CH3OH")
    assert MuSECalculator(cast).get_potential_energy(atoms) == MuSECalculator(built64).get_potential_energy(atoms)
    assert cast.config == built64.config
    assert {n: b.dtype for n, b in cast.named_buffers()} == {n: b.dtype for n, b in built64.named_buffers()}


@pytest.mark.parametrize("bad", ["float16", "double", "Float64", "torch.float64", 64, torch.float16, torch.int64,
                                 np.float64])
def test_bad_dtype_is_one_sentence_naming_the_allowed_values(bad, tmp_path):
    with pytest.raises(ValueError) as err:
        check_dtype(bad)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"dtype={bad!r} is not") and "'float32' or 'float64'" in msg
    with pytest.raises(ValueError, match="'float32' or 'float64'"):
        MuSECalculator(_tiny(), dtype=bad)
    with pytest.raises(ValueError, match="'float32' or 'float64'"):  # before the model file is read
        MuSECalculator(tmp_path / "absent.pt", dtype=bad)


# ---------------------------------------------------------------- no mutation

def test_the_callers_model_is_never_changed(float32_muse):
    model = float32_muse
    assert model.training and all(p.requires_grad for p in model.parameters())
    snap = _snapshot(model)
    for kwargs in ({}, {"dtype": "float64"}, {"dtype": "float32"}):
        calc = MuSECalculator(model, **kwargs)
        assert calc.model is not model
        assert not calc.model.training and not any(p.requires_grad for p in calc.model.parameters())
        atoms = molecule("CH3CH2OH")
        atoms.calc = calc
        atoms.get_forces()
        if kwargs:
            calc.get_hessian(atoms)
        _assert_same(model, snap)
    frozen = _tiny().eval().requires_grad_(False)  # and a model in eval mode stays as it is too
    snap = _snapshot(frozen)
    MuSECalculator(frozen, dtype="float64").get_potential_energy(molecule("H2O"))
    _assert_same(frozen, snap)


def test_training_the_callers_model_later_does_not_change_the_calculator(float32_muse):
    calc = MuSECalculator(float32_muse)
    atoms = molecule("H2O")
    e = calc.get_potential_energy(atoms)
    with torch.no_grad():
        for p in float32_muse.parameters():
            p.add_(0.1)
    calc.reset()
    assert calc.get_potential_energy(atoms) == e
    assert MuSECalculator(float32_muse).get_potential_energy(atoms) != e


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_gpu_calculator_leaves_the_model_on_the_cpu(float32_muse):
    snap = _snapshot(float32_muse)
    calc = MuSECalculator(float32_muse, device="cuda", dtype="float64")
    assert next(calc.model.parameters()).device.type == "cuda"
    assert np.isfinite(calc.get_forces(molecule("CH3OH"))).all()
    _assert_same(float32_muse, snap)


# ---------------------------------------------------------------- CLI --dtype

@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A float32 MuSE model file and four EMT-labelled methanol frames."""
    path = tmp_path_factory.mktemp("hygiene")
    torch.manual_seed(0)
    model = build_model({"species": ["H", "C", "O"], "levels": [{}], "backbone": TINY})
    model.reference.set(e0=[-13.6, -1030.0, -2040.0], scale=0.5)
    save_model(model, path / "model32.pt")
    rng = np.random.default_rng(1)
    frames = []
    for _ in range(4):
        atoms = molecule("CH3OH")
        atoms.positions += rng.normal(0, 0.05, atoms.positions.shape)
        atoms.calc = EMT()
        atoms.info["REF_energy"] = atoms.get_potential_energy()
        atoms.arrays["REF_forces"] = atoms.get_forces()
        atoms.calc = None
        frames.append(atoms)
    write(path / "data.extxyz", frames)
    return path


def test_eval_dtype_float64(files, tmp_path):
    model, data = str(files / "model32.pt"), str(files / "data.extxyz")
    preds = {}
    for dtype in (None, "float32", "float64"):
        out = tmp_path / f"{dtype}.extxyz"
        assert main(["eval", model, data, "--json", "--output", str(out)]
                    + ([] if dtype is None else ["--dtype", dtype])) == 0
        preds[dtype] = read(out, ":")
    calc = MuSECalculator(model, dtype="float64")
    for frame, a, b, c in zip(read(data, ":"), preds[None], preds["float32"], preds["float64"]):
        # extxyz keeps energies to the last digit, forces to 1e-8 eV/Å
        assert c.info["MUSE_energy"] == pytest.approx(calc.get_potential_energy(frame), rel=1e-14, abs=0)
        np.testing.assert_allclose(c.arrays["MUSE_forces"], calc.get_forces(frame), rtol=0, atol=1e-8)
        np.testing.assert_array_equal(a.arrays["MUSE_forces"], b.arrays["MUSE_forces"])  # default: the model's
        assert a.info["MUSE_energy"] == b.info["MUSE_energy"]
        assert 0 < abs(c.info["MUSE_energy"] - a.info["MUSE_energy"]) < 1e-5 * abs(c.info["MUSE_energy"])
        assert np.abs(c.arrays["MUSE_forces"] - a.arrays["MUSE_forces"]).max() < 1e-4


def test_md_dtype_float64(files, tmp_path):
    write(tmp_path / "start.xyz", molecule("CH3OH"))
    traj = tmp_path / "md.traj"  # full precision (extxyz rounds positions and forces to 1e-8)
    assert main(["md", str(files / "model32.pt"), str(tmp_path / "start.xyz"), "--steps", "2", "--interval", "1",
                 "--dtype", "float64", "--trajectory", str(traj), "--log", str(tmp_path / "md.log"),
                 "--no-progress"]) == 0
    frames = read(traj, ":")
    assert len(frames) == 3
    c64 = MuSECalculator(str(files / "model32.pt"), dtype="float64")
    c32 = MuSECalculator(str(files / "model32.pt"))
    for frame in frames:
        assert frame.get_potential_energy() == pytest.approx(c64.get_potential_energy(frame), rel=1e-14, abs=0)
        np.testing.assert_allclose(frame.get_forces(), c64.get_forces(frame), rtol=0, atol=1e-12)
        assert frame.get_potential_energy() != c32.get_potential_energy(frame)


def test_hessian_dtype_float64(files, tmp_path):
    atoms = molecule("CH3OH")
    write(tmp_path / "m.xyz", atoms)
    hess = {}
    for dtype in ("float32", "float64"):
        out = tmp_path / f"h{dtype}.npy"
        assert main(["hessian", str(files / "model32.pt"), str(tmp_path / "m.xyz"), "--dtype", dtype,
                     "--modes", str(tmp_path / f"{dtype}.extxyz"), "--hessian-out", str(out), "--json"]) == 0
        hess[dtype] = np.load(out)
    expected = MuSECalculator(str(files / "model32.pt"), dtype="float64").get_hessian(atoms)
    np.testing.assert_allclose(hess["float64"], expected, atol=1e-10)
    np.testing.assert_allclose(hess["float64"], hess["float64"].T, atol=1e-10)  # symmetric to float64 rounding
    assert 0 < np.abs(hess["float64"] - hess["float32"]).max() < 1e-2 * np.abs(expected).max()


@pytest.mark.parametrize("command", ["eval", "md", "hessian"])
def test_a_bad_dtype_flag_names_the_choices(files, command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, str(files / "model32.pt"), str(files / "data.extxyz"), "--dtype", "float16"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "--dtype: invalid choice: 'float16'" in err and "float32" in err and "float64" in err
