"""``model.d3``: the fixed D3(BJ) baseline inside MuSEModel (issue #15 item 3)."""

from __future__ import annotations

import pytest
import torch
from ase.build import molecule

pytest.importorskip("tad_dftd3")

from muse_ff import build_model, load_model, save_model  # noqa: E402
from muse_ff.nn.d3 import D3Dispersion, D3PeriodicError  # noqa: E402

CFG = {"backbone": {"name": "painn", "features": 8, "layers": 1, "num_basis": 6}, "species": ["H", "C", "O"],
       "dtype": "float64", "levels": [{"ratio": 4}]}


def _pair(r: float):
    a, b = molecule("CH4"), molecule("CH3OH")
    b.positions += [r, 0.3, 0.0]
    return a + b


def test_model_energy_is_the_learned_part_plus_d3():
    torch.manual_seed(0)
    plain = build_model(CFG)
    torch.manual_seed(0)
    with_d3 = build_model({**CFG, "d3": {"functional": "pbe0"}})
    with_d3.load_state_dict(plain.state_dict())  # no parameters of its own: the same weights fit both
    atoms = _pair(4.0)
    g = plain.graph_from_atoms(atoms)
    d3 = D3Dispersion("pbe0")(g.species, g.positions, g.cell, g.pbc, g.ptr).sum()
    with torch.no_grad():
        diff = with_d3(g)["energy"] - plain(g)["energy"]
    assert float(diff) == pytest.approx(float(d3), abs=1e-12)
    assert float(d3) < 0


def test_d3_tail_reaches_beyond_every_model_cutoff_and_the_model_saves(tmp_path):
    torch.manual_seed(1)
    m = build_model({**CFG, "d3": {}})
    save_model(m, tmp_path / "m.pt")
    loaded = load_model(tmp_path / "m.pt")
    far = _pair(25.0)  # beyond the 10 Å coarse cutoff, inside D3's 31.75 Å
    with torch.no_grad():
        e = [float(x(x.graph_from_atoms(far))["energy"][0]) for x in (m, loaded)]
        parts = sum(float(m(m.graph_from_atoms(p))["energy"][0]) for p in (far[:5], far[5:]))
    assert e[0] == e[1]
    assert -1e-4 < e[0] - parts < 0  # attractive, small


def test_periodic_frames_are_refused_by_name():
    m = build_model({**CFG, "d3": {}, "levels": []})
    box = molecule("CH4")
    box.cell, box.pbc = [8.0, 8.0, 8.0], True
    with pytest.raises(D3PeriodicError):
        m(m.graph_from_atoms(box))
