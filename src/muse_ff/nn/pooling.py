"""Soft Coarse-Graining Pooling: the smooth part of a coarse level.

For a fine level with nodes i (positions r_i, features h_i) and the coarse nodes c of the next level, each
sitting on an anchor a_c chosen once per system (:mod:`muse_ff.nn.anchors`):

* candidates of i: every anchor of i's covalent component within ``reach`` (minimum image), plus i's
  home anchor, which is always a candidate (no cutoff on it), so every node is always assigned;
* weights  w_ic = c_ic exp(-d_ic^2 / 2 sigma^2 + A(h_i, h_{a_c})) / sum_c' (...), with c_ic the C3-smooth
  cutoff of ``reach`` (1 for the home pair); weights are >= 0, sum to 1 over c, and are smooth in r;
* coarse positions  X_c = r_{a_c} + sum_i w_ic (r_i + shift_ic - r_{a_c}) / m_c,  with m_c = sum_i w_ic
  (relative to the anchor: exact translation invariance and correct under periodic boundaries);
* coarse features  H_c = sum_i w_ic h_i / m_c  (vectors likewise), and m_c itself as an input feature;
* unpooling  h_i += sum_c w_ic U(h_c);  coarse energies are handed back as  e_i = sum_c w_ic e_c / m_c.

The coarse radius graph is rebuilt from detached coarse positions at every call (like a neighbour list);
the backbone's smooth radial cutoff makes the energy continuous as coarse pairs cross it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from muse_ff.data.graph import Graph
from muse_ff.data.neighbors import neighbor_list
from muse_ff.nn.backbones.base import BackboneOutput
from muse_ff.nn.heads import EnergyHead
from muse_ff.nn.radial import smooth_cutoff


class AnchorReachError(ValueError):
    """A node whose home anchor cannot be reached (periodic cell, anchors out of date)."""


@dataclass
class PoolState:
    """One coarse level of one forward pass. P assignment pairs, n fine nodes, m coarse nodes."""

    pair_fine: torch.Tensor  # [P] fine node index
    pair_coarse: torch.Tensor  # [P] coarse node index
    weights: torch.Tensor  # [P] w_ic, sum over each fine node's pairs = 1
    mass: torch.Tensor  # [m] sum_i w_ic
    positions: torch.Tensor  # [m, 3] coarse positions X_c (Å)
    batch: torch.Tensor  # [m] frame of each coarse node
    atom: torch.Tensor  # [m] atom each coarse node's anchor chain ends on
    scalars: torch.Tensor  # [m, F] pooled features
    vectors: torch.Tensor | None  # [m, 3, F_v] pooled vector features
    edge_index: torch.Tensor  # [2, e] coarse radius graph
    shifts: torch.Tensor  # [e, 3] integer cell shifts of coarse edges
    num_fine: int

    def distribute(self, coarse_values: torch.Tensor) -> torch.Tensor:
        """[m] values of coarse nodes -> [n] shares of fine nodes (sums are preserved)."""
        w = self.weights.to(coarse_values.dtype)
        share = w * (coarse_values / self.mass.to(coarse_values.dtype))[self.pair_coarse]
        return coarse_values.new_zeros(self.num_fine).index_add_(0, self.pair_fine, share)


def _ranges(batch: torch.Tensor, num_frames: int) -> list[tuple[int, int]]:
    counts = torch.bincount(batch, minlength=num_frames).tolist()
    starts = np.concatenate([[0], np.cumsum(counts)]).astype(int)
    return [(int(starts[b]), int(starts[b + 1])) for b in range(num_frames)]


def _reach_pairs(graph, fine_pos, fine_batch, reach, fine_edges):
    """All directed pairs (i, j, shift, distance) of fine nodes closer than ``reach``, numpy, global indices.

    Reuses the finer level's own graph (``fine_edges = (edge_index, shifts, cutoff)``) when it reaches far
    enough, which is the default (reach of level k+1 = cutoff of level k); otherwise builds a neighbour list.
    """
    pos = fine_pos.detach().cpu().double().numpy()
    edge_index, shifts, cutoff = fine_edges
    if reach <= cutoff:
        i, j = edge_index.cpu().numpy()
        s = shifts.detach().cpu().numpy().astype(np.int64)
        cell = graph.cell.detach().cpu().double().numpy()[fine_batch.cpu().numpy()[i]]
        d = np.linalg.norm(pos[j] - pos[i] + np.einsum("ek,ekl->el", s, cell), axis=1)
        keep = d < reach
        return i[keep], j[keep], s[keep], d[keep]
    out = []
    for b, (lo, hi) in enumerate(_ranges(fine_batch, graph.num_frames)):
        cell, pbc = graph.cell[b].detach().cpu().double().numpy(), graph.pbc[b].cpu().numpy()
        i, j, s, d = neighbor_list(pos[lo:hi], cell, pbc, reach)
        out.append((i + lo, j + lo, s, d))
    return tuple(np.concatenate(x) for x in zip(*out))


def _candidate_pairs(graph, fine_pos, fine_batch, fine_comp, anchors, home, reach, same_component, fine_edges):
    """Assignment pairs (fine i, coarse c, shift, is_home): anchors within reach plus each node's home."""
    n = fine_pos.shape[0]
    coarse_of = np.full(n, -1, dtype=np.int64)
    anchors_np = anchors.cpu().numpy()
    coarse_of[anchors_np] = np.arange(anchors.numel())
    comp = fine_comp.cpu().numpy()
    home_np = home.cpu().numpy()
    i, j, s, d = _reach_pairs(graph, fine_pos, fine_batch, reach, fine_edges)
    keep = (coarse_of[j] >= 0) & ((comp[i] == comp[j]) | (not same_component))
    # anchors within reach, plus every anchor node's pair with its own coarse node (distance 0)
    pi = np.concatenate([i[keep], anchors_np])
    pc = np.concatenate([coarse_of[j[keep]], coarse_of[anchors_np]])
    ps = np.concatenate([s[keep], np.zeros((len(anchors_np), 3), dtype=np.int64)])
    pd = np.concatenate([d[keep], np.zeros(len(anchors_np))])
    is_home = pc == home_np[pi]
    # keep exactly one home pair per fine node (its nearest image); add it when it is out of reach,
    # which only free (non-periodic) structures allow
    order = np.lexsort((pd, ~is_home, pi))
    pi, pc, ps, is_home = pi[order], pc[order], ps[order], is_home[order]
    first = np.ones(len(pi), dtype=bool)
    first[1:] = pi[1:] != pi[:-1]
    is_home &= first
    missing = np.setdiff1d(np.arange(n), pi[is_home])
    if missing.size:
        periodic = graph.pbc.cpu().numpy()[fine_batch.cpu().numpy()[missing]].any(axis=1)
        if periodic.any():
            k = int(missing[periodic][0])
            raise AnchorReachError(
                f"node {k} of a periodic structure has its home anchor beyond the pooling reach ({reach:.2f} Å): "
                "the anchors are out of date for this geometry; recompute them (MuSECalculator.reset_anchors() "
                "or a new graph), or use a larger `reach` for this level")
        pi = np.concatenate([pi, missing])
        pc = np.concatenate([pc, home_np[missing]])
        ps = np.concatenate([ps, np.zeros((len(missing), 3), dtype=np.int64)])
        is_home = np.concatenate([is_home, np.ones(len(missing), dtype=bool)])
    dev = fine_pos.device
    t = lambda x: torch.as_tensor(x, device=dev)  # noqa: E731
    return t(pi), t(pc), t(ps).to(fine_pos.dtype), t(is_home)


def _coarse_graph(graph, positions, batch, cutoff):
    """Radius graph of coarse nodes (detached positions, periodic images), per frame."""
    pos = positions.detach().cpu().double().numpy()
    ei, sh = [], []
    for b, (lo, hi) in enumerate(_ranges(batch, graph.num_frames)):
        cell, pbc = graph.cell[b].detach().cpu().double().numpy(), graph.pbc[b].cpu().numpy()
        i, j, s, _ = neighbor_list(pos[lo:hi], cell, pbc, cutoff)
        ei.append(np.stack([i + lo, j + lo])), sh.append(s)
    dev = positions.device
    return (torch.as_tensor(np.concatenate(ei, axis=1), device=dev),
            torch.as_tensor(np.concatenate(sh), device=dev, dtype=positions.dtype))


class CoarseLevel(nn.Module):
    """One coarse level: assignment affinity, backbone on coarse nodes, unpooling and energy head."""

    def __init__(self, config, anchors: str, reach: float, fine_features: int, fine_vectors: int, cutoff: float,
                 fine_cutoff: float, backbone_factory, head_hidden: int, affinity_features: int = 16):
        super().__init__()
        self.config = config
        self.anchors = anchors
        self.cutoff = float(cutoff)
        self.reach = float(reach)
        self.sigma = float(config.sigma if config.sigma is not None else self.reach / 2.5)
        self.ratio = float(config.ratio)
        self.query = nn.Linear(fine_features, affinity_features, bias=False)
        self.key = nn.Linear(fine_features, affinity_features, bias=False)
        self.backbone = backbone_factory(fine_features + 1, self.cutoff, fine_vectors)
        self.unpool_linear = nn.Linear(self.backbone.out_features, fine_features)
        self.head = EnergyHead(self.backbone.out_features, head_hidden)
        self._aff_scale = 1.0 / (3.0 * affinity_features**0.5)
        self.dispersion = None
        if config.dispersion:
            self.dispersion = nn.Sequential(nn.Linear(self.backbone.out_features, head_hidden), nn.SiLU(),
                                            nn.Linear(head_hidden, 1))
            self.dispersion_r0 = nn.Parameter(torch.tensor(3.0))  # damping radius (Å), used as |r0| + 1

    def edge_vectors(self, state: PoolState, cell) -> torch.Tensor:
        """[e, 3] vectors (Å) along this level's coarse edges, periodic shifts included."""
        i, j = state.edge_index
        return (state.positions[j] - state.positions[i]
                + torch.einsum("ek,ekl->el", state.shifts, cell[state.batch[i]]))

    def dispersion_energy(self, state: PoolState, cell, scalars: torch.Tensor) -> torch.Tensor:
        """[m] learned damped dispersion energy (eV) of each coarse node (``levels[k].dispersion``).

        ``E = -sum_{I<J} c_I c_J f(R_IJ) / (R_IJ^6 + r0^6)`` over this level's coarse edges, with
        ``c_I = 10 softplus(MLP(h_I))`` >= 0 (eV^1/2 Å^3, geometric-mean C6 combination), a learned
        damping radius r0 and the level's C3 cutoff envelope f: attractive, decaying as -C6/R^6 far
        inside the cutoff, finite at short range, smooth everywhere. Each pair's energy is split
        equally between its two nodes.
        """
        c = 10.0 * nn.functional.softplus(self.dispersion(scalars).squeeze(-1))
        r = self.edge_vectors(state, cell).norm(dim=-1)
        r0 = self.dispersion_r0.abs() + 1.0
        i, j = state.edge_index
        pair = -c[i] * c[j] * smooth_cutoff(r, self.cutoff) / (r**6 + r0**6)
        return 0.5 * pair.new_zeros(c.shape[0]).index_add_(0, i, pair)

    def _affinity(self, h_fine, h_anchor):
        return 3.0 * torch.tanh((self.query(h_fine) * self.key(h_anchor)).sum(-1) * self._aff_scale)

    def pool(self, graph: Graph, k: int, fine_pos, fine_batch, fine_atom, cell, fine: BackboneOutput,
             fine_edges) -> PoolState:
        """Pool level-k nodes (positions, batch, atom of their anchor chain, backbone output, and their own
        graph ``fine_edges = (edge_index, shifts, cutoff)``) into this level's coarse nodes."""
        anchors, home = graph.anchors[k], graph.home[k]
        pi, pc, shifts, is_home = _candidate_pairs(graph, fine_pos, fine_batch, graph.component[fine_atom],
                                                   anchors, home, self.reach, self.anchors == "bond-fps",
                                                   fine_edges)
        a = anchors[pc]
        # vesin gives r_anchor - r_i + S @ cell for the pair, so the anchor -> node vector is r_i - S @ cell - r_anchor
        vec = fine_pos[pi] - torch.einsum("pk,pkl->pl", shifts, cell[fine_batch[pi]]) - fine_pos[a]
        d2 = (vec**2).sum(-1)
        d = torch.sqrt(torch.where(is_home, torch.ones_like(d2), d2))  # no cutoff (and no sqrt at 0) for home
        c = torch.where(is_home, torch.ones_like(d2), smooth_cutoff(d, self.reach))
        logit = -d2 / (2 * self.sigma**2) + self._affinity(fine.scalars[pi], fine.scalars[a])
        n = fine_pos.shape[0]
        with torch.no_grad():
            ref = logit + torch.log(c.clamp_min(1e-300))
            m = ref.new_full((n,), -torch.inf).scatter_reduce_(0, pi, ref, reduce="amax")
        u = c * torch.exp(logit - m[pi])
        w = u / u.new_zeros(n).index_add_(0, pi, u)[pi]
        nc = anchors.numel()
        mass = w.new_zeros(nc).index_add_(0, pc, w)
        pos_c = fine_pos[anchors] + vec.new_zeros(nc, 3).index_add_(0, pc, w[:, None] * vec) / mass[:, None]
        feats = fine.scalars.new_zeros(nc, fine.scalars.shape[1]).index_add_(
            0, pc, w[:, None] * fine.scalars[pi]) / mass[:, None]
        vecs = None
        if fine.vectors is not None and self.backbone.vector_features:
            vecs = fine.vectors.new_zeros(nc, *fine.vectors.shape[1:]).index_add_(
                0, pc, w[:, None, None] * fine.vectors[pi]) / mass[:, None, None]
        batch_c = fine_batch[anchors]
        edge_index, edge_shifts = _coarse_graph(graph, pos_c, batch_c, self.cutoff)
        return PoolState(pi, pc, w, mass, pos_c, batch_c, fine_atom[anchors], feats, vecs, edge_index,
                         edge_shifts, n)

    def run(self, state: PoolState, cell) -> BackboneOutput:
        x = torch.cat([state.scalars, (state.mass / self.ratio).unsqueeze(-1)], dim=-1)
        return self.backbone(x, state.edge_index, self.edge_vectors(state, cell), state.vectors)

    def unpool(self, state: PoolState, coarse_scalars: torch.Tensor) -> torch.Tensor:
        """[m, F_c] coarse features -> [n, F_fine] context for the fine nodes."""
        msg = state.weights[:, None] * self.unpool_linear(coarse_scalars)[state.pair_coarse]
        return msg.new_zeros(state.num_fine, msg.shape[1]).index_add_(0, state.pair_fine, msg)
