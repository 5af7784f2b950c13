"""The learned damped -C6/R^6 term between coarse nodes (``levels[k].dispersion``)."""

import pytest
import torch
from ase.build import molecule

from muse_ff.config import ConfigError
from muse_ff.nn.model import build_model
from muse_ff.nn.radial import smooth_cutoff
from muse_ff.testing.conformance import SMALL_PAINN, ModelConformance

LEVEL = {"ratio": 12, "cutoff": 16.0, "dispersion": True}


def _two_benzenes(d: float):
    a, b = molecule("C6H6"), molecule("C6H6")
    b.translate([0.0, 0.0, d])
    return a + b


def test_matches_the_pair_formula_and_is_attractive():
    torch.manual_seed(0)
    model = build_model({"backbone": SMALL_PAINN, "dtype": "float64", "levels": [LEVEL]})
    graph = model.graph_from_atoms(_two_benzenes(7.0))
    scalars, states = model.encode(graph, graph.positions, graph.cell)
    level, state = model.levels[0], states[0]
    node_e = level.dispersion_energy(state, graph.cell, scalars[1])
    assert state.positions.shape[0] == 2  # one coarse node per benzene
    c = 10.0 * torch.nn.functional.softplus(level.dispersion(scalars[1]).squeeze(-1))
    r = (state.positions[1] - state.positions[0]).norm()
    r0 = level.dispersion_r0.abs() + 1.0
    expected = -c[0] * c[1] * smooth_cutoff(r, level.cutoff) / (r**6 + r0**6)
    torch.testing.assert_close(node_e.sum(), expected, rtol=1e-12, atol=0)
    assert node_e.sum() < 0


def test_is_counted_in_the_level_energy_and_vanishes_beyond_the_cutoff():
    torch.manual_seed(0)
    model = build_model({"backbone": SMALL_PAINN, "dtype": "float64", "levels": [LEVEL]})
    twin = build_model({"backbone": SMALL_PAINN, "dtype": "float64", "levels": [{"ratio": 12, "cutoff": 16.0}]})
    twin.load_state_dict(model.state_dict(), strict=False)  # the same weights, without the term

    def level_energy(m, d):
        return float(m(m.graph_from_atoms(_two_benzenes(d)))["energy_levels"][0, 1].detach())

    assert level_energy(model, 7.0) < level_energy(twin, 7.0)
    assert level_energy(model, 20.0) == pytest.approx(level_energy(twin, 20.0), abs=1e-12)


def test_config_flag_is_validated():
    with pytest.raises(ConfigError, match="dispersion"):
        build_model({"backbone": SMALL_PAINN, "levels": [{"dispersion": "sometimes"}]})


class TestMuSEWithCoarseDispersion(ModelConformance):
    config = {"backbone": SMALL_PAINN, "levels": [{"ratio": 4, "dispersion": True}, {"ratio": 4, "dispersion": True}]}
