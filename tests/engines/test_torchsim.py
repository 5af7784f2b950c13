"""TorchSim runs an exported MuSE model through its own metatomic interface (issue #17, engines).

On Python 3.11 the metatomic route into TorchSim is torch-sim-atomistic 0.3's ``torch_sim.models.metatomic.
MetatomicModel`` (metatomic-torchsim needs torch-sim-atomistic >= 0.5, which needs Python >= 3.12). It reads the
exported file with metatomic's loader, builds neighbour lists with vesin and takes forces and stress by autograd:
none of MuSE's code runs but what is inside the exported file.
"""

import warnings

import numpy as np
import pytest
import torch
from ase.build import molecule

from muse_ff import MuSECalculator, build_model
from muse_ff.export import export_model

ts = pytest.importorskip("torch_sim")
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    try:
        from torch_sim.models.metatomic import MetatomicModel
    except ImportError:  # pragma: no cover - torch-sim without its metatomic extra
        MetatomicModel = None

pytestmark = pytest.mark.skipif(MetatomicModel is None, reason="needs torch-sim-atomistic with metatomic")

PAINN = {"name": "painn", "features": 16, "layers": 2, "num_basis": 8}
STEPS = 100


def _model():
    torch.manual_seed(0)
    return build_model({"backbone": PAINN, "species": [1, 6, 8], "dtype": "float64",
                        "levels": [{"ratio": 4}, {"ratio": 4}], "physical": {}, "charges": True}).eval()


def _free():
    a, b = molecule("C6H6"), molecule("H2O")
    b.translate([0.3, 0.2, 6.0])
    return a + b


def _periodic():
    waters = molecule("H2O") + molecule("H2O") + molecule("CH3OH")
    waters.positions[3:6] += [2.6, 1.4, 1.1]
    waters.positions[6:] += [0.5, 3.5, 3.0]
    waters.cell, waters.pbc = np.eye(3) * 7.5, True
    waters.positions += 1.0
    return waters


def _torchsim(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return MetatomicModel(str(path), device="cpu")


def _python(model, atoms):
    a = atoms.copy()
    a.calc = MuSECalculator(model)
    return a.get_potential_energy(), a.get_forces(), a.get_stress() if a.pbc.all() else None


@pytest.mark.parametrize("make", [_free, _periodic], ids=["free", "periodic"])
def test_torchsim_evaluates_the_exported_model_as_python_does(make, tmp_path):
    model, atoms = _model(), make()
    path = export_model(model, tmp_path / "m.pt", structure=atoms)
    moved = atoms.copy()
    moved.positions += np.random.default_rng(0).normal(scale=0.03, size=moved.positions.shape)
    # one TorchSim batch of two systems: the structure and the same structure displaced
    state = ts.io.atoms_to_state([atoms, moved], device=torch.device("cpu"), dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = _torchsim(path)(state)
    for b, a in enumerate((atoms, moved)):
        e0, f0, s0 = _python(model, a)
        assert abs(float(out["energy"][b]) - e0) <= 1e-6 * max(1.0, abs(e0))
        np.testing.assert_allclose(out["forces"][state.system_idx == b].numpy(), f0, rtol=1e-6, atol=1e-9)
        if s0 is not None:  # TorchSim's stress is the 3 x 3 tensor, ASE's the Voigt 6-vector
            voigt = out["stress"][b].numpy()[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
            np.testing.assert_allclose(voigt, s0, rtol=1e-6, atol=1e-9)


def test_torchsim_nve_conserves_energy_and_ends_where_python_says(tmp_path):
    model, atoms = _model(), _free()
    path = export_model(model, tmp_path / "m.pt", structure=atoms)
    tsm = _torchsim(path)
    state = ts.io.atoms_to_state([atoms], device=torch.device("cpu"), dtype=torch.float64)
    kT = torch.tensor(50.0 * ts.units.MetalUnits.temperature, dtype=torch.float64)
    dt = torch.tensor(1e-4 * ts.units.MetalUnits.time, dtype=torch.float64)  # 0.1 fs (the unit is 1 ps): untrained
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        init, update = ts.nve(model=tsm, dt=dt, kT=kT, seed=0)
        md = init(state)
        totals = []
        for _ in range(STEPS):
            md = update(md, dt=dt)
            kinetic = 0.5 * ((md.momenta**2).sum(-1) / md.masses).sum()
            totals.append(float(md.energy.sum() + kinetic))
    assert np.ptp(totals) < 1e-3  # NVE: total energy conserved along the 100 steps
    end = atoms.copy()
    end.positions = md.positions.detach().numpy()
    assert np.abs(end.positions - atoms.positions).max() > 1e-4  # it moved
    e_end, f_end, _ = _python(model, end)
    assert abs(float(md.energy[0]) - e_end) <= 1e-6 * max(1.0, abs(e_end))
    np.testing.assert_allclose(md.forces.detach().numpy(), f_end, rtol=1e-6, atol=1e-9)
