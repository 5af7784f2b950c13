"""Teachers: reference methods that produce the labels MuSE learns from (see ``docs/DATASETS.md``).

=================  ==============================================  ==================================
name               method                                          backend (optional extra ``teachers``)
=================  ==============================================  ==================================
``gfn1-xtb``       GFN1-xTB tight binding                          ``tblite``
``gfn2-xtb``       GFN2-xTB tight binding                          ``tblite``
``amber14-gbn2``   Amber ff14SB + GBn2 implicit solvent, no cutoff  ``openmm`` (topology from a PDB)
=================  ==============================================  ==================================

The backends are imported only when a teacher is created, with an error saying how to install them.
"""

from __future__ import annotations

from typing import Any

from muse_ff.teachers.amber import AmberGBn2Teacher
from muse_ff.teachers.base import Label, MissingTeacherPackage, Teacher, TeacherError
from muse_ff.teachers.calculator import TeacherCalculator
from muse_ff.teachers.labelling import LabelReport, label_file, label_frames
from muse_ff.teachers.xtb import GFN1Teacher, GFN2Teacher

#: teacher name -> class (explicit map, no registry)
TEACHERS: dict[str, type[Teacher]] = {
    GFN1Teacher.name: GFN1Teacher,
    GFN2Teacher.name: GFN2Teacher,
    AmberGBn2Teacher.name: AmberGBn2Teacher,
}


def get_teacher_class(name: str) -> type[Teacher]:
    """The :class:`Teacher` subclass called ``name``; raise ``ValueError`` listing the known names."""
    try:
        return TEACHERS[name]
    except KeyError:
        raise ValueError(f"unknown teacher {name!r}; choose one of {sorted(TEACHERS)}") from None


def get_teacher(name: str, **settings: Any) -> Teacher:
    """A ready teacher, e.g. ``get_teacher('gfn2-xtb', accuracy=0.1)``."""
    return get_teacher_class(name)(**settings)


__all__ = [
    "AmberGBn2Teacher", "GFN1Teacher", "GFN2Teacher", "Label", "LabelReport", "MissingTeacherPackage",
    "TEACHERS", "Teacher", "TeacherCalculator", "TeacherError", "get_teacher", "get_teacher_class", "label_file",
    "label_frames",
]
