"""Latent Ewald summation: learned latent charges with Gaussian-smeared Coulomb energy (the long-range baseline).

B. Cheng, "Latent Ewald summation for machine learning of long-range interactions", npj Comput. Mater. 11,
80 (2025). Each atom gets ``channels`` latent charges ``q_i`` from a small MLP on its final invariant
features (no charge labels: they are whatever lowers the loss). The long-range energy is the Coulomb
energy of smeared charges, with the pair interaction ``erf(r / (sqrt(2) sigma)) / r`` of torch-pme's
``CoulombPotential(smearing=sigma)``: 1/r far away, finite and smooth at short range (which is left to
the local model):

* free frames (no periodic direction): all pairs, directly,
  ``E = k_e / 2 * sum_{i != j} sum_c q_ic q_jc erf(r_ij / (sqrt(2) sigma)) / r_ij``  (O(n^2) per frame);
* fully periodic frames: the same interaction summed over all images by the Ewald reciprocal-space sum of
  `torch-pme <https://github.com/lab-cosmo/torch-pme>`_ (``EwaldCalculator`` with an empty real-space
  neighbour list, so only the smooth part is evaluated; wavevectors up to ``2 pi / wavelength``).

``k_e`` = 14.3996 eV Å / e^2, so latent charges are in units of e. Frames periodic in only one or two
directions are refused (no slab correction). Energies, forces, stress and Hessians come from autograd as
for the rest of the model.
"""

from __future__ import annotations

import math

import torch
from ase import units
from torch import nn

from muse_ff.nn.physical import MAX_EWALD_TERMS, EwaldSizeError, equilibrate_charges, wrap_into_cell

#: Coulomb constant in eV Å / e^2
COULOMB = float(units.Hartree * units.Bohr)


# A reciprocal sum of more than MAX_EWALD_TERMS (wavevectors x atoms; shared with nn/physical.py: 1e8 terms take
# about 25 s and 6 GB on a CPU, forces included) is refused with EwaldSizeError instead of exhausting time or
# memory (a 1e6 Å periodic cell needs 1e18 wavevectors at a 1 Å wavelength: a bare allocation RuntimeError, or
# the OOM killer; a 0.6 x 0.6 x 1e9 Å cell 5e8 and a silent hang).
__all__ = ["COULOMB", "EwaldSizeError", "LatentEwald", "MAX_EWALD_TERMS", "free_potential"]


def free_potential(q: torch.Tensor, pos: torch.Tensor, smearing: float, k_e: float = COULOMB) -> torch.Tensor:
    """[n, C] potential ``k_e / 2 sum_{j != i} q_j erf(r_ij / sqrt(2) sigma) / r_ij`` of a free frame, all pairs
    (``q`` [n, C] latent charges, ``pos`` [n, 3] Å, ``smearing`` sigma Å). TorchScript-compatible."""
    n = pos.shape[0]
    eye = torch.eye(n, dtype=q.dtype, device=pos.device)
    diff = (pos[:, None, :] - pos[None, :, :]).to(q.dtype)  # differences in the positions' dtype, then rounded
    r = torch.sqrt((diff * diff).sum(-1) + eye)  # +1 on the diagonal: no sqrt(0) in any derivative
    kernel = torch.special.erf(r / (math.sqrt(2.0) * smearing)) / r * (1.0 - eye)
    return 0.5 * k_e * kernel @ q


class LatentEwald(nn.Module):
    """Latent charges from invariant atom features and their smeared Coulomb energy per atom.

    Args:
        features: width of the atom features the charges are read from.
        smearing: Gaussian width sigma (Å) of each charge cloud.
        channels: independent latent charge channels (energies add).
        hidden: hidden width of the charge MLP.
        wavelength: shortest wavelength (Å) of the periodic reciprocal sum (default: ``smearing``; the
            neglected terms are below exp(-2 pi^2 sigma^2 / wavelength^2) = 3e-9 of the largest).
        neutral: make every channel's latent charges sum to zero over each covalent component (a deviation
            from the paper, whose latent charges are unconstrained: there, neutral molecules far apart may
            carry net latent charge and interact as 1/r). ``forward`` then needs ``component``.
    """

    def __init__(self, features: int, smearing: float = 1.0, channels: int = 1, hidden: int = 32,
                 wavelength: float | None = None, neutral: bool = False):
        super().__init__()
        self.neutral = bool(neutral)
        self.smearing = float(smearing)
        self.channels = int(channels)
        self.wavelength = float(wavelength if wavelength is not None else smearing)
        self.charge = nn.Sequential(nn.Linear(features, hidden), nn.SiLU(), nn.Linear(hidden, channels))
        self._pme: dict = {}  # the torch-pme calculator, built on the first periodic frame (not a submodule)

    def charges(self, scalars: torch.Tensor, component: torch.Tensor | None = None) -> torch.Tensor:
        """[n, channels] latent charges (e) of atoms with features ``scalars`` [n, F]; with ``neutral``, each
        component's mean subtracted (``component`` [n], global over the batch)."""
        q = self.charge(scalars)
        if not self.neutral:
            return q
        if component is None:
            raise ValueError("latent Ewald with neutral: true needs the covalent components (model.prepare)")
        return equilibrate_charges(q, component)

    def forward(self, scalars: torch.Tensor, positions: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor,
                ptr: torch.Tensor, component: torch.Tensor | None = None) -> torch.Tensor:
        """[n] long-range energy of each atom (eV), ``q_i . phi_i``, summing to the frame's energy.

        ``positions`` [n, 3] Å, ``cell`` [B, 3, 3], ``pbc`` [B, 3] bool, ``ptr`` [B + 1] frame offsets,
        ``component`` [n] covalent component of each atom (global over the batch; needed with ``neutral``).
        """
        q = self.charges(scalars, component)
        out = []
        for b in range(cell.shape[0]):
            lo, hi = int(ptr[b]), int(ptr[b + 1])
            periodic = pbc[b]
            if bool(periodic.all()):
                phi = self._periodic(q[lo:hi], positions[lo:hi], cell[b])
            elif not bool(periodic.any()):
                phi = self._free(q[lo:hi], positions[lo:hi])
            else:
                raise ValueError(f"latent Ewald: frame {b} is periodic along {periodic.tolist()}; only fully "
                                 "periodic or fully free frames are supported (no slab correction)")
            out.append((q[lo:hi] * phi).sum(-1))
        return torch.cat(out)

    def _free(self, q: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """[n, C] potential of a free frame (:func:`free_potential`)."""
        return free_potential(q, pos, self.smearing)

    def wavevectors(self, cell: torch.Tensor) -> int:
        """How many wavevectors the reciprocal sum over ``cell`` [3, 3] takes (torch-pme's Ewald grid:
        ``ceil(|a_k| / wavelength)`` along each lattice vector)."""
        ns = [max(1, math.ceil(float(torch.linalg.norm(a)) / self.wavelength)) for a in cell.detach()]
        return ns[0] * ns[1] * ns[2]

    def _periodic(self, q: torch.Tensor, pos: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
        """[n, C] the same potential summed over all periodic images (torch-pme Ewald, reciprocal part)."""
        count = self.wavevectors(cell)
        if count * max(pos.shape[0], 1) > MAX_EWALD_TERMS:
            lengths = [round(float(torch.linalg.norm(a)), 3) for a in cell.detach()]
            raise EwaldSizeError(
                f"latent Ewald: a periodic cell with lattice vectors of {lengths} Å needs {count:.3g} wavevectors "
                f"at wavelength {self.wavelength:g} Å, which for its {pos.shape[0]} atoms makes "
                f"{count * pos.shape[0]:.3g} terms, more than the limit of {MAX_EWALD_TERMS:.0e}; use a larger "
                f"model.long_range.wavelength, or a free structure (no periodic boundaries) if the cell is mostly "
                f"empty")
        # wrap into the cell in the positions' dtype, then round: torch-pme takes absolute positions
        pos = wrap_into_cell(pos, cell).to(q.dtype)
        cell = cell.to(q.dtype)
        key = (pos.device, pos.dtype)
        if key not in self._pme:
            import torchpme

            potential = torchpme.CoulombPotential(smearing=self.smearing, prefactor=COULOMB)
            self._pme[key] = torchpme.EwaldCalculator(potential, lr_wavelength=self.wavelength).to(
                device=pos.device, dtype=pos.dtype)
        empty = torch.zeros((0, 2), dtype=torch.int64, device=pos.device)
        return self._pme[key](q, cell, pos, empty, torch.zeros(0, dtype=pos.dtype, device=pos.device))
