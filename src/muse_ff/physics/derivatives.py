"""All derivatives of the energy, by autograd, in one place.

* forces  F = -dE/dR                           [N, 3] (eV/Å)
* stress  sigma = (1/V) dE/d(epsilon)          [B, 3, 3] (eV/Å^3, ASE convention), periodic frames
* Hessian H = d2E/dR2                          [3N, 3N] (eV/Å^2) for one frame (vmap, loop fallback), in
  chunks of rows sized so that its memory stays within a bound
* Hessian-vector products and partial Hessians (rows of selected atoms).

Strain enters as a symmetric displacement gradient applied to positions and cell, so the stress is the
derivative of the same energy function the forces come from.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence

import torch

from muse_ff.data.graph import Graph

log = logging.getLogger(__name__)


def _strained(graph: Graph, positions: torch.Tensor, cell: torch.Tensor, strain: torch.Tensor):
    sym = 0.5 * (strain + strain.transpose(1, 2))
    pos = positions + torch.einsum("ni,nij->nj", positions, sym[graph.batch])
    return pos, cell + torch.bmm(cell, sym)


def _volume(cell: torch.Tensor) -> torch.Tensor:
    return torch.linalg.det(cell).abs()


def energy_and_derivatives(model, graph: Graph, *, forces: bool = True, stress: bool = False,
                           create_graph: bool = False) -> dict[str, torch.Tensor]:
    """Energy per frame and, by autograd, forces and stress.

    Args:
        model: a :class:`~muse_ff.nn.model.MuSEModel` (any module returning ``{"energy": [B], ...}``).
        graph: batch with positions in the model's dtype.
        forces, stress: which derivatives to return. ``stress`` requires every frame to be periodic in
            all three directions.
        create_graph: keep the graph of the derivatives (training on forces, Hessians).
    Returns:
        the model outputs plus ``forces`` [N, 3] and ``stress`` [B, 3, 3] as requested.
    """
    positions, cell = graph.positions, graph.cell
    inputs = []
    if forces or stress:
        positions = positions.detach().requires_grad_(True)
        inputs.append(positions)
    strain = None
    if stress:
        if not bool(graph.pbc.all()):
            raise ValueError("stress needs periodic boundaries in all three directions for every frame")
        strain = torch.zeros_like(cell, requires_grad=True)
        inputs.append(strain)
        positions_in, cell_in = _strained(graph, positions, cell, strain)
    else:
        positions_in, cell_in = positions, cell
    out = model(graph, positions=positions_in, cell=cell_in)
    if not inputs:
        return out
    grads = torch.autograd.grad(out["energy"].sum(), inputs, create_graph=create_graph,
                                allow_unused=True)
    g_pos = grads[0] if grads[0] is not None else torch.zeros_like(positions)
    if forces:
        out["forces"] = -g_pos
    if stress:
        g_strain = grads[-1] if grads[-1] is not None else torch.zeros_like(cell)
        out["stress"] = g_strain / _volume(cell).unsqueeze(-1).unsqueeze(-1).to(g_strain.dtype)
    return out


def _gradient_fn(model, graph: Graph):
    """(flat gradient [3n], positions, bytes) for a single-frame graph, graph of the gradient kept.

    ``bytes`` is the memory the autograd graph of the gradient holds (every tensor saved for backward by
    the energy and by its gradient, each counted once): the measure :func:`hessian_rows` sizes its chunks by.
    """
    if graph.num_frames != 1:
        raise ValueError(f"Hessians are taken for one structure at a time, got a batch of {graph.num_frames}")
    saved: dict[tuple, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved[(t.data_ptr(), tuple(t.shape), tuple(t.stride()), t.dtype)] = t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        pos = graph.positions.detach().requires_grad_(True)
        energy = model(graph, positions=pos)["energy"].sum()
        (grad,) = torch.autograd.grad(energy, pos, create_graph=True)
    return grad.reshape(-1), pos, sum(saved.values())


#: default bound (bytes) on the memory a Hessian takes: 4 GiB
DEFAULT_MAX_MEMORY = 4 * 1024**3


def hessian_chunk(n_rows: int, row_bytes: int, max_memory: float | None = None, fixed_bytes: int = 0) -> int:
    """Rows per vectorised product so that ``fixed_bytes + chunk * row_bytes`` stays within ``max_memory``.

    Args:
        n_rows: rows to compute (the chunk never exceeds it).
        row_bytes: memory one row of a vectorised product takes (see :func:`hessian_memory`).
        max_memory: the bound in bytes (default :data:`DEFAULT_MAX_MEMORY`).
        fixed_bytes: memory held however the rows are chunked (the gradient's graph, the result).
    Returns:
        the chunk, at least 1 (one row at a time is the least a Hessian can take, even above the bound).
    """
    max_memory = DEFAULT_MAX_MEMORY if max_memory is None else max_memory
    if not max_memory > 0:
        raise ValueError(f"the memory bound of a Hessian must be positive, got {max_memory} bytes")
    free = max_memory - fixed_bytes
    chunk = int(free // max(int(row_bytes), 1)) if free > 0 else 1
    return max(1, min(chunk, int(n_rows)))


#: the memory a Hessian takes, in units of the gradient graph's saved tensors G (measured by
#: :func:`_gradient_fn`): held throughout, about ``GRAPH_FACTOR * G`` (the graph itself and the transients
#: of the forward pass and the first backward), and ``ROW_FACTOR * G`` more for each row of a vectorised
#: product (every product through the graph gets a batch dimension). Fitted, on the safe side, to the peak
#: resident memory of PaiNN + two coarse levels, 16 and 32 features, 150-900 water atoms, chunks 1-96
#: (measured: about 2.5 G + 0.55-0.85 G per row).
GRAPH_FACTOR = 3.0
ROW_FACTOR = 0.8


def hessian_memory(n_rows: int, n3: int, itemsize: int, graph_bytes: int, chunk: int) -> float:
    """Estimated peak memory (bytes) of ``n_rows`` Hessian rows of ``n3`` coordinates in chunks of
    ``chunk``, for a gradient graph of ``graph_bytes``: held throughout the graph (see
    :data:`GRAPH_FACTOR`) and the result; per row of a chunk :data:`ROW_FACTOR` graphs, its unit vector
    and its row."""
    fixed = GRAPH_FACTOR * graph_bytes + n_rows * n3 * itemsize
    return fixed + chunk * (ROW_FACTOR * graph_bytes + 2 * n3 * itemsize)


def _auto_chunk(n_rows: int, n3: int, itemsize: int, graph_bytes: int, max_memory: float | None) -> int:
    """The chunk :func:`hessian_rows` takes: the largest with :func:`hessian_memory` within the bound."""
    fixed = hessian_memory(n_rows, n3, itemsize, graph_bytes, 0)
    per_row = hessian_memory(n_rows, n3, itemsize, graph_bytes, 1) - fixed
    return hessian_chunk(n_rows, per_row, max_memory, fixed)


def hessian_chunk_for(model, graph: Graph, n_rows: int | None = None, max_memory: float | None = None) -> int:
    """The chunk :func:`hessian_rows` chooses for ``n_rows`` rows (default all 3N) of this graph's
    Hessian within ``max_memory`` bytes (builds the gradient's graph once to measure it)."""
    grad, _, graph_bytes = _gradient_fn(model, graph)
    n3 = grad.numel()
    return _auto_chunk(n3 if n_rows is None else n_rows, n3, grad.element_size(), graph_bytes, max_memory)


def hessian_rows(model, graph: Graph, rows: torch.Tensor, chunk: int | None = None, vectorize: bool = True,
                 max_memory: float | None = None) -> torch.Tensor:
    """Rows ``rows`` (indices into the 3N coordinates) of the Hessian d2E/dR2: [len(rows), 3N] (eV/Å^2).

    Uses batched vector-Jacobian products (``torch.func``-style vmap through ``is_grads_batched``) in
    chunks of ``chunk`` rows; falls back to a loop of single products where vmap is not supported.

    A vectorised product of ``k`` rows takes memory in proportion to ``k`` and to the gradient's autograd
    graph (measured while it is built: the tensors it saves). Without ``chunk``, the chunk is the largest
    whose estimated peak (:func:`hessian_memory`: the graph, the chunk's products and the result) fits in
    ``max_memory`` bytes (default :data:`DEFAULT_MAX_MEMORY`), beyond the memory the model and the
    structure already hold; where even one row does not fit, rows come one at a time with a
    ``RuntimeWarning``. The rows do not depend on the chunk (up to rounding in the last bit).
    """
    if chunk is not None and (isinstance(chunk, bool) or int(chunk) != chunk or chunk < 1):
        raise ValueError(f"the Hessian chunk must be a whole number of rows >= 1, got {chunk!r}")
    grad, pos, graph_bytes = _gradient_fn(model, graph)
    n3 = grad.numel()
    result = torch.empty(len(rows), n3, dtype=grad.dtype, device=grad.device)
    if chunk is None:
        chunk = _auto_chunk(len(rows), n3, grad.element_size(), graph_bytes, max_memory)
        least = hessian_memory(len(rows), n3, grad.element_size(), graph_bytes, 1)
        bound = DEFAULT_MAX_MEMORY if max_memory is None else max_memory
        if least > bound:
            warnings.warn(f"this Hessian ({len(rows)} rows of {n3}) takes about {least / 1e9:.2g} GB even one "
                          f"row at a time, above the memory bound of {bound / 1e9:.2g} GB; computing it row by "
                          "row", RuntimeWarning, stacklevel=2)
    chunk = int(chunk)
    log.debug("Hessian of %d rows x %d in chunks of %d rows (gradient graph %.3g GB)", len(rows), n3, chunk,
              graph_bytes / 1e9)
    for start in range(0, len(rows), chunk):
        idx = rows[start:start + chunk]
        basis = torch.zeros(len(idx), n3, dtype=grad.dtype, device=grad.device)
        basis[torch.arange(len(idx)), idx] = 1.0
        block = None
        if vectorize:
            try:
                (block,) = torch.autograd.grad(grad, pos, grad_outputs=basis, retain_graph=True,
                                               is_grads_batched=True)
            except RuntimeError:
                vectorize = False
        if block is None:
            block = torch.stack([torch.autograd.grad(grad, pos, grad_outputs=b, retain_graph=True)[0]
                                 for b in basis])
        result[start:start + len(idx)] = block.reshape(len(idx), n3).detach()
        del block, basis
    return result


def hessian(model, graph: Graph, chunk: int | None = None, vectorize: bool = True,
            max_memory: float | None = None) -> torch.Tensor:
    """Full Hessian [3N, 3N] (eV/Å^2) of a single-frame graph, within ``max_memory`` bytes unless a
    ``chunk`` is given (see :func:`hessian_rows`)."""
    n3 = 3 * graph.num_atoms
    rows = torch.arange(n3, device=graph.positions.device)
    return hessian_rows(model, graph, rows, chunk=chunk, vectorize=vectorize, max_memory=max_memory)


def partial_hessian(model, graph: Graph, atoms: Sequence[int], chunk: int | None = None,
                    max_memory: float | None = None) -> torch.Tensor:
    """Rows of the Hessian for the coordinates of ``atoms``: [3k, 3N] (eV/Å^2).

    The square block among the selected atoms is ``H[:, cols]`` with ``cols`` the same coordinate indices.
    """
    idx = torch.as_tensor(list(atoms), dtype=torch.int64, device=graph.positions.device)
    rows = (3 * idx[:, None] + torch.arange(3, device=idx.device)).reshape(-1)
    return hessian_rows(model, graph, rows, chunk=chunk, max_memory=max_memory)


def hessian_vector_product(model, graph: Graph, vector: torch.Tensor) -> torch.Tensor:
    """H @ v for v of shape [N, 3] (or [3N]); returns the same shape (eV/Å^2 x unit of v)."""
    grad, pos, _ = _gradient_fn(model, graph)
    v = vector.reshape(-1).to(grad.dtype)
    (hv,) = torch.autograd.grad(grad, pos, grad_outputs=v)
    return hv.reshape(vector.shape).detach()
