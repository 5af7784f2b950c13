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
    """Shortest periodic images of difference vectors [m, 3] (exact for skewed cells too)."""
    if not pbc.any():
        return delta
    frac = delta @ np.linalg.inv(cell)
    frac[:, pbc] -= np.round(frac[:, pbc])
    delta = frac @ cell
    steps = [np.array([-1, 0, 1]) if p else np.array([0]) for p in pbc]
    images = np.stack(np.meshgrid(*steps, indexing="ij"), -1).reshape(-1, 3) @ cell  # [k, 3]
    cand = delta[:, None, :] + images[None]
    best = np.argmin((cand**2).sum(-1), axis=1)
    return cand[np.arange(len(delta)), best]


class _Metric:
    """Distances from one atom to a set of atoms: bond-graph (Dijkstra) or Euclidean minimum image."""

    def __init__(self, kind: str, graph, positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray):
        self.kind, self.graph, self.pos, self.cell, self.pbc = kind, graph, positions, cell, pbc

    def from_atom(self, a: int, targets: np.ndarray, limit: float = np.inf) -> np.ndarray:
        if self.kind == "bond-fps":
            return dijkstra(self.graph, directed=False, indices=a, limit=limit)[targets]
        return np.linalg.norm(_min_image(self.pos[targets] - self.pos[a], self.cell, self.pbc), axis=1)


def _order_key(dist: np.ndarray, numbers: np.ndarray) -> np.ndarray:
    """Lexicographic rank of candidates by (rounded distance, Z, index): invariant up to exact ties."""
    return np.lexsort((np.arange(len(dist)), numbers, np.round(dist, 6)))


def _start_score(atoms: np.ndarray, metric: _Metric) -> np.ndarray:
    """Where farthest-point sampling starts (lowest score first).

    Free structures: distance to the group's centroid. Periodic ones, where a centroid depends on how atoms
    are wrapped: most bonds first, then the shortest summed bond length, intrinsic scalars invariant to
    rotation, translation and lattice translations of single atoms.
    """
    if not metric.pbc.any():
        return np.linalg.norm(metric.pos[atoms] - metric.pos[atoms].mean(axis=0), axis=1)
    rows = metric.graph[atoms]
    degree = np.diff(rows.indptr)
    return -1000.0 * degree + np.asarray(rows.sum(axis=1)).ravel()


def _fps(atoms: np.ndarray, count: int, metric: _Metric, numbers: np.ndarray) -> tuple[list[int], np.ndarray]:
    """Farthest-point sampling of ``count`` of the nodes sitting on ``atoms``.

    Returns the chosen local indices and, for every node, the position (in the chosen list) of its
    nearest chosen node (its home).
    """
    first = int(_order_key(_start_score(atoms, metric), numbers[atoms])[0])
    chosen = [first]
    mind = metric.from_atom(int(atoms[first]), atoms)
    owner = np.zeros(len(atoms), dtype=np.int64)
    while len(chosen) < count:
        nxt = int(_order_key(-mind, numbers[atoms])[0])
        limit = float(mind.max())
        d = metric.from_atom(int(atoms[nxt]), atoms, limit=limit)
        closer = d < mind
        owner[closer], mind = len(chosen), np.where(closer, d, mind)
        chosen.append(nxt)
    return chosen, owner


def _spatial_clusters(atoms: np.ndarray, positions, cell, pbc, reach: float) -> np.ndarray:
    """Cluster label of each node: connected components of the graph linking nodes closer than ``reach``."""
    i, j, _, _ = neighbor_list(positions[atoms], cell, pbc, reach)
    adj = sp.csr_matrix((np.ones(len(i)), (i, j)), shape=(len(atoms), len(atoms)))
    return connected_components(adj, directed=False)[1]


class CoarseLevelError(ValueError):
    """A structure that cannot be coarse-grained as the configuration requires."""


def select_frame_anchors(positions, numbers, cell, pbc, ratios, kinds, reaches, min_nodes=None):
    """Anchors of one frame for every level.

    Groups: covalent components (``bond-fps``) or clusters of nodes linked within the level's ``reach``
    (``spatial-fps``); each group of n nodes gets ceil(n / ratio) anchors, so the choice is local and
    energies stay extensive. Returns ``(component [n], anchors, home)``: ``anchors[k]`` indexes level-k
    nodes, ``home[k]`` gives for each level-k node its home coarse node at level k+1.
    """
    graph, comp = bond_graph(positions, numbers, cell, pbc)
    node_atom = np.arange(len(numbers))  # the atom each level-k node sits on (its anchor chain)
    node_comp = comp.copy()
    anchors, homes = [], []
    min_nodes = min_nodes or [1] * len(ratios)
    for level, (ratio, kind, reach) in enumerate(zip(ratios, kinds, reaches)):
        metric = _Metric(kind, graph, positions, cell, pbc)
        label = node_comp if kind == "bond-fps" else _spatial_clusters(node_atom, positions, cell, pbc, reach)
        chosen, home = [], np.empty(len(node_atom), dtype=np.int64)
        for c in np.unique(label):
            nodes = np.flatnonzero(label == c)
            count = max(1, math.ceil(len(nodes) / ratio - 1e-9))
            picks, owner = _fps(node_atom[nodes], count, metric, numbers)
            home[nodes] = owner + len(chosen)
            chosen.extend(int(nodes[p]) for p in picks)
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


def select_anchors(graph: Graph, ratios: list[float], kinds: list[str], reaches: list[float],
                   min_nodes: list[int]) -> Graph:
    """Return ``graph`` with ``component``, ``anchors`` and ``home`` filled for every level, frame by frame."""
    from muse_ff.data.atoms import collate

    frames = []
    for b in range(graph.num_frames):
        sl = graph.frame_slice(b)
        comp, anchors, homes = select_frame_anchors(
            graph.positions[sl].detach().cpu().double().numpy(), graph.species[sl].cpu().numpy(),
            graph.cell[b].detach().cpu().double().numpy(), graph.pbc[b].cpu().numpy(),
            ratios, kinds, reaches, min_nodes)
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
