"""The labelling pipeline (journal, resume, failures, workers) with a cheap fake teacher."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import ase.io
import numpy as np
import pytest
from labelling_fakes import HarmonicTeacher, frames

from muse_ff.data.atoms import LabelKeys
from muse_ff.teachers import TeacherError, label_file, label_frames
from muse_ff.teachers.labelling import SOURCE_INDEX, _header, _record, failures_path, journal_path


def _energies(path: Path) -> dict[int, float]:
    return {int(a.info[SOURCE_INDEX]): a.info["REF_energy"] for a in ase.io.read(path, index=":")}


def test_labelled_frames_carry_labels_provenance_and_source_index(tmp_path):
    fr = frames(4)
    report = label_frames(fr, HarmonicTeacher, {"k": 3.0}, tmp_path / "out.extxyz")
    out = ase.io.read(tmp_path / "out.extxyz", index=":")
    assert report.total == 4 and report.computed == 4 and not report.failures
    for k, a in enumerate(out):
        assert a.info[SOURCE_INDEX] == k
        assert a.info["REF_energy"] == pytest.approx(1.5 * (fr[k].positions ** 2).sum(), rel=1e-12)
        np.testing.assert_allclose(a.arrays["REF_forces"], -3.0 * fr[k].positions, atol=1e-7)
        assert a.info["teacher"] == "harmonic" and a.info["teacher_version"] == "harmonic 1"
        assert json.loads(a.info["teacher_settings"]) == {"k": 3.0}
    assert not journal_path(tmp_path / "out.extxyz").exists()


def test_custom_label_keys_are_used(tmp_path):
    keys = LabelKeys(energy="E_ref", forces="F_ref")
    label_frames(frames(2), HarmonicTeacher, {}, tmp_path / "out.extxyz", keys=keys)
    a = ase.io.read(tmp_path / "out.extxyz", index=0)
    assert "E_ref" in a.info and "F_ref" in a.arrays and "REF_energy" not in a.info


_KILLED_RUN = """
import sys
sys.path.insert(0, {here!r})
from labelling_fakes import HarmonicTeacher, frames
from muse_ff.teachers import label_frames
label_frames(frames(8), HarmonicTeacher, {{"log": {log!r}, "die_after": 3}}, {out!r})
"""


def test_resume_after_kill_labels_each_frame_exactly_once(tmp_path):
    out, log = tmp_path / "out.extxyz", tmp_path / "calls.log"
    script = _KILLED_RUN.format(here=str(Path(__file__).parent), log=str(log), out=str(out))
    killed = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert killed.returncode == 137
    assert not out.exists()  # nothing half-written
    assert len(journal_path(out).read_text().splitlines()) == 1 + 3  # header + 3 finished frames
    report = label_frames(frames(8), HarmonicTeacher, {"log": str(log)}, out)
    calls = Counter(int(x) for x in log.read_text().split())
    assert calls == Counter(range(8))  # every frame computed once over both runs
    assert report.reused == 3 and report.computed == 5
    assert sorted(_energies(out)) == list(range(8))


def test_torn_last_journal_line_is_dropped(tmp_path):
    out, log = tmp_path / "out.extxyz", tmp_path / "calls.log"
    fr = frames(3)
    label_frames(fr, HarmonicTeacher, {}, out)
    reference = _energies(out)
    out.unlink()
    # what a kill in the middle of writing record 1 leaves: header, record 0, half of record 1
    header = json.dumps(_header(fr, HarmonicTeacher().provenance()))
    first = json.dumps(_record(0, HarmonicTeacher().label(fr[0])))
    journal_path(out).write_text(header + "\n" + first + "\n" + '{"index": 1, "energy": 12.')
    report = label_frames(fr, HarmonicTeacher, {"log": str(log)}, out)
    assert report.reused == 1
    assert Counter(int(x) for x in log.read_text().split()) == Counter([1, 2])
    assert _energies(out) == pytest.approx(reference, rel=1e-12)


def test_bad_frame_is_reported_by_index_and_left_out(tmp_path):
    out = tmp_path / "out.extxyz"
    report = label_frames(frames(5, bad=(2,)), HarmonicTeacher, {}, out)
    assert [i for i, _ in report.failures] == [2]
    assert "SCF not converged" in report.failures[0][1]
    assert sorted(_energies(out)) == [0, 1, 3, 4]
    lines = failures_path(out).read_text().splitlines()
    assert lines[1].startswith("2\t") and "SCF not converged" in lines[1]
    # failures are never "done": a second run tries frame 2 again (and only it)
    again = label_frames(frames(5, bad=(2,)), HarmonicTeacher, {}, out)
    assert again.reused == 4 and [i for i, _ in again.failures] == [2]


def test_existing_output_is_reused_only_for_the_same_teacher(tmp_path):
    out, log = tmp_path / "out.extxyz", tmp_path / "calls.log"
    label_frames(frames(3), HarmonicTeacher, {}, out)
    assert label_frames(frames(3), HarmonicTeacher, {"log": str(log)}, out).reused == 3
    assert not log.exists()
    before = out.read_bytes()
    # another teacher setting would replace every label of the file: refused, nothing computed or changed
    with pytest.raises(TeacherError, match=r"out.extxyz exists and 3 of its frames would be replaced "
                                           r"\(frame 0: labelled with teacher_settings=.*--overwrite"):
        label_frames(frames(3), HarmonicTeacher, {"k": 5.0, "log": str(log)}, out)
    assert out.read_bytes() == before and not log.exists()
    other = label_frames(frames(3), HarmonicTeacher, {"k": 5.0, "log": str(log)}, out, overwrite=True)
    assert other.reused == 0 and len(log.read_text().split()) == 3


def test_existing_output_of_other_structures_is_refused(tmp_path):
    """Issue #13: a finished OUT of another input was replaced without a word."""
    out = tmp_path / "out.extxyz"
    label_frames(frames(3), HarmonicTeacher, {}, out)
    before = out.read_bytes()
    moved = frames(3)
    for a in moved:
        a.positions += 0.1
    with pytest.raises(TeacherError, match="3 of its frames would be replaced .*another structure than input frame 0"):
        label_frames(moved, HarmonicTeacher, {}, out)
    with pytest.raises(TeacherError, match="1 of its frames would be replaced .*not a frame of this input"):
        label_frames(frames(2), HarmonicTeacher, {}, out)  # frame 2 of the file has no source in a 2-frame input
    assert out.read_bytes() == before
    ase.io.write(tmp_path / "mine.extxyz", frames(2))  # a user's own file, not written by muse label
    with pytest.raises(TeacherError, match="no source index"):
        label_frames(frames(2), HarmonicTeacher, {}, tmp_path / "mine.extxyz")
    # a subset of the same frames, same teacher: completed, nothing refused
    assert label_frames(frames(4), HarmonicTeacher, {}, out).reused == 3


def test_journal_of_another_input_raises(tmp_path):
    out = tmp_path / "out.extxyz"
    journal_path(out).write_text(json.dumps({"header": 1, "n_frames": 99, "teacher": "harmonic"}) + "\n")
    with pytest.raises(TeacherError, match="different input or teacher"):
        label_frames(frames(3), HarmonicTeacher, {}, out)


def test_two_workers_give_the_serial_labels(tmp_path):
    serial = label_frames(frames(6, bad=(4,)), HarmonicTeacher, {}, tmp_path / "a.extxyz")
    pooled = label_frames(frames(6, bad=(4,)), HarmonicTeacher, {}, tmp_path / "b.extxyz", workers=2)
    assert _energies(tmp_path / "a.extxyz") == _energies(tmp_path / "b.extxyz")
    assert serial.failures == pooled.failures


def test_label_file_raises_if_input_missing_or_same_as_output(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        label_file(tmp_path / "nope.extxyz", tmp_path / "out.extxyz", HarmonicTeacher)
    ase.io.write(tmp_path / "in.extxyz", frames(1))
    with pytest.raises(ValueError, match="overwrite the input"):
        label_file(tmp_path / "in.extxyz", tmp_path / "in.extxyz", HarmonicTeacher)


def test_second_run_on_the_same_output_is_refused_while_the_first_holds_the_journal(tmp_path):
    fcntl = pytest.importorskip("fcntl")
    out = tmp_path / "out.extxyz"
    with open(journal_path(out), "a") as held:  # what a running `muse label` holds
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(TeacherError, match="another labelling run is writing out.extxyz"):
            label_frames(frames(2), HarmonicTeacher, {}, out)
    assert not out.exists()
    assert label_frames(frames(2), HarmonicTeacher, {}, out).computed == 2  # lock released: runs


def test_temporary_output_of_a_killed_run_is_removed(tmp_path):
    out = tmp_path / "out.extxyz"
    stale, other = tmp_path / ".tmp-12345-out.extxyz", tmp_path / ".tmp-12345-notes.extxyz"
    stale.write_text("half a frame")
    other.write_text("someone else's")
    label_frames(frames(2), HarmonicTeacher, {}, out)
    assert not stale.exists() and other.exists()
    assert sorted(_energies(out)) == [0, 1]
