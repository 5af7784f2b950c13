"""Graph construction: neighbour lists and validation of bad input with clear errors."""

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule
from ase.neighborlist import neighbor_list as ase_neighbor_list

from muse_ff import StructureError, atoms_to_graph
from muse_ff.data import collate


def _pairs(graph):
    vec = graph.edge_vectors()
    d = torch.linalg.vector_norm(vec, dim=1).numpy()
    return sorted(zip(graph.edge_index[0].tolist(), graph.edge_index[1].tolist(), np.round(d, 8)))


@pytest.mark.parametrize("pbc", [True, False, (True, True, False)])
def test_neighbor_list_matches_ase_in_cell_smaller_than_twice_cutoff(pbc):
    atoms = bulk("Si", "diamond", a=5.43) * (1, 1, 1)  # 2 atoms, cell ~3.8 Å << 2 x 5 Å
    atoms.pbc = pbc
    atoms.rattle(0.05, seed=1)
    graph = atoms_to_graph(atoms, cutoff=5.0)
    i, j, d = ase_neighbor_list("ijd", atoms, 5.0)
    expected = sorted(zip(i.tolist(), j.tolist(), np.round(d, 8)))
    assert _pairs(graph) == expected


def test_positions_outside_cell_give_same_graph():
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.rattle(0.02, seed=0)
    moved = atoms.copy()
    moved.positions[0] += atoms.cell[0] * 2 - atoms.cell[2]  # same crystal, atom outside the cell
    assert _pairs(atoms_to_graph(atoms, 4.0)) == _pairs(atoms_to_graph(moved, 4.0))


def test_batch_offsets_and_labels():
    a = molecule("H2O")
    a.info["REF_energy"] = -5.0
    a.arrays["REF_forces"] = np.ones((3, 3))
    b = molecule("CH4")
    g = atoms_to_graph([a, b], cutoff=3.0)
    assert g.num_frames == 2 and g.num_atoms == 8
    assert g.ptr.tolist() == [0, 3, 8]
    assert g.batch.tolist() == [0] * 3 + [1] * 5
    assert (g.batch[g.edge_index[0]] == g.batch[g.edge_index[1]]).all()
    assert g.energy[0] == -5.0 and torch.isnan(g.energy[1])  # missing labels are NaN
    assert torch.isnan(g.forces[3:]).all() and (g.forces[:3] == 1).all()


def test_stress_voigt_label_is_read_as_symmetric_tensor():
    a = bulk("Si")
    a.info["REF_stress"] = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    s = atoms_to_graph(a, 3.0).stress[0]
    assert torch.equal(s, s.T) and s[1, 2] == 4.0 and s[0, 2] == 5.0 and s[0, 1] == 6.0


def test_raises_if_structure_empty():
    with pytest.raises(StructureError, match="empty structure"):
        atoms_to_graph(Atoms(), 5.0)
    with pytest.raises(StructureError, match="empty structure list"):
        atoms_to_graph([], 5.0)


def test_raises_if_coordinates_nan():
    atoms = molecule("H2O")
    atoms.positions[1, 2] = np.nan
    with pytest.raises(StructureError, match=r"non-finite .*atoms \[1\]"):
        atoms_to_graph(atoms, 5.0)


def test_raises_if_element_unknown():
    atoms = Atoms("HXH", positions=[[0, 0, 0], [1, 0, 0], [2, 0, 0]])
    with pytest.raises(StructureError, match="unknown element 'X' .*atom 1"):
        atoms_to_graph(atoms, 5.0)


def test_raises_if_atoms_overlap():
    atoms = Atoms("CO", positions=[[0, 0, 0], [0.1, 0, 0]])
    with pytest.raises(StructureError, match="overlapping atoms.*0.100 Å"):
        atoms_to_graph(atoms, 5.0)


def test_raises_if_atoms_overlap_through_periodic_image():
    atoms = Atoms("C2", positions=[[0, 0, 0], [2.95, 0, 0]], cell=[3.0, 3.0, 3.0], pbc=True)
    with pytest.raises(StructureError, match="overlapping"):
        atoms_to_graph(atoms, 5.0)


def test_raises_if_cell_singular_under_pbc():
    atoms = Atoms("C", positions=[[0, 0, 0]], cell=[[3, 0, 0], [0, 3, 0], [0, 0, 0]], pbc=True)
    with pytest.raises(StructureError, match="wrong cell.*singular"):
        atoms_to_graph(atoms, 5.0)


def test_reports_index_of_bad_structure_in_a_list():
    bad = molecule("H2O")
    bad.positions[0] = np.inf
    with pytest.raises(StructureError, match="structure 1"):
        atoms_to_graph([molecule("CH4"), bad], 5.0)


def test_collate_rejects_mixed_cutoffs():
    with pytest.raises(ValueError, match="different cutoffs"):
        collate([atoms_to_graph(molecule("H2O"), 3.0), atoms_to_graph(molecule("H2O"), 4.0)])
