"""One registry of contestants (:mod:`muse_ff.contestants`) read by the demo and every benchmark, one function per
physical quantity (:mod:`muse_ff.analysis.quantities`), and no import of ``muse_ff.bench`` from training."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.build import molecule

from muse_ff import build_model, contestants
from muse_ff.analysis.metrics import predict_energies
from muse_ff.analysis.quantities import binding_energies, interaction_energies, interaction_energy
from muse_ff.bench import backbones, common, folding, graphene, hessian, nonlocal_chains, speed
from muse_ff.data.atoms import fragment
from muse_ff.training import demo

PAINN = {"name": "painn", "features": 32, "layers": 2, "num_basis": 12}


def test_the_demo_takes_its_contestants_from_the_registry():
    assert demo.DEMO_MODELS == contestants.contestants("demo", contestants.DEMO_BACKBONE)
    assert demo.DEMO_EXTRA is contestants.TRAINING["demo"]
    # the demo's models as they were defined in training/demo.py (same keys, same order: same training)
    before = {
        "PaiNN": {"backbone": PAINN, "cutoff": 5.0, "levels": []},
        "MuSE(PaiNN)": {"backbone": PAINN, "cutoff": 5.0, "levels": [{"cutoff": 18.0}]},
        "PaiNN+LES": {"backbone": PAINN, "cutoff": 5.0, "levels": [], "long_range": {"kind": "latent-ewald"}},
        "PaiNN+phys": {"backbone": PAINN, "cutoff": 5.0, "levels": [], "physical": {}, "charges": True},
        "MuSE-intra(PaiNN)+phys": {"backbone": PAINN, "cutoff": 5.0,
                                   "levels": [{"cutoff": 18.0, "edges": "within-component"}],
                                   "physical": {}, "charges": True},
    }
    assert json.dumps(demo.DEMO_MODELS) == json.dumps(before)
    for name in ("PaiNN+phys", "MuSE-intra(PaiNN)+phys"):
        cfg = demo.demo_config(demo.DEMO_MODELS[name], Path("d.extxyz"), Path("out"),
                               extra=contestants.training_overrides("demo", name))
        assert cfg["data"]["interaction_key"] == "interaction_energy"
        assert cfg["training"]["loss"] == {"energy": 100.0, "forces": 1.0, "interaction": 100.0, "dipole": 10.0}
    assert contestants.training_overrides("demo", "PaiNN") is None


def test_every_benchmark_takes_its_contestants_from_the_registry():
    assert common.MODELS is contestants.SUITES["bench"]
    assert nonlocal_chains.CONTESTANTS is contestants.SUITES["nonlocal"]
    physical = {"physical": {}, "charges": True}
    intra = [{"edges": "within-component"}, {"edges": "within-component"}]
    assert common.MODELS == {"PaiNN": {"levels": []}, "MuSE(PaiNN)": {"levels": [{}, {}]},
                             "PaiNN+LES": {"levels": [], "long_range": {"kind": "latent-ewald", "smearing": 1.0}},
                             "PaiNN+phys": {"levels": [], **physical},
                             "MuSE-intra(PaiNN)+phys": {"levels": intra, **physical}}
    assert "bench" not in contestants.TRAINING  # single molecules without dipoles: energies and forces only
    for budgets in (graphene.BUDGETS, hessian.BUDGETS, {m: b for m, (b, _) in folding.BUDGETS.items()}):
        for budget in budgets.values():
            painn = {"name": "painn", "features": budget.features, "layers": budget.layers,
                     "num_basis": budget.num_basis}
            assert {n: common.contestant_config(budget, s) for n, s in common.MODELS.items()} == \
                contestants.contestants("bench", painn, budget.dtype)
            assert common.contestant_config(budget, common.MODELS["PaiNN+LES"]) == {
                "backbone": painn, "cutoff": 5.0, "levels": [], "dtype": budget.dtype,
                "long_range": {"kind": "latent-ewald", "smearing": 1.0}}
    bench = list(contestants.BENCH)
    binding = ["PaiNN+phys+Eint", "MuSE(PaiNN)+phys+Eint", "PaiNN+Eint", "MuSE-intra(PaiNN)+phys+Eint"]
    assert list(contestants.SUITES["graphene"]) == bench + binding
    assert all(contestants.SUITES["graphene"][n] == contestants.SUITES["bench"][n] for n in bench)
    assert contestants.SUITES["graphene"]["PaiNN+Eint"] == contestants.SUITES["bench"]["PaiNN"]  # only the loss differs
    assert set(contestants.TRAINING["graphene"]) == set(binding)
    for mode, budget in graphene.BUDGETS.items():
        assert list(graphene.contestants(budget, mode))[:7] == bench + binding
    intra = contestants.SUITES["graphene"]["MuSE-intra(PaiNN)+phys+Eint"]
    assert intra == {**contestants.SUITES["graphene"]["MuSE(PaiNN)+phys+Eint"], "levels": contestants.MUSE_INTRA_LEVELS}
    assert all(level["edges"] == "within-component" for level in intra["levels"])
    for mode, budget in nonlocal_chains.BUDGETS.items():
        got = nonlocal_chains.contestants(budget, mode)
        others = [f"{p}{b}{s}" for b in ("SO3krates", "MACE", "MACE-l2") for p, s in (("", ""), ("MuSE(", ")"))]
        assert list(got) == list(contestants.SUITES["nonlocal"]) + others + ["MuSE-nol2(MACE-l2)"]  # registry first
        assert got["MACE-l2"]["backbone"]["max_L"] == 2 and got["MACE-l2"]["backbone"]["max_ell"] >= 2
        assert all(lev["tensors"] is False for lev in got["MuSE-nol2(MACE-l2)"]["levels"])
        assert got["MuSE(PaiNN)"]["levels"] == contestants.NONLOCAL_LEVELS
        assert got["MuSE(MACE)"]["levels"] == contestants.NONLOCAL_LEVELS and got["MACE"]["levels"] == []
        assert got["PaiNN+physical"]["physical"] == {} and got["PaiNN+physical"]["charges"] is True
        assert all(c["species"] == list(nonlocal_chains.SPECIES) for c in got.values())
    for mode, sizes in backbones.SIZES.items():
        got = backbones.models(mode)
        pairs = contestants.backbone_pairs(sizes, backbones.BUDGETS[mode].dtype)
        assert list(got) == [*pairs, *contestants.BACKBONES_PHYSICAL] and all(got[n] == c for n, c in pairs.items())
        assert all(c["levels"] == ([{}, {}] if n.startswith("MuSE(") else [])
                   for n, c in got.items() if n in pairs)
        for name in contestants.BACKBONES_PHYSICAL:  # the mode's PaiNN with the physical terms and charges
            assert got[name]["backbone"] == sizes["PaiNN"] and got[name]["physical"] == {} and got[name]["charges"]
            assert contestants.training_overrides("backbones", name)["loss"]["interaction"] > 0
        assert got["MuSE-intra(PaiNN)+phys+Eint"]["levels"] == contestants.MUSE_INTRA_LEVELS
        assert got["PaiNN+phys+Eint"]["levels"] == []
    assert [n for n in speed.calculators("gfn1-xtb", {}, "quick") if not n.startswith("teacher")] == list(common.MODELS)


def test_slugs():
    assert [contestants.slug(n) for n in ("MuSE(PaiNN)", "PaiNN+LES", "PaiNN+physical", "a b")] == \
        ["muse_painn", "painn_les", "painn_physical", "a_b"]
    assert common.slug is contestants.slug and demo.slug is contestants.slug


def test_training_does_not_import_bench():
    code = ("import sys, muse_ff.training, muse_ff.training.demo, muse_ff.cli.demo; "
            "bad = sorted(m for m in sys.modules if m.startswith('muse_ff.bench')); assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
    for path in (Path(demo.__file__).parent).glob("*.py"):
        assert "muse_ff.bench" not in path.read_text(), path


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    cfg = {"backbone": {"name": "painn", "features": 8, "layers": 1, "num_basis": 6}, "cutoff": 5.0, "levels": [],
           "dtype": "float64", "species": ["H", "C", "O"]}
    m = build_model(cfg).eval()
    m.reference.set(scale=1.0)
    return m


def _dimers():
    frames = []
    for k, shift in enumerate((3.0, 4.5, 7.0)):
        a, b = molecule("H2O"), molecule("CH4")
        b.positions += [shift, 0.3 * k, 0.0]
        ab = a + b
        ab.info = {"n_first": len(a)}
        frames.append(ab)
    return frames


def test_interaction_energies_are_the_demos_formula(model):
    frames = _dimers()
    firsts = [fragment(a, slice(None, int(a.info["n_first"]))) for a in frames]
    seconds = [fragment(a, slice(int(a.info["n_first"]), None)) for a in frames]
    e_ab, e_a, e_b = (predict_energies(model, fs) for fs in (frames, firsts, seconds))
    np.testing.assert_array_equal(interaction_energies(model, frames), e_ab - e_a - e_b)
    assert interaction_energy(1.0, 0.25, 0.5) == 1.0 - 0.25 - 0.5


def test_binding_energies_are_the_graphene_benchmarks_formula(model):
    frames = _dimers()
    for a in frames:
        a.info["n_substrate"] = a.info.pop("n_first")
    subs, mols = [], []
    for a in frames:
        n = int(a.info["n_substrate"])
        sub, mol = a[:n], a[n:]
        mol.pbc, mol.cell = False, None
        mol.positions -= mol.get_center_of_mass()
        subs.append(sub)
        mols.append(mol)
    e = [predict_energies(model, fs, batch_size=8) for fs in (frames, subs, mols)]
    np.testing.assert_array_equal(binding_energies(model, frames), e[0] - e[1] - e[2])


def test_one_frequency_conversion():
    from muse_ff.analysis.vibrations import EV_A2_AMU_TO_CM1, wavenumbers_cm1
    from muse_ff.datasets.hessians import frequencies_cm

    lam = np.array([-0.04, 0.0, 1e-6, 0.3, 2.0])
    np.testing.assert_array_equal(frequencies_cm(lam), wavenumbers_cm1(lam))
    np.testing.assert_allclose(wavenumbers_cm1(lam), np.sign(lam) * np.sqrt(np.abs(lam)) * EV_A2_AMU_TO_CM1)
