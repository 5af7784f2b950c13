"""Graphene substrates: a hydrogen-terminated flake and a periodic sheet, both in the z = 0 plane.

Geometry: C-C 1.42 Å, C-H 1.09 Å, ideal honeycomb (relax with the teacher when needed). The flake is
every carbon of the honeycomb within ``radius`` of a ring centre (the origin), with carbons left with
fewer than two carbon neighbours pruned, and one hydrogen on every two-coordinated edge carbon.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms

CC = 1.42
CH = 1.09


def _lattice(cc: float) -> tuple[np.ndarray, np.ndarray]:
    """Lattice vectors [2, 3] and fractional carbon positions [2, 3]; the origin is a ring centre."""
    a = cc * np.sqrt(3)
    vectors = np.array([[a, 0.0, 0.0], [a / 2, a * np.sqrt(3) / 2, 0.0]])
    return vectors, np.array([[1 / 3, 1 / 3, 0.0], [2 / 3, 2 / 3, 0.0]])


def honeycomb(n: int, cc: float = CC) -> np.ndarray:
    """Carbon positions ``[2(2n+1)^2, 3]`` of a patch of graphene with a ring centre at the origin."""
    vectors, frac = _lattice(cc)
    cells = np.array([[i, j] for i in range(-n, n + 1) for j in range(-n, n + 1)], dtype=float)
    return np.array([(c + f[:2]) @ vectors for c in cells for f in frac])


def _neighbours(pos: np.ndarray, cutoff: float) -> list[np.ndarray]:
    d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    return [np.flatnonzero((row > 0.1) & (row < cutoff)) for row in d]


def flake(radius: float) -> Atoms:
    """H-terminated graphene flake of carbons within ``radius`` Å of a ring centre, centred at the origin."""
    carbons = honeycomb(int(radius / (CC * np.sqrt(3))) + 3)
    carbons = carbons[np.linalg.norm(carbons, axis=1) <= radius]
    while True:  # prune dangling carbons (fewer than two carbon neighbours) until none are left
        nbrs = _neighbours(carbons, CC + 0.1)
        keep = np.array([len(nb) >= 2 for nb in nbrs])
        if keep.all():
            break
        carbons = carbons[keep]
    hydrogens = []
    for k, nb in enumerate(nbrs):
        if len(nb) == 2:
            away = carbons[k] - carbons[nb].mean(axis=0)
            hydrogens.append(carbons[k] + CH * away / np.linalg.norm(away))
    atoms = Atoms(f"C{len(carbons)}H{len(hydrogens)}", positions=np.vstack([carbons, hydrogens]))
    atoms.info["substrate"] = "flake"
    return atoms


def periodic_sheet(repeat: int, vacuum: float = 30.0) -> Atoms:
    """``repeat`` x ``repeat`` hexagonal supercell of graphene at z = 0, cell height ``vacuum`` Å, fully periodic.

    A ring centre is at the origin. tblite treats the cell as 3D periodic (Gamma point only).
    """
    vectors, frac = _lattice(CC)
    cell = np.vstack([vectors, [0.0, 0.0, vacuum]])
    sheet = Atoms("C2", scaled_positions=frac, cell=cell, pbc=True).repeat((repeat, repeat, 1))
    sheet.info["substrate"] = "periodic"
    return sheet
