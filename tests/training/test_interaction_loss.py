"""``training.loss.interaction`` with ``data.interaction_key`` (issue #15, item 2): interaction energies
E(frame) - sum E(component alone) as a loss term and a validation metric."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from ase.calculators.emt import EMT
from ase.io import write

from muse_ff import build_model
from muse_ff.data.atoms import LabelKeys
from muse_ff.training import train
from muse_ff.training.config import parse_train_config
from muse_ff.training.data import GraphDataset, LabelError, collate_items


def _with_interaction(frames):
    for a in frames:
        parts = []
        for idx in (slice(0, 3), slice(3, 6)):
            p = a[idx]
            p.calc = EMT()
            parts.append(p.get_potential_energy())
        a.info["interaction_energy"] = float(a.info["REF_energy"]) - sum(parts)
    return frames


def test_interaction_term_is_frame_minus_its_components(make_dimers):
    from muse_ff.training.module import MuSEModule

    frames = _with_interaction(make_dimers(4, splits=False))
    torch.manual_seed(0)
    model = build_model({"backbone": {"name": "painn", "features": 8, "layers": 1}, "species": ["H", "O"],
                         "dtype": "float64", "levels": [{"ratio": 3}]})
    data = GraphDataset(frames, model, LabelKeys(interaction="interaction_energy"))
    batch = collate_items([data[k] for k in range(4)])
    assert batch.fragments.num_frames == 8 and batch.fragment_frame.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    cfg = parse_train_config({"data": {"train": "x.extxyz", "interaction_key": "interaction_energy"},
                             "training": {"loss": {"interaction": 10.0}}})
    module = MuSEModule(model, cfg.training)
    out = module.add_interaction(model, {"energy": model(batch.graph)["energy"]}, batch)
    for b, a in enumerate(frames):
        e = [float(model(model.graph_from_atoms(x))["energy"][0]) for x in (a, a[:3], a[3:])]
        assert float(out["interaction"][b]) == pytest.approx(e[0] - e[1] - e[2], abs=1e-9)
    assert torch.equal(out["interaction_ref"], torch.tensor([a.info["interaction_energy"] for a in frames],
                                                           dtype=torch.float64))


def test_training_on_interaction_energies_reports_their_error(tmp_path, make_config, make_dimers):
    frames = _with_interaction(make_dimers(15))
    frames[4].info.pop("interaction_energy")  # frames without the label are fine
    write(tmp_path / "d.extxyz", frames)
    cfg = make_config(tmp_path / "d.extxyz", tmp_path / "run", epochs=2)
    cfg["data"]["interaction_key"] = "interaction_energy"
    cfg["training"]["loss"] = {"energy": 10.0, "forces": 1.0, "interaction": 100.0}
    train(cfg, progress=False)
    rows = list(csv.DictReader(open(tmp_path / "run" / "logs" / "metrics.csv")))
    values = [float(r["val_interaction_mae"]) for r in rows if r.get("val_interaction_mae")]
    assert len(values) == 2 and all(np.isfinite(values)) and values[0] > 0


def test_interaction_label_problems_are_named(make_dimers):
    model = build_model({"backbone": {"name": "painn", "features": 8, "layers": 1}, "species": ["H", "O"]})
    keys = LabelKeys(interaction="interaction_energy")
    one = make_dimers(1, splits=False)[0][:3]
    one.info["interaction_energy"] = 0.01
    with pytest.raises(LabelError, match="single covalent component"):
        GraphDataset([one], model, keys)
    bad = make_dimers(1, splits=False)[0]
    bad.info["interaction_energy"] = "n/a"
    with pytest.raises(LabelError, match="interaction_energy"):
        GraphDataset([bad], model, keys)


def test_interaction_weight_needs_the_key():
    from muse_ff.config import ConfigError

    with pytest.raises((ConfigError, ValueError), match="interaction_key"):
        parse_train_config({"data": {"train": "x.extxyz"}, "training": {"loss": {"interaction": 1.0}}})


def _with_dipoles(frames):
    """A point-charge 'teacher' dipole: O -0.8, H +0.4 (e), about the origin."""
    for a in frames:
        q = np.where(a.numbers == 8, -0.8, 0.4)
        a.info["REF_dipole"] = q @ a.positions
    return frames


def test_dipole_loss_trains_the_charges(tmp_path, make_config, make_dimers):
    """``training.loss.dipole``: the validation dipole error of the learned charges falls during training,
    and the term is the squared error of sum_i q_i r_i."""
    frames = _with_dipoles(make_dimers(15))
    write(tmp_path / "d.extxyz", frames)
    maes = {}
    for weight in (0.0, 10.0):
        cfg = make_config(tmp_path / "d.extxyz", tmp_path / f"run{weight}", epochs=4)
        cfg["model"]["physical"] = {"dispersion": False}
        cfg["training"]["loss"] = {"energy": 10.0, "forces": 1.0, "dipole": weight}
        train(cfg, progress=False)
        rows = list(csv.DictReader(open(tmp_path / f"run{weight}" / "logs" / "metrics.csv")))
        maes[weight] = [float(r["val_dipole_mae"]) for r in rows]
    assert maes[10.0][-1] < 0.5 * maes[10.0][0]
    assert maes[10.0][-1] < maes[0.0][-1]


def test_dipole_weight_needs_learned_charges():
    from muse_ff.config import ConfigError

    with pytest.raises((ConfigError, ValueError), match="learned charges"):
        parse_train_config({"data": {"train": "x.extxyz"}, "training": {"loss": {"dipole": 1.0}}})


def test_a_molecule_over_a_periodic_substrate_is_taken_free_and_whole():
    """In a periodic frame the component bonded to its own images (here a carbon chain through the cell)
    keeps the cell, and the molecule (a water wrapped across the boundary) is the free, unwrapped molecule:
    the convention of adsorption energies and of the molecule-graphene teacher labels."""
    from ase import Atoms

    from muse_ff.training.data import interaction_fragments

    length = 4 * 1.3
    chain = Atoms("C4", positions=[[1.3 * k, 0.0, 0.0] for k in range(4)])
    water = Atoms("OH2", positions=[[0.2, 0.0, 3.2], [-0.56, 0.0, 3.8], [0.96, 0.0, 3.8]])
    frame = chain + water
    frame.cell, frame.pbc = [length, 12.0, 12.0], True
    frame.wrap()  # one H now sits at the far side of the cell
    assert frame.positions[5, 0] > length / 2
    frame.info["interaction_energy"] = -0.1
    torch.manual_seed(0)
    model = build_model({"backbone": {"name": "painn", "features": 8, "layers": 1}, "species": ["H", "C", "O"],
                         "dtype": "float64", "levels": [{"ratio": 3}]})
    label, graphs = interaction_fragments(frame, model, "interaction_energy", 0)
    assert label == -0.1 and len(graphs) == 2
    sheet, molecule = graphs
    assert bool(sheet.pbc.all()) and not bool(molecule.pbc.any())
    assert torch.allclose(molecule.positions, torch.as_tensor(water.positions), atol=1e-12)
    free = model(model.graph_from_atoms(water))["energy"]
    assert torch.allclose(model(molecule)["energy"], free, atol=1e-10)
