"""Physical quantities computed from energies of whole structures and of their fragments, one function each.

- :func:`interaction_energy`: E(complex) - E(fragment 1) - E(fragment 2) - ..., from energies already known
  (the teacher's labels, or a model's predictions); the datasets label with it, the demo and the
  benchmarks compare with it.
- :func:`dimer_monomers` / :func:`substrate_and_molecule`: how a dimer frame (``info['n_first']``) or a
  molecule-over-substrate frame (``info['n_substrate']``) splits into its rigid fragments.
- :func:`interaction_energies` / :func:`binding_energies`: a model's interaction (dimers) and binding
  (molecule over a substrate) energies of many frames, each fragment evaluated by the model itself.

Harmonic frequencies are in :mod:`muse_ff.analysis.vibrations` (:func:`~muse_ff.analysis.vibrations.harmonic_analysis`,
and :func:`~muse_ff.analysis.vibrations.wavenumbers_cm1` for mass-weighted Hessian eigenvalues).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from ase import Atoms


def interaction_energy(e_complex, *e_fragments):
    """E(complex) - E(fragment 1) - E(fragment 2) - ... (eV): floats or arrays, subtracted in order."""
    out = e_complex
    for e in e_fragments:
        out = out - e
    return out


def dimer_monomers(atoms: Atoms) -> tuple[Atoms, Atoms]:
    """The two monomers of a dimer frame: the first ``info['n_first']`` atoms and the rest, at the dimer's
    geometry; each one's ``info['charge']`` from its formal charges (:func:`muse_ff.data.atoms.fragment`)."""
    from muse_ff.data.atoms import fragment

    n = int(atoms.info["n_first"])
    return fragment(atoms, slice(None, n)), fragment(atoms, slice(n, None))


def substrate_and_molecule(atoms: Atoms) -> tuple[Atoms, Atoms]:
    """The rigid substrate (first ``info['n_substrate']`` atoms, keeps the cell) and the free molecule
    (no cell, no periodicity, centred on its centre of mass)."""
    n = int(atoms.info["n_substrate"])
    sub, mol = atoms[:n], atoms[n:]
    mol.pbc, mol.cell = False, None
    mol.positions -= mol.get_center_of_mass()
    return sub, mol


def interaction_energies(model, frames: Sequence[Atoms],
                         fragments: Callable[[Atoms], tuple[Atoms, ...]] = dimer_monomers,
                         batch_size: int = 32) -> np.ndarray:
    """[F] the model's E(complex) - sum of E(fragment) (eV), every fragment rigid at the complex's geometry
    and evaluated by the model (``fragments`` splits a frame; default :func:`dimer_monomers`)."""
    from muse_ff.analysis.metrics import predict_energies

    frames = list(frames)
    parts = list(zip(*(fragments(a) for a in frames)))
    energies = [predict_energies(model, list(fs), batch_size=batch_size) for fs in (frames, *parts)]
    return interaction_energy(*energies)


def binding_energies(model, frames: Sequence[Atoms], batch_size: int = 8) -> np.ndarray:
    """[F] the model's binding energies (eV): E(complex) - E(substrate) - E(molecule), fragments rigid
    (:func:`substrate_and_molecule`)."""
    return interaction_energies(model, frames, substrate_and_molecule, batch_size)
