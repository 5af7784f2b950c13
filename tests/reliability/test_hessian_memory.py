"""Issue #13 item 5: ``muse hessian`` had no memory bound (96-row vectorised chunks whatever the system size:
12.2 GB for a 900-atom water cluster).

The chunk is now chosen from the measured size of the gradient's autograd graph so that the estimated peak
stays within ``max_memory``; the Hessian does not depend on the chunk.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import molecule

from muse_ff import build_model
from muse_ff.calculator import MuSECalculator
from muse_ff.physics.derivatives import (
    DEFAULT_MAX_MEMORY,
    _gradient_fn,
    hessian,
    hessian_chunk,
    hessian_chunk_for,
    hessian_memory,
    partial_hessian,
)
from muse_ff.testing.conformance import SMALL_PAINN

MB = 1e6


def waters(n: int) -> Atoms:
    """``n`` water molecules on a 3.1 Å grid, each turned differently (a small cluster)."""
    w, out = molecule("H2O"), Atoms()
    for k in range(n):
        m = w.copy()
        m.rotate(37 * k, (1, 2, 3))
        m.positions += 3.1 * np.array([k % 3, (k // 3) % 3, k // 9])
        out += m
    return out


@pytest.fixture(scope="module")
def muse_model():
    torch.manual_seed(0)
    return build_model({"backbone": SMALL_PAINN, "levels": [{}, {}], "dtype": "float64",
                        "species": [1, 8]}).eval()


@pytest.fixture(scope="module")
def calc(muse_model):
    return MuSECalculator(muse_model)


def test_chunk_rule_fits_the_bound_and_is_clipped():
    # fixed + chunk * row <= bound, the largest such chunk
    assert hessian_chunk(1000, row_bytes=10, max_memory=1000, fixed_bytes=100) == 90
    assert hessian_chunk(1000, row_bytes=20, max_memory=1000, fixed_bytes=100) == 45
    assert hessian_chunk(1000, row_bytes=10, max_memory=2000, fixed_bytes=100) == 190
    assert hessian_chunk(50, row_bytes=10, max_memory=1e9) == 50  # never more than the rows asked for
    assert hessian_chunk(50, row_bytes=10, max_memory=5, fixed_bytes=100) == 1  # over the bound: row by row
    assert hessian_chunk(10**6, row_bytes=1, max_memory=None) == min(10**6, DEFAULT_MAX_MEMORY)
    for bad in (0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="memory bound"):
            hessian_chunk(10, 1, bad)


def test_chosen_chunk_shrinks_with_system_size_and_bound(calc, muse_model):
    sizes = (4, 8, 16)
    graphs = [calc.graph(waters(n)) for n in sizes]
    graph_bytes = [_gradient_fn(muse_model, g)[2] for g in graphs]
    assert graph_bytes[0] < graph_bytes[1] < graph_bytes[2]  # the measure grows with atoms and edges
    for bound in (40 * MB, 100 * MB):
        chunks = [hessian_chunk_for(muse_model, g, max_memory=bound) for g in graphs]
        assert chunks[0] > chunks[1] > chunks[2] >= 1, chunks
        for g, b, c in zip(graphs, graph_bytes, chunks):  # the estimated peak: within the bound, the largest
            n3 = 3 * g.num_atoms
            assert c == n3 or bound < hessian_memory(n3, n3, 8, b, c + 1)
            assert hessian_memory(n3, n3, 8, b, c) <= bound or c == 1
    small = [hessian_chunk_for(muse_model, g, max_memory=40 * MB) for g in graphs]
    large = [hessian_chunk_for(muse_model, g, max_memory=100 * MB) for g in graphs]
    assert all(s <= l for s, l in zip(small, large)) and small[-1] < large[-1]
    # the old fixed chunk of 96 rows is far above what 40 MB allows for 16 waters
    assert small[-1] < 96


def test_bounded_hessian_equals_unchunked_and_uses_the_chosen_chunk(calc, muse_model, caplog):
    atoms = waters(4)
    atoms.rattle(0.02, seed=3)
    g = calc.graph(atoms)
    n3 = 3 * len(atoms)
    full = hessian(muse_model, g, chunk=n3)
    chunk = hessian_chunk_for(muse_model, g, max_memory=8 * MB)
    assert 1 < chunk < n3 // 4
    with caplog.at_level(logging.DEBUG, logger="muse_ff.physics.derivatives"):
        bounded = hessian(muse_model, g, max_memory=8 * MB)
    assert f"in chunks of {chunk} rows" in caplog.text
    # vectorised products of different batch sizes may round differently in the last bit
    torch.testing.assert_close(bounded, full, rtol=1e-12, atol=1e-12)
    part = partial_hessian(muse_model, g, [1, 5], max_memory=8 * MB)
    rows = [3, 4, 5, 15, 16, 17]
    torch.testing.assert_close(part, full[rows], rtol=1e-12, atol=1e-12)


def test_small_systems_keep_one_chunk_and_the_same_bits(calc, muse_model):
    g = calc.graph(waters(2))  # 18 rows: one vectorised chunk, as with the old 96-row chunks
    assert hessian_chunk_for(muse_model, g) == 18
    assert torch.equal(hessian(muse_model, g), hessian(muse_model, g, chunk=96))


def test_calculator_get_hessian_takes_the_bound_and_the_chunk(calc):
    atoms = waters(3)
    ref = calc.get_hessian(atoms, chunk=27)
    assert ref.dtype == np.float64 and ref.shape == (27, 27)
    np.testing.assert_allclose(calc.get_hessian(atoms, chunk=7), ref, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="chunk"):
        calc.get_hessian(atoms, chunk=0)
    with pytest.raises(ValueError, match="memory bound"):
        calc.get_hessian(atoms, max_memory=-1)


def test_a_bound_below_one_row_computes_row_by_row_with_a_warning(calc, muse_model):
    atoms = waters(2)
    g = calc.graph(atoms)
    with pytest.warns(RuntimeWarning, match="even one row at a time"):
        low = hessian(muse_model, g, max_memory=1e5)
    torch.testing.assert_close(low, hessian(muse_model, g, chunk=18), rtol=1e-12, atol=1e-12)


def test_estimate_grows_with_the_graph_and_the_chunk():
    assert hessian_memory(10, 30, 8, 1000, 2) < hessian_memory(10, 30, 8, 1000, 3)
    assert hessian_memory(10, 30, 8, 1000, 2) < hessian_memory(10, 30, 8, 2000, 2)
    assert hessian_memory(10, 30, 8, 0, 0) == 10 * 30 * 8  # the result is always held
