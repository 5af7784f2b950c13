"""A coarse level far larger than the atom level (bulk molecular liquids: molecules are never merged) is
announced with a CoarseCostWarning when the topology is built, before a call that may not fit in memory."""

from __future__ import annotations

import warnings

import pytest
from ase import Atoms
from ase.build import bulk, molecule
from ase.neighborlist import neighbor_list
from test_coarsening_speedup import _waters  # the waters of the recorded-topology cases (tests/nn)

from muse_ff import build_model
from muse_ff.data.atoms import frame_graph
from muse_ff.nn.model import CoarseCostWarning, estimated_coarse_edges


def _water_box(n_mol: int = 216) -> Atoms:
    """Liquid-density water (0.0334 molecules/Å^3) in a periodic cube."""
    return _waters(n_mol, 0, box=(n_mol / 0.0334) ** (1 / 3))


def _prepare(model, atoms):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        graph = model.prepare(frame_graph(atoms, model.cutoff, keys=None))
    return graph, [w for w in caught if issubclass(w.category, CoarseCostWarning)]


def test_a_water_box_is_warned_about_and_the_estimate_counts_its_node_pairs():
    model = build_model({"backbone": {"name": "painn", "features": 8, "layers": 1}, "levels": [{}, {}]})
    atoms = _water_box()
    graph, caught = _prepare(model, atoms)
    assert [t.num_nodes for t in graph.coarse] == [216, 216]  # one node per molecule at both levels
    assert len(caught) == 1 and "coarse level 2" in str(caught[0].message) and "20 Å" in str(caught[0].message)
    estimate = estimated_coarse_edges(graph, [10.0, 20.0])
    nodes = Atoms(["X"] * 216, positions=atoms.positions[graph.coarse[1].ref_atom.numpy()], cell=atoms.cell,
                  pbc=True)
    exact = len(neighbor_list("i", nodes, 20.0))  # directed pairs, periodic images included
    assert estimate[1] == pytest.approx(exact, rel=0.25)


@pytest.mark.parametrize("name", ["diamond", "dimer"])
def test_covalent_solids_and_small_molecules_are_not_warned_about(name):
    model = build_model({"backbone": {"name": "painn", "features": 8, "layers": 1}, "levels": [{}, {}]})
    if name == "diamond":
        atoms = bulk("C", "diamond", a=3.57, cubic=True).repeat((4, 4, 4))
    else:
        atoms = molecule("H2O") + molecule("CH3OH")
        atoms.positions[3:] += [4.0, 0.0, 0.0]
    _, caught = _prepare(model, atoms)
    assert not caught


def test_a_water_box_with_coarse_edges_only_within_molecules_is_not_warned_about():
    """``edges: within-component``: one coarse node per water molecule and no edge between molecules (the box is
    12.7 Å across, so no molecule sees its own image within 10 Å), estimated and built."""
    levels = [{"edges": "within-component"}, {"edges": "within-component", "cutoff": 12.0}]
    model = build_model({"backbone": {"name": "painn", "features": 8, "layers": 1}, "levels": levels})
    graph, caught = _prepare(model, _water_box(68))
    assert not caught
    within = estimated_coarse_edges(graph, [10.0, 12.0], [True, True])
    every = estimated_coarse_edges(graph, [10.0, 12.0])
    assert within[0] * 60 < every[0]  # one node per component: n_c = 1 against 68
    assert within == [0.0, 0.0]  # a molecule has no edge to its own images: at most n_c (n_c - 1) = 0
    states = model.coarse_grain(graph)
    assert [int(s.edge_index.shape[1]) for s in states][0] == 0


def test_a_sheet_that_repeats_keeps_its_periodic_estimate_with_edges_within_components():
    """A periodic graphene sheet is one component bonded to its own images: within-component keeps every
    coarse edge, and the estimate is the one of every edge (not capped at n (n - 1))."""
    from ase.build import graphene

    model = build_model({"backbone": {"name": "painn", "features": 8, "layers": 1},
                         "levels": [{"edges": "within-component"}]})
    sheet = graphene(size=(6, 6, 1), vacuum=None)
    sheet.cell[2, 2] = 12.0
    sheet.pbc = True
    graph, _ = _prepare(model, sheet)
    within, every = estimated_coarse_edges(graph, [10.0], [True]), estimated_coarse_edges(graph, [10.0])
    m = graph.coarse[0].num_nodes
    assert within == every and within[0] > m * (m - 1)  # images within 10 Å of a 14.8 Å sheet
