"""The folding benchmark's statistics on synthetic data: JSD with bootstrap spreads, transitions, energy-gap
errors, the time-block split, and blow-up detection in a replica."""

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

from muse_ff.bench import folding


def _units(rng, n_units, size, loc=0.0):
    return [rng.normal(loc, 1.0, size) for _ in range(n_units)]


def test_bootstrap_jsd_is_zero_for_identical_and_one_for_disjoint_samples():
    rng = np.random.default_rng(0)
    x = _units(rng, 6, 50)
    point, spread = folding.bootstrap_jsd(x, x, -5.0, 5.0)
    assert point == pytest.approx(0.0)
    assert spread > 0  # resampling the blocks of each side independently makes the two differ
    far = [u + 20.0 for u in x]
    point, spread = folding.bootstrap_jsd(x, far, -5.0, 30.0)
    assert point == pytest.approx(1.0) and spread == pytest.approx(0.0)
    assert np.isnan(folding.bootstrap_jsd([], x, -5.0, 5.0)[0])


def test_bootstrap_spread_and_noise_floor_shrink_with_more_data():
    rng = np.random.default_rng(1)
    small = folding.bootstrap_jsd(_units(rng, 4, 20), _units(rng, 4, 20, 0.5), -5.0, 5.0)
    large = folding.bootstrap_jsd(_units(rng, 64, 20), _units(rng, 64, 20, 0.5), -5.0, 5.0)
    assert 0 < large[1] < 0.5 * small[1]
    floor_small = folding.noise_floor(_units(rng, 4, 20), -5.0, 5.0)
    floor_large = folding.noise_floor(_units(rng, 64, 20), -5.0, 5.0)
    assert floor_small[0] > 0 and floor_small[1] > 0
    assert floor_large[0] < 0.5 * floor_small[0] and floor_large[1] < floor_small[1]


def test_blocks_of_cuts_each_replica_into_contiguous_blocks():
    blocks = folding.blocks_of([np.arange(10.0), np.arange(3.0)], 4)
    assert [list(b) for b in blocks[:4]] == [[0, 1, 2], [3, 4, 5], [6, 7], [8, 9]]
    assert [list(b) for b in blocks[4:]] == [[0], [1], [2]]  # a short (blown-up) replica: no empty blocks


def test_transitions_count_core_to_core_crossings_only():
    assert folding.transitions([1.0, 2.9, 3.1, 2.7, 3.4, 1.0]) == 0  # fluctuations around 3 Å
    assert folding.transitions([1.0, 4.0, 3.0, 2.0, 5.0]) == 3  # 3.0 lies between the cores: no state change
    assert folding.transitions([1.0, 4.0, 1.0, 4.0]) == 3
    assert folding.transitions([4.0, 3.0, 4.0]) == 0
    assert folding.transitions([]) == 0


def test_gap_error_of_pairs_of_folded_and_unfolded_frames():
    g = folding.gap_error(np.full(5, 0.3), np.full(7, 0.3))  # a model off by a constant: no gap error
    assert g["bias"] == pytest.approx(0.0) and g["mae"] == pytest.approx(0.0) and g["mae_spread"] == 0
    g = folding.gap_error(np.array([0.01, 0.03]), np.array([0.0]))  # eV -> meV
    assert g["bias"] == pytest.approx(20.0) and g["mae"] == pytest.approx(20.0)
    assert (g["n_folded"], g["n_unfolded"]) == (2, 1) and g["bias_spread"] > 0
    g = folding.gap_error(np.array([0.01, -0.01]), np.array([0.0, 0.0]))
    assert g["bias"] == pytest.approx(0.0) and g["mae"] == pytest.approx(10.0)
    assert np.isnan(folding.gap_error(np.array([0.1]), np.array([]))["mae"])


def _frames(times, temperatures=(300.0, 400.0)):
    out = []
    for temp in temperatures:
        for t in times:
            a = Atoms("H")
            a.info.update(temperature=temp, time_ps=float(t))
            out.append(a)
    return out


@pytest.mark.parametrize("blocks,test,gap", [(10, 1, 1), (5, 1, 1), (10, 2, 1), (4, 1, 0)])
def test_time_block_split_never_puts_test_block_frames_in_training(blocks, test, gap):
    times = np.round(np.arange(1, 112) * 0.9, 4)  # the dataset's frame times (0.9 ps apart, 100 ps runs)
    split = folding.time_block_split(_frames(times), 100.0, blocks, test, gap)
    assert sum(map(len, split.values())) == 2 * len(times)
    width = 100.0 / blocks
    for temp in (300.0, 400.0):
        t = {k: np.array([a.info["time_ps"] for a in v if a.info["temperature"] == temp]) for k, v in split.items()}
        assert t["train"].max() <= (blocks - gap - test) * width  # training ends at a block edge
        assert t["test"].min() > (blocks - test) * width  # every test frame lies in a test block
        assert t["test"].min() - t["train"].max() >= gap * width - 0.9  # a whole buffer block between them
        assert not set(t["test"]) & set(t["train"])
        if gap:
            assert t["valid"].min() > t["train"].max() and t["valid"].max() < t["test"].min()


def test_time_block_split_rejects_impossible_splits():
    with pytest.raises(ValueError):
        folding.time_block_split([], 100.0, blocks=3, test=2, gap=1)
    with pytest.raises(ValueError):
        folding.time_block_split([], 100.0, blocks=10, test=0, gap=1)


def test_time_block_split_reproduces_the_stored_dataset_split(data_dir):
    from muse_ff.datasets.folding import CONFIG
    from muse_ff.teachers.labelling import read_frames

    frames = read_frames(data_dir / "folding" / "folding.extxyz.xz")
    split = folding.time_block_split(frames, CONFIG.production_ps)
    for key, part in split.items():
        assert part and all(a.info["split"] == key for a in part)


class _Pull(Calculator):
    """Zero energy, a constant force pulling atom 0 away: its bonds stretch until the replica blows up."""

    implemented_properties = ["energy", "forces"]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        f = np.zeros((len(self.atoms), 3))
        f[0, 0] = 50.0
        self.results = {"energy": 0.0, "forces": f}


def test_run_replica_stops_at_the_first_blown_up_frame(data_dir):
    top = folding.topology(data_dir / "folding")
    md = folding.MDBudget(replicas=1, steps=400, interval=10, timestep=1.0)
    start, bond_list = folding.start_structure(top), folding.bonds(top.reference)
    r = folding.run_replica(start, _Pull(), md, top, bond_list, seed=0)
    assert r["failed_at_ps"] is not None and 0 < r["failed_at_ps"] < md.ps
    assert r["steps"] < md.steps and len(r["time_ps"]) == len(r["rmsd_ca"]) == len(r["positions"])
    assert r["time_ps"].max() < r["failed_at_ps"]  # observables only from the frames before the blow-up
    s = folding.summarise([r], md)
    assert s["stable"] == 0 and s["failed_at_ps"] == [r["failed_at_ps"]] and s["ns_per_day"] > 0


def test_start_structure_constrains_every_bond_to_hydrogen(data_dir):
    top = folding.topology(data_dir / "folding")
    start = folding.start_structure(top)
    pairs = np.array(start.constraints[0].pairs)
    hydrogens = np.flatnonzero(start.numbers == 1)
    assert sorted(pairs[start.numbers[pairs] == 1]) == list(hydrogens)  # each H in exactly one X-H pair
    assert (start.numbers[pairs] == 1).sum(axis=1).tolist() == [1] * len(pairs)
    assert len(folding.bonds(top.reference)) == 141  # the OpenMM topology of chignolin has 141 bonds
    assert np.allclose(start.get_masses()[hydrogens], 3.0)


def test_chignolin_frames_carry_the_force_fields_total_charge(data_dir):
    """The physical contestants take each frame's total charge as an input: chignolin is -2 (charged termini,
    Asp-, Glu-), from the force field's own charges, in the stored frames, the reference and every structure
    the benchmark evaluates."""
    pytest.importorskip("openmm")
    from openmm import app

    from muse_ff.teachers.amber import net_charge
    from muse_ff.teachers.labelling import read_frames

    assert net_charge(app.PDBFile(str(data_dir / "folding" / "chignolin.pdb")).topology) == -2
    frames = read_frames(data_dir / "folding" / "folding.extxyz.xz")
    assert {a.info["charge"] for a in frames} == {-2}
    top = folding.topology(data_dir / "folding")
    assert top.charge == -2 and folding.start_structure(top).info["charge"] == -2

    class Seen(Calculator):
        implemented_properties = ["energy", "forces"]

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            self.results = {"energy": float(self.atoms.info["charge"]), "forces": np.zeros((len(self.atoms), 3))}

    pos = np.array([top.reference.positions] * 2)
    assert folding.model_energies(Seen(), pos, top.reference.numbers, top.charge).tolist() == [-2.0, -2.0]


def test_the_folding_builder_writes_the_total_charge_into_every_frame(data_dir, tmp_path):
    pytest.importorskip("openmm")
    from muse_ff.datasets import folding as dataset

    cfg = dataset.FoldingConfig(temperatures=(300.0,), equilibration_ps=0.0, production_ps=0.06, frame_every_ps=0.03,
                                observable_every_ps=0.03)
    pdb_path = tmp_path / "chignolin.pdb"
    pdb_path.write_bytes((data_dir / "folding" / "chignolin.pdb").read_bytes())
    pdb, reference = dataset.minimised_reference(pdb_path, dataset.FoldingConfig(temperatures=(300.0,)))
    numbers = np.array([a.element.atomic_number for a in pdb.topology.atoms()])
    frames, _ = dataset.run_md(pdb, reference, 300.0, cfg, None, numbers, np.arange(3), np.flatnonzero(numbers > 1),
                               dataset.net_charge(pdb.topology))
    assert len(frames) == 2 and [a.info["charge"] for a in frames] == [-2, -2]


def test_teacher_replicas_are_reused_only_with_the_same_md_settings(tmp_path, data_dir):
    top = folding.topology(data_dir / "folding")
    md = folding.MDBudget(replicas=1, steps=400, interval=10, timestep=1.0)
    start, bond_list = folding.start_structure(top), folding.bonds(top.reference)
    r = folding.run_replica(start, _Pull(), md, top, bond_list, seed=0)
    stamp = folding._stamp(md, start)
    path = folding.save_replicas(tmp_path / "md" / "teacher" / "replicas.npz", [r], stamp)
    (back,) = folding.load_replicas(path, stamp)
    assert set(back) == set(r) and back["failed_at_ps"] == r["failed_at_ps"] and back["steps"] == r["steps"]
    assert all(np.array_equal(back[k], r[k]) for k in folding.REPLICA_ARRAYS)
    longer = folding.MDBudget(replicas=1, steps=800, interval=10, timestep=1.0)
    assert folding.load_replicas(path, folding._stamp(longer, start)) is None
    moved = start.copy()
    moved.positions[0, 0] += 0.01
    assert folding.load_replicas(path, folding._stamp(md, moved)) is None
    assert folding.load_replicas(tmp_path / "none.npz", stamp) is None
    pdb = data_dir / "folding" / "chignolin.pdb"
    assert folding._stamp(md, start, pdb) != stamp  # the teacher's topology is part of it
    path.write_bytes(path.read_bytes()[:100])  # a torn file: run the teacher again, do not crash
    assert folding.load_replicas(path, stamp) is None
    assert not list(path.parent.glob("*.part.npz"))


def test_a_trained_model_is_reused_only_on_frames_with_the_same_charges():
    from ase import Atoms

    from muse_ff.bench.common import _fingerprint

    a = Atoms("H2O", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]], info={"REF_energy": -1.0})
    b = a.copy()
    b.info["charge"] = -1
    c = a.copy()
    c.info["charge"] = 0
    assert _fingerprint([a]) != _fingerprint([b])  # a charged frame: another model
    assert _fingerprint([a]) == _fingerprint([c]) == _fingerprint([a.copy()])  # neutral with or without the key
