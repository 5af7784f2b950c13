"""Harmonic vibrational analysis of a Hessian: frequencies (cm^-1) and normal modes.

The Hessian is mass-weighted, ``Hm = M^-1/2 H M^-1/2``; the rigid-body motions (three translations and
three rotations, two for a linear molecule) are built in mass-weighted coordinates, orthonormalised and
projected out by diagonalising ``Hm`` in their orthogonal complement, so exactly ``3N - 6`` (``3N - 5``)
vibrational frequencies come out. The rigid block ``Q^T Hm Q`` is kept as a diagnostic: its frequencies are
~0 for a translation- and rotation-invariant energy at a stationary point.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase import units

#: sqrt(eV / (Å^2 amu)) in cm^-1 (angular frequency divided by 2 pi c)
EV_A2_AMU_TO_CM1 = np.sqrt(units._e / (1e-20 * units._amu)) / (2.0 * np.pi * units._c * 100.0)


@dataclass
class HarmonicAnalysis:
    """frequencies_cm1: [M] vibrational frequencies (cm^-1, negative = imaginary), ascending;
    modes: [M, N, 3] Cartesian displacement of each normal mode (unit norm); rigid_cm1: [K] frequencies of
    the projected-out rigid-body block (K = 6, or 5 for a linear molecule)."""

    frequencies_cm1: np.ndarray
    modes: np.ndarray
    rigid_cm1: np.ndarray


def _to_cm1(eigenvalues: np.ndarray) -> np.ndarray:
    return np.sign(eigenvalues) * np.sqrt(np.abs(eigenvalues)) * EV_A2_AMU_TO_CM1


def rigid_body_basis(positions: np.ndarray, masses: np.ndarray, tol: float = 1e-6) -> np.ndarray:
    """[3N, K] orthonormal mass-weighted translations and rotations (K = 6, 5 if linear, 3 for one atom)."""
    sq = np.sqrt(masses)
    com = (masses[:, None] * positions).sum(0) / masses.sum()
    r = positions - com
    vecs = []
    for a in range(3):
        t = np.zeros_like(positions)
        t[:, a] = 1.0
        vecs.append((sq[:, None] * t).reshape(-1))
        vecs.append((sq[:, None] * np.cross(t, r)).reshape(-1))
    u, s, _ = np.linalg.svd(np.stack(vecs, axis=1), full_matrices=False)
    return u[:, s > tol * s.max()]


def harmonic_analysis(hessian: np.ndarray, masses: np.ndarray, positions: np.ndarray,
                      project: bool = True) -> HarmonicAnalysis:
    """Frequencies and modes of ``hessian`` [3N, 3N] (eV/Å^2) for ``masses`` [N] (amu) at ``positions``."""
    n = len(masses)
    hessian = 0.5 * (hessian + hessian.T)
    inv_sq = np.repeat(1.0 / np.sqrt(masses), 3)
    hm = inv_sq[:, None] * hessian * inv_sq[None, :]
    if project:
        q = rigid_body_basis(positions, masses)
        full, _ = np.linalg.qr(np.concatenate([q, np.eye(3 * n)], axis=1))
        basis = full[:, q.shape[1]:3 * n]  # orthonormal complement of the rigid motions
        rigid = np.linalg.eigvalsh(q.T @ hm @ q)
    else:
        basis, rigid = np.eye(3 * n), np.zeros(0)
    evals, evecs = np.linalg.eigh(basis.T @ hm @ basis)
    cart = inv_sq[:, None] * (basis @ evecs)  # back to Cartesian displacements
    cart /= np.linalg.norm(cart, axis=0, keepdims=True)
    return HarmonicAnalysis(frequencies_cm1=_to_cm1(evals), modes=cart.T.reshape(-1, n, 3),
                            rigid_cm1=_to_cm1(rigid))


def write_modes(path, atoms, analysis: HarmonicAnalysis) -> None:
    """Normal modes as extended XYZ: one frame per mode, ``arrays['mode']`` the displacement and
    ``info['frequency_cm1']`` its frequency (viewable as vectors in most molecular viewers)."""
    from ase.io import write

    frames = []
    for freq, mode in zip(analysis.frequencies_cm1, analysis.modes):
        a = atoms.copy()
        a.calc = None
        a.arrays["mode"] = mode
        a.info["frequency_cm1"] = float(freq)
        frames.append(a)
    write(str(path), frames, format="extxyz")


def model_vibrations(atoms, calculator, optimize: bool = False, fmax: float = 1e-3, steps: int = 1000):
    """(relaxed atoms, :class:`HarmonicAnalysis`) of a structure with an ASE calculator that has
    ``get_hessian`` (e.g. :class:`muse_ff.MuSECalculator`); ``optimize`` relaxes it first with BFGS."""
    atoms = atoms.copy()
    atoms.calc = calculator
    if optimize:
        from ase.optimize import BFGS

        if not BFGS(atoms, logfile=None).run(fmax=fmax, steps=steps):
            raise ValueError(f"geometry optimisation did not reach fmax={fmax} eV/Å in {steps} steps")
    hess = calculator.get_hessian(atoms)
    return atoms, harmonic_analysis(hess, atoms.get_masses(), atoms.get_positions())
