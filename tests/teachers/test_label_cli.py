"""``muse label``: labels equal a direct teacher call; failures are reported and set the exit status."""

from __future__ import annotations

import ase.io
import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule

from muse_ff.cli.main import main
from muse_ff.teachers import get_teacher

pytestmark = pytest.mark.teacher
pytest.importorskip("tblite")


def _inputs(tmp_path, bad: bool):
    frames = [molecule("H2O"), molecule("NH3")]
    if bad:
        frames.insert(1, Atoms("H2", positions=[[0, 0, 0], [0, 0, 0]]))  # coincident atoms: tblite refuses
    path = tmp_path / "in.extxyz"
    ase.io.write(path, frames)
    return path, frames


def test_label_command_matches_a_direct_teacher_call(tmp_path):
    src, frames = _inputs(tmp_path, bad=False)
    out = tmp_path / "out.extxyz"
    assert main(["label", str(src), str(out), "--teacher", "gfn2-xtb", "--no-progress"]) == 0
    teacher = get_teacher("gfn2-xtb")
    for atoms, labelled in zip(frames, ase.io.read(out, index=":")):
        direct = teacher.label(atoms)
        assert labelled.info["REF_energy"] == pytest.approx(direct.energy, abs=1e-9)
        np.testing.assert_allclose(labelled.arrays["REF_forces"], direct.forces, atol=1e-7)
        assert labelled.info["teacher"] == "gfn2-xtb"
        if not atoms.pbc.any():
            np.testing.assert_allclose(labelled.info["REF_dipole"], direct.dipole, atol=1e-7)


def test_failed_frame_is_reported_by_index_and_exit_is_nonzero(tmp_path, capsys):
    src, _ = _inputs(tmp_path, bad=True)
    out = tmp_path / "out.extxyz"
    assert main(["label", str(src), str(out), "--teacher", "gfn2-xtb", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "frame 1:" in err and "Too close" in err
    assert [a.info["source_index"] for a in ase.io.read(out, index=":")] == [0, 2]
    assert (tmp_path / "out.extxyz.failures.txt").read_text().splitlines()[1].startswith("1\t")
    assert main(["label", str(src), str(out), "--teacher", "gfn2-xtb", "--no-progress", "--allow-failures"]) == 0


def test_amber_without_pdb_is_a_clear_usage_error(tmp_path, capsys):
    src, _ = _inputs(tmp_path, bad=False)
    assert main(["label", str(src), str(tmp_path / "o.extxyz"), "--teacher", "amber14-gbn2"]) == 2
    assert "--pdb FILE" in capsys.readouterr().err


def test_a_finished_output_of_another_teacher_is_refused_unless_overwrite(tmp_path, capsys):
    """Issue #13: `muse label IN OUT --teacher gfn1-xtb` after a gfn2-xtb run replaced its labels silently."""
    src, _ = _inputs(tmp_path, bad=False)
    out = tmp_path / "out.extxyz"
    assert main(["label", str(src), str(out), "--teacher", "gfn2-xtb", "--no-progress"]) == 0
    before = out.read_bytes()
    capsys.readouterr()
    assert main(["label", str(src), str(out), "--teacher", "gfn1-xtb", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "would be replaced" in err[0] and "teacher=gfn2-xtb" in err[0] and "--overwrite" in err[0]
    assert out.read_bytes() == before
    assert main(["label", str(src), str(out), "--teacher", "gfn1-xtb", "--no-progress", "--overwrite"]) == 0
    assert {a.info["teacher"] for a in ase.io.read(out, index=":")} == {"gfn1-xtb"}
