"""Starting geometries of the dataset builders: molecules, graphene flake and sheet, placement rules."""

from __future__ import annotations

import numpy as np
import pytest
from ase.neighborlist import neighbor_list

from muse_ff.datasets import dimers
from muse_ff.datasets.graphene import flake, periodic_sheet
from muse_ff.datasets.molecule_graphene import lay_flat
from muse_ff.datasets.molecules import MOLECULES, molecule


def _coordination(atoms, cutoff=1.6):
    i, _ = neighbor_list("ij", atoms, cutoff)
    return np.bincount(i, minlength=len(atoms))


@pytest.mark.parametrize("name", MOLECULES)
def test_every_molecule_is_centred_and_bonded(name):
    atoms = molecule(name)
    np.testing.assert_allclose(atoms.get_center_of_mass(), 0.0, atol=1e-8)
    d = atoms.get_all_distances()[np.triu_indices(len(atoms), 1)]
    assert d.min() > 0.9  # no overlapping atoms
    assert (_coordination(atoms) >= 1).all()  # nothing floating free


def test_ions_carry_their_charge():
    assert molecule("formate").info["charge"] == -1 and molecule("formate").get_chemical_formula() == "CHO2"
    assert molecule("methylammonium").info["charge"] == 1
    assert molecule("methylammonium").get_chemical_formula() == "CH6N"
    assert molecule("water").info["charge"] == 0


def test_naphthalene_is_a_planar_c10h8_with_three_bonds_per_carbon():
    nap = molecule("naphthalene")
    assert nap.get_chemical_formula() == "C10H8"
    assert np.ptp(nap.positions[:, 2]) < 1e-9
    assert (_coordination(nap)[nap.numbers == 6] == 3).all()


def test_flake_is_hydrogen_terminated_c96h24():
    fl = flake(9.5)
    assert fl.get_chemical_formula() == "C96H24"
    coord = _coordination(fl)
    assert (coord[fl.numbers == 6] == 3).all() and (coord[fl.numbers == 1] == 1).all()
    np.testing.assert_allclose(fl.positions[:, :2].mean(axis=0), 0.0, atol=1e-8)


def test_periodic_sheet_has_three_neighbours_everywhere():
    sheet = periodic_sheet(6)
    assert len(sheet) == 72 and sheet.pbc.all()
    assert (_coordination(sheet) == 3).all()


def test_lay_flat_puts_the_ring_in_the_xy_plane():
    flat = lay_flat(molecule("pyridine"))
    assert np.ptp(flat.positions[:, 2]) < 1e-6


def test_dimer_placement_respects_separation_and_contacts():
    rng = np.random.default_rng(0)
    cfg = dimers.DEMO
    a, b = molecule("water"), molecule("acetonitrile")
    for _ in range(20):
        atoms, r = dimers._place(rng, a, b, cfg, cfg.r_max)
        assert cfg.r_min <= r <= cfg.r_max
        com = atoms[len(a):].get_center_of_mass() - atoms[: len(a)].get_center_of_mass()
        assert np.linalg.norm(com) == pytest.approx(r, abs=0.1)  # rattle moves the centres a little
        d = np.linalg.norm(atoms.positions[: len(a), None] - atoms.positions[None, len(a):], axis=-1)
        assert d.min() >= cfg.min_contact


def _graphene_molecule(name):
    from ase.build import molecule as g2_molecule

    from muse_ff.datasets.molecule_graphene import EXTRA_MOLECULES

    return molecule(name) if name in MOLECULES else g2_molecule(EXTRA_MOLECULES[name])


def test_every_molecule_graphene_molecule_can_be_built_and_is_planar():
    from muse_ff.datasets.molecule_graphene import CONFIG, EXTRA_MOLECULES

    assert set(CONFIG.molecules) <= set(MOLECULES) | set(EXTRA_MOLECULES)
    assert CONFIG.molecules[:3] == ("benzene", "naphthalene", "pyridine")  # appended: earlier frames unchanged
    for name in CONFIG.molecules:
        assert np.ptp(lay_flat(_graphene_molecule(name)).positions[:, 2]) < 1e-6


@pytest.mark.parametrize("name", ["benzene", "naphthalene", "pyridine", "pyrrole"])
def test_lay_flat_is_canonical_for_any_rotated_copy(name):
    """The orientation comes from the atoms, not from the eigensolver's arbitrary eigenvector signs."""
    from muse_ff.datasets.common import random_rotation

    mol = _graphene_molecule(name)
    flat = lay_flat(mol)
    assert np.abs(flat.positions[:, 2]).max() < 1e-8  # in the xy plane
    rng = np.random.default_rng(0)
    for _ in range(10):
        turned = mol.copy()
        turned.positions = turned.positions @ random_rotation(rng).T + rng.normal(size=3)
        np.testing.assert_allclose(lay_flat(turned).positions, flat.positions, atol=1e-8)
