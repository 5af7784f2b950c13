"""Physical long-range terms (muse_ff.nn.physical): conserved charges, smeared Coulomb, BJ-damped dispersion."""

import math

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import molecule

from muse_ff.data.neighbors import neighbor_list
from muse_ff.nn.physical import (
    COULOMB,
    EwaldSettings,
    EwaldSizeError,
    PeriodicityError,
    PhysicalLongRange,
    atoms_component_charges,
    coulomb_energy,
    dispersion_energy,
    equilibrate_charges,
)

F64 = torch.float64
FREE = torch.zeros(1, 3, dtype=torch.bool)
FULL = torch.ones(1, 3, dtype=torch.bool)


def _ptr(n: int) -> torch.Tensor:
    return torch.tensor([0, n])


def _box(side: float) -> torch.Tensor:
    return (side * torch.eye(3, dtype=F64))[None]


def _coul(q, pos, cell=None, **kw) -> torch.Tensor:
    """Total smeared Coulomb energy of one frame (free if ``cell`` is None)."""
    if cell is None:
        return coulomb_energy(q, pos, torch.zeros(1, 3, 3, dtype=F64), FREE, _ptr(len(pos)), **kw).sum()
    return coulomb_energy(q, pos, cell, FULL, _ptr(len(pos)), **kw).sum()


def _disp(c6, rho, pos, cell=None, **kw) -> torch.Tensor:
    if cell is None:
        return dispersion_energy(c6, rho, pos, torch.zeros(1, 3, 3, dtype=F64), FREE, _ptr(len(pos)), **kw).sum()
    return dispersion_energy(c6, rho, pos, cell, FULL, _ptr(len(pos)), **kw).sum()


def _water_dimer_like(seed: int = 0, n_mol: int = 3):
    """``n_mol`` water molecules (ASE geometry), randomly placed and oriented, ~3 Å apart."""
    rng = np.random.default_rng(seed)
    w = molecule("H2O")
    pos, comp = [], []
    for m in range(n_mol):
        a, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        pos.append(w.positions @ a.T + np.array([3.0 * m, 0.4 * m, 0.2 * m]) + rng.normal(scale=0.1, size=3))
        comp += [m] * 3
    species = torch.tensor([8, 1, 1] * n_mol)
    return torch.tensor(np.concatenate(pos)), species, torch.tensor(comp)


def _model(features: int = 6, **kw) -> PhysicalLongRange:
    torch.manual_seed(0)
    m = PhysicalLongRange(features, hidden=8, **kw).double()
    with torch.no_grad():  # charges of a few tenths of e
        m.charge_head.mlp[-1].weight.mul_(3.0)
    return m


def _features(species: torch.Tensor, features: int = 6) -> torch.Tensor:
    """Fixed per-element features (standing in for the backbone's): the same element, the same features."""
    g = torch.Generator().manual_seed(1)
    table = torch.randn(10, features, dtype=F64, generator=g)
    return table[species]


# -------------------------------------------------------------------------------------------- charges


def test_charges_sum_exactly_to_each_component_charge():
    g = torch.Generator().manual_seed(0)
    raw = 3.0 * torch.randn(40, dtype=F64, generator=g)
    component = torch.randint(0, 5, (40,), generator=g)
    component[:5] = torch.arange(5)  # every component present
    for total in (None, torch.tensor([0.0, 1.0, -1.0, 2.5, -3.0], dtype=F64)):
        q = equilibrate_charges(raw, component, total)
        sums = torch.zeros(5, dtype=F64).index_add(0, component, q)
        target = torch.zeros(5, dtype=F64) if total is None else total
        assert torch.all((sums - target).abs() < 1e-12), sums - target
        # the shift is uniform within a component: differences of raw charges are kept
        for c in range(5):
            sel = component == c
            assert torch.allclose((q - raw)[sel], (q - raw)[sel][0].expand(int(sel.sum())), atol=1e-14)


def test_model_charges_per_component_across_frames():
    """Two frames, three components (global index), one of them an ion: each keeps its own charge."""
    pos, species, comp = _water_dimer_like(n_mol=3)
    m = _model()
    scal = _features(species)
    component = torch.cat([comp[:6], comp[6:]])  # frame 0: molecules 0, 1; frame 1: molecule 2
    q = m.charges(scal, component, torch.tensor([0.0, -1.0, 1.0], dtype=F64))
    sums = torch.zeros(3, dtype=F64).index_add(0, component, q)
    assert torch.allclose(sums, torch.tensor([0.0, -1.0, 1.0], dtype=F64), atol=1e-12, rtol=0)
    assert q.abs().max() > 0.05  # not trivially zero
    # no component given: each frame is neutral
    q = m.charges(scal, torch.tensor([0] * 6 + [1] * 3))
    assert abs(float(q[:6].sum().detach())) < 1e-12 and abs(float(q[6:].sum().detach())) < 1e-12


def test_component_charges_from_ase():
    w1, w2 = molecule("H2O"), molecule("H2O")
    w2.positions += [6.0, 0, 0]
    na = Atoms("Na", positions=[[0, 6.0, 0]])
    atoms = w1 + w2 + na
    comp, charge = atoms_component_charges(atoms)
    assert len(charge) == 3 and comp.tolist()[:3] == [comp[0]] * 3
    assert np.all(charge == 0)
    initial = np.zeros(len(atoms))
    initial[-1] = 1.0
    initial[0], initial[1] = -0.8, 0.4  # partial charges summing to -0.4 on the first water
    atoms.set_initial_charges(initial)
    comp, charge = atoms_component_charges(atoms)
    assert charge[comp[-1]] == pytest.approx(1.0) and charge[comp[0]] == pytest.approx(-0.4)
    ion = molecule("NH3")
    ion.info["charge"] = 1
    assert atoms_component_charges(ion)[1].tolist() == [1.0]
    atoms.set_initial_charges(np.zeros(len(atoms)))
    atoms.info["charge"] = 1
    with pytest.raises(ValueError, match="covalent components"):
        atoms_component_charges(atoms)


# ----------------------------------------------------------------------------- derivatives, invariances


def _energy_fn(m, scal, species, comp, cell=None, total=None):
    pbc = FREE if cell is None else FULL
    cel = torch.zeros(1, 3, 3, dtype=F64) if cell is None else cell

    def energy(pos, cel=cel):
        return m(scal, pos, cel, pbc, _ptr(len(pos)), species, comp, total).sum()
    return energy


def _fd_check(energy, pos, h=1e-4, coords=None):
    pos = pos.clone().requires_grad_(True)
    e = energy(pos)
    (grad,) = torch.autograd.grad(e, pos, create_graph=True)
    coords = coords or [(a, k) for a in range(len(pos)) for k in range(3)]
    for a, k in coords:
        d = torch.zeros_like(pos)
        d[a, k] = h
        with torch.no_grad():
            fd = (energy(pos + d) - energy(pos - d)) / (2 * h)
        assert float(grad[a, k].detach()) == pytest.approx(float(fd), rel=1e-6, abs=1e-9), (a, k)
    # one Hessian-vector product against finite differences of the gradient
    g = torch.Generator().manual_seed(3)
    v = torch.randn(pos.shape, dtype=F64, generator=g)
    (hv,) = torch.autograd.grad((grad * v).sum(), pos)

    def gradient(x):
        x = x.detach().requires_grad_(True)
        return torch.autograd.grad(energy(x), x)[0]
    fd_hv = (gradient(pos + h * v) - gradient(pos - h * v)) / (2 * h)
    assert torch.allclose(hv, fd_hv, rtol=1e-5, atol=1e-7), (hv - fd_hv).abs().max()
    return grad.detach(), hv


def test_forces_and_hessian_free_frame_chunked_or_not():
    """-dE/dx by central differences, H.v by differences of forces; the blocked (checkpointed) sum agrees."""
    pos, species, comp = _water_dimer_like(n_mol=3)
    scal = _features(species)
    total = torch.tensor([0.0, 1.0, -1.0], dtype=F64)
    kw = dict(coulomb_switch=(0.5, 2.5), dispersion_switch=(1.0, 3.0))
    whole = _energy_fn(_model(**kw), scal, species, comp, total=total)
    blocked = _energy_fn(_model(pair_block=20, **kw), scal, species, comp, total=total)  # 2 rows per block
    g1, hv1 = _fd_check(whole, pos)
    g2, hv2 = _fd_check(blocked, pos, coords=[(0, 0), (4, 2)])
    assert torch.allclose(g1, g2, rtol=1e-12, atol=1e-14) and torch.allclose(hv1, hv2, rtol=1e-12, atol=1e-14)
    assert float(whole(pos).detach()) == pytest.approx(float(blocked(pos).detach()), rel=1e-13)
    # first-order gradients without create_graph (the blocks' analytic derivatives), on positions and on
    # every parameter of both heads (an energy loss), with equal (not 1) and unequal weights on
    # the per-atom energies
    weights = torch.rand(len(pos), dtype=F64, generator=torch.Generator().manual_seed(4))
    for weight in (None, torch.full((len(pos),), -2.5, dtype=F64), weights):
        grads = []
        for model in (_model(**kw), _model(pair_block=20, **kw)):
            p = pos.clone().requires_grad_(True)
            e = model(scal, p, torch.zeros(1, 3, 3, dtype=F64), FREE, _ptr(len(p)), species, comp, total)
            params = [t for t in model.parameters()]
            loss = e.sum() if weight is None else (weight * e).sum()
            grads.append(torch.autograd.grad(loss, [p] + params, allow_unused=True))
        for a, b in zip(*grads):
            if a is None:
                assert b is None
            else:
                assert torch.allclose(a, b, rtol=1e-11, atol=1e-13), (a - b).abs().max()


@pytest.mark.parametrize("method", ["ewald", "pme"])
def test_forces_stress_and_hessian_periodic_frame(method):
    """Periodic (real + reciprocal parts, both short-range switches): FD forces, H.v, dE/d(cell)."""
    pos, species, comp = _water_dimer_like(n_mol=2)
    scal = _features(species)
    cell = torch.tensor([[7.0, 0.3, 0.0], [0.0, 6.5, 0.4], [0.2, 0.0, 7.5]], dtype=F64)[None]
    m = _model(coulomb_switch=(0.5, 2.5), dispersion_switch=(1.0, 3.0),
               ewald=EwaldSettings(cutoff=8.0, switch_width=2.0, method=method))
    energy = _energy_fn(m, scal, species, comp, cell=cell)
    _fd_check(energy, pos, coords=[(0, 0), (1, 1), (3, 2), (5, 0)])
    cel = cell.clone().requires_grad_(True)
    (gc,) = torch.autograd.grad(energy(pos, cel), cel)
    h = 1e-5
    for a, k in [(0, 0), (1, 2), (2, 1)]:
        d = torch.zeros_like(cell)
        d[0, a, k] = h
        with torch.no_grad():
            fd = (energy(pos, cell + d) - energy(pos, cell - d)) / (2 * h)
        assert float(gc[0, a, k]) == pytest.approx(float(fd), rel=1e-6, abs=1e-9)


def _rotation(seed: int) -> torch.Tensor:
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    return torch.tensor(q * np.sign(np.linalg.det(q)))


@pytest.mark.parametrize("periodic", [False, True])
def test_rotation_translation_permutation_invariance(periodic):
    pos, species, comp = _water_dimer_like(n_mol=3)
    scal = _features(species)
    m = _model(coulomb_switch=(0.5, 2.5))
    cell = torch.tensor([[9.0, 0.5, 0.0], [0.0, 8.0, 0.3], [0.4, 0.0, 8.5]], dtype=F64) if periodic else None
    pbc = FULL if periodic else FREE

    def per_atom(p, c, s=scal, sp=species, co=comp):
        cel = c[None] if c is not None else torch.zeros(1, 3, 3, dtype=F64)
        return m(s, p, cel, pbc, _ptr(len(p)), sp, co, torch.tensor([0.0, 1.0, -1.0], dtype=F64))
    ref = per_atom(pos, cell)
    rot = _rotation(5)
    shift = torch.tensor([3.3, -7.1, 12.9], dtype=F64)
    rc = None if cell is None else cell @ rot.T
    assert torch.allclose(per_atom(pos @ rot.T + shift, rc), ref, rtol=1e-9, atol=1e-12)
    perm = torch.randperm(len(pos), generator=torch.Generator().manual_seed(2))
    out = per_atom(pos[perm], cell, scal[perm], species[perm], comp[perm])
    assert torch.allclose(out, ref[perm], rtol=1e-10, atol=1e-13)
    if periodic:  # an atom moved by a lattice vector: nothing changes
        moved = pos.clone()
        moved[4] += cell[1] - 2 * cell[2]
        assert torch.allclose(per_atom(moved, cell), ref, rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------------------------- Ewald and its limits


def test_ewald_split_independent_for_neutral_and_charged_cells():
    """The periodic energy does not depend on the Ewald split, neutral or charged (uniform background
    convention for the smeared kernel), and PME agrees with Ewald."""
    g = torch.Generator().manual_seed(0)
    pos = 7.0 * torch.rand(6, 3, dtype=F64, generator=g)
    cell = _box(7.0)
    q0 = torch.tensor([1.0, -1.0, 0.5, -0.5, 0.3, -0.3], dtype=F64)
    for q in (q0, q0 + 0.2):
        for sigma in (1.0, 0.5):
            ref = _coul(q, pos, cell, smearing=sigma, ewald=EwaldSettings(smearing=sigma, method="ewald"))
            for ew in (EwaldSettings(method="ewald"), EwaldSettings(smearing=2.5, cutoff=20.0, method="ewald")):
                assert float(_coul(q, pos, cell, smearing=sigma, ewald=ew)) == pytest.approx(float(ref), rel=1e-8)
            pme = _coul(q, pos, cell, smearing=sigma, ewald=EwaldSettings(method="pme"))
            assert float(pme) == pytest.approx(float(ref), rel=1e-5)


def test_charged_cell_uniform_background_convention():
    """One smeared charge Q in a cubic box L (k = 0 term of the smeared kernel omitted): E = -alpha k_e Q^2 /
    (2 L) + pi sigma^2 k_e Q^2 / L^3, alpha = 2.8372975 the Madelung constant of a simple cubic lattice of
    point charges in a neutralising background (the second term: the background seen through the smeared
    kernel; torch-pme's bare-Coulomb background would leave it out)."""
    alpha, charge = 2.8372974794, 1.5
    for side, sigma in ((10.0, 1.0), (12.0, 0.7)):
        e = float(_coul(torch.tensor([charge], dtype=F64), torch.full((1, 3), 1.0, dtype=F64), _box(side),
                        smearing=sigma))
        expected = COULOMB * charge**2 * (-alpha / (2 * side) + math.pi * sigma**2 / side**3)
        assert e == pytest.approx(expected, rel=1e-7)


def test_ewald_of_a_neutral_cluster_tends_to_the_free_sum():
    """A neutral dipolar cluster in cubic boxes of 20, 40, 80 Å: E_L - E_free -> 0 as the tin-foil dipole
    term -2 pi k_e M^2 / (3 L^3) (the image
    dipoles of a cubic lattice cancel; tin-foil boundary conditions: the k = 0 term omitted)."""
    g = torch.Generator().manual_seed(0)
    pos = 1.5 * torch.randn(6, 3, dtype=F64, generator=g)
    q = torch.tensor([0.5, -0.3, -0.2, 0.4, -0.6, 0.2], dtype=F64)
    free = float(_coul(q, pos))
    dipole = float(((q[:, None] * pos).sum(0) ** 2).sum())
    diffs = []
    for side in (20.0, 40.0, 80.0):
        e = float(_coul(q, pos + side / 2, _box(side)))
        diffs.append(e - free)
        tinfoil = -2 * math.pi * COULOMB * dipole / (3 * side**3)
        assert e - free == pytest.approx(tinfoil, rel=0.1 if side > 20 else 0.3), side
    assert abs(diffs[0]) > abs(diffs[1]) > abs(diffs[2]) and abs(diffs[2]) < 1e-3


def test_periodic_dispersion_is_the_lattice_sum():
    """Ewald r^-6 dispersion == the direct image sum to 90 Å + its continuum tail (error of the real-space
    truncation below 1e-5 relative)."""
    g = torch.Generator().manual_seed(0)
    side = 7.0
    pos = side * torch.rand(6, 3, dtype=F64, generator=g)
    c6 = 5.0 + 20.0 * torch.rand(6, dtype=F64, generator=g)
    rho = 1.5 + torch.rand(6, dtype=F64, generator=g)
    ewald = float(_disp(c6, rho, pos, _box(side), ewald=EwaldSettings(method="ewald")))
    big = 90.0
    i, j, _, d = neighbor_list(pos.numpy(), _box(side)[0].numpy(), np.ones(3, bool), big)
    i, j, d = torch.as_tensor(i), torch.as_tensor(j), torch.as_tensor(d)
    c = torch.sqrt(c6)
    direct = -0.5 * float((c[i] * c[j] / (d**6 + (rho[i] + rho[j]) ** 6)).sum())
    tail = -0.5 * float(c.sum()) ** 2 / side**3 * 4 * math.pi / (3 * big**3)
    assert ewald == pytest.approx(direct + tail, rel=1e-5)


def test_smooth_across_the_real_space_cutoff():
    """A pair moving through the fade-out [cutoff - width, cutoff] of a deliberately short real-space part:
    no jump in energy or force (a hard cutoff here would jump by 1.6 meV in energy and 2 meV/Å in force for
    the charges, 0.16 meV for dispersion). The pair's free-space interaction is subtracted so that only the
    periodic remainder, which the fade acts on, is followed."""
    ew = EwaldSettings(cutoff=5.0, switch_width=1.5, smearing=1.5, method="ewald")
    cell = _box(15.0)
    q = torch.tensor([0.8, -0.8], dtype=F64)
    c6 = torch.tensor([30.0, 30.0], dtype=F64)
    rho = torch.tensor([0.5, 0.5], dtype=F64)
    h = 0.02
    xs = torch.arange(3.3, 5.2, h, dtype=F64)
    terms = ((lambda p, cel: _coul(q, p, cel, smearing=0.5, ewald=ew)),
             (lambda p, cel: _disp(c6, rho, p, cel, ewald=ew)))
    for energy in terms:
        es, fs = [], []
        for x in xs:
            p = torch.tensor([[5.0, 5.0, 5.0], [5.0 + float(x), 5.0, 5.0]], dtype=F64, requires_grad=True)
            e = energy(p, cell) - energy(p, None)
            (gr,) = torch.autograd.grad(e, p)
            es.append(float(e.detach()))
            fs.append(float(gr[1, 0]))
        es, fs = np.array(es), np.array(fs)
        mid = 0.5 * (fs[1:] + fs[:-1])
        assert np.all(np.abs(np.diff(es) - mid * h) < 1e-6)  # dE = (dE/dx) dx by trapezoids: no jump
        # the force is continuous too: second differences stay at the fade's own curvature (1.2e-4) while a
        # jump of the force would show in full (2e-3 for a hard cutoff)
        assert np.max(np.abs(np.diff(fs, 2))) < 5e-4


def test_oversized_ewald_sum_is_refused():
    pos = 200.0 * torch.rand(20, 3, dtype=F64, generator=torch.Generator().manual_seed(0))
    q = torch.zeros(20, dtype=F64)
    with pytest.raises(EwaldSizeError, match="method='pme'"):
        _coul(q, pos, _box(200.0), ewald=EwaldSettings(method="ewald"))


def test_mixed_periodicity_is_refused():
    pos, species, comp = _water_dimer_like(n_mol=2)
    m = _model()
    with pytest.raises(PeriodicityError, match=r"\[True, True, False\]"):
        m(_features(species), pos, _box(10.0), torch.tensor([[True, True, False]]), _ptr(6), species, comp)


# ---------------------------------------------------------------------------------- tails and switches


def _fit_exponent(rs, es) -> float:
    return float(np.polyfit(np.log(rs), np.log(np.abs(es)), 1)[0])


def test_tail_power_laws():
    """Two rigid neutral dipolar molecules with fixed charges: E_int ~ R^-3 (attractive head-to-tail); two
    atoms' dispersion ~ R^-6 (attractive)."""
    w = torch.tensor(molecule("H2O").positions, dtype=F64)
    q = torch.tensor([-0.8, 0.4, 0.4], dtype=F64)
    alone = float(_coul(q, w))
    rs = np.linspace(10.0, 60.0, 11)
    e_el, e_d = [], []
    c6 = torch.tensor([20.0, 20.0], dtype=F64)
    rho = torch.tensor([1.8, 1.8], dtype=F64)
    for r in rs:
        pair = torch.cat([w, w + torch.tensor([0.0, 0.0, r], dtype=F64)])  # dipoles along z, head to tail
        e_el.append(float(_coul(torch.cat([q, q]), pair)) - 2 * alone)
        e_d.append(float(_disp(c6, rho, torch.tensor([[0.0, 0, 0], [r, 0, 0]], dtype=F64))))
    e_el, e_d = np.array(e_el), np.array(e_d)
    assert np.all(e_el < 0) and np.all(e_d < 0)
    assert _fit_exponent(rs, e_el) == pytest.approx(-3.0, abs=0.1)
    assert _fit_exponent(rs, e_d) == pytest.approx(-6.0, abs=0.1)
    # the dipole-dipole limit itself: -2 k_e mu^2 / R^3 at 60 Å within 5%
    mu = float((q[:, None] * w).sum(0).norm())
    assert e_el[-1] == pytest.approx(-2 * COULOMB * mu**2 / 60.0**3, rel=0.05)


def test_short_range_switch():
    """With a switch (r_on, r_off), a pair contributes nothing below r_on and exactly the undamped value
    beyond r_off."""
    q = torch.tensor([0.7, -0.5], dtype=F64)
    c6, rho = torch.tensor([10.0, 30.0], dtype=F64), torch.tensor([1.2, 1.6], dtype=F64)
    for r, inside in ((1.5, True), (4.5, False)):
        p = torch.tensor([[0.0, 0, 0], [r, 0, 0]], dtype=F64)
        e_c = float(_coul(q, p, switch=(2.0, 4.0)))
        e_d = float(_disp(c6, rho, p, switch=(2.0, 4.0)))
        if inside:
            assert e_c == 0.0 and e_d == 0.0
        else:
            assert e_c == float(_coul(q, p)) and e_d == float(_disp(c6, rho, p))
            assert e_c == pytest.approx(COULOMB * -0.35 * math.erf(r / math.sqrt(2)) / r, rel=1e-14)
            assert e_d == pytest.approx(-math.sqrt(300.0) / (r**6 + 2.8**6), rel=1e-14)


def test_extensivity_and_conserved_ion_charges():
    """Two copies of a frame 1000 Å apart: neutral molecules, E = 2 E_one (mutual interaction < 1e-7 eV);
    an anion and a cation: E - E_a - E_b = k_e Q_a Q_b / D (charge stays on each ion at any distance)."""
    pos, species, comp = _water_dimer_like(n_mol=1)
    scal = _features(species)
    m = _model()
    zero = torch.zeros(1, 3, 3, dtype=F64)

    def energy(p, s, sp, co, total):
        with torch.no_grad():
            return float(m(s, p, zero, FREE, _ptr(len(p)), sp, co, total).sum())
    far = torch.tensor([0.0, 0.0, 1000.0], dtype=F64)
    two = torch.cat([pos, pos + far])
    s2, sp2, co2 = torch.cat([scal, scal]), torch.cat([species, species]), torch.cat([comp, comp + 1])
    one = energy(pos, scal, species, comp, None)
    assert abs(one) > 1e-3
    assert energy(two, s2, sp2, co2, None) == pytest.approx(2 * one, abs=1e-7)
    e_a = energy(pos, scal, species, comp, torch.tensor([-1.0], dtype=F64))
    e_b = energy(pos, scal, species, comp, torch.tensor([1.0], dtype=F64))
    both = energy(two, s2, sp2, co2, torch.tensor([-1.0, 1.0], dtype=F64))
    assert both - e_a - e_b == pytest.approx(-COULOMB / 1000.0, rel=1e-4)


# ------------------------------------------------------------------------- cost (slow: pytest -m slow)


def _water(n_atoms: int, periodic: bool):
    """Liquid-density water (benchmarks/speed.py's box), as a periodic box or the same atoms in vacuum."""
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "speed.py"
    spec = importlib.util.spec_from_file_location("_speed", path)
    speed = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(speed)
    atoms = speed.water_box(n_atoms)
    atoms.pbc = periodic
    return atoms


def _best_time(fn, repeats: int = 3) -> float:
    import time

    fn()  # warm-up
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


@pytest.mark.slow
@pytest.mark.parametrize("periodic", [False, True])
def test_cost_against_plain_painn(periodic, capsys):
    """Energy + forces of both physical terms vs a plain PaiNN (features 64, 3 layers, 16 radial functions),
    float32, one thread, 1k and 5k water atoms; prints the times and their ratio (docs/LONG_RANGE.md)."""
    from muse_ff import build_model
    from muse_ff.data.atoms import frame_graph
    from muse_ff.physics import energy_and_derivatives

    torch.set_num_threads(1)
    rows = []
    for n in (1000, 5000):
        atoms = _water(n, periodic)
        torch.manual_seed(0)
        painn = build_model({"backbone": {"name": "painn", "features": 64}}).eval()
        graph = frame_graph(atoms, painn.cutoff, keys=None).to(dtype=torch.float32)
        t_painn = _best_time(lambda: energy_and_derivatives(painn, graph))
        phys = PhysicalLongRange(64).float()
        scal = torch.randn(len(atoms), 64)
        species = torch.as_tensor(atoms.numbers)
        comp = torch.arange(len(atoms)) // 3
        cell = torch.tensor(np.asarray(atoms.cell), dtype=torch.float32)[None]
        pbc = torch.tensor([[periodic] * 3])

        def phys_ef():
            pos = graph.positions.detach().requires_grad_(True)
            e = phys(scal, pos, cell, pbc, _ptr(len(atoms)), species, comp).sum()
            return torch.autograd.grad(e, pos)[0]
        t_phys = _best_time(phys_ef)
        rows.append((len(atoms), t_painn, t_phys))
    with capsys.disabled():
        kind = "periodic (Ewald/PME)" if periodic else "free (direct sum)"
        print(f"\n{kind}: atoms, PaiNN E+F s, physical terms E+F s, physical / PaiNN, (PaiNN + physical) / PaiNN")
        for n, a, b in rows:
            print(f"{n:>6} {a:>8.3f} {b:>8.3f} {b / a:>6.2f} {(a + b) / a:>6.2f}")


@pytest.mark.slow
def test_free_direct_sum_memory_10k_atoms():
    """Energy + forces of a free 10k-atom frame (both terms, float64) peak below 2 GB of added memory."""
    import json
    import subprocess
    import sys

    code = f"""
import json, torch, numpy as np
torch.set_num_threads(1)
import sys; sys.path.insert(0, {str(__import__('pathlib').Path(__file__).resolve().parent)!r})
from test_physical import _water, _ptr
from muse_ff.nn.physical import PhysicalLongRange
def mb(field):
    for line in open('/proc/self/status'):
        if line.startswith(field):
            return int(line.split()[1]) / 1024
atoms = _water(10002, False)
n = len(atoms)
phys = PhysicalLongRange(16).double()
scal = torch.randn(n, 16, dtype=torch.float64)
pos = torch.tensor(atoms.positions).requires_grad_(True)
args = (torch.zeros(1, 3, 3, dtype=torch.float64), torch.zeros(1, 3, dtype=torch.bool), _ptr(n),
        torch.as_tensor(atoms.numbers), torch.arange(n) // 3)
base = mb('VmRSS')
open('/proc/self/clear_refs', 'w').write('5')
import time; t0 = time.perf_counter()
e = phys(scal, pos, *args).sum()
f = torch.autograd.grad(e, pos)[0]
print(json.dumps({{"atoms": n, "peak_extra_mb": mb('VmHWM') - base, "seconds": time.perf_counter() - t0}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    row = json.loads(out.stdout.strip().splitlines()[-1])
    print(row)
    assert row["peak_extra_mb"] < 2000
