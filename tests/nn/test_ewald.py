"""muse_ff.nn.ewald: the periodic sums of the physical terms compile to TorchScript and equal torch-pme's own kernels."""

import warnings

import pytest
import torch

torchpme = pytest.importorskip("torchpme")

from muse_ff.nn.ewald import PeriodicSum, R6Potential  # noqa: E402


def test_r6_reciprocal_kernel_is_torch_pmes_to_the_last_bit():
    ours = R6Potential(1.6).double()
    theirs = torchpme.InversePowerLawPotential(exponent=6, smearing=1.6, prefactor=1.0).double()
    k_sq = torch.cat([torch.zeros(1), torch.logspace(-4, 2, 300)]).double()
    assert torch.equal(ours.lr_from_k_sq(k_sq), theirs.lr_from_k_sq(k_sq))
    r = torch.linspace(0.5, 15.0, 50, dtype=torch.float64)
    assert torch.equal(ours.lr_from_dist(r), theirs.lr_from_dist(r))


@pytest.mark.parametrize("methods, switches", [(("ewald", "pme"), (None, None)),
                                               (("pme", None), ((1.0, 3.0), None)),
                                               ((None, "ewald"), (None, (2.0, 13.0)))])
def test_periodic_sum_scripted_equals_eager_with_forces(methods, switches):
    torch.manual_seed(0)
    eager = PeriodicSum(1.0, switches[0], switches[1], 12.0, 2.0, 1.6, 1.6, methods[0], methods[1], None, None, 5,
                        1e-5).double()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.script(eager)
    n = 9
    pos = torch.rand(n, 3, dtype=torch.float64) * 8.0
    cell = torch.eye(3, dtype=torch.float64) * 8.0 + 0.3 * torch.rand(3, 3, dtype=torch.float64)
    q = torch.randn(n, dtype=torch.float64)
    c = torch.rand(n, dtype=torch.float64)
    rho = 1.0 + torch.rand(n, dtype=torch.float64)
    out = []
    for module in (eager, scripted):
        p = pos.clone().requires_grad_()
        e = module(p, cell, q, c, rho)
        out.append((e.detach(), torch.autograd.grad(e.sum(), p)[0]))
    assert out[0][0].abs().sum() > 1e-5
    torch.testing.assert_close(out[1][0], out[0][0], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(out[1][1], out[0][1], rtol=1e-12, atol=1e-14)
