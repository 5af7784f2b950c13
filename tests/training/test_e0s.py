"""Issue #14: reference energies (E0s) from isolated atoms, a given map, or the least-squares fit.

Before: isolated-atom frames (``config_type=IsolatedAtom``) were trained as ordinary frames, could land in
the validation split, and E0 was always the least-squares fit (H -18.09 eV against -10.71 eV for the
isolated atom); there was no way to give E0s.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.emt import EMT
from ase.io import write

from muse_ff.config import ConfigError
from muse_ff.training import parse_train_config, train
from muse_ff.training.data import LabelError, LabelWarning
from muse_ff.training.reference import ReferenceEnergyError
from muse_ff.training.run import prepare_data


def _isolated(symbol: str, **info) -> Atoms:
    atoms = Atoms(symbol, positions=[[0.0, 0.0, 0.0]])
    atoms.calc = EMT()
    atoms.info["REF_energy"] = atoms.get_potential_energy()  # EMT: H 3.21, O 4.6 eV
    atoms.arrays["REF_forces"] = np.zeros((1, 3))
    atoms.calc = None
    atoms.info["config_type"] = "IsolatedAtom"
    atoms.info.update(info)
    return atoms


ISOLATED = {1: 3.21, 8: 4.6}


@pytest.fixture()
def frames_file(tmp_path, make_dimers):
    """12 water dimers (no split key) with the isolated H and O atoms first."""
    path = tmp_path / "data.extxyz"
    write(path, [_isolated("H"), _isolated("O")] + make_dimers(12, splits=False))
    return path


def _config(make_config, data, tmp_path, **data_keys) -> dict:
    cfg = make_config(data, tmp_path / "run", epochs=1)
    cfg["data"] = {"train": str(data), "valid_fraction": 0.3, "test_fraction": 0.2, **data_keys}
    return cfg


def _e0(model) -> dict[int, float]:
    return dict(zip(model.species, model.reference.e0.tolist()))


def test_isolated_atoms_give_e0s_are_not_trained_and_stay_out_of_valid_and_test(frames_file, tmp_path, make_config,
                                                                                 make_dimers):
    model, train_ds, valid_ds, splits, fit = prepare_data(parse_train_config(_config(make_config, frames_file,
                                                                                     tmp_path)))
    assert _e0(model) == pytest.approx(ISOLATED, abs=1e-12)
    assert fit.source == "isolated_atom" and fit.sources == {1: "isolated_atom", 8: "isolated_atom"}
    # used as E0s, they are neither trained nor validated/tested
    assert len(splits.isolated) == 2
    for frames in (splits.train, splits.valid, splits.test):
        assert all(len(a) == 6 for a in frames)
    assert len(train_ds) == len(splits.train) and all(g.num_atoms == 6 for g in train_ds.graphs)
    # the other frames split exactly as they would without the isolated atoms
    write(tmp_path / "plain.extxyz", make_dimers(12, splits=False))
    plain = prepare_data(parse_train_config(_config(make_config, tmp_path / "plain.extxyz", tmp_path)))[3]
    for name in ("train", "valid", "test"):
        assert [a.info["REF_energy"] for a in getattr(plain, name)] == \
            [a.info["REF_energy"] for a in getattr(splits, name)]
    # shift is the mean residual per atom after the isolated-atom E0s
    residual = [(float(g.energy) - sum(ISOLATED[int(z)] for z in g.species)) / g.num_atoms for g in train_ds.graphs]
    assert fit.shift == pytest.approx(np.mean(residual), abs=1e-9)


def test_isolated_atoms_marked_valid_by_the_split_key_are_moved_to_train(tmp_path, make_dimers, make_config):
    path = tmp_path / "data.extxyz"
    write(path, make_dimers(10) + [_isolated("H", split="valid"), _isolated("O", split="test")])
    cfg = make_config(path, tmp_path / "run")
    with pytest.warns(LabelWarning, match="isolated-atom frame.*valid frames.*moved to the training frames"):
        model, _, valid_ds, splits, _ = prepare_data(parse_train_config(cfg))
    assert all(len(a) == 6 for a in splits.valid + splits.test)
    assert _e0(model) == pytest.approx(ISOLATED, abs=1e-12)


def test_isolated_atoms_in_a_separate_valid_file_are_moved_to_train(tmp_path, make_dimers, make_config):
    write(tmp_path / "train.extxyz", make_dimers(8, splits=False))
    write(tmp_path / "valid.extxyz", make_dimers(3, seed=1, splits=False) + [_isolated("H"), _isolated("O")])
    cfg = make_config(tmp_path / "train.extxyz", tmp_path / "run")
    cfg["data"] = {"train": str(tmp_path / "train.extxyz"), "valid": str(tmp_path / "valid.extxyz")}
    with pytest.warns(LabelWarning, match="valid frames"):
        model, _, valid_ds, splits, _ = prepare_data(parse_train_config(cfg))
    assert len(splits.valid) == 3 and len(splits.isolated) == 2
    assert _e0(model) == pytest.approx(ISOLATED, abs=1e-12)


def test_a_given_map_sets_e0s_and_must_cover_the_data(frames_file, tmp_path, make_config):
    cfg = _config(make_config, frames_file, tmp_path, E0s={"H": -13.6, 8: -2041.5})
    model, train_ds, _, splits, fit = prepare_data(parse_train_config(cfg))
    assert _e0(model) == pytest.approx({1: -13.6, 8: -2041.5}, abs=1e-12)
    assert fit.source == "E0s"
    assert len(splits.isolated) == 0 and sum(g.num_atoms == 1 for g in train_ds.graphs) == 2  # ordinary frames

    with pytest.raises(ReferenceEnergyError, match=r"data.E0s has no energy for O \(Z=8\)"):
        prepare_data(parse_train_config(_config(make_config, frames_file, tmp_path, E0s={"H": -13.6})))


def test_fit_and_average_keep_the_least_squares_fit(frames_file, tmp_path, make_config):
    fits = []
    for choice in ("fit", "average"):
        model, train_ds, _, splits, fit = prepare_data(parse_train_config(
            _config(make_config, frames_file, tmp_path, E0s=choice)))
        assert fit.source == "fit" and not splits.isolated
        assert sum(g.num_atoms == 1 for g in train_ds.graphs) == 2  # trained like any frame
        fits.append(fit.e0)
    np.testing.assert_array_equal(fits[0], fits[1])
    assert abs(fits[0][0] - ISOLATED[1]) > 0.1  # the fit is not the isolated-atom energy


def test_isolated_needs_isolated_atoms(tmp_path, make_dimers, make_config):
    write(tmp_path / "d.extxyz", make_dimers(6))
    cfg = make_config(tmp_path / "d.extxyz", tmp_path / "run")
    cfg["data"]["E0s"] = "isolated"
    with pytest.raises(ReferenceEnergyError, match="isolated needs isolated-atom frames"):
        prepare_data(parse_train_config(cfg))


def test_isolated_atoms_missing_an_element_of_the_data_are_an_error(tmp_path, make_dimers, make_config):
    write(tmp_path / "d.extxyz", make_dimers(6) + [_isolated("H", split="train")])
    with pytest.raises(ReferenceEnergyError, match=r"no isolated-atom frame .* for O \(Z=8\)"):
        prepare_data(parse_train_config(make_config(tmp_path / "d.extxyz", tmp_path / "run")))


def test_conflicting_isolated_atoms_and_bad_isolated_frames(tmp_path, make_dimers, make_config):
    h2 = _isolated("H", split="train")
    h2.info["REF_energy"] = 3.5
    write(tmp_path / "d.extxyz", make_dimers(6) + [_isolated("H", split="train"), h2, _isolated("O", split="train")])
    with pytest.raises(LabelError, match="isolated-atom frames of H disagree"):
        prepare_data(parse_train_config(make_config(tmp_path / "d.extxyz", tmp_path / "run")))
    two = make_dimers(1)[0][:2]
    two.info.update(config_type="IsolatedAtom", split="train")
    write(tmp_path / "e.extxyz", make_dimers(6) + [two])
    with pytest.raises(LabelError, match="IsolatedAtom but it has 2 atoms"):
        prepare_data(parse_train_config(make_config(tmp_path / "e.extxyz", tmp_path / "run")))


@pytest.mark.parametrize(("value", "match"), [("avg", "'avg' is not a choice"), ({"Xx": 1.0}, "unknown element 'Xx'"),
                                              ({"H": "a"}, "not a string"), ({}, "the map is empty")])
def test_bad_e0s_settings_name_the_key(value, match):
    with pytest.raises(ConfigError, match=rf"data.E0s: .*{match}"):
        parse_train_config({"data": {"train": "x.extxyz", "E0s": value}})


def test_the_choice_is_printed_at_start_and_written_to_the_summary(frames_file, tmp_path, make_config, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = train(_config(make_config, frames_file, tmp_path), progress=False)
    line = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("reference energies")]
    assert len(line) == 1
    assert "from isolated atoms (config_type=IsolatedAtom): H 3.2100, O 4.6000" in line[0]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    ref = summary["reference"]
    assert ref["source"] == "isolated_atom"
    assert ref["e0_by_element"] == pytest.approx({"H": 3.21, "O": 4.6})
    assert ref["e0_source"] == {"H": "isolated_atom", "O": "isolated_atom"}
    assert summary["frames"]["isolated_atoms"] == 2 and result.summary["frames"]["train"] == 6
