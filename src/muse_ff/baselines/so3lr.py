"""Pretrained SO3LR as a zero-shot baseline, through the package ``so3krates-torch`` (MIT).

SO3LR: A. Kabylda, J. T. Frank, S. Suárez-Dou, A. Khabibrakhmanov, L. Medrano Sandonas, O. T. Unke,
S. Chmiela, K.-R. Müller, A. Tkatchenko, "Molecular Simulations with a Pretrained Neural Network and
Universal Pairwise Force Fields", J. Am. Chem. Soc. 2025 (SO3krates short-range network + electrostatics
from predicted partial charges + Tkatchenko-Scheffler-like dispersion + ZBL repulsion, trained on
PBE0+MBD(-NL) data). The PyTorch port and its packaged weights
(``so3krates_torch/pretrained/so3lr/so3lr.model``) are T. Henkes' ``so3krates-torch``
(https://github.com/tohenkes/So3krates-torch).

The weights file is a full pickle (``torch.load(weights_only=False)`` of the model object): it is loaded
only by so3krates-torch's own :class:`SO3LRCalculator`, never by :func:`muse_ff.load_model` (which
refuses it). Install the extra with ``pip install "muse-ff[so3lr]"`` (``so3krates-torch==0.2.1``).

Charges: the model takes **one total charge per structure** (``atoms.info['charge']``, default 0), used
as an input embedding and as the constraint of its charge equilibration over the whole structure. A charge
per fragment *inside* one structure cannot be given; evaluate the fragments as structures of their own
(each with its own ``info['charge']``) for interaction energies.
"""

from __future__ import annotations

import torch

#: the extra that installs the package
EXTRA = "so3lr"
REQUIREMENT = "so3krates-torch==0.2.1"
#: long-range cutoff (Å) used when none is given, for gas-phase structures up to ~25 Å across: so3krates-torch
#: switches the (shifted-force) Coulomb term off smoothly between 0.45 r_max_lr and r_max_lr
DEFAULT_R_MAX_LR = 100.0


def _import_calculator():
    try:
        from so3krates_torch.calculator.so3 import SO3LRCalculator
    except ImportError as err:
        raise ImportError(f"the SO3LR baseline needs the package so3krates-torch: pip install "
                          f"\"muse-ff[{EXTRA}]\" (or pip install {REQUIREMENT}); import failed: {err}") from err
    return SO3LRCalculator


def so3lr_calculator(r_max_lr: float = DEFAULT_R_MAX_LR, dtype: str = "float64", device: str = "cpu",
                     dispersion_damping: float = 2.0):
    """An ASE calculator for the pretrained SO3LR (energy in eV, forces in eV/Å).

    ``r_max_lr``: cutoff (Å) of the electrostatic and dispersion sums (so3krates-torch's default: 12 Å).
    Its Coulomb term is shifted-force and switched off between 0.45 ``r_max_lr`` and ``r_max_lr``, so
    for gas-phase structures use more than the largest interatomic distance / 0.45 (the default 100 Å
    serves ~40 Å; a periodic cell with a large ``r_max_lr`` gets a large long-range neighbour list).

    ``dtype``: the model is stored in float32; ``"float64"`` (default) evaluates an upcast copy, so
    that differences of large total energies (interaction energies) are not float32 rounding.

    ``dispersion_damping``: so3krates-torch's ``dispersion_energy_cutoff_lr_damping`` (the width of
    the dispersion switch-off below ``r_max_lr``; its SO3LRCalculator default, 2.0).

    The total charge is read from ``atoms.info['charge']`` at every call (a changed charge is
    recomputed, unlike a plain ASE cache, which ignores ``info``). torch's default dtype is left as
    it was.
    """
    base = _import_calculator()

    class MuseSO3LRCalculator(base):
        """so3krates-torch's SO3LRCalculator that keeps torch's default dtype and sees charge changes."""

        def check_state(self, atoms, tol=1e-15):
            changes = super().check_state(atoms, tol)
            if self.atoms is not None and atoms.info.get("charge", 0) != self.atoms.info.get("charge", 0):
                changes = [*changes, "charge"]
            return changes

        def calculate(self, atoms=None, properties=None, system_changes=None):
            previous = torch.get_default_dtype()
            torch.set_default_dtype(self.model_dtype)  # AtomicData builds its tensors in the default dtype
            try:
                if system_changes is None:
                    super().calculate(atoms, properties)
                else:
                    super().calculate(atoms, properties, system_changes)
            finally:
                torch.set_default_dtype(previous)

    previous = torch.get_default_dtype()
    try:
        calc = MuseSO3LRCalculator(r_max_lr=float(r_max_lr), default_dtype=dtype, device=device,
                                   dispersion_energy_cutoff_lr_damping=float(dispersion_damping))
    finally:
        torch.set_default_dtype(previous)
    calc.model_dtype = next(calc.models[0].parameters()).dtype
    return calc
