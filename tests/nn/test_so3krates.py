"""SO3krates: spherical harmonics, equivariance of the Euclidean variables, and the conformance suite."""

import numpy as np
import pytest
import torch

from muse_ff.config import ConfigError
from muse_ff.nn.backbones.so3krates import SO3krates
from muse_ff.nn.model import build_model
from muse_ff.nn.sph import cartesian_to_l1, l1_to_cartesian, spherical_harmonics
from muse_ff.testing.conformance import ModelConformance, random_rotation

#: a small, fast SO3krates for tests
SMALL_SO3KRATES = {"name": "so3krates", "features": 16, "heads": 2, "degrees": [1, 2], "layers": 2, "num_basis": 8}

DEGREES = [1, 2, 3, 4]  # the reference code's default degrees


def _unit_vectors(n: int, seed: int) -> torch.Tensor:
    u = torch.randn(n, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    return u / u.norm(dim=-1, keepdim=True)


def _blocks(y: torch.Tensor, degrees) -> list[torch.Tensor]:
    return list(y.split([2 * deg + 1 for deg in degrees], dim=-1))


def wigner_matrices(rot: torch.Tensor, degrees) -> list[torch.Tensor]:
    """D_l(R) with Y_l(R u) = D_l Y_l(u), fitted by least squares on random directions (exact if Y_l is right)."""
    u = _unit_vectors(64, 7)
    y, y_rot = spherical_harmonics(u, degrees), spherical_harmonics(u @ rot.T, degrees)
    mats = []
    for b, b_rot in zip(_blocks(y, degrees), _blocks(y_rot, degrees)):
        d_t = torch.linalg.lstsq(b, b_rot).solution
        assert torch.allclose(b @ d_t, b_rot, atol=1e-12)  # the span of each degree is rotation invariant
        mats.append(d_t.T)
    return mats


def test_spherical_harmonics_orthonormal_on_sphere():
    """Gauss-Legendre in cos(theta) x uniform phi integrates these degree <= 8 products exactly."""
    z, wz = np.polynomial.legendre.leggauss(8)
    phi = np.arange(16) * 2 * np.pi / 16
    zz, pp = np.meshgrid(z, phi, indexing="ij")
    s = np.sqrt(1 - zz**2)
    u = torch.tensor(np.stack([s * np.cos(pp), s * np.sin(pp), zz], -1).reshape(-1, 3))
    w = torch.tensor(np.repeat(wz[:, None], 16, 1).ravel() / 32.0)  # mean over the sphere
    y = spherical_harmonics(u, DEGREES)
    gram = (y * w[:, None]).T @ y
    torch.testing.assert_close(gram, torch.eye(24, dtype=torch.float64), atol=1e-13, rtol=0)


def test_spherical_harmonics_addition_theorem():
    """Component normalisation: sum_m Y_lm(u)^2 = 2l + 1 for every unit vector."""
    y = spherical_harmonics(_unit_vectors(100, 0), DEGREES)
    for deg, block in zip(DEGREES, _blocks(y, DEGREES)):
        torch.testing.assert_close((block**2).sum(-1), torch.full((100,), 2.0 * deg + 1, dtype=torch.float64))


def test_spherical_harmonics_rotate_with_orthogonal_wigner_matrices():
    rot = torch.tensor(random_rotation(3))
    mats = wigner_matrices(rot, DEGREES)
    for deg, d in zip(DEGREES, mats):
        torch.testing.assert_close(d @ d.T, torch.eye(2 * deg + 1, dtype=torch.float64), atol=1e-12, rtol=0)
        assert abs(torch.linalg.det(d) - 1.0) < 1e-12
    torch.testing.assert_close(mats[0], rot, atol=1e-12, rtol=0)  # degree 1 is sqrt(3) (x, y, z): D_1 = R


def test_l1_coordinates_round_trip_to_cartesian():
    u = _unit_vectors(10, 1)
    y1 = spherical_harmonics(u, [1]).unsqueeze(-1)  # [10, 3, 1]
    torch.testing.assert_close(l1_to_cartesian(y1).squeeze(-1), u)
    torch.testing.assert_close(cartesian_to_l1(l1_to_cartesian(y1)), y1)


def test_spherical_harmonics_are_e3nn_and_differentiable_twice():
    """Degree 4 (the reference code's default) works, and forces and Hessians can flow through the harmonics."""
    v = torch.randn(6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3), requires_grad=True)
    y = spherical_harmonics(v / v.norm(dim=-1, keepdim=True), [4])
    assert y.shape == (6, 9)
    (g,) = torch.autograd.grad(y.pow(3).sum(), v, create_graph=True)
    (h,) = torch.autograd.grad(g.sum(), v)
    assert torch.isfinite(h).all() and h.abs().max() > 0


def test_e3nn_import_leaves_the_global_safe_list_alone():
    """In a fresh interpreter: the harmonics work (e3nn imported) and ``slice`` is not allowlisted globally."""
    import subprocess
    import sys

    code = ("import torch, sys\n"
            "from muse_ff.nn.sph import spherical_harmonics\n"
            "y = spherical_harmonics(torch.tensor([[0.0, 0.0, 1.0]]), [1, 2])\n"
            "assert 'e3nn' in sys.modules and y.shape == (1, 8)\n"
            "print(slice in torch.serialization.get_safe_globals())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "False"


def _random_graph(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    pos = 3.0 * torch.rand(n, 3, dtype=torch.float64, generator=g)
    i, j = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    keep = i != j
    edge_index = torch.stack([i[keep], j[keep]])
    return pos, edge_index, torch.randn(n, 5, dtype=torch.float64, generator=g)


@pytest.mark.parametrize("vector_in", [0, 2])
def test_euclidean_variables_are_equivariant(vector_in):
    torch.manual_seed(0)
    model = SO3krates(5, cutoff=4.0, features=12, heads=3, degrees=DEGREES, layers=2, num_basis=6,
                      vector_in_features=vector_in).double()
    pos, edge_index, feats = _random_graph(7, 0)
    vec = torch.randn(7, 3, vector_in, dtype=torch.float64) if vector_in else None
    rot = torch.tensor(random_rotation(5))
    edges = pos[edge_index[1]] - pos[edge_index[0]]
    x, chi = model.encode(feats, edge_index, edges, vec)
    x_r, chi_r = model.encode(feats, edge_index, edges @ rot.T, None if vec is None else rot @ vec)
    torch.testing.assert_close(x_r, x, atol=1e-12, rtol=0)
    assert chi.abs().max() > 1e-3  # the Euclidean variables are actually populated
    for d, b, b_r in zip(wigner_matrices(rot, DEGREES), _blocks(chi, DEGREES), _blocks(chi_r, DEGREES)):
        torch.testing.assert_close(b_r, b @ d.T, atol=1e-12, rtol=0)
    out, out_r = model(feats, edge_index, edges, vec), model(feats, edge_index, edges @ rot.T,
                                                            None if vec is None else rot @ vec)
    assert out.vectors.shape == (7, 3, 1) and out.scalars.shape == (7, 12)
    torch.testing.assert_close(out_r.vectors, rot @ out.vectors, atol=1e-12, rtol=0)


def test_input_vectors_change_the_output():
    torch.manual_seed(0)
    model = SO3krates(5, cutoff=4.0, features=8, heads=2, degrees=[1, 2], layers=1, num_basis=4,
                      vector_in_features=1).double()
    pos, edge_index, feats = _random_graph(5, 1)
    edges = pos[edge_index[1]] - pos[edge_index[0]]
    vec = torch.randn(5, 3, 1, dtype=torch.float64)
    a = model(feats, edge_index, edges).scalars
    b = model(feats, edge_index, edges, vec).scalars
    assert (a - b).abs().max() > 1e-6


def test_raises_if_features_not_divisible_by_heads_or_degrees():
    with pytest.raises(ValueError, match="divisible"):
        SO3krates(4, features=10, heads=4, degrees=[1, 2])
    with pytest.raises(ValueError, match="divisible"):
        SO3krates(4, features=16, heads=4, degrees=[1, 2, 3])


def test_raises_if_degrees_invalid():
    with pytest.raises(ValueError, match="degrees"):
        SO3krates(4, features=16, heads=4, degrees=[1, 12])
    with pytest.raises(ValueError, match="degrees"):
        SO3krates(4, features=16, heads=4, degrees=[1, 1])
    with pytest.raises(ValueError, match="degree 1"):
        SO3krates(4, features=16, heads=4, degrees=[2], vector_in_features=3)


def test_config_raises_if_hyper_parameter_unknown():
    with pytest.raises(ConfigError, match="unknown hyper-parameter 'feature' for backbone 'so3krates'"):
        build_model({"backbone": {"name": "so3krates", "feature": 16}})


def test_config_builds_published_defaults():
    model = build_model({"backbone": {"name": "so3krates"}, "species": [1, 6]})
    bb = model.backbone
    assert (bb.out_features, bb.degrees, len(bb.layers), bb.cutoff, bb.vector_features) == (132, [1, 2, 3], 3, 5.0, 1)


class TestSO3krates(ModelConformance):
    config = {"backbone": SMALL_SO3KRATES, "levels": []}


class TestMuSESO3kratesTwoLevels(ModelConformance):
    config = {"backbone": SMALL_SO3KRATES, "levels": [{"ratio": 4}, {"ratio": 4}]}
