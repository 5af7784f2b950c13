"""Smoke tests of ``muse bench ... --quick``: each benchmark trains, evaluates and writes its report."""

import json

import pytest

from muse_ff.cli.main import main


def _report(folder):
    content = json.loads((folder / "results.json").read_text())
    assert (folder / "table.md").is_file()
    for plot in content["plots"]:
        assert (folder / plot.split("/")[-1]).stat().st_size > 1000
    return content


def test_bench_graphene_quick_reports_curves_of_both_models(tmp_path, data_dir):
    assert main(["bench", "graphene", "--quick", "--output-dir", str(tmp_path), "--data-dir", str(data_dir)]) == 0
    content = _report(tmp_path / "graphene")
    models = content["results"]["models"]
    assert set(models) == {"PaiNN", "MuSE(PaiNN)", "PaiNN+LES"}
    curve = models["PaiNN"]["curves"]["benzene/flake"]
    assert curve["pred"][-1] == pytest.approx(0.0, abs=1e-2)  # meV: a 5 Å model sees no binding at 12 Å


def test_bench_hessian_quick_compares_frequencies(tmp_path, data_dir):
    assert main(["bench", "hessian", "--quick", "--output-dir", str(tmp_path), "--data-dir", str(data_dir)]) == 0
    content = _report(tmp_path / "hessian")
    water = content["results"]["teacher"]["water"]
    assert len(water) == 3 and water[0] == pytest.approx(1539.3, abs=1.0)
    assert len(content["results"]["models"]["MuSE(PaiNN)"]["water"]["frequencies"]) == 3


def test_bench_folding_quick_runs_md_of_teacher_and_models(tmp_path, data_dir):
    assert main(["bench", "folding", "--quick", "--output-dir", str(tmp_path), "--data-dir", str(data_dir)]) == 0
    content = _report(tmp_path / "folding")
    assert set(content["results"]["runs"]) == {"teacher", "PaiNN", "MuSE(PaiNN)", "PaiNN+LES"}
    assert content["results"]["runs"]["teacher"]["folded"]["stable"]


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
    model = tmp_path / "hessian" / "painn" / "model.pt"
    stamp = model.stat().st_mtime_ns
    assert main(args) == 0
    assert model.stat().st_mtime_ns == stamp
