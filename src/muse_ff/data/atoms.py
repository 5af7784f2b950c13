"""Build :class:`~muse_ff.data.graph.Graph` batches from ASE ``Atoms``, validating the input."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from ase import Atoms
from ase.data import chemical_symbols

from muse_ff.data.graph import Graph, LevelTopology
from muse_ff.data.neighbors import neighbor_list

#: default minimum interatomic distance (Å) below which a structure is rejected as overlapping
MIN_DISTANCE = 0.5


class StructureError(ValueError):
    """A structure that cannot be evaluated (empty, NaN coordinates, unknown element, ...)."""


@dataclass(frozen=True)
class LabelKeys:
    """Where labels live in extended XYZ / ``Atoms`` (mace/nequip-style defaults)."""

    energy: str = "REF_energy"
    forces: str = "REF_forces"
    stress: str = "REF_stress"
    #: dipole moment label (e Å, 3 numbers; free structures)
    dipole: str = "REF_dipole"
    #: interaction-energy label (training only, see :class:`muse_ff.training.data.GraphDataset`)
    interaction: str | None = None


def validate_atoms(atoms: Atoms, min_distance: float = MIN_DISTANCE, index: int | None = None) -> None:
    """Raise :class:`StructureError` naming the problem if ``atoms`` cannot be evaluated.

    Checks: empty structure, non-finite positions or cell, unknown element, periodic lattice vectors that
    are not linearly independent (a singular cell; along non-periodic directions the cell may be zero).
    Overlapping atoms are checked on the neighbour list in :func:`frame_graph`.
    """
    where = "" if index is None else f" (structure {index})"
    if len(atoms) == 0:
        raise StructureError(f"empty structure{where}: it has no atoms")
    pos = atoms.get_positions()
    bad = np.flatnonzero(~np.isfinite(pos).all(axis=1))
    if bad.size:
        raise StructureError(f"non-finite (NaN or inf) coordinates{where} for atoms {bad[:10].tolist()}")
    z = atoms.numbers
    unknown = np.flatnonzero((z < 1) | (z > 118))
    if unknown.size:
        k = int(unknown[0])
        # chemical_symbols covers Z = 0 ('X') to 118 only; a negative Z would index it from the end
        sym = f" {chemical_symbols[z[k]]!r}" if 0 <= z[k] < len(chemical_symbols) else ""
        raise StructureError(f"unknown element{sym} (Z={int(z[k])}) at atom {k}{where}: atomic numbers "
                             f"must be 1 to 118")
    pbc = np.asarray(atoms.pbc, dtype=bool)
    cell = np.asarray(atoms.cell[:], dtype=float)
    if not np.isfinite(cell).all():
        raise StructureError(f"wrong cell{where}: non-finite cell entries")
    if pbc.any():
        # the periodic lattice vectors must be linearly independent; along non-periodic directions the cell
        # may be anything, zero included (ASE's convention for slabs and wires)
        rows = cell[pbc]
        size = float(np.sqrt(max(np.linalg.det(rows @ rows.T), 0.0)))  # length, area or volume they span
        lengths = np.linalg.norm(cell, axis=1)
        if size < 1e-6 or (lengths[pbc] < 1e-6).any():
            k = int(pbc.sum())
            need = "a lattice vector of non-zero length" if k == 1 else f"{k} linearly independent lattice vectors"
            unit = {1: "Å", 2: "Å^2", 3: "Å^3"}[k]
            what = {1: "length", 2: "area", 3: "volume"}[k]
            raise StructureError(
                f"wrong cell{where}: periodic boundaries {pbc.tolist()} need {need}, got a singular cell "
                f"({what} {size:.3g} {unit}, lengths {np.round(lengths, 4).tolist()})"
            )


def _shorter(d: float, limit: float) -> str:
    """``d`` with 3 decimals, or as many more as it takes to show it below ``limit`` (0.4999, not 0.500)."""
    for digits in range(3, 12):
        text = f"{d:.{digits}f}"
        if float(text) < limit:
            return text
    return repr(float(d))


def _label_array(value, key: str, where: str, expected: str, fits) -> np.ndarray:
    """``value`` as float64 for which ``fits(array)``; else :class:`StructureError` naming key and frame."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise StructureError(f"label {key!r}{where} is not numeric (got {str(value)[:40]!r}); "
                             f"expected {expected}") from None
    if not fits(arr):
        raise StructureError(f"label {key!r}{where} has shape {list(arr.shape)}; expected {expected}")
    return arr


def _labels(atoms: Atoms, keys: LabelKeys, index: int | None = None) -> dict[str, np.ndarray | None]:
    """Energy (shape ``()``), forces ``[N, 3]`` and stress ``[3, 3]`` (from 9 or 6 Voigt numbers) found
    under ``keys``; a label of the wrong type or shape raises :class:`StructureError` naming the key, the
    expected shape and the frame (``index``)."""
    where = "" if index is None else f" of structure {index}"
    out: dict[str, np.ndarray | None] = {"energy": None, "forces": None, "stress": None, "dipole": None}
    n = len(atoms)
    if keys.energy in atoms.info:
        out["energy"] = _label_array(atoms.info[keys.energy], keys.energy, where, "one number (eV)",
                                     lambda a: a.size == 1).reshape(())
    if keys.forces in atoms.arrays:
        out["forces"] = _label_array(atoms.arrays[keys.forces], keys.forces, where,
                                     f"shape [{n}, 3] (eV/Å, one row per atom)", lambda a: a.shape == (n, 3))
    if keys.stress in atoms.info:
        s = _label_array(atoms.info[keys.stress], keys.stress, where, "9 numbers (3x3, eV/Å^3) or 6 (Voigt)",
                         lambda a: a.size in (6, 9)).ravel()
        if s.size == 6:  # Voigt xx yy zz yz xz xy
            xx, yy, zz, yz, xz, xy = s
            s = np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
        out["stress"] = s.reshape(3, 3)
    if keys.dipole in atoms.info:
        out["dipole"] = _label_array(atoms.info[keys.dipole], keys.dipole, where, "3 numbers (e Å)",
                                     lambda a: a.size == 3).reshape(3)
    return out


def _number(value, key: str, where: str) -> float:
    """``value`` of ``atoms.info[key]`` as a finite float, else :class:`StructureError` naming key and frame."""
    v = value.item() if isinstance(value, np.ndarray) and value.size == 1 else value
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)) \
            or not np.isfinite(v):
        raise StructureError(f"wrong info[{key!r}]{where}: expected one finite number, got {value!r}")
    return float(v)


def frame_charges(atoms: Atoms, index: int | None = None) -> tuple[float, float, np.ndarray | None]:
    """``(total charge, unpaired electrons, formal charges [n] or None)`` of a structure (model inputs).

    The total charge is ``atoms.info['charge']`` (the key the xTB teachers read), else the sum of the
    per-atom ``initial_charges``, else 0; the unpaired electrons ``atoms.info['uhf']`` (else 0). Formal
    charges are the ``initial_charges`` when any is non-zero; they must sum to ``info['charge']`` when both
    are given. Wrong values raise :class:`StructureError` naming the key and the frame (``index``).
    """
    where = "" if index is None else f" of structure {index}"
    formal = None
    if "initial_charges" in atoms.arrays:
        q = np.asarray(atoms.arrays["initial_charges"], dtype=np.float64)
        if not np.isfinite(q).all():
            raise StructureError(f"wrong initial_charges{where}: non-finite values")
        if np.any(q != 0):
            formal = q
    charge = _number(atoms.info["charge"], "charge", where) if "charge" in atoms.info else \
        (float(formal.sum()) if formal is not None else 0.0)
    if formal is not None and abs(float(formal.sum()) - charge) > 1e-6:
        raise StructureError(f"wrong charges{where}: info['charge'] = {charge:g} but the initial_charges sum to "
                             f"{float(formal.sum()):g}")
    spin = _number(atoms.info["uhf"], "uhf", where) if "uhf" in atoms.info else 0.0
    if spin < 0:
        raise StructureError(f"wrong info['uhf']{where}: the number of unpaired electrons is >= 0, got {spin:g}")
    return charge, spin, formal


def fragment(atoms: Atoms, index) -> Atoms:
    """``atoms[index]`` as a structure of its own: its ``info['charge']`` is the sum of its formal charges
    (``initial_charges``) when the frame has any, else 0 for a fragment cut from a charged frame (which does
    not say where its charge is), else left as it is."""
    part = atoms[index]
    charge, _, formal = frame_charges(atoms)
    if formal is not None:
        part.info["charge"] = float(part.get_initial_charges().sum())
    elif charge != 0:
        part.info["charge"] = 0.0
    return part


def frame_graph(
    atoms: Atoms,
    cutoff: float,
    *,
    keys: LabelKeys | None = LabelKeys(),
    min_distance: float = MIN_DISTANCE,
    index: int | None = None,
) -> Graph:
    """One validated structure as a single-frame float64 :class:`Graph` with a ``cutoff`` neighbour list.

    Labels are read with ``keys`` (pass ``keys=None`` to skip them).
    """
    validate_atoms(atoms, min_distance, index)
    pos = atoms.get_positions()
    cell = np.asarray(atoms.cell[:], dtype=np.float64)
    pbc = np.asarray(atoms.pbc, dtype=bool)
    i, j, s, d = neighbor_list(pos, cell, pbc, max(cutoff, min_distance))
    close = d < min_distance
    if close.any():
        a, b = int(i[close][0]), int(j[close][0])
        where = "" if index is None else f" in structure {index}"
        raise StructureError(
            f"overlapping atoms{where}: atoms {a} ({chemical_symbols[atoms.numbers[a]]}) and {b} "
            f"({chemical_symbols[atoms.numbers[b]]}) are {_shorter(d[close][0], min_distance)} Å apart "
            f"(minimum {min_distance} Å)"
        )
    keep = d < cutoff
    n = len(atoms)
    labels = _labels(atoms, keys, index) if keys is not None else {}
    charge, spin, formal = frame_charges(atoms, index)
    as_t = lambda x, dt=torch.float64: None if x is None else torch.as_tensor(x, dtype=dt)  # noqa: E731
    return Graph(
        positions=torch.as_tensor(pos, dtype=torch.float64),
        species=torch.as_tensor(atoms.numbers, dtype=torch.int64),
        cell=torch.as_tensor(cell, dtype=torch.float64).unsqueeze(0),
        pbc=torch.as_tensor(pbc).unsqueeze(0),
        batch=torch.zeros(n, dtype=torch.int64),
        ptr=torch.tensor([0, n], dtype=torch.int64),
        edge_index=torch.as_tensor(np.stack([i[keep], j[keep]]), dtype=torch.int64),
        shifts=torch.as_tensor(s[keep], dtype=torch.float64),
        cutoff=float(cutoff),
        energy=None if labels.get("energy") is None else as_t(labels["energy"]).reshape(1),
        forces=as_t(labels.get("forces")),
        stress=None if labels.get("stress") is None else as_t(labels["stress"]).unsqueeze(0),
        dipole=None if labels.get("dipole") is None else as_t(labels["dipole"]).unsqueeze(0),
        charge=torch.tensor([charge], dtype=torch.float64),
        spin=torch.tensor([spin], dtype=torch.float64),
        atom_charge=as_t(formal),
    )


def _cat_label(graphs: Sequence[Graph], name: str, shape_of) -> torch.Tensor | None:
    vals = [getattr(g, name) for g in graphs]
    if all(v is None for v in vals):
        return None
    return torch.cat([v if v is not None else torch.full(shape_of(g), float("nan"), dtype=torch.float64)
                      for v, g in zip(vals, graphs)])


def collate(graphs: Sequence[Graph]) -> Graph:
    """Batch single- or multi-frame graphs into one :class:`Graph` (indices offset, labels concatenated).

    A label present in some frames but not others is filled with NaN where missing.
    """
    if len(graphs) == 0:
        raise StructureError("empty batch: no structures given")
    if len({g.cutoff for g in graphs}) != 1:
        raise ValueError("cannot batch graphs built with different cutoffs")
    atom_off = torch.tensor([0] + [g.num_atoms for g in graphs]).cumsum(0)
    frame_off = torch.tensor([0] + [g.num_frames for g in graphs]).cumsum(0)
    ptr = torch.cat([graphs[0].ptr[:1]] + [g.ptr[1:] + atom_off[k] for k, g in enumerate(graphs)])
    has_comp = all(g.component is not None for g in graphs)
    comp = None
    if has_comp:
        comp_off = torch.tensor([0] + [int(g.component.max()) + 1 for g in graphs]).cumsum(0)
        comp = torch.cat([g.component + comp_off[k] for k, g in enumerate(graphs)])
    groups = None
    if all(g.charge_group is not None and g.group_charge is not None for g in graphs):
        group_off = torch.tensor([0] + [int(g.group_charge.numel()) for g in graphs]).cumsum(0)
        groups = (torch.cat([g.charge_group + group_off[k] for k, g in enumerate(graphs)]),
                  torch.cat([g.group_charge for g in graphs]))
    zeros = lambda g, n: torch.zeros(n, dtype=torch.float64, device=g.positions.device)  # noqa: E731
    per_frame = lambda name: torch.cat([getattr(g, name) if getattr(g, name) is not None  # noqa: E731
                                        else zeros(g, g.num_frames) for g in graphs])
    atom_charge = None
    if any(g.atom_charge is not None for g in graphs):
        atom_charge = torch.cat([g.atom_charge if g.atom_charge is not None else zeros(g, g.num_atoms)
                                 for g in graphs])
    n_levels = min(len(g.coarse) for g in graphs)
    coarse = []
    fine_off = atom_off
    for lev in range(n_levels):
        coarse_off = torch.tensor([0] + [g.coarse[lev].num_nodes for g in graphs]).cumsum(0)
        coarse.append(LevelTopology(
            member_atom=torch.cat([g.coarse[lev].member_atom + atom_off[k] for k, g in enumerate(graphs)]),
            member_node=torch.cat([g.coarse[lev].member_node + coarse_off[k] for k, g in enumerate(graphs)]),
            member_shift=torch.cat([g.coarse[lev].member_shift for g in graphs]),
            ref_atom=torch.cat([g.coarse[lev].ref_atom + atom_off[k] for k, g in enumerate(graphs)]),
            pair_fine=torch.cat([g.coarse[lev].pair_fine + fine_off[k] for k, g in enumerate(graphs)]),
            pair_coarse=torch.cat([g.coarse[lev].pair_coarse + coarse_off[k] for k, g in enumerate(graphs)]),
            pair_shift=torch.cat([g.coarse[lev].pair_shift for g in graphs]),
            node_image=torch.cat([g.coarse[lev].node_image for g in graphs]),
            node_free=torch.cat([g.coarse[lev].node_free for g in graphs])))
        fine_off = coarse_off
    return Graph(
        positions=torch.cat([g.positions for g in graphs]),
        species=torch.cat([g.species for g in graphs]),
        cell=torch.cat([g.cell for g in graphs]),
        pbc=torch.cat([g.pbc for g in graphs]),
        batch=torch.cat([g.batch + frame_off[k] for k, g in enumerate(graphs)]),
        ptr=ptr,
        edge_index=torch.cat([g.edge_index + atom_off[k] for k, g in enumerate(graphs)], dim=1),
        shifts=torch.cat([g.shifts for g in graphs]),
        cutoff=graphs[0].cutoff,
        energy=_cat_label(graphs, "energy", lambda g: (g.num_frames,)),
        forces=_cat_label(graphs, "forces", lambda g: (g.num_atoms, 3)),
        stress=_cat_label(graphs, "stress", lambda g: (g.num_frames, 3, 3)),
        dipole=_cat_label(graphs, "dipole", lambda g: (g.num_frames, 3)),
        charge=per_frame("charge"),
        spin=per_frame("spin"),
        atom_charge=atom_charge,
        component=comp,
        coarse=coarse,
        charge_group=None if groups is None else groups[0],
        group_charge=None if groups is None else groups[1],
    )


def atoms_to_graph(
    atoms: Atoms | Sequence[Atoms],
    cutoff: float,
    *,
    keys: LabelKeys | None = LabelKeys(),
    min_distance: float = MIN_DISTANCE,
) -> Graph:
    """One ``Atoms`` or a list of them as a batched, validated float64 :class:`Graph`."""
    frames = [atoms] if isinstance(atoms, Atoms) else list(atoms)
    if not frames:
        raise StructureError("empty structure list: no structures given")
    multi = len(frames) > 1
    return collate([frame_graph(a, cutoff, keys=keys, min_distance=min_distance, index=k if multi else None)
                    for k, a in enumerate(frames)])
