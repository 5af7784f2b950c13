"""Per-element reference energies, energy scale and shift: from isolated atoms, a given map, a loaded model
or a least-squares fit to the training labels.

The total energy is ``E = sum_i E0[Z_i] + shift * N + scale * (learned part)`` (see
:class:`muse_ff.nn.heads.AtomicReference`). Where does each ``E0`` come from (``data.E0s``, see
:class:`muse_ff.training.config.DataConfig`; :func:`reference_energies` applies the rules):

* isolated-atom frames (``config_type: IsolatedAtom``, one atom): E0 is that atom's energy;
* a map ``data.E0s: {element: eV}``;
* ``training.finetune_from``: the loaded model's E0 (and its ``scale`` and ``shift``);
* otherwise the least-squares fit: the solution of ``counts @ E0 = energies`` over the training frames
  (``counts[f, s]`` = atoms of species ``s`` in frame ``f``), E0s given by the sources above held fixed.
  When the compositions do not span the species (the common case of a single molecule or every frame
  having the same composition) the system is rank-deficient: we take the minimum-norm solution, which
  splits the energy between the elements in proportion to their counts and still reproduces every training
  composition's mean energy exactly.

Elements the model knows but the training data never shows (and no source gives) get the mean energy per
atom. ``shift`` is then the mean residual energy per atom and ``scale`` the force RMS (unless kept from a
loaded model).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from ase.data import atomic_numbers, chemical_symbols

from muse_ff.data.graph import Graph
from muse_ff.errors import MuseError

#: how an element's E0 was obtained (``ReferenceFit.sources``), and how the start-of-training line says it
SOURCES = {
    "isolated_atom": "from isolated atoms (config_type=IsolatedAtom)",
    "E0s": "from data.E0s",
    "finetune_from": "kept from the finetune_from model",
    "fit": "least-squares fit",
    "mean": "mean energy per atom (not in the training frames)",
}


class ReferenceEnergyError(MuseError, ValueError):
    """The reference energies cannot be set as the configuration asks (the message says why and what to do)."""


@dataclass
class ReferenceFit:
    """Result of :func:`fit_reference` / :func:`reference_energies` (energies in eV).

    ``rank`` and ``present`` describe the composition matrix of the training frames over the species
    present; ``rank_deficient`` says whether the *fitted* E0s were under-determined (minimum-norm split).
    ``sources`` maps each model species Z to how its E0 was obtained (keys of :data:`SOURCES`).
    """

    e0: np.ndarray  # [S] per model species
    scale: float
    shift: float
    rank: int  # rank of the composition matrix over the species present
    present: int  # number of species present in the data
    species: list[int] = field(default_factory=list)
    sources: dict[int, str] = field(default_factory=dict)
    fitted_rank_deficient: bool | None = None
    scale_source: str = "fit"
    shift_source: str = "fit"

    @property
    def rank_deficient(self) -> bool:
        if self.fitted_rank_deficient is not None:
            return self.fitted_rank_deficient
        return self.rank < self.present

    @property
    def source(self) -> str:
        """The sources used (``+``-joined, in :data:`SOURCES` order), e.g. ``isolated_atom`` or
        ``finetune_from+fit``; elements only given the mean energy per atom are not counted."""
        used = {s for s in self.sources.values() if s != "mean"}
        return "+".join(s for s in SOURCES if s in used) or "mean"

    def by_element(self) -> dict[str, float]:
        return {chemical_symbols[z]: float(e) for z, e in zip(self.species, self.e0)}

    def describe(self, max_elements: int = 12) -> str:
        """One line: each source with its elements and values, then shift and scale."""
        groups = []
        for src, words in SOURCES.items():
            zs = [k for k, z in enumerate(self.species) if self.sources.get(z) == src]
            if not zs:
                continue
            shown = [f"{chemical_symbols[self.species[k]]} {self.e0[k]:.4f}" for k in zs[:max_elements]]
            if len(zs) > max_elements:
                shown.append(f"... (+{len(zs) - max_elements} more)")
            extra = " (rank-deficient: minimum-norm split)" if src == "fit" and self.rank_deficient else ""
            groups.append(f"{words}{extra}: {', '.join(shown)}")
        kept = lambda what: " (kept)" if what == "finetune_from" else ""  # noqa: E731
        return (f"reference energies E0 (eV) {'; '.join(groups)}; shift {self.shift:.4f} eV/atom"
                f"{kept(self.shift_source)}, scale {self.scale:.4g}{kept(self.scale_source)}")

    def summary(self) -> dict:
        """What ``summary.json`` records under ``reference``."""
        return {"source": self.source, "e0": self.e0.tolist(), "species": list(self.species),
                "e0_by_element": self.by_element(),
                "e0_source": {chemical_symbols[z]: self.sources.get(z, "fit") for z in self.species},
                "scale": self.scale, "shift": self.shift, "scale_source": self.scale_source,
                "shift_source": self.shift_source, "rank": self.rank, "rank_deficient": self.rank_deficient}


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


def fit_reference(graphs: Sequence[Graph], species: Sequence[int], rcond: float = 1e-8, *,
                  fixed: Mapping[int, float] | None = None, sources: Mapping[int, str] | None = None,
                  scale: float | None = None, shift: float | None = None) -> ReferenceFit:
    """Least-squares (minimum-norm when rank-deficient) ``E0`` per species, ``scale`` and ``shift``.

    Args:
        graphs: single-frame training graphs; frames without an energy label are ignored for ``E0``.
        species: the model's atomic numbers (order of ``E0``).
        fixed: ``{Z: E0}`` held fixed (not fitted); the other species present in ``graphs`` are fitted to
            what remains of the energies.
        sources: how each fixed E0 was obtained (keys of :data:`SOURCES`; default ``E0s``).
        scale, shift: kept as given instead of fitted (a fine-tuned model's); with ``shift`` given the
            E0s are fitted to the energies less ``shift * N``.
    """
    fixed = {int(z): float(e) for z, e in (fixed or {}).items() if int(z) in species}
    counts, energies = _counts(graphs, species)
    ok = np.isfinite(energies)
    if not ok.any():
        raise ValueError("cannot fit reference energies: no training frame has an energy label")
    col = {z: k for k, z in enumerate(species)}
    is_fixed = np.zeros(len(species), dtype=bool)
    e_fixed = np.zeros(len(species))
    for z, e in fixed.items():
        is_fixed[col[z]], e_fixed[col[z]] = True, e
    c, energy = counts[ok], energies[ok]
    n_atoms = c.sum(axis=1)
    in_data = c.sum(axis=0) > 0
    present = np.flatnonzero(in_data)
    free = np.flatnonzero(in_data & ~is_fixed)
    y = energy - c @ e_fixed - (0.0 if shift is None else shift * n_atoms)
    e0 = np.full(len(species), float(np.sum(energy) / np.sum(n_atoms)))
    e0[is_fixed] = e_fixed[is_fixed]
    fitted_deficient = False
    if free.size:
        sol, _, free_rank, _ = np.linalg.lstsq(c[:, free], y, rcond=rcond)
        e0[free] = sol
        fitted_deficient = int(free_rank) < free.size
    rank = int(np.linalg.matrix_rank(c[:, present], tol=None)) if free.size < present.size else int(free_rank)
    residual = (energy - c @ e0) / n_atoms
    shift_value = float(residual.mean()) if shift is None else float(shift)
    scale_value = _scale(graphs, residual - shift_value) if scale is None else float(scale)
    labels = {}
    for k, z in enumerate(species):
        if is_fixed[k]:
            labels[z] = (sources or {}).get(z, "E0s")
        else:
            labels[z] = "fit" if in_data[k] else "mean"
    return ReferenceFit(e0=e0, scale=scale_value, shift=shift_value, rank=rank, present=len(present),
                        species=list(species), sources=labels, fitted_rank_deficient=fitted_deficient,
                        scale_source="fit" if scale is None else "finetune_from",
                        shift_source="fit" if shift is None else "finetune_from")


@dataclass
class LoadedReference:
    """The reference of a model to fine-tune (``training.finetune_from``)."""

    species: list[int]
    e0: np.ndarray
    scale: float
    shift: float

    @classmethod
    def of(cls, model) -> "LoadedReference":
        ref = model.reference
        return cls(species=list(model.species), e0=ref.e0.detach().cpu().double().numpy().copy(),
                   scale=float(ref.scale), shift=float(ref.shift))


def _names(zs) -> str:
    return ", ".join(f"{chemical_symbols[z]} (Z={z})" for z in sorted(zs))


def reference_energies(graphs: Sequence[Graph], species: Sequence[int], e0s: str | Mapping[str, float] = "auto",
                       *, isolated: Mapping[int, float] | None = None, data_species: Sequence[int] = (),
                       loaded: LoadedReference | None = None) -> ReferenceFit:
    """The reference energies as ``data.E0s`` asks (see :class:`~muse_ff.training.config.DataConfig`).

    Args:
        graphs: the training graphs the fit uses (isolated atoms used as E0s excluded).
        species: the model's species.
        e0s: ``auto``, ``isolated``, ``fit``/``average`` or ``{element symbol: eV}``.
        isolated: ``{Z: energy}`` of the isolated-atom frames.
        data_species: every element of the data (all splits); each needs an E0 from the chosen source.
        loaded: the reference of the ``finetune_from`` model.

    Raises:
        ReferenceEnergyError: a map or the isolated atoms lack an element of the data; ``isolated`` without
            isolated-atom frames.
    """
    isolated = dict(isolated or {})
    data_z = set(int(z) for z in data_species) | {int(z) for g in graphs for z in g.species.unique().tolist()}
    mode = "fit" if e0s == "average" else e0s
    given: dict[int, float] = {}
    given_as = ""
    if isinstance(mode, Mapping):
        given, given_as = {atomic_numbers[s]: float(e) for s, e in mode.items()}, "E0s"
    elif mode in ("auto", "isolated"):
        if isolated:
            given, given_as = dict(isolated), "isolated_atom"
        elif mode == "isolated":
            raise ReferenceEnergyError("data.E0s: isolated needs isolated-atom frames (info config_type = "
                                       "IsolatedAtom, one atom, an energy label) and the data has none; add them, "
                                       "or set data.E0s to fit or to a map {element: eV}")
    elif mode != "fit":
        raise ValueError(f"unknown E0s choice {mode!r}")
    kept: dict[int, float] = {}
    if loaded is not None and mode != "fit":
        kept = {z: float(e) for z, e in zip(loaded.species, loaded.e0) if z not in given}
    if given:
        lacking = sorted(data_z - set(given) - set(kept))
        if lacking:
            if given_as == "E0s":
                raise ReferenceEnergyError(f"data.E0s has no energy for {_names(lacking)}, which the data contain; "
                                           "add it to the map (element: eV), or set data.E0s: fit")
            raise ReferenceEnergyError(f"no isolated-atom frame (config_type = IsolatedAtom) for {_names(lacking)}, "
                                       f"which the data contain (isolated atoms give {_names(given)}); add one per "
                                       "element, or set data.E0s to fit or to a map {element: eV}")
    fixed = {**kept, **given}
    sources = {**{z: "finetune_from" for z in kept}, **{z: given_as for z in given}}
    scale = shift = None
    if loaded is not None:
        scale = loaded.scale
        old = dict(zip(loaded.species, (float(e) for e in loaded.e0)))
        changed = mode == "fit" or any(z in old and not np.isclose(e, old[z], rtol=0, atol=1e-9)
                                       for z, e in given.items())
        shift = None if changed else loaded.shift
    return fit_reference(graphs, species, fixed=fixed, sources=sources, scale=scale, shift=shift)


def apply_reference(model, fit: ReferenceFit) -> None:
    """Write ``fit`` into ``model.reference`` (float64 buffers)."""
    model.reference.set(e0=torch.as_tensor(fit.e0), scale=fit.scale, shift=fit.shift)
