"""``muse bench backbones --quick``: six models (three backbones, plain and MuSE) trained, evaluated, reported."""

import json
import math

import pytest
import yaml

from muse_ff.cli.main import main

BACKBONES = {"PaiNN": "painn", "MACE": "mace", "SO3krates": "so3krates"}


def test_bench_backbones_quick_trains_six_models_differing_only_where_intended(tmp_path, data_dir):
    pytest.importorskip("mace")
    if not (data_dir / "long-range-dimers").is_dir():
        pytest.skip("data/long-range-dimers is not available")
    assert main(["bench", "backbones", "--quick", "--output-dir", str(tmp_path), "--data-dir", str(data_dir)]) == 0
    folder = tmp_path / "backbones"
    content = json.loads((folder / "results.json").read_text())
    assert (folder / "table.md").is_file()
    models = content["results"]["models"]
    assert list(models) == [n for b in BACKBONES for n in (b, f"MuSE({b})")]
    for name, r in models.items():
        values = [r["metrics"]["energy_mae"], r["metrics"]["forces_mae"], r["eval_time_s"],
                  *r["interaction_mae_meV"].values()]
        assert len(r["interaction_mae_meV"]) == 3, name  # <5, 5-10 and >10 Å all present in the quick test set
        assert all(math.isfinite(v) and v >= 0 for v in values), (name, values)
        assert r["params"] > 0
        by_kind = [v for per in r["interaction_mae_meV_by_kind"].values() for v in per.values()]
        assert sum(v["frames"] for v in by_kind) == content["results"]["frames"]["test"] == 3
        assert all(math.isfinite(v["mae"]) for v in by_kind)

    configs = {name: yaml.safe_load((folder / c["folder"].split("/")[-1] / "config.yaml").read_text())
               for name, c in content["results"]["configs"].items()}
    for label, backbone in BACKBONES.items():
        plain, muse = configs[label], configs[f"MuSE({label})"]
        assert plain["model"]["backbone"]["name"] == backbone
        assert plain["model"]["levels"] == [] and len(muse["model"]["levels"]) == 2
        without_levels = lambda c: {k: v for k, v in c["model"].items() if k != "levels"}  # noqa: E731
        assert without_levels(plain) == without_levels(muse)
        assert plain["training"] | {"output_dir": None} == muse["training"] | {"output_dir": None}
        assert plain["data"] == muse["data"]
    # one budget for all: training sections identical across backbones too (up to the output folder)
    assert len({json.dumps(c["training"] | {"output_dir": None}, sort_keys=True) for c in configs.values()}) == 1
    assert models["MuSE(PaiNN)"]["params"] > models["PaiNN"]["params"]
