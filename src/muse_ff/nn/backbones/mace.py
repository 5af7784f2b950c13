"""MACE (Batatia et al., NeurIPS 2022) as a MuSE backbone, built from the real ``mace-torch`` blocks.

This is a thin adapter: the radial embedding (Bessel basis x polynomial cutoff), the spherical harmonics,
the interaction blocks and the equivariant (symmetric-contraction) product blocks are mace-torch's own
classes (``mace.modules.blocks``); nothing of MACE is re-implemented here. What the adapter adds:

* **node attributes are the MuSE node features** ``[n, in_features]``: the species embedding at level 0,
  the pooled features (plus the coarse mass) at coarse levels. MACE's node attributes enter every block
  linearly (the node embedding, the residual ``skip_tp``, the per-element weights of the symmetric
  contraction), so continuous vectors are valid: a one-hot vector gives back MACE's per-element weights,
  a continuous one a linear mix of them. The symmetric contraction gets them scaled by 1/sqrt(in_features)
  (its per-element weights assume a unit-norm one-hot selector; e3nn layers already normalise by fan-in);
* **edge conventions**: MuSE's ``edge_index`` is (receiver i, sender j) and ``edge_vectors`` = r_j - r_i;
  mace-torch's is (sender, receiver) with vectors r_receiver - r_sender, so both are flipped;
* **outputs**: ``scalars`` are the invariant (0e) channels of every interaction, concatenated (what MACE's
  per-layer readouts see), ``[n, num_channels * num_interactions]``; ``vectors`` are the 1o channels of the
  last interaction as Cartesian vectors ``[n, 3, num_channels]``. The l = 1 basis is taken from e3nn itself
  (``Q = Y_1(I) / sqrt(3)``, Y_1 = Q r / |r|) rather than assumed: its component order is a convention that
  has changed between e3nn versions ((y, z, x) in old ones; e3nn 0.4.4 gives (x, y, z), i.e. Q = I);
* **vector input**: pooled vectors ``[n, 3, vector_in_features]`` are mixed linearly into ``num_channels``
  1o channels and enter the first interaction next to the scalar embedding;
* **l = 2 features** (``max_L >= 2``): ``tensors`` are the 2e channels of the last interaction,
  ``[n, 5, num_channels]`` in e3nn's real basis, and a coarse MACE takes pooled ones
  (``tensor_in_features``) as ``num_channels`` 2e channels of its first interaction. That is what lets a
  hierarchy of MACEs carry a headless orientation (a CH2 plane seen along a chain's C2 axis, which has no
  l = 1 part) from one end of a molecule to the other: docs/NONLOCAL.md.

Off everywhere (they take an argmax of one-hot node attributes or need atomic numbers): ZBL
``pair_repulsion``, ``distance_transform`` (Agnesi/Soft) and the cuequivariance / openequivariance fast
paths. ``use_reduced_cg`` is fixed to ``False`` so the weight shapes do not depend on whether
cuequivariance happens to be installed. The MACE blocks are built in float64 (their Clebsch-Gordan and
Wigner constants are computed in the default dtype) and cast by the model afterwards.

TorchScript: the adapter scripts (``torch.jit.script``) with mace-torch >= 0.3.11 (interactions that take
``cutoff``; tested with 0.3.16), giving the eager numbers; mace-torch's blocks are scriptable themselves.

Importing ``mace`` sets ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` for the whole process (mace-torch does it in
its ``__init__``); MuSE passes ``weights_only=True`` explicitly to every ``torch.load``, which that variable
cannot override. e3nn 0.4.4 only imports under torch >= 2.6 after ``mace`` (its constants file needs the
unsafe load), so :func:`import_mace` imports ``mace`` first.
"""

import contextlib
import inspect
import warnings
from collections.abc import Sequence
from typing import List, Optional

import torch
from torch import nn

from muse_ff.nn.backbones.base import Backbone, BackboneOutput

INSTALL_HINT = "the MACE backbone needs mace-torch: pip install 'muse-ff[mace]'"


def import_mace():
    """Import mace-torch (before e3nn, see the module docstring); raise ImportError naming the extra."""
    try:
        with warnings.catch_warnings():  # e3nn's own torch.load of its constants warns about mace's variable
            warnings.filterwarnings("ignore", message="Environment variable TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")
            import mace  # noqa: F401  (must come before e3nn)
            from e3nn import o3
            from mace.modules import blocks, interaction_classes
    except ImportError as err:
        raise ImportError(f"{INSTALL_HINT} ({err})") from err
    return o3, blocks, interaction_classes


@contextlib.contextmanager
def _building(dtype: torch.dtype):
    """Build mace blocks in ``dtype`` (their constants follow the default dtype), quietly."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with warnings.catch_warnings():  # e3nn's code generation scripts modules; TorchScript complains
            warnings.filterwarnings("ignore", message="The TorchScript type system")
            warnings.filterwarnings("ignore", message=r"`torch.jit.script` is deprecated")
            yield
    finally:
        torch.set_default_dtype(old)


def _hidden_irreps(o3, channels: int, max_L: int):
    """mace-torch's convention: ``channels`` x each l <= max_L with parity (-1)^l (0e + 1o + 2e ...)."""
    return o3.Irreps("+".join(f"{channels}x{ell}{'e' if ell % 2 == 0 else 'o'}" for ell in range(max_L + 1)))


class MACE(Backbone):
    """MACE backbone from mace-torch blocks (``model.backbone: {name: mace, ...}``).

    Settings (``model.backbone``, names as in mace-torch's ``mace_run_train``): ``num_channels``, ``max_L``,
    ``max_ell``, ``correlation``, ``num_interactions``, ``num_radial_basis``, ``num_cutoff_basis``,
    ``radial_mlp``, ``avg_num_neighbors``, ``interaction``, ``interaction_first``, ``vector_output``; their
    types, defaults (this constructor's), allowed values and meanings are ``BACKBONES["mace"].settings``
    (:mod:`muse_ff.nn.backbones`), tabled in docs/BACKBONES.md. ``cutoff`` (Å) is set per level by the MuSE
    model.
    """

    takes_tensors = True

    def __init__(self, in_features: int, cutoff: float = 5.0, num_channels: int = 32, max_L: int = 1,
                 max_ell: int = 3, correlation: int = 3, num_interactions: int = 2, num_radial_basis: int = 8,
                 num_cutoff_basis: int = 5, radial_mlp: "Sequence[int]" = (64, 64, 64),
                 avg_num_neighbors: float = 10.0, interaction: str = "RealAgnosticResidualInteractionBlock",
                 interaction_first: str = "RealAgnosticResidualInteractionBlock", vector_output: bool = True,
                 vector_in_features: int = 0, tensor_in_features: int = 0):
        super().__init__()
        _validate(in_features, cutoff, num_channels, max_L, max_ell, correlation, num_interactions,
                  num_radial_basis, num_cutoff_basis, avg_num_neighbors, vector_output)
        o3, blocks, classes = import_mace()
        for name in (interaction, interaction_first):
            if name not in classes:
                raise ValueError(f"unknown mace interaction {name!r}; allowed: {sorted(classes)}")
        self.cutoff = float(cutoff)
        self.in_features = int(in_features)
        self.num_channels = int(num_channels)
        self.num_interactions = int(num_interactions)
        self.vector_features = self.num_channels if vector_output else 0
        self.tensor_features = self.num_channels if (vector_output and max_L >= 2) else 0
        self.out_features = self.num_channels * self.num_interactions
        self.vector_in_features = int(vector_in_features)
        self.tensor_in_features = int(tensor_in_features)
        with _building(torch.float64):
            self._build(o3, blocks, classes[interaction_first], classes[interaction], max_L, max_ell,
                        correlation, num_radial_basis, num_cutoff_basis, [int(w) for w in radial_mlp],
                        float(avg_num_neighbors))

    def _build(self, o3, blocks, first_cls, inter_cls, max_L, max_ell, correlation, num_bessel, p,
               radial_mlp, avg_num_neighbors):
        C = self.num_channels
        attr_irreps = o3.Irreps(f"{self.in_features}x0e")
        hidden = _hidden_irreps(o3, C, max_L)
        scalars_only = o3.Irreps(f"{C}x0e")
        first_in = o3.Irreps("+".join([f"{C}x0e"] + [f"{C}x1o"] * bool(self.vector_in_features)
                                      + [f"{C}x2e"] * bool(self.tensor_in_features)))
        self.node_embedding = blocks.LinearNodeEmbeddingBlock(attr_irreps, scalars_only)
        self.vector_embedding = (nn.Linear(self.vector_in_features, C, bias=False)
                                 if self.vector_in_features else None)
        self.tensor_embedding = (nn.Linear(self.tensor_in_features, C, bias=False)
                                 if self.tensor_in_features else None)
        self.radial_embedding = blocks.RadialEmbeddingBlock(r_max=self.cutoff, num_bessel=num_bessel,
                                                            num_polynomial_cutoff=p)
        edge_feats = o3.Irreps(f"{self.radial_embedding.out_dim}x0e")
        sh = o3.Irreps.spherical_harmonics(max_ell)
        self.spherical_harmonics = o3.SphericalHarmonics(sh, normalize=True, normalization="component")
        # e3nn's l = 1 basis: Y_1(r) = sqrt(3) Q r / |r|, so Q[m, k] = Y_1(e_k)[m] / sqrt(3)
        q = o3.spherical_harmonics(1, torch.eye(3), normalize=True, normalization="component").T / 3**0.5
        self.register_buffer("cartesian_to_e3nn", q, persistent=False)  # derived from e3nn, not a weight
        target = (sh * C).sort()[0].simplify()
        # 0.3.16 uses cuequivariance's reduced CG basis when that is installed (pinned off); 0.3.10 has no option
        accepts = inspect.signature(blocks.EquivariantProductBasisBlock.__init__).parameters
        product_kwargs = {"use_reduced_cg": False} if "use_reduced_cg" in accepts else {}
        self.interactions, self.products = nn.ModuleList(), nn.ModuleList()
        node_irreps = first_in
        for k in range(self.num_interactions):
            last = k == self.num_interactions - 1
            out_irreps = hidden if (not last or self.vector_features) else scalars_only
            cls = first_cls if k == 0 else inter_cls
            inter = cls(node_attrs_irreps=attr_irreps, node_feats_irreps=node_irreps, edge_attrs_irreps=sh,
                        edge_feats_irreps=edge_feats, target_irreps=target, hidden_irreps=out_irreps,
                        avg_num_neighbors=avg_num_neighbors, radial_MLP=radial_mlp)
            self.interactions.append(inter)
            self.products.append(blocks.EquivariantProductBasisBlock(
                node_feats_irreps=inter.target_irreps, target_irreps=out_irreps, correlation=correlation,
                num_elements=self.in_features, use_sc="Residual" in cls.__name__, **product_kwargs))
            node_irreps = out_irreps
        self._takes_cutoff = all("cutoff" in inspect.signature(i.forward).parameters for i in self.interactions)

    def _initial_features(self, node_features: torch.Tensor, node_vectors: Optional[torch.Tensor],
                          node_tensors: Optional[torch.Tensor]) -> torch.Tensor:
        """[n, C] scalars, then (with vector input) C x 1o, then (with l = 2 input) C x 2e, in e3nn's layout."""
        h = self.node_embedding(node_features)
        n, C = h.shape[0], self.num_channels
        parts: List[torch.Tensor] = [h]
        vector_embedding = self.vector_embedding
        if vector_embedding is not None:
            if node_vectors is None:
                parts.append(h.new_zeros(n, C * 3))
            else:  # [n, 3, F_v] Cartesian -> [n, C, 3] in e3nn's l = 1 basis, flattened as e3nn's mul_ir layout
                v = torch.einsum("mk,nkc->ncm", self.cartesian_to_e3nn, vector_embedding(node_vectors))
                parts.append(v.reshape(n, C * 3))
        tensor_embedding = self.tensor_embedding
        if tensor_embedding is not None:
            if node_tensors is None:
                parts.append(h.new_zeros(n, C * 5))
            else:  # [n, 5, F_t] (e3nn's l = 2 basis) -> [n, C, 5], flattened as e3nn's mul_ir layout
                parts.append(tensor_embedding(node_tensors).transpose(1, 2).reshape(n, C * 5))
        if len(parts) == 1:
            return h
        return torch.cat(parts, dim=-1)

    def forward(self, node_features: torch.Tensor, edge_index: torch.Tensor, edge_vectors: torch.Tensor,
                node_vectors: Optional[torch.Tensor] = None,
                edge_weights: Optional[torch.Tensor] = None,
                node_tensors: Optional[torch.Tensor] = None) -> BackboneOutput:
        mace_edges = edge_index.flip(0)  # mace: (sender, receiver)
        vectors = -edge_vectors  # mace: r_receiver - r_sender
        lengths = torch.linalg.vector_norm(vectors, dim=-1, keepdim=True)
        edge_attrs = self.spherical_harmonics(vectors)
        # e3nn layers (node embedding, skip_tp) normalise by fan-in for unit-variance inputs: they get the features
        # as they are; the symmetric contraction's per-element weights assume a one-hot (unit-norm) selector
        attrs, selector = node_features, node_features * self.in_features**-0.5
        # radial basis x polynomial cutoff (built with the cutoff applied to the features: 0.3.16 returns
        # (features, None), 0.3.10 the features alone). The atomic numbers are read only by mace's
        # distance_transform, which is off: an empty tensor stands for them (TorchScript takes no None there)
        no_numbers = torch.empty(0, dtype=torch.int64, device=edge_index.device)
        edge_feats = self.radial_embedding(lengths, attrs, mace_edges, no_numbers)
        edge_feats = edge_feats[0] if isinstance(edge_feats, tuple) else edge_feats
        cutoff: Optional[torch.Tensor] = None
        if edge_weights is not None:
            if self._takes_cutoff:  # mace >= 0.3.11 multiplies the tensor-product weights by ``cutoff``
                cutoff = edge_weights.unsqueeze(-1)
            else:  # the radial MLP (no biases, silu) maps 0 to 0: messages vanish with w
                edge_feats = edge_feats * edge_weights.unsqueeze(-1)
        h = self._initial_features(attrs, node_vectors, node_tensors)
        scalars: List[torch.Tensor] = []
        for interaction, product in zip(self.interactions, self.products):
            # sc is None or a tensor by interaction class: bound and used inside each branch (TorchScript types
            # each layer's sc on its own); the call without ``cutoff`` is also mace < 0.3.11's
            if self._takes_cutoff:
                h_tp, sc = interaction(node_attrs=attrs, node_feats=h, edge_attrs=edge_attrs,
                                       edge_feats=edge_feats, edge_index=mace_edges, cutoff=cutoff)
                h = product(node_feats=h_tp, sc=sc, node_attrs=selector)
            else:
                h_tp0, sc0 = interaction(node_attrs=attrs, node_feats=h, edge_attrs=edge_attrs,
                                         edge_feats=edge_feats, edge_index=mace_edges)
                h = product(node_feats=h_tp0, sc=sc0, node_attrs=selector)
            scalars.append(h[:, : self.num_channels])
        vec: Optional[torch.Tensor] = None
        if self.vector_features:
            C = self.num_channels
            vec = torch.einsum("mk,ncm->nkc", self.cartesian_to_e3nn, h[:, C: 4 * C].reshape(-1, C, 3))
        ten: Optional[torch.Tensor] = None
        if self.tensor_features:  # hidden irreps C x 0e + C x 1o + C x 2e: the 2e block follows the 1o one
            C = self.num_channels
            ten = h[:, 4 * C: 9 * C].reshape(-1, C, 5).transpose(1, 2)
        return BackboneOutput(scalars=torch.cat(scalars, dim=-1), vectors=vec, tensors=ten)


def _validate(in_features, cutoff, num_channels, max_L, max_ell, correlation, num_interactions,
              num_radial_basis, num_cutoff_basis, avg_num_neighbors, vector_output) -> None:
    checks = [
        (in_features >= 1, f"in_features must be >= 1, got {in_features}"),
        (cutoff > 0, f"cutoff must be > 0 Å, got {cutoff}"),
        (num_channels >= 1, f"num_channels must be >= 1, got {num_channels}"),
        (0 <= max_L <= 3, f"max_L must be 0..3, got {max_L}"),
        (max_ell >= 1, f"max_ell must be >= 1, got {max_ell}"),
        (max_ell >= max_L, f"max_ell ({max_ell}) must be >= max_L ({max_L})"),
        (1 <= correlation <= 4, f"correlation must be 1..4, got {correlation}"),
        (num_interactions >= 1, f"num_interactions must be >= 1, got {num_interactions}"),
        (num_radial_basis >= 1, f"num_radial_basis must be >= 1, got {num_radial_basis}"),
        (num_cutoff_basis >= 2, f"num_cutoff_basis (p) must be >= 2 for a C2 cutoff, got {num_cutoff_basis}"),
        (avg_num_neighbors > 0, f"avg_num_neighbors must be > 0, got {avg_num_neighbors}"),
        (not vector_output or max_L >= 1, "vector_output needs max_L >= 1 (no l = 1 hidden features)"),
    ]
    for ok, msg in checks:
        if not ok:
            raise ValueError(f"MACE backbone: {msg}")
