"""Output heads: per-node energies, per-element reference energies, scale and shift."""

from typing import Optional

import torch
from torch import nn


class EnergyHead(nn.Module):
    """Per-node energy from invariant features: MLP [n, F] -> [n] (in units of the model's ``scale``)."""

    def __init__(self, features: int, hidden: int = 32):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(features, hidden), nn.SiLU(), nn.Linear(hidden, 1))

    def forward(self, scalars: torch.Tensor) -> torch.Tensor:
        return self.mlp(scalars).squeeze(-1)


class AtomicReference(nn.Module):
    """Per-element reference energies E0(Z) plus a global per-atom ``shift`` and an energy ``scale``.

    All three are float64 buffers (fitted from data by the trainer, not by gradient descent), so total
    energies are accumulated in float64 even when the network runs in float32.
    ``energy_i = E0[Z_i] + shift + scale * e_i`` for atoms; coarse nodes contribute ``scale * e_k``.
    """

    def __init__(self, num_species: int):
        super().__init__()
        self.register_buffer("e0", torch.zeros(num_species, dtype=torch.float64))
        self.register_buffer("scale", torch.ones((), dtype=torch.float64))
        self.register_buffer("shift", torch.zeros((), dtype=torch.float64))

    def atomic(self, species_index: torch.Tensor) -> torch.Tensor:
        """[n] float64 reference + shift of each atom (species given as indices into the model's species)."""
        return self.e0[species_index] + self.shift

    def set(self, e0: Optional[torch.Tensor] = None, scale: Optional[float] = None,
            shift: Optional[float] = None):
        with torch.no_grad():
            if e0 is not None:
                self.e0.copy_(torch.as_tensor(e0, dtype=torch.float64))
            if scale is not None:
                self.scale.fill_(float(scale))
            if shift is not None:
                self.shift.fill_(float(shift))
