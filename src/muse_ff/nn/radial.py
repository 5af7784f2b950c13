"""Radial functions: a C3-smooth cutoff envelope and a Bessel radial basis."""

import math

import torch
from torch import nn


def smooth_cutoff(r: torch.Tensor, cutoff: float) -> torch.Tensor:
    """Envelope f(r) = 1 - 35x^4 + 84x^5 - 70x^6 + 20x^7 with x = r / cutoff, and 0 beyond the cutoff.

    f(0) = 1, f(cutoff) = 0, and the first three derivatives vanish at the cutoff, so energies, forces
    and Hessians stay continuous when a pair crosses it (a cosine cutoff has a jump in its second
    derivative there).

    Args:
        r: distances [...] (Å), non-negative.
        cutoff: radius (Å).
    Returns:
        [...] envelope values in [0, 1].
    """
    x = (r / cutoff).clamp(max=1.0)
    x4 = x**4
    f = 1.0 - x4 * (35.0 - x * (84.0 - x * (70.0 - 20.0 * x)))
    return torch.where(r < cutoff, f, torch.zeros_like(f))


def inner_switch(r: torch.Tensor, inner: float, outer: float) -> torch.Tensor:
    """0 for r <= inner, 1 for r >= outer: 35x^4 - 84x^5 + 70x^6 - 20x^7 with x = (r - inner)/(outer - inner)
    between, whose first three derivatives vanish at both ends.

    Multiplies the contribution of a coarse edge so that two coarse nodes may coincide (a molecule inside a
    cage: both nodes at the cage's centre) with a smooth energy and no undefined edge direction.
    """
    x = ((r - inner) / (outer - inner)).clamp(0.0, 1.0)
    return x**4 * (35.0 - x * (84.0 - x * (70.0 - 20.0 * x)))


class BesselBasis(nn.Module):
    """sin(n pi r / rc) / r for n = 1..num_basis (Klicpera et al. 2020), times :func:`smooth_cutoff`.

    Input distances [E] (Å), output [E, num_basis]. Safe at r = 0 (self-edges are never built, but the
    limit n pi / rc is used for numerical safety).
    """

    def __init__(self, cutoff: float, num_basis: int = 8, trainable: bool = False):
        super().__init__()
        self.cutoff = float(cutoff)
        freqs = torch.arange(1, num_basis + 1, dtype=torch.get_default_dtype()) * math.pi / cutoff
        if trainable:
            self.freqs = nn.Parameter(freqs)
        else:
            self.register_buffer("freqs", freqs)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        r = r.unsqueeze(-1)
        safe = torch.where(r > 1e-9, r, torch.ones_like(r))
        basis = torch.where(r > 1e-9, torch.sin(self.freqs * safe) / safe, self.freqs.expand_as(r * self.freqs))
        return basis * smooth_cutoff(r, self.cutoff)
