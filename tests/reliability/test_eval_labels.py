"""Issue #13 items 7 and 12 (evaluation side): ``muse eval`` dropped NaN/inf labels silently, printed only
``{frames, atoms}`` with exit 0 for label keys absent from the file, and ``--json`` wrote ``NaN`` (not JSON).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.io import write

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
from tiny_runs import water_dimers  # noqa: E402

from muse_ff import build_model, save_model  # noqa: E402
from muse_ff.cli.main import main  # noqa: E402


def _model():
    torch.manual_seed(0)
    return build_model({"species": ["H", "O"], "backbone": {"name": "painn", "features": 8, "layers": 1,
                                                            "num_basis": 6}})


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.pt"
    save_model(_model(), path)
    return path


def _eval(model_file, frames, tmp_path, *args) -> int:
    write(tmp_path / "d.extxyz", frames)
    return main(["eval", str(model_file), str(tmp_path / "d.extxyz"), *args])


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize(("kind", "index"), [("energy", 2), ("forces", 3)])
def test_non_finite_labels_are_an_error_naming_frame_and_key(model_file, tmp_path, capsys, kind, index):
    frames = water_dimers(5, splits=False)
    if kind == "energy":
        frames[index].info["REF_energy"] = float("nan")
    else:
        frames[index].arrays["REF_forces"][4, 2] = -np.inf
    assert _eval(model_file, frames, tmp_path, "--json") == 2
    err = _one_line_error(capsys)
    assert f"d.extxyz:{index}: REF_{kind} is not finite" in err


def test_frames_selected_with_index_are_named_by_their_index_in_the_file(model_file, tmp_path, capsys):
    frames = water_dimers(6, splits=False)
    frames[4].info["REF_energy"] = "oops"
    assert _eval(model_file, frames, tmp_path, "--index", "3:") == 2
    assert "d.extxyz:4: REF_energy = 'oops' is not a number" in _one_line_error(capsys)


def test_label_keys_absent_from_the_file_are_an_error_listing_the_keys_present(model_file, tmp_path, capsys):
    frames = water_dimers(3, splits=False)
    assert _eval(model_file, frames, tmp_path, "--energy-key", "energy", "--forces-key", "forces") == 2
    err = _one_line_error(capsys)
    assert "'energy' (--energy-key)" in err and "'forces' (--forces-key)" in err
    assert "info keys ['REF_energy']" in err and "per-atom arrays ['REF_forces']" in err
    assert _eval(model_file, frames, tmp_path, "--stress-key", "virial") == 2  # asked explicitly: required
    assert "'virial' (--stress-key)" in _one_line_error(capsys)


def test_forces_key_none_evaluates_energies_alone(model_file, tmp_path, capsys):
    frames = water_dimers(3, splits=False)
    for a in frames:
        del a.arrays["REF_forces"]
    assert _eval(model_file, frames, tmp_path, "--json") == 2  # forces asked by default, none in the file
    capsys.readouterr()
    assert _eval(model_file, frames, tmp_path, "--json", "--forces-key", "none") == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["energy_count"] == 3 and "forces_mae" not in metrics


def test_json_output_is_strict_json_with_null_for_non_finite_values(tmp_path, capsys):
    model = _model()
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))  # a broken model: every prediction is NaN
    save_model(model, tmp_path / "nan.pt")
    assert _eval(tmp_path / "nan.pt", water_dimers(3, splits=False), tmp_path, "--json") == 0
    out = capsys.readouterr().out
    assert "NaN" not in out
    metrics = json.loads(out, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert metrics["energy_mae"] is None and metrics["forces_rmse"] is None and metrics["frames"] == 3
