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


@pytest.mark.parametrize("periodic", [False, True])
def test_the_coarse_graph_within_components_is_the_full_graph_filtered(periodic):
    """Nodes alone in their component are left out of the neighbour search (a liquid: nothing to search) only
    where no node can see its own image; the edges are exactly those of the full graph within components."""
    from muse_ff.nn.pooling import coarse_graph

    rng = np.random.default_rng(3)
    box = 14.0
    pos = torch.tensor(rng.uniform(0, box, size=(60, 3)))
    component = torch.tensor(np.r_[np.arange(40), np.repeat([40, 41, 42, 43], 5)])  # 40 alone, 4 of five nodes
    batch = torch.zeros(60, dtype=torch.int64)
    for cell_size, cutoff in [(box, 6.0), (box, 20.0)]:  # images beyond / within the cutoff
        cell = torch.eye(3, dtype=torch.float64)[None] * cell_size
        pbc = torch.tensor([[periodic] * 3])
        full_e, full_s = coarse_graph(pos, batch, cell, pbc, cutoff, 0.5)
        same = component[full_e[0]] == component[full_e[1]]
        got_e, got_s = coarse_graph(pos, batch, cell, pbc, cutoff, 0.5, component)
        want = sorted(map(tuple, torch.cat([full_e[:, same].T, full_s[same].long()], 1).tolist()))
        have = sorted(map(tuple, torch.cat([got_e.T, got_s.long()], 1).tolist()))
        assert have == want
        assert any(a[0] == a[1] for a in have) == (periodic and cutoff > box)  # a node and its own image
