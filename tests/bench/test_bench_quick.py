"""Smoke tests of ``muse bench ... --quick``: each benchmark trains, evaluates and writes its report."""

import json

import numpy as np
import pytest

from muse_ff.cli.main import main


def _report(folder):
    content = json.loads((folder / "results.json").read_text())
    assert (folder / "table.md").is_file()
    for plot in content["plots"]:
        assert (folder / plot.split("/")[-1]).stat().st_size > 1000
    return content


def test_bench_graphene_quick_reports_seen_and_unseen_molecules_of_every_contestant(tmp_path, data_dir):
    assert main(["bench", "graphene", "--quick", "--output-dir", str(tmp_path), "--data-dir", str(data_dir)]) == 0
    content = _report(tmp_path / "graphene")
    assert len(content["plots"]) == 2  # binding curves and learning curves
    results = content["results"]
    models = results["models"]
    assert list(models) == ["PaiNN", "MuSE(PaiNN)", "PaiNN+LES", "PaiNN+phys+Eint", "MuSE(PaiNN)+phys+Eint",
                            "PaiNN+Eint", "MuSE-intra(PaiNN)+phys+Eint", "SO3krates", "MuSE(SO3krates)", "MACE",
                            "MuSE(MACE)"]
    # the physical pair and the ablation also train on the samples' binding energies, and report that error
    for name in ("painn_phys_eint", "muse_painn_phys_eint", "painn_eint", "muse-intra_painn_phys_eint"):
        config = json.loads((tmp_path / "graphene" / "seed0" / name / "bench-config.json").read_text())["config"]
        assert config["data"]["interaction_key"] == "binding_energy" and config["training"]["loss"]["interaction"] > 0
        log = (tmp_path / "graphene" / "seed0" / name / "logs" / "metrics.csv").read_text()
        assert "val_interaction_mae" in log.splitlines()[0]
    plain = json.loads((tmp_path / "graphene" / "seed0" / "painn" / "bench-config.json").read_text())["config"]
    assert "interaction_key" not in plain["data"] and "interaction" not in plain["training"]["loss"]
    assert results["complete"] and results["held_out"] == ["naphthalene"] and results["trained_on"] == ["benzene"]
    assert all(len(runs) == 1 for runs in models.values())  # quick: one seed
    curve = models["PaiNN"][0]["curves"]["benzene/flake"]
    assert curve["seen"] and not models["PaiNN"][0]["curves"]["naphthalene/flake"]["seen"]
    assert curve["pred"][-1] == pytest.approx(0.0, abs=1e-2)  # meV: a 5 Å model sees no binding at 12 Å
    intra = json.loads((tmp_path / "graphene" / "seed0" / "muse-intra_painn_phys_eint" / "bench-config.json"
                        ).read_text())["config"]["model"]
    assert [level["edges"] for level in intra["levels"]] == ["within-component"] * 2
    assert "MuSE-intra(PaiNN)+phys+Eint vs PaiNN+phys+Eint" in (tmp_path / "graphene" / "table.md").read_text()
    assert models["MACE"][0]["test_unseen"]["frames"] == 2 and models["MACE"][0]["test_seen"]["frames"] == 2
    assert len(results["learning_curves"]["PaiNN"][0]["val_loss"]) == 2  # one value per epoch


def test_bench_graphene_seeds_give_different_models_and_verdicts(tmp_path, data_dir):
    args = ["bench", "graphene", "--quick", "--output-dir", str(tmp_path), "--data-dir", str(data_dir), "--seeds", "2",
            "--contestants", "painn,MuSE(PaiNN)"]
    assert main(args) == 0
    results = _report(tmp_path / "graphene")["results"]
    assert results["seeds"] == {"PaiNN": 2, "MuSE(PaiNN)": 2}
    for name in ("painn", "muse_painn"):
        assert all((tmp_path / "graphene" / f"seed{k}" / name / "model.pt").is_file() for k in (0, 1))
    a, b = (np.asarray(r["curves"]["benzene/flake"]["pred"]) for r in results["models"]["PaiNN"])
    assert np.abs(a - b).max() > 1e-3  # another initialisation and frame order: another model
    md = (tmp_path / "graphene" / "table.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| MuSE(PaiNN) vs PaiNN | unseen | 2 / 2 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    # two seeds each: a verdict on every flake-curve score, the tail's sign included (no periodic frames in
    # quick mode: n/a there)
    assert all(c.split(" (")[0] in ("better", "worse", "within spread") for c in cells[3:8]) and cells[8] == "n/a"


def test_bench_folding_quick_runs_replicas_of_teacher_and_models(tmp_path, data_dir):
    from muse_ff.bench.folding import BUDGETS, RANGES

    assert main(["bench", "folding", "--quick", "--output-dir", str(tmp_path), "--data-dir", str(data_dir)]) == 0
    content = _report(tmp_path / "folding")
    res, md = content["results"], BUDGETS["quick"][1]
    contestants = {"teacher", "PaiNN", "MuSE(PaiNN)", "PaiNN+LES", "PaiNN+phys", "MuSE-intra(PaiNN)+phys"}
    assert set(res["runs"]) == set(res["summaries"]) == set(res["comparisons"]) == contestants
    for name in contestants:
        assert len(res["runs"][name]) == len(res["summaries"][name]["transitions"]) == md.replicas
        assert res["summaries"][name]["ns_per_day"] > 0
        for k in RANGES:
            jsd, spread = res["comparisons"][name][f"jsd_{k}"], res["comparisons"][name][f"jsd_{k}_spread"]
            assert 0 <= jsd <= 1 and spread >= 0
    teacher = res["summaries"]["teacher"]
    assert teacher["stable"] == md.replicas and teacher["failed_at_ps"] == [None] * md.replicas
    first = res["runs"]["teacher"][0]
    assert first["time_ps"][0] == 0.0 and len(first["time_ps"]) == md.steps // md.interval + 1
    assert first["rmsd_ca"][0] == pytest.approx(0.0, abs=1e-6)  # every replica starts from the folded structure
    assert set(res["energy_gaps"]) == contestants - {"teacher"}
    test_gap = res["energy_gaps"]["PaiNN"]["test"]
    assert test_gap["n_folded"] > 0 and test_gap["n_unfolded"] > 0 and test_gap["mae"] >= abs(test_gap["bias"])
    assert res["split"]["train"] > 0 and res["split"]["test"] > 0
    # a second run with one contestant reuses the teacher's replicas (same MD settings, fixed seeds)
    assert main(["bench", "folding", "--quick", "--output-dir", str(tmp_path), "--data-dir", str(data_dir),
                 "--contestants", "painn+phys"]) == 0
    again = _report(tmp_path / "folding")["results"]
    assert set(again["runs"]) == {"teacher", "PaiNN+phys"}
    assert again["runs"]["teacher"] == res["runs"]["teacher"]  # the same numbers, wall times included: reused


def test_bench_speed_quick_times_both_models(tmp_path, data_dir):
    assert main(["bench", "speed", "--quick", "--output-dir", str(tmp_path), "--data-dir", str(data_dir)]) == 0
    systems = _report(tmp_path / "speed")["results"]["systems"]
    assert {"PaiNN", "MuSE(PaiNN)", "PaiNN+LES"} <= set(systems["chignolin"]["seconds_per_step"])


def test_bench_raises_if_data_dir_missing(tmp_path, capsys):
    assert main(["bench", "graphene", "--quick", "--data-dir", str(tmp_path / "nope")]) == 2
    assert "data folder not found" in capsys.readouterr().err


@pytest.mark.slow
def test_bench_reuses_models_trained_with_the_same_configuration(tmp_path, data_dir):
    args = ["bench", "hessian", "--quick", "--output-dir", str(tmp_path), "--data-dir", str(data_dir)]
    assert main(args) == 0
    model = tmp_path / "hessian" / "seed0" / "painn" / "model.pt"
    stamp = model.stat().st_mtime_ns
    assert main(args) == 0
    assert model.stat().st_mtime_ns == stamp
