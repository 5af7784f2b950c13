"""Real spherical harmonics of degree 1 to 3 in closed form, and helpers for spherical-harmonic coordinates.

Why not e3nn: e3nn 0.4.4 (the version mace-torch pins) fails to import on its own under torch >= 2.6 (it
``torch.load``s its constants with the new ``weights_only=True`` default), and it is not a dependency of
``muse_ff``; three degrees of polynomials are short enough to write down and test here.

Conventions (the same everywhere in MuSE):

* basis order: degree by degree, and within degree l the orders m = -l, ..., l (standard real spherical
  harmonics, no Condon-Shortley phase); for l = 1 that is (y, z, x);
* "component" normalisation: each component has mean square 1 over the sphere, so
  ``sum_m Y_lm(u)^2 = 2l + 1`` for every unit vector u (e3nn's ``normalization="component"``);
* a list of degrees such as ``[1, 2, 3]`` gives ``M = sum(2l + 1)`` coordinates (15 for [1, 2, 3]).

Under a rotation R the degree-l block transforms with an orthogonal (2l+1) x (2l+1) Wigner matrix:
``Y_l(R u) = D_l(R) Y_l(u)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

MAX_DEGREE = 3

_S3 = math.sqrt(3.0)
_S15 = math.sqrt(15.0)
_S5 = math.sqrt(5.0)
_C3M3 = math.sqrt(70.0) / 4.0  # sqrt(4 pi) * sqrt(35 / 2 pi) / 4
_C3M2 = math.sqrt(105.0)  # sqrt(4 pi) * sqrt(105 / pi) / 2
_C3M1 = math.sqrt(42.0) / 4.0  # sqrt(4 pi) * sqrt(21 / 2 pi) / 4
_C30 = math.sqrt(7.0) / 2.0  # sqrt(4 pi) * sqrt(7 / pi) / 4


def _degree(deg: int, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> list[torch.Tensor]:
    if deg == 1:
        return [_S3 * y, _S3 * z, _S3 * x]
    if deg == 2:
        return [_S15 * x * y, _S15 * y * z, 0.5 * _S5 * (3.0 * z * z - 1.0), _S15 * x * z,
                0.5 * _S15 * (x * x - y * y)]
    if deg == 3:
        z2 = 5.0 * z * z - 1.0
        return [_C3M3 * y * (3.0 * x * x - y * y), _C3M2 * x * y * z, _C3M1 * y * z2, _C30 * z * (z2 - 2.0),
                _C3M1 * x * z2, 0.5 * _C3M2 * z * (x * x - y * y), _C3M3 * x * (x * x - 3.0 * y * y)]
    raise ValueError(f"spherical harmonics are implemented for degrees 1..{MAX_DEGREE}, got {deg}")


def check_degrees(degrees: Sequence[int]) -> list[int]:
    """Validate a list of degrees (distinct, each in 1..3) and return it sorted."""
    degs = [int(d) for d in degrees]
    if not degs:
        raise ValueError("degrees must name at least one degree, e.g. [1, 2, 3]")
    if len(set(degs)) != len(degs) or any(d < 1 or d > MAX_DEGREE for d in degs):
        raise ValueError(f"degrees must be distinct integers in 1..{MAX_DEGREE}, got {list(degrees)}")
    return sorted(degs)


def spherical_harmonics(unit: torch.Tensor, degrees: Sequence[int]) -> torch.Tensor:
    """Real spherical harmonics of unit vectors.

    Args:
        unit: [..., 3] unit vectors (x, y, z); not normalised here (the formulas use |u| = 1).
        degrees: distinct degrees in 1..3, ascending.
    Returns:
        [..., M] with M = sum(2l + 1), blocks in the order of ``degrees``, m = -l..l inside each block.
    """
    x, y, z = unit.unbind(-1)
    return torch.stack([c for deg in degrees for c in _degree(deg, x, y, z)], dim=-1)


def degree_index(degrees: Sequence[int]) -> torch.Tensor:
    """[M] int64: position in ``degrees`` of the degree each coordinate belongs to (for segment sums)."""
    return torch.tensor([k for k, deg in enumerate(degrees) for _ in range(2 * deg + 1)], dtype=torch.int64)


def l1_slice(degrees: Sequence[int]) -> slice | None:
    """Where the l = 1 block sits among the M coordinates, or ``None`` if 1 is not among ``degrees``."""
    start = 0
    for deg in degrees:
        if deg == 1:
            return slice(start, start + 3)
        start += 2 * deg + 1
    return None


def l1_to_cartesian(sph: torch.Tensor) -> torch.Tensor:
    """[..., 3, C] degree-1 coordinates (m = -1, 0, 1) -> [..., 3, C] Cartesian (x, y, z) vectors.

    Y_1(u) = sqrt(3) (u_y, u_z, u_x), so the Cartesian vector of coordinates c is (c_1, c_-1, c_0) / sqrt(3).
    """
    return sph[..., [2, 0, 1], :] / _S3


def cartesian_to_l1(vec: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`l1_to_cartesian`: [..., 3, C] Cartesian -> [..., 3, C] degree-1 coordinates."""
    return vec[..., [1, 2, 0], :] * _S3
