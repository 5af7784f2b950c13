"""Issue #13 item 9: the run's ``config.yaml`` listed species 1-118 instead of those the model was built
with (the data's, when the config does not list them): training again from it gave a bigger model
(5,321 instead of 1,609 parameters in the report) that accepted elements absent from the data.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml
from ase.build import bulk
from ase.io import write

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
from tiny_runs import tiny_config, water_dimers  # noqa: E402

from muse_ff import load_model  # noqa: E402
from muse_ff.training import load_train_config, train  # noqa: E402


def _params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def test_retraining_from_the_written_config_builds_the_same_model(tmp_path):
    write(tmp_path / "d.extxyz", water_dimers(10))
    first = train(tiny_config(tmp_path / "d.extxyz", tmp_path / "a", epochs=1), progress=False)
    written = yaml.safe_load((tmp_path / "a" / "config.yaml").read_text())
    assert written["model"]["species"] == [1, 8]

    cfg = load_train_config(tmp_path / "a" / "config.yaml")
    cfg = cfg.model_copy(update={"training": cfg.training.model_copy(update={"output_dir": str(tmp_path / "b")})})
    second = train(cfg, progress=False)
    a, b = load_model(first.model_path), load_model(second.model_path)
    assert a.species == b.species == [1, 8]
    assert _params(a) == _params(b)
    assert yaml.safe_load((tmp_path / "b" / "config.yaml").read_text())["model"] == written["model"]
    with pytest.raises(ValueError, match="unknown element 'Fe'"):
        b.graph_from_atoms([bulk("Fe")], keys=None)
