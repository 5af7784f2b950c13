"""Harmonic vibrational analysis of a Hessian: frequencies (cm^-1) and normal modes.

The Hessian is mass-weighted, ``Hm = M^-1/2 H M^-1/2``; the rigid-body motions are built in mass-weighted
coordinates, orthonormalised and projected out by diagonalising ``Hm`` in their orthogonal complement. Which
motions are rigid depends on the boundary conditions:

* a free structure (no periodic direction): three translations and three rotations (two for a linear
  molecule, none for one atom), so ``3N - 6`` (``3N - 5``) vibrational frequencies come out;
* periodic in one direction (a chain, a nanotube): the translations and the rotation about the periodic
  axis (it maps the periodic images onto themselves), ``3N - 4`` frequencies (``3N - 3`` when every atom lies
  on one line along that axis);
* periodic in two or three directions (a slab, a crystal, a liquid in a box): the three translations only,
  ``3N - 3`` frequencies. A rotation turns the lattice, so the energy is not invariant under it: the
  librations of a molecule in a periodic box are vibrations and are reported as such.

The rigid block ``Q^T Hm Q`` is kept as a diagnostic: its frequencies are ~0 for a translation- and
rotation-invariant energy at a stationary point.
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
    the projected-out rigid-body block (K = 6, or 5 for a linear molecule, when free; 4 periodic in one
    direction; 3 periodic in two or three)."""

    frequencies_cm1: np.ndarray
    modes: np.ndarray
    rigid_cm1: np.ndarray


def wavenumbers_cm1(eigenvalues: np.ndarray) -> np.ndarray:
    """Harmonic wavenumbers (cm^-1; negative = imaginary) of mass-weighted Hessian eigenvalues (eV/Å^2/amu):
    the one conversion of the library (:func:`harmonic_analysis`, the hessians dataset)."""
    return np.sign(eigenvalues) * np.sqrt(np.abs(eigenvalues)) * EV_A2_AMU_TO_CM1



def _periodic(pbc) -> np.ndarray:
    """pbc as three bools (``None`` or a single bool broadcast)."""
    flags = np.zeros(3, dtype=bool) if pbc is None else np.broadcast_to(np.asarray(pbc, dtype=bool), (3,))
    return np.array(flags)


def rigid_body_basis(positions: np.ndarray, masses: np.ndarray, tol: float = 1e-6, pbc=None,
                     cell=None) -> np.ndarray:
    """[3N, K] orthonormal mass-weighted rigid-body motions of a structure with boundary conditions ``pbc``.

    Free (``pbc`` None or all False): translations and rotations, K = 6, 5 if linear, 3 for one atom.
    Periodic in one direction: translations and the rotation about the periodic cell vector (``cell``
    [3, 3] is needed to know its direction), K = 4 (3 when every atom lies on that axis). Periodic in two or
    three directions: the three translations, K = 3.
    """
    positions = np.asarray(positions, dtype=float)
    masses = np.asarray(masses, dtype=float)
    periodic = _periodic(pbc)
    sq = np.sqrt(masses)
    com = (masses[:, None] * positions).sum(0) / masses.sum()
    r = positions - com
    vecs = []
    for a in range(3):
        t = np.zeros_like(positions)
        t[:, a] = 1.0
        vecs.append((sq[:, None] * t).reshape(-1))
    if periodic.sum() == 0:
        axes = list(np.eye(3))
    elif periodic.sum() == 1:
        if cell is None:
            raise ValueError("the rigid motions of a structure periodic in one direction need its cell (the "
                             "rotation about the periodic axis is one)")
        axis = np.asarray(cell, dtype=float).reshape(3, 3)[int(np.flatnonzero(periodic)[0])]
        length = np.linalg.norm(axis)
        if not length > 0:
            raise ValueError("the cell vector of the periodic direction has zero length")
        axes = [axis / length]
    else:
        axes = []
    for w in axes:
        vecs.append((sq[:, None] * np.cross(np.broadcast_to(w, r.shape), r)).reshape(-1))
    u, s, _ = np.linalg.svd(np.stack(vecs, axis=1), full_matrices=False)
    return u[:, s > tol * s.max()]


def harmonic_analysis(hessian: np.ndarray, masses: np.ndarray, positions: np.ndarray,
                      project: bool = True, pbc=None, cell=None) -> HarmonicAnalysis:
    """Frequencies and modes of ``hessian`` [3N, 3N] (eV/Å^2) for ``masses`` [N] (amu) at ``positions``.

    ``pbc`` (three bools; default free) and ``cell`` say which motions are rigid (see
    :func:`rigid_body_basis`). A Hessian with NaN or infinite entries, or masses that are not positive
    and finite, raise ``ValueError``.
    """
    hessian = np.asarray(hessian, dtype=float)
    masses = np.asarray(masses, dtype=float)
    n = len(masses)
    if hessian.shape != (3 * n, 3 * n):
        raise ValueError(f"the Hessian of {n} atoms must have shape ({3 * n}, {3 * n}), got {hessian.shape}")
    if not np.isfinite(hessian).all():
        bad = int((~np.isfinite(hessian)).sum())
        raise ValueError(f"the Hessian has {bad} NaN or infinite entries, so it has no frequencies (the model "
                         "gives non-finite second derivatives at this structure)")
    if not (np.isfinite(masses).all() and (masses > 0).all()):
        raise ValueError("every atomic mass must be positive and finite for a harmonic analysis, got "
                         f"{masses[~(np.isfinite(masses) & (masses > 0))][:5].tolist()}")
    hessian = 0.5 * (hessian + hessian.T)
    inv_sq = np.repeat(1.0 / np.sqrt(masses), 3)
    hm = inv_sq[:, None] * hessian * inv_sq[None, :]
    if project:
        q = rigid_body_basis(positions, masses, pbc=pbc, cell=cell)
        full, _ = np.linalg.qr(np.concatenate([q, np.eye(3 * n)], axis=1))
        basis = full[:, q.shape[1]:3 * n]  # orthonormal complement of the rigid motions
        rigid = np.linalg.eigvalsh(q.T @ hm @ q)
    else:
        basis, rigid = np.eye(3 * n), np.zeros(0)
    evals, evecs = np.linalg.eigh(basis.T @ hm @ basis)
    cart = inv_sq[:, None] * (basis @ evecs)  # back to Cartesian displacements
    cart /= np.linalg.norm(cart, axis=0, keepdims=True)
    return HarmonicAnalysis(frequencies_cm1=wavenumbers_cm1(evals), modes=cart.T.reshape(-1, n, 3),
                            rigid_cm1=wavenumbers_cm1(rigid))


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


def relaxed_copy(atoms, calculator, optimize: bool = False, fmax: float = 1e-3, steps: int = 1000):
    """A copy of ``atoms`` with ``calculator`` attached, relaxed with BFGS to ``fmax`` if ``optimize``."""
    atoms = atoms.copy()
    atoms.calc = calculator
    if optimize:
        from ase.optimize import BFGS

        if not BFGS(atoms, logfile=None).run(fmax=fmax, steps=steps):
            raise ValueError(f"geometry optimisation did not reach fmax={fmax} eV/Å in {steps} steps")
    return atoms


def structure_analysis(hessian: np.ndarray, atoms) -> HarmonicAnalysis:
    """:func:`harmonic_analysis` of ``hessian`` at ``atoms`` (its masses, positions, pbc and cell)."""
    return harmonic_analysis(hessian, atoms.get_masses(), atoms.get_positions(), pbc=atoms.pbc,
                             cell=np.asarray(atoms.cell))


def model_vibrations(atoms, calculator, optimize: bool = False, fmax: float = 1e-3, steps: int = 1000,
                     **hessian_options):
    """(relaxed atoms, :class:`HarmonicAnalysis`) of a structure with an ASE calculator that has
    ``get_hessian`` (e.g. :class:`muse_ff.MuSECalculator`); ``optimize`` relaxes it first with BFGS.
    ``hessian_options`` (e.g. ``max_memory``, ``chunk``) go to ``get_hessian``; the rigid motions projected
    out follow the structure's periodicity (see :func:`rigid_body_basis`)."""
    atoms = relaxed_copy(atoms, calculator, optimize, fmax, steps)
    hess = calculator.get_hessian(atoms, **hessian_options)
    return atoms, structure_analysis(hess, atoms)
