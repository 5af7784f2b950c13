"""Aromatic molecules over graphene (GFN1-xTB): binding curves, lateral scans and sampled training frames.

Substrates: a hydrogen-terminated C96H24 flake (120 atoms, relaxed with the teacher) and a periodic 6x6
graphene sheet (72 C, 14.76 Å, 30 Å cell height). Molecules (relaxed with the teacher) lie flat with their
centre of mass ``height`` Å above the carbon plane (z = 0). GFN1-xTB is used because GFN2-xTB has a
wrong-sign (repulsive) pi-stacking tail at 6-10 Å.

Every frame has ``role``: ``curve`` (flat molecule over the ring centre at fixed heights 2.8-12 Å),
``scan`` (benzene at 3.4 Å slid along x across one lattice period) or ``sample`` (training frames:
random height, lateral shift, spin, tilt and thermal displacements). ``curve`` and ``scan`` frames are
evaluation frames with ``split = test``; samples are split 80/10/10.

Known teacher artefact: over the periodic sheet GFN1-xTB (tblite 0.8) turns repulsive beyond ~8 Å (+24 meV
at 12 Å for benzene) and shifts with the cell height; the flake's tail is smooth. See docs/DATASETS.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.build import molecule as g2_molecule
from ase.optimize import BFGS

from muse_ff.datasets import common
from muse_ff.datasets.graphene import flake, periodic_sheet
from muse_ff.datasets.molecules import MOLECULES, optimised, relax
from muse_ff.teachers import TEACHERS, Teacher, TeacherCalculator

CURVE_HEIGHTS = (2.8, 3.0, 3.2, 3.4, 3.6, 3.8, 4.0, 4.4, 4.8, 5.4, 6.0, 7.0, 8.0, 9.0, 10.5, 12.0)
SCAN_SHIFTS = tuple(float(x) for x in np.round(np.linspace(0.0, 2.46, 7), 4))


@dataclass(frozen=True)
class GrapheneConfig:
    """Sizes and sampling ranges (Å, degrees)."""

    molecules: tuple[str, ...] = ("benzene", "naphthalene", "pyridine", "pyrrole")
    samples: tuple[tuple[str, int], ...] = (("flake", 60), ("periodic", 40))
    subset_per_group: int = 1
    h_range: tuple[float, float] = (2.8, 12.0)
    max_shift: float = 4.0
    max_tilt: float = 25.0
    rattle_substrate: float = 0.01
    rattle_molecule: float = 0.02
    flake_radius: float = 9.5
    sheet_repeat: int = 6
    seed: int = 11
    teacher: str = "gfn1-xtb"


CONFIG = GrapheneConfig()
#: molecules of this dataset that :mod:`muse_ff.datasets.molecules` does not build: our name -> ASE G2 name
#: (pyrrole was added on 2026-12-03 as a second heteroaromatic, so that one can be held out of training)
EXTRA_MOLECULES = {"pyrrole": "C4H4NH"}


def _optimised(name: str, teacher: Teacher) -> Atoms:
    """``name`` relaxed with ``teacher`` (fmax 1e-3 eV/Å), centred at its centre of mass, like
    :func:`muse_ff.datasets.molecules.optimised` (which it is, for the molecules that module builds)."""
    if name in MOLECULES:
        return optimised(name, teacher)
    atoms = g2_molecule(EXTRA_MOLECULES[name])
    atoms.info.update(charge=0, molecule=name)
    atoms.positions -= atoms.get_center_of_mass()
    relax(atoms, teacher, 1e-3, 500, f"optimising {name}")
    atoms.positions -= atoms.get_center_of_mass()
    return atoms


def _rotation(axis: np.ndarray, degrees: float) -> np.ndarray:
    axis = axis / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    t = np.radians(degrees)
    return np.eye(3) + np.sin(t) * k + (1 - np.cos(t)) * k @ k


def lay_flat(mol: Atoms) -> Atoms:
    """A planar ``mol`` rotated into the xy plane, centre of mass at the origin, in a canonical orientation.

    z is the axis of the largest principal moment (the plane's normal); x is the axis of the smallest one
    (naphthalene's long axis) or, where the two in-plane moments are equal (benzene), the direction of the
    first atom off the centre. Signs come from the atoms, never from the eigensolver (its eigenvector
    signs, and its basis inside a degenerate pair, differ between LAPACK builds): x points to the side of
    the first atom clearly off the yz plane, y to the side of the first atom clearly off the x axis, and
    z = x × y, so the rotation is proper and the result is the same for any rotated copy of ``mol``.
    """
    out = mol.copy()
    out.positions -= out.get_center_of_mass()
    pos = out.positions
    moments, axes = out.get_moments_of_inertia(vectors=True)  # rows: principal axes, ascending moments
    normal = axes[2]
    inplane = pos - np.outer(pos @ normal, normal)
    if moments[1] - moments[0] > 1e-3 * moments[2]:
        x = axes[0] - (axes[0] @ normal) * normal
    else:
        x = inplane[np.flatnonzero(np.linalg.norm(inplane, axis=1) > 0.1)[0]]
    x = x / np.linalg.norm(x)
    along = inplane @ x
    x = x if along[np.flatnonzero(np.abs(along) > 0.1)[0]] > 0 else -x
    y = np.cross(normal, x)
    side = inplane @ y
    y = y if side[np.flatnonzero(np.abs(side) > 0.1)[0]] > 0 else -y
    out.positions = pos @ np.stack([x, y, np.cross(x, y)]).T
    return out


def relaxed_substrates(cfg: GrapheneConfig, teacher: Teacher) -> dict[str, Atoms]:
    """The flake relaxed with ``teacher`` (carbon plane at z = 0, centred) and the ideal periodic sheet."""
    fl = flake(cfg.flake_radius)
    fl.calc = TeacherCalculator(teacher)
    BFGS(fl, logfile=None).run(fmax=0.01, steps=300)
    fl.calc = None
    carbons = fl.numbers == 6
    fl.positions -= fl.positions[carbons].mean(axis=0)
    return {"flake": fl, "periodic": periodic_sheet(cfg.sheet_repeat)}


def _combine(substrate: Atoms, mol: Atoms, info: dict) -> Atoms:
    atoms = substrate.copy() + mol
    atoms.cell, atoms.pbc = substrate.cell, substrate.pbc
    atoms.info = {"substrate": substrate.info["substrate"], "n_substrate": len(substrate), **info}
    return atoms


def _fixed_frames(name: str, sub: str, substrate: Atoms, mol: Atoms, subset: int | None) -> list[Atoms]:
    """The binding curve (and, for benzene, the lateral scan) of flat ``mol`` over ``substrate``."""
    frames = []
    for j, h in enumerate(CURVE_HEIGHTS[:subset]):
        moved = mol.copy()
        moved.positions += [0.0, 0.0, h]
        info = {"frame_id": f"{name}/{sub}/curve/{j:02d}", "role": "curve", "height": h, "shift": 0.0}
        frames.append(_combine(substrate, moved, {**info, "split": "test"}))
    if name == "benzene":
        for j, s in enumerate(SCAN_SHIFTS[:subset]):
            moved = mol.copy()
            moved.positions += [s, 0.0, 3.4]
            info = {"frame_id": f"{name}/{sub}/scan/{j:02d}", "role": "scan", "height": 3.4, "shift": float(s)}
            frames.append(_combine(substrate, moved, {**info, "split": "test"}))
    return frames


def _sample(rng: np.random.Generator, substrate: Atoms, mol: Atoms, cfg: GrapheneConfig) -> tuple[Atoms, dict]:
    """One training geometry: molecule spun, tilted, shifted, lifted; every atom rattled."""
    h = float(rng.uniform(*cfg.h_range))
    spin, tilt = float(rng.uniform(0, 360)), float(rng.uniform(0, cfg.max_tilt))
    theta = rng.uniform(0, 2 * np.pi)
    tilt_axis = np.array([np.cos(theta), np.sin(theta), 0.0])
    rot = _rotation(tilt_axis, tilt) @ _rotation(np.array([0.0, 0.0, 1.0]), spin)
    r, phi = cfg.max_shift * np.sqrt(rng.uniform()), rng.uniform(0, 2 * np.pi)
    m = mol.copy()
    m.positions = m.positions @ rot.T + [r * np.cos(phi), r * np.sin(phi), h]
    m.positions += rng.normal(0, cfg.rattle_molecule, m.positions.shape)
    s = substrate.copy()
    s.positions += rng.normal(0, cfg.rattle_substrate, s.positions.shape)
    info = {"role": "sample", "height": round(h, 6), "shift": round(float(r), 6), "tilt": round(tilt, 4)}
    return _combine(s, m, info), info


def generate(cfg: GrapheneConfig, subset: bool, teacher: Teacher) -> list[Atoms]:
    """All unlabelled frames; with ``subset`` the first ``subset_per_group`` of every (molecule, substrate, role)."""
    substrates = relaxed_substrates(cfg, teacher)
    molecules = {m: lay_flat(_optimised(m, teacher)) for m in cfg.molecules}
    limit = cfg.subset_per_group if subset else None
    frames = []
    for k, name in enumerate(cfg.molecules):
        for i, (sub, n_samples) in enumerate(cfg.samples):
            frames += _fixed_frames(name, sub, substrates[sub], molecules[name], limit)
            rng = np.random.default_rng([cfg.seed, k, i])
            for j in range(n_samples if limit is None else limit):
                atoms, _ = _sample(rng, substrates[sub], molecules[name], cfg)
                atoms.info.update({"frame_id": f"{name}/{sub}/sample/{j:03d}", "split": common.split_of(rng)})
                frames.append(atoms)
    for f in frames:
        f.info["molecule"] = f.info["frame_id"].split("/")[0]
    return frames


def add_binding_energies(frames: list[Atoms], teacher: Teacher, work_dir: Path | None = None, workers: int = 1,
                         progress: bool = False) -> dict[str, float]:
    """``info['binding_energy']`` (eV) = E(complex) - E(substrate) - E(molecule) of every frame, each fragment
    rigid at the frame's geometry (:func:`muse_ff.analysis.quantities.interaction_energy` of the
    :func:`~muse_ff.analysis.quantities.substrate_and_molecule` fragments: the substrate keeps the cell, the
    molecule is free). Curve and scan frames share one ideal substrate and one flat molecule per name;
    every sample has its own rattled fragments, labelled through the resumable pipeline in ``work_dir``
    (``workers`` processes) when given, else one by one.

    Returns the curve fragments' energies (eV) keyed ``substrate:<name>`` and ``molecule:<name>``.
    """
    from muse_ff.analysis.quantities import interaction_energy, substrate_and_molecule

    fragments: dict[str, float] = {}
    parts: list[Atoms] = []  # the samples' fragments, two per sample
    for f in frames:
        if f.info["role"] == "sample":
            for what, part in zip(("substrate", "molecule"), substrate_and_molecule(f)):
                part.info = {"frame_id": f"{f.info['frame_id']}:{what}"}
                parts.append(part)
            continue
        keys = (f"substrate:{f.info['substrate']}", f"molecule:{f.info['molecule']}")
        for key, part in zip(keys, substrate_and_molecule(f)):
            if key not in fragments:
                fragments[key] = teacher.label(part).energy
        f.info["binding_energy"] = float(interaction_energy(float(f.info["REF_energy"]), fragments[keys[0]],
                                                            fragments[keys[1]]))
    if parts and work_dir is not None:
        labelled, report = common.label_with_teacher(parts, teacher.name, {}, Path(work_dir), workers, progress)
        if report.failures:
            raise RuntimeError(f"{len(report.failures)} sample fragment(s) failed to label: {report.failures[:3]}")
        energy = {a.info["frame_id"]: float(a.info["REF_energy"]) for a in labelled}
    else:
        energy = {p.info["frame_id"]: teacher.label(p).energy for p in parts}
    for f in frames:
        if f.info["role"] == "sample":
            fid = f.info["frame_id"]
            f.info["binding_energy"] = float(interaction_energy(float(f.info["REF_energy"]),
                                                                energy[f"{fid}:substrate"],
                                                                energy[f"{fid}:molecule"]))
    return fragments


def stored_labels(frames: list[Atoms], path: Path, teacher: Teacher) -> dict[str, Atoms]:
    """{frame_id: stored frame} for the generated ``frames`` that ``path`` already holds, labelled by the same
    teacher (name, version, settings) at the same numbers, cell, pbc and positions (within 1e-6 Å)."""
    from muse_ff.teachers.labelling import read_frames

    by_id = {a.info["frame_id"]: a for a in read_frames(path)}
    prov = teacher.provenance()
    out = {}
    for f in frames:
        old = by_id.get(f.info["frame_id"])
        if (old is not None and len(old) == len(f) and (old.numbers == f.numbers).all()
                and (old.pbc == f.pbc).all() and np.allclose(old.cell[:], f.cell[:], atol=1e-6)
                and np.allclose(old.positions, f.positions, atol=1e-6)
                and all(old.info.get(k) == v for k, v in prov.items())
                and "REF_energy" in old.info and "REF_forces" in old.arrays):
            out[f.info["frame_id"]] = old
    return out


def build(out_dir: Path, subset: bool = False, workers: int = 1, progress: bool = False,
          command: str = "", cfg: GrapheneConfig = CONFIG, reuse: Path | None = None) -> common.BuildResult:
    """Generate, label and write the molecule-graphene dataset into ``out_dir``.

    ``reuse``: an earlier build's ``.extxyz.xz``; every generated frame it holds unchanged
    (:func:`stored_labels`) keeps its stored labels and only the others are labelled (how pyrrole was added
    without relabelling the 410 frames of the first three molecules). The fragment energies of the binding
    energies are always recomputed (two teacher calls per sample: about 12 min on one core)."""
    start = common.timer()
    teacher = TEACHERS[cfg.teacher]()
    frames = generate(cfg, subset, teacher)
    stem = "molecule-graphene" + ("-subset" if subset else "")
    work = out_dir / f"_work-{stem}"
    stored = stored_labels(frames, Path(reuse), teacher) if reuse is not None else {}
    todo = [f for f in frames if f.info["frame_id"] not in stored]
    report = common.LabelReport(total=0, computed=0, reused=0)
    fresh: list[Atoms] = []
    if todo:
        fresh, report = common.label_with_teacher(todo, cfg.teacher, {}, work, workers, progress)
    by_id = {**stored, **{a.info["frame_id"]: a for a in fresh}}
    labelled = [by_id[f.info["frame_id"]] for f in frames if f.info["frame_id"] in by_id]
    for k, a in enumerate(labelled):
        a.info["source_index"] = k
    fragments = add_binding_energies(labelled, teacher, work / "fragments", workers, progress)
    data = common.write_frames(out_dir / f"{stem}.extxyz.xz", labelled)
    seconds = common.timer() - start
    extra = (f"- substrates: flake C96H24 (radius {cfg.flake_radius} Å, relaxed), periodic {cfg.sheet_repeat}x"
             f"{cfg.sheet_repeat} sheet (ideal, C-C 1.42 Å); curve heights {list(CURVE_HEIGHTS)} Å; scan shifts "
             f"{list(SCAN_SHIFTS)} Å at 3.4 Å\n- samples: height U{cfg.h_range} Å, shift within {cfg.max_shift} Å "
             f"(periodic: same, wraps), spin U(0, 360), tilt U(0, {cfg.max_tilt}) deg, Gaussian rattle "
             f"{cfg.rattle_substrate} Å (substrate) / {cfg.rattle_molecule} Å (molecule); seed {cfg.seed}\n"
             "- extra info keys: `role` (curve/scan/sample), `molecule`, `substrate`, `n_substrate` (the first "
             "atoms), `height` (Å, molecule centre of mass above the carbon plane), `shift` (Å), `tilt` (deg), "
             "`binding_energy` (eV, every frame: E - E(substrate) - E(molecule), rigid fragments at the frame's "
             "geometry, the substrate with the cell, the molecule free)\n"
             "- fragment energies (eV): " + ", ".join(f"{k} {v:.6f}" for k, v in fragments.items()) + "\n")
    card = common.write_card(out_dir / ("README.md" if not subset else f"{stem}.md"),
                             title="Molecule-graphene: aromatic molecules over graphene (GFN1-xTB)"
                             + (" (subset)" if subset else ""), what=__doc__.split("\n\n", 1)[1],
                             command=command, provenance=teacher.provenance(), frames=labelled,
                             seconds=seconds, tags=("role", "substrate", "molecule"), extra=extra,
                             failures=report.failures)
    common.remove_work_dir(work)
    return common.BuildResult("molecule-graphene", out_dir, [data, card], len(labelled), report.failures,
                              seconds, {"fragments": fragments})
