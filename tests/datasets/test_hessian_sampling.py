"""Normal-mode samples of the Hessian dataset do not depend on how the eigensolver picks its eigenvectors."""

import numpy as np
import pytest
from ase.build import molecule

from muse_ff.datasets.hessians import normal_mode_sample, normal_modes


def _spd_hessian(n_atoms: int, seed: int) -> np.ndarray:
    a = np.random.default_rng(seed).normal(size=(3 * n_atoms, 3 * n_atoms))
    return a @ a.T + 3 * n_atoms * np.eye(3 * n_atoms)


def test_sample_is_independent_of_eigenvector_signs_and_degenerate_bases():
    atoms = molecule("CH4")
    lam, vec = normal_modes(_spd_hessian(len(atoms), 0), atoms.get_masses())
    lam[8] = lam[7]  # a degenerate pair: any rotation inside it is an equally valid eigenbasis
    other = vec * np.where(np.arange(vec.shape[1]) % 2 == 0, -1.0, 1.0)  # flip every other sign
    c, s = np.cos(0.7), np.sin(0.7)
    other[:, [7, 8]] = other[:, [7, 8]] @ np.array([[c, -s], [s, c]])
    a = normal_mode_sample(np.random.default_rng(1), atoms, lam, vec, 300.0, 100.0)
    b = normal_mode_sample(np.random.default_rng(1), atoms, lam, other, 300.0, 100.0)
    np.testing.assert_allclose(a.positions, b.positions, atol=1e-12)
    assert np.abs(a.positions - atoms.positions).max() > 1e-3  # and it does displace the atoms


def test_sample_has_the_harmonic_mean_potential_energy():
    """Equipartition: <dx^T H dx / 2> = (3N - 6) kT / 2 over many samples (no soft mode floored here)."""
    from ase import units

    atoms = molecule("H2O")
    hess = _spd_hessian(len(atoms), 2)
    lam, vec = normal_modes(hess, atoms.get_masses())
    lam[:6] = 0.0  # pretend the six lowest are the rigid-body modes: they must not be excited
    rng = np.random.default_rng(3)
    energies = []
    for _ in range(4000):
        dx = (normal_mode_sample(rng, atoms, lam, vec, 300.0, 0.0).positions - atoms.positions).ravel()
        m = np.repeat(np.sqrt(atoms.get_masses()), 3)
        q = vec[:, 6:].T @ (m * dx)  # mass-weighted mode amplitudes
        energies.append(0.5 * (lam[6:] * q**2).sum())
    assert np.mean(energies) == pytest.approx(1.5 * units.kB * 300.0, rel=0.05)
