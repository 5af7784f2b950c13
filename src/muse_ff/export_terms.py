"""The long-range terms of an exported MuSE model: TorchScript twins of ``model.physical`` and ``model.long_range``.

:class:`~muse_ff.nn.physical.PhysicalLongRange` and :class:`~muse_ff.nn.long_range.LatentEwald` decide in
Python how to sum a frame (Ewald or PME from the cell at hand, cached torch-pme calculators, large free
frames through a custom autograd function that keeps memory bounded). The twins here share their learned
heads (the same parameters, not copies) and evaluate the same sums with the same functions
(:func:`~muse_ff.nn.physical.free_rows`, :class:`~muse_ff.nn.ewald.PeriodicSum`,
:func:`~muse_ff.nn.long_range.free_potential`), with the choices fixed at export:

- periodic frames use the method ``model.physical.ewald.method`` names; ``"auto"`` is resolved on the
  structure given at export (its cell and atom count, as the Python model would), and without a structure
  to PME, whose cost stays O(N log N) whatever cell the engine brings (to ~1e-6 of the energy from Ewald);
- free frames sum every pair in blocks of rows with plain autograd, so energy + forces keep the [n, n] pair
  arrays for the backward pass (O(n^2) memory: about 1 GB at 4,000 atoms in float64) where the Python model's
  first derivatives stay O(n);
- a frame periodic along one or two directions only is refused, as in Python.
"""

from typing import Optional, Tuple

import torch
from torch import Tensor, nn

from muse_ff.nn.ewald import PeriodicSum
from muse_ff.nn.long_range import LatentEwald, free_potential
from muse_ff.nn.physical import (
    MAX_EWALD_TERMS,
    PhysicalLongRange,
    _method,
    _r12_tail,
    atom_frames,
    equilibrate_charges,
    free_rows,
    wrap_into_cell,
)


def _periodic_methods(physical: PhysicalLongRange, cell: Optional[Tensor], n: int) -> Tuple[Optional[str], Optional[str]]:
    """The Ewald/PME method of each term for the export structure's cell (None: no structure or a free one)."""
    t = physical.terms
    ew = t.ewald
    out = []
    for present, split in ((physical.charge_head is not None, ew.split(t.sigma)),
                           (physical.dispersion_head is not None, ew.split(0.0))):
        if not present:
            out.append(None)
        elif ew.method != "auto":
            out.append(ew.method)
        elif cell is not None:
            out.append(_method(cell, n, split, ew))
        else:
            out.append("pme")
    return out[0], out[1]


class ExportedPhysical(nn.Module):
    """``model.physical`` for the exported model (see the module docstring).

    Args:
        physical: the trained terms (their heads are shared, not copied).
        cell: [3, 3] the export structure's cell if it is fully periodic, else None.
        atoms: its number of atoms (resolves ``method: auto``).
        periodic: whether periodic frames can be evaluated (False for a model bound to a free structure).
    """

    def __init__(self, physical: PhysicalLongRange, cell: Optional[Tensor], atoms: int, periodic: bool = True):
        super().__init__()
        t = physical.terms
        self.charge_head = physical.charge_head
        self.dispersion_head = physical.dispersion_head
        self.sigma = float(t.sigma)
        self.coulomb_switch: Optional[Tuple[float, float]] = t.coulomb_switch
        self.dispersion_switch: Optional[Tuple[float, float]] = t.dispersion_switch
        self.pair_block = int(t.pair_block)
        self.periodic = None
        if periodic:
            ew = t.ewald
            m_el, m_d = _periodic_methods(physical, cell, atoms)
            self.periodic = PeriodicSum(t.sigma, t.coulomb_switch, t.dispersion_switch, ew.cutoff, ew.switch_width,
                                        ew.split(t.sigma), ew.split(0.0), m_el, m_d, ew.wavelength, ew.mesh_spacing,
                                        ew.interpolation_nodes, _r12_tail(ew))

    def _free(self, pos: Tensor, q: Optional[Tensor], c: Optional[Tensor], rho: Optional[Tensor]) -> Tensor:
        n = int(pos.shape[0])
        rows = max(1, self.pair_block // max(n, 1))
        parts = []
        for lo in range(0, n, rows):
            parts.append(free_rows(lo, min(n, lo + rows), pos, q, c, rho, self.sigma, self.coulomb_switch,
                                   self.dispersion_switch))
        if len(parts) == 0:
            return pos.new_zeros(0)
        return torch.cat(parts)

    def energy_and_charges(self, scalars: Tensor, positions: Tensor, cell: Tensor, pbc: Tensor, ptr: Tensor,
                           species: Optional[Tensor] = None, component: Optional[Tensor] = None,
                           component_charge: Optional[Tensor] = None) -> Tuple[Tensor, Optional[Tensor]]:
        """As :meth:`PhysicalLongRange.energy_and_charges`: ``([n] energy of each atom, [n] charges or None)``."""
        q: Optional[Tensor] = None
        c: Optional[Tensor] = None
        rho: Optional[Tensor] = None
        charge_head = self.charge_head
        if charge_head is not None:
            comp = atom_frames(ptr) if component is None else component
            q = charge_head(scalars, comp, component_charge).to(positions.dtype)
        dispersion_head = self.dispersion_head
        if dispersion_head is not None:
            if species is None:
                raise ValueError("PhysicalLongRange: dispersion needs the species")
            c = dispersion_head.sqrt_c6(scalars).to(positions.dtype)
            rho = dispersion_head.radii(species).to(positions.dtype)
        cell = cell.to(positions.dtype)
        out = []
        for b in range(int(ptr.numel()) - 1):
            lo, hi = int(ptr[b]), int(ptr[b + 1])
            qs = None if q is None else q[lo:hi]
            cs = None if c is None else c[lo:hi]
            rs = None if rho is None else rho[lo:hi]
            if bool(pbc[b].all()):
                periodic = self.periodic
                if periodic is None:
                    raise ValueError("this exported model was bound to a free structure: it cannot evaluate a "
                                     "periodic one; export it again with a periodic --structure")
                out.append(periodic(positions[lo:hi], cell[b], qs, cs, rs))
            elif not bool(pbc[b].any()):
                out.append(self._free(positions[lo:hi], qs, cs, rs))
            else:
                raise ValueError("physical long-range terms: a frame periodic along one or two directions only "
                                 "(a slab or a wire) is not supported (no 1D/2D Ewald correction yet)")
        if len(out) == 0:
            return positions.new_zeros(0), q
        return torch.cat(out), q


class ExportedLatentEwald(nn.Module):
    """``model.long_range`` (latent Ewald) for the exported model: the same charge MLP, the free-frame
    :func:`~muse_ff.nn.long_range.free_potential` and torch-pme's Ewald sum for periodic frames."""

    def __init__(self, les: LatentEwald):
        super().__init__()
        import torchpme

        from muse_ff.nn.physical import COULOMB

        self.charge = les.charge
        self.neutral = bool(les.neutral)
        self.smearing = float(les.smearing)
        self.wavelength = float(les.wavelength)
        self.ewald = torchpme.EwaldCalculator(torchpme.CoulombPotential(smearing=les.smearing, prefactor=COULOMB),
                                              lr_wavelength=les.wavelength)
        self.max_terms = float(MAX_EWALD_TERMS)

    def _periodic(self, q: Tensor, pos: Tensor, cell: Tensor) -> Tensor:
        count = torch.ceil(torch.linalg.vector_norm(cell.detach(), dim=1) / self.wavelength).clamp(min=1.0).prod()
        if float(count) * max(int(pos.shape[0]), 1) > self.max_terms:
            raise ValueError("latent Ewald: this periodic cell needs more wavevectors x atoms than the limit of "
                             "1e8 terms; use a larger model.long_range.wavelength")
        pos = wrap_into_cell(pos, cell).to(q.dtype)
        empty = torch.zeros((0, 2), dtype=torch.int64, device=pos.device)
        return self.ewald(q, cell.to(q.dtype), pos, empty, torch.zeros(0, dtype=pos.dtype, device=pos.device))

    def forward(self, scalars: Tensor, positions: Tensor, cell: Tensor, pbc: Tensor, ptr: Tensor,
                component: Optional[Tensor] = None) -> Tensor:
        """As :meth:`LatentEwald.forward`: [n] long-range energy of each atom (eV)."""
        q = self.charge(scalars)
        if self.neutral:
            if component is None:
                raise ValueError("latent Ewald with neutral: true needs the covalent components")
            q = equilibrate_charges(q, component)
        out = []
        for b in range(int(cell.shape[0])):
            lo, hi = int(ptr[b]), int(ptr[b + 1])
            if bool(pbc[b].all()):
                phi = self._periodic(q[lo:hi], positions[lo:hi], cell[b])
            elif not bool(pbc[b].any()):
                phi = free_potential(q[lo:hi], positions[lo:hi], self.smearing)
            else:
                raise ValueError("latent Ewald: only fully periodic or fully free frames are supported (no slab "
                                 "correction)")
            out.append((q[lo:hi] * phi).sum(-1))
        return torch.cat(out)
