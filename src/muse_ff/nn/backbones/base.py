"""The Backbone protocol: one interface for every MLFF that MuSE runs at every scale.

No ``from __future__ import annotations`` in this file nor in the backbones: TorchScript reads the
annotations of modules and of :class:`BackboneOutput` as types, not strings (``torch.jit.script`` of every
backbone is what exports to metatomic / LAMMPS need).
"""

from typing import NamedTuple, Optional

import torch
from torch import nn


class BackboneOutput(NamedTuple):
    """What a backbone returns for each node.

    A ``NamedTuple`` (TorchScript scripts it, also as an argument, in lists and across ``torch.jit.save`` /
    ``load``; a ``@dataclass`` it does not): ``BackboneOutput(scalars, vectors=None, tensors=None)``, read as
    ``.scalars`` / ``.vectors`` / ``.tensors``; immutable (``out._replace(vectors=...)`` for a changed copy).

    Attributes:
        scalars: [n, out_features] rotation-invariant features.
        vectors: [n, 3, vector_features] rotation-equivariant (l = 1, Cartesian) features, or ``None``
            for a backbone without them. Coarse levels may pool these like the scalars.
        tensors: [n, 5, tensor_features] rotation-equivariant l = 2 (even parity) features in e3nn's real
            spherical-harmonic basis (component normalisation), or ``None``. A headless direction d (the plane
            of a CH2 group seen along a C2 axis) has no l = 1 part but an l = 2 one (d d^T, traceless): coarse
            levels pool these too when their backbone takes them (``tensor_in_features``), so the orientation
            of one end of a molecule reaches the other end through the hierarchy.
    """

    scalars: torch.Tensor
    vectors: Optional[torch.Tensor] = None
    tensors: Optional[torch.Tensor] = None


def require_positive(backbone: str, **values: int) -> None:
    """Raise ``ValueError`` naming the first of ``values`` (hyper-parameter name -> value) below 1."""
    for name, value in values.items():
        if value < 1:
            raise ValueError(f"{backbone} backbone: {name} must be >= 1, got {value}")


class Backbone(nn.Module):
    """Maps a graph with continuous node features to per-node features.

    A backbone never embeds species, never computes energies and never calls autograd: geometry enters
    only through ``edge_vectors``, computed by the caller from positions, cell and shifts, so forces,
    stress and Hessians follow from autograd through it. The same class runs on atoms (level 0, input =
    species embedding) and on coarse nodes (input = pooled features), each level with its own cutoff.

    Subclasses set ``cutoff`` (Å), ``in_features``, ``out_features``, ``vector_features`` (0 if
    they return no l = 1 features), ``tensor_features`` (0 if no l = 2 features) and ``tensor_in_features``
    (0 if they take no l = 2 input; a backbone class that can take it sets ``takes_tensors = True`` and has a
    ``tensor_in_features`` constructor argument) and implement :meth:`forward`, TorchScript-compatible: typed
    arguments (``Optional[Tensor]`` for the optional ones), submodules that may be ``None`` read into a local
    before the ``is not None`` test, no float globals, no ``**kwargs``, no e3nn objects; ``torch.jit.script``
    of every backbone is tested (tests/nn/test_torchscript_backbones.py).
    """

    cutoff: float
    in_features: int
    out_features: int
    vector_features: int = 0
    tensor_features: int = 0
    tensor_in_features: int = 0
    #: whether the constructor takes ``tensor_in_features`` (l = 2 input pooled from a finer level)
    takes_tensors = False

    def forward(
        self,
        node_features: torch.Tensor,
        edge_index: torch.Tensor,
        edge_vectors: torch.Tensor,
        node_vectors: Optional[torch.Tensor] = None,
        edge_weights: Optional[torch.Tensor] = None,
        node_tensors: Optional[torch.Tensor] = None,
    ) -> BackboneOutput:
        """Args:
            node_features: [n, in_features] continuous input features.
            edge_index: [2, e] (receiver i, sender j); only edges with ``|edge_vectors| < cutoff`` matter,
                and every edge's contribution must go smoothly to zero at the cutoff.
            edge_vectors: [e, 3] r_ij = r_j - r_i (Å).
            node_vectors: optional [n, 3, vector_features] equivariant input (pooled from a finer level).
            edge_weights: optional [e] smooth factors in [0, 1] on each edge's contribution (the coarse levels'
                inner switch); every message along an edge must vanish smoothly as its weight goes to 0.
            node_tensors: optional [n, 5, tensor_in_features] l = 2 input (pooled from a finer level); a
                backbone that takes none ignores it.
        Returns:
            :class:`BackboneOutput`.
        """
        raise NotImplementedError
