"""``levels[k].edges: within-component``: coarse messages along bonds only, none between molecules."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import graphene, molecule

from muse_ff import MuSECalculator, build_model
from muse_ff.datasets.nonlocal_chains import ideal_cumulene

PAINN = {"name": "painn", "features": 16, "layers": 2, "num_basis": 8}


def _model(edges: str, seed: int = 0):
    torch.manual_seed(seed)
    levels = [{"ratio": 4, "edges": edges}, {"ratio": 4, "edges": edges}]
    return build_model({"backbone": PAINN, "species": [1, 6, 7, 8], "dtype": "float64", "levels": levels}).eval()


def _energy(model, atoms) -> float:
    a = atoms.copy()
    a.calc = MuSECalculator(model)
    return a.get_potential_energy()


@pytest.mark.parametrize("separation", [6.0, 9.0, 15.0])
def test_two_molecules_beyond_the_atom_cutoff_do_not_interact(separation):
    """Beyond the 5 Å atom cutoff and within the 10 / 20 Å coarse cutoffs the interaction energy is exactly zero
    with ``within-component`` (the physical terms are what carries it there), and not with ``all``."""
    a, b = molecule("CH3CH2OH"), molecule("C6H6")
    gap = a.positions[:, 2].max() - b.positions[:, 2].min()
    b.translate([0.3, -0.2, gap + separation])
    for edges, interacts in [("within-component", False), ("all", True)]:
        model = _model(edges)
        e_int = _energy(model, a + b) - _energy(model, a) - _energy(model, b)
        assert (abs(e_int) > 1e-7) == interacts, (edges, e_int)


def test_the_hierarchy_still_reaches_along_a_molecule():
    """Twisting one end of a 24-carbon cumulene (~31 Å) changes the atomic energies at the other end."""
    chain = ideal_cumulene(24)
    x = chain.positions[:, 0] if np.ptp(chain.positions[:, 0]) > 20 else chain.positions @ _axis(chain)
    far = int(np.argmax(x))
    near = np.flatnonzero(x < x.min() + 2.0)
    moved = chain.copy()
    moved.positions[far] += [0.0, 0.1, 0.12]
    assert np.linalg.norm(chain.positions[near] - chain.positions[far], axis=1).min() > 25.0
    model = _model("within-component")
    calc = MuSECalculator(model)
    chain.calc = calc
    e_a = chain.get_potential_energies()[near]
    moved.calc = calc
    e_b = moved.get_potential_energies()[near]
    assert np.abs(e_a - e_b).max() > 1e-9


def _axis(atoms) -> np.ndarray:
    centred = atoms.positions - atoms.positions.mean(0)
    return np.linalg.svd(centred, full_matrices=False)[2][0]


def test_a_periodic_sheet_keeps_its_coarse_edges_and_an_adsorbate_gets_none_to_it():
    sheet = graphene(size=(6, 6, 1), vacuum=8.0)
    sheet.pbc = [True, True, False]
    water = molecule("H2O")
    water.translate(sheet.positions.mean(0) + [0.0, 0.0, 3.2])
    atoms = sheet + water
    model = _model("within-component")
    graph = model.graph_from_atoms(atoms)
    states = model.coarse_grain(graph)
    component = graph.component
    for topo, state in zip(graph.coarse, states):
        comp_c = component[topo.ref_atom]
        i, j = state.edge_index
        assert bool((comp_c[i] == comp_c[j]).all())
        on_sheet = comp_c[i] == component[0]
        assert int(on_sheet.sum()) > 0  # the sheet's nodes, periodic images included, still talk
    reference = _model("all").coarse_grain(graph)
    assert sum(int(s.edge_index.shape[1]) for s in reference) > sum(int(s.edge_index.shape[1]) for s in states)
