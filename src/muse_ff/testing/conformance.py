"""Conformance suite every MuSE model configuration inherits.

Subclass :class:`ModelConformance` in a test module, name the subclass ``Test...`` and set ``config`` (a
``model:`` dict; the suite forces float64)::

    class TestMyBackbone(ModelConformance):
        config = {"backbone": {"name": "painn", "features": 16}, "levels": [{}, {}]}

Checked, through the ASE calculator a user would use: forces = -dE/dR against 4-point finite differences,
stress against finite strain, the Hessian against finite differences of forces, invariance to rotation,
translation and permutation, batch == unbatched, no gradient leaks across frames in a batch, extensivity
(two copies far apart give twice the energy), continuity of energy and forces as a pair crosses the
cutoff, and energy conservation in a short NVE (velocity Verlet) run.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms, units
from ase.build import bulk, molecule

try:  # ase >= 3.29
    from ase.md.velocitydistribution import thermalize_momenta
except ImportError:  # pragma: no cover - older ase
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution as thermalize_momenta
from ase.md.verlet import VelocityVerlet

from muse_ff.calculator import MuSECalculator
from muse_ff.nn.model import build_model
from muse_ff.physics.derivatives import energy_and_derivatives

#: a small, fast PaiNN for tests
SMALL_PAINN = {"name": "painn", "features": 16, "layers": 2, "num_basis": 8}

#: relative error allowed between autograd derivatives and 4-point finite differences (float64)
FD_RTOL = 1e-6


def fd_derivative(f, x0: np.ndarray, h: float) -> np.ndarray:
    """4-point central finite-difference gradient of scalar or array-valued ``f`` at ``x0`` (O(h^4))."""
    grads = []
    for k in range(x0.size):
        def at(step, k=k):
            x = x0.copy().ravel()
            x[k] += step
            return np.asarray(f(x.reshape(x0.shape)), dtype=np.float64)
        grads.append((-at(2 * h) + 8 * at(h) - 8 * at(-h) + at(-2 * h)) / (12 * h))
    return np.stack(grads)


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12))


def test_molecule(seed: int = 0) -> Atoms:
    """Two covalent components: rattled trans-butane and a water molecule 4 Å away (17 atoms)."""
    butane = molecule("trans-butane")
    water = molecule("H2O")
    water.translate(butane.positions.mean(axis=0) + np.array([0.0, 0.0, 4.0]) - water.positions.mean(axis=0))
    atoms = butane + water
    atoms.rattle(0.05, seed=seed)
    return atoms


def test_periodic(seed: int = 0) -> Atoms:
    """A rattled, slightly sheared 8-atom diamond Si cell, smaller than twice the cutoff."""
    atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    cell = atoms.cell[:].copy()
    cell[0, 1] += 0.3
    atoms.set_cell(cell, scale_atoms=True)
    atoms.rattle(0.05, seed=seed)
    return atoms


test_molecule.__test__ = False  # builders, not tests
test_periodic.__test__ = False


def random_rotation(seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


class ModelConformance:
    """Inherit with ``config`` set. Fixtures and tests below run for that configuration in float64."""

    config: dict = {"backbone": "painn"}
    #: distance between the two copies in the extensivity test (beyond the largest receptive field)
    extensivity_separation: float = 50.0
    #: initial temperature of the NVE run. An untrained model has no repulsion: at 300 K the seeded momenta
    #: send two of butane's hydrogens ballistically into each other (1.8 -> <0.5 Å in 20 fs with a random
    #: MACE), which tests the model's ignorance, not energy conservation.
    nve_temperature_K: float = 100.0

    @pytest.fixture(scope="class")
    @classmethod
    def model(cls):
        torch.manual_seed(0)
        model = build_model({**cls.config, "dtype": "float64"})
        model.reference.set(e0=torch.linspace(-1.0, -2.0, len(model.species)), scale=0.5, shift=0.1)
        return model.eval()

    def _energy(self, model, atoms):
        return MuSECalculator(model).get_potential_energy(atoms)

    # ------------------------------------------------------------------ derivatives vs finite differences
    @pytest.mark.parametrize("system", ["molecule", "periodic"])
    def test_forces_match_finite_differences(self, model, system):
        atoms = test_molecule() if system == "molecule" else test_periodic()
        calc = MuSECalculator(model)
        atoms.calc = calc
        forces = atoms.get_forces()
        x0 = atoms.get_positions()

        def energy(x):
            a = atoms.copy()
            a.set_positions(x)
            a.calc = calc  # same anchors: they are a per-system choice
            return a.get_potential_energy()

        fd = -fd_derivative(energy, x0, 3e-4).reshape(-1, 3)
        assert rel_err(forces, fd) < FD_RTOL

    def test_stress_matches_finite_strain(self, model):
        atoms = test_periodic()
        calc = MuSECalculator(model)
        atoms.calc = calc
        stress = atoms.get_stress(voigt=False)
        cell0, vol = atoms.cell[:].copy(), atoms.get_volume()

        def energy(eps_flat):
            eps = eps_flat.reshape(3, 3)
            eps = 0.5 * (eps + eps.T)
            a = atoms.copy()
            a.set_cell(cell0 @ (np.eye(3) + eps), scale_atoms=True)
            a.calc = calc
            return a.get_potential_energy()

        fd = fd_derivative(energy, np.zeros((3, 3)), 1e-4).reshape(3, 3) / vol
        assert rel_err(stress, fd) < FD_RTOL

    @pytest.mark.parametrize("system", ["molecule", "periodic"])
    def test_hessian_matches_finite_differences_of_forces(self, model, system):
        atoms = test_molecule() if system == "molecule" else test_periodic()
        calc = MuSECalculator(model)
        hess = calc.get_hessian(atoms)
        x0 = atoms.get_positions()

        def neg_forces(x):
            a = atoms.copy()
            a.set_positions(x)
            a.calc = calc
            return -a.get_forces().ravel()

        fd = fd_derivative(neg_forces, x0, 3e-4)
        assert np.abs(hess - hess.T).max() < 1e-10
        assert rel_err(hess, fd) < FD_RTOL

    # ------------------------------------------------------------------ symmetries
    @pytest.mark.parametrize("system", ["molecule", "periodic"])
    def test_rotation_translation_invariance(self, model, system):
        atoms = test_molecule() if system == "molecule" else test_periodic()
        atoms.calc = MuSECalculator(model)
        e0, f0 = atoms.get_potential_energy(), atoms.get_forces()
        rot = random_rotation(1)
        moved = atoms.copy()
        moved.set_cell(atoms.cell[:] @ rot.T)
        moved.set_positions(atoms.get_positions() @ rot.T + np.array([1.3, -7.1, 2.2]))
        moved.calc = MuSECalculator(model)
        assert abs(moved.get_potential_energy() - e0) < 1e-9 * max(1.0, abs(e0))
        np.testing.assert_allclose(moved.get_forces(), f0 @ rot.T, atol=1e-9)

    @pytest.mark.parametrize("system", ["molecule", "periodic"])
    def test_permutation_invariance(self, model, system):
        atoms = test_molecule() if system == "molecule" else test_periodic()
        atoms.calc = MuSECalculator(model)
        e0, f0 = atoms.get_potential_energy(), atoms.get_forces()
        perm = np.random.default_rng(2).permutation(len(atoms))
        shuffled = atoms[perm]
        shuffled.calc = MuSECalculator(model)
        assert abs(shuffled.get_potential_energy() - e0) < 1e-9 * max(1.0, abs(e0))
        np.testing.assert_allclose(shuffled.get_forces(), f0[perm], atol=1e-9)

    def test_invariant_to_lattice_translations_of_atoms(self, model):
        """Moving atoms by lattice vectors (wrapping) describes the same crystal: same energy and forces."""
        atoms = test_periodic()
        atoms.calc = MuSECalculator(model)
        e0, f0 = atoms.get_potential_energy(), atoms.get_forces()
        moved = atoms.copy()
        steps = np.random.default_rng(4).integers(-2, 3, size=(len(atoms), 3))
        moved.positions += steps @ atoms.cell[:]
        moved.calc = MuSECalculator(model)
        assert abs(moved.get_potential_energy() - e0) < 1e-9 * max(1.0, abs(e0))
        np.testing.assert_allclose(moved.get_forces(), f0, atol=1e-9)

    # ------------------------------------------------------------------ batching
    def test_batch_equals_unbatched(self, model):
        frames = [test_molecule(0), test_periodic(1), test_molecule(3)[:11]]
        out = energy_and_derivatives(model, model.graph_from_atoms(frames), forces=True)
        start = 0
        for b, atoms in enumerate(frames):
            single = energy_and_derivatives(model, model.graph_from_atoms(atoms), forces=True)
            n = len(atoms)
            assert torch.allclose(out["energy"][b], single["energy"][0], rtol=1e-12, atol=1e-10)
            assert torch.allclose(out["forces"][start:start + n], single["forces"], atol=1e-10)
            start += n

    def test_no_gradient_leaks_across_frames(self, model):
        graph = model.graph_from_atoms([test_molecule(0), test_molecule(5)])
        pos = graph.positions.detach().requires_grad_(True)
        energy = model(graph, positions=pos)["energy"]
        (grad,) = torch.autograd.grad(energy[0], pos)
        second = graph.frame_slice(1)
        assert torch.count_nonzero(grad[second]) == 0
        assert torch.count_nonzero(grad[graph.frame_slice(0)]) > 0

    # ------------------------------------------------------------------ locality and smoothness
    def test_extensivity_far_apart(self, model):
        atoms = test_molecule()
        other = atoms.copy()
        other.translate([self.extensivity_separation, 0.0, 0.0])
        e1 = self._energy(model, atoms)
        e2 = self._energy(model, atoms + other)
        assert abs(e2 - 2 * e1) < 1e-9 * max(1.0, abs(e2))

    def test_continuous_when_pair_crosses_cutoff(self, model):
        rc = model.cutoff
        calc = MuSECalculator(model)
        ds = rc + np.linspace(-2e-3, 2e-3, 41)
        energies, forces = [], []
        for d in ds:
            atoms = Atoms("CO", positions=[[0, 0, 0], [d, 0, 0]])
            atoms.calc = calc
            energies.append(atoms.get_potential_energy())
            forces.append(atoms.get_forces()[1, 0])
        energies, forces = np.array(energies), np.array(forces)
        h = ds[1] - ds[0]
        assert np.abs(np.diff(energies, 2)).max() < 1e-7  # a jump of J would show as ~J
        assert np.abs(np.diff(forces)).max() < 1e-5
        # energy consistent with the force along the path (no hidden kink)
        np.testing.assert_allclose(np.diff(energies), -0.5 * (forces[1:] + forces[:-1]) * h, atol=1e-9)

    def test_nve_energy_conservation(self, model):
        atoms = test_molecule()
        atoms.calc = MuSECalculator(model)
        thermalize_momenta(atoms, temperature_K=self.nve_temperature_K, rng=np.random.default_rng(0))
        dyn = VelocityVerlet(atoms, timestep=0.25 * units.fs)
        etot, epot = [], []
        for _ in range(80):
            dyn.run(1)
            etot.append(atoms.get_total_energy())
            epot.append(atoms.get_potential_energy())
        drift = np.ptp(etot)
        assert np.ptp(epot) > 1e-3  # the run actually explores the surface
        assert drift < 0.02 * np.ptp(epot) + 1e-6
