"""Neighbour lists with ``vesin`` (periodic, mixed and non-periodic; cells smaller than 2x cutoff).

Non-periodic directions are handed to vesin as periodic ones with a box longer than the structure's extent
plus the cutoff, so no periodic image is ever within the cutoff and the pairs are exactly those of the free
structure; the box, and so vesin's cell grid, is then known here.

vesin (0.6) caps its cell grid at 1e5 cells, keeping the ratios of the cells per direction; on a very
elongated box (two water molecules 1e6 Å apart: 200,002 x 2 x 2 cells) the short directions truncate to zero
cells and the process dies of an integer division by zero (SIGFPE, no message). :func:`_vesin_grid_ok`
repeats that grid computation; where it would fail, the structure is first cut into pieces separated by gaps
wider than the cutoff along its non-periodic directions (no pair crosses such a gap), and a piece whose box is
still too elongated (a user's periodic cell of 1e6 x 11 x 11 Å) is searched with the smallest larger radius
that needs no capping at all, and its pairs filtered back to the cutoff.
"""

from __future__ import annotations

import math

import numpy as np
import vesin


def _closed_box(positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, cutoff: float) -> np.ndarray:
    """A fully periodic box: the periodic lattice vectors of ``cell`` plus, along each non-periodic direction,
    a vector orthogonal to them (and to each other) longer than the structure's extent along it + the cutoff."""
    box = np.array(cell, dtype=np.float64)
    periodic = [box[k] for k in range(3) if pbc[k]]
    basis = []  # orthonormal directions spanning the complement of the periodic vectors
    span = [v / np.linalg.norm(v) for v in periodic]
    q, _ = np.linalg.qr(np.array(span).T, mode="complete") if span else (np.eye(3), None)
    basis = [q[:, k] for k in range(len(span), 3)]
    for k, axis in zip([k for k in range(3) if not pbc[k]], basis):
        proj = positions @ axis
        extent = float(proj.max() - proj.min()) if len(proj) else 0.0
        box[k] = axis * (extent + 2.0 * cutoff + 1.0)
    return box


_VESIN_MAX_CELLS = 1e5  # vesin's MAX_NUMBER_OF_CELLS (vesin/src/cpu_cell_list.cpp)


def _vesin_grid_ok(box: np.ndarray, cutoff: float) -> bool:
    """Whether vesin's capped cell grid for this periodic ``box`` keeps at least one cell per direction."""
    volume = abs(float(np.linalg.det(box)))
    faces = np.array([volume / np.linalg.norm(np.cross(box[(k + 1) % 3], box[(k + 2) % 3])) for k in range(3)])
    n = np.maximum(np.trunc(faces / cutoff), 1.0)
    if n.prod() <= _VESIN_MAX_CELLS:
        return True
    r_xy, r_yz = n[0] / n[1], n[1] / n[2]
    n2 = np.cbrt(_VESIN_MAX_CELLS / (r_xy * r_yz * r_yz))
    n1 = r_yz * np.trunc(n2)
    n0 = r_xy * np.trunc(n1)
    margin = 1.0 + 1e-6  # stay clear of floating-point ties at exactly one cell
    return bool(n2 >= margin and n1 >= margin and n0 >= margin)


def neighbor_list(
    positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, cutoff: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Full neighbour list of one structure.

    Args:
        positions: [n, 3] float64 positions (Å).
        cell: [3, 3] lattice vectors as rows (Å); ignored along non-periodic directions.
        pbc: [3] bool.
        cutoff: radius (Å).

    Returns:
        ``(i, j, shifts, d)``: receiver and sender indices [E] int64, integer cell shifts [E, 3] and
        distances [E] (Å), with ``positions[j] - positions[i] + shifts @ cell`` of length ``d < cutoff``;
        shifts are zero along non-periodic directions.
    """
    positions = np.ascontiguousarray(positions, dtype=np.float64)
    cell = np.asarray(cell, dtype=np.float64)
    pbc = np.asarray(pbc, dtype=bool)
    if not (np.isfinite(positions).all() and np.isfinite(cell[pbc]).all() and math.isfinite(cutoff)):
        # NaN would make the grid computation below loop forever (and vesin refuses it with a bare RuntimeError)
        bad = np.flatnonzero(~np.isfinite(positions).all(axis=1))
        what = f"points {bad[:10].tolist()}" if bad.size else ("the cutoff" if not math.isfinite(cutoff)
                                                                 else "the cell")
        raise ValueError(f"neighbour list: non-finite (NaN or inf) coordinates of {what}")
    if len(positions) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros((0, 3), dtype=np.int64), np.zeros(0)
    box = _closed_box(positions, cell, pbc, cutoff)
    if not _vesin_grid_ok(box, cutoff):
        closed = _open_periodic_gaps(positions, box, pbc, cutoff)
        if closed is not None:  # search the gapped periodic directions as free ones
            moved, free_pbc, image = closed
            i, j, s, d = neighbor_list(moved, cell, free_pbc, cutoff)
            return i, j, s + image[j] - image[i], d
        pieces = _free_pieces(positions, box, pbc, cutoff)
        if len(pieces) > 1:
            parts = [(idx, neighbor_list(positions[idx], cell, pbc, cutoff)) for idx in pieces]
            i = np.concatenate([idx[p[0]] for idx, p in parts])
            j = np.concatenate([idx[p[1]] for idx, p in parts])
            shifts = np.concatenate([p[2] for _, p in parts])
            d = np.concatenate([p[3] for _, p in parts])
            order = np.lexsort((j, i))
            return i[order], j[order], shifts[order], d[order]
    return _closed_neighbor_list(positions, box, pbc, cutoff)


def _open_periodic_gaps(positions: np.ndarray, box: np.ndarray, pbc: np.ndarray, cutoff: float):
    """Periodic directions along which the atoms leave an empty slab thicker than ``cutoff``, opened up.

    Along periodic direction k, an atom and an image of another one shifted by ``s_k != 0`` lattice vectors
    are at least ``|f_j - f_i + s_k| d_k`` apart (f: fractional coordinates along k, d_k: the spacing of the
    lattice planes across k). If the fractional coordinates (modulo 1) leave a gap ``g`` with ``g d_k >
    cutoff``, the atoms are moved by whole lattice vectors so that the gap is at the boundary; then
    ``|f_j - f_i| <= 1 - g`` and every pair with ``s_k != 0`` is farther apart than the cutoff, so direction k
    can be searched as a free one (a water molecule in a 1e9 Å periodic cell, a long thin cell, most of it
    empty: vesin's capped grid would truncate there, see :func:`_vesin_grid_ok`).

    Returns ``(moved positions, pbc with those directions free, [n, 3] integer image of each atom)``, the
    image being the lattice vectors each atom was moved by (the true shift of a pair found on the moved
    positions is ``s + image[j] - image[i]``), or ``None`` if no direction has such a gap.
    """
    inv = np.linalg.inv(box)
    frac = positions @ inv
    volume = abs(float(np.linalg.det(box)))
    image = np.zeros((len(positions), 3), dtype=np.int64)
    free_pbc = pbc.copy()
    for k in np.flatnonzero(pbc):
        spacing = volume / np.linalg.norm(np.cross(box[(k + 1) % 3], box[(k + 2) % 3]))
        whole = np.floor(frac[:, k])
        u = frac[:, k] - whole  # in [0, 1)
        order = np.argsort(u, kind="stable")
        su = u[order]
        gaps = np.append(np.diff(su), su[0] + 1.0 - su[-1])  # after each sorted atom, the last one wrapping
        g = int(np.argmax(gaps))
        if gaps[g] * spacing <= cutoff * (1.0 + 1e-9) + 1e-9:
            continue
        start = su[(g + 1) % len(su)]  # the atoms start after the gap: fractional coordinates in [start, start + 1)
        shift = -whole + (u < start)  # whole lattice vectors that bring each atom there
        image[:, k] = shift.astype(np.int64)
        free_pbc[k] = False
    if free_pbc.sum() == pbc.sum():
        return None
    return positions + image @ box, free_pbc, image


def _free_pieces(positions: np.ndarray, box: np.ndarray, pbc: np.ndarray, cutoff: float) -> list[np.ndarray]:
    """Atom indices of the pieces left when cutting at every gap wider than ``cutoff`` along the non-periodic
    directions of the closed ``box`` (its non-periodic rows are orthogonal to everything else)."""
    axes = [box[k] / np.linalg.norm(box[k]) for k in range(3) if not pbc[k]]
    done, todo = [], [np.arange(len(positions))]
    while todo:
        idx = todo.pop()
        for axis in axes:
            proj = positions[idx] @ axis
            order = np.argsort(proj, kind="stable")
            cuts = np.flatnonzero(np.diff(proj[order]) > cutoff) + 1
            if cuts.size:
                todo.extend(np.sort(idx[part]) for part in np.split(order, cuts))
                break
        else:
            done.append(idx)
    return done


def _closed_neighbor_list(positions, box, pbc, cutoff):
    """vesin on the fully periodic closed ``box``, shifts mapped back to the structure's cell."""
    box = np.ascontiguousarray(box)
    # wrap into the box, then correct the shifts (along closed non-periodic directions they come out zero)
    wrap = np.floor(positions @ np.linalg.inv(box)).astype(np.int64)
    positions = np.ascontiguousarray(positions - wrap @ box)
    radius = float(cutoff)
    while not _vesin_grid_ok(box, radius):  # search wider (no capped grid), keep the pairs within the cutoff
        radius *= 1.25
    nl = vesin.NeighborList(cutoff=radius, full_list=True, sorted=True)
    i, j, s, d = nl.compute(points=positions, box=box, periodic=[True, True, True], quantities="ijSd")
    if radius > cutoff:
        keep = d < cutoff
        i, j, s, d = i[keep], j[keep], s[keep], d[keep]
    i, j = i.astype(np.int64), j.astype(np.int64)
    shifts = s.astype(np.int64) - wrap[j] + wrap[i]
    if (shifts[:, ~pbc] != 0).any():  # cannot happen: the closed box is longer than extent + cutoff
        raise RuntimeError("neighbour list: an image pair along a non-periodic direction")
    return i, j, shifts, d
