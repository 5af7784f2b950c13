"""The ASE calculator: properties, optimisation and MD with ase, anchor lifecycle, bad input."""

import numpy as np
import pytest
from ase import Atoms, units
from ase.build import bulk, molecule
from ase.calculators.calculator import PropertyNotImplementedError
from ase.md.langevin import Langevin
from ase.optimize import BFGS

from muse_ff import MuSECalculator, StructureError, build_model, save_model


def test_properties_of_molecule_and_crystal(small_model):
    mol = molecule("CH3CH2OH")
    mol.calc = MuSECalculator(small_model)
    e = mol.get_potential_energy()
    assert mol.get_forces().shape == (9, 3)
    assert np.isclose(mol.get_potential_energies().sum(), e)
    assert np.isclose(mol.calc.get_energy_levels().sum(), e)
    assert "energy_levels" not in mol.calc.results  # standard ASE results only (get_properties)
    with pytest.raises(PropertyNotImplementedError):
        mol.get_stress()
    si = bulk("Si", "diamond", a=5.43)
    si.calc = MuSECalculator(small_model)
    assert si.get_stress().shape == (6,)
    assert si.calc.get_hessian(si).shape == (6, 6)


def test_calculator_loads_model_from_path(small_model, tmp_path):
    save_model(small_model, tmp_path / "m.pt")
    a = molecule("H2O")
    a.calc = MuSECalculator(str(tmp_path / "m.pt"))
    b = molecule("H2O")
    b.calc = MuSECalculator(small_model)
    assert np.isclose(a.get_potential_energy(), b.get_potential_energy())


def test_bfgs_lowers_energy_and_converges(small_model):
    atoms = molecule("CH3OH")
    atoms.rattle(0.1, seed=0)
    atoms.calc = MuSECalculator(small_model)
    e0 = atoms.get_potential_energy()
    assert BFGS(atoms, logfile=None).run(fmax=0.01, steps=300)
    assert atoms.get_potential_energy() < e0


def test_langevin_md_runs_and_keeps_atoms_finite(small_muse):
    atoms = molecule("CH3CH2OH")
    atoms.calc = MuSECalculator(small_muse)
    dyn = Langevin(atoms, 0.5 * units.fs, temperature_K=300, friction=0.02, fixcm=False,
                   rng=np.random.default_rng(0))
    dyn.run(20)
    assert np.isfinite(atoms.positions).all() and np.isfinite(atoms.get_potential_energy())


def test_coarse_topology_cached_per_bond_graph_and_rebuilt_when_bonds_change(small_muse):
    calc = MuSECalculator(small_muse)
    atoms = molecule("CH3CH2OH")
    atoms.calc = calc
    atoms.get_potential_energy()
    first = calc._topology
    atoms.positions[:] += np.random.default_rng(0).normal(scale=0.03, size=atoms.positions.shape)
    atoms.get_potential_energy()
    assert calc._topology is first  # same bonds: same coarse topology, reused
    broken = atoms.copy()
    o = int(np.flatnonzero(broken.numbers == 8)[0])
    h = int(np.argsort(np.linalg.norm(broken.positions - broken.positions[o], axis=1))[1])
    broken.positions[h] += 2.0 * (broken.positions[h] - broken.positions[o])
    broken.calc = calc
    with pytest.warns(RuntimeWarning, match="bond topology changed"):
        broken.get_potential_energy()
    assert calc._topology is not first
    fresh = MuSECalculator(small_muse).get_potential_energy(broken)
    assert broken.get_potential_energy() == pytest.approx(fresh, abs=1e-6)


def test_calculator_raises_on_element_the_model_does_not_know():
    model = build_model({"backbone": {"name": "painn", "features": 8}, "species": ["H", "O"]})
    atoms = molecule("CH4")
    atoms.calc = MuSECalculator(model)
    with pytest.raises(StructureError, match="unknown element 'C'.*knows \\['H', 'O'\\]"):
        atoms.get_potential_energy()


def test_calculator_raises_on_overlapping_atoms(small_model):
    atoms = Atoms("HH", positions=[[0, 0, 0], [0.2, 0, 0]])
    atoms.calc = MuSECalculator(small_model)
    with pytest.raises(StructureError, match="overlapping atoms"):
        atoms.get_potential_energy()
