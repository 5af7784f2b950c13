"""amber14-gbn2 teacher: unit conversion against OpenMM itself, gradient consistency, topology checks."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms

from muse_ff.teachers import TeacherError, get_teacher

pytestmark = pytest.mark.teacher
pytest.importorskip("openmm")
pytest.importorskip("pdbfixer")
pytest.importorskip("rdkit")


@pytest.fixture(scope="module")
def chignolin(tmp_path_factory):
    from muse_ff.datasets.folding import write_chignolin_pdb

    pdb = write_chignolin_pdb(tmp_path_factory.mktemp("pdb") / "chignolin.pdb")
    import openmm.app as app

    p = app.PDBFile(str(pdb))
    numbers = [a.element.atomic_number for a in p.topology.atoms()]
    positions = np.asarray(p.getPositions(asNumpy=True).value_in_unit(p.positions.unit)) * 10.0
    return pdb, Atoms(numbers, positions=positions)


def test_label_matches_openmm_energy_in_ev(chignolin):
    import openmm as mm
    import openmm.app as app
    import openmm.unit as u

    pdb, atoms = chignolin
    label = get_teacher("amber14-gbn2", pdb=str(pdb)).label(atoms)
    top = app.PDBFile(str(pdb)).topology
    system = app.ForceField("amber14-all.xml", "implicit/gbn2.xml").createSystem(top, nonbondedMethod=app.NoCutoff)
    ctx = mm.Context(system, mm.VerletIntegrator(0.001), mm.Platform.getPlatformByName("Reference"))
    ctx.setPositions(atoms.positions * u.angstrom)
    kj = ctx.getState(getEnergy=True).getPotentialEnergy().value_in_unit(u.kilojoule_per_mole)
    assert label.energy == pytest.approx(kj / 96.485332, rel=1e-6)
    assert label.forces.shape == (138, 3) and label.stress is None


def test_forces_are_minus_the_energy_gradient(chignolin):
    pdb, atoms = chignolin
    teacher, h = get_teacher("amber14-gbn2", pdb=str(pdb)), 1e-4
    forces = teacher.label(atoms).forces
    for atom, axis in [(0, 0), (60, 2)]:
        plus, minus = atoms.copy(), atoms.copy()
        plus.positions[atom, axis] += h
        minus.positions[atom, axis] -= h
        numeric = -(teacher.label(plus).energy - teacher.label(minus).energy) / (2 * h)
        assert forces[atom, axis] == pytest.approx(numeric, rel=1e-4, abs=1e-4)


def test_atoms_out_of_pdb_order_raise_naming_the_atom(chignolin):
    pdb, atoms = chignolin
    swapped = atoms[[1, 0] + list(range(2, len(atoms)))]
    with pytest.raises(TeacherError, match="atom 0 is Z=.*PDB's order"):
        get_teacher("amber14-gbn2", pdb=str(pdb)).label(swapped)


def test_missing_pdb_raises():
    with pytest.raises(TeacherError, match="needs a topology"):
        get_teacher("amber14-gbn2")
    with pytest.raises(TeacherError, match="not found"):
        get_teacher("amber14-gbn2", pdb="/nonexistent.pdb")
