"""D3(BJ) dispersion baseline (muse_ff.nn.d3): reference agreement, derivatives, invariances, tail, batches."""

import importlib.util
import math
import sys

import numpy as np
import pytest
import torch
from ase.build import molecule

from muse_ff.errors import MuseError
from muse_ff.nn import d3 as d3_module
from muse_ff.nn.d3 import (
    BOHR,
    HARTREE,
    D3Dispersion,
    D3Error,
    D3PeriodicError,
    D3SizeError,
    MissingD3Package,
)

F64 = torch.float64
needs_tad = pytest.mark.skipif(importlib.util.find_spec("tad_dftd3") is None, reason="tad-dftd3 not installed")


def _dimer(name: str, shift: float):
    """Two copies of ASE's ``name`` molecule, the second moved by ``shift`` Å along z."""
    a, b = molecule(name), molecule(name)
    b.translate([0.0, 0.0, shift])
    return a + b


def _inputs(frames, dtype=F64):
    """Batched model inputs for a list of free ase.Atoms."""
    species = torch.tensor(np.concatenate([f.numbers for f in frames]), dtype=torch.int64)
    pos = torch.tensor(np.concatenate([f.positions for f in frames]), dtype=dtype)
    cell = torch.zeros(len(frames), 3, 3, dtype=F64)
    pbc = torch.zeros(len(frames), 3, dtype=torch.bool)
    ptr = torch.tensor(np.cumsum([0] + [len(f) for f in frames]))
    return species, pos, cell, pbc, ptr


def _energy(model, z, pos) -> torch.Tensor:
    """Total energy (eV) of one free frame."""
    n = len(z)
    return model(z, pos, torch.zeros(1, 3, 3, dtype=F64), torch.zeros(1, 3, dtype=torch.bool),
                 torch.tensor([0, n])).sum()


@needs_tad
@pytest.mark.parametrize("three_body", [False, True])
@pytest.mark.parametrize("name,shift", [("H2O", 2.9), ("C6H6", 3.7)])
def test_reference_dftd3(name, shift, three_body):
    """Energy, per-atom sum and forces agree with s-dftd3 (the ``dftd3`` package) for PBE0-D3(BJ)."""
    interface = pytest.importorskip("dftd3.interface")
    atoms = _dimer(name, shift)
    model = D3Dispersion("pbe0", three_body=three_body)
    z, pos, cell, pbc, ptr = _inputs([atoms])
    pos.requires_grad_(True)
    per_atom = model(z, pos, cell, pbc, ptr)
    assert per_atom.shape == (len(atoms),) and per_atom.dtype == F64
    energy = per_atom.sum()
    (grad,) = torch.autograd.grad(energy, pos)
    ref = interface.DispersionModel(atoms.numbers, atoms.positions / BOHR).get_dispersion(
        interface.RationalDampingParam(method="pbe0", atm=three_body), grad=True)
    # measured: two-body 1e-12 eV; with ATM up to 1.5e-9 eV (benzene dimer), gradients 1e-11 eV/Å
    assert float(energy.detach()) == pytest.approx(ref["energy"] * HARTREE, abs=1e-8)
    np.testing.assert_allclose(grad.numpy(), ref["gradient"] * HARTREE / BOHR, atol=1e-9)
    assert float(energy.detach()) < 0


@needs_tad
def test_parameters_from_table():
    """PBE0-D3(BJ) from tad-dftd3's table (Grimme, Ehrlich, Goerigk 2011); s9 only with the three-body term."""
    p = D3Dispersion("PBE0").d3_params
    assert (p["s6"], p["s8"], p["a1"], p["a2"], p["s9"]) == (1.0, 1.2177, 0.4145, 4.8593, 0.0)
    assert D3Dispersion("pbe0", three_body=True).d3_params["s9"] == 1.0
    assert D3Dispersion("pbe0", params={"s8": 0.5}).d3_params["s8"] == 0.5
    assert D3Dispersion().cutoffs_bohr == {"disp2": 60.0, "disp3": 40.0, "cn": 40.0}
    with pytest.raises(D3Error, match="no D3"):
        D3Dispersion("not-a-functional")
    with pytest.raises(D3Error, match="unknown D3"):
        D3Dispersion(params={"s7": 1.0})


@needs_tad
@pytest.mark.parametrize("three_body", [False, True])
def test_forces_and_hessian_finite_differences(three_body):
    """Autograd forces = -dE/dx and the autograd Hessian = d(grad)/dx, by central differences in float64."""
    atoms = _dimer("H2O", 2.9)
    model = D3Dispersion(three_body=three_body)
    z = torch.tensor(atoms.numbers)
    x0 = torch.tensor(atoms.positions, dtype=F64)

    def grad_at(x):
        x = x.clone().requires_grad_(True)
        return torch.autograd.grad(_energy(model, z, x), x)[0]

    g = grad_at(x0)
    h = 1e-4
    fd = torch.zeros_like(x0)
    for i in range(x0.shape[0]):
        for k in range(3):
            xp, xm = x0.clone(), x0.clone()
            xp[i, k] += h
            xm[i, k] -= h
            fd[i, k] = (_energy(model, z, xp) - _energy(model, z, xm)) / (2 * h)
    torch.testing.assert_close(g, fd, atol=1e-9, rtol=1e-6)
    # Hessian of the first three atoms' coordinates (autograd, double backward) against FD of the gradient
    sub = x0[:3].clone().requires_grad_(True)
    hess = torch.autograd.functional.hessian(lambda s: _energy(model, z, torch.cat([s, x0[3:]])), sub)
    hess = hess.reshape(9, 9)
    torch.testing.assert_close(hess, hess.T, atol=1e-12, rtol=0)
    for j in range(9):
        i, k = divmod(j, 3)
        xp, xm = x0.clone(), x0.clone()
        xp[i, k] += h
        xm[i, k] -= h
        col = ((grad_at(xp) - grad_at(xm)) / (2 * h))[:3].reshape(9)
        torch.testing.assert_close(hess[:, j], col, atol=1e-7, rtol=1e-5)


@needs_tad
def test_invariances():
    """Rotation, translation and permutation: the energy is unchanged; per-atom energies follow the atoms."""
    atoms = _dimer("H2O", 2.9)
    model = D3Dispersion(three_body=True)
    z = torch.tensor(atoms.numbers)
    x = torch.tensor(atoms.positions, dtype=F64)
    free = (torch.zeros(1, 3, 3, dtype=F64), torch.zeros(1, 3, dtype=torch.bool), torch.tensor([0, len(z)]))
    e = model(z, x, *free)
    q, _ = torch.linalg.qr(torch.randn(3, 3, dtype=F64, generator=torch.Generator().manual_seed(1)))
    moved = x @ q.T + torch.tensor([3.0, -7.0, 11.0], dtype=F64)
    torch.testing.assert_close(model(z, moved, *free), e, atol=1e-12, rtol=1e-10)
    perm = torch.randperm(len(z), generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(model(z[perm], x[perm], *free), e[perm], atol=1e-12, rtol=1e-10)


@needs_tad
@pytest.mark.parametrize("three_body", [False, True])
def test_tail_falls_like_r6(three_body):
    """Interaction energy of two rigid methanes: E(20 Å) / E(40 Å) ~ 2^6 = 64 with no dispersion cutoff.

    The C8/R^8 term adds ~2% at 20 Å (measured ratios 65.2 at 20/40 Å, 64.4 at 40/80 Å); the ATM term's
    intermolecular triples (two atoms in one molecule, one in the other) also fall like R^-6, so they only
    rescale the effective C6 (by -0.7%) and the ratio stays ~64. The coordination-number cutoff stays at its
    default (21.17 Å): without it the counting function's floor, 1/(1 + e^16) per far atom pair, shifts every
    C6 by an amount that does not decay (+4e-9 eV for these two methanes at any separation).
    """
    mono = molecule("CH4")
    z1 = torch.tensor(mono.numbers)
    x1 = torch.tensor(mono.positions, dtype=F64)
    z2 = torch.cat([z1, z1])
    model = D3Dispersion(cutoff=math.inf, three_body=three_body, three_body_cutoff=math.inf)
    e1 = _energy(model, z1, x1)

    def e_int(r):
        shift = torch.tensor([0.0, 0.0, r], dtype=F64)
        return float(_energy(model, z2, torch.cat([x1, x1 + shift])) - 2 * e1)

    e20, e40, e80 = e_int(20.0), e_int(40.0), e_int(80.0)
    assert e20 < e40 < e80 < 0
    assert e20 / e40 == pytest.approx(64.0, rel=0.03)
    assert e40 / e80 == pytest.approx(64.0, rel=0.01)
    # tad-dftd3's default two-body cutoff (60 Bohr = 31.75 Å) cuts the tail off: exactly zero at 40 Å
    default = D3Dispersion(three_body=three_body)
    far = torch.cat([x1, x1 + torch.tensor([0.0, 0.0, 40.0], dtype=F64)])
    assert float(_energy(default, z2, far) - 2 * _energy(default, z1, x1)) == pytest.approx(0.0, abs=1e-15)


@needs_tad
@pytest.mark.parametrize("pack", [True, False])
@pytest.mark.parametrize("three_body", [False, True])
def test_batch_equals_frames_alone(monkeypatch, pack, three_body):
    """A batch of two frames (packed into one padded call, or one by one) = each frame alone, forces too."""
    if not pack:
        monkeypatch.setattr(d3_module, "PACK_PAIRS", 0)
        monkeypatch.setattr(d3_module, "PACK_TRIPLES", 0)
    frames = [_dimer("H2O", 2.9), molecule("CH3CH2OH")]
    model = D3Dispersion(three_body=three_body)
    z, pos, cell, pbc, ptr = _inputs(frames)
    pos.requires_grad_(True)
    batch = model(z, pos, cell, pbc, ptr)
    (grad,) = torch.autograd.grad(batch.sum(), pos)
    for b, frame in enumerate(frames):
        zb, pb, cb, pbcb, ptrb = _inputs([frame])
        pb.requires_grad_(True)
        alone = model(zb, pb, cb, pbcb, ptrb)
        (gb,) = torch.autograd.grad(alone.sum(), pb)
        lo, hi = int(ptr[b]), int(ptr[b + 1])
        torch.testing.assert_close(batch[lo:hi], alone, atol=1e-14, rtol=1e-12)
        torch.testing.assert_close(grad[lo:hi], gb, atol=1e-14, rtol=1e-12)


@needs_tad
def test_float32_positions():
    """float32 positions are computed in float64 and return float64 energies, with float32 gradients."""
    atoms = _dimer("H2O", 2.9)
    model = D3Dispersion()
    z, pos64, cell, pbc, ptr = _inputs([atoms])
    pos32 = pos64.float().requires_grad_(True)
    e32 = model(z, pos32, cell, pbc, ptr)
    assert e32.dtype == F64
    torch.testing.assert_close(e32, model(z, pos32.detach().double(), cell, pbc, ptr))
    (g,) = torch.autograd.grad(e32.sum(), pos32)
    assert g.dtype == torch.float32


@needs_tad
def test_periodic_frames_raise():
    """tad-dftd3 evaluates free molecules only: any periodic direction is a named error (MuseError, ValueError)."""
    atoms = _dimer("H2O", 2.9)
    model = D3Dispersion()
    z, pos, cell, pbc, ptr = _inputs([atoms, molecule("CH4")])
    cell[:] = 10.0 * torch.eye(3, dtype=F64)
    model(z, pos, cell, pbc, ptr)  # a cell with pbc False is a free frame
    for periodic in ([True, True, True], [False, False, True]):
        pbc[1] = torch.tensor(periodic)
        with pytest.raises(D3PeriodicError, match="frame 1 is periodic") as err:
            model(z, pos, cell, pbc, ptr)
        assert isinstance(err.value, MuseError) and isinstance(err.value, ValueError)


@needs_tad
def test_bad_species_and_size():
    """Atomic numbers outside 1..103 and frames too large for the dense three-body term are named errors."""
    atoms = molecule("CH4")
    z, pos, cell, pbc, ptr = _inputs([atoms])
    with pytest.raises(D3Error, match="atomic numbers 1 to 103"):
        D3Dispersion()(torch.zeros_like(z), pos, cell, pbc, ptr)
    with pytest.raises(D3SizeError, match="three_body=False"):
        D3Dispersion(three_body=True, max_triples=100)(z, pos, cell, pbc, ptr)
    D3Dispersion(three_body=False, max_triples=100)(z, pos, cell, pbc, ptr)


def test_missing_package(monkeypatch):
    """Without tad-dftd3: a one-sentence MuseError (and ImportError) naming the extra to install."""
    monkeypatch.setitem(sys.modules, "tad_dftd3", None)
    with pytest.raises(MissingD3Package, match=r"pip install 'muse-ff\[d3\]'") as err:
        D3Dispersion()
    assert isinstance(err.value, MuseError) and isinstance(err.value, ImportError)


@needs_tad
def test_pickle_roundtrip():
    """The module pickles (as part of a saved model) without tad-dftd3's cached tensors and gives the same energies."""
    import pickle

    model = D3Dispersion("pbe", three_body=True)
    z, pos, cell, pbc, ptr = _inputs([molecule("CH4")])
    e = model(z, pos, cell, pbc, ptr)
    clone = pickle.loads(pickle.dumps(model))
    assert clone._cache == {} and clone.d3_params == model.d3_params
    torch.testing.assert_close(clone(z, pos, cell, pbc, ptr), e)
