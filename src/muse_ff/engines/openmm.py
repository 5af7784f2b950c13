"""OpenMM forces from an exported MuSE model (``muse export --format torchscript``, :mod:`muse_ff.export`).

The exported ``torchscript`` file is ``forward(positions [N, 3] Å, cell [3, 3] Å, pbc [3]) -> energy (eV)``.
OpenMM works in nm and kJ/mol; two ways to put the model into an OpenMM ``System``:

* :func:`python_force`: an ``openmm.PythonForce`` (OpenMM >= 8.6) that evaluates the exported file, forces by
  autograd. Needs nothing beyond OpenMM; one Python call per step (tested: tests/engines/test_openmm.py).
* :func:`torch_force`: openmm-torch's ``TorchForce`` around a scripted wrapper (:class:`OpenMMWrapper`,
  written by :func:`write_torchforce_model`) that converts nm -> Å, the box vectors, and eV -> kJ/mol; OpenMM
  then runs it in C++ with no Python in the loop. Needs an openmm-torch built against the installed OpenMM
  and torch (e.g. conda-forge's ``openmm-torch`` with conda-forge's OpenMM; not tested here). The PyPI wheel
  ``openmm-torch-unofficial-cpu`` 1.5 does not work with PyPI's OpenMM 8.6.1: another SWIG runtime
  (``System.addForce`` refuses its force with a TypeError, and the process then segfaults when the force is
  garbage-collected) and another C++ ABI (a System deserialized with its force segfaults).

Both take the atoms of the structure the model was exported with, in that order (a bound model refuses any
other system); :func:`openmm_system` builds a ``System`` of those atoms (masses, periodic box) with the force.
A model exported for a periodic structure needs ``periodic=True`` (all three directions: OpenMM has no mixed
boundary conditions); the exported model restores the images of atoms OpenMM wraps into the box.
"""

from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import Tensor, nn

#: kJ/mol per eV (CODATA 2018: e x N_A / 1000)
KJ_PER_MOL_PER_EV = 96.48533212
#: Å per nm
ANGSTROM_PER_NM = 10.0


def load_exported(path) -> torch.jit.ScriptModule:
    """Load an exported ``torchscript`` MuSE file (importing vesin_torch first: its neighbour-list ops)."""
    import vesin_torch  # noqa: F401  (registers the ops the exported model calls)

    return torch.jit.load(str(path), map_location="cpu")


def _float64(module: nn.Module) -> bool:
    for t in list(module.parameters()) + list(module.buffers()):
        if t.is_floating_point():
            return t.dtype == torch.float64
    return True


class OpenMMWrapper(nn.Module):
    """openmm-torch's interface around the exported model: ``forward(positions [N, 3] nm, boxvectors [3, 3] nm)
    -> energy (kJ/mol)``, in the dtype of the positions (the model itself runs in its own dtype)."""

    def __init__(self, exported: torch.jit.ScriptModule, periodic: bool = False):
        super().__init__()
        self.model = exported
        self.periodic = bool(periodic)
        self.float64 = _float64(exported)
        self.length = ANGSTROM_PER_NM
        self.energy_unit = KJ_PER_MOL_PER_EV
        self.register_buffer("pbc", torch.tensor([self.periodic] * 3))

    def forward(self, positions: Tensor, boxvectors: Optional[Tensor] = None) -> Tensor:
        dtype = torch.float64 if self.float64 else torch.float32
        pos = positions.to(dtype) * self.length
        if boxvectors is None or not self.periodic:
            cell = torch.zeros(3, 3, dtype=dtype, device=positions.device)
        else:
            cell = boxvectors.to(dtype) * self.length
        energy = self.model(pos, cell, self.pbc.to(positions.device))
        return (energy * self.energy_unit).to(positions.dtype)


def openmm_module(exported_path, periodic: bool = False) -> torch.jit.ScriptModule:
    """The scripted :class:`OpenMMWrapper` of an exported ``torchscript`` file."""
    return torch.jit.script(OpenMMWrapper(load_exported(exported_path), periodic))


def write_torchforce_model(exported_path, path, periodic: bool = False) -> Path:
    """Write the scripted :class:`OpenMMWrapper` (what ``TorchForce(path)`` loads) at ``path``; returns it."""
    path = Path(path)
    openmm_module(exported_path, periodic).save(str(path))
    return path


def _load_torch_plugins():
    """openmm-torch wheels that install their platform plugins beside the ``openmm`` package (not in OpenMM's
    plugin directory) need them loaded by hand; a no-op where OpenMM loaded them already."""
    import openmm

    plugins = Path(openmm.__file__).parent / "lib" / "plugins"
    default = Path(openmm.Platform.getDefaultPluginsDirectory())
    if plugins.is_dir() and plugins.resolve() != default.resolve():
        for lib in sorted(plugins.glob("libOpenMMTorch*.so")):
            if "OpenCL" in lib.name or "CUDA" in lib.name:
                continue  # absent drivers on CPU machines; the Reference and CPU kernels suffice there
            try:
                openmm.Platform.loadPluginLibrary(str(lib))
            except Exception:  # noqa: BLE001 - already loaded, or another platform's plugin
                pass


def torch_force(exported_path, periodic: bool = False, model_path=None):
    """An openmm-torch ``TorchForce`` running the exported model (its wrapper written to ``model_path``,
    default the exported file's name + ``.openmm.pt``)."""
    try:
        from openmmtorch import TorchForce
    except ImportError as exc:
        raise ImportError("torch_force needs openmm-torch (conda install -c conda-forge openmm-torch); "
                          "python_force needs OpenMM only") from exc
    _load_torch_plugins()
    model_path = Path(model_path) if model_path is not None else Path(str(exported_path) + ".openmm.pt")
    write_torchforce_model(exported_path, model_path, periodic)
    force = TorchForce(str(model_path))
    force.setUsesPeriodicBoundaryConditions(bool(periodic))
    return force


class ExportedEnergy:
    """The computation of :func:`python_force`: energy (kJ/mol) and forces (kJ/mol/nm) of an OpenMM ``State``
    from the exported file (loaded on first use, so the force pickles: OpenMM's XmlSerializer)."""

    def __init__(self, exported_path, periodic: bool = False):
        self.path = str(exported_path)
        self.periodic = bool(periodic)
        self._model = None

    def __getstate__(self):
        return {"path": self.path, "periodic": self.periodic, "_model": None}

    def model(self) -> OpenMMWrapper:
        if self._model is None:  # the same unit conversions as the TorchForce route, in eager mode
            self._model = OpenMMWrapper(load_exported(self.path), self.periodic)
        return self._model

    def __call__(self, state):
        from openmm import unit

        pos_nm = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
        pos = torch.tensor(np.asarray(pos_nm), dtype=torch.float64, requires_grad=True)
        box = None
        if self.periodic:
            box = torch.tensor(np.asarray(state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer)),
                               dtype=torch.float64)
        energy = self.model()(pos, box)  # kJ/mol
        (grad,) = torch.autograd.grad(energy, pos)  # kJ/mol/nm
        return energy.detach().item(), -grad.detach().numpy()


def python_force(exported_path, periodic: bool = False):
    """An ``openmm.PythonForce`` (OpenMM >= 8.6) running the exported ``torchscript`` file."""
    import openmm

    if not hasattr(openmm, "PythonForce"):
        raise ImportError(f"openmm.PythonForce needs OpenMM >= 8.6 (found {openmm.__version__}); "
                          "use torch_force with openmm-torch")
    force = openmm.PythonForce(ExportedEnergy(exported_path, periodic))
    force.setUsesPeriodicBoundaryConditions(bool(periodic))
    return force


def openmm_system(atoms, force=None):
    """An ``openmm.System`` of the ASE ``atoms`` (masses in Da; the periodic box if ``atoms.pbc.all()``) with
    ``force`` added (e.g. :func:`python_force` or :func:`torch_force`)."""
    import openmm
    from openmm import unit

    system = openmm.System()
    for m in atoms.get_masses():
        system.addParticle(float(m) * unit.dalton)
    if atoms.pbc.any():
        if not atoms.pbc.all():
            raise ValueError("OpenMM is periodic in all three directions or none: these atoms have pbc "
                             f"{atoms.pbc.tolist()}")
        a, b, c = (openmm.Vec3(*(v / ANGSTROM_PER_NM)) for v in atoms.cell.array)
        system.setDefaultPeriodicBoxVectors(a, b, c)
    if force is not None:
        system.addForce(force)
    return system
