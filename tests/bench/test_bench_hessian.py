"""``muse bench hessian``: held-out molecules never trained on, seen and unseen reported apart, seeds, verdicts."""

import json
import math

import numpy as np
import pytest
from ase.io import read

from muse_ff.bench import hessian
from muse_ff.cli.main import main


def _report(folder):
    content = json.loads((folder / "results.json").read_text())
    assert (folder / "table.md").is_file()
    assert len(content["plots"]) == 2  # frequencies and learning curves
    for plot in content["plots"]:
        assert (folder / plot.split("/")[-1]).stat().st_size > 1000
    return content


def _molecule(frame_id: str) -> str:
    return frame_id.split("/")[0]


@pytest.mark.parametrize("quick", [False, True])
def test_hessian_never_trains_on_a_held_out_molecule(data_dir, quick):
    from muse_ff.teachers.labelling import read_frames

    data = hessian.load(data_dir / hessian.FOLDER, quick=quick)
    unseen = ["naphthalene"] if quick else ["naphthalene", "ace-ala10-nme"]
    assert data["unseen"] == unseen
    assert data["seen"] == (["water", "benzene"] if quick else
                            ["water", "formaldehyde", "methanol", "acetonitrile", "benzene", "ace-ala5-nme"])
    trained = data["train"] + data["valid"]
    assert trained and not any(a.info["molecule"] in unseen for a in trained)
    assert all(a.info["role"].startswith("normal-mode") for a in trained)
    assert {a.info["molecule"] for a in data["test_unseen"]} == set(unseen)
    assert not any(a.info["molecule"] in unseen for a in data["test_seen"])
    assert all(a.info["split"] == "test" for a in data["test_seen"])
    ids = lambda key: {a.info["frame_id"] for a in data[key]}  # noqa: E731
    assert not (ids("train") | ids("valid")) & (ids("test_seen") | ids("test_unseen"))
    assert {m: v["seen"] for m, v in data["minima"].items()} == {m: m not in unseen for m in data["seen"] + unseen}
    every = [a for a in read_frames(data_dir / hessian.FOLDER / hessian.DATA) if a.info["role"] != "minimum"]
    if quick:  # a few frames of each molecule
        assert {a.info["molecule"] for a in data["train"]} == {"water", "benzene"}
        assert len(data["train"]) == 2 * hessian.QUICK_FRAMES["train"] and len(data["test_unseen"]) == 2
    else:  # every sample of a held-out molecule is a test frame, whatever its split; no seen sample is lost
        assert len(data["test_unseen"]) == sum(a.info["molecule"] in unseen for a in every) == 80
        assert len(trained) + len(data["test_seen"]) + len(data["test_unseen"]) == len(every)


def test_hessian_quick_trains_on_seen_molecules_and_reports_unseen_apart(tmp_path, data_dir):
    assert main(["bench", "hessian", "--quick", "--output-dir", str(tmp_path), "--data-dir", str(data_dir)]) == 0
    folder = tmp_path / "hessian"
    content = _report(folder)
    res = content["results"]
    assert res["complete"] and res["held_out"] == ["naphthalene"] and res["trained_on"] == ["water", "benzene"]
    assert res["seeds"] == {"PaiNN": 1, "MuSE(PaiNN)": 1, "PaiNN+LES": 1, "PaiNN+phys": 1,
                            "MuSE-intra(PaiNN)+phys": 1}
    phys = res["models"]["MuSE-intra(PaiNN)+phys"][0]["molecules"]["naphthalene"]
    assert len(phys["frequencies"]) == 3 * 18 - 6 and np.isfinite(phys["frequencies"]).all()
    # what the models were actually trained and validated on: no frame of the held-out molecule
    for split in ("train", "valid"):
        used = {_molecule(a.info["frame_id"]) for a in read(folder / "seed0" / "data" / f"{split}.extxyz", ":")}
        assert used == {"water", "benzene"}
    water = res["teacher"]["water"]
    assert len(water) == 3 and water[0] == pytest.approx(1539.3, abs=1.0)
    run = res["models"]["MuSE(PaiNN)"][0]
    assert len(run["molecules"]["water"]["frequencies"]) == 3
    assert {m: r["seen"] for m, r in run["molecules"].items()} == {"water": True, "benzene": True,
                                                                  "naphthalene": False}
    assert run["test_seen"]["frames"] == 4 and run["test_unseen"]["frames"] == 2
    s = res["scores"]["PaiNN"][0]
    naph = res["models"]["PaiNN"][0]["molecules"]["naphthalene"]["errors"]
    assert s["unseen_mae_all"] == pytest.approx(naph["mae_all"])
    assert s["unseen_mae_low"] == pytest.approx(naph["mae_low"])
    assert math.isnan(s["seen_mae_low"])  # water and benzene have no mode below 300 cm^-1
    md = (folder / "table.md").read_text()
    assert "UNSEEN molecules (never trained on: naphthalene;" in md and "seen molecules (water, benzene;" in md
    titles = [t["title"] for t in content["tables"]]
    assert any(t.startswith("UNSEEN") for t in titles) and any(t.startswith("seen") for t in titles)
    assert len(res["learning_curves"]["PaiNN"][0]["val_loss"]) == 2  # one value per epoch


def test_hessian_seeds_give_different_models_and_verdicts(tmp_path, data_dir):
    args = ["bench", "hessian", "--quick", "--output-dir", str(tmp_path), "--data-dir", str(data_dir), "--seeds", "2",
            "--contestants", "painn,MuSE(PaiNN)"]
    assert main(args) == 0
    folder = tmp_path / "hessian"
    res = _report(folder)["results"]
    assert res["seeds"] == {"PaiNN": 2, "MuSE(PaiNN)": 2} and list(res["models"]) == ["PaiNN", "MuSE(PaiNN)"]
    for name in ("painn", "muse_painn"):
        assert all((folder / f"seed{k}" / name / "model.pt").is_file() for k in (0, 1))
    a, b = (np.asarray(r["molecules"]["benzene"]["frequencies"]) for r in res["models"]["PaiNN"])
    assert np.abs(a - b).max() > 1e-3  # another initialisation and frame order: another model
    md = (folder / "table.md").read_text()
    for group in ("unseen", "seen"):
        row = next(line for line in md.splitlines() if line.startswith(f"| MuSE(PaiNN) vs PaiNN | {group} | 2 / 2 |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert all(c.split(" (")[0] in ("better", "worse", "within spread") for c in cells[3:4])
    unseen_table = next(t for t in json.loads((folder / "results.json").read_text())["tables"]
                        if t["title"].startswith("UNSEEN"))
    muse = next(r for r in unseen_table["rows"] if r[0] == "MuSE(PaiNN)")
    assert muse[1] == 2 and " ± " in muse[2] and muse[-1].startswith("vs PaiNN: ")


def test_hessian_scores_pool_modes_per_group():
    minima = {"a": {"frequencies": np.array([100.0, 1000.0]), "seen": True},
              "b": {"frequencies": np.array([200.0, 400.0, 2000.0]), "seen": False},
              "c": {"frequencies": np.array([3000.0]), "seen": False}}

    def mol(pred, seen, ref):
        return {"frequencies": np.array(pred), "seen": seen, "rmsd": 0.1, "converged": True,
                "errors": hessian.frequency_errors(np.array(pred), ref)}

    result = {"molecules": {"a": mol([110.0, 1000.0], True, minima["a"]["frequencies"]),
                            "b": mol([200.0, 430.0, 2000.0], False, minima["b"]["frequencies"]),
                            "c": mol([3090.0], False, minima["c"]["frequencies"])},
              "test_unseen": {"energy_mae": 1.0, "forces_mae": 7.0}}
    s = hessian.scores(result, minima)
    assert s["seen_mae_all"] == pytest.approx(5.0) and s["seen_mae_low"] == pytest.approx(10.0)
    assert s["unseen_mae_all"] == pytest.approx(120.0 / 4)  # pooled over the 4 modes of b and c
    assert s["unseen_mean_molecule_mae"] == pytest.approx((10.0 + 90.0) / 2)
    assert s["unseen_mae_low"] == pytest.approx(0.0) and s["unseen_F_samples"] == 7.0
    assert math.isnan(s["seen_F_samples"])


def test_hessian_judges_the_physical_contestants_against_the_closest_model_and_painn():
    names = ["PaiNN", "MuSE(PaiNN)", "PaiNN+LES", "PaiNN+phys", "MuSE-intra(PaiNN)+phys"]
    assert hessian.references("MuSE-intra(PaiNN)+phys", names) == ["PaiNN+phys", "PaiNN"]
    assert hessian.reference_of("MuSE-intra(PaiNN)+phys", names) == "PaiNN+phys"  # what the hierarchy adds
    assert hessian.references("PaiNN+phys", names) == ["PaiNN"]
    assert hessian.references("MuSE(PaiNN)", names) == ["PaiNN"] and hessian.references("PaiNN", names) == []
    assert hessian.references("MuSE-intra(PaiNN)+phys", ["PaiNN", "MuSE-intra(PaiNN)+phys"]) == ["PaiNN"]

    def run(offset):
        return {"molecules": {"a": {"frequencies": np.array([100.0 + offset, 1000.0]), "seen": False, "rmsd": 0.1,
                                    "converged": True, "errors": hessian.frequency_errors(
                                        np.array([100.0 + offset, 1000.0]), np.array([100.0, 1000.0]))}}}

    minima = {"a": {"frequencies": np.array([100.0, 1000.0]), "seen": False}}
    per_seed = {"PaiNN": [run(40.0), run(44.0)], "PaiNN+phys": [run(20.0), run(22.0)],
                "MuSE-intra(PaiNN)+phys": [run(2.0), run(4.0)]}
    rows = [r for r in hessian.verdict_rows(per_seed, minima) if r[1] == "unseen"]
    assert [r[0] for r in rows] == ["PaiNN+phys vs PaiNN", "MuSE-intra(PaiNN)+phys vs PaiNN+phys",
                                    "MuSE-intra(PaiNN)+phys vs PaiNN"]
    assert all(r[3].startswith("better") for r in rows)  # mae_all: 1-2 vs 10-11 vs 20-22 cm^-1
    summary = {r[0]: r[-1] for r in hessian.summary_rows(per_seed, minima, "unseen")}
    assert summary["MuSE-intra(PaiNN)+phys"].startswith("vs PaiNN+phys: better")
