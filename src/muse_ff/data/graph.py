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
``dipole``         [B, 3]       float    label: dipole moment (e Å, free frames), optional
``charge``         [B]          float64  input: total charge of each frame (e), ``info['charge']``
``spin``           [B]          float64  input: unpaired electrons of each frame, ``info['uhf']``
``atom_charge``    [N]          float64  input: formal charges (e, ASE ``initial_charges``), optional
=================  ===========  =======  =====================================================

``charge`` and ``spin`` are the same keys the xTB teachers read (``muse label``); ``None`` means 0 for
every frame. ``atom_charge`` only says which covalent component carries a frame's charge (their sum per
component is that component's total charge); ``None`` when no atom has a non-zero initial charge.

The edge vector from receiver ``i`` to sender ``j`` is
``r_ij = positions[j] - positions[i] + shifts[e] @ cell[batch[i]]`` and is always computed inside the
model from these tensors, so forces and stress follow from autograd. The edge list is full (both
directions present) and contains every pair closer than the cutoff it was built with.

Coarse levels (Soft Coarse-Graining Pooling) add their discrete part, a function of each frame's covalent
topology (bond graph, elements, pbc), computed by ``MuSEModel.prepare`` (:mod:`muse_ff.nn.coarsening`):

==============================  ===========  =======  ================================================
``component``                   [N]          int64    covalently connected component of each atom
``coarse[k].member_atom``       [M_k]        int64    atoms of the seed groups of level k+1's nodes
``coarse[k].member_node``       [M_k]        int64    the level-(k+1) node each member seeds
``coarse[k].member_shift``      [M_k, 3]     float    image of each member relative to its node's reference
``coarse[k].ref_atom``          [N_{k+1}]    int64    reference atom of each level-(k+1) node
``coarse[k].pair_fine``         [P_k]        int64    level-k node of each assignment pair
``coarse[k].pair_coarse``       [P_k]        int64    level-(k+1) node of each assignment pair
``coarse[k].pair_shift``        [P_k, 3]     float    image of the fine node in the coarse node's frame
``coarse[k].node_image``        [N_{k+1}, 3] float    image of each node's reference atom, unwrapped in its component
``coarse[k].node_free``         [N_{k+1},3,3] float   projector onto the cell directions (integer image space) along
                                                      which the node's component is not bonded to its own images
                                                      (identity for a molecule; two copies of one node are the
                                                      same instance when their image difference has no part there)
==============================  ===========  =======  ================================================

Level 0 is the atoms (``N_0 = N``).

Models that use charges (``model.charges``, ``model.physical``) add the charge groups, also in ``prepare``
(:func:`muse_ff.nn.charges.charge_groups`):

==============================  ===========  =======  ================================================
``charge_group``                [N]          int64    charge group of each atom (0..G-1 over the batch)
``group_charge``                [G]          float64  total charge of each group (e)
==============================  ===========  =======  ================================================

A charge group is a covalent component whose total charge is known (from ``atom_charge``, or because its
frame is neutral or has one component); the components of a charged frame that does not say which of them
carries the charge form one group together.
"""


from dataclasses import dataclass, field, fields, replace
from typing import NamedTuple

import torch


class LevelTopology(NamedTuple):
    """The discrete part of one coarse level (tensors; see :mod:`muse_ff.data.graph` for the table).

    A named tuple, so that TorchScript (the exported model, :mod:`muse_ff.export`) takes it as it is."""

    member_atom: torch.Tensor  # [M] atoms of each coarse node's seed group
    member_node: torch.Tensor  # [M] coarse node of each member
    member_shift: torch.Tensor  # [M, 3] image of each member relative to its node's reference atom
    ref_atom: torch.Tensor  # [m] reference atom of each coarse node
    pair_fine: torch.Tensor  # [P] fine node of each assignment pair
    pair_coarse: torch.Tensor  # [P] coarse node of each assignment pair
    pair_shift: torch.Tensor  # [P, 3] image of the fine node in its coarse node's frame
    node_image: torch.Tensor  # [m, 3] image of each node's reference atom, unwrapped within its component
    node_free: torch.Tensor  # [m, 3, 3] projector onto the directions its component does not repeat along

    @property
    def num_nodes(self) -> int:
        return int(self.ref_atom.numel())

    def to(self, device=None, dtype=None) -> "LevelTopology":
        f = lambda t: t.to(device=device, dtype=dtype if t.is_floating_point() else None)  # noqa: E731
        return LevelTopology(*(f(t) for t in self))


def edge_vectors(positions: torch.Tensor, cell: torch.Tensor, batch: torch.Tensor, edge_index: torch.Tensor,
                 shifts: torch.Tensor) -> torch.Tensor:
    """[E, 3] vectors ``r_j - r_i + S_ij @ cell_b`` (Å) from receiver i to sender j (``edge_index`` [2, E]) with
    integer shifts ``S`` [E, 3] and each node's frame ``batch``, in the positions' dtype; differentiable in
    positions and ``cell`` [B, 3, 3]. The atoms' edges (:meth:`Graph.edge_vectors`) and the coarse levels'
    (:meth:`muse_ff.nn.pooling.CoarseLevel.edge_vectors`) both come from it; TorchScript compiles it."""
    i, j = edge_index[0], edge_index[1]
    return positions[j] - positions[i] + torch.einsum("ek,ekl->el", shifts.to(positions.dtype), cell[batch[i]])


#: floating fields that stay float64 whatever the model's dtype (energies and charges: exact sums)
_FLOAT64 = ("energy", "charge", "spin", "atom_charge", "group_charge")

#: names of optional label fields
LABEL_FIELDS = ("energy", "forces", "stress", "dipole")


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
    dipole: torch.Tensor | None = None
    charge: torch.Tensor | None = None
    spin: torch.Tensor | None = None
    atom_charge: torch.Tensor | None = None
    component: torch.Tensor | None = None
    coarse: list[LevelTopology] = field(default_factory=list)
    charge_group: torch.Tensor | None = None
    group_charge: torch.Tensor | None = None

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
        return edge_vectors(pos, cel, self.batch, self.edge_index, self.shifts)

    def to(self, device=None, dtype: torch.dtype | None = None) -> "Graph":
        """Copy to a device; floating geometry (positions, cell, shifts, forces, stress) cast to ``dtype``."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, torch.Tensor):
                cast = dtype if (dtype is not None and v.is_floating_point() and f.name not in _FLOAT64) else None
                out[f.name] = v.to(device=device, dtype=cast)
            elif f.name == "coarse":
                out[f.name] = [t.to(device=device, dtype=dtype) for t in v]
            else:
                out[f.name] = v
        return Graph(**out)

    def with_positions(self, positions: torch.Tensor, cell: torch.Tensor | None = None) -> "Graph":
        """Same graph (same edges, shifts, coarse topology) with new positions (and cell)."""
        return replace(self, positions=positions, cell=self.cell if cell is None else cell)

    def frames(self) -> list["Graph"]:
        """Every frame alone (as :meth:`frame`), in one pass over the edges: O(N + E) for the whole batch,
        where calling :meth:`frame` for each of B frames masks all E edges B times."""
        edge_frame = self.batch[self.edge_index[0]]
        if bool((edge_frame[1:] >= edge_frame[:-1]).all()):  # edges grouped by frame, as collate makes them
            bounds = torch.searchsorted(edge_frame, torch.arange(self.num_frames + 1, device=edge_frame.device))
            return [self.frame(b, slice(int(bounds[b]), int(bounds[b + 1]))) for b in range(self.num_frames)]
        return [self.frame(b) for b in range(self.num_frames)]

    def frame(self, b: int, edges: slice | None = None) -> "Graph":
        """Frame ``b`` alone as a single-frame graph (labels, charges and edges; no coarse topology or charge
        groups). ``edges``: the frame's edges, when the caller knows them (:meth:`frames`)."""
        sl = self.frame_slice(b)
        mask = self.batch[self.edge_index[0]] == b if edges is None else edges
        opt = lambda x, s: None if x is None else x[s]  # noqa: E731
        return Graph(positions=self.positions[sl], species=self.species[sl], cell=self.cell[b:b + 1],
                     pbc=self.pbc[b:b + 1], batch=torch.zeros(sl.stop - sl.start, dtype=torch.int64,
                                                             device=self.batch.device),
                     ptr=torch.tensor([0, sl.stop - sl.start], device=self.ptr.device),
                     edge_index=self.edge_index[:, mask] - sl.start, shifts=self.shifts[mask],
                     cutoff=self.cutoff, energy=opt(self.energy, slice(b, b + 1)), forces=opt(self.forces, sl),
                     stress=opt(self.stress, slice(b, b + 1)), dipole=opt(self.dipole, slice(b, b + 1)),
                     charge=opt(self.charge, slice(b, b + 1)),
                     spin=opt(self.spin, slice(b, b + 1)), atom_charge=opt(self.atom_charge, sl))

    def frame_slice(self, b: int) -> slice:
        return slice(int(self.ptr[b]), int(self.ptr[b + 1]))
