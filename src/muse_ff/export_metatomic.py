"""The metatomic interface of an exported MuSE model (see :mod:`muse_ff.export`; needs ``muse-ff[export]``)."""

from typing import Dict, List, Optional

import torch
from metatensor.torch import Labels, TensorBlock, TensorMap
from metatomic.torch import ModelOutput, NeighborListOptions, System
from torch import Tensor

from muse_ff.export import ExportedMuSE


class MetatomicMuSE(torch.nn.Module):
    """metatomic ``ModelInterface`` around :class:`~muse_ff.export.ExportedMuSE`: output ``energy`` (eV), per
    system or per atom; forces and stress come from the engine's autograd through positions and cell."""

    def __init__(self, core: ExportedMuSE, reach: float):
        super().__init__()
        self.core = core
        self.neighbors = NeighborListOptions(cutoff=reach, full_list=True, strict=True, requestor="muse")

    def requested_neighbor_lists(self) -> List[NeighborListOptions]:
        return [self.neighbors]

    def forward(self, systems: List[System], outputs: Dict[str, ModelOutput],
                selected_atoms: Optional[Labels] = None) -> Dict[str, TensorMap]:
        results: Dict[str, TensorMap] = {}
        if "energy" not in outputs:
            return results
        per_atom = outputs["energy"].sample_kind == "atom"
        totals: List[Tensor] = []
        atom_values: List[Tensor] = []
        atom_samples: List[Tensor] = []
        for s, system in enumerate(systems):
            pairs = system.get_neighbor_list(self.neighbors)
            index = pairs.samples.values
            edge_index = index[:, 0:2].transpose(0, 1).to(torch.int64)
            shifts = index[:, 2:5].to(torch.int64)
            out = self.core.energy(system.positions, system.types.to(torch.int64), system.cell, system.pbc,
                                   edge_index, shifts)
            node = out["node_energy"].to(system.positions.dtype)
            atoms = torch.arange(node.shape[0], device=node.device)
            if selected_atoms is not None:
                chosen = selected_atoms.values
                atoms = chosen[chosen[:, 0] == s][:, 1].to(torch.int64)
                node = node[atoms]
            totals.append(node.sum().reshape(1, 1))
            if per_atom:
                atom_values.append(node.reshape(-1, 1))
                atom_samples.append(torch.stack([torch.full_like(atoms, s), atoms], dim=1))
        device = systems[0].positions.device
        if per_atom:
            block = TensorBlock(values=torch.cat(atom_values),
                                samples=Labels(["system", "atom"], torch.cat(atom_samples).to(torch.int32)),
                                components=torch.jit.annotate(List[Labels], []),
                                properties=Labels(["energy"], torch.tensor([[0]], device=device)))
        else:
            block = TensorBlock(values=torch.cat(totals),
                                samples=Labels(["system"], torch.arange(len(systems), device=device,
                                                                        dtype=torch.int32).reshape(-1, 1)),
                                components=torch.jit.annotate(List[Labels], []),
                                properties=Labels(["energy"], torch.tensor([[0]], device=device)))
        results["energy"] = TensorMap(keys=Labels(["_"], torch.tensor([[0]], device=device)), blocks=[block])
        return results
