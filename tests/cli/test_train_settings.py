"""Issue #14: ``muse train ... --force`` with a trainer setting Lightning refuses (an unknown ``--strategy``,
one this machine cannot run, ``--devices`` it does not take, an unknown ``--accelerator``) stops with one
sentence before anything is read, moved or written: the earlier run stays in place, complete. It used to
fail only after ``--force`` had moved the earlier run to ``previous_runs/N/`` and written the new
``config.yaml``."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml
from ase.io import write

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
from tiny_runs import tiny_config, water_dimers  # noqa: E402

from muse_ff.cli.main import main  # noqa: E402
from muse_ff.training import train  # noqa: E402
from muse_ff.training.run import TrainerSettingsError, check_trainer_settings  # noqa: E402


def _snapshot(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def earlier_run(tmp_path_factory):
    """(config file, output folder, snapshot): a finished one-epoch run."""
    root = tmp_path_factory.mktemp("run")
    data = root / "dimers.extxyz"
    write(data, water_dimers(8))
    cfg = root / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config(data, root / "out", epochs=1)))
    assert main(["train", str(cfg), "--no-progress", "--accelerator", "cpu"]) == 0
    return cfg, root / "out", _snapshot(root / "out")


@pytest.mark.parametrize("bad, named", [
    (["--strategy", "ddpp"], r"--strategy ddpp.*invalid strategy name"),
    (["--strategy", "fsdp", "--accelerator", "cpu"], r"--strategy fsdp.*requires a GPU"),
    (["--devices", "two", "--accelerator", "cpu"], r"--devices two"),
    (["--accelerator", "abacus"], r"--accelerator 'abacus' is not an accelerator"),
])
def test_force_with_a_bad_trainer_setting_leaves_the_earlier_run_intact(earlier_run, bad, named, capsys):
    cfg, out, before = earlier_run
    capsys.readouterr()
    assert main(["train", str(cfg), "--no-progress", "--force", *bad]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert re.search(named, err), err
    assert _snapshot(out) == before  # nothing moved, replaced or added
    assert not (out / "previous_runs").exists()


def test_bad_strategy_is_reported_before_the_data_is_read(tmp_path):
    cfg = tiny_config(tmp_path / "no_such_file.extxyz", tmp_path / "out")
    with pytest.raises(TrainerSettingsError, match=r"Lightning cannot train with --strategy nope"):
        train(cfg, force=True, strategy="nope", accelerator="cpu", progress=False)
    assert not (tmp_path / "out").exists()


def test_check_trainer_settings():
    check_trainer_settings("cpu", 1, 1, None)
    check_trainer_settings("cpu", 2, 1, None)  # ddp by default for two processes: built, not launched
    check_trainer_settings("auto", 1, 1, "auto")
    with pytest.raises(TrainerSettingsError, match=r"--strategy bogus, --accelerator cpu, --devices 1"):
        check_trainer_settings("cpu", 1, 1, "bogus")
    with pytest.raises(TrainerSettingsError, match=r"--num-nodes 0"):
        check_trainer_settings("cpu", 1, 0, None)
    with pytest.raises(ValueError):  # a MuseError and a ValueError: `muse` prints it as one line
        check_trainer_settings("cpu", 1, 1, "bogus")
