"""Issue #14: per-config-type loss weights, and stress trained in batches that mix periodic frames with
molecules.

Before: no ``config_type_weights`` (an unknown key), and a batch with one non-periodic frame computed no
stress at all, so periodic frames lost their stress term whenever they were batched with a molecule.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.io import write

from muse_ff import build_model
from muse_ff.data.atoms import LabelKeys
from muse_ff.physics.derivatives import energy_and_derivatives
from muse_ff.training import parse_train_config, train
from muse_ff.training.config import LossWeights, TrainingConfig
from muse_ff.training.data import GraphDataset, LabelWarning, collate_items
from muse_ff.training.loss import ErrorSums, loss_terms
from muse_ff.training.module import MuSEModule
from muse_ff.training.run import prepare_data


@pytest.fixture()
def typed_file(tmp_path, make_dimers):
    """9 dimers: 6 of config_type ``md``, 3 of config_type ``junk``."""
    frames = make_dimers(9, splits=False)
    for k, a in enumerate(frames):
        a.info["config_type"] = "junk" if k % 3 == 0 else "md"
    path = tmp_path / "typed.extxyz"
    write(path, frames)
    return path


def _gradient(module, batch) -> torch.Tensor:
    model = module.model
    model.zero_grad()
    out = module.predict_batch(model, batch.graph, create_graph=True)
    loss = loss_terms(out, batch.graph, module.config.loss, frame_weight=batch.weight)["loss"]
    grads = torch.autograd.grad(loss, [p for p in model.parameters() if p.requires_grad], allow_unused=True)
    return torch.cat([g.reshape(-1) for g in grads if g is not None])


def _perturb(graphs) -> None:
    gen = torch.Generator().manual_seed(0)
    for g in graphs:
        g.energy = g.energy + 50.0
        g.forces = g.forces + torch.randn(g.forces.shape, generator=gen, dtype=g.forces.dtype)


@pytest.mark.parametrize("junk_weight", [0.0, 1.0])
def test_a_zero_config_type_weight_removes_those_frames_from_the_gradient(typed_file, tmp_path, make_config,
                                                                          junk_weight):
    cfg = make_config(typed_file, tmp_path / "run")
    cfg["data"] = {"train": str(typed_file), "valid_fraction": 0.0}
    cfg["training"]["loss"] = {"config_type_weights": {"junk": junk_weight}}
    cfg = parse_train_config(cfg)
    model, train_ds, _, _, _ = prepare_data(cfg)
    assert train_ds.weights == [junk_weight if k % 3 == 0 else 1.0 for k in range(9)]
    module = MuSEModule(model, cfg.training)
    batch = lambda: collate_items([train_ds[k] for k in range(len(train_ds))]).to(dtype=model.dtype_)  # noqa: E731
    before = _gradient(module, batch())
    _perturb(train_ds.graphs[::3])  # the junk frames' labels
    after = _gradient(module, batch())
    if junk_weight == 0.0:
        torch.testing.assert_close(after, before, rtol=0, atol=0)  # junk labels do not matter at all
    else:
        assert not torch.allclose(after, before)  # with weight 1 they do (the test can see a difference)


def test_frame_weights_multiply_each_frames_squared_errors(make_dimers):
    frames = make_dimers(3, splits=False)
    model = build_model({"species": ["H", "O"], "backbone": {"features": 8, "layers": 1}})
    dataset = GraphDataset(frames, model, LabelKeys())
    batch = collate_items([dataset[k] for k in range(3)])
    graph = batch.graph
    out = {"energy": graph.energy + torch.tensor([0.6, 1.2, 1.8], dtype=torch.float64),
           "forces": torch.zeros_like(graph.forces)}
    weights = LossWeights(energy=1.0, forces=1.0)
    plain = loss_terms(out, graph, weights)
    doubled = loss_terms(out, graph, weights, frame_weight=torch.full((3,), 2.0, dtype=torch.float64))
    assert float(doubled["loss"]) == pytest.approx(2 * float(plain["loss"]))
    w = torch.tensor([0.0, 1.0, 3.0], dtype=torch.float64)
    terms = loss_terms(out, graph, weights, frame_weight=w)
    per_atom = torch.tensor([0.6, 1.2, 1.8], dtype=torch.float64) / 6
    assert float(terms["energy"]) == pytest.approx(float((w * per_atom**2).sum() / 3))  # mean over all frames
    f2 = graph.forces.double().pow(2).reshape(3, -1)
    assert float(terms["forces"]) == pytest.approx(float((w[:, None] * f2).sum() / f2.numel()))
    # the validation loss is weighted the same way; MAE/RMSE are not
    sums = ErrorSums()
    sums.update(out, graph, frame_weight=w)
    assert float(sums.weighted_mse("energy")) == pytest.approx(float(terms["energy"]))
    assert sums.metrics("val_")["val_energy_mae"] == pytest.approx(1000 * float(per_atom.mean()))


def test_training_with_type_weights_runs_and_warns_about_unknown_types(typed_file, tmp_path, make_config):
    cfg = make_config(typed_file, tmp_path / "run", epochs=2)
    cfg["data"] = {"train": str(typed_file), "valid_fraction": 0.3}
    cfg["training"]["loss"] = {"config_type_weights": {"junk": 0.0, "md": 2.0, "mdd": 1.0}}
    with pytest.warns(LabelWarning, match=r"config_type_weights names \['mdd'\], which no training frame has"):
        result = train(cfg, progress=False)
    assert np.isfinite(result.summary["last_metrics"]["val_loss"])


def test_bad_type_weights_are_refused():
    from muse_ff.config import ConfigError

    for bad, match in (({"md": -1}, "must be >= 0"), ({"md": "x"}, "not a string"), ([1], "expected a map")):
        with pytest.raises(ConfigError, match=f"training.loss.config_type_weights: .*{match}"):
            parse_train_config({"data": {"train": "x"}, "training": {"loss": {"config_type_weights": bad}}})


def test_stress_is_trained_in_batches_mixing_periodic_frames_and_molecules(make_dimers):
    cu = bulk("Cu", "fcc", a=3.65, cubic=True)
    cu.rattle(0.05, seed=1)
    cu.calc = EMT()
    cu.info.update(REF_energy=cu.get_potential_energy(), REF_stress=cu.get_stress())
    cu.arrays["REF_forces"] = cu.get_forces()
    cu.calc = None
    water = make_dimers(1, splits=False)[0]
    water.info["REF_stress"] = np.full(6, 100.0)  # a molecule's stress label means nothing: ignored
    model = build_model({"species": ["H", "O", "Cu"], "backbone": {"features": 8, "layers": 1}, "cutoff": 4.0,
                         "dtype": "float64"})
    dataset = GraphDataset([water, cu], model, LabelKeys())
    batch = collate_items([dataset[0], dataset[1]])
    module = MuSEModule(model, TrainingConfig(loss=LossWeights(energy=1.0, forces=1.0, stress=1.0)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = module.predict_batch(model, batch.graph, create_graph=True)
    alone = energy_and_derivatives(model, dataset.graphs[1], forces=True, stress=True)
    torch.testing.assert_close(out["stress"][1:], alone["stress"])
    assert torch.equal(out["stress"][0], torch.zeros(3, 3, dtype=out["stress"].dtype))
    torch.testing.assert_close(out["forces"][6:], alone["forces"])
    terms = loss_terms(out, batch.graph, module.config.loss, frame_weight=batch.weight)
    expected = (alone["stress"][0] - dataset.graphs[1].stress[0]).pow(2).mean()
    assert float(terms["stress"]) == pytest.approx(float(expected))
    # and it trains: the stress term has a finite gradient
    grads = torch.autograd.grad(terms["loss"], [p for p in model.parameters()], allow_unused=True)
    assert all(torch.isfinite(g).all() for g in grads if g is not None)
