"""The MACE backbone (an adapter over mace-torch): conformance alone and inside MuSE, Cartesian vectors,
save/load, safe loading with mace imported, and a tiny training run + MD + Hessian.

Skipped when mace-torch is not installed (``pip install 'muse-ff[mace]'``).
"""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

_VAR = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"
_saved = os.environ.get(_VAR)
pytest.importorskip("mace")
from muse_ff.nn.backbones.mace import MACE, import_mace  # noqa: E402

import_mace()  # e3nn must be imported while mace's variable is set (see muse_ff.nn.backbones.mace)
# importing mace set the variable for this whole process: give the other test modules their environment back
# (MuSE's own loads pass weights_only=True and do not depend on it; the safe-load test below checks that)
if _saved is None:
    os.environ.pop(_VAR, None)
else:
    os.environ[_VAR] = _saved

from ase import Atoms, units  # noqa: E402
from ase.build import molecule  # noqa: E402
from ase.md.verlet import VelocityVerlet  # noqa: E402

from muse_ff import MuSECalculator, build_model, load_model, save_model  # noqa: E402
from muse_ff.io.serialization import FORMAT  # noqa: E402
from muse_ff.testing.conformance import (  # noqa: E402
    ModelConformance,
    random_rotation,
)

SMALL_MACE = {"name": "mace", "num_channels": 8, "max_L": 1, "max_ell": 2, "correlation": 2,
              "num_interactions": 2, "num_radial_basis": 6, "radial_mlp": [16, 16]}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Many small evaluations: one torch thread is fastest (and far faster than two on a busy 2-core machine)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


class TestMACE(ModelConformance):
    config = {"backbone": SMALL_MACE, "levels": []}


class TestMuSEMACETwoLevels(ModelConformance):
    config = {"backbone": SMALL_MACE, "levels": [{"ratio": 4}, {"ratio": 4}]}


class TestMuSEMACEl2(ModelConformance):
    """l = 2 hidden features, pooled into the coarse MACE (``BackboneOutput.tensors``)."""
    config = {"backbone": {**SMALL_MACE, "num_channels": 4, "max_L": 2}, "levels": [{"ratio": 4}]}


# ---------------------------------------------------------------------------------------------- the adapter
def _random_graph(n=7, seed=0, cutoff=4.0):
    g = torch.Generator().manual_seed(seed)
    pos = 3.0 * torch.rand(n, 3, generator=g, dtype=torch.float64)
    i, j = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    keep = (i != j) & (torch.linalg.vector_norm(pos[j] - pos[i], dim=-1) < cutoff)
    edge_index = torch.stack([i[keep], j[keep]])
    return pos, edge_index


def test_vectors_rotate_as_cartesian_vectors():
    """The l = 1 output converted from e3nn's (y, z, x) order rotates as R v, with vector input too."""
    torch.manual_seed(0)
    bb = MACE(5, cutoff=4.0, num_channels=4, max_ell=2, correlation=2, radial_mlp=[8], vector_in_features=3)
    pos, ei = _random_graph()
    feats = torch.randn(pos.shape[0], 5, dtype=torch.float64)
    vin = torch.randn(pos.shape[0], 3, 3, dtype=torch.float64)
    rot = torch.as_tensor(random_rotation(3))
    out = bb(feats, ei, pos[ei[1]] - pos[ei[0]], vin)
    pos_r = pos @ rot.T
    out_r = bb(feats, ei, pos_r[ei[1]] - pos_r[ei[0]], torch.einsum("ab,nbf->naf", rot, vin))
    assert out.vectors.shape == (pos.shape[0], 3, 4) and out.scalars.shape == (pos.shape[0], 8)
    assert out.vectors.abs().max() > 1e-3  # not trivially zero
    torch.testing.assert_close(out_r.scalars, out.scalars, rtol=0, atol=1e-10)
    torch.testing.assert_close(out_r.vectors, torch.einsum("ab,nbf->naf", rot, out.vectors), rtol=0, atol=1e-10)


def _wigner_d2(rot: torch.Tensor) -> torch.Tensor:
    o3, _, _ = import_mace()
    return o3.Irrep("2e").D_from_matrix(rot)


def test_l2_features_rotate_with_the_wigner_matrix():
    """max_L 2: the l = 2 output [n, 5, C] rotates with e3nn's D^2(R), with l = 1 and l = 2 input rotated too;
    the scalars stay put."""
    torch.manual_seed(0)
    bb = MACE(5, cutoff=4.0, num_channels=4, max_L=2, max_ell=2, correlation=2, radial_mlp=[8],
              vector_in_features=3, tensor_in_features=2).double()
    assert bb.tensor_features == 4 and bb.tensor_in_features == 2
    pos, ei = _random_graph(seed=3)
    n = pos.shape[0]
    feats = torch.randn(n, 5, dtype=torch.float64)
    vin = torch.randn(n, 3, 3, dtype=torch.float64)
    tin = torch.randn(n, 5, 2, dtype=torch.float64)
    rot = torch.as_tensor(random_rotation(4))
    d2 = _wigner_d2(rot)
    out = bb(feats, ei, pos[ei[1]] - pos[ei[0]], vin, node_tensors=tin)
    pos_r = pos @ rot.T
    out_r = bb(feats, ei, pos_r[ei[1]] - pos_r[ei[0]], torch.einsum("ab,nbf->naf", rot, vin),
               node_tensors=torch.einsum("ab,nbf->naf", d2, tin))
    assert out.tensors.shape == (n, 5, 4) and out.tensors.abs().max() > 1e-3
    torch.testing.assert_close(out_r.scalars, out.scalars, rtol=0, atol=1e-10)
    torch.testing.assert_close(out_r.vectors, torch.einsum("ab,nbf->naf", rot, out.vectors), rtol=0, atol=1e-10)
    torch.testing.assert_close(out_r.tensors, torch.einsum("ab,nbf->naf", d2, out.tensors), rtol=0, atol=1e-10)
    # the l = 2 input reaches the invariant output
    other = bb(feats, ei, pos[ei[1]] - pos[ei[0]], vin, node_tensors=torch.randn(n, 5, 2, dtype=torch.float64))
    assert (other.scalars - out.scalars).abs().max() > 1e-6


def test_l1_mace_has_no_l2_features_and_ignores_l2_input_it_was_not_built_for():
    bb = MACE(5, cutoff=4.0, num_channels=4, max_L=1, max_ell=2, correlation=2, radial_mlp=[8]).double()
    pos, ei = _random_graph(seed=4)
    feats = torch.randn(pos.shape[0], 5, dtype=torch.float64)
    out = bb(feats, ei, pos[ei[1]] - pos[ei[0]])
    assert bb.tensor_features == 0 and bb.tensor_in_features == 0 and out.tensors is None
    given = bb(feats, ei, pos[ei[1]] - pos[ei[0]], node_tensors=torch.randn(pos.shape[0], 5, 3, dtype=torch.float64))
    torch.testing.assert_close(given.scalars, out.scalars, rtol=0, atol=0)


def test_the_hierarchy_pools_l2_features_only_into_a_backbone_that_takes_them():
    l2 = {**SMALL_MACE, "num_channels": 4, "max_L": 2}
    model = build_model({"backbone": l2, "levels": [{"ratio": 4}, {"ratio": 4}], "species": [1, 6]})
    assert [lev.pool_tensors for lev in model.levels] == [True, True]
    assert [lev.backbone.tensor_in_features for lev in model.levels] == [4, 4]
    painn_top = build_model({"backbone": l2, "species": [1, 6], "levels": [
        {"ratio": 4}, {"ratio": 4, "backbone": {"name": "painn", "features": 8, "layers": 1}}]})
    assert [lev.pool_tensors for lev in painn_top.levels] == [True, False]
    plain = build_model({"backbone": SMALL_MACE, "levels": [{"ratio": 4}], "species": [1, 6]})
    assert not plain.levels[0].pool_tensors and plain.levels[0].backbone.tensor_in_features == 0


def test_model_files_keep_their_l2_pooling(tmp_path):
    """A saved MuSE(MACE, max_L 2) loads with its l = 2 pooling; a format-version-1 file (written before coarse
    levels pooled l = 2 features) loads without it, as it was trained, and gives the energy it gave."""
    from muse_ff.io.serialization import FORMAT_VERSION, load_model, save_model

    l2 = {**SMALL_MACE, "num_channels": 4, "max_L": 2}
    torch.manual_seed(0)
    new = build_model({"backbone": l2, "levels": [{"ratio": 4}], "species": [1, 6], "dtype": "float64"}).eval()
    save_model(new, tmp_path / "new.pt")
    assert load_model(tmp_path / "new.pt").levels[0].pool_tensors
    torch.manual_seed(0)
    old = build_model({"backbone": l2, "levels": [{"ratio": 4, "tensors": False}], "species": [1, 6],
                       "dtype": "float64"}).eval()
    assert not old.levels[0].pool_tensors and old.levels[0].backbone.tensor_in_features == 0
    save_model(old, tmp_path / "old.pt")
    payload = torch.load(tmp_path / "old.pt", weights_only=True)
    for level in payload["config"]["levels"]:
        del level["tensors"]  # what version 1 wrote
    payload["format_version"] = 1
    torch.save(payload, tmp_path / "v1.pt")
    loaded = load_model(tmp_path / "v1.pt")
    assert FORMAT_VERSION == 2 and not loaded.levels[0].pool_tensors
    atoms = molecule("trans-butane")
    e = [MuSECalculator(m).get_potential_energy(atoms) for m in (old, loaded, new)]
    assert e[0] == pytest.approx(e[1], abs=1e-10) and abs(e[2] - e[0]) > 1e-8


def test_vector_input_changes_the_output():
    torch.manual_seed(0)
    bb = MACE(5, cutoff=4.0, num_channels=4, max_ell=1, correlation=2, radial_mlp=[8], vector_in_features=2)
    pos, ei = _random_graph(seed=1)
    feats = torch.randn(pos.shape[0], 5, dtype=torch.float64)
    vec = pos[ei[1]] - pos[ei[0]]
    a = bb(feats, ei, vec).scalars
    b = bb(feats, ei, vec, torch.randn(pos.shape[0], 3, 2, dtype=torch.float64)).scalars
    assert (a - b).abs().max() > 1e-6


def test_invariant_mace_has_no_vectors():
    bb = MACE(4, cutoff=4.0, num_channels=4, max_L=0, max_ell=1, correlation=2, radial_mlp=[8],
              vector_output=False)
    pos, ei = _random_graph(seed=2)
    out = bb(torch.randn(pos.shape[0], 4, dtype=torch.float64), ei, pos[ei[1]] - pos[ei[0]])
    assert bb.vector_features == 0 and out.vectors is None


@pytest.mark.parametrize("bad, match", [({"max_L": 2, "max_ell": 1}, "max_ell"),
                                        ({"max_L": 0}, "vector_output needs max_L"),
                                        ({"interaction": "Nope"}, "unknown mace interaction"),
                                        ({"num_cutoff_basis": 1}, "num_cutoff_basis")])
def test_mace_raises_if_hyperparameters_invalid(bad, match):
    with pytest.raises(ValueError, match=match):
        MACE(4, cutoff=4.0, **bad)


def test_build_without_mace_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "mace", None)  # as if mace-torch were not installed
    from muse_ff.config import parse_model_config

    parse_model_config({"backbone": {"name": "mace", "num_channels": 4}})  # validating needs no mace
    with pytest.raises(ImportError, match=r"pip install 'muse-ff\[mace\]'"):
        build_model({"backbone": {"name": "mace", "num_channels": 4}, "species": ["H"]})


def test_config_rejects_unknown_mace_hyperparameter():
    from muse_ff.config import ConfigError

    with pytest.raises(ConfigError, match="unknown hyper-parameter 'channels'"):
        build_model({"backbone": {"name": "mace", "channels": 8}})


# ---------------------------------------------------------------------------------------------- model files
def test_round_trip_of_a_muse_mace_model(tmp_path):
    torch.manual_seed(1)
    model = build_model({"backbone": SMALL_MACE, "levels": [{}], "species": ["H", "C", "O"]})
    model.reference.set(e0=[-13.6, -1000.0, -2000.0], scale=2.0, shift=0.3)
    path = tmp_path / "mace.pt"
    save_model(model, path)
    loaded = load_model(path)
    assert loaded.config == model.config
    atoms = molecule("CH3OH")
    results = []
    for m in (model, loaded):
        atoms.calc = MuSECalculator(m)
        results.append((atoms.get_potential_energy(), atoms.get_forces()))
    assert results[0][0] == results[1][0]
    np.testing.assert_array_equal(results[0][1], results[1][1])


_EVIL = """
import os, sys, torch
class Evil:
    def __reduce__(self):
        return (os.system, ("echo PWNED > " + sys.argv[2],))
torch.save({"format": "%s", "format_version": 1, "config": {}, "state_dict": Evil()}, sys.argv[1])
""" % FORMAT

_LOAD_WITH_MACE = """
import os, sys
import mace  # sets TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 for the process
from muse_ff import ModelFileError, load_model
assert os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD") == "1", "mace no longer sets the variable"
try:
    load_model(sys.argv[1])
except ModelFileError as e:
    print("REFUSED", e)
"""


def test_load_refuses_pickled_callables_with_mace_imported(tmp_path):
    path, marker = tmp_path / "evil.pt", tmp_path / "pwned"
    subprocess.run([sys.executable, "-c", _EVIL, str(path), str(marker)], check=True)
    env = {k: v for k, v in os.environ.items() if k != _VAR}
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", _LOAD_WITH_MACE, str(path)], env=env,
                         capture_output=True, text=True)
    assert "REFUSED" in out.stdout, out.stdout + out.stderr
    assert not marker.exists()


# ---------------------------------------------------------------------------------------------- use
def test_training_md_and_hessian_with_a_mace_backbone(tmp_path):
    """Two epochs of `muse train`'s library path on demo frames, then MD and a Hessian of the result."""
    pytest.importorskip("lightning")
    from ase.io import read, write

    from muse_ff.training import train

    demo = os.path.join(os.path.dirname(__import__("muse_ff").__file__), "resources", "demo", "demo.extxyz")
    frames = read(demo, ":24")
    write(tmp_path / "d.extxyz", frames)
    cfg = {"model": {"backbone": SMALL_MACE, "cutoff": 4.0, "levels": [{}]},
           "data": {"train": str(tmp_path / "d.extxyz"), "valid_fraction": 0.25},
           "training": {"epochs": 2, "batch_size": 6, "lr": 5e-3, "ema_decay": None, "schedule": "constant",
                        "checkpoint_every": 1, "output_dir": str(tmp_path / "run")}}
    result = train(cfg, progress=False)
    assert np.isfinite(result.summary["last_metrics"]["val_loss"])
    model = load_model(result.model_path)
    atoms = frames[0].copy()
    atoms.calc = MuSECalculator(model)
    VelocityVerlet(atoms, timestep=0.5 * units.fs).run(5)
    assert np.isfinite(atoms.get_potential_energy()) and np.isfinite(atoms.get_forces()).all()
    hess = MuSECalculator(model).get_hessian(atoms)
    assert hess.shape == (3 * len(atoms), 3 * len(atoms)) and np.abs(hess - hess.T).max() < 1e-4


def test_pair_beyond_cutoff_does_not_interact():
    torch.manual_seed(0)
    model = build_model({"backbone": SMALL_MACE, "dtype": "float64", "species": ["C", "O"]}).eval()
    model.reference.set(scale=1.0)
    energies = []
    for d in (5.0, 5.5, 9.0):
        atoms = Atoms("CO", positions=[[0, 0, 0], [d, 0, 0]])
        atoms.calc = MuSECalculator(model)
        energies.append(atoms.get_potential_energy())
    assert energies[0] == energies[1] == energies[2]
