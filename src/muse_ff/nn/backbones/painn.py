"""PaiNN (Schütt, Unke, Gastegger, ICML 2021): polarisable atom interaction neural network.

Our own compact implementation of the message/update blocks of the paper, on the MuSE Backbone protocol.
TorchScript-compatible (``torch.jit.script``), with or without input vectors and edge weights.
"""

from typing import Final, Optional

import torch
from torch import nn

from muse_ff.nn.backbones.base import Backbone, BackboneOutput, require_positive
from muse_ff.nn.radial import BesselBasis

# inside sqrt(|v|^2 + eps). The norm is smooth at v = 0 for any eps > 0, but its curvature there is
# 1/sqrt(eps): with 1e-8 a node whose vectors vanish by symmetry (the carbon of CH4, the coarse node at the
# centre of a symmetric molecule) gets Hessian eigenvalues ~20x too large and MD that blows up.
_EPS = 1e-2


def _mlp(n_in: int, n_hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, n_hidden), nn.SiLU(), nn.Linear(n_hidden, n_out))


class PaiNNMessage(nn.Module):
    """Message block: continuous filters of the radial basis, scalar and vector messages."""

    def __init__(self, features: int, num_basis: int):
        super().__init__()
        self.features = features
        self.phi = _mlp(features, features, 3 * features)
        self.filter = nn.Linear(num_basis, 3 * features, bias=False)  # no bias: zero filter at the cutoff

    def forward(self, s: torch.Tensor, v: torch.Tensor, edge_index: torch.Tensor, rbf: torch.Tensor,
                unit: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        i, j = edge_index[0], edge_index[1]
        x = self.phi(s)[j] * self.filter(rbf)  # rbf already carries the smooth cutoff
        a_s, a_vv, a_vs = torch.split(x, self.features, dim=-1)
        ds = torch.zeros_like(s).index_add_(0, i, a_s)
        dv_edge = v[j] * a_vv.unsqueeze(1) + unit.unsqueeze(-1) * a_vs.unsqueeze(1)
        dv = torch.zeros_like(v).index_add_(0, i, dv_edge)
        return s + ds, v + dv


class PaiNNUpdate(nn.Module):
    """Update block: mixes scalar and vector channels within each node."""

    eps: Final[float]  # _EPS, as an attribute (TorchScript reads no float globals)

    def __init__(self, features: int):
        super().__init__()
        self.features = features
        self.eps = _EPS
        self.U = nn.Linear(features, features, bias=False)
        self.V = nn.Linear(features, features, bias=False)
        self.mlp = _mlp(2 * features, features, 3 * features)

    def forward(self, s: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        uv = self.U(v)
        vv = self.V(v)
        vnorm = torch.sqrt((vv**2).sum(dim=1) + self.eps)
        a = self.mlp(torch.cat([s, vnorm], dim=-1))
        a_vv, a_sv, a_ss = torch.split(a, self.features, dim=-1)
        ds = a_ss + a_sv * (uv * vv).sum(dim=1)
        return s + ds, v + a_vv.unsqueeze(1) * uv


class PaiNN(Backbone):
    """PaiNN backbone.

    Settings (``model.backbone``): ``features``, ``layers``, ``num_basis``; their types, defaults (this
    constructor's) and meanings are ``BACKBONES["painn"].settings`` (:mod:`muse_ff.nn.backbones`), tabled in
    docs/BACKBONES.md. ``cutoff`` (Å) is set per level by the MuSE model.
    """

    def __init__(self, in_features: int, cutoff: float = 5.0, features: int = 64, layers: int = 3,
                 num_basis: int = 16, vector_in_features: int = 0):
        super().__init__()
        require_positive("PaiNN", features=features, layers=layers, num_basis=num_basis)
        self.cutoff = float(cutoff)
        self.in_features = int(in_features)
        self.out_features = int(features)
        self.vector_features = int(features)
        self.features = int(features)
        self.embed = nn.Linear(in_features, features)
        self.vector_embed = nn.Linear(vector_in_features, features, bias=False) if vector_in_features else None
        self.rbf = BesselBasis(cutoff, num_basis)
        self.messages = nn.ModuleList(PaiNNMessage(features, num_basis) for _ in range(layers))
        self.updates = nn.ModuleList(PaiNNUpdate(features) for _ in range(layers))

    def forward(self, node_features: torch.Tensor, edge_index: torch.Tensor, edge_vectors: torch.Tensor,
                node_vectors: Optional[torch.Tensor] = None,
                edge_weights: Optional[torch.Tensor] = None,
                node_tensors: Optional[torch.Tensor] = None) -> BackboneOutput:
        s = self.embed(node_features)
        v = s.new_zeros(s.shape[0], 3, self.features)
        vector_embed = self.vector_embed
        if node_vectors is not None and vector_embed is not None:
            v = v + vector_embed(node_vectors)
        r = torch.linalg.vector_norm(edge_vectors, dim=-1)
        unit = edge_vectors / r.unsqueeze(-1)
        rbf = self.rbf(r)
        if edge_weights is not None:  # the filters are linear in rbf without bias: every message scales with it
            rbf = rbf * edge_weights.unsqueeze(-1)
        for message, update in zip(self.messages, self.updates):
            s, v = message(s, v, edge_index, rbf, unit)
            s, v = update(s, v)
        return BackboneOutput(scalars=s, vectors=v)
