"""An ASE calculator around any :class:`~muse_ff.teachers.base.Teacher` (for optimisation and MD)."""

from __future__ import annotations

from ase.calculators.calculator import Calculator, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from muse_ff.teachers.base import Teacher


class TeacherCalculator(Calculator):
    """ASE calculator giving a teacher's ``energy`` (eV), ``forces`` (eV/Å), ``stress`` (eV/Å^3, Voigt)."""

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, teacher: Teacher, **kwargs):
        super().__init__(**kwargs)
        self.teacher = teacher

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        label = self.teacher.label(self.atoms)
        self.results = {"energy": label.energy, "free_energy": label.energy, "forces": label.forces}
        if label.stress is not None:
            self.results["stress"] = full_3x3_to_voigt_6_stress(label.stress)
