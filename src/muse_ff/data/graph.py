"""The one data contract of MuSE: :class:`Graph`.

Every field is declared once here, with its shape, dtype and unit. ``N`` is the number of atoms in
the batch, ``B`` the number of frames (structures), ``E`` the number of directed edges.

=================  ===========  =======  =====================================================
field              shape        dtype    meaning (unit)
=================  ===========  =======  =====================================================
``positions``      [N, 3]       float    Cartesian positions (Å)
``species``        [N]          int64    atomic numbers Z (1..118)
``cell``           [B, 3, 3]    float    lattice vectors as rows (Å); zeros for a free molecule
``pbc``            [B, 3]       bool     periodic along each lattice vector
``batch``          [N]          int64    frame index of each atom, sorted, 0..B-1
``ptr``            [B + 1]      int64    atoms of frame b are ``ptr[b]:ptr[b+1]``
``edge_index``     [2, E]       int64    (receiver i, sender j) of each directed edge
``shifts``         [E, 3]       float    integer cell shifts S of each edge (lattice units)
``energy``         [B]          float64  label: total energy (eV), optional
``forces``         [N, 3]       float    label: forces (eV/Å), optional
``stress``         [B, 3, 3]    float    label: stress (eV/Å^3, ASE sign convention), optional
=================  ===========  =======  =====================================================

The edge vector from receiver ``i`` to sender ``j`` is
``r_ij = positions[j] - positions[i] + shifts[e] @ cell[batch[i]]`` and is always computed inside the
model from these tensors, so forces and stress follow from autograd. The edge list is full (both
directions present) and contains every pair closer than the cutoff it was built with.

Coarse levels (Soft Coarse-Graining Pooling) add discrete per-system choices, made once like a topology:

=================  ===============  =======  ================================================
``component``      [N]              int64    covalently connected component of each atom
``anchors[k]``     [N_{k+1}]        int64    for coarse level k+1, the index (into level k nodes)
                                             of each coarse node's anchor
``home[k]``        [N_k]            int64    for each level-k node, the index of its home
                                             coarse node at level k+1 (always assignable)
=================  ===============  =======  ================================================

Level 0 is the atoms (``N_0 = N``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import torch

#: names of optional label fields
LABEL_FIELDS = ("energy", "forces", "stress")


@dataclass
class Graph:
    """A batch of atomic structures with their neighbour lists. See the module docstring."""

    positions: torch.Tensor
    species: torch.Tensor
    cell: torch.Tensor
    pbc: torch.Tensor
    batch: torch.Tensor
    ptr: torch.Tensor
    edge_index: torch.Tensor
    shifts: torch.Tensor
    cutoff: float
    energy: torch.Tensor | None = None
    forces: torch.Tensor | None = None
    stress: torch.Tensor | None = None
    component: torch.Tensor | None = None
    anchors: list[torch.Tensor] = field(default_factory=list)
    home: list[torch.Tensor] = field(default_factory=list)

    @property
    def num_frames(self) -> int:
        return int(self.ptr.numel() - 1)

    @property
    def num_atoms(self) -> int:
        return int(self.positions.shape[0])

    @property
    def n_atoms(self) -> torch.Tensor:
        """[B] int64: atoms per frame."""
        return self.ptr[1:] - self.ptr[:-1]

    def edge_vectors(self, positions: torch.Tensor | None = None, cell: torch.Tensor | None = None):
        """[E, 3] vectors r_ij (Å) from receiver i to sender j, differentiable in positions and cell."""
        pos = self.positions if positions is None else positions
        cel = self.cell if cell is None else cell
        i, j = self.edge_index
        offset = torch.einsum("ek,ekl->el", self.shifts.to(pos.dtype), cel[self.batch[i]])
        return pos[j] - pos[i] + offset

    def to(self, device=None, dtype: torch.dtype | None = None) -> "Graph":
        """Copy to a device; floating geometry (positions, cell, shifts, forces, stress) cast to ``dtype``."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, torch.Tensor):
                cast = dtype if (dtype is not None and v.is_floating_point() and f.name != "energy") else None
                out[f.name] = v.to(device=device, dtype=cast)
            elif isinstance(v, list):
                out[f.name] = [t.to(device=device) for t in v]
            else:
                out[f.name] = v
        return Graph(**out)

    def with_positions(self, positions: torch.Tensor, cell: torch.Tensor | None = None) -> "Graph":
        """Same graph (same edges, shifts, anchors) with new positions (and cell)."""
        return replace(self, positions=positions, cell=self.cell if cell is None else cell)

    def frame_slice(self, b: int) -> slice:
        return slice(int(self.ptr[b]), int(self.ptr[b + 1]))
