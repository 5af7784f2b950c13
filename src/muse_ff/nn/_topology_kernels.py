"""Compiled (numba) loops of the coarse topology: colour refinement and the farthest-class seed selection.

:mod:`muse_ff.nn.coarsening` defines what is computed; these kernels compute exactly that (the same labels
and the same seed groups, checked against checksums recorded from the first numpy implementation in
``tests/nn/test_coarsening_speedup.py``) with work proportional to what changes. The array versions they
replace did O(n) work per refinement round and per class taken, and a long chain needs one round per bond
from its ends to its middle and one class per pair of carbons: 33 s at 100k atoms.

Compiled once per machine (``cache=True`` writes next to this file, or in numba's user cache directory when
the package is read-only); the first call in a fresh environment takes a few seconds.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)


@njit(cache=True)
def _mix(x):
    """splitmix64 of a non-negative integer (the colour hash of :func:`muse_ff.nn.coarsening.refine_colours`)."""
    z = np.uint64(x) + _GOLDEN
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@njit(cache=True)
def _fen_add(tree, p):
    p += 1
    while p < len(tree):
        tree[p] += 1
        p += p & (-p)


@njit(cache=True)
def _fen_count(tree, p):
    """Markers at positions <= p."""
    p += 1
    s = 0
    while p > 0:
        s += tree[p]
        p -= p & (-p)
    return s


@njit(cache=True)
def dense_rank(x):
    """Rank of each value among the distinct values of ``x`` (``np.unique(x, return_inverse=True)[1]``)."""
    n = len(x)
    out = np.empty(n, dtype=np.int64)
    if n == 0:
        return out
    order = np.argsort(x, kind="mergesort")
    r = 0
    out[order[0]] = 0
    for i in range(1, n):
        if x[order[i]] != x[order[i - 1]]:
            r += 1
        out[order[i]] = r
    return out


@njit(cache=True)
def refine(indptr, nbr, rindptr, rsrc, init):
    """Colour refinement of the graph with out-neighbours ``nbr[indptr[v]:indptr[v + 1]]`` and in-neighbours
    ``rsrc[rindptr[v]:rindptr[v + 1]]`` from dense initial ranks ``init``: the labels of
    :func:`muse_ff.nn.coarsening.refine_colours`.

    Each round, every node's signature is the wrapping uint64 sum of ``_mix(rank of its neighbour's class)``
    (one term per edge), and a class splits into the runs of equal signature in ascending (unsigned) order,
    which take its place in the order of classes. Classes are ranges of one permutation of the nodes (a split
    class's children subdivide its range in signature order) and a class's rank is the number of class starts
    up to its own, counted by a Fenwick tree, so a class keeps a persistent id while classes before it split.
    Only nodes with an edge into a child that is not its class's largest are recomputed in the next round,
    plus one untouched member of each class they are in (the untouched members' signatures are equal: see
    ``refine_colours``); the child holding the untouched members keeps its parent's id, so nothing is done
    for them. The work of a round is that of its touched nodes' edges (times log n).
    """
    n = len(init)
    cid = init.copy()
    size = np.zeros(n, dtype=np.int64)
    start = np.zeros(n, dtype=np.int64)
    perm = np.argsort(init, kind="mergesort")
    pos = np.empty(n, dtype=np.int64)
    for p in range(n):
        pos[perm[p]] = p
    k = 0
    for v in range(n):
        size[init[v]] += 1
        if init[v] + 1 > k:
            k = init[v] + 1
    fen = np.zeros(n + 1, dtype=np.int64)
    acc = 0
    for c in range(k):
        start[c] = acc
        _fen_add(fen, acc)
        acc += size[c]
    next_id = k
    stamp = np.full(n, -1, dtype=np.int64)  # round in which a node is touched
    seen = np.full(n, -1, dtype=np.int64)  # round in which a node was queued for the next one
    tcount = np.zeros(n, dtype=np.int64)  # touched members of each class in this round
    touched = np.arange(n)
    rnd = 0
    while len(touched):
        m = len(touched)
        # classes with touched members, and one untouched member of each that has some
        ncls = 0
        cls_list = np.empty(m, dtype=np.int64)
        for i in range(m):
            v = touched[i]
            stamp[v] = rnd
            c = cid[v]
            if tcount[c] == 0:
                cls_list[ncls] = c
                ncls += 1
            tcount[c] += 1
        reps = np.empty(ncls, dtype=np.int64)
        nrep = 0
        for i in range(ncls):
            c = cls_list[i]
            if tcount[c] < size[c]:
                p = start[c]
                while stamp[perm[p]] == rnd:
                    p += 1
                reps[nrep] = perm[p]
                nrep += 1
        ne = m + nrep
        ent_node = np.empty(ne, dtype=np.int64)
        ent_node[:m] = touched
        ent_node[m:] = reps[:nrep]
        ent_cls = np.empty(ne, dtype=np.int64)
        ent_sig = np.zeros(ne, dtype=np.uint64)
        for e in range(ne):
            v = ent_node[e]
            ent_cls[e] = cid[v]
            s = np.uint64(0)
            for q in range(indptr[v], indptr[v + 1]):
                s += _mix(_fen_count(fen, start[cid[nbr[q]]]) - 1)
            ent_sig[e] = s
        o1 = np.argsort(ent_sig, kind="mergesort")
        o2 = np.argsort(ent_cls[o1], kind="mergesort")
        order = o1[o2]
        # splits (all signatures of the round were computed with the ranks from its start)
        nmark = 0
        marked = np.empty(16, dtype=np.int64)
        split_any = False
        g0 = 0
        while g0 < ne:
            c = ent_cls[order[g0]]
            g1 = g0
            while g1 < ne and ent_cls[order[g1]] == c:
                g1 += 1
            nchild = 1
            for i in range(g0 + 1, g1):
                if ent_sig[order[i]] != ent_sig[order[i - 1]]:
                    nchild += 1
            if nchild > 1:
                split_any = True
                first = np.empty(nchild + 1, dtype=np.int64)  # entry runs of the children
                csize = np.zeros(nchild, dtype=np.int64)
                keeper = 0
                j = 0
                first[0] = g0
                for i in range(g0, g1):
                    if i > g0 and ent_sig[order[i]] != ent_sig[order[i - 1]]:
                        j += 1
                        first[j] = i
                    if order[i] >= m:  # the representative of the untouched members
                        keeper = j
                        csize[j] += size[c] - tcount[c]
                    else:
                        csize[j] += 1
                first[nchild] = g1
                a = start[c]
                ids = np.empty(nchild, dtype=np.int64)
                cstart = np.empty(nchild, dtype=np.int64)
                off = a
                for j in range(nchild):
                    cstart[j] = off
                    off += csize[j]
                    if j == keeper:
                        ids[j] = c
                    else:
                        ids[j] = next_id
                        next_id += 1
                # the children other than the keeper into their ranges (what remains is the keeper's)
                for j in range(nchild):
                    if j == keeper:
                        continue
                    p = cstart[j]
                    for i in range(first[j], first[j + 1]):
                        v = ent_node[order[i]]
                        q = pos[v]
                        w = perm[p]
                        perm[p] = v
                        perm[q] = w
                        pos[v] = p
                        pos[w] = q
                        cid[v] = ids[j]
                        p += 1
                for j in range(nchild):
                    start[ids[j]] = cstart[j]
                    size[ids[j]] = csize[j]
                    if j > 0:
                        _fen_add(fen, cstart[j])
                big = 0
                for j in range(1, nchild):
                    if csize[j] > csize[big]:
                        big = j
                for j in range(nchild):
                    if j == big:
                        continue
                    need = nmark + csize[j]
                    if need > len(marked):
                        grown = np.empty(max(2 * len(marked), need), dtype=np.int64)
                        grown[:nmark] = marked[:nmark]
                        marked = grown
                    for p in range(cstart[j], cstart[j] + csize[j]):
                        marked[nmark] = perm[p]
                        nmark += 1
            g0 = g1
        for i in range(ncls):
            tcount[cls_list[i]] = 0
        if not split_any or nmark == 0:
            break
        # the next round: the nodes with an edge into a marked node
        cnt = 0
        for i in range(nmark):
            v = marked[i]
            cnt += rindptr[v + 1] - rindptr[v]
        nxt = np.empty(cnt, dtype=np.int64)
        cnt = 0
        for i in range(nmark):
            v = marked[i]
            for q in range(rindptr[v], rindptr[v + 1]):
                u = rsrc[q]
                if seen[u] != rnd:
                    seen[u] = rnd
                    nxt[cnt] = u
                    cnt += 1
        touched = nxt[:cnt]
        rnd += 1
    labels = np.empty(n, dtype=np.int64)
    r = -1
    for p in range(n):
        v = perm[p]
        if start[cid[v]] == p:
            r += 1
        labels[v] = r
    return labels


# ---------------------------------------------------------------------------------------------- selection
@njit(cache=True)
def _bfs(indptr, indices, sources, n):
    """Hops from the nearest of ``sources`` along out-edges (inf where unreachable)."""
    dist = np.full(n, np.inf)
    queue = np.empty(n, dtype=np.int64)
    head, tail = 0, 0
    for s in sources:
        if dist[s] != 0.0:
            dist[s] = 0.0
            queue[tail] = s
            tail += 1
    while head < tail:
        v = queue[head]
        head += 1
        d = dist[v] + 1.0
        for q in range(indptr[v], indptr[v + 1]):
            u = indices[q]
            if dist[u] == np.inf:
                dist[u] = d
                queue[tail] = u
                tail += 1
    return dist


@njit(cache=True)
def _relax(indptr, indices, dist, seeds, queue, hops):
    """``dist = min(dist, hops from seeds)`` in place, searching only where it shortens ``dist`` (``dist`` is
    itself a hop distance to a set, so a node that does not improve shields what lies behind it). The nodes
    changed are ``queue[:count]``; returns ``count`` and how many of them came within ``hops``."""
    tail, near = 0, 0
    for s in seeds:
        if dist[s] > 0.0:
            if dist[s] > hops:
                near += 1
            dist[s] = 0.0
            queue[tail] = s
            tail += 1
    head = 0
    while head < tail:
        v = queue[head]
        head += 1
        d = dist[v] + 1.0
        for q in range(indptr[v], indptr[v + 1]):
            u = indices[q]
            if dist[u] > d:
                if dist[u] > hops and d <= hops:
                    near += 1
                dist[u] = d
                queue[tail] = u
                tail += 1
    return tail, near


@njit(cache=True)
def _find(parent, i):
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


@njit(cache=True)
def _merge(indptr, indices, members, merge, slot, vis, tick, queue, depth):
    """Group label of each of ``members`` (ascending): connected components of 'within ``merge`` bonds of each
    other', numbered by their lowest member. ``slot`` [n] is -1 outside members (restored on return);
    ``vis`` [n] holds visit stamps below ``tick``. Returns the labels, their count and the next free tick."""
    k = len(members)
    out = np.arange(k)
    if merge <= 0 or k == 1:
        return out, k, tick
    for i in range(k):
        slot[members[i]] = i
    parent = np.arange(k)
    for i in range(k):
        s = members[i]
        vis[s] = tick
        depth[s] = 0
        queue[0] = s
        head, tail = 0, 1
        while head < tail:
            v = queue[head]
            head += 1
            if slot[v] >= 0:
                a, b = _find(parent, i), _find(parent, slot[v])
                if a < b:
                    parent[b] = a
                elif b < a:
                    parent[a] = b
            if depth[v] == merge:
                continue
            for q in range(indptr[v], indptr[v + 1]):
                u = indices[q]
                if vis[u] != tick:
                    vis[u] = tick
                    depth[u] = depth[v] + 1
                    queue[tail] = u
                    tail += 1
        tick += 1
    label = np.full(k, -1, dtype=np.int64)  # roots are their component's lowest index: unions keep the lower
    ng = 0
    for i in range(k):
        r = _find(parent, i)
        if label[r] < 0:
            label[r] = ng
            ng += 1
        out[i] = label[r]
    for i in range(k):
        slot[members[i]] = -1
    return out, ng, tick


@njit(cache=True)
def _heap_less(hb, hs, hl, i, j):
    # min-heap on (-best, size, label): the farthest class first, then the smaller, then the lower label
    if hb[i] != hb[j]:
        return hb[i] > hb[j]
    if hs[i] != hs[j]:
        return hs[i] < hs[j]
    return hl[i] < hl[j]


@njit(cache=True)
def _heap_swap(hb, hs, hl, i, j):
    hb[i], hb[j] = hb[j], hb[i]
    hs[i], hs[j] = hs[j], hs[i]
    hl[i], hl[j] = hl[j], hl[i]


@njit(cache=True)
def _heap_push(hb, hs, hl, count, b, s, lab):
    hb[count], hs[count], hl[count] = b, s, lab
    i = count
    while i > 0:
        p = (i - 1) // 2
        if _heap_less(hb, hs, hl, i, p):
            _heap_swap(hb, hs, hl, i, p)
            i = p
        else:
            break
    return count + 1


@njit(cache=True)
def _heap_pop(hb, hs, hl, count):
    count -= 1
    _heap_swap(hb, hs, hl, 0, count)
    i = 0
    while True:
        a, b, m = 2 * i + 1, 2 * i + 2, i
        if a < count and _heap_less(hb, hs, hl, a, m):
            m = a
        if b < count and _heap_less(hb, hs, hl, b, m):
            m = b
        if m == i:
            break
        _heap_swap(hb, hs, hl, i, m)
        i = m
    return count


@njit(cache=True)
def _class_index(label, taken, score):
    k = 0
    for v in range(len(label)):
        if label[v] + 1 > k:
            k = label[v] + 1
    order = np.argsort(label, kind="mergesort")
    bounds = np.zeros(k + 1, dtype=np.int64)
    for v in range(len(label)):
        bounds[label[v] + 1] += 1
    for c in range(k):
        bounds[c + 1] += bounds[c]
    size = np.zeros(k, dtype=np.int64)
    best = np.full(k, np.inf)
    for v in range(len(label)):
        if not taken[v]:
            c = label[v]
            size[c] += 1
            if score[v] < best[c]:
                best[c] = score[v]
    return order, bounds, size, best


@njit(cache=True)
def select_component(indptr, indices, e_indptr, e_nbr, e_rindptr, e_rsrc, colours, target, hops, percolating,
                     finer):
    """Seed groups of one connected component (local indices): ``(members, bounds)``, group g being
    ``members[bounds[g]:bounds[g + 1]]`` (ascending), in the order chosen. The rule is
    :func:`muse_ff.nn.coarsening._select_component`'s; ``indptr, indices``: the adjacency (distinct
    neighbours); ``e_*``: the bonds with their multiplicity, for the refinement; ``finer < 0``: none."""
    n = len(colours)
    merge = 0 if percolating else hops // 2
    separation = hops // 2 + 1
    budget = max(2 * target, target + 8)
    if percolating and finer >= 0:
        budget = max(1, min(budget, finer // 2))
    nleaf = 0
    for v in range(n):
        if indptr[v + 1] - indptr[v] <= 1:
            nleaf += 1
    leaves = np.empty(nleaf, dtype=np.int64)
    nleaf = 0
    for v in range(n):
        if indptr[v + 1] - indptr[v] <= 1:
            leaves[nleaf] = v
            nleaf += 1
    depth = _bfs(indptr, indices, leaves, n) if nleaf else np.zeros(n)
    dist = np.full(n, np.inf)
    taken = np.zeros(n, dtype=np.bool_)
    far = n  # nodes with dist > hops
    out_members = np.empty(n, dtype=np.int64)
    out_bounds = np.zeros(n + 1, dtype=np.int64)
    ngroups, nout = 0, 0
    label = dense_rank(colours)
    order, bounds, size, best = _class_index(label, taken, depth)
    cap = 2 * len(size) + 16
    hb = np.empty(cap)
    hs = np.empty(cap, dtype=np.int64)
    hl = np.empty(cap, dtype=np.int64)
    hn = 0
    for c in range(len(size)):
        if size[c] > 0:
            hn = _heap_push(hb, hs, hl, hn, best[c], size[c], c)
    slot = np.full(n, -1, dtype=np.int64)
    vis = np.full(n, -1, dtype=np.int64)
    tick = 0
    bdepth = np.zeros(n, dtype=np.int64)
    queue = np.empty(n, dtype=np.int64)
    while not (ngroups >= target and far == 0):
        while hn > 0 and (size[hl[0]] == 0 or best[hl[0]] != hb[0] or size[hl[0]] != hs[0]):
            hn = _heap_pop(hb, hs, hl, hn)  # stale: taken, or its best has shortened since
        if hn == 0:
            break
        top = hb[0]
        if ngroups > 0 and not top >= separation:
            break
        pick = hl[0]
        cnt = 0
        for p in range(bounds[pick], bounds[pick + 1]):
            if not taken[order[p]]:
                cnt += 1
        members = np.empty(cnt, dtype=np.int64)
        cnt = 0
        for p in range(bounds[pick], bounds[pick + 1]):
            if not taken[order[p]]:
                members[cnt] = order[p]
                cnt += 1
        glabel, nnew, tick = _merge(indptr, indices, members, merge, slot, vis, tick, queue, bdepth)
        over = ngroups + nnew > budget and nnew > 1
        if over and ngroups > 0 and far == 0:
            break
        recount = ngroups == 0
        if over and percolating:
            members = members[:1]
            glabel = np.zeros(1, dtype=np.int64)
            nnew = 1
            taken[members[0]] = True
            init = np.empty(n, dtype=np.int64)
            for v in range(n):
                init[v] = label[v] * 2 + (1 if taken[v] else 0)
            label = refine(e_indptr, e_nbr, e_rindptr, e_rsrc, dense_rank(init))
            recount = True
        else:
            for v in members:
                taken[v] = True
            size[pick] = 0
        # the new groups, in order of their lowest member, each ascending
        for g in range(nnew):
            for i in range(len(members)):
                if glabel[i] == g:
                    out_members[nout] = members[i]
                    nout += 1
            ngroups += 1
            out_bounds[ngroups] = nout
        nch, near = _relax(indptr, indices, dist, members, queue, hops)
        far -= near
        if recount:
            order, bounds, size, best = _class_index(label, taken, dist)
            cap = 2 * len(size) + 16
            hb = np.empty(cap)
            hs = np.empty(cap, dtype=np.int64)
            hl = np.empty(cap, dtype=np.int64)
            hn = 0
            for c in range(len(size)):
                if size[c] > 0:
                    hn = _heap_push(hb, hs, hl, hn, best[c], size[c], c)
        else:
            for i in range(nch):
                v = queue[i]
                if not taken[v]:
                    c = label[v]
                    if dist[v] < best[c]:
                        best[c] = dist[v]
                        if hn == len(hb):
                            hb2 = np.empty(2 * hn)
                            hs2 = np.empty(2 * hn, dtype=np.int64)
                            hl2 = np.empty(2 * hn, dtype=np.int64)
                            hb2[:hn], hs2[:hn], hl2[:hn] = hb, hs, hl
                            hb, hs, hl = hb2, hs2, hl2
                        hn = _heap_push(hb, hs, hl, hn, best[c], size[c], c)
    return out_members[:nout], out_bounds[:ngroups + 1]
