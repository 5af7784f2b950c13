"""Physical long-range terms with learned parameters: per-component conserved charges with smeared Coulomb
electrostatics, and Becke-Johnson-damped C6 dispersion (issue #15, item 1; see docs/LONG_RANGE.md).

Used by :class:`~muse_ff.nn.model.MuSEModel` with ``model.physical`` (:class:`~muse_ff.config.PhysicalConfig`).

Charges (:class:`ChargeHead`, :func:`equilibrate_charges`). An MLP on each atom's invariant features gives a
raw charge ``q~_i``; the excess of each covalently connected component ``c`` is spread evenly over its
``n_c`` atoms,

    q_i = q~_i - (sum_{j in c(i)} q~_j - Q_c) / n_c,

so every component carries exactly its given total charge ``Q_c`` (default 0: neutral molecules stay
neutral, an ion keeps its charge, and no charge moves between molecules however far apart they are).

Electrostatics (:func:`coulomb_energy`). Gaussian-smeared charges, pair kernel ``erf(r / (sqrt(2) sigma)) /
r`` (two Gaussian clouds of width ``sigma / sqrt(2)`` each; 1/r beyond a few sigma, finite at r = 0):

    E_el = k_e sum_{i<j} q_i q_j s_el(r_ij) erf(r_ij / (sqrt(2) sigma)) / r_ij,    k_e = 14.399645 eV Å / e^2.

Dispersion (:class:`DispersionHead`, :func:`dispersion_energy`). Becke-Johnson rational damping
(A. D. Becke, E. R. Johnson, J. Chem. Phys. 123, 154101 (2005); S. Grimme, S. Ehrlich, L. Goerigk, J. Comput.
Chem. 32, 1456 (2011)) of a C6 / r^6 tail with environment-dependent C6 (combined as a geometric mean, as in
D2: S. Grimme, J. Comput. Chem. 27, 1787 (2006)) and learned per-species radii:

    E_disp = - sum_{i<j} s_disp(r_ij) C6_ij / (r_ij^6 + R0_ij^6),   C6_ij = sqrt(C6_i C6_j),  R0_ij = rho_Zi + rho_Zj.

``s_el``, ``s_disp``: optional short-range switches (:func:`~muse_ff.nn.radial.inner_switch`: 0 below
``r_on``, 1 above ``r_off``, first three derivatives continuous), default off (1 everywhere).

Sums. Free frames (no periodic direction): every pair of the frame, no cutoff; a large frame in blocks of
rows, with analytic first derivatives summed block by block, so that the memory of energy + forces stays
bounded (:class:`_FreeSum`; a differentiable backward pass, for force training or Hessians, recomputes the
blocks with autograd and so keeps O(n^2) memory). Fully periodic frames: Ewald summation with `torch-pme
<https://github.com/lab-cosmo/torch-pme>`_ over all images, both terms, split at a Gaussian width ``s >=
sigma`` (:class:`EwaldSettings`): the reciprocal part (torch-pme's ``EwaldCalculator`` or
``PMECalculator`` with ``CoulombPotential`` / ``InversePowerLawPotential(exponent=6)``), plus a real-space
part over a vesin neighbour list (the kernel minus torch-pme's long-range part, faded out by a C3 switch over
the last ``switch_width`` Å of the real-space cutoff, plus the short-range switch correction). A charged
periodic cell gets the uniform-background convention (the k = 0 term of the smeared kernel omitted). Frames
periodic along one or two directions only raise :class:`PeriodicityError`.

Per-atom energies: each pair's energy is split half and half between its two atoms. Forces, stress and
Hessians are exact derivatives (autograd, and the analytic block derivatives of large free frames).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np
import torch
from ase import units
from ase.data import covalent_radii
from torch import nn

from muse_ff.errors import MuseError
from muse_ff.nn.radial import inner_switch

#: Coulomb constant e^2 / (4 pi eps0) in eV Å / e^2 (14.399645)
COULOMB = float(units.Hartree * units.Bohr)

#: pairs per block of the direct (free-frame) sum: a frame with up to this many pairs is one autograd block;
#: a larger one goes block by block through :class:`_FreeSum`, each block's ~20 [rows, n] temporaries taking
#: ~0.3 GB in float64 (energy + forces of a free 10k-atom frame, both terms: 0.43 GB peak added memory)
PAIR_BLOCK = 2**21

#: most (wavevectors x atoms) of a periodic Ewald reciprocal sum (each of torch-pme's several [k, n] arrays
#: then takes 0.8 GB in float64); a larger one raises :class:`EwaldSizeError` (use ``method="pme"``)
MAX_EWALD_TERMS = 10**8

#: ``method="auto"`` uses Ewald up to this many (wavevectors x atoms) terms, or up to twice PME's mesh points
#: (a few atoms in a large box), and PME beyond: Ewald up to about 250 atoms of liquid water at the default
#: split, where both take the same time (measured: 0.18 s for 192 atoms either way, energy + forces of both
#: terms; 1.08 vs 0.49 s at 600 atoms, 3.0 vs 0.84 s at 1000, one thread)
AUTO_EWALD_TERMS = 10**6

Switch = tuple[float, float] | None


class PeriodicityError(MuseError, ValueError):
    """A frame periodic along one or two directions only (slab, wire): not supported by the physical terms."""


class EwaldSizeError(MuseError, ValueError):
    """A periodic cell whose Ewald reciprocal sum would exceed :data:`MAX_EWALD_TERMS`."""


@dataclass(frozen=True)
class EwaldSettings:
    """How fully periodic frames are summed.

    Args:
        cutoff: real-space cutoff (Å) of the Ewald split.
        switch_width: the real-space part fades out smoothly (C3) over ``[cutoff - switch_width, cutoff]``.
        smearing: Gaussian width ``s`` (Å) splitting real and reciprocal space; default ``max(sigma,
            (cutoff - switch_width) / 6.25)`` (1.6 Å by default), so the neglected real-space remainder is
            ``erfc(4.42) = 2.6e-10`` of the bare Coulomb kernel at ``cutoff - switch_width`` (and ``Q(3, 19.5) =
            7e-7`` of the bare r^-6 kernel).
        wavelength: torch-pme's ``lr_wavelength`` (Å); default ``s / 2``. torch-pme keeps, along each lattice
            vector of length L, the wavevector indices ``|m| <= ceil(L / wavelength) / 2`` (``fftfreq``), so
            ``|k| <= pi / wavelength = 2 pi / s``, where the Gaussian factor ``exp(-s^2 k^2 / 2)`` of the
            reciprocal kernel has fallen to ``exp(-2 pi^2) = 2.7e-9``.
        method: ``"ewald"`` (torch-pme's explicit wavevector sum: (number of wavevectors) x atoms terms, exact
            to the above), ``"pme"`` (particle mesh, O(N log N), error ~1e-6 of the energy at the default
            mesh and order), or ``"auto"`` (default): Ewald for small sums (:data:`AUTO_EWALD_TERMS`),
            PME beyond.
        mesh_spacing: torch-pme's PME ``mesh_spacing`` (Å; its mesh has ``2 L / mesh_spacing + 1`` points
            along a lattice vector of length L, rounded up to a power of 2); default ``s / 2``.
        interpolation_nodes: PME interpolation order (3..7).
    """

    cutoff: float = 12.0
    switch_width: float = 2.0
    smearing: float | None = None
    wavelength: float | None = None
    method: str = "auto"
    mesh_spacing: float | None = None
    interpolation_nodes: int = 5

    def __post_init__(self):
        if not 0 < self.switch_width < self.cutoff:
            raise ValueError(f"EwaldSettings: switch_width {self.switch_width} must be in (0, cutoff = "
                             f"{self.cutoff})")
        if self.method not in ("auto", "ewald", "pme"):
            raise ValueError(f"EwaldSettings: method {self.method!r} is not 'auto', 'ewald' or 'pme'")

    def split(self, sigma: float) -> float:
        """The splitting width ``s`` for charges of smearing ``sigma`` (never below ``sigma``)."""
        if self.smearing is not None:
            if self.smearing < sigma:
                raise ValueError(f"EwaldSettings: smearing {self.smearing} Å is below the charge smearing "
                                 f"{sigma} Å; the real-space part would need a larger cutoff")
            return float(self.smearing)
        return max(float(sigma), (self.cutoff - self.switch_width) / 6.25)


# ----------------------------------------------------------------------------------------------- charges


def wrap_into_cell(pos: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
    """[n, 3] positions moved by whole lattice vectors into the cell [3, 3] (in the positions' dtype; the
    integer shifts carry no gradient), as torch-pme takes absolute positions. TorchScript-compatible."""
    frac = torch.linalg.solve(cell.transpose(0, 1), pos.transpose(0, 1)).transpose(0, 1)
    return pos - torch.floor(frac.detach()) @ cell


def atom_frames(ptr: torch.Tensor) -> torch.Tensor:
    """[n] frame index of each atom from the frame offsets ``ptr`` [B + 1]."""
    counts = (ptr[1:] - ptr[:-1]).to(torch.int64)
    return torch.repeat_interleave(torch.arange(counts.numel(), device=ptr.device), counts)


def equilibrate_charges(raw: torch.Tensor, component: torch.Tensor, total: Optional[torch.Tensor] = None,
                        num_components: Optional[int] = None) -> torch.Tensor:
    """[n, ...] charges summing exactly to each component's total: ``q_i = q~_i - (sum_c q~ - Q_c) / n_c``.

    Args:
        raw: [n] raw charges ``q~`` (e), or [n, K]: K channels, each summing to the total.
        component: [n] int64 component of each atom (global over the batch, 0..C-1).
        total: [C] total charge ``Q_c`` (e) of each component; default zeros.
        num_components: C, if ``total`` is not given (default ``component.max() + 1``).

    TorchScript-compatible (the exported model, :mod:`muse_ff.export_terms`, calls it).
    """
    if total is not None:
        count = int(total.numel())
    elif num_components is not None:
        count = int(num_components)
    else:
        count = int(component.max()) + 1 if component.numel() > 0 else 0
    ones = torch.ones(raw.shape[0], dtype=raw.dtype, device=raw.device)
    n_c = torch.zeros(count, dtype=raw.dtype, device=raw.device).index_add_(0, component, ones)
    rest: List[int] = list(raw.shape[1:])
    sums = torch.zeros([count] + rest, dtype=raw.dtype, device=raw.device).index_add(0, component, raw)
    if total is None:
        target = torch.zeros_like(sums)
    else:
        target = total.to(device=raw.device, dtype=raw.dtype)
    if target.dim() < sums.dim():
        target = target.reshape([count] + [1] * (sums.dim() - 1))
    excess = (sums - target) / n_c.clamp(min=1.0).reshape([count] + [1] * (sums.dim() - 1))
    return raw - excess[component]


def atoms_component_charges(atoms, component: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The covalent components of an ASE ``atoms`` and their total charges, by the model's own rule
    (:func:`muse_ff.data.atoms.frame_charges` and :func:`muse_ff.nn.charges.charge_groups`), strictly: where the
    model would pool the charge of a charged frame of several molecules over them (and warn), this raises.

    Sources, in order: per-atom ``initial_charges`` (``atoms.set_initial_charges``) summed per component, if
    any is non-zero; else ``atoms.info['charge']`` (the frame's total charge, as read by the xTB teachers),
    which must be 0 unless the frame is a single component (a charged frame of several molecules does not say
    which one carries the charge: :class:`ValueError`); else 0 for every component.

    Args:
        atoms: the structure.
        component: [n] component of each atom (0..C-1); default from
            :func:`muse_ff.nn.coarsening.bond_graph`, as ``MuSEModel.prepare`` assigns them.
    Returns:
        ``(component [n] int64, charge [C] float64)``.
    """
    import warnings

    from muse_ff.data.atoms import frame_charges
    from muse_ff.nn.charges import ChargeAmbiguityWarning, charge_groups

    if component is None:
        from muse_ff.nn.coarsening import bond_graph

        component = bond_graph(atoms.positions, atoms.numbers, np.asarray(atoms.cell), atoms.pbc).component
    component = np.asarray(component, dtype=np.int64)
    count = int(component.max()) + 1 if len(component) else 0
    if count == 0:
        return component, np.zeros(0)
    charge, _, formal = frame_charges(atoms)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ChargeAmbiguityWarning)
        group, value = charge_groups(torch.as_tensor(component), torch.tensor([0, len(component)]),
                                     torch.tensor([charge], dtype=torch.float64),
                                     None if formal is None else torch.as_tensor(formal))
    if len(value) < count:
        raise ValueError(f"total charge {charge:g} e of a frame with {count} covalent components: say which "
                         "component carries it with per-atom initial_charges (atoms.set_initial_charges)")
    first = np.unique(component, return_index=True)[1]
    return component, value.numpy()[group.numpy()[first]].astype(np.float64)


class ChargeHead(nn.Module):
    """Per-atom charges (e) from invariant features, summing exactly to each component's total charge.

    Args:
        features: width F of the invariant features.
        hidden: hidden width of the MLP.
    """

    def __init__(self, features: int, hidden: int = 32):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(features, hidden), nn.SiLU(), nn.Linear(hidden, 1))

    def raw(self, scalars: torch.Tensor) -> torch.Tensor:
        """[n] raw (unconstrained) charges from ``scalars`` [n, F]."""
        return self.mlp(scalars).squeeze(-1)

    def forward(self, scalars: torch.Tensor, component: torch.Tensor,
                total: Optional[torch.Tensor] = None) -> torch.Tensor:
        """[n] charges; ``component`` [n] (global over the batch), ``total`` [C] (default zeros)."""
        return equilibrate_charges(self.raw(scalars), component, total)


class DispersionHead(nn.Module):
    """Per-atom C6 coefficients (eV Å^6) from invariant features, and learned per-species damping radii (Å).

    ``C6_i = c6_scale * softplus(m_i)^2`` with ``m_i`` an MLP of the features; the last layer starts with small
    weights and a bias ``log(e - 1)`` (softplus = 1), so every atom starts near ``c6_scale`` (10 eV Å^6 = 16.7
    Hartree bohr^6, between the free-atom values of O, 15.6, and N, 24.2, and those of H, 6.5, and C, 46.6:
    A. Tkatchenko, M. Scheffler, Phys. Rev. Lett. 102, 073005 (2009)). The square of a softplus (rather than a
    softplus) keeps ``C6_i >= 0`` and makes ``sqrt(C6_i)``, which is what the sums use, smooth everywhere.

    ``rho_Z = softplus(p_Z)``, one parameter per element, starting at the covalent radius + ``radius_offset``
    (C: 1.76 Å, so R0_CC = 3.5 Å, the few-Å scale of D3(BJ)'s damping radii; learned from there).
    """

    def __init__(self, features: int, hidden: int = 32, c6_scale: float = 10.0, radius_offset: float = 1.0):
        super().__init__()
        self.c6_scale = float(c6_scale)
        self.mlp = nn.Sequential(nn.Linear(features, hidden), nn.SiLU(), nn.Linear(hidden, 1))
        with torch.no_grad():
            self.mlp[-1].weight.mul_(0.1)
            self.mlp[-1].bias.fill_(math.log(math.e - 1.0))
        rho = torch.as_tensor(covalent_radii, dtype=torch.get_default_dtype()) + radius_offset
        self.raw_radius = nn.Parameter(rho + torch.log(-torch.expm1(-rho)))  # softplus^-1

    def sqrt_c6(self, scalars: torch.Tensor) -> torch.Tensor:
        """[n] ``sqrt(C6_i)`` (eV^1/2 Å^3)."""
        return math.sqrt(self.c6_scale) * nn.functional.softplus(self.mlp(scalars).squeeze(-1))

    def c6(self, scalars: torch.Tensor) -> torch.Tensor:
        """[n] ``C6_i`` (eV Å^6)."""
        return self.sqrt_c6(scalars) ** 2

    def radii(self, species: torch.Tensor) -> torch.Tensor:
        """[n] damping radius ``rho_Z`` (Å) of each atom (``R0_ij = rho_i + rho_j``)."""
        return nn.functional.softplus(self.raw_radius)[species]


# ------------------------------------------------------------------------------------------- the sums


@dataclass(frozen=True)
class _Terms:
    """Hyper-parameters shared by both sums (the per-atom tensors travel separately)."""

    sigma: float
    coulomb_switch: Switch
    dispersion_switch: Switch
    ewald: EwaldSettings
    pair_block: int


def _check_switch(switch: Switch, name: str) -> Switch:
    if switch is None:
        return None
    r_on, r_off = float(switch[0]), float(switch[1])
    if not 0 <= r_on < r_off:
        raise ValueError(f"{name}: switch (r_on, r_off) = {switch} must satisfy 0 <= r_on < r_off")
    return r_on, r_off


def pair_energies(r: torch.Tensor, r2: torch.Tensor, qi: Optional[torch.Tensor], qj: Optional[torch.Tensor],
                  ci: Optional[torch.Tensor], cj: Optional[torch.Tensor], r0: Optional[torch.Tensor], sigma: float,
                  coulomb_switch: Optional[Tuple[float, float]],
                  dispersion_switch: Optional[Tuple[float, float]], k_e: float = COULOMB) -> torch.Tensor:
    """Pair energies (eV) of both terms at distances ``r`` (``r2 = r^2``), no Ewald split (free frames);
    ``qi``/``qj`` None leaves electrostatics out, ``ci``/``cj``/``r0`` None dispersion. TorchScript-compatible."""
    e = torch.zeros_like(r)
    if qi is not None and qj is not None:
        k = torch.special.erf(r / (math.sqrt(2.0) * sigma)) / r
        if coulomb_switch is not None:
            k = k * inner_switch(r, coulomb_switch[0], coulomb_switch[1])
        e = e + k_e * qi * qj * k
    if ci is not None and cj is not None and r0 is not None:
        k = 1.0 / (r2 * r2 * r2 + r0**6)
        if dispersion_switch is not None:
            k = k * inner_switch(r, dispersion_switch[0], dispersion_switch[1])
        e = e - ci * cj * k
    return e


def free_rows(lo: int, hi: int, pos: torch.Tensor, q: Optional[torch.Tensor], c: Optional[torch.Tensor],
              rho: Optional[torch.Tensor], sigma: float, coulomb_switch: Optional[Tuple[float, float]],
              dispersion_switch: Optional[Tuple[float, float]]) -> torch.Tensor:
    """[hi - lo] energies of atoms lo..hi-1 of a free frame: half of their pair energies with every atom.
    TorchScript-compatible (the exported model sums free frames with it, in blocks of rows)."""
    n = pos.shape[0]
    d = pos[None, :, :] - pos[lo:hi, None, :]
    same = torch.arange(lo, hi, device=pos.device)[:, None] == torch.arange(n, device=pos.device)[None, :]
    r2 = torch.where(same, torch.ones_like(d[..., 0]), (d * d).sum(-1))  # 1 on the diagonal: no sqrt(0)
    r = torch.sqrt(r2)
    qi: Optional[torch.Tensor] = None
    qj: Optional[torch.Tensor] = None
    ci: Optional[torch.Tensor] = None
    cj: Optional[torch.Tensor] = None
    r0: Optional[torch.Tensor] = None
    if q is not None:
        qi, qj = q[lo:hi, None], q[None, :]
    if c is not None and rho is not None:
        ci, cj, r0 = c[lo:hi, None], c[None, :], rho[lo:hi, None] + rho[None, :]
    e = pair_energies(r, r2, qi, qj, ci, cj, r0, sigma, coulomb_switch, dispersion_switch)
    return 0.5 * torch.where(same, torch.zeros_like(e), e).sum(1)


def _free_rows(lo: int, hi: int, pos, q, c, rho, terms: _Terms) -> torch.Tensor:
    """:func:`free_rows` with the settings of ``terms``."""
    return free_rows(lo, hi, pos, q, c, rho, terms.sigma, terms.coulomb_switch, terms.dispersion_switch)


def _switch_and_slope(r: torch.Tensor, switch: Switch):
    """:func:`inner_switch` and its derivative in r (``140 x^3 (1 - x)^3 / (r_off - r_on)``)."""
    if switch is None:
        return torch.ones_like(r), torch.zeros_like(r)
    a, b = switch
    x = ((r - a) / (b - a)).clamp(0.0, 1.0)
    return x**4 * (35.0 - x * (84.0 - x * (70.0 - 20.0 * x))), 140.0 * (x * (1.0 - x)) ** 3 / (b - a)


def _free_rows_grad(lo: int, hi: int, pos, q, c, rho, g, terms: _Terms):
    """Gradients of ``sum_i g_i e_i`` (``e`` from :func:`_free_rows`) on atoms lo..hi-1, analytically and
    without an autograd graph: ``sum_{i<j} w_ij E_ij`` with ``w_ij = (g_i + g_j) / 2``, so for atom a,
    ``d/dx_a = sum_j w_aj E'(r_aj) (x_a - x_j) / r_aj``, ``d/dq_a = sum_j w_aj dE_aj/dq_a``, and so on.
    ``g=None``: all ``g_i = 1``; the energies ``e`` of the rows are then returned as well (one pass).
    Returns ``(d/dpos [m, 3], d/dq, d/dc, d/drho [m] or None)`` (and ``e`` [m] if ``g`` is None)."""
    n = pos.shape[0]
    d = pos[lo:hi, None, :] - pos[None, :, :]  # x_a - x_j
    same = torch.arange(lo, hi, device=pos.device)[:, None] == torch.arange(n, device=pos.device)[None, :]
    r2 = (d * d).sum(-1).masked_fill_(same, 1.0)
    r = torch.sqrt(r2)
    inv_r = torch.reciprocal(r).masked_fill_(same, 0.0)  # zero on the diagonal: no self pair
    w = None if g is None else 0.5 * (g[lo:hi, None] + g[None, :])
    dedr = torch.zeros_like(r)
    e = torch.zeros_like(r) if g is None else None
    gq = gc = grho = None
    if q is not None:
        phi = torch.special.erf(r * (1.0 / (math.sqrt(2.0) * terms.sigma))).mul_(inv_r)
        dphi = torch.exp(r2 * (-0.5 / terms.sigma**2)).mul_(math.sqrt(2.0 / math.pi) / terms.sigma).sub_(phi)
        dphi.mul_(inv_r)  # d/dr erf(r / sqrt2 sigma) / r
        if terms.coulomb_switch is not None:
            sw, dsw = _switch_and_slope(r, terms.coulomb_switch)
            dphi = dphi.mul_(sw).add_(dsw * phi)
            phi = phi.mul_(sw)
        qj = COULOMB * q[None, :]
        kq = phi * qj if w is None else phi * qj * w  # w_aj k_e q_j s phi
        gq = kq.sum(1)
        dedr.add_(dphi.mul_(qj).mul_(q[lo:hi, None]))
        if e is not None:
            e.add_(kq.mul_(q[lo:hi, None]))
    if c is not None:
        r0 = rho[lo:hi, None] + rho[None, :]
        r06 = r0**6
        dd = torch.reciprocal(r2 * r2 * r2 + r06).masked_fill_(same, 0.0)  # D; dD/dr = -6 r^5 D^2
        dd2 = dd * dd
        sw = None
        if terms.dispersion_switch is not None:
            sw, dsw = _switch_and_slope(r, terms.dispersion_switch)
        cj = c[None, :] if w is None else c[None, :] * w
        ksw = dd if sw is None else dd * sw
        gc = -(ksw * cj).sum(1)
        grho = (dd2 if sw is None else dd2 * sw).mul_(r06 / r0).mul_(cj).sum(1).mul_(6.0 * c[lo:hi])
        slope = (r2 * r2 * r).mul_(dd2).mul_(-6.0)  # dD/dr
        if sw is not None:
            slope = slope.mul_(sw).add_(dsw * dd)
        cc = c[lo:hi, None] * c[None, :]
        dedr.sub_(slope.mul_(cc))
        if e is not None:
            e.sub_(ksw * cc)
    coef = dedr.mul_(inv_r) if w is None else dedr.mul_(inv_r).mul_(w)  # w_aj E'_aj / r_aj
    gpos = torch.bmm(coef[:, None, :], d)[:, 0]  # sum_j coef_aj (x_a - x_j), no cancellation
    if e is not None:
        return (gpos, gq, gc, grho), 0.5 * e.sum(1)
    return gpos, gq, gc, grho


_LIBC: list = []


def _release_memory() -> None:
    """Hand the freed heap back to the system (glibc ``malloc_trim``; a no-op elsewhere).

    Between blocks of a large free-frame sum: glibc otherwise keeps the freed blocks' arrays, allocated with
    64-byte alignment between small long-lived objects, and reuses them poorly, so the resident memory of a
    10k-atom energy + forces grew to 2.2-3.4 GB in some runs (block sizes 2^16 to 2^21 pairs) instead of the
    0.1-0.4 GB that one block needs.
    """
    if not _LIBC:
        try:
            import ctypes

            _LIBC.append(ctypes.CDLL("libc.so.6").malloc_trim)
        except (OSError, AttributeError):
            _LIBC.append(None)
    if _LIBC[0] is not None:
        _LIBC[0](0)


class _FreeSum(torch.autograd.Function):
    """Per-atom energies of a free frame in blocks of rows, with no [n, n] array kept.

    The forward pass runs block by block without an autograd graph and, when a gradient may be asked for,
    also sums each atom's analytic derivatives for unit weights (:func:`_free_rows_grad`, [n]-sized). The
    backward pass then only scales them where the incoming gradient is the same for every atom of the frame
    (forces of its energy, any loss on the energy: the usual case); another one recomputes the blocks
    analytically with its weights; and a backward pass that must itself be differentiated (``create_graph``:
    training on forces, Hessians) recomputes the blocks with autograd, keeping their graphs (O(n^2) memory).
    """

    @staticmethod
    def forward(ctx, terms, rows, pos, q, c, rho):
        ctx.terms, ctx.rows = terms, rows
        ctx.save_for_backward(pos, q, c, rho)
        n = pos.shape[0]
        energies, grads = [], []
        for lo in range(0, n, rows):
            if any(ctx.needs_input_grad[2:]):
                parts, e = _free_rows_grad(lo, min(n, lo + rows), pos, q, c, rho, None, terms)
                grads.append(parts)
            else:
                e = _free_rows(lo, min(n, lo + rows), pos, q, c, rho, terms)
            energies.append(e)
            _release_memory()
        if not grads:
            ctx.unit = None
            return torch.cat(energies)
        ctx.unit = [None if grads[0][k] is None else torch.cat([p[k] for p in grads]) for k in range(4)]
        return torch.cat(energies)

    @staticmethod
    def backward(ctx, g):
        pos, q, c, rho = ctx.saved_tensors
        terms, rows, n = ctx.terms, ctx.rows, pos.shape[0]
        wanted = [t is not None and need for t, need in zip((pos, q, c, rho), ctx.needs_input_grad[2:])]
        if torch.is_grad_enabled():  # create_graph: differentiable recomputation, block by block
            inputs = [t for t, want in zip((pos, q, c, rho), wanted) if want]
            total = [torch.zeros_like(t) for t in inputs]
            for lo in range(0, n, rows):
                e = _free_rows(lo, min(n, lo + rows), pos, q, c, rho, terms)
                parts = torch.autograd.grad(e, inputs, g[lo:lo + rows], create_graph=True, allow_unused=True)
                total = [t if p is None else t + p for t, p in zip(total, parts)]
            it = iter(total)
            return (None, None) + tuple(next(it) if want else None for want in wanted)
        if ctx.unit is not None and bool((g == g[0]).all()):  # uniform weights: the forward's sums, scaled
            return (None, None) + tuple(u * g[0] if want else None for u, want in zip(ctx.unit, wanted))
        out = [torch.zeros_like(t) if want else None for t, want in zip((pos, q, c, rho), wanted)]
        for lo in range(0, n, rows):
            hi = min(n, lo + rows)
            parts = _free_rows_grad(lo, hi, pos, q, c, rho, g, terms)
            for k, part in enumerate(parts):
                if out[k] is not None and part is not None:
                    out[k][lo:hi] += part
            _release_memory()
        return (None, None) + tuple(out)


def _free_frame(pos, q, c, rho, terms: _Terms) -> torch.Tensor:
    """[n] per-atom energies of a free frame: all pairs, in blocks of rows when the frame is large."""
    n = pos.shape[0]
    rows = max(1, terms.pair_block // max(n, 1))
    if rows >= n:
        return _free_rows(0, n, pos, q, c, rho, terms)
    return _FreeSum.apply(terms, rows, pos, q, c, rho)


_SUMS: dict = {}


def _periodic_sum(terms: _Terms, split_el: float, split_disp: float, method_el, method_disp, device, dtype):
    """The cached :class:`~muse_ff.nn.ewald.PeriodicSum` of these settings (its torch-pme calculators are built
    once per settings, methods, device and dtype)."""
    key = (terms, split_el, split_disp, method_el, method_disp, device, dtype)
    if key not in _SUMS:
        from muse_ff.nn.ewald import PeriodicSum

        ew = terms.ewald
        _SUMS[key] = PeriodicSum(terms.sigma, terms.coulomb_switch, terms.dispersion_switch, ew.cutoff,
                                 ew.switch_width, split_el, split_disp, method_el, method_disp, ew.wavelength,
                                 ew.mesh_spacing, ew.interpolation_nodes, _r12_tail(ew)).to(device=device,
                                                                                            dtype=dtype)
    return _SUMS[key]


def _method(cell: torch.Tensor, n: int, split: float, ewald: EwaldSettings) -> str:
    """``"ewald"`` or ``"pme"`` for this cell (``"auto"`` resolved), refusing an Ewald sum that is too large."""
    if ewald.method == "pme":
        return "pme"
    lam = ewald.wavelength or split / 2.0
    ns = [max(1, math.ceil(float(torch.linalg.norm(a)) / lam)) for a in cell.detach()]
    count = ns[0] * ns[1] * ns[2]
    if ewald.method == "auto":
        # PME's cost grows with its mesh (torch-pme: 2 L / spacing + 1 points per lattice vector, rounded up to
        # a power of 2), Ewald's with wavevectors x atoms: a few atoms in a large box go to Ewald
        h = ewald.mesh_spacing or split / 2.0
        mesh = math.prod(2 ** math.ceil(math.log2(2.0 * float(torch.linalg.norm(a)) / h + 1.0))
                         for a in cell.detach())
        terms = count * max(n, 1)
        return "ewald" if terms <= max(AUTO_EWALD_TERMS, min(2 * mesh, MAX_EWALD_TERMS)) else "pme"
    if count * max(n, 1) > MAX_EWALD_TERMS:
        lengths = [round(float(torch.linalg.norm(a)), 3) for a in cell.detach()]
        raise EwaldSizeError(f"physical long-range: a periodic cell of {lengths} Å with {n} atoms needs {count} "
                             f"wavevectors x atoms = {count * n:.3g} Ewald terms, more than {MAX_EWALD_TERMS:.0e};"
                             " use EwaldSettings(method='pme')")
    return "ewald"


def _r12_tail(ew: EwaldSettings) -> float:
    """``4 pi int (1 - fade(r)) r^2 r^-12 dr`` over all r, ``fade`` the real-space switch of ``ew``."""
    a, b = ew.cutoff - ew.switch_width, ew.cutoff
    x, w = np.polynomial.legendre.leggauss(64)
    r = 0.5 * (b - a) * (x + 1.0) + a
    t = (r - a) / (b - a)
    switch = t**4 * (35.0 - t * (84.0 - t * (70.0 - 20.0 * t)))
    return 4.0 * math.pi * (0.5 * (b - a) * float(np.sum(w * switch * r**-10.0)) + b**-9.0 / 9.0)


def _periodic_frame(pos, cell, q, c, rho, terms: _Terms) -> torch.Tensor:
    """[n] per-atom energies of a fully periodic frame: torch-pme reciprocal sums + real-space remainder
    (:class:`~muse_ff.nn.ewald.PeriodicSum`, with the methods resolved for this cell)."""
    ew = terms.ewald
    n = pos.shape[0]
    if n == 0:
        return pos.new_zeros(0)
    s_el, s_d = ew.split(terms.sigma), ew.split(0.0)
    m_el = _method(cell, n, s_el, ew) if q is not None else None
    m_d = _method(cell, n, s_d, ew) if c is not None else None
    return _periodic_sum(terms, s_el, s_d, m_el, m_d, pos.device, pos.dtype)(pos, cell, q, c, rho)


def _long_range(positions, cell, pbc, ptr, q, c, rho, terms: _Terms) -> torch.Tensor:
    """[n] per-atom energies of both terms (``q`` or ``c``/``rho`` None to leave one out), frame by frame."""
    dtype = positions.dtype
    for t in (q, c, rho):
        if t is not None:
            dtype = torch.promote_types(dtype, t.dtype)
    cast = lambda t: None if t is None else t.to(dtype)  # noqa: E731
    positions, cell, q, c, rho = cast(positions), cast(cell), cast(q), cast(c), cast(rho)
    out = []
    for b in range(int(ptr.numel()) - 1):
        lo, hi = int(ptr[b]), int(ptr[b + 1])
        sl = slice(lo, hi)
        qs, cs, rs = (None if t is None else t[sl] for t in (q, c, rho))
        periodic = pbc[b]
        if bool(periodic.all()):
            out.append(_periodic_frame(positions[sl], cell[b], qs, cs, rs, terms))
        elif not bool(periodic.any()):
            out.append(_free_frame(positions[sl], qs, cs, rs, terms))
        else:
            raise PeriodicityError(
                f"physical long-range terms: frame {b} is periodic along {[bool(x) for x in periodic]} only (a "
                "slab or a wire); only fully periodic or fully free frames are supported (no 1D/2D Ewald "
                "correction yet)")
    if not out:
        return torch.zeros(0, dtype=dtype, device=positions.device)
    return torch.cat(out)


def coulomb_energy(charges: torch.Tensor, positions: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor,
                   ptr: torch.Tensor, *, smearing: float = 1.0, switch: Switch = None,
                   ewald: EwaldSettings | None = None, pair_block: int = PAIR_BLOCK) -> torch.Tensor:
    """[n] electrostatic energy per atom (eV) of Gaussian-smeared charges.

    ``E = k_e sum_{i<j} q_i q_j s(r_ij) erf(r_ij / (sqrt(2) sigma)) / r_ij`` over every pair of a free frame
    and over all periodic images in a fully periodic one, half of each pair to each atom.

    Args:
        charges: [n] (e).
        positions: [n, 3] (Å); ``cell`` [B, 3, 3] (Å, rows); ``pbc`` [B, 3] bool; ``ptr`` [B + 1].
        smearing: sigma (Å).
        switch: ``(r_on, r_off)`` of an optional short-range switch ``s`` (0 below r_on, 1 above r_off).
        ewald: settings of periodic frames (default :class:`EwaldSettings`).
        pair_block: pairs per block of the free-frame sum.
    """
    terms = _Terms(float(smearing), _check_switch(switch, "coulomb"), None, ewald or EwaldSettings(),
                   int(pair_block))
    return _long_range(positions, cell, pbc, ptr, charges, None, None, terms)


def dispersion_energy(c6: torch.Tensor, radii: torch.Tensor, positions: torch.Tensor, cell: torch.Tensor,
                      pbc: torch.Tensor, ptr: torch.Tensor, *, switch: Switch = None,
                      ewald: EwaldSettings | None = None, pair_block: int = PAIR_BLOCK) -> torch.Tensor:
    """[n] dispersion energy per atom (eV): ``E = - sum_{i<j} s(r) sqrt(C6_i C6_j) / (r^6 + (rho_i + rho_j)^6)``.

    Args:
        c6: [n] C6_i (eV Å^6, >= 0).
        radii: [n] rho_i (Å), ``R0_ij = rho_i + rho_j``.
        positions, cell, pbc, ptr, switch, ewald, pair_block: as in :func:`coulomb_energy`.
    """
    terms = _Terms(1.0, None, _check_switch(switch, "dispersion"), ewald or EwaldSettings(), int(pair_block))
    return _long_range(positions, cell, pbc, ptr, None, torch.sqrt(c6), radii, terms)


class PhysicalLongRange(nn.Module):
    """Learned charges and C6 from invariant atom features, with their electrostatic and dispersion energies.

    Args:
        features: width F of the invariant features read.
        hidden: hidden width of both heads.
        electrostatics, dispersion: which terms to include.
        smearing: charge smearing sigma (Å), one fixed hyper-parameter (see docs/LONG_RANGE.md).
        coulomb_switch, dispersion_switch: optional ``(r_on, r_off)`` short-range switches (default none).
        ewald: settings of periodic frames.
        c6_scale, radius_offset: initial scales of :class:`DispersionHead`.
        pair_block: pairs per block of free-frame sums.
    """

    def __init__(self, features: int, hidden: int = 32, electrostatics: bool = True, dispersion: bool = True,
                 smearing: float = 1.0, coulomb_switch: Switch = None, dispersion_switch: Switch = None,
                 ewald: EwaldSettings | None = None, c6_scale: float = 10.0, radius_offset: float = 1.0,
                 pair_block: int = PAIR_BLOCK):
        super().__init__()
        if not (electrostatics or dispersion):
            raise ValueError("PhysicalLongRange: enable electrostatics, dispersion or both")
        self.charge_head = ChargeHead(features, hidden) if electrostatics else None
        self.dispersion_head = DispersionHead(features, hidden, c6_scale, radius_offset) if dispersion else None
        self.terms = _Terms(float(smearing), _check_switch(coulomb_switch, "coulomb_switch"),
                            _check_switch(dispersion_switch, "dispersion_switch"), ewald or EwaldSettings(),
                            int(pair_block))

    def charges(self, scalars: torch.Tensor, component: torch.Tensor,
                component_charge: torch.Tensor | None = None) -> torch.Tensor:
        """[n] charges (e), summing to ``component_charge`` [C] (default 0) over each component."""
        return self.charge_head(scalars, component, component_charge)

    def forward(self, scalars: torch.Tensor, positions: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor,
                ptr: torch.Tensor, species: torch.Tensor | None = None, component: torch.Tensor | None = None,
                component_charge: torch.Tensor | None = None) -> torch.Tensor:
        """[n] long-range energy of each atom (eV); see :meth:`energy_and_charges`."""
        return self.energy_and_charges(scalars, positions, cell, pbc, ptr, species, component, component_charge)[0]

    def energy_and_charges(self, scalars: torch.Tensor, positions: torch.Tensor, cell: torch.Tensor,
                           pbc: torch.Tensor, ptr: torch.Tensor, species: torch.Tensor | None = None,
                           component: torch.Tensor | None = None, component_charge: torch.Tensor | None = None):
        """``([n] long-range energy of each atom (eV), summing to the frames' energies, [n] charges (e) or None)``.

        ``scalars`` [n, F]; ``positions`` [n, 3] Å; ``cell`` [B, 3, 3]; ``pbc`` [B, 3]; ``ptr`` [B + 1];
        ``species`` [n] atomic numbers (needed with dispersion); ``component`` [n] covalent component of each
        atom, global over the batch (default: one component per frame); ``component_charge`` [C] total charge
        of each component (default 0).
        """
        q = c = rho = None
        if self.charge_head is not None:
            if component is None:
                if component_charge is not None:
                    raise ValueError("component_charge needs component")
                component = atom_frames(ptr)
            q = self.charges(scalars, component, component_charge)
        if self.dispersion_head is not None:
            if species is None:
                raise ValueError("PhysicalLongRange: dispersion needs the species")
            c = self.dispersion_head.sqrt_c6(scalars)
            rho = self.dispersion_head.radii(species)
        # the sums run in the positions' dtype (float64 from the calculator, whatever the model's)
        cast = lambda t: None if t is None else t.to(positions.dtype)  # noqa: E731
        q, c, rho = cast(q), cast(c), cast(rho)
        return _long_range(positions, cell.to(positions.dtype), pbc, ptr, q, c, rho, self.terms), q
