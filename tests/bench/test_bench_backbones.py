"""``muse bench backbones --quick``: six models (three backbones, plain and MuSE) and the two physical ones
trained, evaluated, reported."""

import json
import math
from pathlib import Path

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
    per_seed = content["results"]["models"]
    physical = ["PaiNN+phys+Eint", "MuSE-intra(PaiNN)+phys+Eint"]
    assert list(per_seed) == [n for b in BACKBONES for n in (b, f"MuSE({b})")] + physical
    assert content["results"]["seeds"] == {n: 1 for n in per_seed}  # quick: one seed each
    models = {n: runs[0] for n, runs in per_seed.items()}
    for name, r in models.items():
        values = [r["metrics"]["energy_mae"], r["metrics"]["forces_mae"], r["eval_time_s"],
                  *r["interaction_mae_meV"].values()]
        assert len(r["interaction_mae_meV"]) == 3, name  # <5, 5-10 and >10 Å all present in the quick test set
        assert all(math.isfinite(v) and v >= 0 for v in values), (name, values)
        assert r["params"] > 0
        by_kind = [v for per in r["interaction_mae_meV_by_kind"].values() for v in per.values()]
        assert sum(v["frames"] for v in by_kind) == content["results"]["frames"]["test"] == 3
        assert all(math.isfinite(v["mae"]) for v in by_kind)

    configs = {name: yaml.safe_load((Path(c["folder"]) / "config.yaml").read_text())
               for name, c in content["results"]["configs"].items()}
    for label, backbone in BACKBONES.items():
        plain, muse = configs[label], configs[f"MuSE({label})"]
        assert plain["model"]["backbone"]["name"] == backbone
        assert plain["model"]["levels"] == [] and len(muse["model"]["levels"]) == 2
        without_levels = lambda c: {k: v for k, v in c["model"].items() if k != "levels"}  # noqa: E731
        assert without_levels(plain) == without_levels(muse)
        assert plain["training"] | {"output_dir": None} == muse["training"] | {"output_dir": None}
        assert plain["data"] == muse["data"]
    # one budget for all: training sections identical across backbones too (up to the output folder), and the
    # physical ones add the interaction-energy loss only
    same = lambda c: c["training"] | {"output_dir": None, "loss": None}  # noqa: E731
    assert len({json.dumps(same(c), sort_keys=True) for c in configs.values()}) == 1
    assert len({json.dumps(configs[n]["training"] | {"output_dir": None}, sort_keys=True) for n in BACKBONES}) == 1
    for name in physical:
        model, data = configs[name]["model"], configs[name]["data"]
        assert model["physical"] is not None and model["charges"]
        assert model["backbone"] == configs["PaiNN"]["model"]["backbone"]
        assert data["interaction_key"] == "interaction_energy" and configs[name]["training"]["loss"]["interaction"] > 0
    intra = configs["MuSE-intra(PaiNN)+phys+Eint"]["model"]["levels"]
    assert intra and all(lev["edges"] == "within-component" for lev in intra)
    assert models["MuSE(PaiNN)"]["params"] > models["PaiNN"]["params"]


def test_the_dimers_ions_carry_their_charge(data_dir):
    """Frames written before the builder set formal charges get them from their monomers: the ion of an ion + water
    pair carries the whole charge, so no model moves it onto the water; a wrong total is refused."""
    from ase.build import molecule as ase_molecule

    from muse_ff.bench.backbones import DATA, load
    from muse_ff.data.atoms import fragment
    from muse_ff.datasets.dimers import add_missing_formal_charges

    if not (data_dir / "long-range-dimers").is_dir():
        pytest.skip("data/long-range-dimers is not available")
    frames = [a for s in load(data_dir / DATA, quick=True).values() for a in s]
    want = {"formate": -1, "methylammonium": 1}
    seen = set()
    for a in frames:
        n, (first, second) = int(a.info["n_first"]), a.info["system"].split("+")
        assert [fragment(a, slice(None, n)).info["charge"], fragment(a, slice(n, None)).info["charge"]] == \
            [want.get(first, 0), want.get(second, 0)], a.info["system"]
        seen.add(a.info["system"])
    assert {"formate+water", "methylammonium+water", "formate+methylammonium"} <= seen
    bad = ase_molecule("H2O") + ase_molecule("H2O")
    bad.info.update(system="water+water", charge=1, n_first=3)
    with pytest.raises(ValueError, match="monomer charges 0 \\+ 0 differ"):
        add_missing_formal_charges([bad])


def test_seed_counts_give_the_painn_family_three_seeds_by_default():
    from muse_ff.bench.backbones import models, seed_counts

    names = list(models("default"))
    counts = seed_counts(names, "default")
    assert {n for n, k in counts.items() if k == 3} == {"PaiNN", "MuSE(PaiNN)", "PaiNN+phys+Eint",
                                                          "MuSE-intra(PaiNN)+phys+Eint"}
    assert counts["MACE"] == counts["MuSE(SO3krates)"] == 1
    assert seed_counts(["MACE"], "default", 2, chosen=True) == {"MACE": 2}
    assert seed_counts(names, "default", 2)["MACE"] == 1
    with pytest.raises(ValueError, match="seeds must be >= 1"):
        seed_counts(names, "default", 0)


def test_verdict_rows_judge_each_model_against_its_reference():
    from muse_ff.bench.backbones import verdict_rows

    def result(e, eint):
        return {"metrics": {"energy_mae": e, "forces_mae": 50.0}, "interaction_mae_meV": {"<5 Å": eint}}

    per_seed = {"PaiNN": [result(16.0, 100.0), result(16.5, 110.0), result(15.5, 90.0)],
                "MuSE(PaiNN)": [result(2.4, 100.0), result(2.5, 120.0), result(2.3, 80.0)]}
    rows = verdict_rows(per_seed)
    assert [r[:2] for r in rows] == [["MuSE(PaiNN)", "PaiNN"]]
    assert rows[0][2].endswith("better") and rows[0][3].endswith("within spread")
    assert rows[0][4].endswith("within spread")
