"""Dimers of polar or charged molecules at 3-15 Å: the ``long-range-dimers`` dataset and the packaged ``demo``.

Each frame is two teacher-optimised monomers, each rotated uniformly at random and displaced by a small
Gaussian "thermal" rattle, with centres of mass ``separation`` Å apart along a random direction.
Beyond ~5 Å the interaction (dipole-dipole ~ 1/r^3, ion-dipole ~ 1/r^2, ion-ion ~ 1/r) is invisible to
a 5 Å model, which is the point. Frames also carry ``interaction_energy`` = E(AB) - E(A) - E(B) (eV) with
the same monomer geometries, so binding curves can be plotted without re-running the teacher.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms

from muse_ff.datasets import common
from muse_ff.datasets.molecules import molecule, optimised
from muse_ff.teachers import TEACHERS, Teacher


@dataclass(frozen=True)
class DimerConfig:
    """A dimer dataset. Distances in Å; ``rattle`` is the Gaussian displacement std (Å) of every atom."""

    name: str
    title: str
    pairs: tuple[tuple[str, str], ...]
    frames_per_pair: int
    subset_per_pair: int
    seed: int
    r_min: float = 3.0
    r_max: float = 15.0
    rattle: float = 0.01
    min_contact: float = 1.8  # closest allowed intermolecular atom-atom distance
    min_heavy_contact: float = 2.6  # closest allowed intermolecular non-hydrogen distance
    teacher: str = "gfn2-xtb"
    compress: bool = True
    #: ((molecule a, molecule b), r_max) for pairs sampled only up to a shorter separation
    r_max_for: tuple[tuple[tuple[str, str], float], ...] = ()

    def r_max_of(self, pair: tuple[str, str]) -> float:
        return dict(self.r_max_for).get(pair, self.r_max)


_POLAR = ("water", "ammonia", "formaldehyde", "acetonitrile", "methanol")

#: GFN2-xTB puts a spurious fractional charge transfer (0.1 e at 12 Å) between separated formate and
#: methylammonium (delocalisation error) and its SCF then often fails to converge: that pair stops at 9 Å.
_ION_PAIR_R_MAX = 9.0

DEMO = DimerConfig(
    name="demo", title="MuSE demo: small polar and ion-water dimers at 3-15 Å (GFN2-xTB)",
    pairs=(("water", "water"), ("acetonitrile", "acetonitrile"), ("methylammonium", "water"),
           ("formate", "water")),
    frames_per_pair=125, subset_per_pair=3, seed=2026, rattle=0.01, compress=False,
)

LONG_RANGE = DimerConfig(
    name="long-range-dimers", title="Long-range dimers: polar and ionic molecule pairs at 3-15 Å (GFN2-xTB)",
    pairs=tuple(itertools.combinations_with_replacement(_POLAR, 2))
    + (("formate", "methylammonium"), ("formate", "water"), ("methylammonium", "water")),
    frames_per_pair=100, subset_per_pair=3, seed=7, rattle=0.02,
    r_max_for=((("formate", "methylammonium"), _ION_PAIR_R_MAX),),
)


def _contacts_ok(a: np.ndarray, za: np.ndarray, b: np.ndarray, zb: np.ndarray, cfg: DimerConfig) -> bool:
    d = np.linalg.norm(a[:, None] - b[None], axis=-1)
    heavy = (za[:, None] > 1) & (zb[None] > 1)
    return d.min() >= cfg.min_contact and (not heavy.any() or d[heavy].min() >= cfg.min_heavy_contact)


def _place(rng: np.random.Generator, mono_a: Atoms, mono_b: Atoms, cfg: DimerConfig,
           r_max: float) -> tuple[Atoms, float]:
    """One dimer: random orientations and separation (redrawn until no atoms clash)."""
    for _ in range(10_000):
        r = float(rng.uniform(cfg.r_min, r_max))
        pa = mono_a.positions @ common.random_rotation(rng).T + rng.normal(0, cfg.rattle, (len(mono_a), 3))
        pb = mono_b.positions @ common.random_rotation(rng).T + rng.normal(0, cfg.rattle, (len(mono_b), 3))
        pb = pb + r * common.random_unit_vector(rng)
        if _contacts_ok(pa, mono_a.numbers, pb, mono_b.numbers, cfg):
            atoms = Atoms(np.concatenate([mono_a.numbers, mono_b.numbers]), positions=np.vstack([pa, pb]))
            return atoms, r
    raise RuntimeError(f"could not place {mono_a.info['molecule']} and {mono_b.info['molecule']} without clashes")


def set_formal_charges(atoms: Atoms, charge_a: float, charge_b: float) -> None:
    """Per-atom formal charges (``initial_charges``) saying which molecule carries the charge: each monomer's
    charge on its first atom (models read only their sum per molecule, :mod:`muse_ff.nn.charges`)."""
    q = np.zeros(len(atoms))
    q[0] += charge_a
    q[int(atoms.info["n_first"])] += charge_b
    atoms.set_initial_charges(q)


def add_missing_formal_charges(frames: list[Atoms]) -> list[Atoms]:
    """Set :func:`set_formal_charges` on dimer frames written before the builder set them (no
    ``initial_charges``), from their ``info['system']`` (``A+B``) and each monomer's charge in the molecule
    library; frames that have them are left as they are. Without them a charged dimer's two molecules share its
    charge as one group (``ChargeAmbiguityWarning``), so an ion's charge could move onto the water next to it.

    Raises ``ValueError`` when the monomers' charges do not add up to ``info['charge']``."""
    for atoms in frames:
        if "initial_charges" in atoms.arrays and atoms.arrays["initial_charges"].any():
            continue
        names = str(atoms.info["system"]).split("+")
        qa, qb = (int(molecule(m).info["charge"]) for m in names)
        if qa + qb != int(atoms.info.get("charge", 0)):
            raise ValueError(f"dimer {atoms.info['system']}: monomer charges {qa} + {qb} differ from the frame's "
                             f"charge {atoms.info.get('charge', 0)}")
        set_formal_charges(atoms, qa, qb)
    return frames


def generate(cfg: DimerConfig, subset: bool, teacher: Teacher) -> list[Atoms]:
    """Unlabelled dimer frames; with ``subset`` the first ``subset_per_pair`` frames of every pair."""
    n = cfg.subset_per_pair if subset else cfg.frames_per_pair
    monomers = {m: optimised(m, teacher) for m in sorted({m for p in cfg.pairs for m in p})}
    frames = []
    for k, (a, b) in enumerate(cfg.pairs):
        rng = np.random.default_rng([cfg.seed, k])
        system = f"{a}+{b}"
        for j in range(n):
            atoms, r = _place(rng, monomers[a], monomers[b], cfg, cfg.r_max_of((a, b)))
            atoms.info.update({
                "frame_id": f"{system}/{j:04d}", "system": system, "separation": round(r, 6),
                "charge": int(monomers[a].info["charge"] + monomers[b].info["charge"]),
                "n_first": len(monomers[a]), "split": common.split_of(rng),
            })
            set_formal_charges(atoms, monomers[a].info["charge"], monomers[b].info["charge"])
            frames.append(atoms)
    return frames


def add_interaction_energies(frames: list[Atoms], teacher: Teacher, charges: dict[str, int]) -> None:
    """Set ``info['interaction_energy']`` = E(AB) - E(A) - E(B) in eV, monomers at the dimer's geometry
    (:func:`muse_ff.analysis.quantities.interaction_energy`)."""
    from muse_ff.analysis.quantities import interaction_energy

    for atoms in frames:
        a_name, b_name = atoms.info["system"].split("+")
        n = int(atoms.info["n_first"])
        mono_a, mono_b = atoms[:n], atoms[n:]
        mono_a.info = {"charge": charges[a_name]}
        mono_b.info = {"charge": charges[b_name]}
        atoms.info["interaction_energy"] = float(interaction_energy(float(atoms.info["REF_energy"]),
                                                                   teacher.label(mono_a).energy,
                                                                   teacher.label(mono_b).energy))


def build(cfg: DimerConfig, out_dir: Path, subset: bool = False, workers: int = 1,
          progress: bool = False, command: str = "") -> common.BuildResult:
    """Generate, label and write ``cfg`` into ``out_dir`` (``<name>.extxyz[.xz]`` and ``README.md``)."""
    start = common.timer()
    settings: dict = {}
    teacher = TEACHERS[cfg.teacher](**settings)
    frames = generate(cfg, subset, teacher)
    work = out_dir / f"_work-{cfg.name}{'-subset' if subset else ''}"
    labelled, report = common.label_with_teacher(frames, cfg.teacher, settings, work, workers, progress)
    charges = {m: int(molecule(m).info["charge"]) for p in cfg.pairs for m in p}
    add_interaction_energies(labelled, teacher, charges)
    stem = cfg.name + ("-subset" if subset else "")
    data = common.write_frames(out_dir / f"{stem}{'.extxyz.xz' if cfg.compress else '.extxyz'}", labelled)
    seconds = common.timer() - start
    limits = ", ".join(f"{a}+{b} only up to {r} Å" for (a, b), r in cfg.r_max_for)
    extra = (f"- geometry: separation (centre-of-mass distance) uniform in [{cfg.r_min}, {cfg.r_max}] Å, uniformly "
             f"random orientations ({limits or 'all pairs'}), Gaussian rattle {cfg.rattle} Å per coordinate, "
             "intermolecular contacts "
             f">= {cfg.min_contact} Å (heavy atoms >= {cfg.min_heavy_contact} Å), monomers optimised with "
             f"{cfg.teacher} first; seed {cfg.seed}\n"
             "- extra info keys: `system`, `separation` (Å), `charge`, `n_first` (atoms of the first monomer), "
             "`interaction_energy` (eV, E(AB) - E(A) - E(B) at the same monomer geometries); per-atom "
             "`initial_charges`: each monomer's formal charge on its first atom\n")
    card = common.write_card(out_dir / ("README.md" if not subset else f"{stem}.md"),
                             title=cfg.title + (" (subset)" if subset else ""), what=__doc__.split("\n\n")[1],
                             command=command, provenance=teacher.provenance(), frames=labelled,
                             seconds=seconds, tags=("system",), extra=extra, failures=report.failures)
    common.remove_work_dir(work)
    return common.BuildResult(cfg.name, out_dir, [data, card], len(labelled), report.failures, seconds)
