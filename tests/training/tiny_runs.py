"""Tiny labelled datasets and training configs for training tests (EMT water dimers: 6 atoms, fast).

A plain module (not a conftest) so that tests outside this folder (``tests/reliability``) can import it
after putting this folder on ``sys.path``; ``conftest.py`` here offers the same helpers as fixtures.
"""

from __future__ import annotations

import numpy as np
from ase.build import molecule
from ase.calculators.emt import EMT


def water_dimers(n: int, seed: int = 0, splits: bool = True) -> list:
    """``n`` rattled water dimers at 2.6-6 Å labelled with ASE's EMT; info ``split`` cycles train/valid/test."""
    rng = np.random.default_rng(seed)
    frames = []
    for k in range(n):
        a, b = molecule("H2O"), molecule("H2O")
        b.rotate(rng.uniform(0, 360), rng.normal(size=3), center="COM")
        b.translate([0.0, 0.0, rng.uniform(2.6, 6.0)])
        atoms = a + b
        atoms.positions += rng.normal(0, 0.03, atoms.positions.shape)
        atoms.calc = EMT()
        atoms.info["REF_energy"] = atoms.get_potential_energy()
        atoms.arrays["REF_forces"] = atoms.get_forces()
        atoms.calc = None
        if splits:
            atoms.info["split"] = ("train", "train", "train", "valid", "test")[k % 5] if k >= 2 else "train"
        frames.append(atoms)
    return frames


def tiny_config(data, output_dir, **training) -> dict:
    """A training config small enough for a test (seconds)."""
    t = {"epochs": 3, "batch_size": 4, "lr": 5e-3, "ema_decay": None, "checkpoint_every": 1,
         "output_dir": str(output_dir), "shuffle": False, "schedule": "constant"}
    t.update(training)
    return {"model": {"backbone": {"name": "painn", "features": 8, "layers": 1, "num_basis": 6}, "cutoff": 4.0},
            "data": {"train": str(data), "split_key": "split"}, "training": t}
