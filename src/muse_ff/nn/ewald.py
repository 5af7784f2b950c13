"""Lattice sums of the physical long-range terms of one fully periodic frame, through torch-pme (TorchScript-compatible).

:class:`PeriodicSum` is what :func:`muse_ff.nn.physical._periodic_frame` evaluates (the equations and the
choice of split, wavelength and method are documented there and in docs/LONG_RANGE.md), as a module of its
own so that an exported model (:mod:`muse_ff.export_terms`) carries the same code, compiled. It lives apart
from :mod:`muse_ff.nn.physical` because importing torch-pme takes about half a second, which only periodic
frames and exports should pay.
"""

import math
from typing import List, Optional, Tuple

import torch
import torchpme
from torch import Tensor, nn

from muse_ff.data.torch_neighbors import radius_graph
from muse_ff.nn.physical import COULOMB, wrap_into_cell
from muse_ff.nn.radial import inner_switch


class SmearedCoulomb(torchpme.CoulombPotential):
    """torch-pme's Coulomb potential split at width ``s``, for charges smeared with ``sigma <= s``: the
    real-space remainder ``(erf(r/sqrt2 sigma) - erf(r/sqrt2 s)) / r`` integrates to ``2 pi (s^2 -
    sigma^2)``, so the uniform-background term is ``pi (s^2 - sigma^2) Q / V`` per unit charge (torch-pme's
    own assumes a bare 1/r kernel, ``pi s^2``): the energy of a charged cell then does not depend on
    ``s`` and is the k = 0-omitted lattice sum of the smeared kernel."""

    def __init__(self, sigma: float, split: float, prefactor: float):
        super().__init__(smearing=split, prefactor=prefactor)
        self.sigma = float(sigma)

    def background_correction(self) -> Tensor:
        return self.prefactor * torch.pi * (self.smearing**2 - self.sigma**2)


class R6Potential(torchpme.InversePowerLawPotential):
    """torch-pme's r^-6 potential (prefactor 1) split at width ``s``, with two methods written out for this
    exponent so that the exported model compiles and saves (torch-pme 0.5's general ones do not: its 2D
    correction calls ``super()``, and its reciprocal kernel reaches, for other exponents, an exponential
    integral that is a Python autograd function):

    - ``pbc_correction``: zero (the 2D-periodicity correction vanishes for exponents above 3);
    - ``lr_from_k_sq``: the Fourier transform of the long-range part ``P(3, r^2 / 2 s^2) / r^6`` (``P`` the
      regularised lower incomplete gamma function), ``pi^(3/2) / Gamma(3) (2 s^2)^(-3/2) g(x)`` with
      ``x = s^2 k^2 / 2`` and ``g(x) = ((2 - 4 x) e^-x + 4 sqrt(pi x^3) erfc(sqrt x)) / 3`` (the upper incomplete
      gamma function Gamma(-3/2, x) x^(3/2); K. K. Huguenin-Dumittan et al., J. Phys. Chem. Lett. 14, 9612
      (2023), and the torch-pme paper, arXiv:2412.03281), ``g(0) = 2/3`` at k = 0 (the r^-6 sum needs no
      neutralising background). Equal to torch-pme's own to rounding (tested).
    """

    def __init__(self, split: float):
        super().__init__(exponent=6, smearing=split, prefactor=1.0)

    def pbc_correction(self, periodic: Optional[Tensor], positions: Tensor, cell: Tensor, charges: Tensor) -> Tensor:
        return self.prefactor * torch.zeros_like(charges)

    @torch.jit.export
    def lr_from_k_sq(self, k_sq: Tensor) -> Tensor:
        smearing = self.smearing
        assert smearing is not None
        prefac = math.pi**1.5 / 2.0 * (2.0 * smearing**2) ** -1.5
        x = 0.5 * smearing**2 * k_sq
        z = torch.where(x == 0, torch.ones_like(x), x)  # no NaN in the backward pass at k = 0
        g = ((2.0 - 4.0 * z) * torch.exp(-z) + 4.0 * torch.sqrt(math.pi * z**3) * torch.erfc(torch.sqrt(z))) / 3.0
        return self.prefactor * torch.where(k_sq == 0, prefac * 2.0 / 3.0, prefac * g)


def _calculator(potential, method: str, wavelength: float, mesh_spacing: float, interpolation_nodes: int):
    if method == "ewald":
        return torchpme.EwaldCalculator(potential, lr_wavelength=wavelength)
    if method == "pme":
        return torchpme.PMECalculator(potential, mesh_spacing=mesh_spacing, interpolation_nodes=interpolation_nodes)
    raise ValueError(f"PeriodicSum: method {method!r} is not 'ewald' or 'pme'")


class PeriodicSum(nn.Module):
    """Per-atom energies of Gaussian-smeared Coulomb and BJ-damped C6 over all images of one periodic frame.

    Args:
        sigma: charge smearing (Å).
        coulomb_switch, dispersion_switch: optional ``(r_on, r_off)`` short-range switches.
        cutoff, switch_width: real-space cutoff (Å) and the width of its C3 fade-out.
        split_el, split_disp: the Gaussian splitting widths of the two terms (Å).
        method_el, method_disp: ``"ewald"``/``"pme"`` for each term, None to leave the term out.
        wavelength, mesh_spacing: torch-pme's Ewald wavelength and PME mesh spacing (None: split / 2).
        interpolation_nodes: PME interpolation order.
        r12_tail: the faded-out real-space tail of the damping remainder, per unit density
            (:func:`muse_ff.nn.physical._r12_tail`).
    """

    coulomb_switch: Optional[Tuple[float, float]]
    dispersion_switch: Optional[Tuple[float, float]]

    def __init__(self, sigma: float, coulomb_switch: Optional[Tuple[float, float]],
                 dispersion_switch: Optional[Tuple[float, float]], cutoff: float, switch_width: float,
                 split_el: float, split_disp: float, method_el: Optional[str], method_disp: Optional[str],
                 wavelength: Optional[float], mesh_spacing: Optional[float], interpolation_nodes: int,
                 r12_tail: float):
        super().__init__()
        self.sigma = float(sigma)
        self.k_e = COULOMB
        #: C(6, k), k = 0..6, of the mixed damping radii (rho_i + rho_j)^6
        self.binomial6: List[float] = [float(math.comb(6, k)) for k in range(7)]
        self.coulomb_switch = coulomb_switch
        self.dispersion_switch = dispersion_switch
        self.cutoff = float(cutoff)
        self.switch_width = float(switch_width)
        self.split_el = float(split_el)
        self.r12_tail = float(r12_tail)
        # the real-space neighbour list reaches the Ewald cutoff, or a larger r_off of a short-range switch
        radius = self.cutoff
        if method_el is not None and coulomb_switch is not None:
            radius = max(radius, coulomb_switch[1])
        if method_disp is not None and dispersion_switch is not None:
            radius = max(radius, dispersion_switch[1])
        self.radius = float(radius)
        self.coulomb = None if method_el is None else _calculator(
            SmearedCoulomb(sigma, split_el, COULOMB), method_el, wavelength or split_el / 2.0,
            mesh_spacing or split_el / 2.0, interpolation_nodes)
        self.r6 = None if method_disp is None else _calculator(
            R6Potential(split_disp), method_disp, wavelength or split_disp / 2.0, mesh_spacing or split_disp / 2.0,
            interpolation_nodes)
        self.real_el = method_el is not None and (coulomb_switch is not None or split_el > sigma)

    def forward(self, pos: Tensor, cell: Tensor, q: Optional[Tensor], c: Optional[Tensor],
                rho: Optional[Tensor]) -> Tensor:
        """[n] energies: ``pos`` [n, 3] and ``cell`` [3, 3] (Å), charges ``q`` [n] (e), ``c`` [n] sqrt(C6)
        and ``rho`` [n] damping radii (Å); each None where its term is left out."""
        n = pos.shape[0]
        if n == 0:
            return pos.new_zeros(0)
        coulomb_calc = self.coulomb
        r6_calc = self.r6
        if coulomb_calc is None:
            q = None
        if r6_calc is None:
            c = None
        pos = wrap_into_cell(pos, cell)
        energy = torch.zeros(n, dtype=pos.dtype, device=pos.device)
        if c is not None or self.real_el:
            edges, shifts = radius_graph(pos, cell, torch.ones(3, dtype=torch.bool, device=pos.device), self.radius)
            i, j = edges[0], edges[1]
            vec = pos[j] - pos[i] + shifts.to(pos.dtype) @ cell
            r2 = (vec * vec).sum(-1)
            r = torch.sqrt(r2)
            fade = 1.0 - inner_switch(r, self.cutoff - self.switch_width, self.cutoff)  # 1 inside, 0 at the cutoff
            e = torch.zeros_like(r)
            cs = self.coulomb_switch
            if q is not None:
                k = torch.special.erf(r / (math.sqrt(2.0) * self.sigma)) / r
                part = torch.zeros_like(r)
                if self.split_el > self.sigma:
                    part = fade * (k - torch.special.erf(r / (math.sqrt(2.0) * self.split_el)) / r)
                if cs is not None:
                    part = part + (inner_switch(r, cs[0], cs[1]) - 1.0) * k
                e = e + self.k_e * q[i] * q[j] * part
            ds = self.dispersion_switch
            if c is not None and rho is not None and r6_calc is not None:
                k = 1.0 / (r2 * r2 * r2 + (rho[i] + rho[j]) ** 6)
                part = fade * (k - r6_calc.potential.lr_from_dist(r))
                if ds is not None:
                    part = part + (inner_switch(r, ds[0], ds[1]) - 1.0) * k
                e = e - c[i] * c[j] * part
            energy = energy.index_add(0, i, 0.5 * e)
        if c is not None and rho is not None:
            # the damping remainder 1/(r^6 + R0^6) - 1/r^6 ~ -R0^6 / r^12 of the real-space part decays as a
            # power: its faded-out tail, for a uniform density beyond the cutoff, is added back (an error of
            # 1.8e-6 eV of 0.07 eV in a 7 Å cell of 6 atoms without it, 2e-7 with it)
            a: List[Tensor] = []
            for m in range(7):
                a.append((c * rho**m).sum())  # A_m = sum_j c_j rho_j^m
            mixed = torch.zeros_like(rho)
            for k in range(7):  # sum_j c_j (rho_i + rho_j)^6
                mixed = mixed + self.binomial6[k] * rho**k * a[6 - k]
            volume = torch.abs(torch.linalg.det(cell))
            energy = energy + self.r12_tail / (2.0 * volume) * c * mixed
        # reciprocal space (torch-pme, its real-space part left empty: it is done above)
        empty = torch.zeros((0, 2), dtype=torch.int64, device=pos.device)
        none = torch.zeros(0, dtype=pos.dtype, device=pos.device)
        if q is not None and coulomb_calc is not None:
            energy = energy + q * coulomb_calc(q[:, None], cell, pos, empty, none)[:, 0]
        if c is not None and r6_calc is not None:
            energy = energy - c * r6_calc(c[:, None], cell, pos, empty, none)[:, 0]
        return energy
