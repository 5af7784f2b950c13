"""Issue #13, items 2 and 8: `muse md` never destroys a user's file, continues a run with --append, and
writes frames that carry the model's results only (no stale labels of the start geometry)."""

import numpy as np
import pytest
import torch
from ase.build import molecule
from ase.io import read, write

from muse_ff import MuSECalculator, build_model, save_model
from muse_ff.cli.main import main


@pytest.fixture(scope="module")
def md_model(tmp_path_factory):
    """An untrained float64 MuSE(PaiNN) with one coarse level (H, C, O), saved to a file."""
    torch.manual_seed(0)
    model = build_model({"species": ["H", "C", "O"], "dtype": "float64", "levels": [{}],
                         "backbone": {"name": "painn", "features": 8, "layers": 1, "num_basis": 6}})
    model.reference.set(e0=[-13.6, -1030.0, -2040.0], scale=0.5)
    path = tmp_path_factory.mktemp("md_model") / "model.pt"
    save_model(model, path)
    return path


def _labelled_start(path):
    """Methanol with labels of its own geometry, as a labelled data file has them."""
    atoms = molecule("CH3OH")
    atoms.info.update({"REF_energy": 1.25, "REF_stress_like": np.arange(3.0), "molecule": "methanol"})
    atoms.arrays["REF_forces"] = np.full((len(atoms), 3), 7.0)
    atoms.arrays["REF_charges"] = np.full(len(atoms), 0.5)
    write(path, atoms)
    return path


def _md(model, structure, *extra, traj, log, steps=4):
    return main(["md", str(model), str(structure), "--steps", str(steps), "--interval", "2", "--temperature", "100",
                 "--trajectory", str(traj), "--log", str(log), "--no-progress", *extra])


def test_existing_trajectory_and_log_are_refused_unchanged(md_model, tmp_path, capsys):
    start = _labelled_start(tmp_path / "start.extxyz")
    traj, log = tmp_path / "md.extxyz", tmp_path / "md.log"
    assert _md(md_model, start, traj=traj, log=log) == 0
    before = traj.read_bytes(), log.read_bytes()
    capsys.readouterr()
    assert _md(md_model, start, traj=traj, log=log) == 2
    err = capsys.readouterr().err
    assert "already exist" in err and "--append" in err and "--overwrite" in err and len(err.splitlines()) == 1
    assert (traj.read_bytes(), log.read_bytes()) == before
    # an existing log alone is refused too
    traj2 = tmp_path / "other.extxyz"
    assert _md(md_model, start, traj=traj2, log=log) == 2
    assert not traj2.exists() and log.read_bytes() == before[1]


def test_continuing_from_the_trajectory_appends_and_keeps_the_old_frames(md_model, tmp_path):
    start = _labelled_start(tmp_path / "start.extxyz")
    traj, log = tmp_path / "md.extxyz", tmp_path / "md.log"
    assert _md(md_model, start, traj=traj, log=log) == 0
    first = read(traj, ":")
    first_bytes = traj.read_bytes()
    # continuing from md.extxyz (its last frame) into md.extxyz itself: the natural way to extend a run
    assert _md(md_model, traj, "--append", traj=traj, log=log) == 0
    frames = read(traj, ":")
    assert traj.read_bytes().startswith(first_bytes)  # nothing of the first run was lost or rewritten
    assert len(first) == 3 and len(frames) == 5  # steps 0, 2, 4 then 6, 8 (the start frame is not repeated)
    assert [a.info["md_step"] for a in frames] == [0, 2, 4, 6, 8]
    np.testing.assert_allclose([a.info["md_time_fs"] for a in frames], [0.0, 1.0, 2.0, 3.0, 4.0])
    lines = log.read_text().splitlines()
    assert len(lines) == 6 and lines[0].startswith("Time") and not lines[4].startswith("Time")
    np.testing.assert_allclose(float(lines[4].split()[0]), 0.003, atol=1e-9)  # ps: the log's time goes on


def test_an_appended_nve_run_continues_the_same_trajectory(md_model, tmp_path):
    """4 + 4 velocity-Verlet steps (continued from the written last frame, its momenta reused) follow the
    8-step run to the precision of the extxyz file."""
    start = _labelled_start(tmp_path / "start.extxyz")
    whole, split = tmp_path / "whole.extxyz", tmp_path / "split.extxyz"
    assert _md(md_model, start, "--integrator", "verlet", traj=whole, log=tmp_path / "w.log", steps=8) == 0
    assert _md(md_model, start, "--integrator", "verlet", traj=split, log=tmp_path / "s.log") == 0
    assert _md(md_model, split, "--integrator", "verlet", "--append", traj=split, log=tmp_path / "s.log") == 0
    a, b = read(whole, ":"), read(split, ":")
    assert len(a) == len(b) == 5
    np.testing.assert_allclose(b[-1].positions, a[-1].positions, atol=1e-6)
    np.testing.assert_allclose(b[-1].get_momenta(), a[-1].get_momenta(), atol=1e-6)


def test_overwrite_replaces_outputs_but_never_the_input(md_model, tmp_path, capsys):
    start = _labelled_start(tmp_path / "start.extxyz")
    traj, log = tmp_path / "md.extxyz", tmp_path / "md.log"
    assert _md(md_model, start, traj=traj, log=log) == 0
    assert _md(md_model, start, "--overwrite", traj=traj, log=log, steps=2) == 0
    assert len(read(traj, ":")) == 2 and len(log.read_text().splitlines()) == 3
    before = traj.read_bytes()
    capsys.readouterr()
    assert _md(md_model, traj, "--overwrite", traj=traj, log=log) == 2  # the input would be destroyed
    assert "input" in capsys.readouterr().err
    assert traj.read_bytes() == before
    # appending MD output to the model file is refused, --append and --overwrite exclude each other
    model_bytes = md_model.read_bytes()
    assert _md(md_model, start, "--append", traj=md_model, log=tmp_path / "x.log") == 2
    assert md_model.read_bytes() == model_bytes
    with pytest.raises(SystemExit):
        _md(md_model, start, "--append", "--overwrite", traj=traj, log=log)


def test_traj_format_appends_too(md_model, tmp_path):
    start = _labelled_start(tmp_path / "start.extxyz")
    traj, log = tmp_path / "md.traj", tmp_path / "md.log"
    assert _md(md_model, start, traj=traj, log=log) == 0
    assert _md(md_model, traj, "--append", traj=traj, log=log) == 0
    assert len(read(traj, ":")) == 5


def test_frames_carry_the_model_results_not_the_start_labels(md_model, tmp_path):
    start = _labelled_start(tmp_path / "start.extxyz")
    traj, log = tmp_path / "md.extxyz", tmp_path / "md.log"
    assert _md(md_model, start, traj=traj, log=log) == 0
    text = traj.read_text()
    assert "REF_" not in text
    calc = MuSECalculator(str(md_model))
    for frame in read(traj, ":"):
        assert not any(k.startswith("REF_") for k in list(frame.info) + list(frame.arrays))
        assert frame.info["molecule"] == "methanol"  # string metadata is not a label and is kept
        atoms = frame.copy()
        atoms.calc = calc
        np.testing.assert_allclose(frame.get_potential_energy(), atoms.get_potential_energy(), rtol=0, atol=1e-8)
        np.testing.assert_allclose(frame.get_forces(), atoms.get_forces(), rtol=0, atol=1e-8)


def test_appending_to_another_run_from_a_new_start_is_refused(md_model, tmp_path, capsys):
    """--append continues a trajectory from its own last frame: starting from another file would restart the
    step count in the middle of the trajectory."""
    start = _labelled_start(tmp_path / "start.extxyz")
    traj, log = tmp_path / "md.extxyz", tmp_path / "md.log"
    assert _md(md_model, start, traj=traj, log=log) == 0
    before = traj.read_bytes()
    capsys.readouterr()
    assert _md(md_model, start, "--append", traj=traj, log=log) == 2
    err = capsys.readouterr().err
    assert "continues" in err and "pass" in err and len(err.splitlines()) == 1
    assert traj.read_bytes() == before
    # appending to a trajectory that does not exist yet starts it
    assert _md(md_model, start, "--append", traj=tmp_path / "new.extxyz", log=tmp_path / "new.log") == 0
