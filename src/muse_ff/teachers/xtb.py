"""GFN1-xTB and GFN2-xTB teachers through the ``tblite`` Python API.

tblite works in atomic units: positions and lattice in Bohr, energy in Hartree, gradient in Hartree/Bohr,
virial in Hartree. We convert with ASE's constants (``ase.units.Bohr``, ``ase.units.Hartree``), like
tblite's own ASE calculator, so labels agree with ``tblite.ase.TBLite`` to rounding.

Periodic structures: tblite treats any periodic direction as a 3D lattice (a slab is a 3D cell with
vacuum; the result is identical with flags ``[T, T, F]`` and ``[T, T, T]``), Gamma point only, so use
supercells large enough for the physics. Stress is ``virial / V`` (ASE convention), fully periodic only.
"""

from __future__ import annotations

import ctypes
import os
from typing import Any, ClassVar

import numpy as np
from ase import Atoms
from ase.units import Bohr, Hartree, kB

from muse_ff.teachers.base import Label, Teacher, TeacherError, check_settings, require

#: Boltzmann constant in Hartree/K (electronic temperature is passed to tblite in Hartree)
_KB_HARTREE = kB / Hartree


def set_openmp_threads(threads: int) -> None:
    """Ask OpenMP (as used by tblite) for ``threads`` threads in this process; best effort.

    Sets ``OMP_NUM_THREADS`` for libraries not yet loaded and calls ``omp_set_num_threads`` of the system
    ``libgomp`` that the tblite wheel links against, for the case where it is already loaded.
    """
    if threads < 1:
        raise TeacherError(f"threads must be >= 1, got {threads}")
    os.environ["OMP_NUM_THREADS"] = str(threads)
    try:
        ctypes.CDLL("libgomp.so.1").omp_set_num_threads(int(threads))
    except (OSError, AttributeError):  # no libgomp on this system: the environment variable has to do
        pass


class XTBTeacher(Teacher):
    """Extended tight binding (tblite). Settings (all optional):

    - ``charge`` (int or None): total charge; ``None`` reads ``atoms.info['charge']`` (default 0).
    - ``uhf`` (int or None): number of unpaired electrons; ``None`` reads ``atoms.info['uhf']`` (default 0).
    - ``accuracy`` (float, 1.0): tblite SCC accuracy (smaller is tighter).
    - ``electronic_temperature`` (float, 300.0): Fermi smearing temperature in K.
    - ``max_iter`` (int, 250): SCC iteration limit; not converging raises :class:`TeacherError`.
    - ``threads`` (int, 1): OpenMP threads (speed only).
    """

    method: ClassVar[str] = ""
    _defaults: ClassVar[dict[str, Any]] = {
        "charge": None, "uhf": None, "accuracy": 1.0, "electronic_temperature": 300.0, "max_iter": 250,
        "threads": 1,
    }

    def __init__(self, **settings: Any) -> None:
        super().__init__(**check_settings(self.name, settings, self._defaults))
        set_openmp_threads(int(self.settings["threads"]))
        self._interface = require("tblite.interface", self.name)

    def version(self) -> str:
        library = require("tblite.library", self.name)
        return "tblite " + ".".join(str(v) for v in library.get_version())

    def _spin_and_charge(self, atoms: Atoms) -> tuple[float, int]:
        s = self.settings
        charge = s["charge"] if s["charge"] is not None else atoms.info.get("charge", 0)
        uhf = s["uhf"] if s["uhf"] is not None else atoms.info.get("uhf", 0)
        return float(charge), int(uhf)

    def _calculator(self, atoms: Atoms):
        charge, uhf = self._spin_and_charge(atoms)
        pbc = np.asarray(atoms.pbc, dtype=bool)
        lattice = np.asarray(atoms.cell[:], dtype=np.float64) / Bohr if pbc.any() else None
        calc = self._interface.Calculator(
            self.method, atoms.numbers, atoms.positions / Bohr, charge=charge, uhf=uhf,
            lattice=lattice, periodic=pbc if pbc.any() else None,
        )
        calc.set("verbosity", 0)
        calc.set("accuracy", float(self.settings["accuracy"]))
        calc.set("max-iter", int(self.settings["max_iter"]))
        calc.set("temperature", float(self.settings["electronic_temperature"]) * _KB_HARTREE)
        return calc

    def label(self, atoms: Atoms) -> Label:
        """Energy (eV), forces (eV/Å), stress (eV/Å^3, fully periodic cells) and dipole moment (e Å, about the
        origin, free structures) of ``atoms``."""
        if len(atoms) == 0:
            raise TeacherError("cannot label an empty structure")
        try:
            result = self._calculator(atoms).singlepoint()
        except Exception as err:  # tblite raises its own TBLiteRuntimeError / TBLiteValueError
            raise TeacherError(f"{self.name} failed: {str(err).strip()}") from err
        energy = float(result.get("energy")) * Hartree
        forces = -np.asarray(result.get("gradient"), dtype=np.float64) * (Hartree / Bohr)
        stress = dipole = None
        if np.asarray(atoms.pbc, dtype=bool).all():
            stress = np.asarray(result.get("virial"), dtype=np.float64) * Hartree / atoms.get_volume()
        if not np.asarray(atoms.pbc, dtype=bool).any():  # total dipole (charges + atomic dipoles) about the origin
            dipole = np.asarray(result.get("dipole"), dtype=np.float64) * Bohr
        return Label(energy=energy, forces=forces, stress=stress, dipole=dipole)


class GFN1Teacher(XTBTeacher):
    """GFN1-xTB (smooth, correctly attractive pi-stacking tail: used for molecule-graphene)."""

    name = "gfn1-xtb"
    method = "GFN1-xTB"


class GFN2Teacher(XTBTeacher):
    """GFN2-xTB (multipole electrostatics: used for dimers and Hessians)."""

    name = "gfn2-xtb"
    method = "GFN2-xTB"
