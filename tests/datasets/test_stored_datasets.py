"""The stored datasets: the packaged demo's contract, and subset rebuilds that reproduce stored labels.

The fast checks rebuild the demo and long-range-dimers subsets (a few seconds). The others are ``slow``
(they relax a 120-atom flake, run MD or take Hessians): ``python -m pytest -m slow tests/datasets``.
"""

from __future__ import annotations

from pathlib import Path

import ase.io
import numpy as np
import pytest

from muse_ff.datasets import BUILDERS, DEMO_DIR
from muse_ff.teachers.labelling import read_frames

DATA = Path(__file__).resolve().parents[2] / "data"


def test_demo_dataset_contract():
    files = sorted(DEMO_DIR.glob("*.extxyz"))
    assert len(files) == 1 and files[0].stat().st_size < 2_000_000
    assert (DEMO_DIR / "README.md").exists()
    frames = ase.io.read(files[0], index=":")
    assert 400 <= len(frames) <= 600
    assert {a.info["split"] for a in frames} == {"train", "valid", "test"}
    for a in frames:
        assert np.isfinite(a.info["REF_energy"]) and a.arrays["REF_forces"].shape == (len(a), 3)
    seps = np.array([a.info["separation"] for a in frames])
    assert (seps > 5.0).mean() > 0.7  # mostly beyond a 5 Å cutoff, as the demo intends
    assert seps.min() >= 3.0 and seps.max() <= 15.0


def _compare_subset(name: str, stored: Path, tmp_path: Path, pattern: str) -> int:
    result = BUILDERS[name].build(tmp_path, subset=True, command="test")
    rebuilt = read_frames(next(tmp_path.glob(pattern)))
    by_id = {a.info["frame_id"]: a for a in read_frames(stored)}
    assert rebuilt and not result.failures
    for a in rebuilt:
        ref = by_id[a.info["frame_id"]]
        np.testing.assert_allclose(a.positions, ref.positions, atol=1e-6)
        assert a.info["REF_energy"] == pytest.approx(ref.info["REF_energy"], abs=1e-6)
        np.testing.assert_allclose(a.arrays["REF_forces"], ref.arrays["REF_forces"], atol=1e-5)
    return len(rebuilt)


@pytest.mark.teacher
def test_demo_subset_rebuild_matches_the_packaged_labels(tmp_path):
    pytest.importorskip("tblite")
    assert _compare_subset("demo", DEMO_DIR / "demo.extxyz", tmp_path, "demo-subset.extxyz") == 12


@pytest.mark.teacher
def test_long_range_dimers_subset_rebuild_matches_stored_labels(tmp_path):
    pytest.importorskip("tblite")
    stored = DATA / "long-range-dimers" / "long-range-dimers.extxyz.xz"
    if not stored.exists():
        pytest.skip("data/long-range-dimers not present in this checkout")
    assert _compare_subset("long-range-dimers", stored, tmp_path, "long-range-dimers-subset.extxyz.xz") > 40


@pytest.mark.slow
@pytest.mark.teacher
@pytest.mark.parametrize("name", ["molecule-graphene", "hessians", "folding"])
def test_slow_subset_rebuild_matches_stored_labels(name, tmp_path):
    pytest.importorskip("tblite")
    pytest.importorskip("openmm")
    stored = DATA / name / f"{name}.extxyz.xz"
    if not stored.exists():
        pytest.skip(f"data/{name} not present in this checkout")
    assert _compare_subset(name, stored, tmp_path, f"{name}-subset.extxyz.xz") > 0
