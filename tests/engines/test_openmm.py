"""OpenMM runs an exported MuSE model (issue #17, engines).

Routes, each against ``MuSECalculator`` (energy to 1e-6 relative, forces) and 100 steps of ``VerletIntegrator``:

* :func:`muse_ff.engines.openmm.python_force`: an ``openmm.PythonForce`` evaluating the exported torchscript file;
* openmmml's ``MLPotential('ase')`` with metatomic-ase's calculator on the exported metatomic file;
* :func:`muse_ff.engines.openmm.torch_force`: openmm-torch's ``TorchForce`` (skipped where no openmm-torch build
  matches the installed OpenMM; its scripted nm/kJ wrapper is checked in torch either way).
"""

import warnings

import numpy as np
import pytest
import torch
from ase.build import molecule

from muse_ff import MuSECalculator, build_model
from muse_ff.engines.openmm import KJ_PER_MOL_PER_EV, openmm_module, openmm_system, python_force, torch_force
from muse_ff.export import export_model

openmm = pytest.importorskip("openmm")
if not hasattr(openmm, "PythonForce"):
    pytest.skip("needs OpenMM >= 8.6 (openmm.PythonForce)", allow_module_level=True)
from openmm import unit  # noqa: E402

PAINN = {"name": "painn", "features": 16, "layers": 2, "num_basis": 8}
STEPS = 100
DT = 0.0001  # ps = 0.1 fs: the untrained model's forces would break a bond within 100 steps of 0.5 fs
FORCE_UNIT = KJ_PER_MOL_PER_EV * 10.0  # eV/Å -> kJ/mol/nm
KJ = unit.kilojoule_per_mole


def _model():
    torch.manual_seed(0)
    cfg = {"backbone": PAINN, "species": [1, 6, 8, 14], "dtype": "float64", "levels": [{"ratio": 4}, {"ratio": 4}]}
    return build_model(cfg).eval()


def _free():
    a, b = molecule("C6H6"), molecule("H2O")
    b.translate([0.3, 0.2, 6.0])
    return a + b


def _periodic():
    waters = molecule("H2O") + molecule("H2O")
    waters.positions[3:] += [2.6, 1.4, 1.1]
    waters.cell, waters.pbc = np.eye(3) * 6.5, True
    waters.positions += 0.5
    return waters


@pytest.fixture(scope="module")
def model():
    return _model()


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread: the model is tiny, and on a busy 2-core machine torch's thread pool waiting on a
    second core made these 100-step runs ten times slower (40 s instead of 2-4 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _reference(model, atoms):
    a = atoms.copy()
    a.calc = MuSECalculator(model)
    return a.get_potential_energy() * KJ_PER_MOL_PER_EV, a.get_forces() * FORCE_UNIT


def _check(context, model, atoms):
    state = context.getState(getEnergy=True, getForces=True)
    energy = state.getPotentialEnergy().value_in_unit(KJ)
    forces = state.getForces(asNumpy=True).value_in_unit(KJ / unit.nanometer)
    e0, f0 = _reference(model, atoms)
    assert abs(energy - e0) <= 1e-6 * max(1.0, abs(e0)), (energy, e0)
    np.testing.assert_allclose(forces, f0, rtol=1e-6, atol=1e-6)


def _context(system, atoms):
    context = openmm.Context(system, openmm.VerletIntegrator(DT), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(atoms.positions / 10.0)  # Å -> nm
    return context


def _run(context, model, atoms):
    """100 Verlet steps from 10 K: total energy conserved, and the last frame still the Python model's energy."""
    context.setVelocitiesToTemperature(10 * unit.kelvin, 7)
    totals = []
    for _ in range(STEPS // 10):
        context.getIntegrator().step(10)
        s = context.getState(getEnergy=True)
        totals.append((s.getPotentialEnergy() + s.getKineticEnergy()).value_in_unit(KJ))
    assert context.getStepCount() == STEPS
    assert np.ptp(totals) < 0.05  # kJ/mol (~5e-4 eV) over 10 fs with 0.1 fs steps
    state = context.getState(getPositions=True, enforcePeriodicBox=bool(atoms.pbc.all()))
    moved = atoms.copy()
    moved.positions = state.getPositions(asNumpy=True).value_in_unit(unit.angstrom)
    assert np.abs(moved.positions - atoms.positions).max() > 1e-3
    _check(context, model, moved)  # periodic: each atom wrapped into the box (the model restores the images)


@pytest.mark.parametrize("make", [_free, _periodic], ids=["free", "periodic"])
def test_python_force_runs_the_torchscript_export(make, model, tmp_path):
    atoms = make()
    periodic = bool(atoms.pbc.all())
    path = export_model(model, tmp_path / "m.ts", structure=atoms, format="torchscript")
    force = python_force(path, periodic=periodic)
    assert force.usesPeriodicBoundaryConditions() == periodic
    context = _context(openmm_system(atoms, force), atoms)
    _check(context, model, atoms)
    _run(context, model, atoms)


def _topology(atoms):
    from openmm.app import Element, Topology

    top = Topology()
    residue = top.addResidue("MOL", top.addChain())
    for i, z in enumerate(atoms.numbers):
        top.addAtom(f"{atoms[i].symbol}{i}", Element.getByAtomicNumber(int(z)), residue)
    if atoms.pbc.all():
        top.setPeriodicBoxVectors(atoms.cell.array / 10.0 * unit.nanometer)
    return top


def test_openmmml_ase_potential_runs_the_metatomic_export(model, tmp_path):
    mlpotential = pytest.importorskip("openmmml")
    metatomic_ase = pytest.importorskip("metatomic_ase")
    atoms = _free()
    path = export_model(model, tmp_path / "m.pt", structure=atoms)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        calc = metatomic_ase.MetatomicCalculator(str(path))
    system = mlpotential.MLPotential("ase").createSystem(_topology(atoms), calculator=calc)
    assert any(isinstance(f, openmm.PythonForce) for f in system.getForces())
    context = _context(system, atoms)
    _check(context, model, atoms)
    _run(context, model, atoms)


def test_torchforce_wrapper_converts_nm_and_kj_per_mol(model, tmp_path):
    for atoms in (_free(), _periodic()):
        periodic = bool(atoms.pbc.all())
        path = export_model(model, tmp_path / f"m{int(periodic)}.ts", structure=atoms, format="torchscript")
        wrapper = openmm_module(path, periodic=periodic)
        pos = torch.tensor(atoms.positions / 10.0, requires_grad=True)
        box = torch.tensor(atoms.cell.array / 10.0) if periodic else None
        energy = wrapper(pos, box) if periodic else wrapper(pos)
        forces = -torch.autograd.grad(energy, pos)[0].numpy()
        e0, f0 = _reference(model, atoms)
        assert abs(energy.item() - e0) <= 1e-6 * max(1.0, abs(e0))
        np.testing.assert_allclose(forces, f0, rtol=1e-6, atol=1e-6)
        # openmm-torch hands float32 positions on single-precision platforms: the energy comes back in float32
        assert wrapper(pos.detach().float(), box.float() if box is not None else None).dtype == torch.float32


PROBE = """
import openmm, torch
from openmmtorch import TorchForce
from muse_ff.engines.openmm import _load_torch_plugins
class Square(torch.nn.Module):
    def forward(self, positions):
        return (positions ** 2).sum()
torch.jit.script(Square()).save({path!r})
_load_torch_plugins()
system = openmm.System()
system.addParticle(1.0)
system.addForce(TorchForce({path!r}))
context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
context.setPositions([openmm.Vec3(0.1, 0.2, 0.3)])
print("energy", context.getState(getEnergy=True).getPotentialEnergy()._value)
"""


def _openmmtorch_works(tmp_path):
    """Whether openmm-torch runs a TorchForce with this OpenMM, tried in a subprocess: a build for another OpenMM
    fails there (PyPI's openmm-torch-unofficial-cpu 1.5 with OpenMM 8.6.1: System.addForce refuses its force, another
    SWIG runtime) or crashes its process (its SWIG objects segfault when garbage-collected)."""
    import subprocess
    import sys

    probe = tmp_path / "probe_openmmtorch.py"  # (a file: TorchScript compiles from the source)
    probe.write_text(PROBE.format(path=str(tmp_path / "square.pt")))
    proc = subprocess.run([sys.executable, str(probe)], capture_output=True, text=True, timeout=120)
    if proc.returncode == 0 and "energy 0.14" in proc.stdout:
        return True, ""
    lines = [x for x in (proc.stderr + proc.stdout).splitlines() if x.strip()]
    return False, f"exit {proc.returncode}: {lines[-1] if lines else ''}"


def test_torchforce_runs_the_torchscript_export(model, tmp_path):
    import importlib.util

    if importlib.util.find_spec("openmmtorch") is None:  # (not imported here: see _openmmtorch_works)
        pytest.skip("needs openmm-torch")
    works, why = _openmmtorch_works(tmp_path)
    if not works:
        pytest.skip(f"this openmm-torch build does not run with the installed OpenMM {openmm.__version__} ({why})")
    atoms = _free()
    path = export_model(model, tmp_path / "m.ts", structure=atoms, format="torchscript")
    force = torch_force(path, periodic=False, model_path=tmp_path / "m-openmm.pt")
    context = _context(openmm_system(atoms, force), atoms)
    _check(context, model, atoms)
    _run(context, model, atoms)
