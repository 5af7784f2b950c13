"""GFN1/GFN2-xTB teachers: units, signs and failures against tblite itself and finite differences."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule

from muse_ff.teachers import TeacherError, get_teacher

pytestmark = pytest.mark.teacher
pytest.importorskip("tblite")


def _water_dimer() -> Atoms:
    a, b = molecule("H2O"), molecule("H2O")
    b.positions += [0.3, 0.2, 3.0]
    return a + b


@pytest.mark.parametrize("name,method", [("gfn1-xtb", "GFN1-xTB"), ("gfn2-xtb", "GFN2-xTB")])
def test_label_matches_tblite_ase_calculator(name, method):
    from tblite.ase import TBLite

    atoms = _water_dimer()
    label = get_teacher(name).label(atoms)
    atoms.calc = TBLite(method=method, verbosity=0)
    assert label.energy == pytest.approx(atoms.get_potential_energy(), abs=1e-8)
    np.testing.assert_allclose(label.forces, atoms.get_forces(), atol=1e-8)
    assert label.stress is None


def test_forces_are_minus_the_energy_gradient():
    teacher, atoms, h = get_teacher("gfn2-xtb"), _water_dimer(), 1e-4
    forces = teacher.label(atoms).forces
    for atom, axis in [(0, 2), (4, 0)]:
        plus, minus = atoms.copy(), atoms.copy()
        plus.positions[atom, axis] += h
        minus.positions[atom, axis] -= h
        numeric = -(teacher.label(plus).energy - teacher.label(minus).energy) / (2 * h)
        assert forces[atom, axis] == pytest.approx(numeric, abs=2e-4)


def test_stress_is_the_strain_derivative_with_ase_sign():
    teacher = get_teacher("gfn1-xtb")
    si = bulk("Si", "diamond", a=5.3)  # compressed: the cell wants to expand, so stress < 0
    stress = teacher.label(si).stress
    eps, numeric = 1e-4, np.zeros((3, 3))
    for i, j in [(0, 0), (2, 2), (0, 1)]:
        energies = []
        for sign in (1.0, -1.0):
            strain = np.eye(3)
            strain[i, j] += sign * eps / (1 if i == j else 2)
            strain[j, i] += 0 if i == j else sign * eps / 2
            x = si.copy()
            x.set_cell(si.cell[:] @ strain, scale_atoms=True)
            energies.append(teacher.label(x).energy)
        numeric[i, j] = (energies[0] - energies[1]) / (2 * eps) / si.get_volume()
        assert stress[i, j] == pytest.approx(numeric[i, j], abs=2e-5)
    assert stress[0, 0] < 0


def test_charge_is_read_from_info_unless_set():
    formate = molecule("HCOOH")
    del formate[3]  # the hydroxyl hydrogen
    explicit = get_teacher("gfn2-xtb", charge=-1).label(formate).energy
    neutral = get_teacher("gfn2-xtb").label(formate).energy
    formate.info["charge"] = -1
    assert get_teacher("gfn2-xtb").label(formate).energy == pytest.approx(explicit, abs=1e-10)
    assert abs(neutral - explicit) > 0.1


def test_scf_not_converged_raises_teacher_error():
    with pytest.raises(TeacherError, match="SCF not converged"):
        get_teacher("gfn2-xtb", max_iter=2).label(_water_dimer())


def test_unknown_setting_raises_naming_it():
    with pytest.raises(TeacherError, match="unknown setting.*'acuracy'"):
        get_teacher("gfn2-xtb", acuracy=0.1)


def test_provenance_records_results_settings_but_not_threads():
    prov = get_teacher("gfn1-xtb", threads=1, accuracy=0.5).provenance()
    assert prov["teacher"] == "gfn1-xtb" and prov["teacher_version"].startswith("tblite ")
    assert '"accuracy": 0.5' in prov["teacher_settings"] and "threads" not in prov["teacher_settings"]


def test_dipole_is_tblites_total_dipole_in_e_angstrom_and_follows_a_charged_frame():
    from ase.units import Bohr
    from tblite.interface import Calculator

    atoms = _water_dimer()
    label = get_teacher("gfn2-xtb").label(atoms)
    calc = Calculator("GFN2-xTB", atoms.numbers, atoms.positions / Bohr)
    calc.set("verbosity", 0)
    np.testing.assert_allclose(label.dipole, np.asarray(calc.singlepoint().get("dipole")) * Bohr, atol=1e-6)
    assert 0.3 < np.linalg.norm(get_teacher("gfn2-xtb").label(molecule("H2O")).dipole) < 0.6  # ~2 D
    moved = atoms.copy()
    moved.positions += 5.0  # a neutral frame's dipole does not depend on the origin
    np.testing.assert_allclose(get_teacher("gfn2-xtb").label(moved).dipole, label.dipole, atol=1e-6)
    periodic = bulk("Si", "diamond", a=5.43)
    assert get_teacher("gfn1-xtb").label(periodic).dipole is None
