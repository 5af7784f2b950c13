"""Issue #14, logs: what ``muse train`` prints and writes is readable.

* one line per epoch (epoch, lr, train loss, validation loss and MAE, time) with ``--no-progress`` or when
  stdout is not a terminal (``--no-progress`` used to print nothing for the whole run);
* on a terminal, a progress bar whose postfix fits on one line (it wrapped over ~5 lines);
* ``logs/metrics.csv``: one complete row per epoch (it had ~3 sparse rows per epoch);
* no Lightning banners ("GPU available: False, used: False", "TPU available ...");
* the validation table's ``count`` column is filled, the summary says where the E0s come from;
* a GPU that is not there is one sentence (exit 2), not a traceback, and nothing is written.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import re
import sys

import pytest
import torch
import yaml
from ase.build import molecule
from ase.io import write
from rich.console import Console

from muse_ff import build_model, save_model
from muse_ff.cli.main import main
from muse_ff.devices import DeviceError, check_accelerator, check_device
from muse_ff.training import train
from muse_ff.training.report import print_train_summary

EPOCHS = 3
LINE = re.compile(r"^epoch (\d+)  lr \S+  loss train \S+ valid \S+  MAE E \S+ meV/atom F \S+ meV/Å  \S+ s(  best)?$")


@pytest.fixture(scope="module")
def data_file(tmp_path_factory, make_dimers):
    path = tmp_path_factory.mktemp("data") / "dimers.extxyz"
    write(path, make_dimers(10))  # 6 train, 2 valid, 2 test
    return path


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory, data_file, make_config):
    """``muse train CONFIG --no-progress --accelerator cpu``: (exit status, stdout, Lightning log records, out)."""
    tmp = tmp_path_factory.mktemp("cli")
    out = tmp / "run"
    cfg = tmp / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(make_config(data_file, out, epochs=EPOCHS)))
    records = _Records()
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    for lg in loggers:
        lg.addHandler(records)
    stdout = io.StringIO()
    try:
        with contextlib.redirect_stdout(stdout):
            rc = main(["train", str(cfg), "--no-progress", "--accelerator", "cpu"])
    finally:
        for lg in loggers:
            lg.removeHandler(records)
    return rc, stdout.getvalue(), records.messages, out


def _epoch_lines(text: str) -> list[re.Match]:
    return [m for m in map(LINE.match, text.splitlines()) if m]


def test_no_progress_prints_one_line_per_epoch(cli_run):
    rc, stdout, _, _ = cli_run
    assert rc == 0
    lines = _epoch_lines(stdout)
    assert [int(m.group(1)) for m in lines] == list(range(EPOCHS)), stdout
    assert all(len(m.group(0)) < 120 for m in lines)
    assert "\x1b[" not in stdout  # no terminal control codes in a log file


def test_metrics_csv_has_one_complete_row_per_epoch(cli_run):
    out = cli_run[3]
    with open(out / "logs" / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["epoch"]) for r in rows] == list(range(EPOCHS))
    for column in ("epoch", "step", "lr", "train_loss", "val_loss", "val_energy_mae", "val_energy_rmse",
                   "val_forces_mae", "val_forces_rmse", "time_s"):
        assert column in rows[0], column
    for row in rows:
        assert all(value != "" for value in row.values()), row
    assert [int(r["step"]) for r in rows] == [2, 4, 6]  # 6 training frames, batches of 4
    assert float(rows[0]["lr"]) == pytest.approx(5e-3)
    summary = json.loads((out / "summary.json").read_text())
    assert float(rows[-1]["val_loss"]) == pytest.approx(summary["last_metrics"]["val_loss"])


def test_no_lightning_banners(cli_run):
    _, stdout, messages, _ = cli_run
    assert not any("GPU available" in m or "TPU available" in m or "Trainer.fit" in m for m in messages), messages
    assert "GPU available" not in stdout
    # scoped: Lightning's own logging is as it was after the run
    assert logging.getLogger("lightning.pytorch").level == logging.INFO


def test_summary_fills_the_validation_count_and_names_the_e0_source(cli_run):
    _, stdout, _, out = cli_run
    summary = json.loads((out / "summary.json").read_text())
    assert summary["valid"]["energy_count"] == 2 and summary["valid"]["forces_count"] == 2 * 6 * 3
    tail = stdout[stdout.index("validation (last epoch)"):]
    energy_row = next(line for line in tail.splitlines() if "energy (meV/atom)" in line)
    assert energy_row.strip("│ ").split("│")[-1].strip() == "2", energy_row
    assert "reference energies E0 (eV) least-squares fit" in stdout.split("trained", 1)[1]


def test_summary_prints_each_e0_source():
    ref = {"source": "isolated_atom+E0s", "e0": [-13.6, -2040.0, 1.0], "species": [1, 8, 6],
           "e0_by_element": {"H": -13.6, "O": -2040.0, "C": 1.0},
           "e0_source": {"H": "isolated_atom", "O": "E0s", "C": "mean"}, "scale": 0.5, "shift": 0.01,
           "scale_source": "fit", "shift_source": "fit", "rank": 2, "rank_deficient": False}
    summary = {"epochs": 2, "best_epoch": 1, "train_time_s": 1.0, "world_size": 1,
               "frames": {"train": 4, "valid": 0, "test": 0}, "reference": ref, "last_metrics": {}}
    console = Console(file=io.StringIO(), width=300)
    print_train_summary(summary, "run", console)
    text = console.file.getvalue()
    assert "from isolated atoms (config_type=IsolatedAtom): H -13.6000" in text
    assert "from data.E0s: O -2040.0000" in text
    assert "mean energy per atom (not in the training frames): C 1.0000" in text
    assert "rank 2" not in text  # the rank is about the fit, which gave no E0 here


def test_without_a_terminal_the_progress_option_prints_lines_not_a_bar(data_file, tmp_path, make_config, capsys):
    train(make_config(data_file, tmp_path / "run", epochs=2), progress=True)
    stdout = capsys.readouterr().out
    assert [int(m.group(1)) for m in _epoch_lines(stdout)] == [0, 1], stdout
    assert "Epoch 0/" not in stdout and "\x1b[" not in stdout


class _BarProbe:
    """At the end of training: the progress bar's postfix and how many lines its row takes at 80 columns."""

    def __init__(self):
        import lightning as L

        probe = self

        class Probe(L.Callback):
            def on_train_end(self, trainer, pl_module):
                bar = trainer.progress_bar_callback
                probe.metrics = bar.get_metrics(trainer, pl_module)
                task = [t for t in bar.progress.tasks if t.id == bar.train_progress_bar_id]
                console = Console(file=io.StringIO(), width=80)
                console.print(bar.progress.make_tasks_table(task))
                probe.rows = console.file.getvalue().rstrip("\n").splitlines()

        self.callback = Probe()


def test_on_a_terminal_the_progress_bar_fits_on_one_line(data_file, tmp_path, make_config, capsys, monkeypatch):
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    probe = _BarProbe()
    train(make_config(data_file, tmp_path / "run", epochs=2), progress=True, callbacks=[probe.callback])
    stdout = capsys.readouterr().out
    assert set(probe.metrics) <= {"loss"}, probe.metrics
    assert len(probe.rows) == 1, probe.rows
    assert len(_epoch_lines(re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\r", "\n", stdout))) == 2  # lines above the bar


# -- devices -------------------------------------------------------------------------------------------------

def test_check_device():
    assert check_device("cpu") == torch.device("cpu")
    with pytest.raises(DeviceError, match="not a device"):
        check_device("gpu")
    with pytest.raises(DeviceError, match="cuda:99"):
        check_device("cuda:99")  # no CUDA here, or not 100 GPUs
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="CUDA"):
            check_device("cuda")
    check_accelerator("cpu", 4)
    check_accelerator("auto", "auto")
    with pytest.raises(DeviceError, match="not an accelerator"):
        check_accelerator("foo")
    with pytest.raises(DeviceError):
        check_accelerator("gpu", 99)


def _one_sentence(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"muse {command}: error: "), err
    assert "Traceback" not in err
    return err


def test_train_on_a_missing_gpu_is_one_sentence_and_touches_nothing(data_file, tmp_path, make_config, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "model.pt").write_text("an earlier run")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(make_config(data_file, out, epochs=1)))
    # no GPU here: "asks for a GPU"; with GPUs, not 99 of them
    assert main(["train", str(cfg), "--accelerator", "gpu", "--devices", "99", "--force", "--no-progress"]) == 2
    err = _one_sentence(capsys, "train")
    assert "--accelerator gpu" in err or "--devices 99" in err
    assert sorted(p.name for p in out.iterdir()) == ["model.pt"]  # not moved away by --force, nothing written


@pytest.fixture(scope="module")
def model_and_structure(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("model")
    model = build_model({"species": ["H", "O"], "backbone": {"name": "painn", "features": 8, "layers": 1,
                                                             "num_basis": 6}})
    save_model(model, tmp / "model.pt")
    atoms = molecule("H2O")
    atoms.info["REF_energy"] = 0.0
    atoms.arrays["REF_forces"] = atoms.positions * 0
    write(tmp / "water.extxyz", atoms)
    return tmp / "model.pt", tmp / "water.extxyz", tmp


@pytest.mark.parametrize("command", ["md", "hessian", "eval"])
def test_device_of_md_hessian_eval_is_checked_first(model_and_structure, command, capsys):
    model, structure, tmp = model_and_structure
    extra = {"md": ["--steps", "1", "--trajectory", str(tmp / "t.traj"), "--log", str(tmp / "md.log"),
                    "--no-progress"],
             "hessian": ["--modes", str(tmp / "modes.xyz")], "eval": []}[command]
    assert main([command, str(model), str(structure), "--device", "cuda:99", *extra]) == 2
    assert "cuda:99" in _one_sentence(capsys, command)
    assert not any((tmp / name).exists() for name in ("t.traj", "md.log", "modes.xyz"))
