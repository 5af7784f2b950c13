"""D3(BJ) dispersion with standard DFT parameters, a fixed physical baseline (issue #15, item 3).

:class:`D3Dispersion` adds Grimme's DFT-D3 dispersion with Becke-Johnson (rational) damping to a backbone's
energy: ``backbone + D3(BJ)`` is what a user would otherwise do, so it is the honest baseline for what the
hierarchy adds. The model is evaluated by `tad-dftd3 <https://github.com/dftd3/tad-dftd3>`_ (pure PyTorch,
optional dependency: ``pip install 'muse-ff[d3]'``), so forces, Hessians and every other derivative
come from autograd; nothing in this module is learned.

D3 baseline (for docs/LONG_RANGE.md). E_disp = -sum_{i<j} sum_{n=6,8} s_n C_n^{ij} / (r_ij^n + (a1 R0_ij +
a2)^n) [+ E_ATM], with R0_ij = sqrt(C8_ij / C6_ij), C8_ij = 3 C6_ij sqrt(Q_i Q_j), and C6_ij interpolated in
the D3 reference table by both atoms' D3 coordination numbers (S. Grimme, J. Antony, S. Ehrlich, H. Krieg,
J. Chem. Phys. 132, 154104 (2010); S. Grimme, S. Ehrlich, L. Goerigk, J. Comput. Chem. 32, 1456 (2011)).
*Parameters*: the named functional's entry in tad-dftd3's copy of s-dftd3's parameter table
(``tad_dftd3.param.get_functional_params(functional, damping="bj")``); the default, PBE0-D3(BJ), has s6 = 1,
s8 = 1.2177, a1 = 0.4145, a2 = 4.8593 Bohr (doi:10.1002/jcc.21759); ``params=`` overrides any of them.
*Three-body term*: off by default (s9 = 0), as in the fits of those parameters, the ``dftd3`` Python API's
default (``atm=False``) and most DFT codes; ``three_body=True`` adds the damped Axilrod-Teller-Muto term with
the table's s9 = 1 (alp = 14, rs9 = 4/3), as s-dftd3's command line does. Between two molecules its triples
(two atoms in one, one in the other) fall like R^-6, so it rescales the effective C6 (-0.7% for two methanes)
and leaves the tail's power unchanged. tad-dftd3 builds it on dense [n, n, n] tensors (energy + forces of 180
atoms: 6.3 s and 1.3 GB on one CPU thread), so with ``three_body=True`` a frame of more than ``max_triples``
(default 3e7, ~310 atoms) triples raises :class:`D3SizeError` rather than exhausting memory.
*Cutoffs*: tad-dftd3's defaults, which are s-dftd3's: two-body 60 Bohr (31.75 Å), three-body 40 Bohr
(21.17 Å), coordination number 40 Bohr (21.17 Å), all hard (a C-C pair crossing 31.75 Å changes the energy by
~1e-8 eV); ``cutoff=`` / ``three_body_cutoff=`` / ``cn_cutoff=`` (Å) override them and ``math.inf`` drops one.
Without a dispersion cutoff the interaction of two methanes falls like R^-6 (E(20 Å) / E(40 Å) = 65.2,
E(40) / E(80) = 64.4; the C8 term is the rest); keep the coordination-number cutoff, since without it the
counting function's floor (1 / (1 + e^16) per far atom pair) shifts every C6 by an amount that does not decay
with distance (+4e-9 eV for those methanes at any separation). *Units*: MuSE passes Å; positions are
converted to Bohr (ase.units.Bohr = 0.529177 Å) and cast to float64 whatever their dtype (gradients flow back
to the input dtype), and tad-dftd3's Hartree energies are returned in eV (ase.units.Hartree = 27.2114 eV).
*Per-atom energies*: tad-dftd3's atom-resolved energies (half of each pair, a third of each triple); they sum
to the frame energy. *Batches*: the frames are packed into one padded tad-dftd3 call (padding atoms get atomic
number 0, which tad-dftd3 masks) while the padded batch is small (``PACK_PAIRS`` / ``PACK_TRIPLES``), else
evaluated one by one; either way a frame never sees another frame's atoms. *Periodic cells*: tad-dftd3 0.7
evaluates free molecules only (``dftd3(numbers, positions, param)`` takes no lattice and sums no images), so a
frame with any periodic direction raises :class:`D3PeriodicError`; s-dftd3 (the ``dftd3`` package) does have
lattices, but it is a compiled library without autograd. *Agreement with the reference code* (s-dftd3 1.7.0
through the ``dftd3`` Python API, same parameters): water and benzene dimers, energies within 1e-12 eV
(two-body) and 1.5e-9 eV (with ATM), gradients within 1e-11 eV/Å; a 999-atom water cluster, 2e-10 eV in
-24.24 eV and 1e-11 eV/Å. *Cost* (free 999-atom water cluster at liquid density, two-body, float64, one CPU
thread): energy 0.12 s, energy + forces 0.29 s (s-dftd3's compiled code: 0.09 s for both), against nothing
for no baseline; memory and time are O(n^2) (dense pair tensors): 3000 atoms take 10 s and 1.4 GB for energy +
forces, so a 10k-atom frame is out of reach.
"""

from __future__ import annotations

import torch
from ase import units
from torch import nn

from muse_ff.errors import MuseError

#: Å per Bohr and eV per Hartree (ASE's CODATA 2014 values)
BOHR = float(units.Bohr)
HARTREE = float(units.Hartree)

#: tad-dftd3's default real-space cutoffs, in Bohr (the same as s-dftd3's)
DEFAULT_CUTOFFS_BOHR = {"disp2": 60.0, "disp3": 40.0, "cn": 40.0}

#: a batch is packed into one padded tad-dftd3 call while (frames x largest frame's pairs) stays below this
#: (two-body only), or (frames x largest frame's triples) below ``PACK_TRIPLES`` (with the three-body term);
#: otherwise its frames are evaluated one at a time
PACK_PAIRS = 2**21
PACK_TRIPLES = 2**22

#: default most atom triples (n^3) of one frame with the three-body term: tad-dftd3's ATM term takes ~75 bytes
#: per triple for the energy and ~220 for energy + forces (3 * 10^7 triples, about 310 atoms: ~6.6 GB)
MAX_TRIPLES = 3 * 10**7

#: elements with D3 reference data (tad-dftd3: Z = 1 ... 103)
MAX_Z = 103


class D3Error(MuseError, ValueError):
    """D3 dispersion cannot be evaluated as asked (unknown functional, element without D3 data, ...)."""


class D3PeriodicError(D3Error):
    """A periodic frame was passed to :class:`D3Dispersion` (tad-dftd3 evaluates free molecules only)."""


class D3SizeError(D3Error):
    """A frame is too large for tad-dftd3's dense three-body term (use ``three_body=False``)."""


class MissingD3Package(MuseError, ImportError):
    """The optional dependency tad-dftd3 is not installed."""


def _tad_dftd3():
    """Import tad-dftd3 lazily; raise :class:`MissingD3Package` if it is not installed."""
    try:
        import tad_dftd3
    except ImportError as exc:
        raise MissingD3Package(
            "D3 dispersion needs the optional package tad-dftd3: pip install 'muse-ff[d3]'") from exc
    return tad_dftd3


def _bohr(value: float | None, default: float, name: str) -> float:
    """A cutoff given in Å (None: tad-dftd3's default) in Bohr."""
    if value is None:
        return default
    value = float(value)
    if not value > 0:
        raise D3Error(f"D3 {name} must be a positive length in Å (or math.inf for none), got {value}.")
    return value / BOHR


class D3Dispersion(nn.Module):
    """DFT-D3(BJ) dispersion energy per atom, by tad-dftd3, with a functional's standard parameters.

    Args:
        functional: a functional name known to s-dftd3's parameter table (case- and hyphen-insensitive, with
            its aliases, e.g. ``"pbe0"``, ``"PBE"``, ``"b3lyp"``, ``"r2scan"``, ``"wb97m"``).
        cutoff: two-body cutoff in Å; None: tad-dftd3's default, 60 Bohr = 31.75 Å; ``math.inf``: none.
        three_body: add the Axilrod-Teller-Muto three-body term with the table's s9 (1.0); default False
            (s9 = 0, the D3(BJ) of the original fits and of the ``dftd3`` Python API's default).
        three_body_cutoff: three-body cutoff in Å; None: tad-dftd3's default, 40 Bohr = 21.17 Å.
        cn_cutoff: coordination-number cutoff in Å; None: tad-dftd3's default, 40 Bohr = 21.17 Å.
        params: damping parameters overriding the table's (keys ``s6``, ``s8``, ``a1``, ``a2`` (Bohr), ``s9``,
            ``alp``), e.g. a custom fit.
        max_triples: with ``three_body``, a frame of n atoms with n^3 above this raises :class:`D3SizeError`.

    ``forward(species, positions, cell, pbc, ptr)`` -> [n] per-atom energies (eV, float64); free frames only.
    """

    def __init__(self, functional: str = "pbe0", cutoff: float | None = None, *, three_body: bool = False,
                 three_body_cutoff: float | None = None, cn_cutoff: float | None = None,
                 params: dict[str, float] | None = None, max_triples: int = MAX_TRIPLES) -> None:
        super().__init__()
        d3 = _tad_dftd3()
        try:
            table = d3.param.get_functional_params(functional, damping="bj", dtype=torch.float64)
        except (KeyError, ValueError) as exc:
            raise D3Error(f"no D3(BJ) parameters for functional {functional!r} in tad-dftd3 "
                          f"{d3.__version__}'s table ({exc}).") from None
        values = {key: float(value) for key, value in table.items()}
        if not three_body:
            values["s9"] = 0.0
        for key, value in (params or {}).items():
            if key not in ("s6", "s8", "a1", "a2", "s9", "alp"):
                raise D3Error(f"unknown D3(BJ) parameter {key!r} (known: s6, s8, a1, a2, s9, alp).")
            values[key] = float(value)
        self.functional = functional
        self.three_body = values.get("s9", 0.0) != 0.0
        #: the damping parameters passed to tad-dftd3 (a1 dimensionless, a2 in Bohr)
        self.d3_params: dict[str, float] = values
        #: cutoffs passed to tad-dftd3, in Bohr
        self.cutoffs_bohr = {
            "disp2": _bohr(cutoff, DEFAULT_CUTOFFS_BOHR["disp2"], "cutoff"),
            "disp3": _bohr(three_body_cutoff, DEFAULT_CUTOFFS_BOHR["disp3"], "three_body_cutoff"),
            "cn": _bohr(cn_cutoff, DEFAULT_CUTOFFS_BOHR["cn"], "cn_cutoff"),
        }
        self.max_triples = int(max_triples)
        self.version = str(d3.__version__)
        self._cache: dict[tuple, tuple] = {}

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_cache"] = {}  # tad-dftd3 objects: rebuilt on first use, never pickled
        return state

    def extra_repr(self) -> str:
        cut = ", ".join(f"{k}={v * BOHR:.2f} Å" for k, v in self.cutoffs_bohr.items())
        par = ", ".join(f"{k}={v:g}" for k, v in self.d3_params.items())
        return f"functional={self.functional!r}, {par}, cutoffs: {cut}"

    def _setup(self, device: torch.device):
        """tad-dftd3's parameter tensors, reference table and cutoffs on ``device`` (float64), cached."""
        key = (str(device),)
        if key not in self._cache:
            d3 = _tad_dftd3()
            dd = {"device": device, "dtype": torch.float64}
            param = {k: torch.tensor(v, **dd) for k, v in self.d3_params.items()}
            ref = d3.reference.Reference(**dd)
            cutoff = d3.cutoff.Cutoff(**self.cutoffs_bohr, **dd)
            self._cache[key] = (param, ref, cutoff)
        return self._cache[key]

    def _check(self, species: torch.Tensor, pbc: torch.Tensor, ptr: torch.Tensor) -> None:
        periodic = pbc.to(torch.bool).any(dim=-1)
        if bool(periodic.any()):
            b = int(torch.nonzero(periodic)[0])
            raise D3PeriodicError(
                f"frame {b} is periodic (pbc={pbc[b].tolist()}), but tad-dftd3 {self.version} evaluates D3 for "
                "free molecules only, so D3Dispersion takes free frames only.")
        if species.numel() and (int(species.min()) < 1 or int(species.max()) > MAX_Z):
            bad = species[(species < 1) | (species > MAX_Z)][0]
            raise D3Error(f"D3 has reference data for atomic numbers 1 to {MAX_Z} only, got {int(bad)}.")
        if self.three_body:
            counts = ptr[1:] - ptr[:-1]
            if counts.numel() and int(counts.max()) ** 3 > self.max_triples:
                raise D3SizeError(
                    f"a frame of {int(counts.max())} atoms is too large for tad-dftd3's dense three-body term "
                    f"(n^3 > max_triples = {self.max_triples}); use D3Dispersion(three_body=False).")

    def forward(self, species: torch.Tensor, positions: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor,
                ptr: torch.Tensor) -> torch.Tensor:
        """Per-atom D3 energies.

        Args:
            species: [n] int64 atomic numbers.
            positions: [n, 3] Å (float64 or float32; computed in float64).
            cell: [B, 3, 3] Å (unused: free frames only).
            pbc: [B, 3] bool; a frame with any True raises :class:`D3PeriodicError`.
            ptr: [B + 1] frame offsets.

        Returns:
            [n] float64 per-atom energies in eV; each frame's sum is its D3 energy.
        """
        del cell
        self._check(species, pbc, ptr)
        n = positions.shape[0]
        if n == 0:
            return positions.new_zeros(0, dtype=torch.float64)
        d3 = _tad_dftd3()
        param, ref, cutoff = self._setup(positions.device)
        numbers = species.to(torch.int64)
        pos = positions.to(torch.float64) / BOHR
        counts = (ptr[1:] - ptr[:-1]).to(torch.int64)
        n_frames = int(counts.numel())
        n_max = int(counts.max())
        power = 3 if self.three_body else 2
        limit = PACK_TRIPLES if self.three_body else PACK_PAIRS
        if n_frames == 1:
            energy = d3.dftd3(numbers, pos, param, ref=ref, cutoff=cutoff)
        elif n_frames * n_max**power <= limit:
            # one padded call: padding atoms have atomic number 0, which tad-dftd3 masks out
            frame = torch.repeat_interleave(torch.arange(n_frames, device=pos.device), counts.to(pos.device))
            index = torch.arange(n, device=pos.device) - ptr.to(pos.device)[frame]
            packed_z = numbers.new_zeros(n_frames, n_max).index_put((frame, index), numbers)
            packed_pos = pos.new_zeros(n_frames, n_max, 3).index_put((frame, index), pos)
            energy = d3.dftd3(packed_z, packed_pos, param, ref=ref, cutoff=cutoff)[frame, index]
        else:
            parts = []
            for b in range(n_frames):
                lo, hi = int(ptr[b]), int(ptr[b + 1])
                if hi > lo:
                    parts.append(d3.dftd3(numbers[lo:hi], pos[lo:hi], param, ref=ref, cutoff=cutoff))
            energy = torch.cat(parts)
        return energy * HARTREE


def frame_energy(model: D3Dispersion, atoms) -> float:
    """The D3 energy (eV) of one free :class:`ase.Atoms` frame (a convenience for scripts and benchmarks)."""
    species = torch.as_tensor(atoms.numbers, dtype=torch.int64)
    pos = torch.as_tensor(atoms.positions, dtype=torch.float64)
    cell = torch.as_tensor(atoms.cell.array, dtype=torch.float64)[None]
    pbc = torch.as_tensor(atoms.pbc, dtype=torch.bool)[None]
    return float(model(species, pos, cell, pbc, torch.tensor([0, len(atoms)])).sum())


__all__ = ["D3Dispersion", "D3Error", "D3PeriodicError", "D3SizeError", "MissingD3Package", "BOHR", "HARTREE",
           "frame_energy"]
