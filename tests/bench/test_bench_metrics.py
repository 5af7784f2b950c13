"""The benchmarks' small metrics: curve minima, Jensen-Shannon divergence, frequency errors."""

import numpy as np
import pytest

from muse_ff.bench.folding import jensen_shannon
from muse_ff.bench.graphene import curve_metrics
from muse_ff.bench.hessian import frequency_errors


def test_curve_metrics_finds_parabolic_minimum_and_splits_errors_at_cutoff():
    h = np.array([3.0, 3.2, 3.4, 3.6, 6.0, 8.0])
    ref = 0.5 * (h - 3.3) ** 2 - 0.4
    m = curve_metrics(h, ref + 0.01 * (h >= 5), ref)
    assert m["h_min"] == pytest.approx(3.3) and m["depth"] == pytest.approx(-400.0)
    assert m["mae_inside"] == pytest.approx(0.0) and m["mae_beyond"] == pytest.approx(10.0)


def test_curve_metrics_judge_the_tail_sign_and_fit_its_power_law():
    h = np.array([3.0, 3.4, 4.0, 5.4, 6.0, 7.0, 8.0, 9.0, 10.5, 12.0])
    ref = -20.0 * h**-4.0  # eV: a plane-like -1/h^4 tail (-1 meV at 12 Å)
    m = curve_metrics(h, -3000.0 * h**-6.0, ref)  # -1 meV at 12 Å
    assert m["tail_power"] == pytest.approx(6.0) and m["tail_power_ref"] == pytest.approx(4.0)
    assert m["tail_wrong_sign"] == 0.0
    flipped = curve_metrics(h, np.where(h >= 9.0, 1e-3, ref), ref)  # repulsive from 9 Å on
    assert flipped["tail_wrong_sign"] == pytest.approx(3 / 6) and np.isnan(flipped["tail_power"])
    zero = curve_metrics(h, np.where(h >= 5.0, 0.0, ref), ref)  # a 5 Å model: exactly zero is no sign
    assert zero["tail_wrong_sign"] == 1.0 and np.isnan(zero["tail_power"])


def test_jensen_shannon_is_zero_for_identical_and_one_for_disjoint_samples():
    x = np.linspace(0.0, 1.0, 50)
    assert jensen_shannon(x, x, 0.0, 4.0) == pytest.approx(0.0)
    assert jensen_shannon(x, x + 2.0, 0.0, 4.0) == pytest.approx(1.0)


def test_frequency_errors_pair_sorted_modes_and_count_low_and_imaginary():
    e = frequency_errors(np.array([-10.0, 110.0, 1000.0]), np.array([1010.0, 100.0, 20.0]))
    assert e["mae_all"] == pytest.approx(50.0 / 3)
    assert e["n_low"] == 2 and e["mae_low"] == pytest.approx(20.0) and e["n_imaginary"] == 1


def test_graphene_trains_on_binding_energies_except_the_periodic_artefact(data_dir):
    """Every training sample carries its binding energy, but over the periodic sheet only up to
    PERIODIC_MAX_HEIGHT (the teacher's repulsive periodic tail is an artefact); test frames keep theirs."""
    from muse_ff.bench.graphene import DATA, PERIODIC_MAX_HEIGHT, load

    frames = load(data_dir / DATA, quick=False)
    train = frames["train"] + frames["valid"]
    high = [a for a in train if a.info["substrate"] == "periodic" and a.info["height"] > PERIODIC_MAX_HEIGHT]
    assert high and not any("binding_energy" in a.info for a in high)
    rest = [a for a in train if a not in high]
    assert rest and all("binding_energy" in a.info for a in rest)
    assert all("binding_energy" in a.info for k in ("curve", "test_unseen") for a in frames[k])
