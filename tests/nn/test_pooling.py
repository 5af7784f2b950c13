"""Soft Coarse-Graining Pooling: weights, the coarse topology, smoothness, receptive field."""

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import molecule

from muse_ff import MuSECalculator, build_model
from muse_ff.datasets.graphene import flake
from muse_ff.nn.coarsening import CoarseLevelError, bond_graph, frame_topology, refine_colours
from muse_ff.physics import energy_and_derivatives, hessian_vector_product

PAINN = {"name": "painn", "features": 16, "layers": 2, "num_basis": 8}


def benzene_at(x: float, height: float = 3.4) -> Atoms:
    b = molecule("C6H6")
    b.positions += np.array([x, 0.3, height]) - b.positions.mean(axis=0)
    return b


def _model(levels=2, seed=0):
    torch.manual_seed(seed)
    lev = {"ratio": 6}
    model = build_model({"backbone": PAINN, "levels": [lev] * levels, "dtype": "float64"})
    model.reference.set(scale=1.0)
    return model.eval()


def test_weights_nonnegative_normalised_and_every_atom_assigned():
    model = _model()
    atoms = flake(7.0) + benzene_at(0.0)
    states = model.coarse_grain(model.graph_from_atoms(atoms))
    n_fine = len(atoms)
    for state in states:
        w = state.weights
        assert (w >= 0).all()
        sums = torch.zeros(n_fine, dtype=w.dtype).index_add_(0, state.pair_fine, w)
        torch.testing.assert_close(sums, torch.ones_like(sums))
        assert torch.isclose(state.mass.sum(), torch.tensor(float(n_fine), dtype=w.dtype))
        n_fine = state.positions.shape[0]


def test_assignments_stay_inside_covalent_components():
    model = _model()
    atoms = flake(7.0) + benzene_at(0.0)
    graph = model.graph_from_atoms(atoms)
    topo = graph.coarse[0]
    comp = graph.component
    node_comp = comp[topo.ref_atom]
    assert torch.equal(comp[topo.pair_fine], node_comp[topo.pair_coarse])
    assert torch.equal(comp[topo.member_atom], node_comp[topo.member_node])
    # benzene (12 atoms, ratio 6): its ring carbons are one seed group, and its hydrogens, one bond away,
    # are too close to seed a second node, so the whole molecule is one coarse node, centred on the ring
    assert (node_comp == comp[-1]).sum() == 1
    assert (topo.member_node[comp[topo.member_atom] == comp[-1]]).numel() == 6


def _topology(atoms, ratios=(6.0, 4.0), hops=(4, 8)):
    return frame_topology(atoms.positions, atoms.numbers, atoms.cell[:], atoms.pbc, list(ratios), list(hops))


def test_small_molecule_is_one_coarse_node_with_all_atoms_as_seed():
    _, levels = _topology(molecule("H2O"), ratios=(8.0,), hops=(4,))
    assert levels[0].num_nodes == 1 and levels[0].member_atom.tolist() == [0, 1, 2]
    assert levels[0].pair_fine.tolist() == [0, 1, 2]


def test_colour_classes_do_not_depend_on_atom_order():
    atoms = flake(7.0)
    perm = np.random.default_rng(0).permutation(len(atoms))
    bg, bgp = (bond_graph(a.positions, a.numbers, np.zeros((3, 3)), np.zeros(3, bool)) for a in (atoms, atoms[perm]))
    col = refine_colours(bg.src, bg.dst, atoms.numbers)
    colp = refine_colours(bgp.src, bgp.dst, atoms.numbers[perm])
    assert np.array_equal(col[perm], colp)
    assert len(np.unique(col)) > 2  # refinement separates more than the two elements


def test_coarse_topology_is_a_function_of_the_bond_graph():
    """Same seed groups and pairs for permuted, rotated and deformed (same bonds) copies."""
    atoms = flake(7.0)
    atoms.rattle(0.02, seed=0)

    def canon(a, order):
        _, levels = _topology(a)
        out = []
        for t in levels:  # seed groups as sets of original atom indices (order[new index] = original)
            groups = sorted(tuple(sorted(order[t.member_atom[t.member_node == c].numpy()].tolist()))
                            for c in range(t.num_nodes))
            out.append(groups)
        return out

    ident = np.arange(len(atoms))
    ref = canon(atoms, ident)
    perm = np.random.default_rng(0).permutation(len(atoms))
    assert canon(atoms[perm], perm) == ref
    q, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(3, 3)))
    moved = atoms.copy()
    moved.positions = atoms.positions @ q.T + 5.0
    moved.rattle(0.05, seed=2)  # another conformation, same bonds
    assert canon(moved, ident) == ref


def test_every_fine_node_has_an_assignment_pair():
    atoms = flake(7.0) + benzene_at(0.0)
    _, levels = _topology(atoms)
    n = len(atoms)
    for t in levels:
        assert set(t.pair_fine.tolist()) == set(range(n))
        n = t.num_nodes


def test_small_periodic_crystal_takes_whole_classes():
    from ase.build import bulk

    _, levels = _topology(bulk("Si", "diamond", a=5.43, cubic=True), ratios=(8.0,), hops=(4,))
    assert levels[0].num_nodes == 8  # every atom equivalent: no subset would keep the symmetry


def test_smooth_when_molecule_slides_over_flake():
    """Energy, forces and curvature along a fine lateral path are continuous (no jumps from pooling)."""
    model = _model()
    base = flake(7.0)
    calc = MuSECalculator(model)
    xs = np.linspace(-1.5, 1.5, 81)
    direction = np.zeros((len(base) + 12, 3))
    direction[len(base):, 0] = 1.0
    energies, fx, curv, npairs = [], [], [], []
    for x in xs:
        atoms = base + benzene_at(x)
        atoms.calc = calc
        energies.append(atoms.get_potential_energy())
        fx.append(atoms.get_forces()[len(base):, 0].sum())
        graph = calc.graph(atoms)
        hv = hessian_vector_product(model, graph, torch.as_tensor(direction))
        curv.append(float((hv.numpy() * direction).sum()))
        npairs.append(model.coarse_grain(graph)[0].pair_fine.numel())
    energies, fx, curv = map(np.array, (energies, fx, curv))
    h = xs[1] - xs[0]
    # the profile is not flat: the test has something to see
    assert np.ptp(energies) > 1e-4
    # dE/dx = -F_x (energy consistent with forces along the path)
    np.testing.assert_allclose(np.diff(energies) / h, -0.5 * (fx[1:] + fx[:-1]), atol=2e-3 * np.abs(fx).max() + 1e-6)
    # dF/dx = -curvature, and no jump in any of them between neighbouring points
    np.testing.assert_allclose(np.diff(fx) / h, -0.5 * (curv[1:] + curv[:-1]), atol=0.02 * np.abs(curv).max() + 1e-6)
    # a jump in the curvature would show in its second difference as large as in its first difference
    assert np.abs(np.diff(curv, 2)).max() < 0.25 * np.abs(np.diff(curv)).max()
    assert len(set(npairs)) == 1  # the coarse topology does not change while the bonds do not


def test_receptive_field_reaches_30_angstrom_under_muse_only():
    """Moving the far end of a 34 Å alkane chain changes the atomic energies of the near end under MuSE."""
    chain = _alkane(27)
    far_end = int(np.argmax(chain.positions[:, 0]))
    near = np.flatnonzero(chain.positions[:, 0] < chain.positions[:, 0].min() + 3.0)
    moved = chain.copy()
    moved.positions[far_end] += [0.0, 0.15, 0.1]
    assert np.linalg.norm(chain.positions[near] - chain.positions[far_end], axis=1).min() > 30.0
    for levels, expect_change in [(0, False), (2, True)]:
        torch.manual_seed(0)
        model = build_model({"backbone": PAINN, "levels": [{}] * levels, "dtype": "float64"}).eval()
        calc = MuSECalculator(model)
        chain.calc = calc
        e_a = chain.get_potential_energies()[near]
        moved.calc = calc
        e_b = moved.get_potential_energies()[near]
        changed = np.abs(e_a - e_b).max()
        assert (changed > 1e-9) == expect_change, (levels, changed)


def _alkane(n: int) -> Atoms:
    """An all-trans CnH(2n+2) chain along x."""
    pos, sym = [], []
    for i in range(n):
        x, z = 1.26 * i, 0.44 * (i % 2)
        pos.append([x, 0.0, z]), sym.append("C")
        sgn = -1 if i % 2 else 1
        pos += [[x, 0.89, z - sgn * 0.51], [x, -0.89, z - sgn * 0.51]]
        sym += ["H", "H"]
    pos += [[-1.0, 0.0, -0.3], [1.26 * (n - 1) + 1.0, 0.0, 0.44 * ((n - 1) % 2) + 0.3]]
    sym += ["H", "H"]
    return Atoms(sym, positions=pos)


def test_extensive_beyond_largest_receptive_field():
    model = _model()
    a = molecule("C6H6")
    b = a.copy()
    b.translate([60.0, 0, 0])
    calc = MuSECalculator(model)
    a.calc = calc
    e1 = a.get_potential_energy()
    pair = a + b
    pair.calc = MuSECalculator(model)
    assert abs(pair.get_potential_energy() - 2 * e1) < 1e-9


def test_energy_split_by_level_sums_to_total_and_per_atom():
    model = _model()
    atoms = flake(7.0) + benzene_at(0.0)
    out = energy_and_derivatives(model, model.graph_from_atoms(atoms), forces=False)
    assert out["energy_levels"].shape == (1, 3)
    torch.testing.assert_close(out["energy_levels"].sum(1), out["energy"])
    torch.testing.assert_close(out["node_energy"].sum(), out["energy"][0])
    assert (out["energy_levels"][0, 1:].abs() > 0).all()  # the coarse levels contribute


def test_raises_if_level_has_fewer_nodes_than_required():
    model = build_model({"backbone": PAINN, "levels": [{"min_nodes": 2}]})
    with pytest.raises(CoarseLevelError, match="coarse level 1 has 1 node.*at least 2"):
        model.graph_from_atoms(molecule("H2O"))


def _caged_argon(offset: float):
    """C60 with an argon atom ``offset`` Å from its centre: the two coarse nodes coincide at offset 0."""
    from ase import Atoms

    c60 = molecule("C60")
    c60.positions -= c60.positions.mean(0)
    return c60 + Atoms("Ar", positions=[[offset, 0.3 * offset, 0.0]])


@pytest.mark.parametrize("backbone", [PAINN, {"name": "so3krates", "features": 16, "heads": 2,
                                                     "layers": 1, "degrees": [1, 2], "num_basis": 8}])
def test_coinciding_coarse_nodes_give_smooth_finite_forces(backbone):
    """Issue #13 item 11: a coarse edge of (near) zero length had an undefined direction: |F| 8e4 eV/Å for an
    argon atom at the centre of C60 (both coarse nodes there). The inner switch makes it smooth and finite."""
    torch.manual_seed(0)
    model = build_model({"backbone": backbone, "levels": [{"ratio": 4}], "dtype": "float64"}).eval()
    calc = MuSECalculator(model)
    direction = np.array([1.0, 0.3, 0.0])  # the argon moves along offset * direction

    def energy_and_slope(x):
        a = _caged_argon(x)
        a.calc = calc
        return a.get_potential_energy(), a.get_forces()

    path = [energy_and_slope(x) for x in np.linspace(-0.6, 0.6, 25)]
    energies, forces = np.array([e for e, _ in path]), np.array([f for _, f in path])
    assert np.isfinite(energies).all() and np.isfinite(forces).all()
    assert np.abs(forces).max() < 5.0  # an untrained model's forces are O(0.1) eV/Å
    # forces are minus the gradient through the coincidence and across the switch (central differences)
    h = 1e-4
    for x in (0.0, 0.02, 0.3, 0.45, 0.5, 0.55):
        fd = -(energy_and_slope(x + h)[0] - energy_and_slope(x - h)[0]) / (2 * h)
        assert abs(energy_and_slope(x)[1][-1] @ direction - fd) < 1e-5 * max(1.0, abs(fd))


def test_total_weight_a_coarse_node_receives_stays_below_saturation_at_any_density():
    """Issue #13 item 11: with one coarse node per molecule, a water molecule in a 2.6 Å cell has thousands of
    coarse neighbours within 20 Å; summed messages made MuSE give +6,541 eV per molecule in a 3.1 Å cell. Each
    edge's weight is s_ij n0 / (n0 + rho_i), rho_i = sum_j s_ij f_c(r_ij); the backbone's messages carry
    w_ij f_c(r_ij), whose sum over a node's edges stays below n0."""
    from muse_ff.nn.radial import smooth_cutoff

    torch.manual_seed(0)
    model = build_model({"backbone": PAINN, "levels": [{"ratio": 4}, {"ratio": 4, "saturation": 5.0}],
                         "dtype": "float64"}).eval()
    totals = {}
    for side in (40.0, 6.0, 3.1, 2.6):
        water = molecule("H2O")
        water.cell, water.pbc = np.eye(3) * side, True
        water.center()
        graph = model.graph_from_atoms(water)
        for k, (level, state) in enumerate(zip(model.levels, model.coarse_grain(graph))):
            r = level.edge_vectors(state, graph.cell).norm(dim=-1)
            w = level.edge_weights(state, r)
            assert (w >= 0).all() and (w <= 1).all()
            total = w.new_zeros(state.positions.shape[0]).index_add_(0, state.edge_index[0],
                                                                     w * smooth_cutoff(r, level.cutoff))
            totals[side, k] = (len(r), float(total.max()) if len(r) else 0.0)
            assert totals[side, k][1] < level.saturation
    # the top level of the 2.6 Å cell has thousands of edges, yet its node's total stays below n0 = 5
    assert totals[2.6, 1][0] > 1000 and totals[2.6, 1][1] > 4.5
    assert totals[40.0, 1][1] < 0.5  # alone in a 40 Å cell: its images are beyond (or at the edge of) the cutoff
