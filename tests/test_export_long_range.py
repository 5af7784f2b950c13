"""`muse export` of the long-range terms: ``model.physical``, ``model.long_range`` (latent Ewald) and ``model.d3``
reproduce the Python model in an engine (metatomic-ase), free and periodic (issue #17)."""

import math
import warnings

import numpy as np
import pytest
import torch
from ase.build import molecule

from muse_ff import build_model
from muse_ff.export import ExportError, export_model

metatomic_ase = pytest.importorskip("metatomic_ase")

from test_export import _check_torchscript, _close, _exported, _free, _reference  # noqa: E402  (the same builders and checks)

PAINN = {"name": "painn", "features": 16, "layers": 2, "num_basis": 8}
SPECIES = [1, 6, 8]


def _model(levels=1, perturb=0.3, **extra):
    """A float64 model whose long-range heads are moved off their initial values (non-trivial charges/C6)."""
    torch.manual_seed(0)
    model = build_model({"backbone": PAINN, "species": SPECIES, "dtype": "float64",
                         "levels": [{"ratio": 4}][:levels], **extra}).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith(("physical.", "long_range.")):
                p.add_(perturb * torch.randn_like(p))
    return model


def _periodic():
    waters = molecule("H2O") + molecule("H2O") + molecule("CH3OH")
    waters.positions[3:6] += [2.6, 1.4, 1.1]
    waters.positions[6:] += [0.5, 3.5, 3.0]
    waters.cell, waters.pbc = np.eye(3) * 7.5, True
    waters.positions += 1.0
    return waters


def _ions():
    """Hydroxide next to water, the charge on the hydroxide (per-atom initial charges say which molecule)."""
    oh = molecule("OH")
    water = molecule("H2O")
    water.translate([0.0, 0.0, 4.0])
    atoms = oh + water
    charges = np.zeros(len(atoms))
    charges[0] = -1.0
    atoms.set_initial_charges(charges)
    return atoms


CASES = {
    "physical": {"physical": {}, "charges": True},
    "physical-pme": {"physical": {"ewald": {"method": "pme"}, "coulomb_switch": [1.0, 3.0]}},
    "latent-ewald": {"long_range": {"kind": "latent-ewald"}},
    "latent-ewald-neutral": {"long_range": {"kind": "latent-ewald", "neutral": True}},
}


@pytest.mark.parametrize("case, make", [("physical", _free), ("physical", _periodic), ("physical-pme", _periodic),
                                        ("latent-ewald", _free), ("latent-ewald", _periodic),
                                        ("latent-ewald-neutral", _free)],
                         ids=["physical-free", "physical-periodic", "physical-pme-periodic", "les-free",
                              "les-periodic", "les-neutral-free"])
def test_exported_long_range_terms_reproduce_energy_forces_stress(case, make, tmp_path):
    model, atoms = _model(**CASES[case]), make()
    reference = _reference(model, atoms)
    no_terms = _model(perturb=0.0)  # the same weights without the long-range term: it must matter
    assert abs(reference[0] - _reference(no_terms, atoms)[0]) > 1e-3
    path = export_model(model, tmp_path / "m.pt", structure=atoms)
    _close(reference, _exported(path, atoms))
    moved = atoms.copy()
    moved.positions += np.random.default_rng(3).normal(scale=0.03, size=moved.positions.shape)
    _close(_reference(model, moved), _exported(path, moved))


def test_exported_charges_keep_each_molecules_charge(tmp_path):
    """The charge groups are bound at export: the hydroxide keeps its -1 e in the engine as in Python."""
    model, atoms = _model(**CASES["physical"]), _ions()
    path = export_model(model, tmp_path / "m.pt", structure=atoms)
    _close(_reference(model, atoms), _exported(path, atoms))
    neutral = atoms.copy()
    neutral.set_initial_charges(np.zeros(len(atoms)))
    assert abs(_reference(model, neutral)[0] - _reference(model, atoms)[0]) > 1e-3  # the charge matters


def test_exported_long_range_model_declares_an_infinite_range(tmp_path):
    from metatomic.torch import load_atomistic_model

    path = export_model(_model(**CASES["physical"]), tmp_path / "m.pt", structure=_free())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert math.isinf(load_atomistic_model(str(path)).capabilities().interaction_range)


def test_torchscript_format_with_physical_terms_is_a_function_of_positions(tmp_path):
    import vesin_torch  # noqa: F401  (the coarse neighbour lists' extension)

    model, atoms = _model(**CASES["physical"]), _periodic()
    _check_torchscript(model, atoms, tmp_path)


def test_exporting_does_not_change_the_callers_model(tmp_path):
    model, atoms = _model(**CASES["physical"]), _free()
    physical = model.physical
    export_model(model, tmp_path / "m.pt", structure=atoms)
    assert model.physical is physical and type(model.physical).__name__ == "PhysicalLongRange"


def test_d3_exports_as_metatomics_d3_wrapper(tmp_path):
    """model.d3 (tad-dftd3, PBE0 parameters) becomes metatomic's own D3(BJ) around the exported model, with the
    same parameters and cutoffs: energies agree to 1e-8 relative of the D3 energy, forces to 1e-8 eV/Å."""
    pytest.importorskip("tad_dftd3")
    model, atoms = _model(levels=0, d3={}), _free()
    reference = _reference(model, atoms)
    d3_energy = reference[0] - _reference(_model(levels=0), atoms)[0]
    assert d3_energy < -0.1  # benzene + water: D3 is a real part of the energy
    path = export_model(model, tmp_path / "m.pt", structure=atoms)
    got = _exported(path, atoms)
    assert abs(got[0] - reference[0]) <= 1e-7 * abs(d3_energy)
    np.testing.assert_allclose(got[1], reference[1], atol=1e-8)


def test_d3_refusals_name_the_problem(tmp_path):
    pytest.importorskip("tad_dftd3")
    with pytest.raises(ExportError, match="metatomic format"):
        export_model(_model(levels=0, d3={}), tmp_path / "m.ts", structure=_free(), format="torchscript")
    with pytest.raises(ExportError, match="three-body"):
        export_model(_model(levels=0, d3={"three_body": True}), tmp_path / "m.pt")
    assert not (tmp_path / "m.pt").exists() and not (tmp_path / "m.ts").exists()
