"""``levels[k].edges: within-component``: coarse messages along bonds only, none between molecules."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
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
    x = chain.positions @ _axis(chain)
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


def test_beyond_the_atom_cutoff_the_interaction_is_the_physical_terms_alone():
    """With ``model.physical`` and coarse edges within components, two molecules 8 Å apart interact only through
    the physical terms: E_int equals the physical energy's own interaction part, and each molecule keeps the
    charges it has alone (no learned term reaches across)."""
    a, b = molecule("CH3CN"), molecule("H2O")
    b.translate([0.4, 0.2, a.positions[:, 2].max() - b.positions[:, 2].min() + 8.0])
    torch.manual_seed(1)
    levels = [{"ratio": 4, "edges": "within-component"}]
    model = build_model({"backbone": PAINN, "species": [1, 6, 7, 8], "dtype": "float64", "levels": levels,
                         "physical": {}, "charges": True}).eval()
    out = {}
    for key, atoms in (("ab", a + b), ("a", a), ("b", b)):
        with torch.no_grad():
            r = model(model.graph_from_atoms(atoms))
        out[key] = (float(r["energy"][0]), float(r["physical_energy"][0]), r["charges"].numpy())
    e_int = out["ab"][0] - out["a"][0] - out["b"][0]
    phys_int = out["ab"][1] - out["a"][1] - out["b"][1]
    assert abs(phys_int) > 1e-6  # charged fragments of a polar pair: a real interaction
    assert e_int == pytest.approx(phys_int, abs=1e-10)
    np.testing.assert_allclose(out["ab"][2], np.concatenate([out["a"][2], out["b"][2]]), atol=1e-12)


def _water_box(size: float = 7.0):
    water = molecule("H2O")
    water.positions += size / 2
    water.cell, water.pbc = np.eye(3) * size, True
    return water


def _graphite():
    from ase.build import bulk

    return bulk("C", "hcp", a=2.46, c=6.70).repeat((3, 3, 1))  # two layers per cell, 6.7 Å along c


@pytest.mark.parametrize("make, repeat", [(_water_box, (2, 2, 2)), (_graphite, (1, 1, 2))],
                         ids=["water-box", "graphite"])
def test_a_supercell_has_the_energy_of_its_cells(make, repeat):
    """Periodic copies of a molecule (or of a graphite layer along c) are other instances of their component:
    no coarse edge joins them, so a supercell's energy is the cell's times the number of cells, as with every
    coarse edge (the energy is a function of the structure, not of the cell chosen for it)."""
    for edges in ("within-component", "all"):
        model = _model(edges)
        cell = make()
        n = int(np.prod(repeat))
        assert _energy(model, cell.repeat(repeat)) == pytest.approx(n * _energy(model, cell), abs=1e-9 * n * len(cell))


def test_a_molecule_has_no_coarse_edge_to_its_own_images_and_a_sheet_keeps_its_own():
    model = _model("within-component")
    states = model.coarse_grain(model.graph_from_atoms(_water_box(7.0)))  # images 7 Å away, within 10 / 20 Å
    assert all(int(s.edge_index.shape[1]) == 0 for s in states)
    sheet = graphene(size=(2, 2, 1), vacuum=8.0)  # 4.9 Å across: a node sees its own images
    sheet.pbc = [True, True, False]
    states = model.coarse_grain(model.graph_from_atoms(sheet))
    assert any(bool((s.shifts.abs().sum(-1) > 0).any()) for s in states)
    chain = Atoms("C2H4", positions=[[0, 0, 0], [1.27, 0, 0.3], [0, 0.9, -0.5], [0, -0.9, -0.5],
                                     [1.27, 0.9, 0.8], [1.27, -0.9, 0.8]], cell=[2.54, 12.0, 12.0], pbc=True)
    states = model.coarse_grain(model.graph_from_atoms(chain))  # polyethylene-like chain through x
    shifts = torch.cat([s.shifts for s in states])
    assert len(shifts) and bool((shifts[:, 1:] == 0).all()) and bool((shifts[:, 0] != 0).any())


@pytest.mark.parametrize("periodic", [False, True])
def test_the_coarse_graph_within_components_is_the_full_graph_filtered(periodic):
    """Nodes alone in a component that does not repeat are left out of the neighbour search, those of a small
    one take the pairs of its own nodes; the edges are exactly those of the full graph with both ends in one
    instance of one component."""
    from muse_ff.nn.pooling import coarse_graph

    rng = np.random.default_rng(3)
    box = 14.0
    pos = torch.tensor(rng.uniform(0, box, size=(60, 3)))
    component = torch.tensor(np.r_[np.arange(40), np.repeat([40, 41, 42, 43], 5)])  # 40 alone, 4 of five nodes
    image = torch.tensor(rng.integers(-1, 2, size=(60, 3)), dtype=torch.float64)
    free = torch.eye(3, dtype=torch.float64).repeat(60, 1, 1)
    # one component repeats along a and b
    free[component == 43] = torch.diag(torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))
    free[5] = torch.zeros(3, 3)  # and one lone node repeats along every direction
    if not periodic:
        image.zero_()
    batch = torch.zeros(60, dtype=torch.int64)
    for cutoff in (6.0, 20.0):  # images beyond / within the cutoff
        cell = torch.eye(3, dtype=torch.float64)[None] * box
        pbc = torch.tensor([[periodic] * 3])
        full_e, full_s = coarse_graph(pos, batch, cell, pbc, cutoff, 0.5)
        want = []
        for (i, j), s in zip(full_e.T.tolist(), full_s.tolist()):
            d = free[i] @ (torch.tensor(s) - (image[j] - image[i]))
            if component[i] == component[j] and float(d.norm()) < 0.5:
                want.append((i, j, *map(int, s)))
        for direct in (128, 1):  # the five-node molecules from their own pairs, then from the search
            got_e, got_s = coarse_graph(pos, batch, cell, pbc, cutoff, 0.5, component, image, free, direct)
            have = sorted((i, j, *map(int, s)) for (i, j), s in zip(got_e.T.tolist(), got_s.tolist()))
            assert have == sorted(want)
            assert any(a[0] == a[1] for a in have) == (periodic and cutoff > box)  # the repeating lone node only


def test_coarse_dispersion_without_edges_between_molecules_is_refused():
    from muse_ff.config import ConfigError

    with pytest.raises(ConfigError, match="dispersion.*within-component.*model.physical"):
        build_model({"backbone": PAINN, "levels": [{"dispersion": True, "edges": "within-component"}]})
    build_model({"backbone": PAINN, "levels": [{"dispersion": True}]})  # with every edge it stays


def test_the_direct_pairs_default_is_the_documented_constant():
    import inspect

    from muse_ff.nn.pooling import DIRECT_PAIRS_MAX_NODES, coarse_graph

    assert inspect.signature(coarse_graph).parameters["direct_max_nodes"].default == DIRECT_PAIRS_MAX_NODES
