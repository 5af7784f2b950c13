"""MuSE with ``model.physical`` (conserved charges, Coulomb, C6 dispersion) and ``model.charges`` (total charge
and spin as inputs): charge groups, exact conservation, asymptotic form of the tails beyond every cutoff,
derivatives, invariances, the calculator's inputs and outputs, saving and loading (issues #14 and #15)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import molecule

from muse_ff import build_model, load_model, save_model
from muse_ff.calculator import MuSECalculator
from muse_ff.data.atoms import StructureError
from muse_ff.nn.charges import ChargeAmbiguityWarning, charge_groups
from muse_ff.nn.physical import COULOMB

SPECIES = ["H", "C", "N", "O"]


def _model(physical=None, charges=False, levels=(), seed=0, **extra):
    torch.manual_seed(seed)
    cfg = {"backbone": {"name": "painn", "features": 16, "layers": 2, "num_basis": 8}, "embedding": 8,
           "species": SPECIES, "dtype": "float64", "levels": list(levels), "charges": charges, **extra}
    if physical is not None:
        cfg["physical"] = physical
    return build_model(cfg).eval()


def _pair(a: Atoms, b: Atoms, r: float) -> Atoms:
    """``a`` at the origin and ``b`` with its centre of mass ``r`` Å along x (no cell)."""
    a, b = a.copy(), b.copy()
    a.positions -= a.get_center_of_mass()
    b.positions += np.array([r, 0.0, 0.0]) - b.get_center_of_mass()
    out = a + b
    charges = np.concatenate([a.get_initial_charges(), b.get_initial_charges()])
    out.set_initial_charges(charges)
    out.info = {}
    return out


def _ion(name: str, charge: float) -> Atoms:
    a = molecule(name)
    q = np.zeros(len(a))
    q[0] = charge
    a.set_initial_charges(q)
    return a


def _energy(model, atoms: Atoms) -> float:
    with torch.no_grad():
        return float(model(model.graph_from_atoms(atoms))["energy"][0])


# ------------------------------------------------------------------------------------------ charge groups
def test_charge_groups_follow_components_and_formal_charges():
    comp = torch.tensor([0, 0, 1, 1, 1, 2, 3, 3])  # frame 0: components 0, 1; frame 1: 2, 3
    ptr = torch.tensor([0, 5, 8])
    group, value = charge_groups(comp, ptr, torch.tensor([0.0, 0.0]), None)
    assert group.tolist() == [0, 0, 1, 1, 1, 2, 3, 3] and value.tolist() == [0, 0, 0, 0]
    formal = torch.tensor([0, 0, -1.0, 0, 0, 0, 0, 2.0])
    group, value = charge_groups(comp, ptr, torch.tensor([-1.0, 2.0]), formal)
    assert group.tolist() == [0, 0, 1, 1, 1, 2, 3, 3] and value.tolist() == [0, -1, 0, 2]
    single = charge_groups(torch.tensor([0, 0, 0]), torch.tensor([0, 3]), torch.tensor([1.0]), None)
    assert single[0].tolist() == [0, 0, 0] and single[1].tolist() == [1.0]


def test_a_charged_frame_of_several_molecules_without_formal_charges_is_one_group_with_a_warning():
    comp = torch.tensor([0, 0, 1, 1, 2])
    with pytest.warns(ChargeAmbiguityWarning, match="set_initial_charges"):
        group, value = charge_groups(comp, torch.tensor([0, 4, 5]), torch.tensor([1.0, 0.0]), None)
    assert group.tolist() == [0, 0, 0, 0, 1] and value.tolist() == [1.0, 0.0]


def test_bad_charge_inputs_are_named():
    m = _model({"dispersion": False})
    w = molecule("H2O")
    for key, value in (("charge", "minus one"), ("charge", float("nan")), ("uhf", -1)):
        bad = w.copy()
        bad.info[key] = value
        with pytest.raises(StructureError, match=key):
            m.graph_from_atoms(bad)
    bad = w.copy()
    bad.info["charge"] = 1
    bad.set_initial_charges([0, 0, 0])
    bad.set_initial_charges([-1, 0, 0])
    with pytest.raises(StructureError, match="sum to -1"):
        m.graph_from_atoms(bad)


# ---------------------------------------------------------------------------------- conservation, tails
@pytest.mark.parametrize("levels", [(), ({"ratio": 3},)])
def test_charges_sum_exactly_to_each_molecule_s_charge(levels):
    m = _model({}, charges=True, levels=levels)
    frames = [_pair(molecule("H2O"), molecule("CH3CN"), 4.0), _pair(_ion("NH3", 1.0), molecule("H2O"), 3.5),
              _pair(_ion("HCOOH", -1.0), _ion("NH3", 1.0), 5.0)]
    g = m.graph_from_atoms(frames)
    out = m(g)
    q = out["charges"].detach()
    per_group = torch.zeros(int(g.group_charge.numel()), dtype=torch.float64).index_add_(0, g.charge_group, q)
    assert torch.allclose(per_group, g.group_charge, atol=1e-12)
    assert g.group_charge.tolist() == [0, 0, 1, 0, -1, 1]
    assert q.abs().max() > 1e-3  # the charges are not all zero: there is something to conserve


def test_ion_pair_tail_is_coulomb_beyond_every_cutoff():
    """Two ions 100 and 200 Å apart (5x the top coarse cutoff): E_int -> k_e q1 q2 / r."""
    m = _model({"dispersion": False}, levels=({"ratio": 3},))
    a, b = _ion("HCOOH", -1.0), _ion("NH3", 1.0)
    e_inf = _energy(m, a) + _energy(m, b)
    for r in (100.0, 200.0):
        e_int = _energy(m, _pair(a, b, r)) - e_inf
        assert e_int * r == pytest.approx(-COULOMB, rel=0.02)


def test_neutral_molecules_tail_is_dipolar_beyond_every_cutoff():
    """Neutral polar molecules: E_int ~ r^-3 far away (no charge moves between them; dipoles stay)."""
    m = _model({"dispersion": False}, levels=({"ratio": 3},))
    a, b = molecule("H2O"), molecule("CH3CN")
    e_inf = _energy(m, a) + _energy(m, b)
    e = {r: _energy(m, _pair(a, b, r)) - e_inf for r in (40.0, 80.0, 160.0)}
    assert abs(e[40.0]) > 1e-7
    assert e[40.0] / e[80.0] == pytest.approx(8.0, rel=0.05)
    assert e[80.0] / e[160.0] == pytest.approx(8.0, rel=0.02)


def test_dispersion_tail_is_r6_and_attractive():
    m = _model({"electrostatics": False})
    a, b = molecule("CH4"), molecule("CH4")
    e_inf = 2 * _energy(m, a)
    e = {r: _energy(m, _pair(a, b, r)) - e_inf for r in (30.0, 60.0)}
    assert e[30.0] < 0 and e[60.0] < 0
    assert e[30.0] / e[60.0] == pytest.approx(64.0, rel=0.02)


def test_far_copies_are_extensive():
    m = _model({}, charges=True, levels=({"ratio": 3},))
    w = _ion("NH3", 1.0)
    two = _pair(w, molecule("H2O"), 1e4)
    assert _energy(m, two) == pytest.approx(_energy(m, w) + _energy(m, molecule("H2O")), abs=2e-3)


# ------------------------------------------------------------------------------------ the charge input
def test_total_charge_and_spin_change_the_energy_and_neutral_closed_shell_input_changes_nothing():
    m = _model(None, charges=True)
    w = molecule("H2O")
    g = m.graph_from_atoms(w)
    sidx = m.species_index[g.species]
    assert m.charge_embedding(sidx, g.charge_group, g.group_charge, g.batch, g.spin).abs().max() == 0
    e0 = _energy(m, w)
    for key, value in (("charge", 1), ("uhf", 1)):
        other = w.copy()
        other.info[key] = value
        assert abs(_energy(m, other) - e0) > 1e-6


def test_without_the_option_the_charge_is_not_read():
    m = _model(None)
    w = molecule("H2O")
    ion = w.copy()
    ion.info["charge"] = 1
    assert _energy(m, ion) == _energy(m, w)


# ------------------------------------------------------------------------- derivatives and invariances
def _fd_forces(model, atoms: Atoms, h: float = 1e-4) -> np.ndarray:
    out = np.zeros((len(atoms), 3))
    for i in range(len(atoms)):
        for k in range(3):
            plus, minus = atoms.copy(), atoms.copy()
            plus.positions[i, k] += h
            minus.positions[i, k] -= h
            out[i, k] = -(_energy(model, plus) - _energy(model, minus)) / (2 * h)
    return out


@pytest.mark.parametrize("periodic", [False, True])
def test_forces_are_minus_the_gradient(periodic):
    m = _model({"ewald": {"cutoff": 6.0, "switch_width": 1.0, "method": "ewald"}}, charges=True,
               levels=({"ratio": 3},))
    atoms = _pair(_ion("NH3", 1.0), molecule("H2O"), 4.5)
    atoms.rattle(0.05, seed=1)
    if periodic:
        atoms.cell = [9.0, 8.0, 8.5]
        atoms.pbc = True
        atoms.positions += 2.0
    calc = MuSECalculator(m)
    atoms.calc = calc
    forces = atoms.get_forces()
    assert np.abs(forces - _fd_forces(m, atoms)).max() < 1e-6
    if periodic:  # stress = strain derivative, also through the Ewald sums
        s = atoms.get_stress(voigt=False)
        h, cell = 1e-5, atoms.cell.array.copy()
        for a, b in ((0, 0), (1, 2)):
            eps = np.zeros((3, 3))
            eps[a, b] = eps[b, a] = h
            e = []
            for sign in (1, -1):
                strained = atoms.copy()
                strained.set_cell(cell @ (np.eye(3) + sign * eps), scale_atoms=True)
                e.append(_energy(m, strained))
            assert (e[0] - e[1]) / (2 * h * (2 if a != b else 1)) / atoms.get_volume() == pytest.approx(
                s[a, b], abs=1e-7)


def test_rotation_translation_permutation_invariance_of_energy_and_charges():
    m = _model({}, charges=True, levels=({"ratio": 3},))
    atoms = _pair(_ion("NH3", 1.0), molecule("H2O"), 4.5)
    calc = MuSECalculator(m)
    atoms.calc = calc
    e, q = atoms.get_potential_energy(), atoms.get_charges().copy()
    moved = atoms.copy()
    moved.rotate(37, (1, 2, 3))
    moved.translate([3e3, -2.0, 7.0])
    perm = np.random.default_rng(0).permutation(len(atoms))
    moved = moved[perm]
    moved.calc = MuSECalculator(m)
    assert moved.get_potential_energy() == pytest.approx(e, abs=1e-9)
    assert np.allclose(moved.get_charges(), q[perm], atol=1e-10)


def test_calculator_sees_a_new_charge_and_reports_charges_and_dipole():
    m = _model({}, charges=True)
    w = molecule("H2O")
    w.calc = MuSECalculator(m)
    e0 = w.get_potential_energy()
    assert w.get_charges().sum() == pytest.approx(0.0, abs=1e-12)
    assert np.allclose(w.get_dipole_moment(), w.get_charges() @ (w.positions - w.get_center_of_mass()))
    w.info["charge"] = -1
    assert abs(w.get_potential_energy() - e0) > 1e-6  # not the cached neutral result
    assert w.get_charges().sum() == pytest.approx(-1.0, abs=1e-12)


def test_saved_model_gives_the_same_energies_and_charges(tmp_path):
    m = _model({"coulomb_switch": [0.5, 2.5]}, charges=True, levels=({"ratio": 3},))
    atoms = _pair(_ion("HCOOH", -1.0), molecule("H2O"), 4.0)
    save_model(m, tmp_path / "m.pt")
    loaded = load_model(tmp_path / "m.pt").eval()
    g = m.graph_from_atoms(atoms)
    with torch.no_grad():
        a, b = m(g), loaded(loaded.graph_from_atoms(atoms))
    assert torch.equal(a["energy"], b["energy"]) and torch.equal(a["charges"], b["charges"])


def test_a_float32_model_keeps_charges_exact_and_energy_finite():
    m = build_model({"backbone": {"name": "painn", "features": 16, "layers": 2}, "species": SPECIES,
                     "physical": {}, "charges": True})
    atoms = _pair(_ion("HCOOH", -1.0), molecule("H2O"), 4.0)
    atoms.positions += 1e6
    out = m(m.graph_from_atoms(atoms))
    assert torch.isfinite(out["energy"]).all()
    assert float(out["charges"][:5].sum()) == pytest.approx(-1.0, abs=1e-6)


def test_unprepared_graph_is_refused_with_a_sentence():
    from muse_ff.data.atoms import atoms_to_graph

    m = _model({})
    with pytest.raises(ValueError, match="model.prepare"):
        m(atoms_to_graph(molecule("H2O"), m.cutoff))


def test_warning_for_ambiguous_charge_reaches_the_user():
    m = _model({})
    pair = _pair(molecule("H2O"), molecule("CH4"), 4.0)
    pair.info["charge"] = 1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m.graph_from_atoms(pair)
    assert any(issubclass(w.category, ChargeAmbiguityWarning) for w in caught)
