"""The torch radius graph of the coarse levels equals the numpy/vesin neighbour list, on every branch."""

import numpy as np
import pytest
import torch

from muse_ff.data.neighbors import neighbor_list
from muse_ff.data.torch_neighbors import radius_graph


def _pairs_numpy(x, cell, pbc, cutoff, min_distance=0.0):
    i, j, s, d = neighbor_list(x, cell, pbc, cutoff)
    keep = d > min_distance
    return sorted(zip(i[keep].tolist(), j[keep].tolist(), map(tuple, s[keep].astype(int).tolist())))


def _pairs_torch(x, cell, pbc, cutoff, min_distance=0.0, **kw):
    ei, sh = radius_graph(torch.tensor(x), torch.tensor(cell), torch.tensor(pbc), cutoff, min_distance, **kw)
    r = torch.linalg.vector_norm(torch.tensor(x)[ei[1]] - torch.tensor(x)[ei[0]] + sh.double() @ torch.tensor(cell),
                                 dim=-1)
    assert bool((r < cutoff).all()) and bool((r > min_distance).all())
    return sorted(zip(ei[0].tolist(), ei[1].tolist(), map(tuple, sh.tolist())))


CASES = {
    "free": (np.zeros((3, 3)), [False] * 3),
    "cubic": (np.eye(3) * 7.0, [True] * 3),
    "small_triclinic": (np.array([[3.0, 0.0, 0.0], [1.2, 2.8, 0.0], [0.4, 0.7, 3.3]]), [True] * 3),
    "slab": (np.diag([6.0, 5.0, 0.0]), [True, True, False]),
    "wire": (np.diag([0.0, 0.0, 4.0]), [False, False, True]),
}


@pytest.mark.parametrize("brute", [True, False], ids=["all_pairs", "cell_list"])
@pytest.mark.parametrize("case", list(CASES))
def test_radius_graph_matches_the_numpy_neighbour_list(case, brute):
    cell, pbc = CASES[case]
    rng = np.random.default_rng(3)
    x = rng.uniform(-4.0, 12.0, size=(40, 3))  # not wrapped into the cell: shifts are converted back
    kw = {"brute_force_pairs": 1 << 40} if brute else {"brute_force_pairs": 0}
    for cutoff in (2.5, 9.0):
        assert _pairs_torch(x, cell, pbc, cutoff, 0.5, **kw) == _pairs_numpy(x, cell, pbc, cutoff, 0.5)


def test_points_far_apart_take_the_safe_branch():
    """vesin's capped grid dies of SIGFPE on three points 1e9 Å apart: the grid check sends them to all pairs."""
    x = np.array([[0.0, 0.0, 0.0], [1e9, 0.0, 0.0], [1e9 + 1.0, 0.0, 0.0]])
    assert _pairs_torch(x, np.zeros((3, 3)), [False] * 3, 20.0, brute_force_pairs=0) == [(1, 2, (0, 0, 0)),
                                                                                           (2, 1, (0, 0, 0))]


def test_radius_graph_is_torchscript():
    scripted = torch.jit.script(radius_graph)
    x = torch.rand(10, 3, dtype=torch.float64) * 5
    a = scripted(x, torch.eye(3, dtype=torch.float64) * 5, torch.tensor([True, True, True]), 3.0, 0.0, 1 << 19)
    b = radius_graph(x, torch.eye(3, dtype=torch.float64) * 5, torch.tensor([True, True, True]), 3.0)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
