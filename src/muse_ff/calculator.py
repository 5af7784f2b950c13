"""ASE calculator for MuSE models: energy, forces, stress, per-atom energies, Hessians.

The energy is a function of the structure alone: positions, numbers, cell, pbc and the covalent topology
(which pairs are bonded: closer than 1.2 x the sum of covalent radii). The coarse graph of the coarse levels is
rebuilt from each structure's bond graph; the calculator only caches it while the bond graph stays the same,
so what it evaluated before never matters. Along a trajectory whose bonds do not change the energy is one
smooth function; when a bond forms or breaks the coarse graph is rebuilt and the energy may step, and the
calculator warns once (``RuntimeWarning``) that it happened.

Models with ``charges`` or ``physical`` also read the total charge ``atoms.info['charge']``, the unpaired
electrons ``atoms.info['uhf']`` and the formal charges ``atoms.get_initial_charges()`` (the inputs the xTB
teachers take); changing any of them is a new calculation. With ``physical.electrostatics`` the results
include ``charges`` (per atom, e: ``atoms.get_charges()``) and, for free structures, ``dipole`` (e Å, about
the centre of mass).

``calc.results`` holds standard ASE properties only (names in ``ase.outputs.all_outputs``), so
``atoms.get_properties([...])`` and ``calc.export_properties()`` accept it (ASE 3.29 builds
``ase.outputs.Properties`` from every key of ``results`` and refuses a name it does not know). The energy of
each level, which is no ASE property, is kept beside it: :meth:`MuSECalculator.get_energy_levels` (it computes
when needed) and ``calc.extra_results['energy_levels']`` (the last calculation's).

The calculator works on its own copy of the model (a deep copy of a module it is given; a model loaded from a
path is fresh anyway), moved to its device and dtype, in eval mode with its parameters frozen: the caller's
model keeps its training flag, device, dtype and ``requires_grad``. ``dtype="float64"`` evaluates a float32
model in float64 (same weights, cast exactly), whose forces then match finite differences of its energy
to float64 precision.
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from muse_ff.data.atoms import MIN_DISTANCE, frame_graph
from muse_ff.data.graph import Graph
from muse_ff.errors import NonFiniteError
from muse_ff.nn.coarsening import bond_graph
from muse_ff.nn.model import DTYPES
from muse_ff.physics.derivatives import energy_and_derivatives, hessian


def check_dtype(dtype, what: str = "dtype=") -> torch.dtype | None:
    """``dtype`` as a torch dtype: ``"float32"``/``"float64"`` or ``torch.float32``/``torch.float64``;
    ``None`` stays ``None`` (the model's own dtype). Anything else is a ``ValueError`` in one sentence."""
    if dtype is None:
        return None
    if isinstance(dtype, torch.dtype) and dtype in DTYPES.values():
        return dtype
    if isinstance(dtype, str) and dtype in DTYPES:
        return DTYPES[dtype]
    raise ValueError(f"{what}{dtype!r} is not a dtype a model can be evaluated in; use 'float32' or 'float64' "
                     f"(or torch.float32, torch.float64, or None for the model's own dtype)")


def evaluation_model(model, device: str | torch.device = "cpu", dtype=None, *, copy_model: bool = True):
    """A model ready to evaluate: a deep copy of ``model`` (``copy_model=False``: ``model`` itself, for one
    nobody else holds, e.g. just loaded) on ``device``, in ``dtype`` (:func:`check_dtype`; ``None``: its own),
    in eval mode with its parameters frozen. With ``copy_model`` the caller's model is left exactly as it was.

    A dtype change is the cast the model's constructor does: parameters and buffers to ``dtype``, the
    reference energies kept float64, and ``config.dtype`` and ``dtype_`` set to match (so the copy saves as a
    model of that dtype). Casting float32 weights to float64 is exact: the float64 model is the same function,
    evaluated without float32 rounding.
    """
    dtype = check_dtype(dtype)
    if copy_model:
        model = copy.deepcopy(model)
    if dtype is not None and dtype != model.dtype_:
        model.to(dtype)
        model.reference.double()
        model.dtype_ = dtype
        name = next(k for k, v in DTYPES.items() if v == dtype)
        model.config = model.config.model_copy(update={"dtype": name})
    model = model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


class MuSECalculator(Calculator):
    """ASE calculator around a :class:`~muse_ff.nn.model.MuSEModel` (or a path to a saved model).

    Results (``calc.results``, standard ASE properties only): ``energy``, ``free_energy`` (eV), ``forces``
    (eV/Å), ``stress`` (eV/Å^3, Voigt, fully periodic cells only), ``energies`` (per atom, eV) and, with
    ``physical.electrostatics``, ``charges`` (e) and, for free structures, ``dipole`` (e Å). All of them work
    with ``atoms.get_properties([...])``.

    Extra (not an ASE property, so not in ``results``): the energy of each level, atoms first (eV, summing to
    the energy), from :meth:`get_energy_levels` or, for the last calculation, ``extra_results['energy_levels']``.

    ``calc.model`` is the calculator's own copy of the model (see :func:`evaluation_model`); ``calc.dtype`` the
    dtype it evaluates in.
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress", "energies", "charges", "dipole"]

    #: ``atoms.info`` keys the model reads as inputs (see :func:`muse_ff.data.atoms.frame_charges`)
    info_inputs = ("charge", "uhf")

    def __init__(self, model, device: str | torch.device = "cpu", min_distance: float = MIN_DISTANCE,
                 dtype: str | torch.dtype | None = None, **kwargs):
        """``model``: a MuSE model or the path of a saved one; a model given is copied, never changed.
        ``device``: where it runs (``cpu``, ``cuda``, ``cuda:N``, ``mps``); one that is not a device name or not
        on this machine (``cuda`` without a GPU) is a :class:`~muse_ff.devices.DeviceError` (a ``ValueError``)
        in one sentence, before the model is read. ``dtype``: what it is evaluated in, ``"float32"``,
        ``"float64"`` (or ``torch.float32``/``torch.float64``); ``None`` (default) is the model's own dtype.
        Another value is a ``ValueError`` in one sentence, also before the model is read."""
        from muse_ff.devices import check_device

        device = check_device(device, what="device=")
        dtype = check_dtype(dtype)
        super().__init__(**kwargs)
        loaded = isinstance(model, (str,)) or hasattr(model, "__fspath__")
        if loaded:
            from muse_ff.io.serialization import load_model

            model = load_model(model)
        self.device = device
        self.model = evaluation_model(model, device, dtype, copy_model=not loaded)
        self.dtype = self.model.dtype_
        #: results that are no ASE property (ASE refuses unknown names in ``results``): ``energy_levels``
        self.extra_results: dict[str, np.ndarray] = {}
        self.min_distance = min_distance
        self._topology: Graph | None = None  # coarse topology of the last bond graph seen (a cache)
        self._key = None

    def graph(self, atoms: Atoms) -> Graph:
        """The model-ready graph of ``atoms``: neighbour list and coarse topology of this structure."""
        g = frame_graph(atoms, self.model.cutoff, keys=None, min_distance=self.min_distance)
        self.model.check_species(g.species)
        if self.model.uses_components:
            bonds = bond_graph(g.positions.double().numpy(), g.species.numpy(), g.cell[0].double().numpy(),
                               g.pbc[0].numpy())
            system = (atoms.numbers.tobytes(), tuple(bool(p) for p in atoms.pbc))
            charges = (g.charge.numpy().tobytes(), None if g.atom_charge is None else g.atom_charge.numpy().tobytes())
            key = (system, bonds.key(), charges)
            if key != self._key:
                if self._key is not None and self._key[0] == system and self._key[2] == charges \
                        and len(self.model.levels):
                    warnings.warn("the bond topology changed (a bond formed or broke): the coarse graph was "
                                  "rebuilt and the energy may step here", RuntimeWarning, stacklevel=2)
                self._topology, self._key = self.model.prepare(g), key
            top = self._topology
            g.component, g.coarse = top.component, top.coarse
            g.charge_group, g.group_charge = top.charge_group, top.group_charge
        # positions, cell and shifts stay float64 whatever the model's dtype: the model forms differences of
        # positions in float64 and rounds only those, so a float32 model sees a molecule 1e9 Å from the origin
        # with its shape intact (absolute float32 coordinates there are 64 Å apart)
        return g.to(self.device)

    def check_state(self, atoms, tol=1e-15):
        """ASE's changes, plus ``info`` when a key the model reads (:attr:`info_inputs`) changed."""
        changes = super().check_state(atoms, tol)
        if self.atoms is not None and "info" not in changes and any(
                self.atoms.info.get(k) != atoms.info.get(k) for k in self.info_inputs):
            changes = list(changes) + ["info"]
        return changes

    def reset(self):
        super().reset()
        self.extra_results = {}

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.extra_results = {}
        g = self.graph(self.atoms)
        want_stress = "stress" in properties
        if want_stress and not self.atoms.pbc.all():
            from ase.calculators.calculator import PropertyNotImplementedError

            raise PropertyNotImplementedError("stress is defined for fully periodic cells only")
        out = energy_and_derivatives(self.model, g, forces=True, stress=bool(self.atoms.pbc.all()))
        energy = float(out["energy"][0].detach())
        bad = [name for name in ("energy", "forces", "stress") if name in out
               and not bool(torch.isfinite(out[name]).all())]
        if bad:
            raise NonFiniteError(f"the model gave a non-finite (NaN or inf) {' and '.join(bad)} for this structure "
                                 f"of {len(self.atoms)} atoms (energy {energy})")
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "forces": out["forces"].detach().double().cpu().numpy(),
            "energies": out["node_energy"].detach().double().cpu().numpy(),
        }
        self.extra_results = {"energy_levels": out["energy_levels"][0].detach().double().cpu().numpy()}
        if "stress" in out:
            self.results["stress"] = full_3x3_to_voigt_6_stress(out["stress"][0].detach().double().cpu().numpy())
        if "charges" in out:
            q = out["charges"].detach().double().cpu().numpy()
            self.results["charges"] = q
            if not self.atoms.pbc.any():
                self.results["dipole"] = q @ (self.atoms.positions - self.atoms.get_center_of_mass())

    def get_energy_levels(self, atoms: Atoms | None = None) -> np.ndarray:
        """Energy contributed by each level (eV), atoms first then each coarse level: an array of ``L + 1``
        numbers summing to the energy (level 0 includes the reference energies and any long-range energy).

        Computed when ``atoms`` changed since the last calculation, like ``get_potential_energy``; a copy of
        ``extra_results['energy_levels']``. Not an ASE property, so not in ``results``."""
        if atoms is None and self.atoms is None:
            raise ValueError("get_energy_levels needs atoms")
        self.get_property("energy", atoms)
        return self.extra_results["energy_levels"].copy()

    def get_hessian(self, atoms: Atoms | None = None, *, max_memory: float | None = None,
                    chunk: int | None = None) -> np.ndarray:
        """Hessian d2E/dR2 as a (3N, 3N) array in eV/Å^2, by autograd.

        Its rows come in vectorised chunks sized so that the memory it takes stays within ``max_memory``
        bytes (default :data:`muse_ff.physics.derivatives.DEFAULT_MAX_MEMORY`, 4 GiB); ``chunk`` fixes the
        rows per chunk instead. The Hessian does not depend on either (up to rounding in the last digit).
        """
        atoms = self.atoms if atoms is None else atoms
        if atoms is None:
            raise ValueError("get_hessian needs atoms")
        h = hessian(self.model, self.graph(atoms), chunk=chunk, max_memory=max_memory)
        return h.cpu().numpy().astype(np.float64, copy=False)
