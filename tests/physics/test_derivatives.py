"""Hessians, Hessian-vector products, partial Hessians and stress, all from the one derivatives module."""

import numpy as np
import pytest
import torch
from ase.build import molecule

from muse_ff.physics import (
    energy_and_derivatives,
    hessian,
    hessian_rows,
    hessian_vector_product,
    partial_hessian,
)


@pytest.fixture
def graph(small_model):
    atoms = molecule("CH3CH2OH")
    atoms.rattle(0.03, seed=1)
    return small_model.graph_from_atoms(atoms)


def test_vmap_and_loop_hessians_agree(small_model, graph):
    h_vmap = hessian(small_model, graph, chunk=7, vectorize=True)
    h_loop = hessian(small_model, graph, vectorize=False)
    assert h_vmap.shape == (27, 27)
    torch.testing.assert_close(h_vmap, h_loop, rtol=1e-12, atol=1e-12)


def test_hessian_is_jacobian_of_minus_forces(small_model, graph):
    h = hessian(small_model, graph)
    pos = graph.positions.clone().requires_grad_(True)

    def grad_fn(x):
        e = small_model(graph, positions=x)["energy"].sum()
        return torch.autograd.grad(e, x, create_graph=True)[0].reshape(-1)

    jac = torch.autograd.functional.jacobian(grad_fn, pos).reshape(27, 27)
    torch.testing.assert_close(h, jac, rtol=1e-10, atol=1e-12)


def test_hessian_vector_product_equals_full_hessian_times_vector(small_model, graph):
    v = torch.randn(graph.num_atoms, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    hv = hessian_vector_product(small_model, graph, v)
    full = hessian(small_model, graph)
    torch.testing.assert_close(hv.reshape(-1), full @ v.reshape(-1), rtol=1e-10, atol=1e-12)


def test_partial_hessian_gives_rows_of_selected_atoms(small_model, graph):
    part = partial_hessian(small_model, graph, [2, 5])
    full = hessian(small_model, graph)
    rows = [6, 7, 8, 15, 16, 17]
    torch.testing.assert_close(part, full[rows], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(hessian_rows(small_model, graph, torch.tensor([0])), full[:1])


def test_hessian_raises_for_a_batch(small_model):
    g = small_model.graph_from_atoms([molecule("H2O"), molecule("CH4")])
    with pytest.raises(ValueError, match="one structure at a time"):
        hessian(small_model, g)


def test_stress_raises_without_full_periodicity(small_model, graph):
    with pytest.raises(ValueError, match="periodic"):
        energy_and_derivatives(small_model, graph, stress=True)


def test_energy_is_float64_for_float32_model():
    from muse_ff import build_model

    torch.manual_seed(0)
    model = build_model({"backbone": {"name": "painn", "features": 8}})
    model.reference.set(e0=torch.full((118,), -100000.123456789))  # 1.2e6 eV in total: float32 would lose ~0.1 eV
    model64 = build_model({"backbone": {"name": "painn", "features": 8}, "dtype": "float64"})
    model64.load_state_dict(model.state_dict())
    atoms = molecule("C6H6")
    g = model.graph_from_atoms(atoms)
    out32 = energy_and_derivatives(model, g.to(dtype=torch.float32))
    out64 = energy_and_derivatives(model64, g)
    assert out32["energy"].dtype == torch.float64 and out32["forces"].dtype == torch.float32
    assert abs(float(out32["energy"][0].detach() - out64["energy"][0].detach())) < 1e-4
    torch.testing.assert_close(out32["forces"].double(), out64["forces"], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("levels", [[], [{}]])
@pytest.mark.parametrize("name", ["CH4", "C6H6"])
def test_hessian_does_not_spike_at_symmetric_geometries(levels, name):
    """Vectors that vanish by symmetry must not make the curvature singular: the Hessian at the symmetric
    geometry and 0.01 Å away from it are close (a norm sqrt(|v|^2 + 1e-8) failed this by 20x for CH4)."""
    from muse_ff import MuSECalculator, build_model

    torch.manual_seed(0)
    model = build_model({"backbone": {"name": "painn", "features": 16, "layers": 2}, "levels": levels,
                         "dtype": "float64"})
    sym = molecule(name)
    near = sym.copy()
    near.rattle(0.01, seed=0)
    h_sym = MuSECalculator(model).get_hessian(sym)
    h_near = MuSECalculator(model).get_hessian(near)
    assert np.linalg.norm(h_sym - h_near) < 0.2 * np.linalg.norm(h_near)
