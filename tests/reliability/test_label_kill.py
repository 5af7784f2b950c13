"""Issue #13 item 4: SIGKILL of ``muse label --workers 2`` left its worker processes (and the
multiprocessing resource tracker) running; a re-run must resume without redoing or losing frames.

The command runs in a subprocess with the fake teacher of ``tests/teachers/labelling_fakes.py`` made
available to ``--teacher`` (a slow harmonic teacher that logs each frame it labels).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import ase.io
import pytest

FAKES = Path(__file__).resolve().parents[1] / "teachers"
sys.path.insert(0, str(FAKES))
from labelling_fakes import frames  # noqa: E402

from muse_ff.teachers.labelling import SOURCE_INDEX, journal_path  # noqa: E402

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")

# argv: fakes folder, call log, seconds per frame, input, output
SCRIPT = """
import sys
sys.path.insert(0, sys.argv[1])
from labelling_fakes import HarmonicTeacher
import muse_ff.cli.label as label_cli
import muse_ff.teachers as teachers
teachers.TEACHERS["harmonic"] = HarmonicTeacher
label_cli.TEACHER_NAMES = label_cli.TEACHER_NAMES + ("harmonic",)
label_cli.teacher_settings = lambda args: {"threads": args.threads, "log": sys.argv[2], "delay": float(sys.argv[3])}
from muse_ff.cli.main import main
sys.exit(main(["label", sys.argv[4], sys.argv[5], "--teacher", "harmonic", "--workers", "2", "--no-progress"]))
"""

N_FRAMES = 24


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of ``pid``, or None if it does not exist."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # the command name may hold spaces and parentheses
    return fields[0], int(fields[1])


def _descendants(root: int) -> list[int]:
    parent_of = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (st := _stat(int(entry.name))) is not None:
            parent_of[int(entry.name)] = st[1]
    found, frontier = [], [root]
    while frontier:
        kids = [pid for pid, ppid in parent_of.items() if ppid in frontier]
        found += kids
        frontier = kids
    return found


def _alive(pid: int) -> bool:
    st = _stat(pid)
    return st is not None and st[0] not in ("Z", "X")  # a zombie has exited


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:120]
    except OSError:
        return "?"


def _journalled(out: Path) -> set[int]:
    import json

    lines = journal_path(out).read_text().splitlines()[1:]
    return {json.loads(x)["index"] for x in lines if x.endswith("}")}


def test_killed_label_run_leaves_no_processes_and_resumes(tmp_path):
    src, out = tmp_path / "in.extxyz", tmp_path / "out.extxyz"
    log1, log2 = tmp_path / "calls1.log", tmp_path / "calls2.log"
    ase.io.write(src, frames(N_FRAMES))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, "-c", SCRIPT, str(FAKES)]
    stderr = tmp_path / "stderr.txt"
    with open(stderr, "wb") as err:  # a file, not a pipe: surviving workers would hold a pipe open
        proc = subprocess.Popen(argv + [str(log1), "0.25", str(src), str(out)], env=env,
                                stdout=subprocess.DEVNULL, stderr=err)
    children: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while not (journal_path(out).exists() and len(_journalled(out)) >= 3):
            assert proc.poll() is None, stderr.read_text()[-2000:]
            assert time.monotonic() < deadline, "the labelling run made no progress"
            time.sleep(0.05)
        children = _descendants(proc.pid)
        assert len(children) >= 2, f"expected the 2 workers among {[_cmdline(p) for p in children]}"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        done_before = _journalled(out)
        assert len(done_before) < N_FRAMES, "killed too late to test resuming"
        deadline = time.monotonic() + 5
        while any(map(_alive, children)) and time.monotonic() < deadline:
            time.sleep(0.1)
        survivors = [p for p in children if _alive(p)]
        assert not survivors, f"processes outlived the killed run: {[_cmdline(p) for p in survivors]}"
    finally:
        for pid in children:  # clean up what this test started, should the fix not work
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)

    rerun = subprocess.run(argv + [str(log2), "0", str(src), str(out)], env=env, capture_output=True,
                           text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"{len(done_before)} reused" in rerun.stdout
    # the re-run computed exactly the frames the killed run had not recorded, each once
    assert Counter(int(x) for x in log2.read_text().split()) == Counter(set(range(N_FRAMES)) - done_before)
    labelled = ase.io.read(out, index=":")
    assert [a.info[SOURCE_INDEX] for a in labelled] == list(range(N_FRAMES))  # every frame exactly once
    inputs = ase.io.read(src, index=":")
    for a in labelled:
        ref = inputs[a.info[SOURCE_INDEX]]
        assert a.info["tag"] == ref.info["tag"] == a.info[SOURCE_INDEX]
        assert a.info["REF_energy"] == pytest.approx((ref.positions ** 2).sum(), rel=1e-9)  # k = 2
        assert abs(a.arrays["REF_forces"] + 2.0 * ref.positions).max() < 1e-6
    assert not journal_path(out).exists()


# argv: mechanism; a process that starts one labelling-worker stand-in, waits until it is armed, then
# prints its pid and sleeps (to be killed)
PARENT = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", sys.argv[2], sys.argv[1]], stdout=subprocess.PIPE)
assert child.stdout.readline().strip() == b"armed"
print(child.pid, flush=True)
time.sleep(120)
"""
CHILD = """
import os, sys, time
from muse_ff.teachers.labelling import _die_with_parent
_die_with_parent(os.getppid(), pdeathsig=sys.argv[1] == "prctl")
print("armed", flush=True)
if sys.argv[1] == "prctl":
    sum(range(10**12))  # a long call in C holding the GIL: the polling thread cannot run
else:
    time.sleep(120)
"""


@pytest.mark.parametrize("mechanism", ["prctl", "poll"])
def test_worker_dies_with_its_parent_by_each_mechanism(mechanism):
    parent = subprocess.Popen([sys.executable, "-c", PARENT, mechanism, CHILD], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
    child = None
    try:
        child = int(parent.stdout.readline())
        assert _alive(child)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=10)
        deadline = time.monotonic() + 3
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child), f"the worker outlived its parent ({mechanism})"
    finally:
        if child is not None and _alive(child):
            os.kill(child, signal.SIGKILL)
        if parent.poll() is None:
            parent.kill()
        parent.wait(timeout=10)
