"""Non-local chains (GFN2-xTB): cumulene twist scans and push-pull polyene end-to-end couplings, 4-24 carbons.

Two families of conjugated chains where what happens at one end changes the energy at the other, 5-30 Å
away, through the pi system rather than through space:

- ``cumulene``: H2C=(C=)n-2 CH2 with n = 4..24 carbons, relaxed with the teacher at 0° (both CH2 planes
  coplanar), then the far CH2 group twisted rigidly about the chain axis by ``twist`` degrees. The twist
  energy E(90°) - E(0°) alternates in sign with the parity of n (even n: planar is the minimum; odd n: the
  twisted form) and decays only slowly with length (+0.48 eV for 16 carbons, -0.43 eV for 17).
- ``polyene``: all-trans polyenes X-(CH=CH)n/2-Y with n = 4, 6, ..., 24 carbons in an ideal geometry (C=C
  1.34 Å, C-C 1.46 Å, 120°, C-H 1.08 Å; C-N 1.38, N-H 1.01, C-C(HO) 1.47, C=O 1.21, C-H(O) 1.11 Å, s-trans
  aldehyde; not relaxed) and the end groups X in {H, NH2} (donor) and Y in {H, CHO} (acceptor) placed with the
  same local geometry in all four variants. The end-to-end coupling
  ``E(D..A) - E(D..H) - E(H..A) + E(H..H)`` of one rigid quartet is exactly zero for any model that is a sum
  of contributions none of which sees both ends.

Every frame has ``family``, ``n_carbons`` and ``role``: ``scan`` (a rigid cumulene at a fixed ``twist``),
``quartet`` (a rigid polyene with ``ends`` = ``X-Y``) or ``sample`` (training frames: a random twist, or each
of the four end-group variants in turn, every atom displaced by a Gaussian rattle so that forces are
informative). ``scan`` and ``quartet`` frames are evaluation frames with ``split = test``; samples are split
80/10/10 at every length (a benchmark chooses which lengths to train on: ``muse bench nonlocal`` trains on
4-15 carbons only).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms

from muse_ff.datasets import common
from muse_ff.datasets.molecules import relax
from muse_ff.teachers import TEACHERS, Teacher

FAMILIES = ("cumulene", "polyene")
#: rigid twist angles (degrees) of every cumulene scan; 0 and 90 first (the subset's scans)
SCAN_ANGLES = (0.0, 90.0, 15.0, 30.0, 45.0, 60.0, 75.0)
#: polyene end groups: the donor on the first carbon, the acceptor on the last; quartet order (H-H first)
DONORS, ACCEPTORS = ("H", "NH2"), ("H", "CHO")
QUARTET = tuple(f"{x}-{y}" for x in DONORS for y in ACCEPTORS)

#: ideal cumulene geometry (Å, degrees) before the teacher relaxes it
CUMULENE_CC, CH, HCH = 1.29, 1.08, 117.0
#: ideal polyene geometry (Å)
POLYENE_DOUBLE, POLYENE_SINGLE = 1.34, 1.46


@dataclass(frozen=True)
class ChainsConfig:
    """Lengths (carbons), sampling sizes and ranges (Å, degrees).

    ``samples``: rattled training frames per (family, length); ``rattle``: Gaussian displacement std (Å) of
    every atom; ``relax``: relax each cumulene at 0° with the teacher first (fmax ``relax_fmax`` eV/Å).
    ``subset_*``: what ``--subset`` keeps (a prefix of each group of the full dataset).
    """

    name: str = "nonlocal-chains"
    cumulene_lengths: tuple[int, ...] = tuple(range(4, 25))
    polyene_lengths: tuple[int, ...] = tuple(range(4, 25, 2))
    scan_angles: tuple[float, ...] = SCAN_ANGLES
    samples: int = 16
    rattle: float = 0.02
    relax: bool = True
    relax_fmax: float = 0.01
    seed: int = 15
    teacher: str = "gfn2-xtb"
    subset_cumulene_lengths: tuple[int, ...] = (4, 5, 8, 9)
    subset_polyene_lengths: tuple[int, ...] = (4, 8)
    subset_scans: int = 2
    subset_samples: int = 2


CONFIG = ChainsConfig()


# ---------------------------------------------------------------------------------------------- cumulenes
def _end_hydrogens(carbon: np.ndarray, outward: np.ndarray, twist: float) -> np.ndarray:
    """[2, 3] the two H of a terminal CH2 on the z axis, their plane at ``twist`` degrees from xz."""
    half = np.radians(HCH / 2)
    phi = np.radians(twist)
    d = np.array([np.cos(phi), np.sin(phi), 0.0])
    return np.array([carbon + CH * (s * np.sin(half) * d + np.cos(half) * outward) for s in (1, -1)])


def ideal_cumulene(n: int) -> Atoms:
    """H2C=(C=)n-2 CH2 along z (first carbon at the origin), both CH2 groups in the xz plane.

    Atom order: carbons 0..n-1, then the two H of the first carbon, then the two H of the last."""
    if n < 3:
        raise ValueError(f"a cumulene needs at least 3 carbons, got {n}")
    c = np.zeros((n, 3))
    c[:, 2] = CUMULENE_CC * np.arange(n)
    h = np.vstack([_end_hydrogens(c[0], np.array([0, 0, -1.0]), 0.0),
                   _end_hydrogens(c[-1], np.array([0, 0, 1.0]), 0.0)])
    atoms = Atoms(f"C{n}H4", positions=np.vstack([c, h]))
    atoms.info.update({"family": "cumulene", "n_carbons": n})
    return atoms


def relaxed_cumulene(n: int, teacher: Teacher, fmax: float = 0.01, steps: int = 500) -> Atoms:
    """:func:`ideal_cumulene` relaxed at 0° with ``teacher`` (the D2h symmetry is kept by the forces), then
    put back on the z axis: first carbon at the origin, last carbon on +z, first CH2 in the xz plane."""
    return _canonical(relax(ideal_cumulene(n), teacher, fmax, steps, f"relaxing the {n}-carbon cumulene"))


def _canonical(atoms: Atoms) -> Atoms:
    """Rotate a cumulene so its first carbon is at the origin, its last on +z and its first H on +x."""
    n = int(atoms.info["n_carbons"])
    pos = atoms.positions - atoms.positions[0]
    z = pos[n - 1] / np.linalg.norm(pos[n - 1])
    h = pos[n] - (pos[n] @ z) * z
    x = h / np.linalg.norm(h)
    out = atoms.copy()
    out.positions = pos @ np.stack([x, np.cross(z, x), z]).T
    return out


def twisted(atoms: Atoms, twist: float) -> Atoms:
    """A copy of a canonical cumulene (:func:`ideal_cumulene` / :func:`relaxed_cumulene`) whose last CH2 group
    (its two H, the last two atoms) is rotated rigidly by ``twist`` degrees about the chain (z) axis."""
    out = atoms.copy()
    t = np.radians(twist)
    rot = np.array([[np.cos(t), -np.sin(t), 0.0], [np.sin(t), np.cos(t), 0.0], [0.0, 0.0, 1.0]])
    out.positions[-2:] = out.positions[-2:] @ rot.T
    out.info["twist"] = float(twist)
    return out


# ---------------------------------------------------------------------------------------------- polyenes
def _turn(v: np.ndarray, degrees: float) -> np.ndarray:
    a = np.radians(degrees)
    return np.array([np.cos(a) * v[0] - np.sin(a) * v[1], np.sin(a) * v[0] + np.cos(a) * v[1], 0.0])


def _group(kind: str, carbon: np.ndarray, e1: np.ndarray, e2: np.ndarray) -> tuple[list[str], list[np.ndarray]]:
    """Symbols and positions of end group ``kind`` (H, NH2 or CHO) bonded to ``carbon`` along ``e1``, planar, in
    the frame (``e1``, ``e2``): ``e2`` points to the side of the carbon's other hydrogen (the cis side). Bond
    angles at the group's heavy atom are 120°; the aldehyde is s-trans (its O on the cis side, anti to the
    C=C bond)."""
    def at(origin: np.ndarray, length: float, degrees: float) -> np.ndarray:
        a = np.radians(degrees)
        return origin + length * (np.cos(a) * e1 + np.sin(a) * e2)

    if kind == "H":
        return ["H"], [carbon + CH * e1]
    if kind == "NH2":
        n = carbon + 1.38 * e1
        return ["N", "H", "H"], [n, at(n, 1.01, 60.0), at(n, 1.01, -60.0)]
    if kind == "CHO":
        c = carbon + 1.47 * e1
        return ["C", "O", "H"], [c, at(c, 1.21, 60.0), at(c, 1.11, -60.0)]
    raise ValueError(f"unknown end group {kind!r}")


def polyene(n: int, donor: str = "H", acceptor: str = "H") -> Atoms:
    """All-trans X-(CH=CH)n/2-Y in the xy plane, ideal geometry; ``donor`` X on the first carbon (in
    :data:`DONORS`), ``acceptor`` Y on the last (in :data:`ACCEPTORS`), each in the position that continues the
    zigzag. Every atom other than the end groups' is at the same place in all four variants."""
    if n < 4 or n % 2:
        raise ValueError(f"a polyene here has an even number >= 4 of carbons, got {n}")
    c = [np.zeros(3)]
    for k in range(n - 1):
        bond = POLYENE_DOUBLE if k % 2 == 0 else POLYENE_SINGLE
        c.append(c[-1] + bond * _turn(np.array([1.0, 0.0, 0.0]), 30.0 if k % 2 == 0 else -30.0))
    c = np.array(c)
    symbols, positions = ["C"] * n, list(c)
    for k in range(n):
        if k in (0, n - 1):
            nb = c[1] if k == 0 else c[n - 2]
            u = (nb - c[k]) / np.linalg.norm(nb - c[k])
            d1, d2 = _turn(u, 120.0), _turn(u, -120.0)
            outward = -1.0 if k == 0 else 1.0
            trans, cis = (d1, d2) if d1[0] * outward > d2[0] * outward else (d2, d1)
            side = cis - (cis @ trans) * trans
            e2 = side / np.linalg.norm(side)
            for kind, e1 in (("H", cis), (donor if k == 0 else acceptor, trans)):
                s, p = _group(kind, c[k], e1, e2)
                symbols += s
                positions += p
        else:
            b = c[k] - 0.5 * (c[k - 1] + c[k + 1])
            s, p = _group("H", c[k], b / np.linalg.norm(b), np.zeros(3))
            symbols += s
            positions += p
    atoms = Atoms(symbols, positions=np.array(positions) - c.mean(axis=0))  # the carbons centred
    atoms.info.update({"family": "polyene", "n_carbons": n, "ends": f"{donor}-{acceptor}"})
    return atoms


# ---------------------------------------------------------------------------------------------- frames
def _rattled(atoms: Atoms, rng: np.random.Generator, rattle: float) -> Atoms:
    out = atoms.copy()
    out.positions += rng.normal(0.0, rattle, out.positions.shape)
    return out


def cumulene_frames(n: int, base: Atoms, cfg: ChainsConfig, subset: bool) -> list[Atoms]:
    """The scan and the samples of one cumulene length (``base``: the canonical 0° geometry)."""
    frames = []
    for j, angle in enumerate(cfg.scan_angles[: cfg.subset_scans if subset else None]):
        a = twisted(base, angle)
        a.info.update({"frame_id": f"cumulene/{n:02d}/scan/{int(round(angle)):02d}", "role": "scan",
                       "split": "test"})
        frames.append(a)
    rng = np.random.default_rng([cfg.seed, 0, n])
    for j in range(cfg.subset_samples if subset else cfg.samples):
        angle = float(rng.uniform(0.0, 90.0))
        a = _rattled(twisted(base, round(angle, 4)), rng, cfg.rattle)
        a.info.update({"frame_id": f"cumulene/{n:02d}/sample/{j:03d}", "role": "sample",
                       "split": common.split_of(rng)})
        frames.append(a)
    return frames


def polyene_frames(n: int, cfg: ChainsConfig, subset: bool) -> list[Atoms]:
    """The rigid quartet and the samples of one polyene length."""
    frames = []
    for ends in QUARTET:
        a = polyene(n, *ends.split("-"))
        a.info.update({"frame_id": f"polyene/{n:02d}/quartet/{ends}", "role": "quartet", "split": "test"})
        frames.append(a)
    rng = np.random.default_rng([cfg.seed, 1, n])
    for j in range(cfg.subset_samples if subset else cfg.samples):
        ends = QUARTET[-1 - j % len(QUARTET)]  # NH2-CHO first: a subset's samples hold every element
        a = _rattled(polyene(n, *ends.split("-")), rng, cfg.rattle)
        a.info.update({"frame_id": f"polyene/{n:02d}/sample/{j:03d}", "role": "sample",
                       "split": common.split_of(rng)})
        frames.append(a)
    return frames


def generate(cfg: ChainsConfig, subset: bool, teacher: Teacher) -> list[Atoms]:
    """All unlabelled frames, cumulenes first; with ``subset`` the subset lengths and a prefix of each group."""
    frames = []
    for n in cfg.subset_cumulene_lengths if subset else cfg.cumulene_lengths:
        base = relaxed_cumulene(n, teacher, cfg.relax_fmax) if cfg.relax else _canonical(ideal_cumulene(n))
        frames += cumulene_frames(n, base, cfg, subset)
    for n in cfg.subset_polyene_lengths if subset else cfg.polyene_lengths:
        frames += polyene_frames(n, cfg, subset)
    for a in frames:
        a.info.setdefault("twist", 0.0)
        a.info.setdefault("ends", "H-H")
        a.info["charge"] = 0
    return frames


# ---------------------------------------------------------------------------------------------- observables
def twist_energies(frames: list[Atoms], energies: np.ndarray | None = None) -> dict[int, dict[float, float]]:
    """{n_carbons: {twist: E(twist) - E(0)}} (eV) of the cumulene ``scan`` frames, from ``energies`` (in the
    order of ``frames``; default their ``REF_energy``). Lengths without a 0° frame are left out."""
    out: dict[int, dict[float, float]] = {}
    e = energies if energies is not None else [a.info.get("REF_energy") for a in frames]
    for a, en in zip(frames, e):
        if a.info.get("role") == "scan":
            out.setdefault(int(a.info["n_carbons"]), {})[float(a.info["twist"])] = float(en)
    return {n: {t: v - s[0.0] for t, v in sorted(s.items())} for n, s in sorted(out.items()) if 0.0 in s}


def couplings(frames: list[Atoms], energies: np.ndarray | None = None) -> dict[int, float]:
    """{n_carbons: E(D..A) - E(D..H) - E(H..A) + E(H..H)} (eV) of the complete polyene quartets."""
    by: dict[int, dict[str, float]] = {}
    e = energies if energies is not None else [a.info.get("REF_energy") for a in frames]
    for a, en in zip(frames, e):
        if a.info.get("role") == "quartet":
            by.setdefault(int(a.info["n_carbons"]), {})[str(a.info["ends"])] = float(en)
    d, acc = DONORS[1], ACCEPTORS[1]
    return {n: q[f"{d}-{acc}"] - q[f"{d}-H"] - q[f"H-{acc}"] + q["H-H"]
            for n, q in sorted(by.items()) if len(q) == len(QUARTET)}


# ---------------------------------------------------------------------------------------------- build
def build(out_dir: Path, subset: bool = False, workers: int = 1, progress: bool = False, command: str = "",
          cfg: ChainsConfig = CONFIG) -> common.BuildResult:
    """Generate, label and write the non-local chains dataset into ``out_dir``."""
    start = common.timer()
    teacher = TEACHERS[cfg.teacher]()
    frames = generate(cfg, subset, teacher)
    stem = cfg.name + ("-subset" if subset else "")
    work = out_dir / f"_work-{stem}"
    labelled, report = common.label_with_teacher(frames, cfg.teacher, {}, work, workers, progress)
    data = common.write_frames(out_dir / f"{stem}.extxyz.xz", labelled)
    seconds = common.timer() - start
    tw = twist_energies(labelled)
    cp = couplings(labelled)
    cum = sorted({int(a.info["n_carbons"]) for a in labelled if a.info["family"] == "cumulene"})
    pol = sorted({int(a.info["n_carbons"]) for a in labelled if a.info["family"] == "polyene"})
    extra = (f"- cumulenes: {cum} carbons, ideal C=C {CUMULENE_CC} Å, C-H {CH} Å, H-C-H {HCH}°, "
             + ("relaxed with the teacher at 0° " if cfg.relax else "not relaxed ")
             + f"(fmax {cfg.relax_fmax} eV/Å); scan angles {sorted(cfg.scan_angles)}°; samples: twist U(0, 90)°\n"
             f"- polyenes: {pol} carbons, ideal (C=C {POLYENE_DOUBLE} Å, C-C {POLYENE_SINGLE} Å, 120°), ends "
             f"{', '.join(QUARTET)}; samples: end groups cycle through the four variants, NH2-CHO first\n"
             f"- samples: {cfg.samples if not subset else cfg.subset_samples} per (family, length), Gaussian rattle "
             f"{cfg.rattle} Å per coordinate, split 80/10/10; seed {cfg.seed}\n"
             "- extra info keys: `family` (cumulene/polyene), `n_carbons`, `role` (scan/quartet/sample), `twist` "
             "(deg, the far CH2 group's rotation; 0 for polyenes), `ends` (polyene end groups X-Y; H-H for "
             "cumulenes), `charge` (0)\n"
             "- teacher twist energies E(90°) - E(0°) (meV): "
             + ", ".join(f"{n}: {1000 * s[90.0]:+.0f}" for n, s in tw.items() if 90.0 in s) + "\n"
             "- teacher end-to-end couplings E(NH2..CHO) - E(NH2..H) - E(H..CHO) + E(H..H) (meV): "
             + ", ".join(f"{n}: {1000 * v:+.1f}" for n, v in cp.items()) + "\n")
    card = common.write_card(out_dir / ("README.md" if not subset else f"{stem}.md"),
                             title="Non-local chains: cumulene twists and push-pull polyenes, 4-24 carbons "
                             f"(GFN2-xTB){' (subset)' if subset else ''}", what=__doc__.split("\n\n", 1)[1],
                             command=command, provenance=teacher.provenance(), frames=labelled, seconds=seconds,
                             tags=("family", "role", "n_carbons"), extra=extra, failures=report.failures)
    common.remove_work_dir(work)
    return common.BuildResult(cfg.name, out_dir, [data, card], len(labelled), report.failures, seconds,
                              {"twist_energies": tw, "couplings": cp})
