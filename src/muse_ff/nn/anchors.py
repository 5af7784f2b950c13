"""Anchor selection for Soft Coarse-Graining Pooling: the discrete, once-per-system part.

Anchors (which coarse nodes exist) are chosen like a topology, from the first frame of a system, and
stay fixed while positions move; the smooth part (assignment weights, coarse positions) lives in
:mod:`muse_ff.nn.pooling`.

* ``bond-fps`` (default): farthest-point sampling over the covalent bond graph, with bond lengths as
  edge weights, inside each covalently connected component. Conformation-independent in practice, so a
  folding trajectory or a molecule sliding on a surface keeps the same coarse nodes.
* ``spatial-fps``: farthest-point sampling with Euclidean (minimum-image) distances over the whole frame,
  for reactive systems; refresh it like a neighbour list.

Both are deterministic and invariant to rotation, translation and atom order: sampling starts from the
node nearest the component's centroid and ties are broken by rounded distance, then element, then index
(index only decides between exactly equivalent nodes). Every fine node gets a *home* coarse node (the
nearest anchor in the same metric), which the pooling always keeps among its candidates, so every atom
always has at least one anchor.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
import torch
from ase.data import covalent_radii
from scipy.sparse.csgraph import connected_components, dijkstra

from muse_ff.data.graph import Graph
from muse_ff.data.neighbors import neighbor_list

#: a pair is bonded when closer than BOND_SCALE x (sum of covalent radii)
BOND_SCALE = 1.2


def bond_graph(positions: np.ndarray, numbers: np.ndarray, cell: np.ndarray, pbc: np.ndarray):
    """Covalent bond graph: sparse [n, n] matrix of bond lengths (Å) and component labels [n]."""
    n = len(numbers)
    rcov = covalent_radii[numbers]
    i, j, _, d = neighbor_list(positions, cell, pbc, float(2 * BOND_SCALE * rcov.max()) + 1e-6)
    bonded = d < BOND_SCALE * (rcov[i] + rcov[j])
    i, j, d = i[bonded], j[bonded], d[bonded]
    order = np.lexsort((d, j, i))  # several periodic images of one pair: keep the shortest
    i, j, d = i[order], j[order], d[order]
    first = np.ones(len(i), dtype=bool)
    first[1:] = (i[1:] != i[:-1]) | (j[1:] != j[:-1])
    keep = first & (i != j)
    graph = sp.csr_matrix((d[keep], (i[keep], j[keep])), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    return graph, comp.astype(np.int64)


def _min_image(delta: np.ndarray, cell: np.ndarray, pbc: np.ndarray) -> np.ndarray:
    if not pbc.any():
        return delta
    frac = delta @ np.linalg.inv(cell)
    frac[:, pbc] -= np.round(frac[:, pbc])
    return frac @ cell


class _Metric:
    """Distances from one atom to all atoms: bond-graph (Dijkstra) or Euclidean minimum image."""

    def __init__(self, kind: str, graph, positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray):
        self.kind, self.graph, self.pos, self.cell, self.pbc = kind, graph, positions, cell, pbc

    def from_atom(self, a: int, limit: float = np.inf) -> np.ndarray:
        if self.kind == "bond-fps":
            return dijkstra(self.graph, directed=False, indices=a, limit=limit)
        return np.linalg.norm(_min_image(self.pos - self.pos[a], self.cell, self.pbc), axis=1)


def _order_key(dist: np.ndarray, numbers: np.ndarray) -> np.ndarray:
    """Lexicographic rank of candidates by (rounded distance, Z, index): invariant up to exact ties."""
    return np.lexsort((np.arange(len(dist)), numbers, np.round(dist, 6)))


def _fps(nodes: np.ndarray, atom_of: np.ndarray, count: int, metric: _Metric, numbers: np.ndarray) -> list[int]:
    """Farthest-point sampling of ``count`` of ``nodes`` (local indices); node k sits on atom atom_of[k]."""
    atoms = atom_of[nodes]
    centroid = metric.pos[atoms].mean(axis=0)
    d_c = np.linalg.norm(metric.pos[atoms] - centroid, axis=1)
    first = int(_order_key(d_c, numbers[atoms])[0])
    chosen = [first]
    mind = metric.from_atom(int(atoms[first]))[atoms]
    while len(chosen) < count:
        key = _order_key(-mind, numbers[atoms])
        nxt = int(key[0])
        chosen.append(nxt)
        limit = float(mind[np.isfinite(mind)].max()) if np.isfinite(mind).any() else np.inf
        mind = np.minimum(mind, metric.from_atom(int(atoms[nxt]), limit=limit)[atoms])
    return [int(nodes[c]) for c in chosen]


def _home(nodes_atoms: np.ndarray, anchor_atoms: np.ndarray, metric: _Metric) -> np.ndarray:
    """Index (into anchor_atoms) of the nearest anchor of each node."""
    if metric.kind == "bond-fps":
        _, _, src = dijkstra(metric.graph, directed=False, indices=anchor_atoms, min_only=True,
                             return_predecessors=True)
        lookup = {int(a): k for k, a in enumerate(anchor_atoms)}
        return np.array([lookup[int(src[a])] for a in nodes_atoms], dtype=np.int64)
    d = np.stack([metric.from_atom(int(a))[nodes_atoms] for a in anchor_atoms], axis=1)
    return d.argmin(axis=1).astype(np.int64)


class CoarseLevelError(ValueError):
    """A structure that cannot be coarse-grained as the configuration requires."""


def select_frame_anchors(positions, numbers, cell, pbc, ratios, kinds, min_nodes=None):
    """Anchors of one frame for every level.

    Returns ``(component [n], anchors, home)``: ``anchors[k]`` indexes level-k nodes, ``home[k]`` gives for
    each level-k node its home coarse node at level k+1.
    """
    graph, comp = bond_graph(positions, numbers, cell, pbc)
    node_atom = np.arange(len(numbers))  # the atom each level-k node sits on (its anchor chain)
    node_comp = comp.copy()
    anchors, homes = [], []
    min_nodes = min_nodes or [1] * len(ratios)
    for level, (ratio, kind) in enumerate(zip(ratios, kinds)):
        metric = _Metric(kind, graph, positions, cell, pbc)
        groups = [np.flatnonzero(node_comp == c) for c in np.unique(node_comp)] if kind == "bond-fps" \
            else [np.arange(len(node_atom))]
        chosen, home = [], np.empty(len(node_atom), dtype=np.int64)
        for nodes in groups:
            count = max(1, math.ceil(len(nodes) / ratio - 1e-9))
            picks = _fps(nodes, node_atom, count, metric, numbers)
            h = _home(node_atom[nodes], node_atom[picks], metric)
            home[nodes] = np.asarray(h) + len(chosen)
            chosen.extend(picks)
        chosen = np.asarray(chosen, dtype=np.int64)
        if len(chosen) < min_nodes[level]:
            raise CoarseLevelError(
                f"coarse level {level + 1} has {len(chosen)} node(s) for this structure of {len(numbers)} atoms, "
                f"but the configuration requires at least {min_nodes[level]} (min_nodes); lower `ratio` or "
                f"`min_nodes`, or remove the level")
        anchors.append(chosen)
        homes.append(home)
        node_atom, node_comp = node_atom[chosen], node_comp[chosen]
    return comp, anchors, homes


def select_anchors(graph: Graph, level_configs) -> Graph:
    """Return ``graph`` with ``component``, ``anchors`` and ``home`` filled for every level, frame by frame."""
    from muse_ff.data.atoms import collate

    frames = []
    for b in range(graph.num_frames):
        sl = graph.frame_slice(b)
        comp, anchors, homes = select_frame_anchors(
            graph.positions[sl].detach().cpu().double().numpy(), graph.species[sl].cpu().numpy(),
            graph.cell[b].detach().cpu().double().numpy(), graph.pbc[b].cpu().numpy(),
            [c.ratio for c in level_configs], [c.anchors for c in level_configs],
            [c.min_nodes for c in level_configs])
        edge_index, shifts = _frame_edges(graph, b, sl)
        sub = Graph(positions=graph.positions[sl], species=graph.species[sl], cell=graph.cell[b:b + 1],
                    pbc=graph.pbc[b:b + 1], batch=torch.zeros(sl.stop - sl.start, dtype=torch.int64),
                    ptr=torch.tensor([0, sl.stop - sl.start]), edge_index=edge_index,
                    shifts=shifts, cutoff=graph.cutoff,
                    energy=None if graph.energy is None else graph.energy[b:b + 1],
                    forces=None if graph.forces is None else graph.forces[sl],
                    stress=None if graph.stress is None else graph.stress[b:b + 1],
                    component=torch.as_tensor(comp), anchors=[torch.as_tensor(a) for a in anchors],
                    home=[torch.as_tensor(h) for h in homes])
        frames.append(sub)
    return collate(frames)


def _frame_edges(graph: Graph, b: int, sl: slice):
    mask = graph.batch[graph.edge_index[0]] == b
    return graph.edge_index[:, mask] - sl.start, graph.shifts[mask]
