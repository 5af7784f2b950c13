import json

import numpy as np
from ase.build import molecule
from ase.calculators.emt import EMT
from ase.io import write

from muse_ff.cli.main import main
from muse_ff.training.demo import demo_data


def _energy(atoms) -> float:
    atoms = atoms.copy()
    atoms.calc = EMT()
    return atoms.get_potential_energy()


def _dimers(n: int) -> list:
    """Water dimers with the demo dataset's info keys (split, separation, n_first, interaction_energy)."""
    rng = np.random.default_rng(0)
    frames = []
    for k in range(n):
        a, b = molecule("H2O"), molecule("H2O")
        sep = rng.uniform(2.8, 9.0)
        b.translate([0, 0, sep])
        ab = a + b
        ab.info.update(split=("train", "train", "valid", "test")[k % 4], separation=sep, n_first=3,
                       REF_energy=_energy(ab), interaction_energy=_energy(ab) - _energy(a) - _energy(b))
        ab.calc = EMT()
        ab.arrays["REF_forces"] = ab.get_forces()
        ab.calc = None
        frames.append(ab)
    return frames


def test_demo_trains_all_models_and_writes_table_plot_and_results(tmp_path, capsys):
    write(tmp_path / "d.extxyz", _dimers(16))
    out = tmp_path / "demo"
    assert main(["demo", "--epochs", "1", "--data", str(tmp_path / "d.extxyz"), "--output-dir", str(out),
                 "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "PaiNN" in text and "MuSE(PaiNN)" in text and "PaiNN+LES" in text and "Eint" in text
    assert (out / "demo.png").stat().st_size > 1000
    results = json.loads((out / "results.json").read_text())
    assert set(results["models"]) == {"PaiNN", "MuSE(PaiNN)", "PaiNN+LES", "PaiNN+phys", "MuSE-intra(PaiNN)+phys"}
    for r in results["models"].values():
        assert r["metrics"]["energy_mae"] > 0 and r["interaction_mae_meV"]


def test_shipped_demo_dataset_is_found():
    path = demo_data()
    assert path.suffix == ".extxyz" and path.stat().st_size > 0
