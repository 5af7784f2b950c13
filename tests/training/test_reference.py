import numpy as np
import torch
from ase import Atoms

from muse_ff.data.atoms import atoms_to_graph
from muse_ff.training.reference import fit_reference


def _graph(symbols: str, energy: float):
    atoms = Atoms(symbols)
    atoms.positions = np.arange(3 * len(atoms)).reshape(-1, 3) * 1.3
    g = atoms_to_graph(atoms, 3.0, keys=None)
    g.energy = torch.tensor([energy], dtype=torch.float64)
    return g


def test_full_rank_fit_recovers_element_energies():
    e0 = {"H": -13.6, "C": -1030.0, "O": -2040.0}
    comps = ["CH4", "H2O", "CO2", "C2H6O", "H2"]
    from ase.symbols import string2symbols

    graphs = [_graph(c, sum(e0[s] for s in string2symbols(c))) for c in comps]
    fit = fit_reference(graphs, [1, 6, 8])
    assert fit.rank == 3 and not fit.rank_deficient
    np.testing.assert_allclose(fit.e0, [-13.6, -1030.0, -2040.0], atol=1e-8)
    assert abs(fit.shift) < 1e-8


def test_rank_deficient_fit_reproduces_the_single_composition():
    """Every frame C2H6 (rank 1): minimum-norm E0 still gives the mean energy of that composition."""
    rng = np.random.default_rng(0)
    energies = -2100.0 + rng.normal(0, 0.1, 8)
    graphs = [_graph("C2H6", e) for e in energies]
    fit = fit_reference(graphs, [1, 6, 8])
    assert fit.rank == 1 and fit.rank_deficient and np.all(np.isfinite(fit.e0))
    predicted = 2 * fit.e0[1] + 6 * fit.e0[0] + 8 * fit.shift
    assert np.isclose(predicted, energies.mean(), atol=1e-8)
    np.testing.assert_allclose(fit.e0[1] / fit.e0[0], 2 / 6)  # minimum norm: proportional to counts
    assert fit.e0[2] == energies.mean() / 8  # absent element: mean energy per atom


def test_scale_is_force_rms_when_forces_are_present():
    g = _graph("H2O", -10.0)
    g.forces = torch.tensor([[3.0, 0, 0], [0, 4.0, 0], [0, 0, 0]], dtype=torch.float64)
    fit = fit_reference([g, _graph("H2O", -10.5)], [1, 8])
    assert np.isclose(fit.scale, np.sqrt(25.0 / 9.0))
