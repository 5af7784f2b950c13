"""The pretrained SO3LR baseline (muse_ff.baselines.so3lr, package so3krates-torch) and MuSE's loader refusing
its pickled model file."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms

pytestmark = pytest.mark.skipif(importlib.util.find_spec("so3krates_torch") is None,
                                reason="so3krates-torch is not installed (the so3lr extra)")


def _packaged_model() -> Path:
    """so3krates-torch's packaged SO3LR file, located without importing the package."""
    spec = importlib.util.find_spec("so3krates_torch")
    return Path(next(iter(spec.submodule_search_locations))) / "pretrained" / "so3lr" / "so3lr.model"


def _water_dimer() -> Atoms:
    o, h1, h2 = [0.0, 0.0, 0.0], [0.757, 0.586, 0.0], [-0.757, 0.586, 0.0]
    first = np.array([o, h1, h2])
    second = first @ np.array([[1.0, 0, 0], [0, -1.0, 0], [0, 0, 1.0]]) + [0.3, 2.9, 0.2]
    return Atoms("OH2OH2", positions=np.vstack([first, second]))


@pytest.fixture(scope="module")
def calc():
    from muse_ff.baselines.so3lr import so3lr_calculator

    return so3lr_calculator(r_max_lr=30.0)


def test_energy_forces_finite_and_consistent(calc):
    atoms = _water_dimer()
    atoms.calc = calc
    dtype = torch.get_default_dtype()
    e, f = atoms.get_potential_energy(), atoms.get_forces()
    assert torch.get_default_dtype() == dtype  # the adapter leaves torch's default dtype alone
    assert np.isfinite(e) and f.shape == (6, 3) and np.isfinite(f).all()
    h = 1e-3
    for i, k in [(0, 0), (1, 1), (3, 2), (5, 0)]:
        energies = []
        for step in (h, -h):
            moved = atoms.copy()
            moved.positions[i, k] += step
            moved.calc = calc
            energies.append(moved.get_potential_energy())
        numeric = -(energies[0] - energies[1]) / (2 * h)
        assert numeric == pytest.approx(f[i, k], abs=2e-3, rel=2e-2)


def test_total_charge_is_an_input(calc):
    atoms = _water_dimer()
    atoms.calc = calc
    e0 = atoms.get_potential_energy()
    atoms.info["charge"] = 1.0  # same positions: the adapter must not serve the cached neutral energy
    e1 = atoms.get_potential_energy()
    assert abs(e1 - e0) > 0.1
    assert calc.results["partial_charges"].sum() == pytest.approx(1.0, abs=1e-4)
    atoms.info["charge"] = 0.0
    assert atoms.get_potential_energy() == pytest.approx(e0, abs=1e-6)


def test_muse_load_model_refuses_the_so3lr_pickle():
    """MuSE's loader refuses the file without unpickling it: no so3krates_torch class is imported."""
    code = ("import sys\nfrom muse_ff import ModelFileError, load_model\n"
            f"try:\n    load_model({str(_packaged_model())!r})\n"
            "except ModelFileError as err:\n    print('REFUSED', err)\nelse:\n    print('LOADED')\n"
            "print('IMPORTED' if any(m.startswith('so3krates_torch') for m in sys.modules) else 'CLEAN')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert "REFUSED" in out.stdout and "refused to load" in out.stdout and "other than plain data" in out.stdout
    assert "CLEAN" in out.stdout, out.stdout
