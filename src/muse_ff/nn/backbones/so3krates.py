"""SO3krates (Frank, Unke, Müller, Chmiela, Nat Commun 15, 6539 (2024)): a Euclidean transformer.

Our own PyTorch implementation on the MuSE Backbone protocol (the reference is the JAX code in
github.com/thorben-frank/mlff, ``so3krates_layer_sparse.py``). Each node carries

* invariant features x_i  [n, F], and
* Euclidean variables chi_i  [n, M]: one spherical-harmonic coordinate vector per node, degrees l in
  ``degrees`` (M = sum(2l + 1)), initialised to zero (atoms) or, for l = 1, from pooled input vectors.

A layer is Euclidean self-attention followed by an exchange (interaction) block. Both use only the per-degree
invariant contraction  c_l(chi) = sum_m chi_lm^2  (a partial trace of chi (x) chi, instead of Clebsch-Gordan
tensor products). With edge (i receiver, j sender), r_ij = r_j - r_i, s_l = c_l(chi_j - chi_i) and the smooth
cutoff f(r):

    w_ij     = MLP_r(rbf(r_ij)) + MLP_s(s)                       filters from distance and Euclidean variables
    a_ij^h   = f(r_ij) <q_i^h, w_ij^h, k_j^h> / sqrt(d)            one weight per head h (F / heads features each)
    b_ij^l   = f(r_ij) <q_i^l, w'_ij^l, k_j^l> / sqrt(d')          one weight per degree l (F / len(degrees) each)
    x_i     += sum_j a_ij^h  V^h x_j^h                              per-head value
    chi_il  += sum_j b_ij^l  Y_l(r_ij / |r_ij|)                      spherical harmonics of the edge direction

then x_i += MLP(x_i) (optional), the exchange  (dx, g) = Linear([x_i, c_1(chi_i), ..., c_L(chi_i)]),
x_i += dx, chi_il += g_l chi_il, and again x_i += MLP(x_i) (optional). Attention is not soft-maxed (a sum over
neighbours, as in the reference), which keeps energies extensive and smooth; every edge term carries f(r),
so it vanishes with three derivatives at the cutoff (Hessians stay continuous).

TorchScript-compatible (``torch.jit.script``), with or without input vectors and edge weights; the edge
harmonics come from e3nn's scriptable ``SphericalHarmonics`` module
(:func:`~muse_ff.nn.sph.spherical_harmonics_module`).
"""

import math
from collections.abc import Sequence
from typing import Final, Optional

import torch
from torch import nn

from muse_ff.nn.backbones.base import Backbone, BackboneOutput, require_positive
from muse_ff.nn.radial import BesselBasis, smooth_cutoff
from muse_ff.nn.sph import (
    cartesian_to_l1,
    check_degrees,
    degree_index,
    l1_slice,
    l1_to_cartesian,
    spherical_harmonics_module,
)


def _mlp(n_in: int, n_hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, n_hidden), nn.SiLU(), nn.Linear(n_hidden, n_out))


class _HeadLinear(nn.Module):
    """Block-diagonal linear map: each of ``heads`` chunks of d features gets its own d x d matrix."""

    def __init__(self, heads: int, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(heads, dim, dim) / math.sqrt(dim))  # LeCun normal per head

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [n, heads, d] -> [n, heads, d]
        return torch.einsum("hoi,nhi->nho", self.weight, x)


class _Degrees(nn.Module):
    """Per-degree bookkeeping of the M spherical-harmonic coordinates (no parameters)."""

    def __init__(self, degrees: Sequence[int]):
        super().__init__()
        self.degrees = list(degrees)
        onehot = nn.functional.one_hot(degree_index(self.degrees), len(self.degrees))
        self.register_buffer("onehot", onehot.to(torch.get_default_dtype()), persistent=False)  # [M, L]

    def contract(self, chi: torch.Tensor) -> torch.Tensor:
        """[..., M] -> [..., L]: sum_m chi_lm^2 per degree (rotation invariant, polynomial, so smooth)."""
        return (chi * chi) @ self.onehot

    def repeat(self, per_degree: torch.Tensor) -> torch.Tensor:
        """[..., L] -> [..., M]: each degree's value repeated over its 2l + 1 orders."""
        return per_degree @ self.onehot.T


class EuclideanAttention(nn.Module):
    """Self-attention updating invariant features (``heads`` heads) and Euclidean variables (a head per degree)."""

    def __init__(self, features: int, heads: int, degrees: _Degrees, num_basis: int):
        super().__init__()
        n_deg = len(degrees.degrees)
        self.deg = degrees
        self.heads, self.n_deg = heads, n_deg
        self.d1, self.d2 = features // heads, features // n_deg
        self.radial1 = _mlp(num_basis, features, features)
        self.radial2 = _mlp(num_basis, features, features)
        self.sph1 = _mlp(n_deg, max(features // 4, 1), features)
        self.sph2 = _mlp(n_deg, max(features // 4, 1), features)
        self.q1, self.k1, self.v1 = (_HeadLinear(heads, self.d1) for _ in range(3))
        self.q2, self.k2 = (_HeadLinear(n_deg, self.d2) for _ in range(2))

    def forward(self, x: torch.Tensor, chi: torch.Tensor, edge_index: torch.Tensor, rbf: torch.Tensor,
                ylm: torch.Tensor, cut: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        i, j = edge_index[0], edge_index[1]
        n, e = x.shape[0], rbf.shape[0]
        s = self.deg.contract(chi[j] - chi[i])  # [e, L]
        w1 = (self.radial1(rbf) + self.sph1(s)).view(e, self.heads, self.d1)
        w2 = (self.radial2(rbf) + self.sph2(s)).view(e, self.n_deg, self.d2)
        xh1, xh2 = x.view(n, self.heads, self.d1), x.view(n, self.n_deg, self.d2)
        q1, k1 = nn.functional.silu(self.q1(xh1)), nn.functional.silu(self.k1(xh1))
        q2, k2 = nn.functional.silu(self.q2(xh2)), nn.functional.silu(self.k2(xh2))
        a = (q1[i] * w1 * k1[j]).sum(-1) * (cut.unsqueeze(-1) / math.sqrt(self.d1))  # [e, heads]
        b = (q2[i] * w2 * k2[j]).sum(-1) * (cut.unsqueeze(-1) / math.sqrt(self.d2))  # [e, L]
        v = self.v1(xh1)[j] * a.unsqueeze(-1)  # [e, heads, d1]
        dx = x.new_zeros(n, self.heads, self.d1).index_add_(0, i, v).view(n, -1)
        dchi = chi.new_zeros(chi.shape).index_add_(0, i, self.deg.repeat(b) * ylm)
        return dx, dchi


class ExchangeBlock(nn.Module):
    """Mixes invariant features and Euclidean variables within a node through per-degree contractions."""

    def __init__(self, features: int, degrees: _Degrees):
        super().__init__()
        self.deg = degrees
        self.features = features
        self.linear = nn.Linear(features + len(degrees.degrees), features + len(degrees.degrees))

    def forward(self, x: torch.Tensor, chi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.linear(torch.cat([x, self.deg.contract(chi)], dim=-1))
        dx, g = y.split([self.features, len(self.deg.degrees)], dim=-1)
        return dx, self.deg.repeat(g) * chi


class _ResidualMLP(nn.Module):
    def __init__(self, features: int):
        super().__init__()
        self.net = nn.Sequential(nn.SiLU(), nn.Linear(features, features), nn.SiLU(), nn.Linear(features, features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


class SO3kratesLayer(nn.Module):
    """Attention -> (residual MLP) -> exchange -> (residual MLP), each with a residual connection."""

    def __init__(self, features: int, heads: int, degrees: _Degrees, num_basis: int, residual_mlp: bool):
        super().__init__()
        self.attention = EuclideanAttention(features, heads, degrees, num_basis)
        self.exchange = ExchangeBlock(features, degrees)
        self.mlp1 = _ResidualMLP(features) if residual_mlp else nn.Identity()
        self.mlp2 = _ResidualMLP(features) if residual_mlp else nn.Identity()

    def forward(self, x: torch.Tensor, chi: torch.Tensor, edge_index: torch.Tensor, rbf: torch.Tensor,
                ylm: torch.Tensor, cut: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dx, dchi = self.attention(x, chi, edge_index, rbf, ylm, cut)
        x = self.mlp1(x + dx)
        chi = chi + dchi
        dx, dchi = self.exchange(x, chi)
        return self.mlp2(x + dx), chi + dchi


class SO3krates(Backbone):
    """SO3krates backbone.

    Settings (``model.backbone``), defaults as published (Frank et al. 2024: F = 132, 4 heads, degrees 1-3,
    3 layers, 5 Å cutoff): ``features``, ``heads``, ``degrees``, ``layers``, ``num_basis``, ``residual_mlp``;
    their types, defaults (this constructor's), allowed values and meanings are
    ``BACKBONES["so3krates"].settings`` (:mod:`muse_ff.nn.backbones`), tabled in docs/BACKBONES.md.
    ``cutoff`` (Å) is set per level by the MuSE model.

    Output: ``scalars`` = x [n, F]; ``vectors`` = the l = 1 Euclidean variables as one Cartesian vector
    [n, 3, 1] (``vector_features`` = 1; 0 when 1 is not among ``degrees``). Pooled input vectors
    [n, 3, vector_in_features] are mixed to one channel and become the initial l = 1 Euclidean variables.
    """

    l1_start: Final[int]  # where the l = 1 block starts among the M coordinates, -1 without one

    def __init__(self, in_features: int, cutoff: float = 5.0, features: int = 132, heads: int = 4,
                 degrees: "Sequence[int]" = (1, 2, 3), layers: int = 3, num_basis: int = 16,
                 residual_mlp: bool = True, vector_in_features: int = 0):
        super().__init__()
        require_positive("SO3krates", features=features, heads=heads, layers=layers, num_basis=num_basis)
        degs = check_degrees(degrees)
        if features % heads or features % len(degs):
            raise ValueError(f"SO3krates: features ({features}) must be divisible by heads ({heads}) and by the "
                             f"number of degrees ({len(degs)})")
        self.l1 = l1_slice(degs)
        self.l1_start = -1 if self.l1 is None else self.l1.start
        if vector_in_features and self.l1 is None:
            raise ValueError("SO3krates: input vectors need degree 1 among degrees, got " + str(degs))
        self.cutoff = float(cutoff)
        self.in_features = int(in_features)
        self.out_features = self.features = int(features)
        self.vector_features = 1 if self.l1 is not None else 0
        self.degrees = degs
        self.num_sph = sum(2 * deg + 1 for deg in degs)
        deg = _Degrees(degs)
        self.embed = nn.Linear(in_features, features)
        self.vector_embed = nn.Linear(vector_in_features, 1, bias=False) if vector_in_features else None
        self.rbf = BesselBasis(cutoff, num_basis)
        self.sph = spherical_harmonics_module(degs)  # no parameters or buffers: the state_dict is unchanged
        self.layers = nn.ModuleList(SO3kratesLayer(features, heads, deg, num_basis, residual_mlp)
                                    for _ in range(layers))

    def encode(self, node_features: torch.Tensor, edge_index: torch.Tensor, edge_vectors: torch.Tensor,
               node_vectors: Optional[torch.Tensor] = None,
               edge_weights: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(x [n, F], chi [n, M]): invariant features and Euclidean variables after the last layer."""
        x = self.embed(node_features)
        chi = x.new_zeros(x.shape[0], self.num_sph)
        vector_embed = self.vector_embed
        if node_vectors is not None and vector_embed is not None:  # (vector_embed implies an l = 1 block)
            l1 = cartesian_to_l1(vector_embed(node_vectors)).squeeze(-1)  # [n, 3]
            start = self.l1_start
            chi = torch.cat([chi[:, :start], l1, chi[:, start + 3:]], dim=1)
        r = torch.linalg.vector_norm(edge_vectors, dim=-1)
        ylm = self.sph(edge_vectors / r.unsqueeze(-1))
        rbf, cut = self.rbf(r), smooth_cutoff(r, self.cutoff)
        if edge_weights is not None:  # the envelope multiplies every attention weight
            cut = cut * edge_weights
        for layer in self.layers:
            x, chi = layer(x, chi, edge_index, rbf, ylm, cut)
        return x, chi

    def forward(self, node_features: torch.Tensor, edge_index: torch.Tensor, edge_vectors: torch.Tensor,
                node_vectors: Optional[torch.Tensor] = None,
                edge_weights: Optional[torch.Tensor] = None,
                node_tensors: Optional[torch.Tensor] = None) -> BackboneOutput:
        x, chi = self.encode(node_features, edge_index, edge_vectors, node_vectors, edge_weights)
        vectors: Optional[torch.Tensor] = None
        if self.l1_start >= 0:
            start = self.l1_start
            vectors = l1_to_cartesian(chi[:, start:start + 3].unsqueeze(-1))
        return BackboneOutput(scalars=x, vectors=vectors)
