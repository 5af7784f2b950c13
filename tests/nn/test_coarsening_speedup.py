"""The fast coarse topology (issue #17: O(N log N) preprocessing) gives exactly what the old code gave.

``data/coarsening_reference.json`` holds checksums of every array of the bond graph, the colour classes and
every level's :class:`~muse_ff.data.graph.LevelTopology` (seed groups, reference atoms, member shifts,
assignment pairs, in their order), or the error message, for each structure and level setting below. It was
written by the implementation before the speed-up (commit a30ba5c) with

    python tests/nn/test_coarsening_speedup.py --record

and must not be re-recorded to make a change pass: a change here changes the coarse graph, hence the energy
as a function of the structure, of every trained model.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, graphene, molecule

from muse_ff.datasets.graphene import flake
from muse_ff.nn.coarsening import CoarseLevelError, bond_graph, frame_topology, refine_colours

REFERENCE = Path(__file__).parent / "data" / "coarsening_reference.json"
ROOT = Path(__file__).resolve().parents[2]

#: (ratios, hops) of the level settings: the default 2-level model, the pooling tests' one, three levels
#: with odd hops (merge radius 1 and 2)
SETTINGS = {"default": ([8.0, 8.0], [4, 8]), "pooling": ([6.0, 4.0], [4, 8]), "three": ([4.0, 4.0, 4.0], [3, 5, 8])}


def _alkane(n_c: int, periodic: bool = False) -> Atoms:
    """Zigzag CnH2n+2 (or, ``periodic``, a polyethylene chain through a cell along x)."""
    k = np.arange(n_c)
    up = k % 2 == 1
    c = np.stack([1.26 * k, np.where(up, 0.89, 0.0), np.zeros(n_c)], axis=1)
    out = np.where(up, 1.0, -1.0)[:, None]
    h = np.concatenate([c + out * [0, 0.63, 0] + [0, 0, 0.89], c + out * [0, 0.63, 0] - [0, 0, 0.89]])
    if periodic:
        assert n_c % 2 == 0
        return Atoms(["C"] * n_c + ["H"] * len(h), positions=np.concatenate([c, h]) + [0, 5, 5],
                     cell=[1.26 * n_c, 10.0, 10.0], pbc=[True, False, False])
    ends = np.array([c[0] - [1.09, 0, 0], c[-1] + [1.09, 0, 0]])
    return Atoms(["C"] * n_c + ["H"] * (len(h) + 2), positions=np.concatenate([c, h, ends]))


def _waters(n: int, seed: int, box: float | None = None) -> Atoms:
    """``n`` randomly oriented waters on a jittered grid (3.1 Å), free or in a periodic ``box``."""
    from scipy.spatial.transform import Rotation

    per = int(np.ceil(n ** (1 / 3)))
    rng = np.random.default_rng(seed)
    spacing = 3.1 if box is None else box / per
    grid = np.stack(np.meshgrid(*[np.arange(per)] * 3, indexing="ij"), -1).reshape(-1, 3)[:n]
    centres = (grid + 0.5 + rng.uniform(-0.05, 0.05, grid.shape)) * spacing
    w = molecule("H2O")
    w.positions -= w.positions.mean(axis=0)
    rots = Rotation.random(n, random_state=seed).as_matrix()
    pos = np.einsum("mij,aj->mai", rots, w.positions) + centres[:, None]
    atoms = Atoms("OH2" * n, positions=pos.reshape(-1, 3))
    if box is not None:
        atoms.cell, atoms.pbc = [box] * 3, True
    return atoms


def _graphite(nxy: int, nz: int) -> Atoms:
    from ase.lattice.hexagonal import Graphite

    return Graphite("C", latticeconstant={"a": 2.46, "c": 6.70}, size=(nxy, nxy, nz))


def _on_graphene(pbc) -> Atoms:
    sheet = graphene(size=(6, 6, 1), vacuum=8.0)
    b = molecule("C6H6")
    b.positions += sheet.cell[:].sum(axis=0) / 2 - b.positions.mean(axis=0) + [0, 0, 3.4]
    out = sheet + b
    out.pbc = pbc
    return out


def _permuted(atoms: Atoms, seed: int) -> Atoms:
    return atoms[np.random.default_rng(seed).permutation(len(atoms))]


def _rattled(atoms: Atoms, amount: float, seed: int) -> Atoms:
    atoms = atoms.copy()
    atoms.rattle(amount, seed=seed)
    return atoms


def structures() -> dict:
    """{name: factory} of the structures compared (each small: the whole test takes seconds)."""
    from ase.io import read

    return {
        # molecules
        "benzene": lambda: molecule("C6H6"),
        "C60": lambda: molecule("C60"),
        "alkane_C40": lambda: _alkane(40),
        "alkane_C300": lambda: _alkane(300),
        "alkane_C1000": lambda: _alkane(1000),
        "alkane_C300_permuted": lambda: _permuted(_alkane(300), 3),
        "water_8": lambda: _waters(8, 0),
        "water_40": lambda: _waters(40, 1),
        "chignolin": lambda: read(ROOT / "data" / "folding" / "chignolin.pdb"),
        "flake_7": lambda: flake(7.0),
        "flake_12_benzene": lambda: flake(12.0) + _shifted(molecule("C6H6"), [0.0, 0.3, 3.4]),
        "flake_12_permuted": lambda: _permuted(flake(12.0), 5),
        "molecules_mix": _mix,
        # periodic
        "graphene_TTF": lambda: graphene(size=(8, 8, 1), vacuum=8.0),
        "graphene_TTT": lambda: _full_pbc(graphene(size=(8, 8, 1), vacuum=8.0)),
        "graphene_rattled": lambda: _rattled(graphene(size=(8, 8, 1), vacuum=8.0), 0.03, 1),
        "graphite_cell": lambda: _graphite(1, 1),
        "graphite_972": lambda: _graphite(9, 3),
        "graphite_972_permuted": lambda: _permuted(_graphite(9, 3), 7),
        "graphite_3136": lambda: _graphite(14, 4),
        "si_primitive": lambda: bulk("Si"),
        "si_cubic": lambda: bulk("Si", "diamond", a=5.43, cubic=True),
        "si_216": lambda: bulk("Si", "diamond", a=5.43, cubic=True).repeat((3, 3, 3)),
        "si_216_rattled": lambda: _rattled(bulk("Si", "diamond", a=5.43, cubic=True).repeat((3, 3, 3)), 0.05, 2),
        "cu_primitive": lambda: bulk("Cu", "fcc", a=3.6),
        "cu_864": lambda: bulk("Cu", "fcc", a=3.6, cubic=True).repeat((6, 6, 6)),
        "random_carbon_TTT": lambda: _random_carbon(400, 0, True),
        "random_carbon_free": lambda: _random_carbon(400, 1, False),
        "water_box_300": lambda: _waters(300, 5, box=20.8),
        "superheavy_tiny_cell": lambda: Atoms(numbers=[117, 113, 100], cell=[0.6, 2.5, 1.0908], pbc=True,
                                              positions=[[0, 0, -0.0174], [0.0052, -0.0233, 0.5454],
                                                         [0, 1.25, -0.0174]]),  # a refused search
        "water_box_64": lambda: _waters(64, 3, box=12.4),
        "benzene_on_graphene_TTT": lambda: _on_graphene([True, True, True]),
        "benzene_on_graphene_TTF": lambda: _on_graphene([True, True, False]),
        # mixed periodicity
        "polyethylene_TFF": lambda: _alkane(20, periodic=True),
        "polyethylene_TFF_short": lambda: _alkane(2, periodic=True),
        "water_slab_TTF": lambda: _slab(_waters(27, 4, box=9.3)),
    }


def _mix() -> Atoms:
    parts = [molecule("CH3CH2OH"), molecule("C6H6"), molecule("CCl4"), molecule("CH4"), molecule("C60")]
    out = Atoms()
    for k, m in enumerate(parts):
        m.positions += [12.0 * k, 0, 0]
        out += m
    return out


def _random_carbon(n: int, seed: int, pbc: bool) -> Atoms:
    """``n`` carbons uniformly at random at 0.1 / Å^3 (about 2.5 bonds each): a giant random network with
    little symmetry and small fragments."""
    side = (n / 0.1) ** (1 / 3)
    pos = np.random.default_rng(seed).uniform(0.0, side, (n, 3))
    return Atoms(["C"] * n, positions=pos, cell=[side] * 3, pbc=pbc)


def _shifted(atoms: Atoms, by) -> Atoms:
    atoms.positions += np.asarray(by) - atoms.positions.mean(axis=0)
    return atoms


def _full_pbc(atoms: Atoms) -> Atoms:
    atoms.pbc = True
    return atoms


def _slab(atoms: Atoms) -> Atoms:
    atoms.pbc = [True, True, False]
    return atoms


#: the LevelTopology fields, in order
FIELDS = ("member_atom", "member_node", "member_shift", "ref_atom", "pair_fine", "pair_coarse", "pair_shift")


def _digest(a) -> str:
    a = np.ascontiguousarray(a.numpy() if hasattr(a, "numpy") else a)
    return hashlib.sha256(f"{a.dtype}{a.shape}".encode() + a.tobytes()).hexdigest()[:24]


def summary(atoms: Atoms, ratios, hops) -> dict:
    """Checksums of the bond graph, the colours and every level's topology (or the error) of ``atoms``."""
    cell, pbc = np.asarray(atoms.cell[:]), np.asarray(atoms.pbc)
    bg = bond_graph(atoms.positions, atoms.numbers, cell, pbc)
    out = {"n": int(bg.n), "bonds": int(len(bg.src))}
    for k in ("src", "dst", "shift", "component", "image", "percolating"):
        out[f"bg.{k}"] = _digest(getattr(bg, k))
    out["colours"] = _digest(refine_colours(bg.src, bg.dst, atoms.numbers))
    try:
        comp, levels = frame_topology(atoms.positions, atoms.numbers, cell, pbc, list(ratios), list(hops))
    except CoarseLevelError as e:
        out["error"] = str(e)
        return out
    out["component"] = _digest(comp)
    for k, t in enumerate(levels):
        out[f"level{k}.nodes"] = t.num_nodes
        out[f"level{k}.pairs"] = int(t.pair_fine.numel())
        for f in FIELDS:
            out[f"level{k}.{f}"] = _digest(getattr(t, f))
    return out


def _cases():
    return [(s, name) for name in structures() for s in SETTINGS]


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads(REFERENCE.read_text())


@pytest.mark.parametrize("setting,name", _cases())
def test_topology_identical_to_the_recorded_one(reference, setting, name):
    ratios, hops = SETTINGS[setting]
    got = summary(structures()[name](), ratios, hops)
    want = reference[f"{name}/{setting}"]
    assert got == want


def test_reference_covers_every_case(reference):
    assert sorted(reference) == sorted(f"{name}/{s}" for s, name in _cases())
    assert sum(v.get("level0.nodes", 0) > 1 for v in reference.values()) > 20


def _record() -> None:
    out = {}
    for name, make in structures().items():
        atoms = make()
        for s, (ratios, hops) in SETTINGS.items():
            out[f"{name}/{s}"] = summary(atoms, ratios, hops)
            print(name, s, len(atoms), {k: v for k, v in out[f"{name}/{s}"].items() if "nodes" in k or k == "error"})
    REFERENCE.parent.mkdir(exist_ok=True)
    REFERENCE.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    if sys.argv[1:] == ["--record"]:
        _record()


@pytest.mark.parametrize("name", ["flake_12_benzene", "si_primitive", "superheavy_tiny_cell"])
def test_bond_graph_does_not_depend_on_the_order_of_the_neighbour_pairs(monkeypatch, name):
    """The neighbour-list library may return pairs in any order (vesin 0.6.1 and 0.6.2 differ): the bond graph,
    the unwrapped images of tiny periodic cells included, is the same for any permutation of them."""
    import muse_ff.nn.coarsening as coarsening

    atoms = structures()[name]()
    cell, pbc = np.asarray(atoms.cell[:]), np.asarray(atoms.pbc)
    first = bond_graph(atoms.positions, atoms.numbers, cell, pbc)
    original = coarsening.neighbor_list

    def shuffled(*args, **kwargs):
        out = original(*args, **kwargs)
        p = np.random.default_rng(7).permutation(len(out[0]))
        return tuple(x[p] for x in out)

    monkeypatch.setattr(coarsening, "neighbor_list", shuffled)
    second = bond_graph(atoms.positions, atoms.numbers, cell, pbc)
    for k in ("src", "dst", "shift", "component", "image", "percolating"):
        assert np.array_equal(getattr(first, k), getattr(second, k)), k


def _refine_by_definition(src, dst, initial):
    """Colour refinement as refine_colours defines it, one whole round at a time: every node's label becomes the
    dense rank of (its label, the wrapping uint64 sum of splitmix64 of its out-neighbours' labels), until the
    number of classes stops growing."""
    def mix(x):
        z = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        with np.errstate(over="ignore"):
            z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))

    colours = np.unique(initial, return_inverse=True)[1].astype(np.int64)
    while True:
        sig = np.zeros(len(colours), dtype=np.uint64)
        np.add.at(sig, src, mix(colours[dst]))
        pairs = np.stack([colours.astype(np.uint64), sig], axis=1)
        new = np.unique(pairs, axis=0, return_inverse=True)[1].ravel()
        if new.max() == colours.max():
            return colours
        colours = new


@pytest.mark.parametrize("seed", range(12))
def test_refinement_equals_its_definition_on_random_multigraphs(seed):
    """The compiled refinement (only touched nodes per round) gives the labels of the whole-round definition, on
    graphs it was not tuned for: directed edges, repeated edges (periodic images), isolated nodes, long paths
    and rings (many rounds), few and many initial colours."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 400))
    kind = seed % 4
    if kind == 0:  # sparse random directed multigraph
        m = int(rng.integers(0, 3 * n))
        src, dst = rng.integers(0, n, m), rng.integers(0, n, m)
    elif kind == 1:  # a path with random chords, both directions
        a = np.arange(n - 1)
        extra = rng.integers(0, n, (n // 20, 2))
        s = np.concatenate([a, extra[:, 0]])
        d = np.concatenate([a + 1, extra[:, 1]])
        src, dst = np.concatenate([s, d]), np.concatenate([d, s])
    elif kind == 2:  # a ring with doubled bonds in places, both directions
        a = np.arange(n)
        b = (a + 1) % n
        twice = a[rng.random(n) < 0.1]
        s = np.concatenate([a, twice])
        d = np.concatenate([b, (twice + 1) % n])
        src, dst = np.concatenate([s, d]), np.concatenate([d, s])
    else:  # a tree, both directions
        parent = np.array([rng.integers(0, max(i, 1)) for i in range(1, n)], dtype=np.int64)
        child = np.arange(1, n)
        src, dst = np.concatenate([parent, child]), np.concatenate([child, parent])
    initial = rng.integers(0, int(rng.choice([1, 2, 5, n])), n)
    got = refine_colours(src, dst, initial)
    assert np.array_equal(got, _refine_by_definition(np.asarray(src, np.int64), np.asarray(dst, np.int64), initial))
