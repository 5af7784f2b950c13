"""All derivatives of the energy, by autograd, in one place.

* forces  F = -dE/dR                           [N, 3] (eV/Å)
* stress  sigma = (1/V) dE/d(epsilon)          [B, 3, 3] (eV/Å^3, ASE convention), periodic frames
* Hessian H = d2E/dR2                          [3N, 3N] (eV/Å^2) for one frame (vmap, loop fallback)
* Hessian-vector products and partial Hessians (rows of selected atoms).

Strain enters as a symmetric displacement gradient applied to positions and cell, so the stress is the
derivative of the same energy function the forces come from.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from muse_ff.data.graph import Graph


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
    """(positions [n, 3] -> flat gradient [3n], positions) for a single-frame graph, graph kept."""
    if graph.num_frames != 1:
        raise ValueError(f"Hessians are taken for one structure at a time, got a batch of {graph.num_frames}")
    pos = graph.positions.detach().requires_grad_(True)
    energy = model(graph, positions=pos)["energy"].sum()
    (grad,) = torch.autograd.grad(energy, pos, create_graph=True)
    return grad.reshape(-1), pos


def hessian_rows(model, graph: Graph, rows: torch.Tensor, chunk: int = 96, vectorize: bool = True) -> torch.Tensor:
    """Rows ``rows`` (indices into the 3N coordinates) of the Hessian d2E/dR2: [len(rows), 3N] (eV/Å^2).

    Uses batched vector-Jacobian products (``torch.func``-style vmap through ``is_grads_batched``) in
    chunks of ``chunk`` rows; falls back to a loop of single products where vmap is not supported.
    """
    grad, pos = _gradient_fn(model, graph)
    n3 = grad.numel()
    out = []
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
        out.append(block.reshape(len(idx), n3))
    return torch.cat(out).detach()


def hessian(model, graph: Graph, chunk: int = 96, vectorize: bool = True) -> torch.Tensor:
    """Full Hessian [3N, 3N] (eV/Å^2) of a single-frame graph."""
    n3 = 3 * graph.num_atoms
    rows = torch.arange(n3, device=graph.positions.device)
    return hessian_rows(model, graph, rows, chunk=chunk, vectorize=vectorize)


def partial_hessian(model, graph: Graph, atoms: Sequence[int]) -> torch.Tensor:
    """Rows of the Hessian for the coordinates of ``atoms``: [3k, 3N] (eV/Å^2).

    The square block among the selected atoms is ``H[:, cols]`` with ``cols`` the same coordinate indices.
    """
    idx = torch.as_tensor(list(atoms), dtype=torch.int64, device=graph.positions.device)
    rows = (3 * idx[:, None] + torch.arange(3, device=idx.device)).reshape(-1)
    return hessian_rows(model, graph, rows)


def hessian_vector_product(model, graph: Graph, vector: torch.Tensor) -> torch.Tensor:
    """H @ v for v of shape [N, 3] (or [3N]); returns the same shape (eV/Å^2 x unit of v)."""
    grad, pos = _gradient_fn(model, graph)
    v = vector.reshape(-1).to(grad.dtype)
    (hv,) = torch.autograd.grad(grad, pos, grad_outputs=v)
    return hv.reshape(vector.shape).detach()
