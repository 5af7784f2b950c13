"""``molecule_graphene.add_binding_energies``: every frame, samples included, gets E - E(substrate) - E(molecule)
from the teacher, one by one or through the resumable labelling pipeline (same numbers)."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms

pytest.importorskip("tblite")

from muse_ff.datasets.molecule_graphene import add_binding_energies  # noqa: E402
from muse_ff.teachers import TEACHERS  # noqa: E402


def _frames(teacher):
    substrate = Atoms("H2", positions=[[0, 0, 0], [0.74, 0, 0]])
    water = Atoms("OH2", positions=[[0, 0, 0], [0.76, 0.59, 0], [-0.76, 0.59, 0]])
    frames = []
    for k, (height, role) in enumerate(((3.0, "sample"), (3.5, "sample"), (4.0, "curve"))):
        mol = water.copy()
        mol.positions += [0.3 * k, 0.0, height]
        f = substrate + mol
        f.info = {"role": role, "frame_id": f"f{k}", "n_substrate": 2, "substrate": "h2", "molecule": "water"}
        f.info["REF_energy"] = teacher.label(f).energy
        frames.append(f)
    return frames, substrate, water


def test_samples_get_their_own_fragments_and_both_paths_agree(tmp_path):
    teacher = TEACHERS["gfn1-xtb"]()
    frames, substrate, _ = _frames(teacher)
    one_by_one = [f.copy() for f in frames]
    fragments = add_binding_energies(one_by_one, teacher)
    assert set(fragments) == {"substrate:h2", "molecule:water"}  # the curve's shared fragments
    piped = [f.copy() for f in frames]
    add_binding_energies(piped, teacher, work_dir=tmp_path / "work", workers=1)
    for f, a, b in zip(frames, one_by_one, piped):
        sub, mol = f[:2], f[2:]
        mol.positions -= mol.get_center_of_mass()  # the free molecule, as substrate_and_molecule cuts it
        want = f.info["REF_energy"] - teacher.label(sub).energy - teacher.label(mol).energy
        assert a.info["binding_energy"] == pytest.approx(want, abs=1e-9)
        assert b.info["binding_energy"] == pytest.approx(want, abs=1e-9)
    assert np.ptp([f.info["binding_energy"] for f in one_by_one]) > 1e-5  # three geometries, three values
