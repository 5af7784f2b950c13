"""The teacher interface: a reference method that labels structures with energies, forces and stress.

Units and conventions (the same as ASE and the rest of MuSE):

- ``energy``: total energy, eV (float).
- ``forces``: ``[N, 3]`` float64, eV/Å, ``F = -dE/dR``.
- ``stress``: ``[3, 3]`` float64, eV/Å^3, only for fully periodic cells, ASE sign convention
  ``sigma = (1/V) dE/d(strain)`` (positive under tension, i.e. when the cell wants to shrink).
"""

from __future__ import annotations

import hashlib
import importlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import numpy as np
from ase import Atoms

from muse_ff.errors import MuseError


class TeacherError(MuseError, RuntimeError):
    """A teacher cannot be created (missing package, bad settings) or failed on a structure.

    A :class:`~muse_ff.errors.MuseError`: the ``muse`` command reports it as one sentence.
    """


class MissingTeacherPackage(TeacherError, ImportError):
    """An optional teacher package (tblite, openmm, ...) is not installed."""


def require(module: str, teacher: str) -> ModuleType:
    """Import ``module`` lazily, or raise :class:`MissingTeacherPackage` saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        top = module.split(".")[0]
        raise MissingTeacherPackage(
            f"the {teacher!r} teacher needs the Python package {top!r}, which cannot be imported ({err}). "
            f"Install the optional teachers with `pip install 'muse-ff[teachers]'` "
            f"(or `pip install tblite openmm pdbfixer rdkit`)."
        ) from err


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes (recorded in provenance so a topology file is pinned)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@dataclass(frozen=True)
class Label:
    """One structure's labels. ``forces``: [N, 3] eV/Å; ``stress``: [3, 3] eV/Å^3 or ``None``; ``dipole``: [3]
    e Å (free structures, teachers that give it) or ``None``."""

    energy: float
    forces: np.ndarray
    stress: np.ndarray | None = None
    dipole: np.ndarray | None = None

    def __post_init__(self) -> None:
        forces = np.asarray(self.forces, dtype=np.float64)
        if forces.ndim != 2 or forces.shape[1] != 3:
            raise TeacherError(f"teacher forces must have shape [N, 3], got {forces.shape}")
        object.__setattr__(self, "forces", forces)
        object.__setattr__(self, "energy", float(self.energy))
        if self.stress is not None:
            object.__setattr__(self, "stress", np.asarray(self.stress, dtype=np.float64).reshape(3, 3))
        if self.dipole is not None:
            object.__setattr__(self, "dipole", np.asarray(self.dipole, dtype=np.float64).reshape(3))
        bad = [k for k, v in (("energy", self.energy), ("forces", forces), ("stress", self.stress),
                              ("dipole", self.dipole))
               if v is not None and not np.isfinite(v).all()]
        if bad:
            raise TeacherError(f"teacher returned non-finite {', '.join(bad)}")


class Teacher(ABC):
    """A reference method. Subclasses set :attr:`name`, implement :meth:`version` and :meth:`label`.

    ``settings`` are keyword arguments validated in ``__init__``; every setting that can change a label is
    recorded by :meth:`provenance`. Settings that only change speed (``threads``) are not recorded.
    """

    #: the name used on the command line and stored in every labelled frame
    name: ClassVar[str] = ""
    #: settings that change only speed, not results (left out of provenance)
    speed_settings: ClassVar[tuple[str, ...]] = ("threads",)

    def __init__(self, **settings: Any) -> None:
        self.settings: dict[str, Any] = dict(settings)

    @abstractmethod
    def version(self) -> str:
        """The backend and its version, e.g. ``'tblite 0.8.0'``."""

    @abstractmethod
    def label(self, atoms: Atoms) -> Label:
        """Energy (eV), forces (eV/Å) and, for periodic cells, stress (eV/Å^3) of ``atoms``.

        Raises :class:`TeacherError` when the method fails on this structure (e.g. SCF not converged).
        """

    def provenance(self) -> dict[str, str]:
        """What produced a label: ``teacher``, ``teacher_version``, ``teacher_settings`` (sorted JSON)."""
        recorded = {k: v for k, v in self.settings.items() if k not in self.speed_settings}
        return {
            "teacher": self.name,
            "teacher_version": self.version(),
            "teacher_settings": json.dumps(recorded, sort_keys=True, default=str),
        }


def check_settings(name: str, given: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """``defaults`` updated with ``given``; raise :class:`TeacherError` naming any unknown setting."""
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise TeacherError(
            f"unknown setting(s) {unknown} for teacher {name!r}; known settings: {sorted(defaults)}"
        )
    return {**defaults, **given}
