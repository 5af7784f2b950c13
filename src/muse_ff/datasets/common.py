"""Pieces shared by the dataset builders: random geometry helpers, splits, labelling, data cards.

Every builder writes, into its output directory:

- ``<name>.extxyz.xz`` (or plain ``.extxyz`` for the packaged demo): labelled frames with
  ``REF_energy`` (eV), ``REF_forces`` (eV/Å), teacher provenance, ``split`` in {train, valid, test},
  a unique ``frame_id`` and builder-specific tags;
- ``README.md``: the data card (what, exact command, teacher, size, splits, time, license).

Frames are generated deterministically from a seed, in an order where the ``--subset`` frames are a
prefix of each group of the full dataset, so a subset build reproduces stored labels exactly.
"""

from __future__ import annotations

import json
import platform
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from muse_ff.teachers import TEACHERS, label_frames
from muse_ff.teachers.labelling import LabelReport, read_frames

SPLITS = ("train", "valid", "test")
LICENSE = ("CC-BY-4.0 for the labels and geometries generated here (MuSE authors). The teachers are "
           "tblite (LGPL-3.0) and OpenMM (MIT/LGPL) with the Amber ff14SB parameters shipped in OpenMM.")


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random 3x3 rotation matrix (from a uniform unit quaternion)."""
    q = rng.normal(size=4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def random_unit_vector(rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=3)
    return v / np.linalg.norm(v)


def split_of(rng: np.random.Generator, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> str:
    """One draw of ``train``/``valid``/``test`` with the given probabilities."""
    return str(rng.choice(SPLITS, p=np.asarray(fractions) / sum(fractions)))


@dataclass
class BuildResult:
    """What a builder wrote. ``seconds``: wall time of the build; ``extra``: builder-specific numbers."""

    name: str
    out_dir: Path
    files: list[Path]
    n_frames: int
    failures: list[tuple[int, str]] = field(default_factory=list)
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def label_with_teacher(frames: Sequence[Atoms], teacher: str, settings: dict[str, Any], work_dir: Path,
                       workers: int, progress: bool) -> tuple[list[Atoms], LabelReport]:
    """Label ``frames`` via the resumable pipeline (journal in ``work_dir``); labelled frames in input order."""
    work_dir.mkdir(parents=True, exist_ok=True)
    out = work_dir / "labelled.extxyz"
    report = label_frames(frames, TEACHERS[teacher], settings, out, workers=workers, progress=progress)
    return read_frames(out), report


def write_frames(path: Path, frames: Sequence[Atoms]) -> Path:
    """Write ``frames`` as extxyz (xz-compressed when ``path`` ends in ``.xz``)."""
    from muse_ff.teachers.labelling import write_atomic

    write_atomic(path, frames)
    return path


def summarise(frames: Sequence[Atoms], tags: Sequence[str] = ()) -> str:
    """Markdown lines: frame and atom counts, split sizes, and counts per value of each info ``tag``."""
    sizes = Counter(len(a) for a in frames)
    lines = [f"- frames: {len(frames)}; atoms per frame: "
             + ", ".join(f"{n} ({c} frames)" for n, c in sorted(sizes.items()))]
    splits = Counter(a.info.get("split", "none") for a in frames)
    lines.append("- splits: " + ", ".join(f"{s} {splits.get(s, 0)}" for s in (*SPLITS, "none") if splits.get(s)))
    for tag in tags:
        counts = Counter(str(a.info.get(tag)) for a in frames)
        lines.append(f"- by `{tag}`: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    return "\n".join(lines)


def write_card(path: Path, *, title: str, what: str, command: str, provenance: dict[str, str],
               frames: Sequence[Atoms], seconds: float, tags: Sequence[str] = (), extra: str = "",
               failures: Sequence[tuple[int, str]] = ()) -> Path:
    """Write the markdown data card of a dataset."""
    settings = json.loads(provenance.get("teacher_settings", "{}"))
    failed = (f"{len(failures)} frame(s) could not be labelled and are left out: "
              + "; ".join(f"{i}: {m}" for i, m in failures[:10]) if failures else "none")
    dipole = (", `REF_dipole` (e Å, the teacher's dipole moment about the origin)"
              if frames and all("REF_dipole" in a.info for a in frames) else "")
    text = f"""# {title}

{what}

## How it was made
- command: `{command}`
- teacher: `{provenance.get('teacher')}` ({provenance.get('teacher_version')}), settings `{json.dumps(settings)}`
- generated {time.strftime('%Y-%m-%d')} on {platform.machine()} ({platform.python_implementation()} \
{platform.python_version()}), wall time {seconds:.0f} s ({seconds / 60:.1f} min)
- frames that failed to label: {failed}

## Contents
{summarise(frames, tags)}
- labels: `REF_energy` (eV, total energy), `REF_forces` (eV/Å){dipole}; provenance keys `teacher`,
  `teacher_version`, `teacher_settings` and a unique `frame_id` in every frame's info
{extra}
## License
{LICENSE}
"""
    path.write_text(text)
    return path


def remove_work_dir(work: Path) -> None:
    """Delete a builder's scratch directory and its scratch subdirectories (journals already consumed,
    labelled copies already written)."""
    for p in work.glob("*"):
        if p.is_dir() and not p.is_symlink():
            remove_work_dir(p)
        else:
            p.unlink()
    work.rmdir()


def timer() -> float:
    return time.perf_counter()
