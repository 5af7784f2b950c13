"""Latent Ewald summation (the long-range baseline): physics of the Coulomb term and the conformance suite."""

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import molecule

from muse_ff.calculator import MuSECalculator
from muse_ff.config import ConfigError
from muse_ff.io.serialization import load_model, save_model
from muse_ff.nn.long_range import COULOMB, LatentEwald
from muse_ff.nn.model import build_model
from muse_ff.testing.conformance import SMALL_PAINN, ModelConformance, test_molecule

LES = {"smearing": 1.0}


def _fixed_charge_energy(pos: torch.Tensor, q: torch.Tensor, cell: torch.Tensor | None) -> float:
    """Energy of fixed charges ``q`` [n] through LatentEwald (the charge MLP bypassed)."""
    les = LatentEwald(4).double()
    les.charges = lambda scalars, component=None: q[:, None]
    periodic = cell is not None
    c = cell if periodic else torch.zeros(3, 3, dtype=torch.float64)
    return float(les(None, pos, c[None], torch.tensor([[periodic] * 3]), torch.tensor([0, len(pos)])).sum())


def test_two_far_charges_interact_as_point_charges():
    """At 30 Å (30 smearing widths) the smeared interaction is k_e q1 q2 / r to machine precision."""
    pos = torch.tensor([[0.0, 0, 0], [30.0, 0, 0]], dtype=torch.float64)
    e = _fixed_charge_energy(pos, torch.tensor([0.7, -0.4], dtype=torch.float64), None)
    assert e == pytest.approx(COULOMB * 0.7 * -0.4 / 30.0, rel=1e-12)


def test_periodic_sum_tends_to_the_free_sum_in_a_large_box():
    """torch-pme's Ewald sum of a neutral cluster in a box of side L -> the direct free-space sum (O(1/L^3))."""
    g = torch.Generator().manual_seed(0)
    pos = 1.5 * torch.randn(6, 3, dtype=torch.float64, generator=g)
    q = torch.tensor([0.5, -0.3, -0.2, 0.4, -0.6, 0.2], dtype=torch.float64)
    free = _fixed_charge_energy(pos, q, None)
    gaps = [abs(_fixed_charge_energy(pos + side / 2, q, side * torch.eye(3, dtype=torch.float64)) - free)
            for side in (20.0, 40.0)]
    assert gaps[1] < 0.3 * gaps[0] and gaps[1] < 5e-3 * abs(free)


def test_reaches_beyond_the_cutoff_where_the_backbone_is_blind():
    torch.manual_seed(0)
    plain = build_model({"backbone": SMALL_PAINN, "dtype": "float64", "species": ["H", "O"]})
    les = build_model({"backbone": SMALL_PAINN, "dtype": "float64", "species": ["H", "O"], "long_range": LES})
    water = molecule("H2O")

    def interaction(model, d):
        far = water.copy()
        far.translate([d, 0, 0])
        e = [MuSECalculator(model).get_potential_energy(a) for a in (water + far, water, far)]
        return e[0] - e[1] - e[2]

    assert interaction(plain, 12.0) == pytest.approx(0.0, abs=1e-12)
    assert abs(interaction(les, 12.0)) > 1e-6
    # the latent-charge interaction decays like Coulomb: 1/r for net charges, faster for neutral ones
    assert abs(interaction(les, 24.0)) < abs(interaction(les, 12.0))


def test_refuses_frames_periodic_in_only_some_directions():
    model = build_model({"backbone": SMALL_PAINN, "dtype": "float64", "species": ["C"], "long_range": LES})
    slab = Atoms("C2", positions=[[0, 0, 0], [1.4, 0, 0]], cell=[6, 6, 20], pbc=[True, True, False])
    with pytest.raises(ValueError, match="only fully periodic or fully free"):
        MuSECalculator(model).get_potential_energy(slab)


def test_config_rejects_bad_long_range_settings():
    with pytest.raises(ConfigError, match="smearing"):
        build_model({"backbone": SMALL_PAINN, "long_range": {"smearing": -1.0}})
    with pytest.raises(ConfigError, match="kind"):
        build_model({"backbone": SMALL_PAINN, "long_range": {"kind": "pme-magic"}})


def test_save_and_load_keep_the_long_range_term(tmp_path):
    torch.manual_seed(1)
    model = build_model({"backbone": SMALL_PAINN, "dtype": "float64", "species": ["H", "C", "O"],
                         "long_range": {"smearing": 1.5, "channels": 2}})
    save_model(model, tmp_path / "les.pt")
    again = load_model(tmp_path / "les.pt")
    atoms = molecule("CH3CH2OH")
    assert again.long_range is not None and again.long_range.channels == 2
    assert MuSECalculator(again).get_potential_energy(atoms) == MuSECalculator(model).get_potential_energy(atoms)


class TestLatentEwaldPaiNN(ModelConformance):
    config = {"backbone": SMALL_PAINN, "levels": [], "long_range": LES}

    def test_extensivity_far_apart(self, model):
        """Two copies 1000 Å apart: twice the energy plus the Coulomb energy of their net latent charges."""
        atoms = test_molecule()
        graph = model.graph_from_atoms(atoms)
        with torch.no_grad():
            scalars, _ = model.encode(graph, graph.positions, graph.cell)
            net = float(model.long_range.charges(scalars[0]).sum())
        assert abs(net) > 1e-3  # an untrained model's latent charges are not neutral
        other = atoms.copy()
        other.translate([1000.0, 0.0, 0.0])
        e1, e2 = self._energy(model, atoms), self._energy(model, atoms + other)
        assert e2 - 2 * e1 == pytest.approx(COULOMB * net**2 / 1000.0, rel=1e-2)

    # latent charges are not neutral (faithful to LES), so copies interact as k_e Q^2 / R and a periodic box
    # adds image charges: exact extensivity and box independence do not hold by design (checked above instead)
    test_extensivity_exact_for_n_copies_free_and_periodic = None
    test_same_energy_free_and_in_a_large_box = None


class TestLatentEwaldMuSE(ModelConformance):
    """The long-range term also composes with coarse levels (MuSE + latent Ewald)."""

    config = {"backbone": SMALL_PAINN, "levels": [{"ratio": 4}], "long_range": LES}
    # at 100 K this untrained model (no repulsion) brings two non-bonded atoms within bonding distance in
    # 80 steps; a new bond rebuilds the coarse graph (a documented, warned step), which is not what the
    # NVE test is about
    nve_temperature_K = 50.0
    test_extensivity_far_apart = TestLatentEwaldPaiNN.test_extensivity_far_apart
    test_extensivity_exact_for_n_copies_free_and_periodic = None
    test_same_energy_free_and_in_a_large_box = None


def test_energy_levels_still_sum_to_the_energy():
    model = build_model({"backbone": SMALL_PAINN, "dtype": "float64", "levels": [{}], "long_range": LES})
    graph = model.graph_from_atoms(molecule("C6H6"))
    out = model(graph)
    np.testing.assert_allclose(out["energy_levels"].sum(1).detach(), out["energy"].detach(), rtol=1e-12)
    np.testing.assert_allclose(out["node_energy"].sum().detach(), out["energy"].detach(), rtol=1e-12)


def test_neutral_option_keeps_each_molecule_neutral_and_its_far_tail_is_not_coulombic():
    """``long_range.neutral``: latent charges sum to 0 per covalent component (a deviation from the paper,
    whose unconstrained latent charges make neutral molecules far apart interact as 1/r)."""
    from ase.build import molecule

    def pair(r):
        a, b = molecule("H2O"), molecule("NH3")
        b.positions += [r, 0.0, 0.0]
        return a + b

    def e_int(model, r):
        g = model.graph_from_atoms(pair(r))
        with torch.no_grad():
            parts = [float(model(model.graph_from_atoms(x))["energy"][0]) for x in (pair(r)[:3], pair(r)[3:])]
            return float(model(g)["energy"][0]) - sum(parts)

    ratios = {}
    for neutral in (False, True):
        torch.manual_seed(3)
        m = build_model({"backbone": {"name": "painn", "features": 16, "layers": 1}, "species": ["H", "N", "O"],
                         "dtype": "float64", "long_range": {"kind": "latent-ewald", "neutral": neutral}})
        g = m.graph_from_atoms(pair(30.0))
        q = m.long_range.charges(m.encode(g, g.positions, g.cell)[0][0], g.component).detach()
        sums = [float(q[:3].sum()), float(q[3:].sum())]
        if neutral:
            assert sums == pytest.approx([0.0, 0.0], abs=1e-12)
            assert m.long_range.neutral
        ratios[neutral] = e_int(m, 50.0) / e_int(m, 100.0)
    # unconstrained: net latent charges, 1/r tail (ratio 2); neutral: dipolar, r^-3 (ratio 8)
    assert ratios[False] == pytest.approx(2.0, rel=0.05)
    assert ratios[True] == pytest.approx(8.0, rel=0.05)
