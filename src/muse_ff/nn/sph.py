"""Real spherical harmonics (from e3nn) and helpers for spherical-harmonic coordinates.

The harmonics come from ``e3nn.o3.spherical_harmonics`` (degrees up to 11), the maintained implementation
that mace-torch also builds on. e3nn 0.4.4 (the version mace-torch pins) ``torch.load``s its constants at
import time with the ``weights_only=True`` default of torch >= 2.6, which rejects the ``slice`` objects in
that file; :func:`_o3` imports it inside ``torch.serialization.safe_globals([slice])``, a context that
allows exactly that one builtin for that one import and leaves the global allowlist unchanged.

Conventions (e3nn's, the same everywhere in MuSE):

* basis order: degree by degree, 2l + 1 orders inside each degree; for l = 1 the coordinates are
  ``sqrt(3) (x, y, z)`` (e3nn's Cartesian order);
* "component" normalisation: each component has mean square 1 over the sphere, so
  ``sum_m Y_lm(u)^2 = 2l + 1`` for every unit vector u;
* a list of degrees such as ``[1, 2, 3]`` gives ``M = sum(2l + 1)`` coordinates (15 for [1, 2, 3]).

Under a rotation R the degree-l block transforms with an orthogonal (2l+1) x (2l+1) Wigner matrix:
``Y_l(R u) = D_l(R) Y_l(u)``.
"""

import functools
import math
from collections.abc import Sequence
from typing import Optional

import torch
from torch import nn

#: the largest degree e3nn implements in closed form
MAX_DEGREE = 11


@functools.cache
def _o3():
    """``e3nn.o3``, imported with the one extra safe global its constants file needs (see module doc)."""
    with torch.serialization.safe_globals([slice]):
        from e3nn import o3
    return o3


def check_degrees(degrees: Sequence[int]) -> list[int]:
    """Validate a list of degrees (distinct, each in 1..MAX_DEGREE) and return it sorted."""
    degs = [int(d) for d in degrees]
    if not degs:
        raise ValueError("degrees must name at least one degree, e.g. [1, 2, 3]")
    if len(set(degs)) != len(degs) or any(d < 1 or d > MAX_DEGREE for d in degs):
        raise ValueError(f"degrees must be distinct integers in 1..{MAX_DEGREE}, got {list(degrees)}")
    return sorted(degs)


def spherical_harmonics(unit: torch.Tensor, degrees: Sequence[int]) -> torch.Tensor:
    """Real spherical harmonics of unit vectors.

    Args:
        unit: [..., 3] unit vectors (x, y, z); not normalised here (the polynomials assume |u| = 1).
        degrees: distinct degrees in 1..MAX_DEGREE, ascending.
    Returns:
        [..., M] with M = sum(2l + 1), blocks in the order of ``degrees``, 2l + 1 orders inside each block.
    """
    return _o3().spherical_harmonics(list(degrees), unit, normalize=False, normalization="component")


def spherical_harmonics_module(degrees: Sequence[int]) -> nn.Module:
    """e3nn's ``o3.SphericalHarmonics`` module computing :func:`spherical_harmonics` for ``degrees``.

    The same computation (:func:`spherical_harmonics` builds this module and calls it), held as a submodule
    so that a model using it can be scripted (``torch.jit.script``): the module is TorchScript-compatible,
    the function (it builds an e3nn object on every call) is not. It has no parameters or buffers, so holding
    it leaves a model's ``state_dict`` unchanged. Input [..., 3] unit vectors, output [..., M].
    """
    return _o3().SphericalHarmonics(list(degrees), normalize=False, normalization="component")


def degree_index(degrees: Sequence[int]) -> torch.Tensor:
    """[M] int64: position in ``degrees`` of the degree each coordinate belongs to (for segment sums)."""
    return torch.tensor([k for k, deg in enumerate(degrees) for _ in range(2 * deg + 1)], dtype=torch.int64)


def l1_slice(degrees: Sequence[int]) -> Optional[slice]:
    """Where the l = 1 block sits among the M coordinates, or ``None`` if 1 is not among ``degrees``."""
    start = 0
    for deg in degrees:
        if deg == 1:
            return slice(start, start + 3)
        start += 2 * deg + 1
    return None


def l1_to_cartesian(sph: torch.Tensor) -> torch.Tensor:
    """[..., 3, C] degree-1 coordinates -> [..., 3, C] Cartesian (x, y, z) vectors: Y_1(u) = sqrt(3) u."""
    return sph / math.sqrt(3.0)  # (not a float global: TorchScript reads none)


def cartesian_to_l1(vec: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`l1_to_cartesian`: [..., 3, C] Cartesian -> [..., 3, C] degree-1 coordinates."""
    return vec * math.sqrt(3.0)
