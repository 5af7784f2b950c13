"""Issue #13 item 3: ``muse train`` without ``--resume`` on a folder holding an earlier run replaced
``model.pt``, ``last.ckpt``, ``best.ckpt`` and ``metrics.csv`` and left the old epoch checkpoints mixed in.
Now such a folder is refused (one sentence naming the folder, ``--resume`` and ``--force``), and
``--force`` moves the earlier run's outputs to ``previous_runs/N/`` before starting over.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml
from ase.io import write

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
from tiny_runs import tiny_config, water_dimers  # noqa: E402

from muse_ff.cli.main import build_parser, main  # noqa: E402


@pytest.fixture(scope="module")
def frames_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "dimers.extxyz"
    write(path, water_dimers(10))
    return path


def _config_file(tmp_path: Path, data: Path, out: Path, epochs: int) -> str:
    path = tmp_path / f"cfg{epochs}.yaml"
    path.write_text(yaml.safe_dump(tiny_config(data, out, epochs=epochs)))
    return str(path)


def _train(*args) -> int:
    return main(["train", *args, "--no-progress", "--accelerator", "cpu"])


def _snapshot(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_a_new_run_into_a_folder_with_an_earlier_run_is_refused_and_touches_nothing(frames_file, tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(_config_file(tmp_path, frames_file, out, 3)) == 0
    before = _snapshot(out)
    capsys.readouterr()
    assert _train(_config_file(tmp_path, frames_file, out, 2)) == 2
    err = capsys.readouterr().err.strip()
    assert str(out) in err and "--resume" in err and "--force" in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert _snapshot(out) == before  # nothing replaced, nothing added


def test_force_moves_the_earlier_run_aside_and_starts_clean(frames_file, tmp_path):
    out = tmp_path / "run"
    assert _train(_config_file(tmp_path, frames_file, out, 3)) == 0
    (out / "notes.txt").write_text("mine")  # not a run output: left where it is
    old = _snapshot(out)
    assert _train(_config_file(tmp_path, frames_file, out, 2), "--force") == 0
    assert sorted(p.name for p in (out / "checkpoints").glob("epoch*.ckpt")) == ["epoch0000.ckpt", "epoch0001.ckpt"]
    assert (out / "notes.txt").read_text() == "mine"
    moved = out / "previous_runs" / "1"
    assert {k: v for k, v in old.items() if k != "notes.txt"} == _snapshot(moved)  # every old output, unchanged
    assert yaml.safe_load((out / "config.yaml").read_text())["training"]["epochs"] == 2
    assert _train(_config_file(tmp_path, frames_file, out, 2), "--force") == 0
    assert (out / "previous_runs" / "2" / "model.pt").exists() and (moved / "model.pt").exists()


def test_an_empty_or_absent_folder_is_fine(frames_file, tmp_path):
    (tmp_path / "empty").mkdir()
    assert _train(_config_file(tmp_path, frames_file, tmp_path / "empty", 1)) == 0
    assert _train(_config_file(tmp_path, frames_file, tmp_path / "absent" / "deeper", 1)) == 0
    assert not (tmp_path / "empty" / "previous_runs").exists()


def test_resume_and_force_exclude_each_other_and_the_help_says_what_force_does(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["train", str(tmp_path / "c.yaml"), "--resume", "--force"])
    assert "not allowed with argument" in capsys.readouterr().err
    sub = build_parser()._subparsers._group_actions[0].choices["train"]
    force = next(a for a in sub._actions if "--force" in a.option_strings)
    assert "previous_runs" in force.help and "moved" in force.help and "deleted" in force.help
