"""Neighbour lists with ``vesin`` (periodic, mixed and non-periodic; cells smaller than 2x cutoff)."""

from __future__ import annotations

import numpy as np
import vesin


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
        distances [E] (Å), with ``positions[j] - positions[i] + shifts @ cell`` of length ``d < cutoff``.
    """
    positions = np.ascontiguousarray(positions, dtype=np.float64)
    pbc = np.asarray(pbc, dtype=bool)
    box = np.ascontiguousarray(cell, dtype=np.float64)
    if not pbc.any():
        box = np.zeros((3, 3))
    if len(positions) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros((0, 3), dtype=np.int64), np.zeros(0)
    wrap = np.zeros((len(positions), 3), dtype=np.int64)
    if pbc.any():  # wrap into the cell along periodic directions, then correct the shifts
        frac = positions @ np.linalg.inv(box)
        wrap[:, pbc] = np.floor(frac[:, pbc]).astype(np.int64)
        positions = positions - wrap @ box
    nl = vesin.NeighborList(cutoff=float(cutoff), full_list=True, sorted=True)
    i, j, s, d = nl.compute(points=positions, box=box, periodic=pbc.tolist(), quantities="ijSd")
    i, j = i.astype(np.int64), j.astype(np.int64)
    return i, j, s.astype(np.int64) - wrap[j] + wrap[i], d
