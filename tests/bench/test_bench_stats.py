"""Seeds, statistics over seeds, the verdict rule, learning curves and contestant selection (muse_ff.bench.common,
muse_ff.contestants), and the held-out molecules of the graphene benchmark."""

import math

import numpy as np
import pytest

from muse_ff import contestants
from muse_ff.bench import common, graphene


def test_mean_std_uses_the_sample_std_and_drops_missing_values():
    assert common.mean_std([1.0, 2.0, 3.0]) == pytest.approx((2.0, 1.0))
    assert common.mean_std([4.0, float("nan"), None]) == (4.0, 0.0)
    assert all(math.isnan(x) for x in common.mean_std([]))
    assert common.pm([1.0, 2.0, 3.0]) == "2.0 ± 1.0" and common.pm([1.234], 2) == "1.23" and common.pm([]) == "-"


def test_verdict_needs_the_difference_of_means_to_exceed_the_combined_spread():
    ref = [10.0, 12.0, 14.0]  # mean 12, std 2
    # mean 6, std 2: difference -6, spread sqrt(8) = 2.83
    v = common.verdict([4.0, 6.0, 8.0], ref)
    assert v.word == "better" and v.difference == pytest.approx(-6.0) and v.spread == pytest.approx(8 ** 0.5)
    assert common.verdict([16.0, 18.0, 20.0], ref).word == "worse"
    # difference -2 < spread 2.83: no verdict either way
    assert common.verdict([8.0, 10.0, 12.0], ref).word == "within spread"
    # a difference just beyond / just inside the spread
    assert common.verdict([12.0 - 2.9] * 3, ref).word == "better"
    assert common.verdict([12.0 - 1.9] * 3, ref).word == "within spread"
    # higher is better (e.g. a correlation)
    assert common.verdict([4.0, 6.0, 8.0], ref, lower_is_better=False).word == "worse"
    # one seed has no spread: never a verdict, whatever the difference
    assert common.verdict([1.0], ref).word == "n/a" and common.verdict([1.0, 2.0], [50.0]).word == "n/a"
    assert common.verdict([1.0, float("nan")], ref).word == "n/a"  # only one finite value


def test_seed_schedule_runs_fully_seeded_contestants_first():
    order = common.seed_schedule({"A": 3, "B": 3, "C": 1, "D": 1})
    assert order == [(0, "A"), (0, "B"), (1, "A"), (1, "B"), (2, "A"), (2, "B"), (0, "C"), (0, "D")]
    assert common.seed_folder("out", 2).as_posix() == "out/seed2"


def test_learning_curve_reads_the_epoch_log_and_plateau_measures_the_late_gain(tmp_path):
    (tmp_path / "logs").mkdir()
    val = [10.0, 5.0, 3.0, 2.0, 1.5, 1.2, 1.1, 1.0]
    rows = "".join(f"{k},{k * 3},0.001,{v + 1},{v},{v * 2},1.0\n" for k, v in enumerate(val))
    (tmp_path / "logs" / "metrics.csv").write_text("epoch,step,lr,train_loss,val_loss,val_energy_mae,time_s\n" + rows)
    c = common.learning_curve(tmp_path)
    assert c["epoch"] == list(range(8)) and c["val_loss"] == val and c["val_energy_mae"][0] == 20.0
    # the last 25% (2 epochs) took the best from 1.2 to 1.0: a 1/6 gain
    assert common.plateau(c) == pytest.approx(0.2 / 1.2)
    assert common.plateau({"val_loss": [3.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]}) == 0.0
    assert math.isnan(common.plateau({"val_loss": [1.0, 0.5]}))
    assert common.learning_curve(tmp_path / "none") == {}
    path = common.plot_learning_curves({"PaiNN": [c, c], "MuSE(PaiNN)": [c]}, tmp_path / "lc.png")
    assert path.stat().st_size > 1000


def test_contestants_are_selected_by_name_or_folder_name():
    names = ["PaiNN", "MuSE(PaiNN)", "PaiNN+LES", "MACE"]
    assert contestants.select(None, names) == names and contestants.select("", names) == names
    assert contestants.select("mace, painn", names) == ["PaiNN", "MACE"]  # registry order, any case
    assert contestants.select(["muse_painn", "PaiNN+LES"], names) == ["MuSE(PaiNN)", "PaiNN+LES"]
    with pytest.raises(ValueError, match="unknown contestant.*SchNet"):
        contestants.select("SchNet", names)


def test_graphene_contestants_pair_every_backbone_with_its_muse_version():
    budget = graphene.BUDGETS["default"]
    got = graphene.contestants(budget, "default")
    assert list(got) == ["PaiNN", "MuSE(PaiNN)", "PaiNN+LES", "PaiNN+phys+Eint", "MuSE(PaiNN)+phys+Eint", "PaiNN+Eint",
                         "MuSE-intra(PaiNN)+phys+Eint", "SO3krates", "MuSE(SO3krates)", "MACE", "MuSE(MACE)"]
    assert got["MACE"]["backbone"] == contestants.SMALL_BACKBONES["MACE"] and got["MACE"]["levels"] == []
    assert got["MuSE(SO3krates)"]["levels"] == contestants.MUSE_LEVELS
    assert got["PaiNN"] == common.contestant_config(budget, common.MODELS["PaiNN"])
    assert {graphene.reference_of(n, got) for n in got} == {None, "PaiNN", "MuSE(PaiNN)", "MACE", "SO3krates",
                                                             "MuSE(PaiNN)+phys+Eint"}
    assert graphene.reference_of("MuSE(PaiNN)+phys+Eint", got) == "MuSE(PaiNN)"  # then, in the verdicts, PaiNN
    assert graphene.reference_of("PaiNN+LES", got) == "PaiNN" and graphene.reference_of("MuSE(MACE)", got) == "MACE"
    counts = graphene.seed_counts(list(got), "default", seeds=4)
    assert counts["PaiNN+LES"] == counts["MuSE(PaiNN)+phys+Eint"] == 4
    assert counts["MuSE(MACE)"] == graphene.EXTRA_SEEDS["default"]
    assert graphene.seed_counts(["PaiNN"], "default") == {"PaiNN": graphene.SEEDS["default"]}


@pytest.mark.parametrize("quick", [False, True])
def test_graphene_never_trains_on_a_held_out_molecule(data_dir, quick):
    frames = graphene.load(data_dir / graphene.DATA, quick=quick)
    unseen = graphene.unseen_molecules(frames)
    assert unseen == (["naphthalene"] if quick else ["naphthalene", "pyrrole"])  # an aromatic, a heteroaromatic
    assert graphene.seen_molecules(frames) == (["benzene"] if quick else ["benzene", "pyridine"])
    trained = frames["train"] + frames["valid"]
    assert trained and not any(a.info["molecule"] in unseen for a in trained)
    assert all(a.info["role"] == "sample" for a in trained)
    assert frames["test_unseen"] and {a.info["molecule"] for a in frames["test_unseen"]} == set(unseen)
    assert not any(a.info["molecule"] in unseen for a in frames["test_seen"])
    ids = lambda key: {a.info["frame_id"] for a in frames[key]}  # noqa: E731
    assert not (ids("train") | ids("valid")) & (ids("test_seen") | ids("test_unseen") | ids("curve"))
    curves = {a.info["molecule"]: a.info["seen"] for a in frames["curve"]}
    assert set(curves) == set(unseen) | set(graphene.seen_molecules(frames))
    assert all(curves[m] is False for m in unseen)
    if not quick:  # every sample of a held-out molecule is a test frame, whatever its split
        from muse_ff.teachers.labelling import read_frames

        every = [a for a in read_frames(data_dir / graphene.DATA) if a.info["role"] == "sample"]
        assert len(frames["test_unseen"]) == sum(a.info["molecule"] in unseen for a in every) == 200


def test_graphene_scores_split_seen_and_unseen_curves():
    x = np.array([3.0, 3.2, 3.4, 6.0, 12.0])
    ref = np.array([-100.0, -400.0, -300.0, -50.0, -4.0])

    def curve(err, seen):
        return {"x": x, "ref": ref, "pred": ref + err, "seen": seen,
                "metrics": graphene.curve_metrics(x, (ref + err) / 1000, ref / 1000)}

    result = {"curves": {"benzene/flake": curve(10.0, True), "naphthalene/flake": curve(30.0, False),
                         "pyrrole/flake": curve(50.0, False)}, "scans": {}, "test_unseen": {"forces_mae": 7.0}}
    s = graphene.scores(result)
    assert s["seen_curve_inside"] == pytest.approx(10.0) and s["unseen_curve_inside"] == pytest.approx(40.0)
    assert s["unseen_curve_beyond"] == pytest.approx(40.0) and s["unseen_F_samples"] == 7.0
    assert math.isnan(s["seen_F_samples"]) and math.isnan(s["unseen_periodic"])


def test_each_contestant_is_judged_against_the_same_model_without_what_it_adds():
    from muse_ff.bench.common import comparisons, reference_of

    names = ["PaiNN", "MuSE(PaiNN)", "PaiNN+phys+Eint", "MuSE(PaiNN)+phys+Eint", "MuSE-intra(PaiNN)+phys+Eint"]
    assert reference_of("MuSE(PaiNN)", names) == "PaiNN" and reference_of("PaiNN+phys+Eint", names) == "PaiNN"
    assert reference_of("MuSE-intra(PaiNN)+phys+Eint", names) == "MuSE(PaiNN)+phys+Eint"
    assert comparisons("MuSE(PaiNN)+phys+Eint", names) == ["PaiNN+phys+Eint", "MuSE(PaiNN)", "PaiNN"]
    assert comparisons("MuSE-intra(PaiNN)+phys+Eint", names) == [
        "PaiNN+phys+Eint", "MuSE(PaiNN)+phys+Eint", "MuSE(PaiNN)", "PaiNN"]
    assert comparisons("MuSE-intra(PaiNN)+phys+Eint", names[:3]) == ["PaiNN+phys+Eint"]
    assert comparisons("PaiNN", names) == []
