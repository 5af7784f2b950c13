"""Issue #14, evaluation: ``muse eval --output`` (predictions next to labels), per-config-type tables,
errors for missing labels / predicting without labels, labels ASE keeps in a calculator, and parity plots of
E - sum E0 with their MAE/RMSE."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule
from ase.calculators.emt import EMT
from ase.io import read, write

from muse_ff import load_model
from muse_ff.analysis.metrics import evaluate_frames
from muse_ff.cli.main import main


def _labelled(atoms: Atoms, stress: bool = False) -> Atoms:
    atoms = atoms.copy()
    atoms.calc = EMT()
    atoms.info["REF_energy"] = atoms.get_potential_energy()
    atoms.arrays["REF_forces"] = atoms.get_forces()
    if stress:
        atoms.info["REF_stress"] = atoms.get_stress(voigt=False).ravel()
    atoms.calc = None
    return atoms


@pytest.fixture(scope="module")
def mixed_frames():
    """Methanols (two config types and none), an isolated H atom, and a periodic diamond cell with stress:
    periodic and non-periodic frames interleaved."""
    rng = np.random.default_rng(3)
    frames = []
    for k in range(5):
        a = molecule("CH3OH")
        a.positions += rng.normal(0, 0.05, a.positions.shape)
        a = _labelled(a)
        if k in (1, 3):
            a.info["config_type"] = "stretched"
        frames.append(a)
    h = Atoms("H", positions=[[0.0, 0.0, 0.0]])
    h.info.update(REF_energy=-13.0, config_type="IsolatedAtom")
    h.arrays["REF_forces"] = np.zeros((1, 3))
    c = bulk("C", "diamond", a=3.6)
    c.positions[0] += [0.05, -0.03, 0.02]
    c = _labelled(c, stress=True)
    c.info["config_type"] = "bulk"
    return frames[:2] + [c] + frames[2:] + [h]  # the periodic frame amid molecules: batched apart


@pytest.fixture()
def data(tmp_path, mixed_frames):
    path = tmp_path / "data.extxyz"
    write(path, mixed_frames)
    return path


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_output_has_predictions_next_to_the_labels_and_reads_back_as_labels(model_file, data, tmp_path, capsys,
                                                                           monkeypatch):
    monkeypatch.setenv("COLUMNS", "40")  # a narrow terminal: the written path is still printed whole, unwrapped
    out = tmp_path / "a_long_folder_name_for_the_predictions[1]" / "predictions.extxyz"
    out.parent.mkdir()
    assert main(["eval", str(model_file), str(data), "--output", str(out), "--batch-size", "2"]) == 0
    assert str(out) in capsys.readouterr().out
    given, written = read(data, ":"), read(out, ":")
    assert len(written) == len(given) == 7
    model = load_model(model_file)
    for a, b in zip(given, written):
        assert b.info.get("config_type") == a.info.get("config_type")
        assert b.info["REF_energy"] == pytest.approx(a.info["REF_energy"])
        np.testing.assert_allclose(b.arrays["REF_forces"], a.arrays["REF_forces"])
        alone = evaluate_frames(model, [a])  # each frame alone: the batched order is the file's order
        assert b.info["MUSE_energy"] == pytest.approx(alone.energy_pred[0], rel=1e-9)
        # (extxyz columns have 8 decimals)
        np.testing.assert_allclose(b.arrays["MUSE_forces"], alone.forces_pred, rtol=0, atol=1e-8)
        assert ("MUSE_stress" in b.info) == bool(all(a.pbc))
        assert "_source" not in b.info
    bulk_frame = written[2]
    assert np.asarray(bulk_frame.info["MUSE_stress"]).size == 9 and np.isfinite(bulk_frame.info["MUSE_stress"]).all()
    # the file is a labelled file: the predictions as labels give zero errors
    assert main(["eval", str(model_file), str(out), "--json", "--energy-key", "MUSE_energy",
                 "--forces-key", "MUSE_forces", "--stress-key", "MUSE_stress"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["energy_mae"] < 1e-6 and again["forces_mae"] < 1e-4 and again["stress_mae"] < 1e-6
    assert again["stress_count"] == 9


def test_stress_is_evaluated_for_a_periodic_frame_batched_among_molecules(model_file, data, capsys):
    assert main(["eval", str(model_file), str(data), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["stress_count"] == 9 and metrics["frames"] == 7


def test_output_never_replaces_a_file_unless_overwrite_and_never_an_input(model_file, data, tmp_path, capsys):
    out = tmp_path / "p.extxyz"
    out.write_text("keep me\n")
    # checked before any work: a missing model is not even looked at
    assert main(["eval", str(tmp_path / "missing.pt"), str(data), "--output", str(out)]) == 2
    err = _one_line_error(capsys)
    assert "already exists" in err and "--overwrite" in err and out.read_text() == "keep me\n"
    assert main(["eval", str(model_file), str(data), "--output", str(out), "--overwrite"]) == 0
    assert len(read(out, ":")) == 7
    before = data.read_bytes()
    for target in (data, tmp_path / "." / data.name, model_file):
        assert main(["eval", str(model_file), str(data), "--output", str(target), "--overwrite"]) == 2
        assert "is an input of this command" in _one_line_error(capsys)
    assert data.read_bytes() == before
    assert main(["eval", str(model_file), str(data), "--output", str(tmp_path / "p.traj")]) == 2
    assert ".extxyz" in _one_line_error(capsys)


def test_unlabelled_file_is_an_error_and_keys_none_with_output_just_predicts(model_file, tmp_path, capsys):
    path = tmp_path / "new.extxyz"
    write(path, [molecule("CH3OH"), molecule("H2O"), bulk("C", "diamond", a=3.6)])
    assert main(["eval", str(model_file), str(path)]) == 2
    err = _one_line_error(capsys)
    assert "lacks the asked energies 'REF_energy'" in err and "--energy-key none --forces-key none --output" in err
    none = ["--energy-key", "none", "--forces-key", "none"]
    assert main(["eval", str(model_file), str(path), *none]) == 2
    assert "--output" in _one_line_error(capsys)
    assert main(["eval", str(model_file), str(path), *none, "--plots", str(tmp_path / "pl"), "-o",
                 str(tmp_path / "x.extxyz")]) == 2
    assert "--plots needs labels" in _one_line_error(capsys)
    out = tmp_path / "pred.extxyz"
    assert main(["eval", str(model_file), str(path), *none, "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "MAE" not in printed and "config_type" not in printed and str(out) in printed
    frames = read(out, ":")
    assert [len(a) for a in frames] == [6, 3, 2]
    assert all(np.isfinite(a.info["MUSE_energy"]) and a.arrays["MUSE_forces"].shape == (len(a), 3) for a in frames)
    assert [("MUSE_stress" in a.info) for a in frames] == [False, False, True]  # periodic: stress, unlabelled
    assert main(["eval", str(model_file), str(path), *none, "--output", str(tmp_path / "p2.extxyz"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"frames": 3, "atoms": 11, "output": str(tmp_path / "p2.extxyz")}


def test_labels_ase_keeps_in_a_calculator_can_be_evaluated(model_file, tmp_path, capsys):
    a = molecule("CH3OH")
    a.calc = EMT()
    a.get_forces()
    path = tmp_path / "ase.extxyz"
    write(path, [a])  # energy=..., forces columns: read back into a SinglePointCalculator, not info/arrays
    keys = ["--energy-key", "energy", "--forces-key", "forces"]
    assert main(["eval", str(model_file), str(path), *keys, "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["energy_count"] == 1 and metrics["forces_count"] == 18
    assert main(["eval", str(model_file), str(path), *keys, "--output", str(tmp_path / "p.extxyz")]) == 0
    back = read(tmp_path / "p.extxyz")
    assert back.get_potential_energy() == pytest.approx(a.get_potential_energy())  # the label, as it was
    assert "MUSE_energy" in back.info


def test_errors_per_config_type_in_json_and_table(model_file, data, mixed_frames, capsys):
    assert main(["eval", str(model_file), str(data), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    by_type = metrics["config_types"]
    assert list(by_type) == ["Default", "stretched", "bulk", "IsolatedAtom"]
    assert {k: v["frames"] for k, v in by_type.items()} == {"Default": 3, "stretched": 2, "bulk": 1,
                                                            "IsolatedAtom": 1}
    model = load_model(model_file)
    stretched = evaluate_frames(model, [a for a in mixed_frames if a.info.get("config_type") == "stretched"])
    assert by_type["stretched"]["energy_mae"] == pytest.approx(stretched.metrics()["energy_mae"])
    assert by_type["stretched"]["forces_rmse"] == pytest.approx(stretched.metrics()["forces_rmse"])
    assert by_type["bulk"]["stress_count"] == 9 and "stress_mae" not in by_type["Default"]
    assert main(["eval", str(model_file), str(data)]) == 0
    table = capsys.readouterr().out
    assert "errors per config type" in table
    rows = {line.split()[0]: line.split() for line in table.splitlines() if line.strip()}
    assert rows["stretched"][1:3] == ["2", "12"] and rows["IsolatedAtom"][1:3] == ["1", "1"]
    assert rows["overall"][1:3] == ["7", "33"]
    assert rows["bulk"][-2:] != ["-", "-"] and rows["Default"][-2:] == ["-", "-"]  # stress: bulk only


def test_a_bad_structure_is_named_by_its_index_in_the_file(model_file, mixed_frames, tmp_path, capsys):
    frames = [a.copy() for a in mixed_frames]
    frames[4].positions[1] = frames[4].positions[0] + 0.01
    write(tmp_path / "d.extxyz", frames)
    assert main(["eval", str(model_file), str(tmp_path / "d.extxyz"), "--batch-size", "2"]) == 2
    assert "d.extxyz:4: overlapping atoms" in _one_line_error(capsys)


def test_parity_plots_show_energy_minus_reference_energies_with_mae(model_file, data, mixed_frames, tmp_path,
                                                                    monkeypatch):
    import matplotlib.figure

    from muse_ff.analysis.plots import parity_panels

    drawn = {}

    def savefig(fig, path, **kwargs):  # record what each figure shows instead of rendering it
        ax = fig.axes[0]
        drawn[str(path).rsplit("/", 1)[-1]] = {"texts": [t.get_text() for t in ax.texts], "xlabel": ax.get_xlabel(),
                                               "legend": ax.get_legend() is not None}
        open(path, "wb").write(b"png")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", savefig)
    assert main(["eval", str(model_file), str(data), "--plots", str(tmp_path / "plots"), "--json"]) == 0
    assert set(drawn) == {"parity_energy.png", "parity_forces.png", "parity_stress.png"}
    assert "E − ΣE0" in drawn["parity_energy.png"]["xlabel"] and "meV/atom" in drawn["parity_energy.png"]["xlabel"]
    assert drawn["parity_energy.png"]["legend"]  # several config types: one colour each
    for name in drawn:
        assert any("MAE" in t and "RMSE" in t for t in drawn[name]["texts"]), name

    model = load_model(model_file)
    preds = evaluate_frames(model, mixed_frames)
    panels = {p["name"]: p for p in parity_panels(preds)}
    e0 = dict(zip(model.species, model.reference.e0.tolist()))
    sums = np.array([sum(e0[z] for z in a.numbers) for a in mixed_frames])
    n = np.array([len(a) for a in mixed_frames])
    ref = np.array([a.info["REF_energy"] for a in mixed_frames])
    np.testing.assert_allclose(panels["energy"]["ref"], 1000 * (ref - sums) / n)
    np.testing.assert_allclose(panels["energy"]["pred"], 1000 * (preds.energy_pred - sums) / n)
    mae = preds.metrics()["energy_mae"]
    assert f"MAE {mae:.3g} meV/atom" in panels["energy"]["text"]
    assert f"MAE {preds.metrics()['forces_mae']:.3g} meV/Å" in panels["forces"]["text"]


def test_demo_figure_keeps_its_old_input_and_takes_energy_minus_e0(tmp_path):
    from muse_ff.analysis.plots import demo_figure

    old = {"a": {"energy_per_atom": [[-1.0, -2.0], [-1.1, -2.05]]}}
    assert demo_figure(old, tmp_path / "old.png").stat().st_size > 1000
    new = {"a": {"energy_per_atom": [[-1.0, -2.0], [-1.1, -2.05]],
                 "energy_minus_e0_per_atom": [[0.01, 0.02], [0.011, 0.018]]}}
    assert demo_figure(new, tmp_path / "new.png").stat().st_size > 1000
