"""Issue #13 item 12 for ``muse hessian``: strict JSON (``--json`` wrote ``NaN``), structures read through
``read_structures`` (one sentence for an empty or truncated file), one-sentence errors, and the
``--max-memory`` / ``--chunk`` options (item 5)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from ase.build import molecule
from ase.io import write

from muse_ff import build_model
from muse_ff.analysis.vibrations import HarmonicAnalysis
from muse_ff.calculator import MuSECalculator
from muse_ff.cli import hessian as hessian_cli
from muse_ff.cli.main import main
from muse_ff.io.serialization import save_model
from muse_ff.testing.conformance import SMALL_PAINN


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model({"backbone": SMALL_PAINN, "levels": [{}], "dtype": "float64", "species": [1, 6, 8]})
    root = tmp_path_factory.mktemp("hessian_cli")
    save_model(model, root / "model.pt")
    write(root / "m.extxyz", molecule("CH3OH"))
    return root


def _strict_loads(text: str):
    def refuse(name):
        raise AssertionError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def _run(files, structure, *args) -> int:
    return main(["hessian", str(files / "model.pt"), str(structure), "--modes", str(files / "modes.extxyz"),
                 *args])


def test_json_report_is_strict_json_with_null_for_non_finite():
    result = HarmonicAnalysis(frequencies_cm1=np.array([np.nan, 12.5, np.inf]), modes=np.zeros((3, 2, 3)),
                              rigid_cm1=np.array([-np.inf, 0.0]))
    out = _strict_loads(hessian_cli.json_report(result, "modes.extxyz"))
    assert out["frequencies_cm1"] == [None, 12.5, None] and out["rigid_cm1"] == [None, 0.0]


def test_muse_hessian_json_stays_strict_when_frequencies_are_not_finite(files, capsys, monkeypatch):
    import muse_ff.analysis.vibrations as vibrations

    real = vibrations.structure_analysis

    def with_nan(hess, atoms):
        result = real(hess, atoms)
        result.frequencies_cm1[0] = np.nan
        return result

    monkeypatch.setattr(vibrations, "structure_analysis", with_nan)
    assert _run(files, files / "m.extxyz", "--json") == 0
    out = _strict_loads(capsys.readouterr().out)
    assert out["frequencies_cm1"][0] is None and len(out["frequencies_cm1"]) == 12


def test_non_finite_hessian_is_one_sentence(files, capsys, monkeypatch):
    real = MuSECalculator.get_hessian

    def broken(self, atoms=None, **kw):
        h = real(self, atoms, **kw)
        h[0, 0] = np.nan
        h[1, 2] = np.inf
        return h

    monkeypatch.setattr(MuSECalculator, "get_hessian", broken)
    assert _run(files, files / "m.extxyz", "--json") == 2
    err = _one_line_error(capsys)
    assert "NaN or infinite" in err
    assert not capsys.readouterr().out  # nothing half-written to stdout


@pytest.mark.parametrize("content", ["", "3\nProperties=species:S:1:pos:R:3\nO 0 0 0\nH 0 0 1\n",
                                     "3\n\nO 0 0 0\nH 0 0 0.96\nH 0.9 0 -0."])
def test_empty_or_truncated_structure_is_one_sentence(files, tmp_path, capsys, content):
    path = tmp_path / "bad.extxyz"
    path.write_text(content)
    assert _run(files, path) == 2
    assert f"could not read structures from {path}" in _one_line_error(capsys)


def test_other_user_errors_are_one_sentence(files, tmp_path, capsys):
    fe = tmp_path / "fe.extxyz"
    atoms = molecule("H2O")
    atoms.symbols[0] = "Fe"
    write(fe, atoms)
    assert _run(files, fe) == 2
    assert "unknown element 'Fe'" in _one_line_error(capsys)
    assert _run(files, tmp_path / "missing.extxyz") == 2
    _one_line_error(capsys)
    assert main(["hessian", str(tmp_path / "nomodel.pt"), str(files / "m.extxyz")]) == 2
    _one_line_error(capsys)
    # an output that cannot be written is refused before the Hessian, not after
    assert main(["hessian", str(files / "model.pt"), str(files / "m.extxyz"),
                 "--modes", str(tmp_path / "no" / "such" / "modes.extxyz")]) == 2
    assert "does not exist" in _one_line_error(capsys)
    assert _run(files, files / "m.extxyz", "--hessian-out", str(tmp_path)) == 2
    assert "is a directory" in _one_line_error(capsys)
    assert _run(files, files / "m.extxyz", "--optimize", "--steps", "1", "--fmax", "1e-9") == 2
    assert "did not reach" in _one_line_error(capsys)


@pytest.mark.parametrize("option", [["--max-memory", "0"], ["--max-memory", "nan"], ["--chunk", "0"],
                                    ["--chunk", "2.5"]])
def test_bad_memory_options_are_refused(files, capsys, option):
    with pytest.raises(SystemExit) as stop:
        _run(files, files / "m.extxyz", *option)
    assert stop.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_max_memory_and_chunk_give_the_same_hessian(files, tmp_path, capsys):
    outs = []
    for k, args in enumerate((["--chunk", "18"], ["--chunk", "1"], ["--max-memory", "0.01"], [])):
        path = tmp_path / f"h{k}.npy"
        assert _run(files, files / "m.extxyz", "--hessian-out", str(path), "--json", *args) == 0
        _strict_loads(capsys.readouterr().out)
        outs.append(np.load(path))
    for h in outs[1:]:
        np.testing.assert_allclose(h, outs[0], rtol=1e-12, atol=1e-12)
