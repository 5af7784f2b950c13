"""Data contract (:class:`Graph`), neighbour lists and conversion from ASE ``Atoms``."""

from muse_ff.data.atoms import LabelKeys, StructureError, atoms_to_graph, collate, frame_graph, validate_atoms
from muse_ff.data.graph import Graph

__all__ = ["Graph", "LabelKeys", "StructureError", "atoms_to_graph", "collate", "frame_graph", "validate_atoms"]
