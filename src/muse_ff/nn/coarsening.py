"""The discrete part of Soft Coarse-Graining Pooling: which coarse nodes exist, and which pairs may assign.

Everything here is a function of the **covalent topology**: the elements, the bond graph (pairs closer than
``BOND_SCALE`` x the sum of covalent radii, with their periodic images) and the periodic flags. It never looks
at the geometry beyond deciding which pairs are bonded, and never at the atom order, except in one documented
case (crystals, below). So training frames, MD steps, conformers and permuted copies of one molecule get the
same coarse graph, and the smooth part (:mod:`muse_ff.nn.pooling`) turns it into positions and weights.

How a level is chosen, for each covalently connected component:

1. **Symmetry classes.** Colour refinement (1-dimensional Weisfeiler-Lehman) on the bond graph, started from
   the elements, gives canonical classes: atoms related by a symmetry of the bond graph always share a class,
   and the class labels do not depend on the atom order.
2. **A component with at most ``ratio`` atoms is one coarse node** (benzene, CH4, SF6, water).
3. **Otherwise classes are taken whole, farthest first**, in bond hops: first the class deepest inside the
   component (farthest from its terminal atoms), then repeatedly the class whose nearest member is farthest
   from what is already chosen (ties: the smaller class, then the canonical class label). Members of one
   class within ``hops // 2`` bonds of each other merge into one seed group (the three H of a methyl, the
   whole cage of C60), so a chosen set is closed under the molecule's symmetry and no two seeds sit within
   ``hops // 2`` bonds. Sampling stops once the component has about ``n / ratio`` seeds and every atom is
   within ``hops`` bonds of one, or when no class is far enough from the chosen ones. A class that would take
   the count past ``max(2 n / ratio, n / ratio + 8)`` ends the sampling if every atom is already covered;
   otherwise a finite molecule takes it whole anyway (more seeds, symmetry kept).
4. **Crystals** (a component that percolates through the periodic boundaries, such as a graphene sheet or
   bulk Si) have no finite set of whole classes small enough when every atom is equivalent. When taking a
   class whole would exceed ``max(2 n / ratio, n / ratio + 8)`` seeds, one member of it, the lowest atom index,
   is chosen alone, and colour refinement is re-run with the chosen atoms marked (individualisation and
   refinement, as in canonical graph labelling). Later classes are then orbits around the chosen atoms. On a
   perfect crystal every such choice is related by a symmetry of the crystal, so the energy does not depend
   on it; on a distorted crystal whose bond graph is more symmetric than its geometry it can (measured in
   docs/ARCHITECTURE.md). Small crystal cells (few enough classes) take whole classes at the first coarse
   level and stay exact there; a crystal's coarser level has at most half the nodes of the finer one.

Coarser levels are chosen the same way from the atoms' bond graph, with ``ratio`` the product of the ratios
so far and the level's own ``hops``; assignment pairs between a level-k node and a level-(k+1) node exist
when their seed groups are within the level's ``hops`` bonds. Every node has at least one such pair by
construction: every atom is within ``hops`` bonds of a seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from ase.data import covalent_radii
from scipy.sparse.csgraph import connected_components, dijkstra

from muse_ff.data.graph import LevelTopology
from muse_ff.data.neighbors import neighbor_list

#: a pair is bonded when closer than BOND_SCALE x (sum of covalent radii)
BOND_SCALE = 1.2


class CoarseLevelError(ValueError):
    """A structure that cannot be coarse-grained as the configuration requires."""


# ---------------------------------------------------------------------------------------------- bond graph
@dataclass
class BondGraph:
    """Covalent bond graph of one frame, with periodic images.

    ``src -> dst`` are directed bonds (both directions, one entry per bonded image) whose bond vector is
    ``r[dst] - r[src] + shift @ cell``. ``image[i]`` unwraps atom i within its component (meaningful for
    components that do not percolate); ``percolating[c]`` says whether component c is bonded to its own
    periodic images (a crystal, a sheet, a polymer through the boundary).
    """

    n: int
    src: np.ndarray
    dst: np.ndarray
    shift: np.ndarray
    component: np.ndarray
    image: np.ndarray
    percolating: np.ndarray

    def adjacency(self) -> sp.csr_matrix:
        return sp.csr_matrix((np.ones(len(self.src)), (self.src, self.dst)), shape=(self.n, self.n))

    def key(self) -> tuple:
        """Hashable identity of the topology (bonds with their images)."""
        order = np.lexsort((*self.shift.T, self.dst, self.src))
        return (self.n, self.src[order].tobytes(), self.dst[order].tobytes(), self.shift[order].tobytes())


def bond_graph(positions: np.ndarray, numbers: np.ndarray, cell: np.ndarray, pbc: np.ndarray) -> BondGraph:
    """The covalent bond graph of one frame (see :class:`BondGraph`)."""
    n = len(numbers)
    rcov = covalent_radii[numbers]
    cut = float(2 * BOND_SCALE * rcov.max()) + 1e-6 if n else 1.0
    i, j, s, d = neighbor_list(positions, cell, pbc, cut)
    keep = d < BOND_SCALE * (rcov[i] + rcov[j])
    i, j, s = i[keep], j[keep], s[keep].astype(np.int64)
    adj = sp.csr_matrix((np.ones(len(i)), (i, j)), shape=(n, n))
    _, comp = connected_components(adj, directed=False)
    image = _unwrap(n, i, j, s, comp)
    bad = np.any(image[j] != image[i] + s, axis=1)
    percolating = np.zeros(int(comp.max()) + 1 if n else 0, dtype=bool)
    percolating[comp[i[bad]]] = True
    return BondGraph(n, i, j, s, comp.astype(np.int64), image, percolating)


def _unwrap(n, i, j, s, comp) -> np.ndarray:
    """[n, 3] integer image of each atom reached from its component's root along a spanning tree of bonds."""
    image = np.zeros((n, 3), dtype=np.int64)
    seen = np.zeros(n, dtype=bool)
    order = np.lexsort((j, i))
    i, j, s = i[order], j[order], s[order]
    starts = np.searchsorted(i, np.arange(n + 1))
    for root in np.unique(comp, return_index=True)[1]:
        seen[root] = True
        frontier = [int(root)]
        while frontier:
            nxt = []
            for a in frontier:
                for e in range(starts[a], starts[a + 1]):
                    b = j[e]
                    if not seen[b]:
                        seen[b] = True
                        image[b] = image[a] + s[e]
                        nxt.append(int(b))
            frontier = nxt
    return image


# ---------------------------------------------------------------------------------------------- colours
def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 of non-negative integers: a fixed pseudo-random uint64 for each colour."""
    z = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def refine_colours(src: np.ndarray, dst: np.ndarray, initial: np.ndarray) -> np.ndarray:
    """Colour refinement (1-WL) of a graph given by directed edges: canonical class label of every node.

    Two nodes get the same label when they have the same initial colour and, recursively, the same multiset
    of neighbour colours. Labels are ranks of sorted signatures, so they do not depend on the node order.
    """
    colours = np.unique(initial, return_inverse=True)[1].astype(np.int64)
    count = int(colours.max()) + 1 if len(colours) else 0
    while True:
        agg = np.zeros(len(colours), dtype=np.uint64)
        np.add.at(agg, src, _mix(colours[dst]))
        keys = np.stack([colours.astype(np.uint64), agg], axis=1)
        new = np.unique(keys, axis=0, return_inverse=True)[1].ravel().astype(np.int64)
        new_count = int(new.max()) + 1 if len(new) else 0
        colours = new
        if new_count == count:
            return colours
        count = new_count


# ---------------------------------------------------------------------------------------------- selection
def _hops_from(adj: sp.csr_matrix, sources: np.ndarray, limit: float = np.inf) -> np.ndarray:
    if len(sources) == 0:
        return np.full(adj.shape[0], np.inf)
    return dijkstra(adj, directed=True, indices=sources, unweighted=True, min_only=True, limit=limit)


def _merge_groups(adj: sp.csr_matrix, members: np.ndarray, merge: int) -> list[np.ndarray]:
    """Split class members into groups: connected components of 'within ``merge`` bonds of each other'."""
    if merge <= 0 or len(members) == 1:
        return [members[k:k + 1] for k in range(len(members))]
    n = adj.shape[0]
    reach = sp.csr_matrix((np.ones(len(members)), (np.arange(len(members)), members)), shape=(len(members), n))
    step = (adj + sp.identity(n, format="csr")).astype(bool).astype(np.float64)
    for _ in range(merge):
        reach = (reach @ step).astype(bool).astype(np.float64)
    links = reach[:, members]
    _, label = connected_components(links, directed=False)
    return [members[label == g] for g in range(int(label.max()) + 1)]


def _select_component(adj: sp.csr_matrix, colours: np.ndarray, src, dst, target: int, hops: int,
                      percolating: bool, finer: int | None = None) -> list[np.ndarray]:
    """Seed groups (local indices) of one component. See the module docstring for the rule.

    ``finer``: the component's node count at the finer level; a crystal's level never has more than half
    of it (a coarse level must be coarser), individualising when whole classes would break that."""
    n = adj.shape[0]
    if target <= 1 and not percolating:
        return [np.arange(n)]
    merge = 0 if percolating else hops // 2
    separation = hops // 2 + 1
    budget = max(2 * target, target + 8)
    if percolating and finer is not None:
        budget = max(1, min(budget, finer // 2))
    degree = np.diff(adj.indptr)
    leaves = np.flatnonzero(degree <= 1)
    depth = _hops_from(adj, leaves) if len(leaves) else np.zeros(n)
    dist = np.full(n, np.inf)
    taken = np.zeros(n, dtype=bool)
    groups: list[np.ndarray] = []
    while not (len(groups) >= target and dist.max() <= hops):
        free = np.flatnonzero(~taken)
        if len(free) == 0:
            break
        score = depth if not groups else dist
        cls, inv = np.unique(colours[free], return_inverse=True)
        best_of = np.full(len(cls), np.inf)
        np.minimum.at(best_of, inv, score[free])
        size = np.bincount(inv, minlength=len(cls))
        if groups:
            eligible = best_of >= separation
            if not eligible.any():
                break
        else:
            eligible = np.ones(len(cls), dtype=bool)
        pick = np.lexsort((cls, size, -best_of))  # farthest, then smaller, then canonical label
        pick = pick[eligible[pick]][0]
        members = free[inv == pick]
        new = _merge_groups(adj, members, merge)
        over = len(groups) + len(new) > budget and len(new) > 1
        if over and groups and dist.max() <= hops:
            break  # covered already: fewer seeds than the target rather than a broken symmetry
        if over and percolating:
            new = [members[:1]]  # a crystal: individualise one member (lowest index), then refine
            taken[members[0]] = True
            colours = refine_colours(src, dst, colours * 2 + taken)
        else:
            taken[members] = True  # whole class (a finite molecule keeps its symmetry even over budget)
        groups.extend(new)
        fresh = np.concatenate(new)
        dist = np.minimum(dist, _hops_from(adj, fresh, limit=dist.max() if np.isfinite(dist.max()) else np.inf))
    return groups


@dataclass
class Groups:
    """Seed groups of one level of one frame: ``member_atom`` [M] in group ``member_node`` [M], with the image
    ``member_shift`` [M, 3] of each member relative to its group's reference atom ``ref_atom`` [m]."""

    member_atom: np.ndarray
    member_node: np.ndarray
    member_shift: np.ndarray
    ref_atom: np.ndarray
    component: np.ndarray


def select_groups(bg: BondGraph, colours: np.ndarray, ratio: float, hops: int,
                  finer: Groups | None = None) -> Groups:
    """Seed groups of one coarse level (``ratio``: atoms per coarse node, accumulated over levels;
    ``colours``: the symmetry classes of the atoms, :func:`refine_colours` of the bond graph;
    ``finer``: the finer coarse level's groups, if any)."""
    finer_count = None if finer is None else np.bincount(finer.component, minlength=len(bg.percolating))
    by_comp = np.argsort(bg.component, kind="stable")  # atoms of each component contiguous, in index order
    bounds = np.searchsorted(bg.component[by_comp], np.arange(len(bg.percolating) + 1))
    local = np.empty(bg.n, dtype=np.int64)
    local[by_comp] = np.arange(bg.n)
    adj = sp.csr_matrix((np.ones(len(bg.src)), (local[bg.src], local[bg.dst])), shape=(bg.n, bg.n))
    edge_order = np.argsort(local[bg.src], kind="stable")
    esrc, edst = local[bg.src][edge_order], local[bg.dst][edge_order]
    ebounds = np.searchsorted(esrc, bounds)
    atom, node, ref, comp_of = [], [], [], []
    for c in range(len(bg.percolating)):
        lo, hi = int(bounds[c]), int(bounds[c + 1])
        atoms = by_comp[lo:hi]
        target = max(1, math.ceil(len(atoms) / ratio - 1e-9))
        if target <= 1 and not bg.percolating[c]:
            chosen = [np.arange(len(atoms))]
        else:
            e0, e1 = int(ebounds[c]), int(ebounds[c + 1])
            chosen = _select_component(adj[lo:hi, lo:hi].tocsr(), colours[atoms], esrc[e0:e1] - lo,
                                       edst[e0:e1] - lo, target, hops, bool(bg.percolating[c]),
                                       None if finer_count is None else int(finer_count[c]))
        for g in chosen:
            members = atoms[np.sort(g)]
            atom.append(members)
            node.append(np.full(len(members), len(ref), dtype=np.int64))
            ref.append(int(members[0]))
            comp_of.append(c)
    member_atom = np.concatenate(atom).astype(np.int64) if atom else np.zeros(0, dtype=np.int64)
    ref = np.asarray(ref, dtype=np.int64)
    member_node = np.concatenate(node) if node else np.zeros(0, dtype=np.int64)
    shift = bg.image[member_atom] - bg.image[ref[member_node]]
    return Groups(member_atom, member_node, shift, ref, np.asarray(comp_of, dtype=np.int64))


def singletons(n: int, component: np.ndarray) -> Groups:
    """Level 0: every atom its own group."""
    idx = np.arange(n, dtype=np.int64)
    return Groups(idx, idx, np.zeros((n, 3), dtype=np.int64), idx, component)


# ---------------------------------------------------------------------------------------------- pairs
#: work bound of :func:`assignment_pairs` (bond steps taken, summed over hops): ``MAX_SEARCH_BASE +
#: MAX_SEARCH_PER_ATOM * n``. Molecules and crystals take far less (a 4,000-atom copper box about 1e7; a
#: protein of n atoms a few hundred per atom); three superheavy atoms in a 0.6 x 2.5 x 1.1 Å cell, each
#: "bonded" to 840 images of the others, took 6e8 steps and 73 s before this bound.
MAX_SEARCH_BASE = 2_000_000
MAX_SEARCH_PER_ATOM = 20_000


def _pack(node: np.ndarray, atom: np.ndarray, shift: np.ndarray, n: int, base: int) -> np.ndarray:
    """(node, atom, image) rows as int64 keys whose order is the rows' lexicographic order (|image| < base / 2)."""
    s = shift + base // 2
    return ((node * n + atom) * base + s[:, 0]) * base ** 2 + s[:, 1] * base + s[:, 2]


def _unpack(key: np.ndarray, n: int, base: int):
    b = base
    s = np.stack([(key // b**2) % b, (key // b) % b, key % b], axis=1) - b // 2
    rest = key // b**3
    return rest // n, rest % n, s


def _key_base(bg: BondGraph, fine: Groups, coarse: Groups, hops: int) -> int:
    """Base of the packed image components in :func:`assignment_pairs`: more than twice the largest image
    a pair can reach (its coarse node's member image, ``hops`` bonds, minus its fine node's member image).

    Tiny periodic cells need large images: a bond (Li-Li, 3.1 Å) crosses five 0.6 Å cells, and 8 hops 40.
    """
    largest = lambda a: int(np.abs(a).max()) if a.size else 0  # noqa: E731
    reach = largest(coarse.member_shift) + hops * largest(bg.shift) + largest(fine.member_shift)
    base = 2 * reach + 2
    rows = (len(coarse.ref_atom) + 1) * max(bg.n, 1)
    if rows * float(base) ** 3 >= 2.0**62:
        raise CoarseLevelError(
            f"a coarse level's bond paths wrap up to {reach} times around the periodic cell within its {hops} "
            f"hops, too many to index for {bg.n} atoms; use a larger cell or fewer `hops`")
    return base


def assignment_pairs(bg: BondGraph, fine: Groups, coarse: Groups, hops: int):
    """Pairs (fine node, coarse node, image) whose seed groups are within ``hops`` bonds.

    The image is the integer cell shift of the fine node's reference atom in the frame where the coarse
    node's reference atom sits at image 0; several images of one pair appear in small periodic cells.
    """
    n = bg.n
    base = _key_base(bg, fine, coarse, hops)
    order = np.lexsort((bg.dst, bg.src))
    src, dst, sh = bg.src[order], bg.dst[order], bg.shift[order]
    starts = np.searchsorted(src, np.arange(n + 1))
    frontier = np.unique(_pack(coarse.member_node, coarse.member_atom, coarse.member_shift, n, base))
    visited = frontier
    budget, work = MAX_SEARCH_BASE + MAX_SEARCH_PER_ATOM * n, 0
    for hop in range(hops):
        node, atom, s = _unpack(frontier, n, base)
        deg = starts[atom + 1] - starts[atom]
        work += int(deg.sum())
        if work > budget:
            raise CoarseLevelError(
                f"a coarse level's assignment search reached {len(visited):,} periodic images of this structure's "
                f"{n} atoms within {hop} of its {hops} hops (bonds crossing up to {int(np.abs(bg.shift).max())} "
                f"cells, {len(bg.src) / max(n, 1):.0f} bonds per atom): the periodic cell is too small for its bonds; "
                f"use a supercell or fewer `hops`")
        rep = np.repeat(np.arange(len(frontier)), deg)
        edge = starts[atom][rep] + np.arange(int(deg.sum())) - np.repeat(np.cumsum(deg) - deg, deg)
        new = np.unique(_pack(node[rep], dst[edge], s[rep] + sh[edge], n, base))
        new = new[~np.isin(new, visited, assume_unique=True)]
        visited = np.union1d(visited, new)
        frontier = new
    node, atom, s = _unpack(visited, n, base)
    member_of = np.full(n, -1, dtype=np.int64)
    member_of[fine.member_atom] = np.arange(len(fine.member_atom))
    k = member_of[atom]
    ok = k >= 0
    fine_node = fine.member_node[k[ok]]
    image = s[ok] - fine.member_shift[k[ok]]
    keys = np.unique(_pack(node[ok], fine_node, image, n, base))
    c, f, img = _unpack(keys, n, base)
    missing = np.setdiff1d(np.arange(len(fine.ref_atom)), f)
    if missing.size:  # cannot happen by construction; fail loudly if it ever does
        raise CoarseLevelError(f"node {int(missing[0])} has no coarse node within {hops} bonds")
    return f, c, img


# ---------------------------------------------------------------------------------------------- per frame
def frame_topology(positions, numbers, cell, pbc, ratios, hops, min_nodes=None):
    """``(component [n], [LevelTopology per level])`` of one frame."""
    numbers = np.asarray(numbers)
    bg = bond_graph(positions, numbers, cell, pbc)
    fine = singletons(bg.n, bg.component)
    colours = refine_colours(bg.src, bg.dst, numbers)  # the same classes for every level
    levels, acc = [], 1.0
    min_nodes = min_nodes or [1] * len(ratios)
    for k, (ratio, h) in enumerate(zip(ratios, hops)):
        acc *= ratio
        coarse = select_groups(bg, colours, acc, h, finer=None if k == 0 else fine)
        if len(coarse.ref_atom) < min_nodes[k]:
            raise CoarseLevelError(
                f"coarse level {k + 1} has {len(coarse.ref_atom)} node(s) for this structure of {bg.n} atoms, "
                f"but the configuration requires at least {min_nodes[k]} (min_nodes); lower `ratio` or "
                f"`min_nodes`, or remove the level")
        f, c, img = assignment_pairs(bg, fine, coarse, h)
        t = torch.as_tensor
        levels.append(LevelTopology(t(coarse.member_atom), t(coarse.member_node),
                                    t(coarse.member_shift).double(), t(coarse.ref_atom), t(f), t(c),
                                    t(img).double()))
        fine = coarse
    return torch.as_tensor(bg.component), levels


def add_topology(graph, ratios: list[float], hops: list[int], min_nodes: list[int]):
    """Return ``graph`` (a :class:`~muse_ff.data.graph.Graph`) with ``component`` and ``coarse`` filled,
    frame by frame."""
    from muse_ff.data.atoms import collate

    frames = []
    for b in range(graph.num_frames):
        sub = graph.frame(b)
        comp, levels = frame_topology(
            sub.positions.detach().cpu().double().numpy(), sub.species.cpu().numpy(),
            sub.cell[0].detach().cpu().double().numpy(), sub.pbc[0].cpu().numpy(), ratios, hops, min_nodes)
        sub.component, sub.coarse = comp, levels
        frames.append(sub)
    return frames[0] if len(frames) == 1 else collate(frames)
