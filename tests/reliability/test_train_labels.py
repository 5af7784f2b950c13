"""Issue #13 items 7 and 12 (training side): NaN/inf energies or forces were dropped silently by training
(masked in the loss) even with ``missing_labels: error``; an energy given as a string or forces of the
wrong shape failed deep inside with numpy's message. Now each is an error naming the frame and the key;
with ``missing_labels: energy_only`` non-finite forces are left out with a warning that counts them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from ase.io import read, write

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
from tiny_runs import tiny_config, water_dimers  # noqa: E402

from muse_ff.cli.main import main  # noqa: E402
from muse_ff.data.atoms import LabelKeys  # noqa: E402
from muse_ff.training import train  # noqa: E402
from muse_ff.training.data import LabelError, LabelWarning, check_labels  # noqa: E402


def _file(tmp_path, frames, name="d.extxyz") -> Path:
    write(tmp_path / name, frames)
    return tmp_path / name


@pytest.mark.parametrize("where", ["train", "valid", "test"])
def test_a_nan_energy_stops_the_run_naming_frame_and_key(tmp_path, where):
    frames = water_dimers(15)
    k = next(i for i, a in enumerate(frames) if a.info["split"] == where)
    frames[k].info["REF_energy"] = float("nan")
    data = _file(tmp_path, frames)
    with pytest.raises(LabelError, match=rf"in the {where} frames: .*d\.extxyz:{k}: REF_energy is not finite \(nan\)"):
        train(tiny_config(data, tmp_path / "run"), progress=False)
    assert not (tmp_path / "run").exists()  # stopped before writing anything


def test_inf_forces_stop_the_run_unless_energy_only_then_a_warning_counts_them(tmp_path):
    frames = water_dimers(15)
    frames[0].arrays["REF_forces"][2, 1] = np.inf
    frames[5].arrays["REF_forces"][0, 0] = np.nan
    data = _file(tmp_path, frames)
    with pytest.raises(LabelError, match=r"2 unusable labels in 9 train frames:\n  .*d\.extxyz:0: REF_forces is "
                                         r"not finite \(NaN or inf\) for atoms \[2\]\n  .*d\.extxyz:5: REF_forces"):
        train(tiny_config(data, tmp_path / "err"), progress=False)
    cfg = tiny_config(data, tmp_path / "ok", epochs=1)
    cfg["data"]["missing_labels"] = "energy_only"
    with pytest.warns(LabelWarning, match=r"2 of 9 train frames have non-finite REF_forces .*energy alone"):
        result = train(cfg, progress=False)
    assert np.isfinite(result.summary["last_metrics"]["val_forces_mae"])


def test_a_nan_energy_is_an_error_even_with_energy_only():
    frames = water_dimers(3, splits=False)
    frames[1].info["REF_energy"] = float("inf")
    with pytest.raises(LabelError, match=r"frame 1: REF_energy is not finite \(inf\)"):
        check_labels(frames, LabelKeys(), need_forces=False, drop_bad_forces=True)


def test_a_string_energy_or_forces_of_the_wrong_shape_name_frame_and_key(tmp_path):
    frames = water_dimers(4, splits=False)
    frames[1].info["REF_energy"] = "abc"
    frames[3].arrays["REF_forces"] = np.zeros((6, 2))
    frames = read(_file(tmp_path, frames), ":")  # as extxyz gives them back
    for k, a in enumerate(frames):
        a.info["_source"] = f"d.extxyz:{k}"
    with pytest.raises(LabelError) as err:
        check_labels(frames, LabelKeys(), need_forces=True)
    msg = str(err.value)
    assert "d.extxyz:1: REF_energy = 'abc' is not a number" in msg
    assert "d.extxyz:3: REF_forces has shape (6, 2), expected shape (6, 3)" in msg


def test_muse_train_reports_a_bad_label_in_one_line(tmp_path, capsys):
    frames = water_dimers(10)
    frames[4].info["REF_energy"] = float("nan")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config(_file(tmp_path, frames), tmp_path / "run")))
    assert main(["train", str(cfg), "--no-progress", "--accelerator", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "d.extxyz:4: REF_energy is not finite" in err
