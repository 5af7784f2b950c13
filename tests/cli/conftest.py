"""Small models and labelled structures for CLI smoke tests (no training: untrained models suffice)."""

import numpy as np
import pytest
import torch
from ase.build import molecule
from ase.calculators.emt import EMT
from ase.io import write

from muse_ff import build_model, save_model


@pytest.fixture(scope="session")
def model_file(tmp_path_factory):
    """An untrained float64 MuSE(PaiNN) with one coarse level (H, C, O), saved to model.pt."""
    torch.manual_seed(0)
    model = build_model({"species": ["H", "C", "O"], "dtype": "float64", "levels": [{}],
                         "backbone": {"name": "painn", "features": 8, "layers": 1, "num_basis": 6}})
    model.reference.set(e0=[-13.6, -1030.0, -2040.0], scale=0.5)
    path = tmp_path_factory.mktemp("model") / "model.pt"
    save_model(model, path)
    return path


@pytest.fixture(scope="session")
def labelled_file(tmp_path_factory):
    """Eight rattled methanol molecules labelled with EMT (energy, forces)."""
    rng = np.random.default_rng(1)
    frames = []
    for _ in range(8):
        atoms = molecule("CH3OH")
        atoms.positions += rng.normal(0, 0.05, atoms.positions.shape)
        atoms.calc = EMT()
        atoms.info["REF_energy"] = atoms.get_potential_energy()
        atoms.arrays["REF_forces"] = atoms.get_forces()
        atoms.calc = None
        frames.append(atoms)
    path = tmp_path_factory.mktemp("data") / "methanol.extxyz"
    write(path, frames)
    return path
