"""Point-group operations of a molecule, found numerically, for symmetry tests of Hessians and energies.

:func:`symmetry_operations` returns every proper rotation (about the centroid) that maps the molecule onto
itself, as ``(rotation [3, 3], permutation [n])`` with ``R @ (r_i - c) = r_{perm[i]} - c``.
"""

from __future__ import annotations

from itertools import permutations

import numpy as np


def _kabsch(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Proper rotation R minimising |R a_k - b_k| over rows a, b [k, 3]."""
    u, _, vt = np.linalg.svd(b.T @ a)
    d = np.sign(np.linalg.det(u @ vt))
    return u @ np.diag([1.0, 1.0, d]) @ vt


def symmetry_operations(atoms, tol: float = 1e-4) -> list[tuple[np.ndarray, np.ndarray]]:
    """All proper rotations of ``atoms`` (a free molecule) onto itself, with the atom permutation each induces."""
    pos = atoms.positions - atoms.positions.mean(axis=0)
    z = atoms.numbers
    n = len(atoms)
    dist = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    far = int(np.argmax(np.linalg.norm(pos, axis=1)))  # an atom off the centre

    ops, seen = [], set()
    ref = np.argsort(dist[far])[1:4]  # the three atoms nearest ``far``: a frame to map
    for k in np.flatnonzero(z == z[far]):
        if abs(np.linalg.norm(pos[k]) - np.linalg.norm(pos[far])) > tol:
            continue
        for cand in permutations(np.argsort(dist[k])[1:min(n, 6)], len(ref)):
            a = np.vstack([pos[far], pos[ref]])
            b = np.vstack([pos[k], pos[list(cand)]])
            rot = _kabsch(a, b)
            moved = pos @ rot.T
            d = np.linalg.norm(moved[:, None] - pos[None], axis=-1)
            perm = np.argmin(d, axis=1)
            if d[np.arange(n), perm].max() > tol or len(set(perm.tolist())) != n or (z[perm] != z).any():
                continue
            key = perm.tobytes()
            if key not in seen:
                seen.add(key)
                ops.append((_kabsch(pos, pos[perm]), perm))  # refit on every atom
    return ops


def symmetrised_hessian(hessian: np.ndarray, ops) -> np.ndarray:
    """Average of ``P_g H P_g^T`` over the operations: the part of H with the molecule's full symmetry."""
    n = hessian.shape[0] // 3
    h4 = hessian.reshape(n, 3, n, 3)
    out = np.zeros_like(h4)
    for rot, perm in ops:
        moved = np.einsum("ba,iajc,dc->ibjd", rot, h4, rot)  # R H_ij R^T for every block
        rows = np.zeros_like(h4)
        rows[perm] = moved
        out[:, :, perm] += rows
    return (out / len(ops)).reshape(3 * n, 3 * n)


def symmetrise(atoms, ops):
    """A copy of ``atoms`` whose positions are averaged over ``ops``: exactly symmetric to rounding."""
    c = atoms.positions.mean(axis=0)
    pos = atoms.positions - c
    acc = np.zeros_like(pos)
    for rot, perm in ops:
        acc += pos[perm] @ rot  # R^T r_{perm[i]}
    out = atoms.copy()
    out.positions = acc / len(ops) + c
    return out


def symmetric_molecule(atoms, tol: float = 1e-2):
    """``(atoms symmetrised, operations)``: the point group found with a loose ``tol``, then enforced."""
    ops = symmetry_operations(atoms, tol)
    sym = atoms
    for _ in range(5):
        sym = symmetrise(sym, ops)
        ops = [(_kabsch(sym.positions - sym.positions.mean(0), (sym.positions - sym.positions.mean(0))[p]), p)
               for _, p in ops]
    return sym, symmetry_operations(sym, 1e-8)
