"""Issue #13 item 1: atoms very far apart (1e6 Å and more) crashed the process (SIGFPE in vesin's cell list).

Each check runs in a subprocess, so a crash shows up as a failed test instead of killing pytest.
"""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from ase.build import molecule
from ase.neighborlist import neighbor_list as ase_neighbor_list

from muse_ff.data.neighbors import _vesin_grid_ok, neighbor_list

SCRIPT = textwrap.dedent("""
    import sys, torch
    from ase.build import molecule
    from muse_ff import build_model
    from muse_ff.calculator import MuSECalculator
    from muse_ff.testing.conformance import SMALL_PAINN
    torch.manual_seed(0)
    levels = [{"ratio": 4}, {"ratio": 4}] if sys.argv[1] == "muse" else []
    model = build_model({"backbone": SMALL_PAINN, "levels": levels, "dtype": "float64"})
    calc = MuSECalculator(model)
    out = []
    for x in (1e3, 1e6, 1e9):
        a = molecule("H2O") + molecule("H2O")
        a.positions[3:] += [3.0, 0.0, 0.0]
        a.positions[5] = [x, 0.0, 0.0]
        a.calc = calc
        out.append(a.get_potential_energy())
    print(*out)
""")


@pytest.mark.parametrize("kind", ["plain", "muse"])
def test_far_atom_gives_a_finite_energy_not_a_crash(kind):
    run = subprocess.run([sys.executable, "-c", SCRIPT, kind], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, f"exit {run.returncode}: {run.stderr[-2000:]}"
    energies = np.array(run.stdout.split(), dtype=float)
    assert np.isfinite(energies).all()
    # beyond every cutoff the far atom is alone: 1e3, 1e6 and 1e9 Å give one energy
    np.testing.assert_allclose(energies, energies[0], rtol=0, atol=1e-9)


def _pairs(i, j, s):
    return sorted(zip(i.tolist(), j.tolist(), map(tuple, np.asarray(s).tolist())))


@pytest.mark.parametrize("box", [None, np.diag([1e6, 11.0, 11.0])])
def test_neighbour_list_on_elongated_extents_matches_ase(box):
    a = molecule("H2O") + molecule("H2O")
    a.positions[3:] += [3.0, 0.0, 0.0]
    a.positions += 1.0
    if box is None:
        a.positions[5] = [1e6, 0.0, 0.0]
    else:  # a periodic cell vesin's capped grid would truncate to zero cells across
        a.cell, a.pbc = box, True
        assert not _vesin_grid_ok(box, 5.0)
    i, j, s, _ = neighbor_list(a.positions, a.cell[:], a.pbc, 5.0)
    if box is not None:  # same pairs as in a 20 Å long cell (images along x are > 18 Å away); ASE is slow on 1e6
        a.cell = np.diag([20.0, 11.0, 11.0])
    ai, aj, aS = ase_neighbor_list("ijS", a, 5.0)
    assert _pairs(i, j, s) == _pairs(ai, aj, aS)
    assert len(i) > 0
