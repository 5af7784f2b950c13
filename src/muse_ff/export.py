"""Exported MuSE models: one TorchScript file for the MD engines (``muse export``).

Two formats:

* ``metatomic`` (default): a metatomic ``AtomisticModel`` (metatomic-torch), which ASE (metatomic-ase), i-PI,
  TorchSim (metatomic-torchsim) and LAMMPS (``pair_style metatomic``) load. The engine gives positions,
  types, cell, pbc and the atoms' neighbour list (full, at the model's cutoff); the model returns the energy
  (per system, or per atom on request) and the engine takes forces and stress by autograd.
* ``torchscript``: a plain TorchScript module ``forward(positions [N, 3] Å, cell [3, 3] Å, pbc [3]) -> energy
  [] eV`` that computes its own neighbour list (vesin-torch). For engines that hand a model positions only,
  such as OpenMM's TorchForce (scale to nm and kJ/mol there); load it after ``import vesin_torch``.

**What is bound at export.** The coarse levels' discrete part (which coarse nodes exist, which atoms may
assign to them: :mod:`muse_ff.nn.coarsening`) and the charge groups are functions of the covalent topology,
computed in Python (numpy, scipy). An exported model therefore carries the topology of one structure,
given at export (``--structure``): its elements in their order and its bond graph. At every call it checks,
in torch, that the system has the same elements in the same order and the same bonds (every bonded pair
still bonded, no new bond: pairs closer than 1.2 x the sum of covalent radii, as in the Python model); a
change is an error that says so, where the Python calculator would rebuild the coarse graph. Plain backbones
(``levels: []``) without charges bind nothing and run on any structure of their elements.

Engines wrap atoms back into the periodic cell. The topology stores integer images of atoms relative to
each other; the exported model restores them from the atoms' fractional coordinates at export: the
image between atoms a and b becomes ``S0 + round((f0_a - f_a) - (f0_b - f_b))``, exact whenever the
relative fractional position of two atoms of one coarse node (or assignment pair) has moved by less than
half a cell since export, which holds for bonded neighbourhoods in any MD.

Exported: the backbone, the coarse levels (with their learned dispersion), charges (``model.charges``), and
the long-range terms ``model.physical`` and ``model.long_range`` as TorchScript twins that share the trained
heads (:mod:`muse_ff.export_terms`). ``model.d3`` (tad-dftd3 is not TorchScript) is exported in the
metatomic format only, as metatomic's own D3(BJ) wrapper around the model with the same parameters and
cutoffs; the ``torchscript`` format and the three-body term are refused with an error naming them.
"""

from typing import Dict, List, Optional

import numpy as np
import torch
from ase import Atoms
from ase.data import covalent_radii
from torch import Tensor, nn

from muse_ff.data.graph import LevelTopology
from muse_ff.data.torch_neighbors import complete_basis, radius_graph
from muse_ff.errors import MuseError
from muse_ff.nn.coarsening import BOND_SCALE

FORMATS = ("metatomic", "torchscript")


class ExportError(MuseError, ValueError):
    """A model or structure that cannot be exported as asked."""


def _fractional(positions: Tensor, cell: Tensor, pbc: Tensor) -> Tensor:
    """[n, 3] fractional coordinates along periodic directions (0 along non-periodic ones)."""
    if not bool(pbc.any()):
        return torch.zeros_like(positions)
    inv = torch.linalg.inv(complete_basis(cell.to(positions.dtype), pbc))
    return torch.where(pbc[None, :], positions @ inv, torch.zeros_like(positions))


class BoundLevel(nn.Module):
    """One coarse level's topology, bound at export, with its images restored after wrapping."""

    def __init__(self, topo: LevelTopology, fine_ref: Tensor):
        super().__init__()
        for name in topo._fields:
            self.register_buffer(name, getattr(topo, name).clone())
        # the atoms whose relative image each stored shift is: (member, its node's reference atom) and
        # (the fine node's reference atom, the coarse node's reference atom)
        self.register_buffer("member_ref", topo.ref_atom[topo.member_node].clone())
        self.register_buffer("pair_fine_atom", fine_ref[topo.pair_fine].clone())
        self.register_buffer("pair_coarse_atom", topo.ref_atom[topo.pair_coarse].clone())

    def forward(self, drift: Tensor) -> LevelTopology:
        """``drift`` [N, 3]: fractional coordinates at export minus now (0 along non-periodic directions)."""
        dtype = self.member_shift.dtype
        member_shift = self.member_shift + torch.round(drift[self.member_atom] - drift[self.member_ref]).to(dtype)
        pair_shift = self.pair_shift + torch.round(drift[self.pair_fine_atom]
                                                   - drift[self.pair_coarse_atom]).to(dtype)
        node_image = self.node_image + torch.round(drift[self.ref_atom]).to(dtype)
        return LevelTopology(self.member_atom, self.member_node, member_shift, self.ref_atom, self.pair_fine,
                             self.pair_coarse, pair_shift, node_image, self.node_free)


def _with_exported_terms(model, structure: Optional[Atoms], drop_d3: bool = False):
    """``model``, or a shallow copy of it whose ``physical`` / ``long_range`` are their TorchScript twins
    (:mod:`muse_ff.export_terms`; the learned heads are shared) and, with ``drop_d3``, without ``d3`` (which
    the metatomic format adds back around the exported model). ``model`` itself is not changed."""
    if model.physical is None and model.long_range is None and not (drop_d3 and model.d3 is not None):
        return model
    import copy

    from muse_ff.export_terms import ExportedLatentEwald, ExportedPhysical

    twin = copy.copy(model)
    twin._modules = dict(model._modules)  # setting a submodule on the copy leaves the original's alone
    if drop_d3:
        twin.d3 = None
    if model.physical is not None:
        periodic = structure is None or bool(np.all(structure.pbc))
        cell = None
        if structure is not None and bool(np.all(structure.pbc)):
            cell = torch.as_tensor(np.asarray(structure.cell), dtype=torch.float64)
        twin.physical = ExportedPhysical(model.physical, cell, 0 if structure is None else len(structure),
                                         periodic).to(model.dtype_)
    if model.long_range is not None:
        twin.long_range = ExportedLatentEwald(model.long_range).to(model.dtype_)
    return twin


class ExportedMuSE(nn.Module):
    """A MuSE model for one system at a time, from tensors only (what both export formats wrap).

    ``energy(positions, species, cell, pbc, edge_index, shifts)`` returns the :meth:`MuSEModel.compute`
    outputs of the system; the topology bound at export (if any) is checked and used."""

    def __init__(self, model, structure: Optional[Atoms] = None, drop_d3: bool = False):
        super().__init__()
        if model.d3 is not None and not drop_d3:
            raise ExportError("this model uses model.d3 (tad-dftd3), which TorchScript cannot compile: only the "
                              "metatomic format exports it (as metatomic's own D3(BJ) wrapper around the model)")
        self.model = _with_exported_terms(model, structure, drop_d3)
        self.cutoff = float(model.cutoff)
        self.bound = bool(model.uses_components)
        species = torch.tensor(model.species, dtype=torch.int64)
        self.register_buffer("model_species", species)
        n_levels = len(model.levels)
        self.levels = nn.ModuleList()
        empty_i, empty_f = torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.float64)
        self.has_component = False
        self.has_charge_group = False
        self.has_spin = False
        for name in ("species", "component", "charge_group", "group_charge", "spin", "frac0", "bond_src",
                     "bond_dst", "bond_shift", "bond_radius"):
            self.register_buffer(name, empty_f if name in ("group_charge", "spin", "frac0", "bond_shift",
                                                           "bond_radius") else empty_i)
        #: the neighbour-list radius the engine must give: the cutoff, or the longest bond if longer
        self.reach = self.cutoff
        if structure is not None:
            self.species = torch.as_tensor(structure.numbers, dtype=torch.int64).clone()
        if not self.bound:
            return
        if structure is None:
            raise ExportError(f"this model reads the covalent topology ({n_levels} coarse level(s)"
                              f"{', charges' if model.uses_charges else ''}): give the structure to bind with "
                              "--structure FILE (the system the engine will run, atoms in the engine's order)")
        g = model.prepare(model.graph_from_atoms(structure))
        self.species = g.species.clone()
        self.component = g.component.clone()
        self.has_component = True
        if g.charge_group is not None and g.group_charge is not None:
            self.charge_group, self.group_charge = g.charge_group.clone(), g.group_charge.clone()
            self.has_charge_group = True
        if g.spin is not None:
            self.spin = g.spin.double().clone()
            self.has_spin = True
        self.frac0 = _fractional(g.positions.double(), g.cell[0].double(), g.pbc[0])
        fine_ref = torch.arange(g.num_atoms)
        for topo in g.coarse[:n_levels]:
            self.levels.append(BoundLevel(topo, fine_ref))
            fine_ref = topo.ref_atom
        from muse_ff.nn.coarsening import bond_graph

        bonds = bond_graph(g.positions.double().numpy(), g.species.numpy(), g.cell[0].double().numpy(),
                           g.pbc[0].numpy())
        self.bond_src = torch.as_tensor(bonds.src, dtype=torch.int64)
        self.bond_dst = torch.as_tensor(bonds.dst, dtype=torch.int64)
        self.bond_shift = torch.as_tensor(bonds.shift, dtype=torch.float64)
        self.bond_radius = torch.as_tensor(BOND_SCALE * covalent_radii[g.species.numpy()], dtype=torch.float64)
        self.reach = max(self.cutoff, 2 * float(self.bond_radius.max()))

    def _check_species(self, species: Tensor):
        if species.shape[0] != self.species.shape[0] or not bool((species == self.species).all()):
            raise ValueError("this exported MuSE model is bound to a structure of "
                             f"{int(self.species.shape[0])} atoms (elements in a fixed order, given at export): "
                             f"the system has {int(species.shape[0])} atoms or other elements or another order; "
                             "export the model again with this system as --structure")

    def _check_bonds(self, positions: Tensor, cell: Tensor, drift: Tensor, edge_index: Tensor, r: Tensor):
        """The bonds now, from the engine's neighbour list (``r``: its pairs' lengths), against those at export."""
        i, j = edge_index[0], edge_index[1]
        radius = self.bond_radius.to(positions.dtype)
        bonded = int((r < radius[i] + radius[j]).sum())
        s = self.bond_shift.to(positions.dtype) + torch.round(drift[self.bond_dst] - drift[self.bond_src]).to(
            positions.dtype)
        rb = torch.linalg.vector_norm(positions[self.bond_dst] - positions[self.bond_src] + s @ cell, dim=-1)
        kept = bool((rb < radius[self.bond_src] + radius[self.bond_dst]).all())
        if bonded != int(self.bond_src.shape[0]) or not kept:
            raise ValueError("the bond topology changed since export (a bond formed or broke: "
                             f"{bonded // 2} bonds now, {int(self.bond_src.shape[0]) // 2} at export): the coarse "
                             "graph bound to this exported MuSE model no longer applies; export it again from "
                             "the new structure")

    @torch.jit.export
    def energy(self, positions: Tensor, species: Tensor, cell: Tensor, pbc: Tensor, edge_index: Tensor,
               shifts: Tensor) -> Dict[str, Tensor]:
        """Outputs of :meth:`MuSEModel.compute` for one system: positions [N, 3] (Å), atomic numbers [N],
        cell [3, 3] (rows, Å; zero along non-periodic directions), pbc [3] bool, edges [2, E] (receiver,
        sender) with integer shifts [E, 3]: ``r_j - r_i + shifts @ cell`` shorter than the cutoff."""
        n = int(positions.shape[0])
        # pair lengths and images are discrete decisions: from detached geometry (no gradient through them)
        pos, cel = positions.detach(), cell.detach()
        i, j = edge_index[0], edge_index[1]
        r = torch.linalg.vector_norm(pos[j] - pos[i] + shifts.to(pos.dtype) @ cel, dim=-1)
        within = r < self.cutoff  # the engine's list may be longer (a skin, or the bond check's reach)
        coarse: List[LevelTopology] = []
        component: Optional[Tensor] = None
        charge_group: Optional[Tensor] = None
        group_charge: Optional[Tensor] = None
        spin: Optional[Tensor] = None
        if self.bound:
            self._check_species(species)
            drift = self.frac0.to(pos.dtype) - _fractional(pos, cel, pbc)
            self._check_bonds(pos, cel, drift, edge_index, r)
            for level in self.levels:
                coarse.append(level(drift))
            if self.has_component:
                component = self.component
            if self.has_charge_group:
                charge_group, group_charge = self.charge_group, self.group_charge
            if self.has_spin:
                spin = self.spin
        else:
            known = (species[:, None] == self.model_species[None, :]).any(dim=1)
            if not bool(known.all()):
                raise ValueError("the system has an element this exported MuSE model was not trained on")
        batch = torch.zeros(n, dtype=torch.int64, device=positions.device)
        ptr = torch.tensor([0, n], dtype=torch.int64, device=positions.device)
        return self.model.compute(species, positions, cell[None], pbc[None], batch, ptr, edge_index[:, within],
                                  shifts[within], coarse, component, charge_group, group_charge, spin)

    def forward(self, positions: Tensor, cell: Tensor, pbc: Tensor) -> Tensor:
        """Energy (eV) of one system from positions (Å), cell and pbc, with its own neighbour list."""
        if self.species.shape[0] != positions.shape[0]:
            raise ValueError(f"this exported MuSE model takes the {int(self.species.shape[0])} atoms of the "
                             f"structure given at export, not {int(positions.shape[0])}")
        edge_index, shifts = radius_graph(positions, cell, pbc, self.reach)
        return self.energy(positions, self.species, cell, pbc, edge_index, shifts)["energy"][0]


def _layers(spec) -> int:
    hp = dict(spec.hparams)
    return int(hp.get("layers", hp.get("num_interactions", 3)))


def _receptive_field(model) -> float:
    """How far (Å) an atom's energy can feel another atom: each level's message-passing layers times its
    cutoff, summed (an upper bound; the bound topology also reaches along bonds); infinite with the
    long-range terms (``physical``, ``long_range``, ``d3``: metatomic's convention for explicit long range)."""
    import math

    if model.physical is not None or model.long_range is not None or model.d3 is not None:
        return math.inf
    cfg = model.config
    total = _layers(cfg.backbone) * float(model.cutoff)
    for lev, level in zip(cfg.levels, model.levels):
        total += _layers(lev.backbone or cfg.backbone) * float(level.cutoff)
    return total


def _metatomic_d3_settings(d3) -> dict:
    """The arguments of metatomic's ``DFTD3.wrap`` that reproduce ``model.d3`` (the same functional's damping
    parameters and cutoffs, in Å); a setting it cannot reproduce raises :class:`ExportError`."""
    import math

    from muse_ff.nn.d3 import BOHR

    if d3.three_body:
        raise ExportError("this model uses model.d3 with the three-body (ATM) term, which metatomic's D3(BJ) "
                          "does not have: it cannot be exported; train with d3.three_body: false")
    cutoffs = {key: value * BOHR for key, value in d3.cutoffs_bohr.items()}
    for key in ("disp2", "cn"):
        if not math.isfinite(cutoffs[key]):
            raise ExportError(f"this model's D3 has no {'dispersion' if key == 'disp2' else 'coordination-number'} "
                              "cutoff: an MD engine's neighbour list needs a finite one")
    p = d3.d3_params
    damping = {"a1": p["a1"], "a2": p["a2"], "s8": p["s8"], "s6": p.get("s6", 1.0)}
    return {"damping_params": {"energy": damping}, "cutoff": cutoffs["disp2"], "cn_cutoff": cutoffs["cn"]}


def export_model(model, path, *, structure: Optional[Atoms] = None, format: str = "metatomic",
                 overwrite: bool = False, dtype=None):
    """Write ``model`` (a :class:`~muse_ff.nn.model.MuSEModel` or the path of a saved one) as one TorchScript
    file at ``path`` (see the module docstring for the formats and what ``structure`` binds), in ``dtype``
    (``"float32"``/``"float64"``; ``None``: the model's own). Refuses to replace an existing file unless
    ``overwrite``. The model given is copied, never changed. Returns the path."""
    import os
    from pathlib import Path

    from muse_ff.calculator import evaluation_model

    if format not in FORMATS:
        raise ExportError(f"unknown export format {format!r}: choose one of {', '.join(FORMATS)}")
    path = Path(path)
    if path.exists() and not overwrite:
        raise ExportError(f"{path} exists: pass overwrite=True (--overwrite) to replace it")
    loaded = isinstance(model, (str, os.PathLike))
    if loaded:
        from muse_ff.io.serialization import load_model

        model = load_model(model)
    model = evaluation_model(model, "cpu", dtype, copy_model=not loaded)
    if model.d3 is not None and format != "metatomic":
        raise ExportError("this model uses model.d3 (tad-dftd3), which TorchScript cannot compile: export it in "
                          "the metatomic format (--format metatomic), which adds metatomic's own D3(BJ) around "
                          "the model, or add D3 in the MD engine")
    d3_wrap = _metatomic_d3_settings(model.d3) if model.d3 is not None else None
    core = ExportedMuSE(model, structure, drop_d3=model.d3 is not None)
    if format == "torchscript" and structure is None:
        raise ExportError("the torchscript format takes positions only: give the structure whose atoms it "
                          "runs with --structure FILE")
    tmp = path.with_name(path.name + ".part")
    if format == "torchscript":
        scripted = torch.jit.script(core)
        scripted.save(str(tmp))
    else:
        try:
            from metatomic.torch import AtomisticModel, ModelCapabilities, ModelMetadata, ModelOutput
        except ImportError as exc:  # pragma: no cover - the optional dependency
            raise ExportError("the metatomic format needs metatomic-torch: pip install 'muse-ff[export]'") from exc
        from muse_ff.export_metatomic import MetatomicMuSE

        wrapper = MetatomicMuSE(core, core.reach).eval()
        dtype = "float64" if model.dtype_ == torch.float64 else "float32"
        capabilities = ModelCapabilities(
            outputs={"energy": ModelOutput(unit="eV", sample_kind="atom")},
            atomic_types=[int(z) for z in model.species], interaction_range=_receptive_field(model),
            length_unit="angstrom", supported_devices=["cpu", "cuda"], dtype=dtype)
        name = model.config.backbone.name
        metadata = ModelMetadata(
            name=f"MuSE({name})" if len(model.levels) else name,
            description=f"MuSE model exported by muse export: {len(model.levels)} coarse level(s)"
                        + (f", bound to a structure of {len(structure)} atoms" if core.bound else ""),
            authors=["MuSE developers"])
        exported = AtomisticModel(wrapper, metadata, capabilities)
        if d3_wrap is not None:
            from metatomic.torch.dftd3 import DFTD3

            exported = DFTD3.wrap(exported, **d3_wrap)
        exported.save(str(tmp))
    os.replace(tmp, path)
    return path
