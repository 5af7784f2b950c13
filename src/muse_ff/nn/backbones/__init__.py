"""Backbones implementing the :class:`~muse_ff.nn.backbones.base.Backbone` protocol.

``BACKBONES`` maps a config name to a factory ``(in_features, cutoff, vector_in_features, **hparams)``.
Heavy optional backbones (MACE) are imported lazily inside their factory.
"""

from __future__ import annotations

from collections.abc import Callable

from muse_ff.nn.backbones.base import Backbone, BackboneOutput
from muse_ff.nn.backbones.painn import PaiNN


def _painn(in_features: int, cutoff: float, vector_in_features: int = 0, **hparams) -> Backbone:
    return PaiNN(in_features, cutoff=cutoff, vector_in_features=vector_in_features, **hparams)


def _mace(in_features: int, cutoff: float, vector_in_features: int = 0, **hparams) -> Backbone:
    from muse_ff.nn.backbones.mace import MACE  # imports mace-torch itself only when built

    return MACE(in_features, cutoff=cutoff, vector_in_features=vector_in_features, **hparams)


def _so3krates(in_features: int, cutoff: float, vector_in_features: int = 0, **hparams) -> Backbone:
    from muse_ff.nn.backbones.so3krates import SO3krates

    return SO3krates(in_features, cutoff=cutoff, vector_in_features=vector_in_features, **hparams)


#: backbone name -> factory
BACKBONES: dict[str, Callable[..., Backbone]] = {
    "painn": _painn,
    "mace": _mace,
    "so3krates": _so3krates,
}

__all__ = ["BACKBONES", "Backbone", "BackboneOutput", "PaiNN"]


#: backbone name -> class (for hyper-parameter introspection)
_CLASSES: dict[str, str] = {
    "painn": "muse_ff.nn.backbones.painn:PaiNN",
    "mace": "muse_ff.nn.backbones.mace:MACE",
    "so3krates": "muse_ff.nn.backbones.so3krates:SO3krates",
}


def backbone_class(name: str) -> type:
    """The class behind a backbone name (imported lazily for optional backbones)."""
    import importlib

    module, cls = _CLASSES[name].split(":")
    return getattr(importlib.import_module(module), cls)
