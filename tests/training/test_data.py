import numpy as np
import pytest
from ase.io import write

from muse_ff.data.atoms import LabelKeys
from muse_ff.training.config import DataConfig
from muse_ff.training.data import LabelError, check_labels, load_splits


def test_check_labels_lists_frames_and_missing_labels(make_dimers):
    frames = make_dimers(4, splits=False)
    del frames[1].arrays["REF_forces"]
    del frames[3].info["REF_energy"]
    with pytest.raises(LabelError) as err:
        check_labels(frames, LabelKeys(), need_forces=True)
    msg = str(err.value)
    assert "2 of 4 train frames lack labels" in msg
    assert "frame 1: REF_forces" in msg and "frame 3: REF_energy" in msg
    assert "energy_only" in msg


def test_energy_only_accepts_frames_without_forces_but_not_without_energy(make_dimers):
    frames = make_dimers(3, splits=False)
    del frames[0].arrays["REF_forces"]
    check_labels(frames, LabelKeys(), need_forces=False)
    del frames[1].info["REF_energy"]
    with pytest.raises(LabelError, match="REF_energy"):
        check_labels(frames, LabelKeys(), need_forces=False)


def test_splits_by_info_key_and_by_fraction(tmp_path, make_dimers):
    path = tmp_path / "d.extxyz"
    write(path, make_dimers(20))
    by_key = load_splits(DataConfig(train=str(path), split_key="split"))
    assert all(a.info["split"] == "train" for a in by_key.train) and len(by_key.valid) > 0
    a = load_splits(DataConfig(train=str(path), valid_fraction=0.2, test_fraction=0.1, split_seed=3))
    b = load_splits(DataConfig(train=str(path), valid_fraction=0.2, test_fraction=0.1, split_seed=3))
    assert (len(a.train), len(a.valid), len(a.test)) == (14, 4, 2)
    assert [x.info["_source"] for x in a.valid] == [x.info["_source"] for x in b.valid]
    sources = {x.info["_source"] for s in (a.train, a.valid, a.test) for x in s}
    assert len(sources) == 20


def test_bad_split_value_is_reported(tmp_path, make_dimers):
    frames = make_dimers(3)
    frames[2].info["split"] = "validation"
    write(tmp_path / "d.extxyz", frames)
    with pytest.raises(LabelError, match=r"info\['split'\] = 'validation'"):
        load_splits(DataConfig(train=str(tmp_path / "d.extxyz"), split_key="split"))


def test_collate_fills_missing_forces_with_nan_and_loss_masks_them(make_dimers):
    import torch

    from muse_ff import build_model
    from muse_ff.training.config import LossWeights
    from muse_ff.training.data import GraphDataset, collate_graphs
    from muse_ff.training.loss import loss_terms

    frames = make_dimers(2, splits=False)
    del frames[0].arrays["REF_forces"]
    model = build_model({"species": ["H", "O"], "backbone": {"features": 8, "layers": 1}})
    batch = collate_graphs(GraphDataset(frames, model, LabelKeys()).graphs)
    assert torch.isnan(batch.forces[:6]).all() and torch.isfinite(batch.forces[6:]).all()
    out = {"energy": batch.energy.clone(), "forces": torch.zeros_like(batch.forces)}
    terms = loss_terms(out, batch, LossWeights(energy=1.0, forces=1.0))
    expected = batch.forces[6:].pow(2).mean()
    assert np.isclose(float(terms["forces"]), float(expected)) and float(terms["energy"]) == 0.0
