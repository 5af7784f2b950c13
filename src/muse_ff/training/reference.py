"""Per-element reference energies, energy scale and shift, fitted from the training labels.

The total energy is ``E = sum_i E0[Z_i] + shift * N + scale * (learned part)`` (see
:class:`muse_ff.nn.heads.AtomicReference`). ``E0`` is the least-squares solution of
``counts @ E0 = energies`` over the training frames (``counts[f, s]`` = atoms of species ``s`` in frame
``f``). When the compositions do not span the species (the common case of a single molecule or every
frame having the same composition) the system is rank-deficient: we take the minimum-norm solution, which
splits the energy between the elements in proportion to their counts and still reproduces every training
composition's mean energy exactly. Elements the model knows but the data never shows get the mean energy
per atom.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from muse_ff.data.graph import Graph


@dataclass
class ReferenceFit:
    """Result of :func:`fit_reference` (energies in eV)."""

    e0: np.ndarray  # [S] per model species
    scale: float
    shift: float
    rank: int  # rank of the composition matrix over the species present
    present: int  # number of species present in the data

    @property
    def rank_deficient(self) -> bool:
        return self.rank < self.present


def _counts(graphs: Sequence[Graph], species: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    col = {z: k for k, z in enumerate(species)}
    counts = np.zeros((len(graphs), len(species)))
    energies = np.full(len(graphs), np.nan)
    for f, g in enumerate(graphs):
        for z, c in zip(*np.unique(g.species.numpy(), return_counts=True)):
            counts[f, col[int(z)]] = c
        if g.energy is not None:
            energies[f] = float(g.energy.sum())
    return counts, energies


def _scale(graphs: Sequence[Graph], per_atom_residual: np.ndarray) -> float:
    forces = [g.forces.reshape(-1) for g in graphs if g.forces is not None]
    forces = torch.cat(forces) if forces else torch.zeros(0)
    forces = forces[torch.isfinite(forces)]
    if forces.numel() > 0 and float(forces.pow(2).mean().sqrt()) > 1e-6:
        return float(forces.double().pow(2).mean().sqrt())  # force RMS (eV/Å)
    if per_atom_residual.size > 1 and per_atom_residual.std() > 1e-6:
        return float(per_atom_residual.std())
    return 1.0


def fit_reference(graphs: Sequence[Graph], species: Sequence[int], rcond: float = 1e-8) -> ReferenceFit:
    """Least-squares (minimum-norm when rank-deficient) ``E0`` per species, ``scale`` and ``shift``.

    Args:
        graphs: single-frame training graphs; frames without an energy label are ignored for ``E0``.
        species: the model's atomic numbers (order of ``E0``).
    """
    counts, energies = _counts(graphs, species)
    ok = np.isfinite(energies)
    if not ok.any():
        raise ValueError("cannot fit reference energies: no training frame has an energy label")
    present = np.flatnonzero(counts[ok].sum(axis=0) > 0)
    a, y = counts[ok][:, present], energies[ok]
    sol, _, rank, _ = np.linalg.lstsq(a, y, rcond=rcond)
    n_atoms = counts[ok].sum(axis=1)
    e0 = np.full(len(species), float(np.sum(y) / np.sum(n_atoms)))
    e0[present] = sol
    residual = (y - a @ sol) / n_atoms
    shift = float(residual.mean())
    return ReferenceFit(e0=e0, scale=_scale(graphs, residual - shift), shift=shift, rank=int(rank),
                        present=len(present))


def apply_reference(model, fit: ReferenceFit) -> None:
    """Write ``fit`` into ``model.reference`` (float64 buffers)."""
    model.reference.set(e0=torch.as_tensor(fit.e0), scale=fit.scale, shift=fit.shift)
