"""Label a file of structures with a teacher: parallel, resumable, and honest about failures.

Durability. Each finished frame is appended as one JSON line to a sidecar journal ``OUT.journal`` and
flushed to disk (``fsync``) before the next is recorded, so a kill at any moment loses at most the
frames being computed. The output file itself is written only at the end, to a temporary file that is
then renamed over ``OUT`` (atomic on POSIX): ``OUT`` is never half-written. On restart, frames found in
the journal, or already in ``OUT`` with the same teacher provenance and the same positions, are not
computed again. Failed frames are never considered done: a re-run tries them again. While a run is
going its journal is locked (``flock``), so a second run on the same output stops at once instead of
interleaving records; temporaries of a killed run's final write are removed by the next run.

Workers. ``workers`` > 1 labels in spawned processes that die with the labelling process, also when it
is killed with SIGKILL (``prctl(PR_SET_PDEATHSIG)`` on Linux, and a thread polling ``os.getppid()``
everywhere: see :func:`_die_with_parent`); the multiprocessing resource tracker then exits too.

Failures. A frame on which the teacher fails (SCF not converged, wrong atoms for the topology, ...) is
recorded with its index and message in ``OUT.failures.txt`` and in the returned report; it is left
out of ``OUT`` but never silently.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ase.io
import numpy as np
from ase import Atoms

from muse_ff.data.atoms import LabelKeys
from muse_ff.io.structures import read_structures
from muse_ff.teachers.base import Label, Teacher, TeacherError

#: info key holding a labelled frame's index in the input file
SOURCE_INDEX = "source_index"


@dataclass
class LabelReport:
    """What a labelling run did. ``failures``: (input frame index, message), sorted by index."""

    total: int
    computed: int
    reused: int
    failures: list[tuple[int, str]] = field(default_factory=list)
    out_path: Path | None = None
    failures_path: Path | None = None
    seconds: float = 0.0

    @property
    def labelled(self) -> int:
        """Frames present in the output."""
        return self.total - len(self.failures)


def read_frames(path: str | Path) -> list[Atoms]:
    """Every frame of ``path`` (any ASE format; .gz/.xz/.bz2 extxyz decompressed in memory first).

    A file that cannot be read raises :class:`~muse_ff.io.structures.StructureReadError` naming it.
    """
    return read_structures(path, ":")


def journal_path(out_path: str | Path) -> Path:
    return Path(str(out_path) + ".journal")


def failures_path(out_path: str | Path) -> Path:
    return Path(str(out_path) + ".failures.txt")


# ----------------------------------------------------------------------------------------- journal
def _header(frames: Sequence[Atoms], provenance: dict[str, str]) -> dict[str, Any]:
    digest = hashlib.sha256()
    for a in frames:
        digest.update(np.ascontiguousarray(a.numbers, dtype=np.int64).tobytes())
        digest.update(np.ascontiguousarray(a.positions, dtype=np.float64).round(6).tobytes())
    return {"header": 1, "n_frames": len(frames), "input_sha256": digest.hexdigest(), **provenance}


def _read_journal(path: Path, header: dict[str, Any]) -> dict[int, Label]:
    """Successful records of a journal written for the same input and teacher; drops a torn last line."""
    if not path.exists():
        return {}
    raw = path.read_bytes()
    complete = raw[: raw.rfind(b"\n") + 1]  # a kill can leave one partial line at the end
    if len(complete) != len(raw):
        with open(path, "r+b") as fh:
            fh.truncate(len(complete))
    lines = [json.loads(x) for x in complete.decode().splitlines() if x.strip()]
    if not lines:
        return {}
    if lines[0] != header:
        raise TeacherError(
            f"the journal {path} was written for a different input or teacher (it records "
            f"{ {k: lines[0].get(k) for k in ('teacher', 'n_frames')} }); delete it to start over"
        )
    done = {}
    for rec in lines[1:]:
        if "error" not in rec:
            stress = None if rec.get("stress") is None else np.asarray(rec["stress"])
            dipole = None if rec.get("dipole") is None else np.asarray(rec["dipole"])
            done[rec["index"]] = Label(rec["energy"], np.asarray(rec["forces"]), stress, dipole)
    return done


def _lock_journal(path: Path):
    """The journal opened and locked (``flock``, exclusive) for this run; raise if another run holds it.

    Two runs writing the same output would interleave their journals; the lock makes the second one
    stop at once. A killed run's lock goes with its process. (No locking where ``fcntl`` is missing.)
    """
    try:
        import fcntl
    except ImportError:  # not POSIX
        return open(path, "a", encoding="utf-8")
    while True:
        fh = open(path, "a", encoding="utf-8")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            raise TeacherError(f"another labelling run is writing {path.name[:-len('.journal')]} (its journal "
                               f"{path} is locked); wait for it to finish or stop it") from None
        try:
            if os.stat(path).st_ino == os.fstat(fh.fileno()).st_ino:
                return fh
        except FileNotFoundError:
            pass
        fh.close()  # the run that held the lock finished and removed the journal meanwhile: lock the new one


def _remove_stale_temporaries(out_path: Path) -> None:
    """Delete temporaries of :func:`write_atomic` for ``out_path`` left by a killed run (we hold the lock)."""
    pattern = re.compile(r"\.tmp-\d+-" + re.escape(out_path.name))
    for p in out_path.parent.glob(".tmp-*-" + out_path.name):
        if pattern.fullmatch(p.name):
            p.unlink(missing_ok=True)


class _Journal:
    """Append-only JSON-lines log, each record flushed and fsync'ed before returning."""

    def __init__(self, path: Path, header: dict[str, Any]):
        new = not path.exists() or path.stat().st_size == 0
        self._fh = open(path, "a", encoding="utf-8")
        if new:
            self.write(header)

    def write(self, record: dict[str, Any]) -> None:
        self._fh.write(json.dumps(record) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()


def _record(index: int, outcome: Label | str) -> dict[str, Any]:
    if isinstance(outcome, str):
        return {"index": index, "error": outcome}
    stress = None if outcome.stress is None else outcome.stress.tolist()
    dipole = None if outcome.dipole is None else outcome.dipole.tolist()
    return {"index": index, "energy": outcome.energy, "forces": outcome.forces.tolist(), "stress": stress,
            "dipole": dipole}


# ------------------------------------------------------------------------------------ reuse of OUT
def _reuse_output(out_path: Path, frames: Sequence[Atoms], provenance: dict[str, str],
                  keys: LabelKeys, overwrite: bool = False) -> dict[int, Label]:
    """Labels of frames already in ``out_path`` made by the same teacher for the same positions.

    An existing ``out_path`` holding any frame this run would not reuse (another teacher or settings,
    other structures, or not a labelled file of ``muse label`` at all) is refused with a
    :class:`TeacherError` unless ``overwrite``: the run would replace labels that may have cost hours."""
    if not out_path.exists():
        return {}
    done, foreign = {}, []
    for n, a in enumerate(read_frames(out_path)):
        k = a.info.get(SOURCE_INDEX)
        if k is None or not 0 <= int(k) < len(frames) or keys.energy not in a.info:
            foreign.append((n, "not a frame of this input" if k is not None else "no source index"))
            continue
        src = frames[int(k)]
        same_provenance = all(str(a.info.get(key)) == value for key, value in provenance.items())
        if not same_provenance:
            other = {key: a.info.get(key) for key, value in provenance.items() if str(a.info.get(key)) != value}
            foreign.append((n, "labelled with " + ", ".join(f"{key}={v}" for key, v in other.items())))
            continue
        if (len(a) != len(src) or (a.numbers != src.numbers).any()
                or not np.allclose(a.positions, src.positions, atol=1e-6)):
            foreign.append((n, f"another structure than input frame {int(k)}"))
            continue
        stress, dipole = a.info.get(keys.stress), a.info.get(keys.dipole)
        done[int(k)] = Label(a.info[keys.energy], a.arrays[keys.forces],
                             None if stress is None else np.asarray(stress).reshape(3, 3),
                             None if dipole is None else np.asarray(dipole).reshape(3))
    if foreign and not overwrite:
        n, why = foreign[0]
        raise TeacherError(f"{out_path} exists and {len(foreign)} of its frames would be replaced (frame {n}: {why}); "
                           f"pass --overwrite to replace it, or choose another output path")
    return done


# ----------------------------------------------------------------------------------------- workers
_WORKER_TEACHER: Teacher | None = None


#: seconds between two checks, in a worker, that the labelling process is still alive
PARENT_POLL_SECONDS = 0.5
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def _die_with_parent(parent_pid: int, *, pdeathsig: bool = True) -> None:
    """Make this worker exit as soon as the labelling process ``parent_pid`` that started it dies.

    Why: a ``ProcessPoolExecutor`` worker waits for tasks by reading a pipe whose write end it holds
    itself, so it never sees end-of-file when the parent is killed (SIGKILL, the OOM killer); before this,
    a killed ``muse label --workers N`` left N workers (each holding a teacher, hundreds of MB) and the
    multiprocessing resource tracker (kept alive by the workers' copy of its pipe) running forever.

    How, two independent mechanisms:

    1. Linux: ``prctl(PR_SET_PDEATHSIG, SIGKILL)``, so the kernel kills the worker when the parent dies,
       even in the middle of a long teacher call in C that holds the GIL. The kernel sends it when the
       *thread* that spawned the worker exits; the pool spawns its workers in ``submit`` from the thread
       running :func:`label_frames`, which outlives the pool. The parent may have died before the
       ``prctl`` call: that is caught by comparing ``os.getppid()`` with ``parent_pid`` afterwards.
    2. Every POSIX system: a daemon thread that checks ``os.getppid()`` every
       :data:`PARENT_POLL_SECONDS` and exits the process once it changed (an orphan is re-parented to
       init or a subreaper). This covers systems without ``prctl``; it needs the GIL, so a teacher stuck in
       C code that holds the GIL is stopped only by mechanism 1. (``pdeathsig=False`` leaves out
       mechanism 1, for tests.)

    The worker exits with ``os._exit``: there is nothing to flush (results are journalled by the parent).
    """
    import signal
    import sys
    import threading

    if pdeathsig and sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):  # no prctl: the polling thread alone has to do
            pass
    if os.getppid() != parent_pid:  # the parent died before we got here
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(PARENT_POLL_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="muse-parent-watch", daemon=True).start()


def _init_worker(teacher_cls: type[Teacher], settings: dict[str, Any], parent_pid: int) -> None:
    global _WORKER_TEACHER
    _die_with_parent(parent_pid)
    _WORKER_TEACHER = teacher_cls(**settings)


def _label_one(teacher: Teacher, index: int, atoms: Atoms) -> tuple[int, Label | str]:
    """``(index, Label)`` or ``(index, error message)``; never raises for a per-frame failure."""
    try:
        return index, teacher.label(atoms)
    except Exception as err:  # reported with its index, never dropped
        return index, f"{type(err).__name__}: {err}"


def _label_in_worker(index: int, atoms: Atoms) -> tuple[int, Label | str]:
    assert _WORKER_TEACHER is not None, "worker teacher not initialised"
    return _label_one(_WORKER_TEACHER, index, atoms)


def _run_serial(teacher: Teacher, todo: list[tuple[int, Atoms]]) -> Iterator[tuple[int, Label | str]]:
    for index, atoms in todo:
        yield _label_one(teacher, index, atoms)


def _run_pool(teacher_cls: type[Teacher], settings: dict[str, Any], todo: list[tuple[int, Atoms]],
              workers: int) -> Iterator[tuple[int, Label | str]]:
    """Results as they finish, from ``workers`` spawned processes, with at most 2 tasks per worker queued."""
    ctx = multiprocessing.get_context("spawn")  # fork after OpenMP/torch initialisation can deadlock
    pending: set[Future] = set()
    queue = iter(todo)
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                             initargs=(teacher_cls, settings, os.getpid())) as pool:
        for index, atoms in queue:
            pending.add(pool.submit(_label_in_worker, index, atoms))
            if len(pending) >= 2 * workers:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                yield from (f.result() for f in finished)
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            yield from (f.result() for f in finished)


# --------------------------------------------------------------------------------------- pipeline
def _progress_bar(enabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn

    return Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), disable=not enabled, transient=False)


def _labelled_atoms(atoms: Atoms, index: int, label: Label, provenance: dict[str, str],
                    keys: LabelKeys) -> Atoms:
    """A copy of ``atoms`` carrying ``label`` under ``keys`` plus provenance and the source index."""
    out = atoms.copy()
    out.calc = None
    out.info.update(provenance)
    out.info[SOURCE_INDEX] = index
    out.info[keys.energy] = label.energy
    out.arrays[keys.forces] = label.forces
    if label.stress is not None:
        out.info[keys.stress] = label.stress.reshape(9)
    if label.dipole is not None:
        out.info[keys.dipole] = label.dipole.reshape(3)
    return out


def write_atomic(path: Path, frames: Sequence[Atoms]) -> None:
    """Write extxyz (compressed if ``path`` ends in .gz/.xz/.bz2) to a temporary file, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        ase.io.write(tmp, list(frames), format="extxyz")
        with open(tmp, "rb") as fh:  # on disk before the rename, so OUT is never an empty file
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_failures(path: Path, failures: list[tuple[int, str]], in_path: Path | None) -> None:
    if not failures:
        path.unlink(missing_ok=True)
        return
    lines = [f"# {len(failures)} frame(s) of {in_path or 'the input'} could not be labelled: index<TAB>message"]
    lines += [f"{i}\t{' '.join(msg.split())}" for i, msg in failures]
    path.write_text("\n".join(lines) + "\n")


def label_frames(frames: Sequence[Atoms], teacher_cls: type[Teacher], settings: dict[str, Any],
                 out_path: str | Path, *, workers: int = 1, keys: LabelKeys = LabelKeys(),
                 progress: bool = False, in_path: Path | None = None,
                 on_result: Callable[[int], None] | None = None, overwrite: bool = False) -> LabelReport:
    """Label ``frames`` with ``teacher_cls(**settings)`` and write them to ``out_path`` (see module doc).

    An existing ``out_path`` is completed, its frames of the same teacher and structures reused; one holding
    anything else is refused unless ``overwrite``. ``workers`` > 1 uses that many spawned processes. Returns a :class:`LabelReport`; failed frames are
    listed there and in ``OUT.failures.txt`` and are left out of ``out_path``.
    """
    start, out_path = time.perf_counter(), Path(out_path)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if out_path.is_dir():  # found now, not after hours of labelling
        raise ValueError(f"output {out_path} is a directory; give the path of the extxyz file to write")
    teacher = teacher_cls(**settings)  # fail early on a missing package or bad settings
    provenance = teacher.provenance()
    jpath = journal_path(out_path)
    jpath.parent.mkdir(parents=True, exist_ok=True)
    lock = _lock_journal(jpath)  # one run per output at a time; released by the kernel if we are killed
    try:
        return _label_locked(frames, teacher, teacher_cls, settings, out_path, provenance, workers=workers,
                             keys=keys, progress=progress, in_path=in_path, on_result=on_result, start=start,
                             overwrite=overwrite)
    finally:
        lock.close()


def _label_locked(frames, teacher, teacher_cls, settings, out_path, provenance, *, workers, keys, progress,
                  in_path, on_result, start, overwrite=False) -> LabelReport:
    """:func:`label_frames` once the journal is locked."""
    header = _header(frames, provenance)
    jpath = journal_path(out_path)
    _remove_stale_temporaries(out_path)
    journalled = _read_journal(jpath, header)
    from_output = {k: v for k, v in _reuse_output(out_path, frames, provenance, keys, overwrite).items() if k not in journalled}
    done = {**from_output, **journalled}
    todo = [(k, a) for k, a in enumerate(frames) if k not in done]
    failures: dict[int, str] = {}
    journal = _Journal(jpath, header)
    try:
        for k, label in from_output.items():  # make the journal self-sufficient before computing more
            journal.write(_record(k, label))
        results = (_run_serial(teacher, todo) if workers == 1 or len(todo) <= 1
                   else _run_pool(teacher_cls, settings, todo, workers))
        with _progress_bar(progress) as bar:
            task = bar.add_task(f"labelling with {teacher.name}", total=len(frames), completed=len(done))
            for index, outcome in results:
                journal.write(_record(index, outcome))
                if isinstance(outcome, str):
                    failures[index] = outcome
                else:
                    done[index] = outcome
                bar.advance(task)
                if on_result is not None:
                    on_result(index)
    finally:
        journal.close()
    labelled = [_labelled_atoms(frames[k], k, done[k], provenance, keys) for k in sorted(done)]
    write_atomic(out_path, labelled)
    fails = sorted(failures.items())
    _write_failures(failures_path(out_path), fails, in_path)
    jpath.unlink()
    return LabelReport(total=len(frames), computed=len(todo) - len(fails), reused=len(frames) - len(todo),
                       failures=fails, out_path=out_path,
                       failures_path=failures_path(out_path) if fails else None,
                       seconds=time.perf_counter() - start)


def label_file(in_path: str | Path, out_path: str | Path, teacher: str | type[Teacher],
               settings: dict[str, Any] | None = None, **kwargs: Any) -> LabelReport:
    """Read every frame of ``in_path`` (extxyz or any ASE format), label it, write ``out_path``.

    ``teacher`` is a name in :data:`muse_ff.teachers.TEACHERS` or a :class:`Teacher` subclass. Keyword
    arguments go to :func:`label_frames` (``workers``, ``keys``, ``progress``).
    """
    from muse_ff.teachers import get_teacher_class

    in_path = Path(in_path)
    if not in_path.exists():
        raise FileNotFoundError(f"input structures not found: {in_path}")
    if Path(out_path).resolve() == in_path.resolve():
        raise ValueError(f"output {out_path} would overwrite the input; choose another path")
    teacher_cls = get_teacher_class(teacher) if isinstance(teacher, str) else teacher
    frames = read_frames(in_path)
    if not frames:
        raise ValueError(f"no structures in {in_path}")
    return label_frames(frames, teacher_cls, dict(settings or {}), out_path, in_path=in_path, **kwargs)
