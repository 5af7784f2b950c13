"""ASE calculator for MuSE models: energy, forces, stress, per-atom energies, Hessians.

Anchor lifecycle (coarse levels): the anchors of Soft Coarse-Graining Pooling are chosen from the first
structure the calculator sees and then kept fixed, like a topology, for every later call (MD steps,
optimisation steps, cell changes). They are recomputed only when the atoms' species or count change, when
the periodic boundary flags change, or when you call :meth:`MuSECalculator.reset_anchors`. They never
change silently between two steps of a trajectory, so energies along a trajectory are one smooth function.
"""

from __future__ import annotations

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from muse_ff.data.atoms import MIN_DISTANCE, frame_graph
from muse_ff.data.graph import Graph
from muse_ff.physics.derivatives import energy_and_derivatives, hessian


class MuSECalculator(Calculator):
    """ASE calculator around a :class:`~muse_ff.nn.model.MuSEModel` (or a path to a saved model).

    Results: ``energy``, ``free_energy`` (eV), ``forces`` (eV/Å), ``stress`` (eV/Å^3, Voigt, fully periodic
    cells only), ``energies`` (per atom, eV) and ``energy_levels`` (per level, eV).
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress", "energies", "energy_levels"]

    def __init__(self, model, device: str | torch.device = "cpu", min_distance: float = MIN_DISTANCE, **kwargs):
        super().__init__(**kwargs)
        if isinstance(model, (str,)) or hasattr(model, "__fspath__"):
            from muse_ff.io.serialization import load_model

            model = load_model(model)
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.dtype = next(self.model.parameters()).dtype
        self.min_distance = min_distance
        self._topology: Graph | None = None  # cached anchors of the current system
        self._key = None

    def reset_anchors(self) -> None:
        """Forget the cached anchors: the next calculation chooses them again from its structure."""
        self._topology, self._key = None, None

    def graph(self, atoms: Atoms) -> Graph:
        """The model-ready graph of ``atoms`` (neighbour list rebuilt; anchors reused per the lifecycle)."""
        g = frame_graph(atoms, self.model.cutoff, keys=None, min_distance=self.min_distance)
        self.model.check_species(g.species)
        key = (tuple(atoms.numbers.tolist()), tuple(bool(p) for p in atoms.pbc))
        if len(self.model.levels):
            if self._topology is None or key != self._key:
                self._topology, self._key = self.model.prepare(g), key
            top = self._topology
            g.component, g.anchors, g.home = top.component, top.anchors, top.home
        return g.to(self.device, self.dtype)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        g = self.graph(self.atoms)
        want_stress = "stress" in properties
        if want_stress and not self.atoms.pbc.all():
            from ase.calculators.calculator import PropertyNotImplementedError

            raise PropertyNotImplementedError("stress is defined for fully periodic cells only")
        out = energy_and_derivatives(self.model, g, forces=True, stress=bool(self.atoms.pbc.all()))
        energy = float(out["energy"][0].detach())
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "forces": out["forces"].detach().double().cpu().numpy(),
            "energies": out["node_energy"].detach().cpu().numpy(),
            "energy_levels": out["energy_levels"][0].detach().cpu().numpy(),
        }
        if "stress" in out:
            self.results["stress"] = full_3x3_to_voigt_6_stress(out["stress"][0].detach().double().cpu().numpy())

    def get_hessian(self, atoms: Atoms | None = None) -> np.ndarray:
        """Hessian d2E/dR2 as a (3N, 3N) array in eV/Å^2, by autograd."""
        atoms = self.atoms if atoms is None else atoms
        if atoms is None:
            raise ValueError("get_hessian needs atoms")
        h = hessian(self.model, self.graph(atoms))
        return h.double().cpu().numpy()
