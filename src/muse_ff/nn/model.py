"""The MuSE model: species embedding, a backbone per level, pooling/unpooling, energy heads.

``levels: []`` is the plain backbone; each entry of ``levels`` adds one coarse level (see
:mod:`muse_ff.nn.pooling`). Derivatives (forces, stress, Hessians) are not computed here: see
:mod:`muse_ff.physics.derivatives`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import replace
from typing import Dict, List, Optional, Tuple

import torch
from ase import Atoms
from ase.data import chemical_symbols
from torch import Tensor, nn

from muse_ff.config import ModelConfig, parse_model_config
from muse_ff.data.atoms import MIN_DISTANCE, LabelKeys, StructureError, collate, frame_graph
from muse_ff.data.graph import Graph, LevelTopology, edge_vectors
from muse_ff.nn.backbones import BACKBONES
from muse_ff.nn.charges import ChargeSpinEmbedding, charge_groups
from muse_ff.nn.coarsening import add_topology
from muse_ff.nn.heads import AtomicReference, EnergyHead
from muse_ff.nn.long_range import LatentEwald
from muse_ff.nn.physical import EwaldSettings, PhysicalLongRange
from muse_ff.nn.pooling import CoarseLevel, PoolState, distribute, unpool

#: the dtypes a model is built and evaluated in, by name (``model.dtype``; the calculator's ``dtype=``)
DTYPES = {"float32": torch.float32, "float64": torch.float64}


class MuSEModel(nn.Module):
    """Multiscale energy model. Build it with :func:`muse_ff.build_model`.

    ``forward(graph, positions=None, cell=None)`` returns a dict (positions and cell may be float64 whatever
    the model's dtype: every geometric difference is formed in their dtype, then rounded to the model's):

    - ``energy``: [B] float64 total energy per frame (eV)
    - ``node_energy``: [N] float64 energy of each atom, coarse contributions handed back to atoms
      through the assignments (sums to ``energy`` per frame)
    - ``energy_levels``: [B, L + 1] float64 energy contributed by each level (atoms first; level 0
      includes the reference energies and, with ``long_range`` or ``physical``, the long-range energy)
    - ``charges``: [N] float64 atomic charges (e), with ``physical.electrostatics`` only; they sum to each
      charge group's total charge (:mod:`muse_ff.nn.charges`)
    - ``physical_energy``: [B] float64 energy of the physical long-range terms, with ``physical`` only
    - ``dipole``: [B, 3] float64 ``sum_i q_i r_i`` (e Å, about the origin), with ``charges`` only

    With ``charges`` or ``physical`` the graph needs its charge groups and with ``levels`` its coarse
    topology: both come from :meth:`prepare` (``graph_from_atoms`` calls it).
    """

    #: Python-side properties TorchScript leaves out (the exported model needs only :meth:`compute`)
    __jit_unused_properties__ = ["cutoff", "species", "uses_charges", "uses_components"]

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.dtype_ = DTYPES[config.dtype]
        index = torch.full((119,), -1, dtype=torch.int64)
        index[torch.tensor(config.species)] = torch.arange(len(config.species))
        self.register_buffer("species_index", index, persistent=False)
        self.embedding = nn.Embedding(len(config.species), config.embedding)
        self.charge_embedding = ChargeSpinEmbedding(len(config.species), config.embedding) \
            if config.charges else None
        cutoffs, sigmas = config.level_cutoffs(), config.level_sigmas()
        bb = config.backbone
        self.backbone = BACKBONES[bb.name](config.embedding, cutoffs[0], **bb.hparams)
        self.head = EnergyHead(self.backbone.out_features, config.head.hidden)
        self.levels = nn.ModuleList()
        fine = self.backbone
        for k, lev in enumerate(config.levels):
            lbb = lev.backbone or bb
            level = CoarseLevel(lev,
                                fine_features=fine.out_features, fine_vectors=fine.vector_features,
                                cutoff=cutoffs[k + 1], sigma=sigmas[k],
                                backbone_factory=lambda n_in, cut, n_vec, n_ten, b=lbb: BACKBONES[b.name](
                                    n_in, cut, vector_in_features=n_vec, tensor_in_features=n_ten, **b.hparams),
                                head_hidden=config.head.hidden,
                                fine_tensors=fine.tensor_features if lev.tensors else 0)
            self.levels.append(level)
            fine = level.backbone
        lr = config.long_range
        self.long_range = None if lr is None else LatentEwald(
            self.backbone.out_features, smearing=lr.smearing, channels=lr.channels, hidden=lr.hidden,
            wavelength=lr.wavelength, neutral=lr.neutral)
        ph = config.physical
        self.physical = None if ph is None else PhysicalLongRange(
            self.backbone.out_features, hidden=ph.hidden, electrostatics=ph.electrostatics,
            dispersion=ph.dispersion, smearing=ph.smearing, coulomb_switch=ph.coulomb_switch,
            dispersion_switch=ph.dispersion_switch, ewald=EwaldSettings(**ph.ewald.model_dump()),
            c6_scale=ph.c6_scale, radius_offset=ph.radius_offset)
        self.d3 = None
        if config.d3 is not None:
            from muse_ff.nn.d3 import D3Dispersion

            self.d3 = D3Dispersion(config.d3.functional, config.d3.cutoff, three_body=config.d3.three_body,
                                   cn_cutoff=config.d3.cn_cutoff)
        self.reference = AtomicReference(len(config.species))
        self.to(self.dtype_)
        self.reference.double()

    # ------------------------------------------------------------------ structures -> graphs
    @property
    def cutoff(self) -> float:
        return self.backbone.cutoff

    @property
    def species(self) -> list[int]:
        return list(self.config.species)

    def check_species(self, species: torch.Tensor) -> None:
        """Raise :class:`StructureError` naming an element the model was not built for."""
        idx = self.species_index[species]
        if (idx < 0).any():
            z = int(species[idx < 0][0])
            known = [chemical_symbols[s] for s in self.config.species]
            shown = known if len(known) <= 20 else known[:20] + ["..."]
            raise StructureError(f"unknown element {chemical_symbols[z]!r} (Z={z}): this model knows {shown}")

    @property
    def uses_charges(self) -> bool:
        """Whether the model reads charge groups (``charges`` or ``physical.electrostatics``)."""
        return self.charge_embedding is not None or (self.physical is not None
                                                     and self.physical.charge_head is not None)

    @property
    def uses_components(self) -> bool:
        """Whether the model reads the covalent components (levels, charges, neutral latent Ewald)."""
        return (bool(len(self.levels)) or self.uses_charges
                or (self.long_range is not None and self.long_range.neutral))

    def _prepared(self, graph: Graph) -> bool:
        return (len(graph.coarse) >= len(self.levels)
                and (not self.uses_components or graph.component is not None)
                and (not self.uses_charges or graph.charge_group is not None))

    def prepare(self, graph: Graph) -> Graph:
        """Add what the model needs of each frame's bond graph: the coarse topology of the levels, and the
        charge groups (:func:`~muse_ff.nn.charges.charge_groups`) with ``charges`` or ``physical``. Idempotent."""
        if self._prepared(graph):
            return graph
        cfg = self.config
        if len(graph.coarse) < len(self.levels) or graph.component is None:
            graph = add_topology(graph, [lev.ratio for lev in cfg.levels], cfg.level_hops(),
                                 [lev.min_nodes for lev in cfg.levels])
            warn_coarse_cost(graph, cfg.level_cutoffs()[1:],
                             [lev.edges == "within-component" for lev in cfg.levels])
        if self.uses_charges:
            group, value = charge_groups(graph.component, graph.ptr, graph.charge, graph.atom_charge)
            graph = replace(graph, charge_group=group, group_charge=value)
        return graph

    def graph_from_atoms(self, atoms: Atoms | Sequence[Atoms], keys: LabelKeys | None = None,
                         min_distance: float = MIN_DISTANCE) -> Graph:
        """Validated, batched graph of one or more structures, ready for :meth:`forward`."""
        frames = [atoms] if isinstance(atoms, Atoms) else list(atoms)
        if not frames:
            raise StructureError("empty structure list: no structures given")
        multi = len(frames) > 1
        graphs = []
        for k, a in enumerate(frames):
            g = frame_graph(a, self.cutoff, keys=keys, min_distance=min_distance, index=k if multi else None)
            self.check_species(g.species)
            graphs.append(self.prepare(g))
        return collate(graphs)

    # ------------------------------------------------------------------ energy
    def _encode(self, species_index: Tensor, positions: Tensor, cell: Tensor, pbc: Tensor, batch: Tensor,
                edge_index: Tensor, shifts: Tensor, coarse: List[LevelTopology], charge_group: Optional[Tensor],
                group_charge: Optional[Tensor], spin: Optional[Tensor], component: Optional[Tensor] = None
                ) -> Tuple[List[Tensor], List[PoolState]]:
        """Bottom-up through the levels, then top-down unpooling.

        Returns ``(scalars, states)``: per-level invariant features after the top-down pass (atoms first)
        and the :class:`~muse_ff.nn.pooling.PoolState` of every coarse level.
        """
        embedded = self.embedding(species_index)
        charge_embedding = self.charge_embedding
        if charge_embedding is not None:
            assert charge_group is not None and group_charge is not None
            embedded = embedded + charge_embedding(species_index, charge_group, group_charge, batch, spin)
        # geometry stays in the dtype it comes in (float64 from the calculator): differences of positions are
        # formed there and only then rounded to the model's dtype, so a molecule 1e9 Å from the origin keeps
        # its shape in a float32 model
        vectors = edge_vectors(positions, cell, batch, edge_index, shifts).to(self.dtype_)
        out = self.backbone(embedded, edge_index, vectors)
        scalars: List[Tensor] = [out.scalars]
        states: List[PoolState] = []
        weights: List[Tensor] = []
        biases: List[Tensor] = []
        fine_pos, fine_scalars, fine_vectors, fine_tensors = positions, out.scalars, out.vectors, out.tensors
        for k, level in enumerate(self.levels):
            state = level.pool(coarse[k], batch, positions, fine_pos, cell, pbc, fine_scalars, fine_vectors,
                               component, fine_tensors)
            o = level.run(state, cell)
            scalars.append(o.scalars)
            states.append(state)
            weights.append(level.unpool_linear.weight)
            biases.append(level.unpool_linear.bias)
            fine_pos, fine_scalars, fine_vectors, fine_tensors = state.positions, o.scalars, o.vectors, o.tensors
        for k in range(len(states) - 1, -1, -1):  # coarse context flows back to the finer level
            scalars[k] = scalars[k] + unpool(states[k], nn.functional.linear(scalars[k + 1], weights[k], biases[k]))
        return scalars, states

    def encode(self, graph: Graph, positions: Tensor, cell: Tensor) -> Tuple[List[Tensor], List[PoolState]]:
        """:meth:`_encode` of a prepared graph."""
        return self._encode(self.species_index[graph.species], positions, cell, graph.pbc, graph.batch,
                            graph.edge_index, graph.shifts, list(graph.coarse), graph.charge_group,
                            graph.group_charge, graph.spin, graph.component)

    @torch.no_grad()
    def coarse_grain(self, graph: Graph) -> list:
        """The coarse levels of ``graph`` (positions, assignment weights, masses) without energies."""
        graph = self.prepare(graph)
        return self.encode(graph, graph.positions, graph.cell)[1]

    @torch.jit.unused
    def forward(self, graph: Graph, positions: Tensor | None = None,
                cell: Tensor | None = None) -> dict[str, Tensor]:
        pos = graph.positions if positions is None else positions
        cel = graph.cell if cell is None else cell
        if not self._prepared(graph):
            raise ValueError("this graph has no coarse topology or charge groups for this model: pass it through "
                             "model.prepare(graph) first (model.graph_from_atoms does)")
        return self.compute(graph.species, pos, cel, graph.pbc, graph.batch, graph.ptr, graph.edge_index,
                            graph.shifts, list(graph.coarse), graph.component, graph.charge_group,
                            graph.group_charge, graph.spin)

    @torch.jit.export
    def compute(self, species: Tensor, positions: Tensor, cell: Tensor, pbc: Tensor, batch: Tensor, ptr: Tensor,
                edge_index: Tensor, shifts: Tensor, coarse: List[LevelTopology],
                component: Optional[Tensor] = None, charge_group: Optional[Tensor] = None,
                group_charge: Optional[Tensor] = None, spin: Optional[Tensor] = None) -> Dict[str, Tensor]:
        """The energy from tensors alone: what :meth:`forward` computes from a :class:`Graph`, in torch only
        (no host round trips but the sizes of neighbour lists), so that TorchScript compiles it (the exported
        model, :mod:`muse_ff.export`). Arguments are the :class:`Graph` fields of the same names."""
        pos, cel = positions, cell
        sidx = self.species_index[species]
        scalars, states = self._encode(sidx, pos, cel, pbc, batch, edge_index, shifts, coarse, charge_group,
                                       group_charge, spin, component)
        ref = self.reference
        node_energy = ref.atomic(sidx) + ref.scale * self.head(scalars[0]).double()
        long_range = self.long_range
        if long_range is not None:
            node_energy = node_energy + long_range(scalars[0], pos, cel, pbc, ptr, component).double()
        B = int(ptr.shape[0]) - 1
        extra: Dict[str, Tensor] = {}
        d3 = self.d3
        if d3 is not None:  # a fixed baseline, in the positions' dtype (float64 from the calculator)
            node_energy = node_energy + d3(species, pos, cel, pbc, ptr).double()
        physical = self.physical
        if physical is not None:
            e_ph, charges = physical.energy_and_charges(scalars[0], pos, cel, pbc, ptr, species, charge_group,
                                                        group_charge)
            e_ph = e_ph.double()
            node_energy = node_energy + e_ph
            extra["physical_energy"] = torch.zeros(B, dtype=torch.float64, device=pos.device).index_add_(
                0, batch, e_ph)
            if charges is not None:
                extra["charges"] = charges.double()
                # [B, 3] sum_i q_i r_i about the origin (what the xTB teachers' dipole labels are; origin-free
                # for neutral frames); meaningless for periodic frames, which the dipole loss skips
                extra["dipole"] = torch.zeros(B, 3, dtype=torch.float64, device=pos.device).index_add_(
                    0, batch, charges.double()[:, None] * pos.double())
        level_energies: List[Tensor] = []
        for k, level in enumerate(self.levels):
            e_k = ref.scale * level.head(scalars[k + 1]).double()
            if level.dispersion is not None:
                e_k = e_k + level.dispersion_energy(states[k], cel, scalars[k + 1]).double()
            level_energies.append(e_k)
        levels_e = [torch.zeros(B, dtype=torch.float64, device=pos.device).index_add_(0, batch, node_energy)]
        coarse_e: Optional[Tensor] = None  # coarse energies handed down to atoms through the assignments
        for k in range(len(states) - 1, -1, -1):
            e_k = level_energies[k]
            levels_e.insert(1, torch.zeros(B, dtype=torch.float64, device=pos.device).index_add_(
                0, states[k].batch, e_k))
            coarse_e = e_k if coarse_e is None else e_k + coarse_e
            coarse_e = distribute(states[k], coarse_e)  # to level k nodes
        if coarse_e is not None:
            node_energy = node_energy + coarse_e
        energy_levels = torch.stack(levels_e, dim=1)
        result = {"energy": energy_levels.sum(dim=1), "node_energy": node_energy, "energy_levels": energy_levels}
        result.update(extra)
        return result


class CoarseCostWarning(UserWarning):
    """A coarse level whose neighbour graph will be much larger than the atom level's (bulk molecular liquids)."""


#: :func:`warn_coarse_cost` warns when a coarse level's estimated edges exceed this multiple of the atom
#: level's edges (and :data:`COARSE_EDGES_FLOOR`)
COARSE_EDGE_RATIO = 2.0
COARSE_EDGES_FLOOR = 50_000


def estimated_coarse_edges(graph: Graph, cutoffs: Sequence[float],
                           within: Sequence[bool] | None = None) -> list[float]:
    """Expected directed edges of each coarse level of a single-frame ``graph`` (topology added): ``n_k^2
    (4/3 pi r_k^3) / V`` for ``n_k`` nodes spread evenly over the volume ``V`` (the cell; for a free frame the
    atoms' bounding box, each side at least 1 Å, and at most ``n_k (n_k - 1)`` edges). A level with
    ``within[k]`` (``edges: within-component``) counts only pairs inside each covalent component: the same sum
    over components, each with its own ``n_kc``, and at most ``n_kc (n_kc - 1)`` for a component that does not
    repeat along a periodic direction (a molecule has no edge to its own images; a sheet or crystal does)."""
    pos = graph.positions.detach().double()
    pbc = bool(graph.pbc.reshape(-1, 3)[0].all()) if graph.pbc.numel() else False
    if pbc:
        volume = abs(float(torch.linalg.det(graph.cell.reshape(-1, 3, 3)[0].double())))
    else:
        extent = (pos.max(dim=0).values - pos.min(dim=0).values).clamp(min=1.0) if len(pos) else torch.ones(3)
        volume = float(extent.prod())
    within = [False] * len(cutoffs) if within is None else list(within)
    out = []
    for topo, rc, w in zip(graph.coarse, cutoffs, within):
        if w and graph.component is not None:
            comp = graph.component[topo.ref_atom]
            counts = torch.bincount(comp).double()
            repeats = torch.diagonal(topo.node_free, dim1=1, dim2=2).sum(-1) < 2.5  # bonded to its own images
            capped = torch.bincount(comp, weights=repeats.double(), minlength=len(counts)) == 0
            keep = counts > 0
            counts, capped = counts[keep], capped[keep] | (not pbc)
        else:
            counts = torch.tensor([float(topo.num_nodes)], dtype=torch.float64)
            capped = torch.tensor([not pbc])
        e = counts**2 * ((4.0 / 3.0) * math.pi * rc**3 / max(volume, 1e-9))
        out.append(float(torch.where(capped, torch.minimum(e, counts * (counts - 1.0)), e).sum()))
    return out


def warn_coarse_cost(graph: Graph, cutoffs: Sequence[float], within: Sequence[bool] | None = None) -> None:
    """A :class:`CoarseCostWarning` when a coarse level of a single-frame ``graph`` will have far more edges than
    its atom level (:data:`COARSE_EDGE_RATIO`): molecules are never merged into one coarse node, so in a bulk
    molecular liquid every level keeps one node per molecule and a 20 Å level reaches ~1,100 of them. Measured
    (docs/SPEED.md): a 999-atom water box costs MuSE(PaiNN) with the default levels ~20x the plain backbone,
    and a 10,000-atom box needs more than 24 GB for energy + forces."""
    if graph.num_frames != 1 or not graph.coarse:
        return
    atom_edges = max(int(graph.edge_index.shape[1]), 1)
    for k, (edges, rc) in enumerate(zip(estimated_coarse_edges(graph, cutoffs, within), cutoffs), start=1):
        if edges > max(COARSE_EDGE_RATIO * atom_edges, COARSE_EDGES_FLOOR):
            warnings.warn(
                f"MuSE coarse level {k}: {graph.coarse[k - 1].num_nodes} nodes for {graph.num_atoms} atoms and about "
                f"{edges:.2g} edges within its {rc:g} Å cutoff, {edges / atom_edges:.0f}x the atom level's "
                f"{atom_edges}: molecules are never merged, so a bulk molecular liquid keeps one coarse node per "
                "molecule at every level; energy + forces will cost many times the plain backbone and memory "
                "grows with those edges. Use levels[k].edges: within-component (no coarse edges between "
                "molecules), lower levels[k].cutoff, narrow levels[k].backbone or use fewer levels "
                "(docs/SPEED.md)", CoarseCostWarning, stacklevel=3)
            return


def build_model(config: dict | ModelConfig | None = None) -> MuSEModel:
    """An untrained model from the ``model:`` config section (see :class:`muse_ff.config.ModelConfig`)."""
    return MuSEModel(parse_model_config(config))
