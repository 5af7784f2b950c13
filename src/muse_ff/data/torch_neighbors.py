"""Radius graphs in torch: the coarse levels' neighbour lists, computed on the device of the positions.

One frame at a time (:func:`radius_graph`): every pair ``(i, j, S)`` with ``min_distance < |x_j - x_i + S @ cell|
< cutoff`` (``S`` integer shifts, zero along non-periodic directions), both directions. Positions need not be
wrapped into the cell (coarse positions are unwrapped through their seed groups): they are wrapped here and
the shifts converted back, so ``x_j - x_i + S @ cell`` is always the vector of the unwrapped positions.

* Small graphs (``n^2 x images`` up to :data:`BRUTE_FORCE_PAIRS`) take every pair in chunks, pure torch.
* Larger ones go to vesin-torch's cell list in a closed box (the periodic lattice vectors plus, along each
  non-periodic direction, a vector orthogonal to them longer than the points' extent + 2 cutoffs, so no
  image is within the cutoff there). vesin caps its grid at 1e5 cells and dies of an integer division by zero
  (SIGFPE) when a very elongated box truncates a direction to no cell (measured: three points 1e9 Å apart);
  :func:`_vesin_grid_ok` repeats vesin's grid computation and such boxes take the chunked brute force.

Everything is TorchScript-compatible (the exported model runs it, :mod:`muse_ff.export`).
"""

import math
from typing import List, Tuple

import torch
from torch import Tensor
from vesin_torch import NeighborList

#: at most this many candidate (i, j, image) triples before the cell list is used instead of all pairs
BRUTE_FORCE_PAIRS = 1 << 19
#: candidate triples per chunk of the brute-force search (memory: 4 x 8 bytes each)
CHUNK_PAIRS = 1 << 21
_VESIN_MAX_CELLS = 1e5  # vesin's MAX_NUMBER_OF_CELLS (vesin/src/cpu_cell_list.cpp)


def complete_basis(cell: Tensor, pbc: Tensor) -> Tensor:
    """[3, 3] rows: the periodic lattice vectors of ``cell``; each non-periodic row replaced by a unit vector
    orthogonal to the periodic ones (and to each other)."""
    periodic = cell[pbc]
    k = int(periodic.shape[0])
    if k == 3:
        return cell.clone()
    if k == 0:
        q = torch.eye(3, dtype=cell.dtype, device=cell.device)
    else:
        q = torch.linalg.qr(periodic.transpose(0, 1), mode="complete")[0]
    rows = []
    free = k
    for d in range(3):
        if bool(pbc[d]):
            rows.append(cell[d])
        else:
            rows.append(q[:, free])
            free += 1
    return torch.stack(rows)


def _vesin_grid_ok(box: Tensor, cutoff: float, max_cells: float = _VESIN_MAX_CELLS) -> bool:
    """Whether vesin's capped cell grid for this periodic ``box`` keeps at least one cell per direction."""
    volume = float(torch.linalg.det(box).abs())
    n: List[float] = []
    for d in range(3):
        face = float(torch.linalg.vector_norm(torch.linalg.cross(box[(d + 1) % 3], box[(d + 2) % 3])))
        n.append(max(float(int(volume / face / cutoff)), 1.0))
    if n[0] * n[1] * n[2] <= max_cells:
        return True
    r_xy, r_yz = n[0] / n[1], n[1] / n[2]
    n2 = (max_cells / (r_xy * r_yz * r_yz)) ** (1.0 / 3.0)
    n1 = r_yz * float(int(n2))
    n0 = r_xy * float(int(n1))
    margin = 1.0 + 1e-6
    return n2 >= margin and n1 >= margin and n0 >= margin


def _brute_force(x: Tensor, cell: Tensor, images: Tensor, cutoff: float, min_distance: float,
                 chunk_pairs: int = CHUNK_PAIRS) -> Tuple[Tensor, Tensor]:
    """All (i, j, image) with min_distance < |x_j - x_i + S @ cell| < cutoff, in chunks of receivers."""
    n = int(x.shape[0])
    offsets = images.to(x.dtype) @ cell  # [s, 3]
    s = int(images.shape[0])
    chunk = max(1, chunk_pairs // max(1, n * s))
    ii: List[Tensor] = []
    jj: List[Tensor] = []
    ss: List[Tensor] = []
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        d = x[None, None, :, :] + offsets[None, :, None, :] - x[lo:hi, None, None, :]  # [c, s, n, 3]
        r = torch.linalg.vector_norm(d, dim=-1)
        hit = torch.nonzero((r < cutoff) & (r > min_distance))  # [h, 3]: (receiver, image, sender)
        ii.append(hit[:, 0] + lo)
        jj.append(hit[:, 2])
        ss.append(hit[:, 1])
    i = torch.cat(ii) if ii else torch.zeros(0, dtype=torch.int64, device=x.device)
    j = torch.cat(jj) if jj else torch.zeros(0, dtype=torch.int64, device=x.device)
    k = torch.cat(ss) if ss else torch.zeros(0, dtype=torch.int64, device=x.device)
    return torch.stack([i, j]), images[k]


def _cell_list(x: Tensor, box: Tensor, cutoff: float) -> Tuple[Tensor, Tensor]:
    nl = NeighborList(cutoff=cutoff, full_list=True)
    out = nl.compute(x, box, True, "ijS", True)
    return torch.stack([out[0].to(torch.int64), out[1].to(torch.int64)]), out[2].to(torch.int64)


def radius_graph(positions: Tensor, cell: Tensor, pbc: Tensor, cutoff: float, min_distance: float = 0.0,
                 brute_force_pairs: int = BRUTE_FORCE_PAIRS) -> Tuple[Tensor, Tensor]:
    """Full radius graph of one frame (see the module docstring).

    Args:
        positions: [n, 3] points (Å); detached here (a neighbour list is not differentiated).
        cell: [3, 3] lattice vectors as rows; ignored along non-periodic directions.
        pbc: [3] bool.
        cutoff: radius (Å); pairs at or beyond it are left out.
        min_distance: pairs at or closer than this are left out (self pairs always are).
        brute_force_pairs: above this many candidate (i, j, image) triples the cell list is used.

    Returns:
        ``(edge_index [2, e] int64 (receiver i, sender j), shifts [e, 3] int64)``.
    """
    x = positions.detach()
    n = int(x.shape[0])
    dev = x.device
    if n == 0:
        return torch.zeros(2, 0, dtype=torch.int64, device=dev), torch.zeros(0, 3, dtype=torch.int64, device=dev)
    if not bool(torch.isfinite(x).all()):
        raise ValueError("radius_graph: positions are not finite (NaN or inf)")
    cel = cell.detach().to(x.dtype)
    basis = complete_basis(cel, pbc)
    inv = torch.linalg.inv(basis)  # column d: the reciprocal vector of lattice direction d
    # wrap into the cell along periodic directions; S = S_wrapped + k_i - k_j converts the shifts back
    frac = x @ inv
    wrap = torch.where(pbc[None, :], torch.floor(frac), torch.zeros_like(frac))
    xw = x - wrap @ basis
    wrap_i = wrap.to(torch.int64)
    reach = [0, 0, 0]
    for d in range(3):
        if bool(pbc[d]):
            reach[d] = int(math.floor(cutoff * float(torch.linalg.vector_norm(inv[:, d])))) + 1
    count = (2 * reach[0] + 1) * (2 * reach[1] + 1) * (2 * reach[2] + 1)
    edge_index = torch.zeros(2, 0, dtype=torch.int64, device=dev)
    shifts = torch.zeros(0, 3, dtype=torch.int64, device=dev)
    done = False
    if n * n * count > brute_force_pairs:
        box = basis.clone()
        for d in range(3):
            if not bool(pbc[d]):
                proj = xw @ basis[d]
                box[d] = basis[d] * (float(proj.max() - proj.min()) + 2.0 * cutoff + 1.0)
        if _vesin_grid_ok(box, cutoff):
            edge_index, shifts = _cell_list(xw, box, cutoff)
            i, j = edge_index[0], edge_index[1]
            r = torch.linalg.vector_norm(xw[j] - xw[i] + shifts.to(x.dtype) @ box, dim=-1)
            keep = r > min_distance
            edge_index, shifts = edge_index[:, keep], shifts[keep]
            done = True
    if not done:
        axes = [torch.arange(-reach[d], reach[d] + 1, device=dev) for d in range(3)]
        grid = torch.meshgrid(axes[0], axes[1], axes[2], indexing="ij")
        images = torch.stack([grid[0].reshape(-1), grid[1].reshape(-1), grid[2].reshape(-1)], dim=1)
        edge_index, shifts = _brute_force(xw, basis, images, cutoff, min_distance)
    shifts = shifts + wrap_i[edge_index[0]] - wrap_i[edge_index[1]]
    return edge_index, shifts
