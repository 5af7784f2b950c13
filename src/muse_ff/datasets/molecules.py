"""Deterministic starting geometries of small molecules (no RDKit, no downloads) and their optimisation.

Geometries come from ASE's G2 collection where it has them, or are built from it or from ideal bond
lengths; :func:`optimised` relaxes them with a teacher so datasets start from the teacher's minimum.
Charged species carry ``info['charge']`` (read by the xTB teachers).
"""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.build import molecule as g2_molecule
from ase.optimize import BFGS

from muse_ff.teachers.base import Teacher
from muse_ff.teachers.calculator import TeacherCalculator

#: our name -> ASE G2 name
_G2 = {
    "water": "H2O", "ammonia": "NH3", "formaldehyde": "H2CO", "acetonitrile": "CH3CN",
    "methanol": "CH3OH", "benzene": "C6H6", "pyridine": "C5H5N", "methylamine": "H3CNH2",
    "formic-acid": "HCOOH", "ethanol": "CH3CH2OH", "acetamide": "CH3CONH2",
}


def _formate() -> Atoms:
    """HCOO- : formic acid without its hydroxyl hydrogen."""
    acid = g2_molecule("HCOOH")
    hydroxyl_h = int(np.argmin([acid.get_distance(0, k) if acid.numbers[k] == 1 else 9.0
                                for k in range(len(acid))]))
    del acid[hydroxyl_h]
    acid.info["charge"] = -1
    return acid


def _methylammonium() -> Atoms:
    """CH3NH3+ : methylamine with a third hydrogen on N, along the lone pair (N-H 1.03 Å)."""
    amine = g2_molecule("H3CNH2")
    n = int(np.flatnonzero(amine.numbers == 7)[0])
    bonded = [k for k in range(len(amine)) if k != n and amine.get_distance(n, k) < 1.6]
    bonds = amine.positions[bonded] - amine.positions[n]
    lone = -(bonds / np.linalg.norm(bonds, axis=1, keepdims=True)).sum(axis=0)
    h = amine.positions[n] + 1.03 * lone / np.linalg.norm(lone)
    out = amine + Atoms("H", positions=[h])
    out.info["charge"] = 1
    return out


def _naphthalene() -> Atoms:
    """C10H8 built from two ideal hexagons (C-C 1.40 Å, C-H 1.09 Å) in the xy plane."""
    cc, ch = 1.40, 1.09
    ring = [np.array([cc * np.cos(np.pi / 6 + k * np.pi / 3), cc * np.sin(np.pi / 6 + k * np.pi / 3), 0.0])
            for k in range(6)]
    shift = np.array([cc * np.sqrt(3) / 2, 0.0, 0.0])
    carbons = {tuple(np.round(p + s, 6)) for p in ring for s in (shift, -shift)}
    c = np.array(sorted(carbons))
    d = np.linalg.norm(c[:, None] - c[None], axis=-1)
    hydrogens = []
    for k in range(len(c)):
        nb = np.flatnonzero((d[k] > 0.1) & (d[k] < cc + 0.1))
        if len(nb) == 2:  # an outer CH carbon: H along the bisector away from its neighbours
            away = c[k] - c[nb].mean(axis=0)
            direction = away / np.linalg.norm(away)
            hydrogens.append(c[k] + ch * direction)
    return Atoms("C10H8", positions=np.vstack([c, hydrogens]))


_BUILT = {"formate": _formate, "methylammonium": _methylammonium, "naphthalene": _naphthalene}

#: every molecule name this module can build
MOLECULES: tuple[str, ...] = tuple(sorted({*_G2, *_BUILT}))


def molecule(name: str) -> Atoms:
    """Starting geometry of ``name`` (one of :data:`MOLECULES`), centred at its centre of mass."""
    if name in _BUILT:
        atoms = _BUILT[name]()
    elif name in _G2:
        atoms = g2_molecule(_G2[name])
    else:
        raise ValueError(f"unknown molecule {name!r}; known: {', '.join(MOLECULES)}")
    atoms.info.setdefault("charge", 0)
    atoms.info["molecule"] = name
    atoms.positions -= atoms.get_center_of_mass()
    return atoms


def relax(atoms: Atoms, teacher: Teacher, fmax: float, steps: int, what: str) -> Atoms:
    """``atoms`` relaxed in place with ``teacher`` (BFGS) to max force ``fmax`` eV/Å, its ``info`` kept and no
    calculator left; ``RuntimeError`` naming ``what`` if ``steps`` do not reach ``fmax``."""
    info = dict(atoms.info)
    atoms.calc = TeacherCalculator(teacher)
    if not BFGS(atoms, logfile=None).run(fmax=fmax, steps=steps):
        raise RuntimeError(f"{what} with {teacher.name} did not reach fmax={fmax} in {steps} steps")
    atoms.calc = None
    atoms.info = info
    return atoms


def optimised(name: str, teacher: Teacher, fmax: float = 1e-3, steps: int = 500) -> Atoms:
    """``molecule(name)`` relaxed with ``teacher`` to max force ``fmax`` eV/Å, centred at its COM."""
    atoms = relax(molecule(name), teacher, fmax, steps, f"optimising {name}")
    atoms.positions -= atoms.get_center_of_mass()
    return atoms
