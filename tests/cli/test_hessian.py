import json

import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule
from ase.io import read, write

from muse_ff import MuSECalculator
from muse_ff.analysis.vibrations import harmonic_analysis, rigid_body_basis
from muse_ff.cli.main import main


def _diatomic_near_minimum(model_file) -> Atoms:
    """CO at the bond length of lowest energy on a scan (this untrained model has an interior minimum)."""
    calc = MuSECalculator(str(model_file))
    scan = []
    for r in np.linspace(0.7, 3.5, 57):
        atoms = Atoms("CO", positions=[[0, 0, 0], [0, 0, r]])
        atoms.calc = calc
        scan.append((atoms.get_potential_energy(), r))
    energy, r = min(scan)
    assert 0.7 < r < 3.5, "the test model has no interior minimum along the CO bond"
    return Atoms("CO", positions=[[0, 0, 0], [0.05, 0.02, r]])  # slightly off: the optimiser fixes it


def test_hessian_projects_out_rigid_motions_and_writes_modes(model_file, tmp_path, capsys):
    write(tmp_path / "co.xyz", _diatomic_near_minimum(model_file))
    modes = tmp_path / "modes.extxyz"
    rc = main(["hessian", str(model_file), str(tmp_path / "co.xyz"), "--optimize", "--fmax", "1e-6",
               "--modes", str(modes), "--hessian-out", str(tmp_path / "h.npy"), "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["frequencies_cm1"]) == 1 and len(out["rigid_cm1"]) == 5  # linear: 3N - 5 modes
    # translations are exact zero modes of an invariant model; rotations vanish at a stationary point
    assert np.abs(out["rigid_cm1"]).max() < 1.0
    assert out["frequencies_cm1"][0] > 10.0
    frames = read(modes, ":")
    assert len(frames) == 1 and frames[0].arrays["mode"].shape == (2, 3)
    np.testing.assert_allclose(frames[0].info["frequency_cm1"], out["frequencies_cm1"][0], rtol=1e-6)
    h = np.load(tmp_path / "h.npy")
    np.testing.assert_allclose(h, h.T, atol=1e-8)


def test_translations_are_exact_zero_modes_anywhere(model_file):
    atoms = molecule("CH3OH")
    hess = MuSECalculator(str(model_file)).get_hessian(atoms)
    for axis in range(3):
        t = np.zeros((len(atoms), 3))
        t[:, axis] = 1.0
        assert np.abs(hess @ t.reshape(-1)).max() < 1e-8


def test_hessian_table_output(model_file, tmp_path, capsys):
    write(tmp_path / "m.xyz", molecule("CH3OH"))
    assert main(["hessian", str(model_file), str(tmp_path / "m.xyz"), "--modes", str(tmp_path / "m.extxyz")]) == 0
    out = capsys.readouterr().out
    assert "12 vibrational modes (6 rigid-body motions projected out" in out


def test_harmonic_analysis_matches_ase_vibrations_on_emt():
    from ase.calculators.emt import EMT
    from ase.optimize import BFGS
    from ase.vibrations import VibrationsData

    atoms = molecule("CH4")
    atoms.calc = EMT()
    BFGS(atoms, logfile=None).run(fmax=1e-6)
    # central finite-difference Hessian
    n3, d = 3 * len(atoms), 1e-3
    hess = np.zeros((n3, n3))
    pos0 = atoms.positions.copy()
    for k in range(n3):
        for sign in (1, -1):
            atoms.positions = pos0.copy()
            atoms.positions.reshape(-1)[k] += sign * d
            hess[k] -= sign * atoms.get_forces().reshape(-1) / (2 * d)
    atoms.positions = pos0
    ours = harmonic_analysis(hess, atoms.get_masses(), atoms.positions)
    ase_freqs = VibrationsData.from_2d(atoms, hess).get_frequencies()
    real = np.sort(ase_freqs.real[np.abs(ase_freqs.imag) < 1e-9])[-4:]
    np.testing.assert_allclose(np.sort(ours.frequencies_cm1)[-4:], real, rtol=1e-6)
    assert len(ours.frequencies_cm1) == 9 and len(ours.rigid_cm1) == 6


@pytest.mark.parametrize("name, k", [("CO2", 5), ("CH4", 6)])
def test_rigid_basis_has_five_motions_for_a_linear_molecule(name, k):
    atoms = molecule(name)
    q = rigid_body_basis(atoms.positions, atoms.get_masses())
    assert q.shape == (3 * len(atoms), k)
    np.testing.assert_allclose(q.T @ q, np.eye(k), atol=1e-10)
