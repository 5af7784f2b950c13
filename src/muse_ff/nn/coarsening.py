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

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from ase.data import covalent_radii
from scipy.sparse.csgraph import breadth_first_order, connected_components

from muse_ff.data.graph import LevelTopology
from muse_ff.data.neighbors import neighbor_list
from muse_ff.nn import _topology_kernels as _kernels

#: a pair is bonded when closer than BOND_SCALE x (sum of covalent radii)
BOND_SCALE = 1.2


class CoarseLevelError(ValueError):
    """A structure that cannot be coarse-grained as the configuration requires."""


# ---------------------------------------------------------------------------------------------- bond graph
@dataclass
class BondGraph:
    """Covalent bond graph of one frame, with periodic images.

    ``src -> dst`` are directed bonds (both directions, one entry per bonded image) whose bond vector is
    ``r[dst] - r[src] + shift @ cell``, sorted by source, then destination, then shift (so nothing downstream
    depends on the order in which a neighbour-list library returns pairs). ``image[i]`` unwraps atom i within
    its component (meaningful for components that do not percolate); ``percolating[c]`` says whether
    component c is bonded to its own periodic images (a crystal, a sheet, a polymer through the boundary), and
    ``free[c]`` [3, 3] is the projector onto the directions (in integer image space) orthogonal to the images
    it is bonded to (the identity for a molecule; diag(0, 0, 1) for a sheet spanned by the first two cell
    vectors): two images of one atom, ``image`` apart by d, are the same instance of c when ``free[c] @ d`` is 0.
    """

    n: int
    src: np.ndarray
    dst: np.ndarray
    shift: np.ndarray
    component: np.ndarray
    image: np.ndarray
    percolating: np.ndarray
    free: np.ndarray

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
    order = np.lexsort((*s.T, j, i))  # in key()'s order, whatever order the neighbour list gave
    i, j, s = i[order], j[order], s[order]
    adj = sp.csr_matrix((np.ones(len(i)), (i, j)), shape=(n, n))
    _, comp = connected_components(adj, directed=False)
    image = _unwrap(n, i, j, s, comp)
    bad = np.any(image[j] != image[i] + s, axis=1)
    bad_comp = comp[i[bad]]
    percolating = np.zeros(int(comp.max()) + 1 if n else 0, dtype=bool)
    percolating[bad_comp] = True
    free = np.tile(np.eye(3), (len(percolating), 1, 1))
    defects = image[i[bad]] + s[bad] - image[j[bad]]  # the images each percolating component is bonded to
    for c in np.flatnonzero(percolating):
        d = defects[bad_comp == c].astype(float)
        _, sv, vt = np.linalg.svd(d, full_matrices=True)
        span = vt[: int((sv > 1e-8).sum())]
        free[c] = np.eye(3) - span.T @ span
    return BondGraph(n, i, j, s, comp.astype(np.int64), image, percolating, free)


def _unwrap(n, i, j, s, comp) -> np.ndarray:
    """[n, 3] integer image of each atom reached from its component's root (its lowest atom) along the
    breadth-first spanning tree of bonds (neighbours in (atom, neighbour) order, the first bonded image of
    each pair).

    One breadth-first search over all components at once (a virtual node bonded to every root: each
    component's visiting order is that of its own search), then the images summed along the tree by pointer
    jumping: O(n log depth) array operations instead of a Python loop over the atoms.
    """
    image = np.zeros((n, 3), dtype=np.int64)
    if n == 0:
        return image
    order = np.lexsort((j, i))
    i, j, s = i[order], j[order], s[order]
    roots = np.unique(comp, return_index=True)[1]
    indptr = np.append(np.searchsorted(i, np.arange(n + 1)), len(i) + len(roots))
    indices = np.concatenate([j, roots]).astype(np.int32)
    tree = sp.csr_matrix((np.ones(len(indices)), indices, indptr), shape=(n + 1, n + 1))
    _, parent = breadth_first_order(tree, n, directed=True, return_predecessors=True)
    parent = parent[:n].astype(np.int64)
    is_root = parent == n
    child = np.flatnonzero(~is_root)
    edge = np.searchsorted(i * n + j, parent[child] * n + child)  # the first (parent, child) bond
    offset = np.zeros((n, 3), dtype=np.int64)
    offset[child] = s[edge]
    up = np.where(is_root, np.arange(n), parent)
    while True:
        up_up = up[up]
        offset += offset[up] * (up != up_up)[:, None]  # an ancestor that is a root adds nothing
        if np.array_equal(up_up, up):
            return offset
        up = up_up


# ---------------------------------------------------------------------------------------------- colours
def refine_colours(src: np.ndarray, dst: np.ndarray, initial: np.ndarray) -> np.ndarray:
    """Colour refinement (1-WL) of a graph given by directed edges: canonical class label of every node.

    Two nodes get the same label when they have the same initial colour and, recursively, the same multiset
    of neighbour colours. Labels are ranks of sorted signatures, so they do not depend on the node order.

    Each round labels every node by the rank of (its colour, the wrapping uint64 sum of splitmix64 of its
    neighbours' colours) in lexicographic order, until the number of classes stops growing. Only what can
    change is computed (as in Hopcroft's partition refinement): after the first round, the signatures of
    the nodes with an edge to a class that has just split off (every child of a split class but its largest
    one), and of one other member of each of their classes. The other members' signatures are equal to
    that one's: their neighbours' classes, counted, are those of the round before (where they were equal),
    except that what went to the largest child of a split class is now counted there. So a long chain,
    whose refinement takes as many rounds as it has bonds, costs the work of the nodes each round touches
    (times log n), not O(n) per round: the loop is compiled (:func:`muse_ff.nn._topology_kernels.refine`,
    each class a range of one permutation of the nodes, its rank counted by a Fenwick tree).
    """
    colours = np.unique(initial, return_inverse=True)[1].astype(np.int64).ravel()
    n = len(colours)
    if n == 0:
        return colours
    indptr, nbr, rindptr, rsrc = _both_ways(np.asarray(src, dtype=np.int64), np.asarray(dst, dtype=np.int64), n)
    return _kernels.refine(indptr, nbr, rindptr, rsrc, colours)


def _both_ways(src: np.ndarray, dst: np.ndarray, n: int):
    """CSR of a directed edge list: out-neighbours ``nbr[indptr[v]:indptr[v + 1]]``, in-neighbours
    ``rsrc[rindptr[v]:rindptr[v + 1]]`` (multiple edges kept)."""
    indptr = np.zeros(n + 1, dtype=np.int64)
    indptr[1:] = np.cumsum(np.bincount(src, minlength=n))
    rindptr = np.zeros(n + 1, dtype=np.int64)
    rindptr[1:] = np.cumsum(np.bincount(dst, minlength=n))
    return indptr, dst[np.argsort(src, kind="stable")], rindptr, src[np.argsort(dst, kind="stable")]


# ---------------------------------------------------------------------------------------------- selection
def _select_component(adj: sp.csr_matrix, colours: np.ndarray, src, dst, target: int, hops: int,
                      percolating: bool, finer: int | None = None) -> list[np.ndarray]:
    """Seed groups (local indices) of one component. See the module docstring for the rule.

    ``finer``: the component's node count at the finer level; a crystal's level never has more than half
    of it (a coarse level must be coarser), individualising when whole classes would break that.

    The rule, as :func:`muse_ff.nn._topology_kernels.select_component` computes it: depth = hops from the
    nearest terminal atom (degree <= 1), or 0 when there is none. Repeatedly take the class of free atoms
    whose nearest member is farthest (depth before the first seed, then hops to the seeds; ties: the
    smaller class, then the lower label), split its members into seed groups (connected components of
    'within ``hops // 2`` bonds', none for a crystal), until there are ``target`` groups and every atom is
    within ``hops`` bonds of a seed, or no class is at least ``hops // 2 + 1`` from the seeds. Over the budget
    ``max(2 target, target + 8)`` (a crystal: also at most half of ``finer``) the sampling ends when every atom
    is covered; otherwise a molecule takes the class whole and a crystal takes its lowest-index member alone
    and re-runs colour refinement with the chosen atoms marked.
    """
    n = adj.shape[0]
    if target <= 1 and not percolating:
        return [np.arange(n)]
    adj = adj.tocsr()
    adj.sum_duplicates()
    src, dst = np.asarray(src, dtype=np.int64), np.asarray(dst, dtype=np.int64)
    e_indptr, e_nbr, e_rindptr, e_rsrc = _both_ways(src, dst, n)
    members, bounds = _kernels.select_component(
        adj.indptr.astype(np.int64), adj.indices.astype(np.int64), e_indptr, e_nbr, e_rindptr, e_rsrc,
        np.asarray(colours, dtype=np.int64), int(target), int(hops), bool(percolating),
        -1 if finer is None else int(finer))
    return [members[bounds[g]:bounds[g + 1]] for g in range(len(bounds) - 1)]


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
    ``finer``: the finer coarse level's groups, if any).

    Nodes come component by component, each component's groups in the order chosen, each group's atoms
    ascending, its reference atom the lowest."""
    n_comp = len(bg.percolating)
    finer_count = None if finer is None else np.bincount(finer.component, minlength=n_comp)
    by_comp = np.argsort(bg.component, kind="stable")  # atoms of each component contiguous, in index order
    bounds = np.searchsorted(bg.component[by_comp], np.arange(n_comp + 1))
    size = np.diff(bounds)
    target = np.maximum(1, np.ceil(size / ratio - 1e-9)).astype(np.int64)
    whole = (target <= 1) & ~bg.percolating  # one node of all its atoms: no search
    nodes = np.ones(n_comp, dtype=np.int64)
    chosen_of: dict[int, list[np.ndarray]] = {}
    todo = np.flatnonzero(~whole)
    if len(todo):
        local = np.empty(bg.n, dtype=np.int64)
        local[by_comp] = np.arange(bg.n)
        lsrc, ldst = local[bg.src], local[bg.dst]
        adj = sp.csr_matrix((np.ones(len(bg.src)), (lsrc, ldst)), shape=(bg.n, bg.n))
        edge_order = np.lexsort((ldst, lsrc))  # the order of a node's bonds changes nothing
        esrc, edst = lsrc[edge_order], ldst[edge_order]
        ebounds = np.searchsorted(esrc, bounds)
        # The seed groups of a component (in its local atom order) are a function of its size, target,
        # crystal flag, finer count, local bonds and the order of its colour labels only: identical
        # components (the molecules of a liquid, the sheets of graphite) are chosen once.
        done: dict[tuple, list[np.ndarray]] = {}
        for c in todo.tolist():
            lo, hi = int(bounds[c]), int(bounds[c + 1])
            e0, e1 = int(ebounds[c]), int(ebounds[c + 1])
            atoms = by_comp[lo:hi]
            ranks = np.unique(colours[atoms], return_inverse=True)[1].astype(np.int64)
            finer_c = None if finer_count is None else int(finer_count[c])
            key = (hi - lo, int(target[c]), bool(bg.percolating[c]), finer_c, ranks.tobytes(),
                   (esrc[e0:e1] - lo).tobytes(), (edst[e0:e1] - lo).tobytes())
            chosen = done.get(key)
            if chosen is None:
                chosen = _select_component(adj[lo:hi, lo:hi].tocsr(), colours[atoms], esrc[e0:e1] - lo,
                                           edst[e0:e1] - lo, int(target[c]), hops, bool(bg.percolating[c]),
                                           finer_c)
                chosen = [np.sort(g) for g in chosen]
                done[key] = chosen
            chosen_of[c] = chosen
            nodes[c] = len(chosen)
    first = np.cumsum(nodes) - nodes  # first node of each component
    # members: the atoms of whole components (node: their component's), then those of searched ones
    in_whole = whole[bg.component[by_comp]]
    atom_parts, node_parts = [by_comp[in_whole]], [first[bg.component[by_comp[in_whole]]]]
    for c, chosen in chosen_of.items():
        atoms = by_comp[bounds[c]:bounds[c + 1]]
        for k, g in enumerate(chosen):
            atom_parts.append(atoms[g])
            node_parts.append(np.full(len(g), first[c] + k, dtype=np.int64))
    member_atom = np.concatenate(atom_parts).astype(np.int64)
    member_node = np.concatenate(node_parts).astype(np.int64)
    order = np.argsort(member_node, kind="stable")
    member_atom, member_node = member_atom[order], member_node[order]
    starts = np.searchsorted(member_node, np.arange(int(nodes.sum())))
    ref = member_atom[starts]
    comp_of = np.repeat(np.arange(n_comp, dtype=np.int64), nodes)
    shift = bg.image[member_atom] - bg.image[ref[member_node]]
    return Groups(member_atom, member_node, shift, ref, comp_of)


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


def _unique(x: np.ndarray) -> np.ndarray:
    """``np.unique`` of an int64 array by one sort (numpy's hashing unique is several times slower here)."""
    x = np.sort(x)
    keep = np.ones(len(x), dtype=bool)
    keep[1:] = x[1:] != x[:-1]
    return x[keep]


def _contains(sorted_set: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Whether each of ``x`` is in the sorted array ``sorted_set``."""
    if len(sorted_set) == 0:
        return np.zeros(len(x), dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_set, x), len(sorted_set) - 1)
    return sorted_set[pos] == x


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
    frontier = _unique(_pack(coarse.member_node, coarse.member_atom, coarse.member_shift, n, base))
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
        new = _unique(_pack(node[rep], dst[edge], s[rep] + sh[edge], n, base))
        new = new[~_contains(visited, new)]
        visited = np.sort(np.concatenate([visited, new]), kind="stable")  # a merge of two sorted runs
        frontier = new
    node, atom, s = _unpack(visited, n, base)
    member_of = np.full(n, -1, dtype=np.int64)
    member_of[fine.member_atom] = np.arange(len(fine.member_atom))
    k = member_of[atom]
    ok = k >= 0
    fine_node = fine.member_node[k[ok]]
    image = s[ok] - fine.member_shift[k[ok]]
    keys = _unique(_pack(node[ok], fine_node, image, n, base))
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
        ref = coarse.ref_atom
        levels.append(LevelTopology(t(coarse.member_atom), t(coarse.member_node),
                                    t(coarse.member_shift).double(), t(ref), t(f), t(c),
                                    t(img).double(), t(bg.image[ref]).double().reshape(-1, 3),
                                    t(bg.free[bg.component[ref]]).double().reshape(-1, 3, 3)))
        fine = coarse
    return torch.as_tensor(bg.component), levels


def add_topology(graph, ratios: list[float], hops: list[int], min_nodes: list[int]):
    """Return ``graph`` (a :class:`~muse_ff.data.graph.Graph`) with ``component`` and ``coarse`` filled,
    frame by frame (and, as :meth:`Graph.frame` gives them, no charge groups: they follow from the
    components)."""
    from dataclasses import replace

    from muse_ff.data.atoms import collate

    def topology(sub):
        return frame_topology(
            sub.positions.detach().cpu().double().numpy(), sub.species.cpu().numpy(),
            sub.cell[0].detach().cpu().double().numpy(), sub.pbc[0].cpu().numpy(), ratios, hops, min_nodes)

    if graph.num_frames == 1:  # the frame is the graph: no copy of its edges (Graph.frame masks all of them)
        comp, levels = topology(graph)
        return replace(graph, component=comp, coarse=levels, charge_group=None, group_charge=None)
    frames = graph.frames()
    for sub in frames:
        sub.component, sub.coarse = topology(sub)
    return collate(frames)
