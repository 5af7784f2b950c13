"""Issue #14: ``training.finetune_from: model.pt`` starts training from an existing model's weights.

Before: no way to fine-tune (``finetune_from`` was an unknown key).
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from ase.build import molecule
from ase.calculators.emt import EMT
from ase.io import write

from muse_ff import load_model
from muse_ff.physics.derivatives import energy_and_derivatives
from muse_ff.training import load_train_config, parse_train_config, train
from muse_ff.training.run import FinetuneError, prepare_data


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A tiny model trained one epoch on water dimers: (model.pt path, data file, the training config)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from tiny_runs import tiny_config, water_dimers

    root = tmp_path_factory.mktemp("finetune")
    write(root / "water.extxyz", water_dimers(10))
    cfg = tiny_config(root / "water.extxyz", root / "base", epochs=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train(cfg, progress=False)
    return root / "base" / "model.pt", root / "water.extxyz", cfg


def _finetune_config(base, out, model=None, data=None, **training) -> dict:
    path, water, cfg = base
    new = {"data": {"train": str(data or water), "split_key": "split"},
           "training": {**cfg["training"], "output_dir": str(out), "finetune_from": str(path), **training}}
    if model is not None:
        new["model"] = model
    return new


def _predict(model, frames):
    graph = model.graph_from_atoms(frames).to(dtype=model.dtype_)
    out = energy_and_derivatives(model, graph, forces=True)
    return out["energy"].detach(), out["forces"].detach()


def _ammonia_water(n: int) -> list:
    """Water + ammonia dimers (a new element, N), EMT-labelled."""
    rng = np.random.default_rng(3)
    frames = []
    for _ in range(n):
        a, b = molecule("H2O"), molecule("NH3")
        b.translate([0.0, 0.0, rng.uniform(2.8, 5.0)])
        atoms = a + b
        atoms.positions += rng.normal(0, 0.03, atoms.positions.shape)
        atoms.calc = EMT()
        atoms.info.update(REF_energy=atoms.get_potential_energy(), split="train")
        atoms.arrays["REF_forces"] = atoms.get_forces()
        atoms.calc = None
        frames.append(atoms)
    return frames


def test_a_finetuned_model_starts_at_the_loaded_models_predictions(base, tmp_path):
    path, water, _ = base
    loaded = load_model(path)
    model, train_ds, _, splits, fit = prepare_data(parse_train_config(_finetune_config(base, tmp_path / "ft")))
    assert model.config.model_dump() == loaded.config.model_dump()  # no model section: the loaded architecture
    frames = splits.train + splits.valid
    e_new, f_new = _predict(model, frames)
    e_old, f_old = _predict(loaded, frames)
    torch.testing.assert_close(e_new, e_old, rtol=0, atol=0)
    torch.testing.assert_close(f_new, f_old, rtol=0, atol=0)
    assert fit.source == "finetune_from" and fit.scale_source == fit.shift_source == "finetune_from"


def test_extended_species_keep_old_predictions_and_fit_the_new_elements_e0(base, tmp_path):
    path, water, _ = base
    loaded = load_model(path)
    from ase.io import read

    mixed = tmp_path / "mixed.extxyz"
    write(mixed, list(read(water, ":")) + _ammonia_water(4))
    model, _, _, splits, fit = prepare_data(parse_train_config(_finetune_config(base, tmp_path / "ft", data=mixed)))
    assert model.species == [1, 7, 8] and loaded.species == [1, 8]
    assert fit.sources == {1: "finetune_from", 7: "fit", 8: "finetune_from"}
    e0 = dict(zip(model.species, model.reference.e0.tolist()))
    old = dict(zip(loaded.species, loaded.reference.e0.tolist()))
    assert e0[1] == old[1] and e0[8] == old[8] and np.isfinite(e0[7])
    torch.testing.assert_close(model.embedding.weight[[0, 2]], loaded.embedding.weight, rtol=0, atol=0)
    water_frames = [a for a in splits.train if 7 not in a.numbers]
    e_new, f_new = _predict(model, water_frames)
    e_old, f_old = _predict(loaded, water_frames)
    torch.testing.assert_close(e_new, e_old, rtol=0, atol=0)
    torch.testing.assert_close(f_new, f_old, rtol=0, atol=0)


def test_the_model_section_must_match_the_loaded_architecture(base, tmp_path):
    _, _, cfg = base
    same = {**cfg["model"], "species": ["H", "O", "N"], "dtype": "float64"}  # may extend species, change dtype
    model = prepare_data(parse_train_config(_finetune_config(base, tmp_path / "a", model=same)))[0]
    assert model.species == [1, 7, 8] and model.dtype_ == torch.float64
    wider = {**cfg["model"], "backbone": {**cfg["model"]["backbone"], "features": 16}}
    with pytest.raises(FinetuneError, match=r"^model.backbone.features is 16 in the training config but 8 in the "
                                            r"finetune_from model .*model.pt: a fine-tuned"):
        prepare_data(parse_train_config(_finetune_config(base, tmp_path / "b", model=wider)))
    with pytest.raises(FinetuneError, match=r"^model.cutoff is 5.0 in the training config but 4.0"):
        prepare_data(parse_train_config(_finetune_config(base, tmp_path / "c", model={"cutoff": 5.0})))
    with pytest.raises(FinetuneError, match="model.species lacks O, which the finetune_from model"):
        prepare_data(parse_train_config(_finetune_config(base, tmp_path / "d", model={"species": ["H"]})))


def test_isolated_atoms_in_the_new_data_replace_e0s_and_refit_the_shift(base, tmp_path):
    path, water, _ = base
    loaded = load_model(path)
    from ase import Atoms
    from ase.io import read

    iso = []
    for sym, e in (("H", 3.21), ("O", 4.6)):
        atoms = Atoms(sym, positions=[[0.0, 0.0, 0.0]])
        atoms.info.update(REF_energy=e, config_type="IsolatedAtom")
        iso.append(atoms)
    data = tmp_path / "iso.extxyz"
    write(data, list(read(water, ":")) + iso)
    model, _, _, splits, fit = prepare_data(parse_train_config(_finetune_config(base, tmp_path / "ft", data=data)))
    assert dict(zip(model.species, model.reference.e0.tolist())) == {1: 3.21, 8: 4.6}
    assert fit.shift_source == "fit" and fit.scale_source == "finetune_from"
    assert float(model.reference.scale) == float(loaded.reference.scale)


def test_finetune_run_from_a_yaml_file_with_a_relative_path(base, tmp_path):
    import yaml

    path, water, cfg = base
    (tmp_path / "model.pt").write_bytes(path.read_bytes())
    ft = _finetune_config(base, tmp_path / "ft", epochs=1)
    ft["training"]["finetune_from"] = "model.pt"  # relative to the config file's folder
    (tmp_path / "ft.yaml").write_text(yaml.safe_dump(ft))
    loaded_cfg = load_train_config(tmp_path / "ft.yaml")
    assert loaded_cfg.training.finetune_from == str(tmp_path / "model.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = train(loaded_cfg, progress=False)
    summary = json.loads((tmp_path / "ft" / "summary.json").read_text())
    assert summary["finetune_from"] == str(tmp_path / "model.pt")
    assert summary["reference"]["source"] == "finetune_from"
    assert load_model(result.model_path).species == [1, 8]
    # the written config trains the same model again (model section = the loaded architecture)
    again = yaml.safe_load((tmp_path / "ft" / "config.yaml").read_text())
    assert again["model"] == load_model(path).config.model_dump(mode="json")
    again["training"]["output_dir"] = str(tmp_path / "again")
    assert prepare_data(parse_train_config(again))[0].config == load_model(path).config


def test_a_missing_or_bad_finetune_file_is_one_sentence(base, tmp_path):
    from muse_ff.io.serialization import ModelFileError

    with pytest.raises(FileNotFoundError, match="model file not found"):
        prepare_data(parse_train_config(_finetune_config(base, tmp_path / "x", finetune_from=str(tmp_path / "no.pt"))))
    (tmp_path / "bad.pt").write_bytes(b"not a model")
    with pytest.raises(ModelFileError, match="not a readable MuSE model file"):
        prepare_data(parse_train_config(_finetune_config(base, tmp_path / "x", finetune_from=str(tmp_path / "bad.pt"))))


def test_a_version_1_model_finetunes_with_its_original_model_section(base, tmp_path):
    """A model file written before format version 2 (no ``levels[k].tensors``) fine-tunes from a config that
    restates its model section as it was trained: the upgrade turns l = 2 pooling off only on levels that would
    pool l = 2 features (none for PaiNN), so the restated levels still match."""
    from muse_ff import build_model
    from muse_ff.io.serialization import save_model

    _, water, cfg = base
    section = {**cfg["model"], "levels": [{"ratio": 4}, {}], "species": ["H", "O"]}
    save_model(build_model(section), tmp_path / "new.pt")
    payload = torch.load(tmp_path / "new.pt", weights_only=True)
    for level in payload["config"]["levels"]:
        del level["tensors"]  # what version 1 wrote
    payload["format_version"] = 1
    old = tmp_path / "v1.pt"
    torch.save(payload, old)
    assert all(level.tensors for level in load_model(old).config.levels)  # PaiNN has no l = 2 features to pool
    run = _finetune_config((old, water, cfg), tmp_path / "ft", model=section)
    model = prepare_data(parse_train_config(run))[0]
    assert len(model.levels) == 2
