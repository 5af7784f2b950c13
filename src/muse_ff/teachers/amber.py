"""The ``amber14-gbn2`` teacher: Amber ff14SB with GBn2 implicit solvent through OpenMM.

All pairs interact (``NoCutoff``), so long-range electrostatics is exact. The topology (residues, bonds,
atom types) comes from a PDB file whose atoms are in the same order, with the same elements, as the
structures to label. OpenMM works in nm and kJ/mol; we convert to Å and eV with ASE's constants.

Labels use the double-precision ``Reference`` platform by default: deterministic and exactly
reproducible from the coordinates, at ~10 ms per call for a 138-atom peptide.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.units import kJ, mol

from muse_ff.teachers.base import Label, Teacher, TeacherError, check_settings, file_sha256, require

#: force-field files, in OpenMM's bundled data directory
FORCEFIELD_FILES = ("amber14-all.xml", "implicit/gbn2.xml")
#: eV per kJ/mol
KJ_PER_MOL = kJ / mol
#: eV/Å per kJ/mol/nm
KJ_PER_MOL_NM = KJ_PER_MOL / 10.0


def build_system(topology, constraints=None):
    """An OpenMM ``System`` for ``topology`` with amber14 + GBn2, no cutoff (shared with MD sampling)."""
    app = require("openmm.app", "amber14-gbn2")
    forcefield = app.ForceField(*FORCEFIELD_FILES)
    return forcefield.createSystem(topology, nonbondedMethod=app.NoCutoff, constraints=constraints)


def net_charge(topology) -> int:
    """The total charge (e) of ``topology`` under amber14: the sum of its NonbondedForce charges, rounded
    (chignolin with charged termini, Asp- and Glu-: -2). Labelled frames carry it as ``info['charge']``, the
    input of models with physical charges."""
    mm = require("openmm", "amber14-gbn2")
    unit = require("openmm.unit", "amber14-gbn2")
    force = next(f for f in build_system(topology).getForces() if isinstance(f, mm.NonbondedForce))
    total = sum(force.getParticleParameters(k)[0].value_in_unit(unit.elementary_charge)
                for k in range(force.getNumParticles()))
    return int(round(total))


class AmberGBn2Teacher(Teacher):
    """Amber14 + GBn2 (OpenMM). Settings:

    - ``pdb`` (str, required): PDB file giving the topology; atoms in the same order as the structures.
    - ``platform`` (str, ``'Reference'``): OpenMM platform (``'CPU'`` is faster, single precision).
    - ``threads`` (int, 1): threads of the CPU platform (speed only).
    """

    name = "amber14-gbn2"
    _defaults: dict[str, Any] = {"pdb": None, "platform": "Reference", "threads": 1}

    def __init__(self, **settings: Any) -> None:
        settings = check_settings(self.name, settings, self._defaults)
        if not settings["pdb"]:
            raise TeacherError("the amber14-gbn2 teacher needs a topology: give a PDB file (--pdb FILE)")
        pdb_path = Path(settings["pdb"])
        if not pdb_path.is_file():
            raise TeacherError(f"PDB topology file not found: {pdb_path}")
        settings["pdb"] = pdb_path.name
        settings["pdb_sha256"] = file_sha256(pdb_path)
        settings["forcefield"] = "+".join(FORCEFIELD_FILES)
        settings["nonbonded"] = "NoCutoff"
        super().__init__(**settings)
        self._mm = require("openmm", self.name)
        app = require("openmm.app", self.name)
        self.topology = app.PDBFile(str(pdb_path)).topology
        self.numbers = np.array([a.element.atomic_number for a in self.topology.atoms()], dtype=int)
        self._context = self._make_context()

    def _make_context(self):
        mm = self._mm
        system = build_system(self.topology)
        properties = {"Threads": str(int(self.settings["threads"]))} if self.settings["platform"] == "CPU" else {}
        try:
            platform = mm.Platform.getPlatformByName(self.settings["platform"])
        except Exception as err:
            raise TeacherError(f"OpenMM platform {self.settings['platform']!r} is not available: {err}") from err
        integrator = mm.VerletIntegrator(0.001)
        return mm.Context(system, integrator, platform, properties)

    def version(self) -> str:
        return f"openmm {self._mm.__version__}"

    def _check(self, atoms: Atoms) -> None:
        if np.asarray(atoms.pbc).any():
            raise TeacherError("amber14-gbn2 labels isolated molecules only (NoCutoff); got a periodic cell")
        if len(atoms) != len(self.numbers):
            raise TeacherError(
                f"structure has {len(atoms)} atoms but the PDB topology {self.settings['pdb']} has "
                f"{len(self.numbers)}"
            )
        wrong = np.flatnonzero(atoms.numbers != self.numbers)
        if wrong.size:
            k = int(wrong[0])
            raise TeacherError(
                f"atom {k} is Z={int(atoms.numbers[k])} in the structure but Z={int(self.numbers[k])} in the "
                f"PDB topology {self.settings['pdb']}: atoms must be in the PDB's order"
            )

    def label(self, atoms: Atoms) -> Label:
        """Energy (eV) and forces (eV/Å) of an isolated molecule in the PDB's atom order."""
        self._check(atoms)
        self._context.setPositions(np.asarray(atoms.positions, dtype=np.float64) / 10.0)  # Å -> nm
        state = self._context.getState(getEnergy=True, getForces=True)
        unit = require("openmm.unit", self.name)
        energy = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole) * KJ_PER_MOL
        forces = np.asarray(state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer))
        return Label(energy=energy, forces=forces * KJ_PER_MOL_NM)
