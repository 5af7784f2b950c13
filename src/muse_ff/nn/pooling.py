"""Soft Coarse-Graining Pooling: the smooth part of a coarse level.

The discrete part, computed once per bond topology (:mod:`muse_ff.nn.coarsening`), gives each coarse node c a
seed group of atoms G_c and a fixed set of assignment pairs (fine node i, coarse node c, image S_ic): those
whose seed groups are within the level's ``hops`` bonds. From it, at every call:

* seed  s_c = mean over m in G_c of (r_m + S_m @ cell): the centroid of the group, unwrapped;
* vector  v_ic = x_i + S_ic @ cell - s_c  (x_i: atom position, or the finer level's coarse position);
* weights  w_ic = exp(-|v_ic|^2 / 2 sigma^2 + A(h_i, g_c)) / sum_c' (...), normalised over i's pairs. Every
  pair is treated alike (no special "home" pair, no cutoff: the pair set is fixed by the topology, so the
  weights are smooth in the positions), and every fine node has at least one pair by construction.
  g_c are the coarse node's features pooled with the distance-only weights, so the affinity A reads
  what the node is, not which atom was its seed;
* coarse positions  X_c = s_c + sum_i w_ic v_ic / m_c,  m_c = sum_i w_ic  (relative to the seed: exact
  translation invariance and correct under periodic boundaries);
* coarse features  H_c = sum_i w_ic h_i / m_c, and m_c itself as an input feature; l = 1 vectors likewise when
  the coarse backbone has vector features (``vector_features``: a coarse MACE with ``vector_output: false``
  still takes them), l = 2 tensors when it takes them (``tensor_in_features``);
* unpooling  h_i += sum_c w_ic U(h_c);  coarse energies are handed back as  e_i = sum_c w_ic e_c / m_c.

The coarse radius graph is rebuilt from detached coarse positions at every call (like a neighbour list), in
torch on the positions' device (:func:`muse_ff.data.torch_neighbors.radius_graph`);
the backbone's smooth radial cutoff makes the energy continuous as coarse pairs cross it. Two coarse nodes
may coincide (a molecule or an ion inside a cage: both nodes at the cage's centre), where an edge has no
direction: every coarse edge's contribution is multiplied by an inner switch that rises from 0 at
:data:`CORE` [0] to 1 at :data:`CORE` [1] (C3-smooth), and edges inside the core are left out (their
weight is exactly 0), so the energy and its derivatives stay smooth and finite through coincidence.

Coarse nodes are as dense as molecules in a liquid, so a coarse node may have a thousand neighbours within a
20 Å cutoff where the gas-phase training data had a few: summed messages then extrapolate without bound
(+6,541 eV per water molecule in a 3.1 Å cell). Each edge's weight is also divided by the receiver's smooth
neighbour count, ``n0 / (n0 + rho_i)`` (``levels[k].saturation``), so the total weight a coarse node receives
stays below n0 at any density.

With ``levels[k].edges: within-component`` a coarse edge is kept only within one instance of a covalent
component (the graph's ``component`` and the levels' ``node_image`` / ``node_free``, fixed by the topology, so
the energy stays smooth): the level then carries information along a molecule or a bonded network and none
between molecules, a molecule's periodic copies included (:func:`coarse_graph`).
"""

from typing import List, NamedTuple, Optional, Tuple

import torch
from torch import Tensor, nn

from muse_ff.data.graph import LevelTopology, edge_vectors
from muse_ff.data.torch_neighbors import radius_graph
from muse_ff.errors import NonFiniteError
from muse_ff.nn.backbones.base import BackboneOutput
from muse_ff.nn.heads import EnergyHead
from muse_ff.nn.radial import inner_switch, smooth_cutoff

#: (inner, outer) radii (Å) of the coarse edges' inner switch: 0 below inner, 1 above outer
CORE = (0.5, 1.5)


class PoolState(NamedTuple):
    """One coarse level of one forward pass: what a level hands to the next (and, top-down, back).
    P assignment pairs, n fine nodes, m coarse nodes. A named tuple, so TorchScript takes it as it is."""

    pair_fine: Tensor  # [P] fine node index
    pair_coarse: Tensor  # [P] coarse node index
    weights: Tensor  # [P] w_ic, sum over each fine node's pairs = 1
    mass: Tensor  # [m] sum_i w_ic
    positions: Tensor  # [m, 3] coarse positions X_c (Å)
    batch: Tensor  # [m] frame of each coarse node
    scalars: Tensor  # [m, F] pooled features
    vectors: Optional[Tensor]  # [m, 3, F_v] pooled vector features
    tensors: Optional[Tensor]  # [m, 5, F_t] pooled l = 2 features (e3nn's basis), when the level's backbone takes them
    edge_index: Tensor  # [2, e] coarse radius graph (receiver, sender)
    shifts: Tensor  # [e, 3] integer cell shifts of coarse edges (in the positions' dtype)
    num_fine: int


def distribute(state: PoolState, coarse_values: Tensor) -> Tensor:
    """[m] values of coarse nodes -> [n] shares of the fine nodes of ``state`` (sums are preserved)."""
    w = state.weights.to(coarse_values.dtype)
    share = w * (coarse_values / state.mass.to(coarse_values.dtype))[state.pair_coarse]
    return coarse_values.new_zeros(state.num_fine).index_add_(0, state.pair_fine, share)


def unpool(state: PoolState, message: Tensor) -> Tensor:
    """[m, F] per-coarse-node messages -> [n, F] sum_c w_ic message_c for the fine nodes."""
    msg = state.weights[:, None] * message[state.pair_coarse]
    return msg.new_zeros(state.num_fine, msg.shape[1]).index_add_(0, state.pair_fine, msg)


def seed_positions(topo: LevelTopology, positions: Tensor, batch: Tensor, cell: Tensor) -> Tensor:
    """[m, 3] centroid of each coarse node's seed group (unwrapped through its members' images)."""
    m_atom, m_node = topo.member_atom, topo.member_node
    num_nodes = int(topo.ref_atom.shape[0])
    ref = positions[topo.ref_atom]
    rel = (positions[m_atom] + torch.einsum("mk,mkl->ml", topo.member_shift.to(positions.dtype),
                                            cell[batch[m_atom]]) - ref[m_node])
    count = torch.zeros(num_nodes, dtype=positions.dtype, device=positions.device).index_add_(
        0, m_node, torch.ones_like(rel[:, 0]))
    return ref + rel.new_zeros(num_nodes, 3).index_add_(0, m_node, rel) / count[:, None]


def _normalise(logit: Tensor, index: Tensor, n: int) -> Tensor:
    """Softmax of ``logit`` within each group of equal ``index`` (every group non-empty)."""
    with torch.no_grad():
        top = logit.new_full((n,), -torch.inf).scatter_reduce_(0, index, logit, reduce="amax")
    u = torch.exp(logit - top[index])
    return u / u.new_zeros(n).index_add_(0, index, u)[index]


#: a covalent component that does not repeat and has at most this many coarse nodes gets its within-component
#: edges from all pairs of its nodes (at most this many candidates per node) rather than from a neighbour search
#: (``coarse_graph``'s ``direct_max_nodes`` default, a literal there for TorchScript)
DIRECT_PAIRS_MAX_NODES = 128


def _pairs_within(pos: Tensor, component: Tensor, node_image: Tensor, cell: Tensor, cutoff: float, core: float,
                  nodes: Tensor) -> Tuple[Tensor, Tensor]:
    """Edges i <- (j, S) between ``nodes`` of one frame that share a component which does not repeat: every
    ordered pair i != j of one component with ``S = image_j - image_i`` (the one image of the same instance),
    kept when ``core < |r_j - r_i + S @ cell| < cutoff`` (as :func:`radius_graph` keeps pairs)."""
    order = torch.argsort(component[nodes], stable=True)
    d = nodes[order]
    cs = component[d]
    m = int(d.shape[0])
    change = torch.ones(m, dtype=torch.bool, device=d.device)
    change[1:] = cs[1:] != cs[:-1]
    gid = torch.cumsum(change.to(torch.int64), 0) - 1
    gcount = torch.bincount(gid)
    gstart = torch.cumsum(gcount, 0) - gcount
    per = gcount[gid]  # partners of each node, itself included
    rep = torch.repeat_interleave(torch.arange(m, device=d.device), per)
    offset = torch.arange(int(per.sum()), device=d.device) - torch.repeat_interleave(torch.cumsum(per, 0) - per, per)
    i, j = d[rep], d[gstart[gid][rep] + offset]
    s = torch.round(node_image[j] - node_image[i]).to(torch.int64)
    r = torch.linalg.vector_norm(pos[j] - pos[i] + s.to(pos.dtype) @ cell.to(pos.dtype), dim=-1)
    keep = (i != j) & (r < cutoff) & (r > core)
    return torch.stack([i[keep], j[keep]]), s[keep]


def coarse_graph(positions: Tensor, batch: Tensor, cell: Tensor, pbc: Tensor, cutoff: float, core: float,
                 component: Optional[Tensor] = None, node_image: Optional[Tensor] = None,
                 node_free: Optional[Tensor] = None, direct_max_nodes: int = 128) -> Tuple[Tensor, Tensor]:
    """Radius graph of coarse nodes (detached positions, periodic images, edges not longer than ``core``, the
    inner radius of :data:`CORE`, left out), frame by frame; the nodes of each frame are contiguous. Shifts in
    the positions' dtype.

    With ``component`` ([m] covalent component of each node; ``node_image`` and ``node_free`` are then the
    :class:`~muse_ff.data.graph.LevelTopology` fields, and are not read without it) only edges within one
    *instance* of a component are kept: the edge i <- (j, S) when i and j share a component and
    ``S - (image_j - image_i)`` has no part along the directions the component does not repeat along. A
    molecule's periodic copies are other molecules (no edge to them), a sheet's are the sheet itself (edges
    kept), a graphite layer's copy one c vector away is another layer. Nodes that are alone in a component that
    does not repeat can have no edge and are left out of the neighbour search (in a molecular liquid with one
    node per molecule nothing is searched at all); the nodes of a component that does not repeat and has at
    most ``direct_max_nodes`` (:data:`DIRECT_PAIRS_MAX_NODES`) nodes get their edges from the pairs of its own
    nodes (one image each, ``S = image_j - image_i``) instead of a search among every molecule within the cutoff
    (a liquid of molecules with several nodes each)."""
    pos = positions.detach()
    if not bool(torch.isfinite(pos).all()):
        raise NonFiniteError("a coarse level's positions are not finite (NaN or inf): the model's features "
                             "overflowed on this structure")
    counts = torch.bincount(batch, minlength=int(cell.shape[0]))
    alone = torch.zeros_like(batch, dtype=torch.bool)
    direct = torch.zeros_like(batch, dtype=torch.bool)
    if component is not None and node_free is not None and node_image is not None:
        repeats = torch.diagonal(node_free, dim1=1, dim2=2).sum(-1) < 2.5  # bonded to some of its images
        size = torch.bincount(component)[component]
        alone = (size == 1) & ~repeats
        direct = (size > 1) & (size <= direct_max_nodes) & ~repeats
    ei: List[Tensor] = []
    sh: List[Tensor] = []
    lo = 0
    for b in range(int(cell.shape[0])):
        hi = lo + int(counts[b])
        if component is not None and bool((alone[lo:hi] | direct[lo:hi]).any()):
            keep = torch.nonzero(~(alone[lo:hi] | direct[lo:hi])).squeeze(1)
            e, s = radius_graph(pos[lo:hi][keep], cell[b], pbc[b], cutoff, core)
            ei.append(keep[e] + lo)
            sh.append(s)
            if node_image is not None and bool(direct[lo:hi].any()):
                e, s = _pairs_within(pos, component, node_image, cell[b], cutoff, core,
                                     torch.nonzero(direct[lo:hi]).squeeze(1) + lo)
                ei.append(e)
                sh.append(s)
        else:
            e, s = radius_graph(pos[lo:hi], cell[b], pbc[b], cutoff, core)
            ei.append(e + lo)
            sh.append(s)
        lo = hi
    edge_index, shifts = torch.cat(ei, dim=1), torch.cat(sh).to(positions.dtype)
    if component is not None and node_image is not None and node_free is not None:
        i, j = edge_index[0], edge_index[1]
        offset = shifts - (node_image[j] - node_image[i]).to(shifts.dtype)
        off_instance = torch.einsum("ekl,el->ek", node_free[i].to(shifts.dtype), offset)
        same = (component[i] == component[j]) & (torch.linalg.vector_norm(off_instance, dim=-1) < 0.5)
        edge_index, shifts = edge_index[:, same], shifts[same]
    return edge_index, shifts


class CoarseLevel(nn.Module):
    """One coarse level: assignment affinity, backbone on coarse nodes, unpooling and energy head."""

    def __init__(self, config, fine_features: int, fine_vectors: int, cutoff: float, sigma: float,
                 backbone_factory, head_hidden: int, affinity_features: int = 16, fine_tensors: int = 0):
        super().__init__()
        self.config = config
        self.cutoff = float(cutoff)
        self.sigma = float(sigma)  # ModelConfig.level_sigmas: the one place of its default
        self.ratio = float(config.ratio)
        self.saturation = float(config.saturation)
        self.core = (float(CORE[0]), float(CORE[1]))
        self.within_component = config.edges == "within-component"
        self.query = nn.Linear(fine_features, affinity_features, bias=False)
        self.key = nn.Linear(fine_features, affinity_features, bias=False)
        self.backbone = backbone_factory(fine_features + 1, self.cutoff, fine_vectors, fine_tensors)
        self.pool_vectors = bool(self.backbone.vector_features)
        self.pool_tensors = bool(self.backbone.tensor_in_features)
        self.unpool_linear = nn.Linear(self.backbone.out_features, fine_features)
        self.head = EnergyHead(self.backbone.out_features, head_hidden)
        self._aff_scale = 1.0 / (3.0 * affinity_features**0.5)
        self.dispersion = None
        if config.dispersion:
            self.dispersion = nn.Sequential(nn.Linear(self.backbone.out_features, head_hidden), nn.SiLU(),
                                            nn.Linear(head_hidden, 1))
            self.dispersion_r0 = nn.Parameter(torch.tensor(3.0))  # damping radius (Å), used as |r0| + 1
        else:
            self.register_buffer("dispersion_r0", torch.zeros(()), persistent=False)  # unused

    def edge_vectors(self, state: PoolState, cell: Tensor) -> Tensor:
        """[e, 3] vectors (Å) along this level's coarse edges, periodic shifts included, in the model's dtype
        (formed in the dtype of the coarse positions, then rounded)."""
        return edge_vectors(state.positions, cell, state.batch, state.edge_index, state.shifts).to(state.scalars.dtype)

    def dispersion_energy(self, state: PoolState, cell: Tensor, scalars: Tensor) -> Tensor:
        """[m] learned damped dispersion energy (eV) of each coarse node (``levels[k].dispersion``).

        ``E = -sum_{I<J} c_I c_J f(R_IJ) / (R_IJ^6 + r0^6)`` over this level's coarse edges, with
        ``c_I = 10 softplus(MLP(h_I))`` >= 0 (eV^1/2 Å^3, geometric-mean C6 combination), a learned
        damping radius r0 and the level's C3 cutoff envelope f: attractive, decaying as -C6/R^6 far
        inside the cutoff, finite at short range, smooth everywhere. Each pair's energy is split
        equally between its two nodes. Zero without ``dispersion``.
        """
        dispersion = self.dispersion
        if dispersion is None:
            return scalars.new_zeros(scalars.shape[0])
        c = 10.0 * nn.functional.softplus(dispersion(scalars).squeeze(-1))
        r = torch.linalg.vector_norm(self.edge_vectors(state, cell), dim=-1)
        r0 = self.dispersion_r0.abs() + 1.0
        i, j = state.edge_index[0], state.edge_index[1]
        envelope = smooth_cutoff(r, self.cutoff) * inner_switch(r, self.core[0], self.core[1])
        pair = -c[i] * c[j] * envelope / (r**6 + r0**6)
        return 0.5 * pair.new_zeros(c.shape[0]).index_add_(0, i, pair)

    def _affinity(self, h_fine: Tensor, h_node: Tensor) -> Tensor:
        return 3.0 * torch.tanh((self.query(h_fine) * self.key(h_node)).sum(-1) * self._aff_scale)

    def pool(self, topo: LevelTopology, atom_batch: Tensor, atom_pos: Tensor, fine_pos: Tensor, cell: Tensor,
             pbc: Tensor, fine_scalars: Tensor, fine_vectors: Optional[Tensor],
             atom_component: Optional[Tensor] = None, fine_tensors: Optional[Tensor] = None) -> PoolState:
        """Pool level-k nodes into this level's nodes.

        Args:
            topo: this level's discrete part (``graph.coarse[k]``).
            atom_batch: [N] frame of each atom; ``cell`` [B, 3, 3] and ``pbc`` [B, 3] of each frame.
            atom_pos: [N, 3] atom positions (the seeds are taken from them).
            fine_pos: [n, 3] positions of the level-k nodes (atoms for k = 0).
            fine_scalars, fine_vectors, fine_tensors: the level-k backbone's output (l = 0, 1, 2).
            atom_component: [N] covalent component of each atom (needed with ``edges: within-component``).
        """
        nc, n = int(topo.ref_atom.shape[0]), int(fine_pos.shape[0])
        batch_c = atom_batch[topo.ref_atom]
        seed = seed_positions(topo, atom_pos, atom_batch, cell)
        pf, pc = topo.pair_fine, topo.pair_coarse
        vec = (fine_pos[pf] + torch.einsum("pk,pkl->pl", topo.pair_shift.to(fine_pos.dtype), cell[batch_c[pc]])
               - seed[pc])
        h = fine_scalars
        # seeds, vectors and coarse positions stay in the geometry's dtype (float64 from the calculator: no
        # rounding of absolute coordinates); weights and features are in the model's
        base = (-(vec**2).sum(-1) / (2 * self.sigma**2)).to(h.dtype)
        w0 = _normalise(base, pf, n)
        m0 = w0.new_zeros(nc).index_add_(0, pc, w0)
        g = h.new_zeros(nc, h.shape[1]).index_add_(0, pc, w0[:, None] * h[pf]) / m0[:, None]
        w = _normalise(base + self._affinity(h[pf], g[pc]), pf, n)
        mass = w.new_zeros(nc).index_add_(0, pc, w)
        wg, mg = w.to(vec.dtype), mass.to(vec.dtype)
        pos_c = seed + vec.new_zeros(nc, 3).index_add_(0, pc, wg[:, None] * vec) / mg[:, None]
        feats = h.new_zeros(nc, h.shape[1]).index_add_(0, pc, w[:, None] * h[pf]) / mass[:, None]
        vecs: Optional[Tensor] = None
        if fine_vectors is not None and self.pool_vectors:
            vecs = fine_vectors.new_zeros([nc, fine_vectors.shape[1], fine_vectors.shape[2]]).index_add_(
                0, pc, w[:, None, None] * fine_vectors[pf]) / mass[:, None, None]
        tens: Optional[Tensor] = None
        if fine_tensors is not None and self.pool_tensors:
            tens = fine_tensors.new_zeros([nc, fine_tensors.shape[1], fine_tensors.shape[2]]).index_add_(
                0, pc, w[:, None, None] * fine_tensors[pf]) / mass[:, None, None]
        comp_c: Optional[Tensor] = None
        if self.within_component:
            if atom_component is None:
                raise ValueError("a coarse level with edges: within-component needs the graph's covalent "
                                 "components (model.prepare adds them)")
            comp_c = atom_component[topo.ref_atom]
        edge_index, edge_shifts = coarse_graph(pos_c, batch_c, cell, pbc, self.cutoff, self.core[0], comp_c,
                                               topo.node_image, topo.node_free)
        return PoolState(pf, pc, w, mass, pos_c, batch_c, feats, vecs, tens, edge_index, edge_shifts, n)

    def run(self, state: PoolState, cell: Tensor) -> BackboneOutput:
        x = torch.cat([state.scalars, (state.mass / self.ratio).unsqueeze(-1)], dim=-1)
        vectors = self.edge_vectors(state, cell)
        return self.backbone(x, state.edge_index, vectors, state.vectors,
                             edge_weights=self.edge_weights(state, torch.linalg.vector_norm(vectors, dim=-1)),
                             node_tensors=state.tensors)

    def edge_weights(self, state: PoolState, r: Tensor) -> Tensor:
        """[e] weight of each coarse edge i <- j: inner switch x density normalisation (``saturation``)."""
        s = inner_switch(r, self.core[0], self.core[1])
        n0 = self.saturation
        rho = r.new_zeros(state.positions.shape[0]).index_add_(0, state.edge_index[0],
                                                               s * smooth_cutoff(r, self.cutoff))
        return s * (n0 / (n0 + rho))[state.edge_index[0]]
