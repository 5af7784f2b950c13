"""Issue #13 item 10: periodic Hessians projected out rotations (water in a 4 Å cell: librations at -112 and
203 cm^-1 were shown only as residuals of the "rigid" block).

A rotation is a rigid motion only where it maps the periodic images onto themselves: for a free structure
all three, for a structure periodic in one direction the one about that axis, for two or three periodic
directions none. Exact identities of an invariant energy check the rule on a model: a translation t gives
``H t = 0``; a symmetry rotation with angular velocity w gives ``H (w x r) = w x g`` (g the gradient).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import molecule
from ase.io import write

from muse_ff import build_model
from muse_ff.analysis.vibrations import harmonic_analysis, model_vibrations, rigid_body_basis
from muse_ff.calculator import MuSECalculator
from muse_ff.cli.main import main
from muse_ff.io.serialization import save_model
from muse_ff.testing.conformance import SMALL_PAINN


@pytest.fixture(scope="module")
def calc():
    torch.manual_seed(0)
    model = build_model({"backbone": SMALL_PAINN, "levels": [{}], "dtype": "float64",
                         "species": [1, 6, 8]}).eval()
    return MuSECalculator(model)


def water_box(a: float = 4.0) -> Atoms:
    atoms = molecule("H2O")
    atoms.rotate(20, (1, 1, 0))
    atoms.positions += a / 2
    atoms.cell = [a, a, a]
    atoms.pbc = True
    return atoms


def chain(axis=(0.0, 0.0, 1.0)) -> Atoms:
    """A zig-zag H-C-O chain periodic along ``axis`` (2.6 Å repeat), vacuum around it."""
    axis = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
    side = np.cross(axis, [0.3, 0.5, 0.8])
    side /= np.linalg.norm(side)
    up = np.cross(axis, side)
    pos = [0.0 * axis, 1.2 * axis + 0.7 * side, 0.5 * axis - 1.0 * side + 0.6 * up]
    cell = np.array([12 * side, 12 * up, 2.6 * axis])
    return Atoms("COH", positions=np.array(pos) + 6 * side + 6 * up, cell=cell, pbc=[False, False, True])


@pytest.mark.parametrize("atoms, pbc, k", [
    (molecule("H2O"), None, 6),
    (molecule("H2O"), [False, False, False], 6),
    (molecule("CO2"), None, 5),
    (Atoms("Ar"), None, 3),
    (water_box(), True, 3),
    (water_box(), [True, True, False], 3),
    (chain(), [False, False, True], 4),
    (Atoms("C2", positions=[[5, 5, 0], [5, 5, 1.3]], cell=[10, 10, 2.6]), [False, False, True], 3),
])
def test_rigid_motions_follow_the_periodicity(atoms, pbc, k):
    q = rigid_body_basis(atoms.positions, atoms.get_masses(), pbc=pbc, cell=np.asarray(atoms.cell))
    assert q.shape == (3 * len(atoms), k)
    np.testing.assert_allclose(q.T @ q, np.eye(k), atol=1e-10)


def test_one_periodic_direction_needs_the_cell():
    atoms = chain()
    with pytest.raises(ValueError, match="cell"):
        rigid_body_basis(atoms.positions, atoms.get_masses(), pbc=atoms.pbc)


def _gradient_and_hessian(calc, atoms):
    atoms = atoms.copy()
    atoms.calc = calc
    return -atoms.get_forces().reshape(-1), calc.get_hessian(atoms)


def _rotation(atoms, w):
    com = atoms.get_center_of_mass()
    return np.cross(np.broadcast_to(w, (len(atoms), 3)), atoms.positions - com).reshape(-1)


def test_rotation_about_the_chain_axis_is_a_symmetry_and_is_projected(calc):
    atoms = chain(axis=(1.0, 1.0, 0.5))  # the periodic axis along no Cartesian axis
    atoms.rattle(0.05, seed=2)
    g, h = _gradient_and_hessian(calc, atoms)
    w = atoms.cell[2] / np.linalg.norm(atoms.cell[2])
    expected = np.cross(np.broadcast_to(w, (len(atoms), 3)), g.reshape(-1, 3)).reshape(-1)
    np.testing.assert_allclose(h @ _rotation(atoms, w), expected, atol=1e-8)
    # a perpendicular rotation is not a symmetry of the chain
    perp = np.cross(w, [1.0, 0.0, 0.0])
    perp /= np.linalg.norm(perp)
    off = np.cross(np.broadcast_to(perp, (len(atoms), 3)), g.reshape(-1, 3)).reshape(-1)
    assert np.abs(h @ _rotation(atoms, perp) - off).max() > 1e-3
    # and the projected basis holds exactly the axial rotation among rotations
    q = rigid_body_basis(atoms.positions, atoms.get_masses(), pbc=atoms.pbc, cell=np.asarray(atoms.cell))
    rot = np.sqrt(np.repeat(atoms.get_masses(), 3)) * _rotation(atoms, w)
    np.testing.assert_allclose(np.linalg.norm(q.T @ rot), np.linalg.norm(rot), rtol=1e-10)
    ana = harmonic_analysis(h, atoms.get_masses(), atoms.positions, pbc=atoms.pbc, cell=np.asarray(atoms.cell))
    assert len(ana.frequencies_cm1) == 3 * len(atoms) - 4 and len(ana.rigid_cm1) == 4


def test_water_in_a_periodic_box_has_3n_minus_3_modes(calc):
    atoms = water_box()
    g, h = _gradient_and_hessian(calc, atoms)
    broken = []
    for axis in range(3):  # translations stay exact zero modes of a periodic cell
        t = np.zeros((len(atoms), 3))
        t[:, axis] = 1.0
        assert np.abs(h @ t.reshape(-1)).max() < 1e-8
        # rotations are not symmetries in a box: H (w x r) != w x g
        w = np.eye(3)[axis]
        wg = np.cross(np.broadcast_to(w, (len(atoms), 3)), g.reshape(-1, 3)).reshape(-1)
        broken.append(np.abs(h @ _rotation(atoms, w) - wg).max())
    assert min(broken) > 1e-4 and max(broken) > 1e-2, broken
    relaxed, ana = model_vibrations(atoms, calc)
    assert len(ana.frequencies_cm1) == 6 and len(ana.rigid_cm1) == 3  # librations are modes
    assert np.abs(ana.rigid_cm1).max() < 1.0  # what is projected is a true zero block
    free = molecule("H2O")
    _, ana_free = model_vibrations(free, calc)
    assert len(ana_free.frequencies_cm1) == 3 and len(ana_free.rigid_cm1) == 6
    _, ana_lin = model_vibrations(molecule("CO2"), calc)
    assert len(ana_lin.frequencies_cm1) == 4 and len(ana_lin.rigid_cm1) == 5


def test_muse_hessian_reports_the_librations_of_water_in_a_box(calc, tmp_path, capsys):
    save_model(calc.model, tmp_path / "model.pt")
    write(tmp_path / "box.extxyz", water_box())
    rc = main(["hessian", str(tmp_path / "model.pt"), str(tmp_path / "box.extxyz"), "--json",
               "--modes", str(tmp_path / "modes.extxyz")])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["frequencies_cm1"]) == 6 and len(out["rigid_cm1"]) == 3
    assert main(["hessian", str(tmp_path / "model.pt"), str(tmp_path / "box.extxyz"),
                 "--modes", str(tmp_path / "modes.extxyz")]) == 0
    assert "6 vibrational modes (3 rigid-body motions projected out" in capsys.readouterr().out
