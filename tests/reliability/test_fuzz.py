"""Issue #13: property-based fuzzing of structures and configurations through the public API.

The property, for every input: **a finite energy and finite forces, or a named error**, never a crash of the
process (SIGFPE, segfault, OOM kill), a hang, a bare ``IndexError`` / ``KeyError`` / ``RuntimeError``
traceback from deep inside, or a non-finite energy. A named error is a :class:`muse_ff.errors.MuseError` or a
``ValueError`` raised by MuSE's own code (not by numpy, torch or vesin on its behalf) whose message is one
line naming the problem (a :class:`~muse_ff.config.ConfigError` may list one bad key per line).

Beyond that, an oracle computed here says which structures are bad input and must be refused, and why:
unknown element (for the model), NaN/inf coordinates or cell, periodic lattice vectors that are not
linearly independent, two atoms (or an atom and a periodic image) closer than the calculator's minimum
distance. Everything else is valid and must give a finite result: a single atom, atoms 1e9 Å apart or
1e9 Å from the origin, tiny periodic cells at liquid density, long thin or skewed cells, slabs and wires
whose non-periodic cell vectors are zero (ASE's convention). Valid results must also be invariant to a
translation of the whole structure by up to 1e9 Å, batches must give the energies of their frames alone,
and a configuration drawn from values known to be valid must build.

Every case runs in a worker process (``fuzz_worker.py``), so a crash or a hang fails the example that
caused it instead of killing pytest; the worker is restarted after a crash.

The default profile is small and deterministic (``derandomize``); ``-m slow`` runs the same properties with
many more examples (``MUSE_FUZZ_EXAMPLES``, default 300 per property) drawn from the seed ``MUSE_FUZZ_SEED``
(default 0), and a few more models (MACE) and larger structures. ``MUSE_FUZZ_TIMEOUT`` (s, default 240) is
how long one case may take before it counts as a hang.
"""

from __future__ import annotations

import math
import os
import pickle
import re
import select
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from ase.geometry import minkowski_reduce
from hypothesis import HealthCheck, event, given, seed, settings
from hypothesis import strategies as st

WORKER = Path(__file__).with_name("fuzz_worker.py")
#: seconds one case may take before it counts as a hang (the machine is shared and slow)
CASE_TIMEOUT = float(os.environ.get("MUSE_FUZZ_TIMEOUT", 240))
#: the calculator's minimum distance (muse_ff.data.atoms.MIN_DISTANCE)
MIN_DISTANCE = 0.5
#: periodic structures far denser than any matter may overflow an untrained model (a NonFiniteError is then
#: accepted instead of a finite result) or be refused by coarse levels (a bond graph with hundreds of bonds
#: per atom): more than MAX_NEIGHBOURS atoms within 5 Å (liquid water: 50; 500 is 1 atom per Å^3) or more
#: than MAX_BONDS atoms within 1.2 x twice the largest covalent radius (metals: 12)
MAX_NEIGHBOURS = 500
MAX_BONDS = 24
#: the slow variant's examples per property
SLOW_EXAMPLES = int(os.environ.get("MUSE_FUZZ_EXAMPLES", 300))


def _settings(n: int, slow: bool = False):
    """The default profile: ``n`` examples, derandomised (the same ones on every run). The slow variant's:
    examples from the seed ``MUSE_FUZZ_SEED`` (default 0: also the same on every run; another seed explores
    other cases)."""
    options = dict(max_examples=n, deadline=None, database=None, print_blob=True,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                          HealthCheck.filter_too_much])
    if not slow:
        return settings(derandomize=True, **options)

    def apply(test):
        return seed(int(os.environ.get("MUSE_FUZZ_SEED", 0)))(settings(derandomize=False, **options)(test))
    return apply


# =============================================================================================== worker
class Worker:
    """The worker process: ``call(request)`` returns its reply, or ``{"crash": ...}`` / ``{"hang": ...}``."""

    def __init__(self):
        self.proc = None
        self.log = None

    def _start(self):
        self.log = tempfile.TemporaryFile(mode="w+b")
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONFAULTHANDLER="1")
        self.proc = subprocess.Popen([sys.executable, str(WORKER)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.log, env=env)

    def _log_tail(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-3000:]

    def stop(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def _read(self, size: int, deadline: float) -> bytes | None:
        buf = b""
        fd = self.proc.stdout.fileno()
        while len(buf) < size:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None  # hang
            chunk = os.read(fd, size - len(buf))
            if not chunk:
                return b""  # the worker died
            buf += chunk
        return buf

    def call(self, request: dict) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        data = pickle.dumps(request)
        try:
            self.proc.stdin.write(struct.pack(">I", len(data)) + data)
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass
        deadline = time.monotonic() + CASE_TIMEOUT
        head = self._read(4, deadline)
        body = None if head is None or len(head) < 4 else self._read(struct.unpack(">I", head)[0], deadline)
        if head is None or body is None:
            self.stop()
            return {"hang": f"no reply within {CASE_TIMEOUT:.0f} s", "log": self._log_tail()}
        if len(head) < 4 or len(body) == 0:
            code = self.proc.wait()
            self.proc = None
            return {"crash": f"worker died with exit status {code}", "log": self._log_tail()}
        return pickle.loads(body)


@pytest.fixture(scope="module")
def worker():
    w = Worker()
    yield w
    w.stop()


def run(worker: Worker, request: dict) -> list[dict]:
    reply = worker.call(request)
    for bad in ("crash", "hang"):
        if bad in reply:
            pytest.fail(f"{reply[bad]} on {_show(request)}\n--- worker stderr ---\n{reply['log']}")
    if "worker_error" in reply:
        pytest.fail(f"error outside the evaluated code:\n{reply['worker_error']['traceback']}")
    return reply["results"]


def _show(request: dict) -> str:
    with np.printoptions(precision=17, threshold=10**6):
        return repr(request)[:6000]


# ===================================================================================== judging errors
def assert_named_error(err: dict, request: dict, patterns: list[str] | None = None):
    """``err`` (from the worker) is a named error of MuSE's own, one sentence, matching ``patterns``."""
    where = f"\n{_show(request)}\n{err['traceback']}"
    named = "muse_ff.errors.MuseError" in err["mro"] or "builtins.ValueError" in err["mro"]
    assert named, f"not a named error: {err['type']}: {err['message']}{where}"
    assert err["in_muse"], f"{err['type']} raised outside MuSE ({err['origin']}): {err['message']}{where}"
    msg = err["message"].strip()
    assert len(msg.split()) >= 3, f"message does not name the problem: {msg!r}{where}"
    config_list = err["type"].endswith("ConfigError") and msg.startswith("invalid configuration:")
    assert config_list or "\n" not in msg, f"message is not one line: {msg!r}{where}"
    assert "Traceback" not in msg and len(msg) < 1500, f"message is not a sentence: {msg[:300]!r}{where}"
    if patterns is not None:
        assert any(re.search(p, msg) for p in patterns), \
            f"refused for the wrong reason (expected one of {patterns}): {msg!r}{where}"


def assert_finite(res: dict, n: int, request: dict):
    assert "error" not in res, f"valid input refused: {res.get('error', {}).get('type')}: " \
        f"{res.get('error', {}).get('message')}\n{_show(request)}\n{res.get('error', {}).get('traceback', '')}"
    assert math.isfinite(res["energy"]), f"non-finite energy {res['energy']}\n{_show(request)}"
    assert res["forces"].shape == (n, 3)
    assert np.isfinite(res["forces"]).all(), f"non-finite forces\n{_show(request)}"


# ============================================================================================ oracle
PATTERNS = {
    "element": r"unknown element",
    "position": r"non-finite \(NaN or inf\) coordinates",
    "cell": r"wrong cell",
    "overlap": r"overlapping atoms",
    "long-range": r"latent Ewald",
    "dense": r"non-finite \(NaN or inf\)|the periodic cell is too small for its bonds",
}


def _periodic_volume(cell: np.ndarray, pbc: np.ndarray) -> float:
    """Length, area or volume spanned by the periodic lattice vectors (1 with none)."""
    rows = cell[pbc]
    return float(np.sqrt(max(np.linalg.det(rows @ rows.T), 0.0))) if len(rows) else 1.0


def min_distance(pos: np.ndarray, cell: np.ndarray, pbc: np.ndarray) -> float:
    """Shortest distance between two atoms or an atom and a periodic image (inf for a lone free atom)."""
    n = len(pos)
    d = pos[None, :, :] - pos[:, None, :]  # [n, n, 3]
    if not pbc.any():
        r = np.linalg.norm(d, axis=-1) + np.diag(np.full(n, np.inf))
        return float(r.min())
    full = cell.copy()
    basis = minkowski_reduce(full, pbc)[0][pbc]  # a reduced basis of the periodic lattice
    coef = np.linalg.lstsq(basis.T, d.reshape(-1, 3).T, rcond=None)[0].T  # [n*n, m]
    d = d.reshape(-1, 3) - np.round(coef) @ basis
    m = len(basis)
    grid = np.stack(np.meshgrid(*[np.arange(-2, 3)] * m, indexing="ij"), -1).reshape(-1, m)
    best = np.inf
    for shift in grid:
        r = np.linalg.norm(d + shift @ basis, axis=-1).reshape(n, n)
        if not shift.any():
            r = r + np.diag(np.full(n, np.inf))
        best = min(best, float(r.min()))
    return best


def _images_within(radius: float, n: int, cell: np.ndarray, pbc: np.ndarray) -> float:
    """Rough count of the atoms (periodic images included) within ``radius`` of an atom: the periodic
    lattice's density of ``n`` atoms times the length, area or volume within ``radius``."""
    k = int(pbc.sum())
    ball = {1: 2 * radius, 2: math.pi * radius**2, 3: 4 / 3 * math.pi * radius**3}[k]
    return n * ball / _periodic_volume(cell, pbc)


def _dense(z: np.ndarray, cell: np.ndarray, pbc: np.ndarray) -> bool:
    """Far denser than any matter: more than MAX_NEIGHBOURS atoms within 5 Å (an untrained model may overflow),
    or more than MAX_BONDS covalent "bonds" per atom (coarse levels refuse such a bond graph)."""
    from ase.data import covalent_radii

    r_bond = 1.2 * 2 * float(covalent_radii[z].max())
    n = len(z)
    return _images_within(5.0, n, cell, pbc) > MAX_NEIGHBOURS or _images_within(r_bond, n, cell, pbc) > MAX_BONDS


def expected(frame: dict, model: dict) -> tuple[str, list[str]]:
    """What MuSE must do with ``frame``: ``("ok", [])``, ``("error", reasons)`` or ``("either", reasons)``
    (a borderline case: the minimum distance or the cell's degeneracy at the threshold)."""
    z = np.asarray(frame["numbers"])
    pos, cell = (np.asarray(frame[k], dtype=float) for k in ("positions", "cell"))
    pbc = np.asarray(frame["pbc"], dtype=bool)
    bad = []
    known = set(model.get("species") or range(1, 119))
    if ((z < 1) | (z > 118)).any() or not set(z.tolist()) <= known:
        bad.append("element")
    if not np.isfinite(pos).all():
        bad.append("position")
    if not np.isfinite(cell).all():
        bad.append("cell")
    borderline = False
    if "position" not in bad and "cell" not in bad:
        if pbc.any():
            lengths = np.linalg.norm(cell, axis=1)
            size = _periodic_volume(cell, pbc)
            if size < 1e-5 or (lengths[pbc] < 1e-5).any():
                bad.append("cell")
                borderline = size > 1e-7 and (lengths[pbc] > 1e-7).all()
        if "cell" not in bad:
            d = min_distance(pos, cell, pbc)
            if d < MIN_DISTANCE * (1 + 1e-6):
                bad.append("overlap")
                borderline = borderline or d > MIN_DISTANCE * (1 - 1e-6)
    if "cell" not in bad and "element" not in bad and pbc.any() and _dense(z, cell, pbc):
        bad.append("dense?")  # far denser than any matter: a named overflow or coarse-level refusal is fine
    if model.get("long_range") is not None and pbc.any() and not pbc.all():
        bad.append("long-range")  # no slab correction: refused by design
    if model.get("long_range") is not None and pbc.all() and "cell" not in bad:
        bad.append("long-range?")  # a large cell may need too many wavevectors: allowed to refuse
    patterns = [PATTERNS[b.rstrip("?")] for b in bad]
    if all(b.endswith("?") for b in bad) and bad:
        return "either", patterns
    if not bad:
        return "ok", []
    return ("either" if borderline else "error"), patterns


# ======================================================================================= strategies
SMALL_PAINN = {"name": "painn", "features": 8, "layers": 2, "num_basis": 6}
MODELS = {
    "painn": {"backbone": SMALL_PAINN},
    "painn-f64": {"backbone": SMALL_PAINN, "dtype": "float64"},
    "muse": {"backbone": SMALL_PAINN, "levels": [{"ratio": 4}, {"ratio": 4}]},
    "muse-f64": {"backbone": SMALL_PAINN, "levels": [{"ratio": 4}, {"ratio": 4}], "dtype": "float64"},
    "muse-intra": {"backbone": SMALL_PAINN, "levels": [{"ratio": 4, "edges": "within-component"},
                                                       {"ratio": 4, "edges": "within-component"}]},
    "muse-hco": {"backbone": SMALL_PAINN, "levels": [{"ratio": 3, "dispersion": True}],
                 "species": [1, 6, 8]},
    "so3krates-muse": {"backbone": {"name": "so3krates", "features": 8, "heads": 2, "degrees": [1, 2],
                                    "layers": 1, "num_basis": 6}, "levels": [{"ratio": 4}]},
    "painn-long-range": {"backbone": SMALL_PAINN, "long_range": {"smearing": 2.0}},
}
SLOW_MODELS = {
    "mace-muse": {"backbone": {"name": "mace", "num_channels": 8, "max_L": 1, "correlation": 2,
                               "num_interactions": 1, "radial_mlp": [8]}, "levels": [{"ratio": 4}]},
}

COMMON = [1, 6, 7, 8]
BAD_Z = [0, 119, 200, -1]
SPACINGS = [0.45, 0.499, 0.5, 0.5001, 0.55, 0.74, 0.96, 1.1, 1.5, 2.2, 3.1, 5.0, 10.0, 1e3]
FAR = [10.0, 1e3, 1e6, 1e9]


def _log_uniform(lo: float, hi: float):
    return st.floats(math.log10(lo), math.log10(hi)).map(lambda x: 10.0**x)


def _unit():
    """A unit vector (uniform in cos(theta) and phi)."""
    def make(c, phi):
        s = math.sqrt(max(0.0, 1.0 - c * c))
        return np.array([s * math.cos(phi), s * math.sin(phi), c])
    return st.builds(make, st.floats(-1, 1), st.floats(0, 2 * math.pi))


@st.composite
def species(draw, n: int, allow_invalid: bool):
    kind = draw(st.sampled_from(["common"] * 4 + ["any"] * 2 + (["bad"] if allow_invalid else [])))
    pool = {"common": COMMON, "any": list(range(1, 119)), "bad": COMMON + BAD_Z}[kind]
    z = draw(st.lists(st.sampled_from(pool), min_size=n, max_size=n))
    if kind == "bad" and not set(z) & set(BAD_Z):
        z[draw(st.integers(0, n - 1))] = draw(st.sampled_from(BAD_Z))
    return z


def _grid(n: int, jitter: np.ndarray) -> np.ndarray:
    """n points of a cubic grid with unit spacing, plus ``jitter`` [n, 3]."""
    m = max(1, math.ceil(n ** (1 / 3) - 1e-9))
    idx = np.stack(np.unravel_index(np.arange(n), (m, m, m)), -1).astype(float)
    return idx + jitter


@st.composite
def structures(draw, max_atoms: int = 60, allow_invalid: bool = True) -> dict:
    n = draw(st.one_of(st.integers(1, 4), st.integers(1, max_atoms)))
    numbers = draw(species(n, allow_invalid))
    kind = draw(st.sampled_from(["free", "free", "periodic", "mixed", "molecules"]))
    if kind == "molecules":
        return draw(molecules(allow_invalid))
    jit = draw(st.floats(0.0, 0.3))
    jitter = np.array(draw(st.lists(st.tuples(*[st.floats(-1, 1)] * 3), min_size=n, max_size=n))) * jit
    if kind == "free":
        layout = draw(st.sampled_from(["grid", "chain", "cloud"]))
        spacing = draw(st.one_of(st.sampled_from(SPACINGS), st.floats(0.4, 6.0)))
        if layout == "grid":
            pos = _grid(n, jitter) * spacing
        elif layout == "chain":
            pos = (np.arange(n)[:, None] * np.array([1.0, 0, 0]) + jitter) * spacing
        else:  # uniform in a cube of any size
            u = np.array(draw(st.lists(st.tuples(*[st.floats(0, 1)] * 3), min_size=n, max_size=n)))
            pos = u * draw(_log_uniform(1.0, 1e9))
        for k in draw(st.lists(st.integers(0, n - 1), max_size=min(3, n - 1), unique=True)):
            pos[k] = pos[k] + draw(st.sampled_from(FAR)) * draw(_unit())  # atoms far away
        cell = draw(st.sampled_from([np.zeros((3, 3)), np.diag([10.0, 10.0, 10.0]), np.diag([1e-3, 0, 5])]))
        pbc = np.zeros(3, dtype=bool)
    else:
        pbc = np.ones(3, dtype=bool) if kind == "periodic" else np.array(draw(st.sampled_from(
            [(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0), (1, 0, 1), (0, 1, 1)])), dtype=bool)
        lengths = [draw(st.one_of(st.sampled_from([0.6, 1.0, 1.5, 2.5, 3.1, 5.0, 12.0]), _log_uniform(0.4, 30.0),
                                  st.sampled_from([1e3, 1e6, 1e9]))) for _ in range(3)]
        skew = np.array(draw(st.lists(st.floats(-0.95, 0.95), min_size=3, max_size=3)))
        skew = skew * draw(st.sampled_from([0.0, 0.0, 1.0]))
        directions = np.eye(3)
        directions[1, 0], directions[2, 0], directions[2, 1] = skew
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        cell = directions * np.array(lengths)[:, None]
        m = max(1, math.ceil(n ** (1 / 3) - 1e-9))
        pos = (_grid(n, jitter) / m) @ cell  # fractional grid: the density is the cell's
        if kind == "mixed" and draw(st.booleans()):
            cell[~pbc] = 0.0  # ASE's convention for non-periodic directions of slabs and wires
    if allow_invalid:
        what = draw(st.sampled_from(["none"] * 20 + ["nan", "inf", "coincide", "singular", "nan-cell"]))
        if what in ("nan", "inf"):
            pos[draw(st.integers(0, n - 1)), draw(st.integers(0, 2))] = np.nan if what == "nan" else -np.inf
        elif what == "coincide" and n > 1:
            pos[1] = pos[0] + draw(st.sampled_from([0.0, 1e-9, 0.3]))
        elif what == "singular" and pbc.any():
            k = int(np.flatnonzero(pbc)[0])
            cell[k] = draw(st.sampled_from([0.0, 2.0])) * cell[(k + 1) % 3]
        elif what == "nan-cell":
            cell[draw(st.integers(0, 2)), draw(st.integers(0, 2))] = np.nan
    return {"numbers": numbers, "positions": pos, "cell": cell, "pbc": tuple(bool(p) for p in pbc)}


MOLECULES = ["H2O", "CH4", "C6H6", "CH3CH2OH", "NH3", "CO2", "C2H2", "H2"]


@st.composite
def molecules(draw, allow_invalid: bool = True) -> dict:
    """1-4 real molecules (rattled), their centres 2 Å to 1e9 Å apart, free or in a periodic cell of any size:
    covalent components with several coarse nodes."""
    from ase.build import molecule

    parts = []
    for _ in range(draw(st.integers(1, 4))):
        mol = molecule(draw(st.sampled_from(MOLECULES)))
        mol.rotate(draw(st.floats(0, 360)), draw(_unit()))
        mol.positions += draw(st.sampled_from([0.0, 2.0, 3.5, 6.0, 20.0, 1e3, 1e9])) * draw(_unit())
        parts.append(mol)
    numbers = np.concatenate([m.numbers for m in parts]).tolist()
    pos = np.concatenate([m.positions for m in parts])
    pos = pos + np.array(draw(st.lists(st.floats(-1, 1), min_size=3 * len(pos), max_size=3 * len(pos)))).reshape(
        -1, 3) * draw(st.sampled_from([0.0, 0.02, 0.1]))
    box = draw(st.sampled_from([None, None, 3.0, 6.0, 12.0, 1e3, 1e9]))
    if box is None:
        return {"numbers": numbers, "positions": pos, "cell": np.zeros((3, 3)), "pbc": (False,) * 3}
    pbc = draw(st.sampled_from([(True,) * 3, (True, True, False), (False, False, True)]))
    return {"numbers": numbers, "positions": pos, "cell": np.eye(3) * box, "pbc": pbc}


def _offsets():
    return st.lists(st.builds(lambda s, u: s * u, st.sampled_from([1e3, 1e6, 1e9]), _unit()), max_size=2)


# ============================================================================== property: structures
def _tolerances(model: dict) -> tuple[float, float]:
    return (1e-7, 1e-6) if model.get("dtype") == "float64" else (2e-4, 2e-3)


def check_structure(worker, name: str, frame: dict, offsets: list, models: dict):
    model = models[name]
    request = {"op": "structure", "model": model, "frames": [frame], "offsets": offsets}
    results = run(worker, request)
    verdict, patterns = expected(frame, model)
    base = results[0]
    event(f"{name}: {verdict} -> " + ("refused: " + base["error"]["message"][:28] if "error" in base else "finite"))
    if "error" in base:
        assert verdict != "ok", (
            f"valid input refused: {base['error']['type']}: {base['error']['message']}\n{_show(request)}\n"
            f"{base['error']['traceback']}")
        assert_named_error(base["error"], request, patterns)
        return
    assert verdict != "error", f"bad input accepted (expected a refusal: {patterns})\n{_show(request)}"
    n = len(frame["numbers"])
    assert_finite(base, n, request)
    e_tol, f_tol = _tolerances(model)
    scale = 1.0 + abs(base["energy"])
    for off, res in zip(offsets, results[1:]):
        assert_finite(res, n, request)
        assert abs(res["energy"] - base["energy"]) <= e_tol * scale, (
            f"translating by {off} changed the energy {base['energy']} -> {res['energy']}\n{_show(request)}")
        f_scale = 1.0 + float(np.abs(base["forces"]).max())
        np.testing.assert_allclose(res["forces"], base["forces"], rtol=0, atol=f_tol * f_scale,
                                   err_msg=f"translating by {off} changed the forces\n{_show(request)}")


@_settings(40)
@given(name=st.sampled_from(sorted(MODELS)), frame=structures(max_atoms=40), offsets=_offsets())
def test_structures_give_finite_results_or_named_errors(worker, name, frame, offsets):
    check_structure(worker, name, frame, offsets, MODELS)


@pytest.mark.slow
@_settings(SLOW_EXAMPLES, slow=True)
@given(name=st.sampled_from(sorted(MODELS | SLOW_MODELS)), frame=structures(max_atoms=60), offsets=_offsets())
def test_structures_long(worker, name, frame, offsets):
    check_structure(worker, name, frame, offsets, MODELS | SLOW_MODELS)


# ================================================================================ property: batches
def check_batch(worker, name: str, frames: list[dict], models: dict):
    model = models[name]
    request = {"op": "batch", "model": model, "frames": frames}
    batch, *alone = run(worker, request)
    verdicts = [expected(f, model) for f in frames]
    event("batch refused" if "error" in batch else "batch finite")
    if "error" in batch:
        bad = [k for k, (v, _) in enumerate(verdicts) if v != "ok"]
        assert bad, f"valid batch refused: {batch['error']['message']}\n{_show(request)}\n" \
            f"{batch['error']['traceback']}"
        # frames are checked in order and an "either" frame may be accepted: the refused one is an "either"
        # frame before the first "error" frame, or that frame
        first_error = next((k for k in bad if verdicts[k][0] == "error"), None)
        candidates = [k for k in bad if first_error is None or k <= first_error]
        assert_named_error(batch["error"], request, [p for k in candidates for p in verdicts[k][1]] or None)
        if len(frames) > 1 and candidates == [first_error]:  # no "either" frame before it: that frame is named
            assert f"structure {first_error}" in batch["error"]["message"], \
                f"the error does not name the frame ({first_error}): {batch['error']['message']}\n{_show(request)}"
        return
    assert all(v != "error" for v, _ in verdicts), f"bad frame accepted in a batch\n{_show(request)}"
    e_tol, f_tol = _tolerances(model)
    lo = 0
    for k, (frame, res) in enumerate(zip(frames, alone)):
        n = len(frame["numbers"])
        if PATTERNS["dense"] in verdicts[k][1] and model.get("dtype") != "float64":
            # far denser than matter (an H atom in a 0.6 Å cell: ~2,400 images within 5 Å, ~1e5 coarse edges):
            # float32 sums of that many messages differ between a batch and the frame alone by more than any
            # fixed tolerance (1.4e-3 relative measured); finite results are all that is asked there
            assert np.isfinite(batch["energy"][k]) or "error" in res, f"frame {k}: non-finite\n{_show(request)}"
            lo += n
            continue
        if verdicts[k][0] == "either" and ("error" in res or not np.isfinite(batch["energy"][k])):
            # super-dense: the calculator names the overflow; energy_and_derivatives has no such check
            if "error" in res:
                assert_named_error(res["error"], request, verdicts[k][1])
            lo += n
            continue
        assert np.isfinite(batch["energy"][k]) and np.isfinite(batch["forces"][lo:lo + n]).all(), \
            f"frame {k}: non-finite batched energy {batch['energy'][k]}\n{_show(request)}"
        assert_finite(res, n, request)
        assert abs(batch["energy"][k] - res["energy"]) <= e_tol * (1 + abs(res["energy"])), (
            f"frame {k}: batched energy {batch['energy'][k]} != alone {res['energy']}\n{_show(request)}")
        np.testing.assert_allclose(batch["forces"][lo:lo + n], res["forces"], rtol=0,
                                   atol=f_tol * (1 + float(np.abs(res["forces"]).max())))
        lo += n


@_settings(15)
@given(name=st.sampled_from(["muse", "muse-f64", "painn"]),
       frames=st.lists(structures(max_atoms=12), min_size=2, max_size=4))
def test_batches_match_their_frames_or_name_the_bad_one(worker, name, frames):
    check_batch(worker, name, frames, MODELS)


@pytest.mark.slow
@_settings(SLOW_EXAMPLES // 3, slow=True)
@given(name=st.sampled_from(sorted(MODELS)), frames=st.lists(structures(max_atoms=30), min_size=1, max_size=5))
def test_batches_long(worker, name, frames):
    check_batch(worker, name, frames, MODELS)


# ============================================================================ property: configurations
BAD_NUMBERS = [True, "8", None, [], float("nan"), float("inf"), -1, 0, 2.5]


@st.composite
def _backbone(draw, allow_mace: bool) -> dict:
    """A backbone config whose every value is valid."""
    name = draw(st.sampled_from(["painn", "painn", "so3krates"] + (["mace"] if allow_mace else [])))
    if name == "painn":
        hp = {"features": st.integers(1, 16), "layers": st.integers(1, 3), "num_basis": st.integers(1, 8)}
    elif name == "so3krates":
        # (features 6 with 1 head can diverge at initialisation: see test_fuzz_regressions.py)
        hp = {"features": st.sampled_from([12, 24]), "heads": st.sampled_from([1, 2, 3]),
              "degrees": st.sampled_from([[1], [1, 2], [1, 2, 3], [2, 1]]), "layers": st.just(1),
              "num_basis": st.integers(1, 6)}
    else:
        hp = {"num_channels": st.sampled_from([4, 8]), "max_L": st.just(1), "max_ell": st.sampled_from([1, 2]),
              "correlation": st.sampled_from([1, 2]), "num_interactions": st.just(1),
              "radial_mlp": st.sampled_from([[8], [4, 4]])}
    return {"name": name, **{k: draw(v) for k, v in hp.items() if draw(st.booleans())}}


@st.composite
def _level(draw) -> dict:
    """A level config whose every value is valid (explicit cutoffs are added by ``configs``)."""
    fields = {"ratio": st.floats(1.5, 12.0), "sigma": st.floats(1e-3, 50.0), "saturation": st.floats(1e-3, 100.0),
              "hops": st.integers(1, 24), "dispersion": st.booleans(),
              "anchors": st.sampled_from(["topology", "bond-fps"])}
    return {k: draw(v) for k, v in fields.items() if draw(st.booleans())}


def _put(path: tuple, values: list):
    """An injection: set ``cfg[path...]`` to one of ``values`` (creating dicts on the way)."""
    def inject(cfg: dict, draw) -> None:
        node = cfg
        for key in path[:-1]:
            if key == "levels":
                levels = node.get("levels")
                if not isinstance(levels, list) or not levels:
                    levels = node["levels"] = [{}]
                k = draw(st.integers(0, len(levels) - 1))
                if not isinstance(levels[k], dict):
                    levels[k] = {}
                node = levels[k]
            else:
                if not isinstance(node.get(key), dict):
                    node[key] = {"name": "painn"} if key == "backbone" else {}
                node = node[key]
        node[path[-1]] = draw(st.sampled_from(values))
    return inject


#: ways to make a valid configuration invalid (each: a key and the bad values it gets)
INJECTIONS = [
    _put(("cutoff",), BAD_NUMBERS),
    _put(("embedding",), BAD_NUMBERS),
    _put(("dtype",), ["float16", 32, None, "double"]),
    _put(("species",), [["H", "Xx"], [0, 1], [1, 1], [1.5], [True], 6, "HCO", [119], []]),
    _put(("nonsense",), [1]),
    _put(("head", "hidden"), BAD_NUMBERS),
    _put(("long_range",), [{"smearing": 0}, {"kind": "ewald"}, {"smearing": float("inf")}, {"channels": 0},
                           "latent-ewald", 1.0]),
    _put(("backbone",), ["PaiNN", "schnet", "", 3, None, ["painn"], {"features": 8}]),
    _put(("backbone", "features"), BAD_NUMBERS),
    _put(("backbone", "layers"), BAD_NUMBERS),
    _put(("backbone", "typo"), [1]),
    _put(("backbone", "degrees"), [["a"], 5, "12", [1.5], [0], [1, 1], [9], [], [True]]),
    _put(("backbone", "radial_mlp"), [8, ["a"], [0], "8", [-4], [2.5]]),
    _put(("backbone", "interaction"), ["NoSuchBlock", 3]),
    _put(("levels", "ratio"), BAD_NUMBERS + [1.0, 0.5]),
    _put(("levels", "sigma"), BAD_NUMBERS),
    _put(("levels", "saturation"), BAD_NUMBERS),
    _put(("levels", "hops"), [0, 25, 2.5, "4", True, None, -1]),
    _put(("levels", "min_nodes"), [0, -1, 1.5, "2"]),
    _put(("levels", "dispersion"), ["yes", 2, None]),
    _put(("levels", "edges"), ["none", "intra", 1, True, None]),
    _put(("levels", "anchors"), ["spatial-fps", "random", 1]),
    _put(("levels", "cutoff"), [0.0, -2.0, float("inf"), "10", 3.0, True]),
    _put(("levels", "backbone"), ["schnet", {"name": "painn", "features": -3}, 7]),
    _put(("levels", "typo"), [1]),
    lambda cfg, draw: cfg.__setitem__("levels", draw(st.sampled_from([{}, "two", [1], [None], 3]))),
]


@st.composite
def configs(draw, allow_mace: bool = False) -> tuple[object, bool]:
    """``(config, known_good)``: a model config built from valid values, with 0-2 bad values injected
    (``known_good`` when none was), or sometimes not a dict at all."""
    if draw(st.integers(0, 24)) == 0:
        return draw(st.sampled_from([[], "painn", 3, [{"backbone": "painn"}]])), False
    cfg = {}
    if draw(st.booleans()):
        cfg["backbone"] = draw(st.one_of(_backbone(allow_mace), st.sampled_from(["painn", "so3krates"])))
    optional = {"cutoff": st.floats(1.0, 8.0), "dtype": st.sampled_from(["float32", "float64"]),
                "embedding": st.integers(1, 16), "head": st.builds(lambda h: {"hidden": h}, st.integers(1, 16)),
                "species": st.sampled_from([["H", "C", "O"], [1, 6, 8], ["H", "C", "N", "O", "Fe"], None]),
                "long_range": st.sampled_from([None, {}, {"smearing": 1.5}, {"channels": 2, "hidden": 4}])}
    for key, strat in optional.items():
        if draw(st.booleans()):
            cfg[key] = draw(strat)
    cfg.setdefault("embedding", 8)  # small and fast
    if cfg.get("species") is None:
        cfg.pop("species", None)
    n_levels = draw(st.integers(0, 2))
    if n_levels or draw(st.booleans()):
        cfg["levels"] = [draw(_level()) for _ in range(n_levels)]
        if n_levels and draw(st.booleans()):  # explicit, growing cutoffs
            cut = cfg.get("cutoff", 5.0)
            for lev in cfg["levels"]:
                cut = lev["cutoff"] = cut * draw(st.floats(1.2, 4.0))
    bad = draw(st.sampled_from([0, 0, 0, 1, 1, 2]))
    for _ in range(bad):
        draw(st.sampled_from(INJECTIONS))(cfg, draw)
    return cfg, bad == 0


def _water_dimer() -> dict:
    pos = np.array([[0.0, 0.0, 0.119], [0.0, 0.763, -0.477], [0.0, -0.763, -0.477]])
    return {"numbers": [8, 1, 1] * 2, "positions": np.concatenate([pos, pos + [2.9, 0.1, 0.0]]),
            "cell": np.zeros((3, 3)), "pbc": (False, False, False)}


CONFIG_FRAMES = [
    _water_dimer(),
    {"numbers": [6], "positions": np.zeros((1, 3)), "cell": np.zeros((3, 3)), "pbc": (False,) * 3},
    {"numbers": [8, 1, 1], "positions": _water_dimer()["positions"][:3] + 1.0, "cell": np.eye(3) * 3.1,
     "pbc": (True,) * 3},  # liquid density in a tiny cell
]


def check_config(worker, config, known_good: bool):
    request = {"op": "config", "config": config, "frames": CONFIG_FRAMES}
    results = run(worker, request)
    event("built" if "stage" not in results[0] else "refused: " + results[0]["error"]["message"][:60])
    if "stage" in results[0]:  # not built
        assert not known_good, f"a valid configuration was refused: {results[0]['error']['message']}\n" \
            f"{_show(request)}\n{results[0]['error']['traceback']}"
        assert_named_error(results[0]["error"], request)
        return
    species = None
    if isinstance(config, dict) and config.get("species") is not None:  # built: valid species
        from ase.data import atomic_numbers

        species = [atomic_numbers[s] if isinstance(s, str) else int(s) for s in config["species"]]
    for frame, res in zip(CONFIG_FRAMES, results):
        model = {"species": species, "long_range": config.get("long_range") if isinstance(config, dict) else None}
        verdict, patterns = expected(frame, model)
        if "error" in res:
            assert verdict != "ok", f"a built model refused a valid structure: {res['error']['message']}\n" \
                f"{_show(request)}\n{res['error']['traceback']}"
            assert_named_error(res["error"], request, patterns)
        else:
            assert verdict != "error", f"bad input accepted\n{_show(request)}"
            assert_finite(res, len(frame["numbers"]), request)


@_settings(30)
@given(case=configs())
def test_configurations_build_and_give_finite_results_or_name_the_bad_key(worker, case):
    check_config(worker, *case)


@pytest.mark.slow
@_settings(SLOW_EXAMPLES, slow=True)
@given(case=configs(allow_mace=True))
def test_configurations_long(worker, case):
    check_config(worker, *case)


# ================================================================================== property: the CLI
CLI_MODEL = {"backbone": SMALL_PAINN, "levels": [{"ratio": 4}], "dtype": "float64"}
EVAL = ["eval", "{model}", "{data}", "--energy-key", "none", "--forces-key", "none", "-o", "{out}"]
MD = ["md", "{model}", "{data}", "--steps", "2", "--interval", "1", "--trajectory", "{out}", "--log",
      "{out}.log", "--no-progress", "--temperature", "10"]


def check_cli(worker, frames: list[dict], argv: list[str]):
    if argv[0] == "md" and len(frames[-1]["numbers"]) == 1 and not any(frames[-1]["pbc"]):
        # known, outside the calculator (analysis/dynamics.py): thermalising one free atom gives NaN momenta;
        # see test_fuzz_regressions.py::test_md_of_a_single_free_atom
        frames = frames[:-1] + [CONFIG_FRAMES[0]]
    request = {"op": "cli", "model": CLI_MODEL, "frames": frames, "argv": argv}
    (res,) = run(worker, request)
    assert "error" not in res, f"muse {argv[0]} raised {res['error']['type']}: {res['error']['message']}\n" \
        f"{_show(request)}\n{res['error']['traceback']}"
    verdicts = [expected(f, CLI_MODEL)[0] for f in (frames[-1:] if argv[0] == "md" else frames)]
    lines = res["stderr"].strip().splitlines()
    event(f"{argv[0]}: exit {res['code']}")
    if res["code"] == 0:
        assert "error" not in verdicts, f"muse {argv[0]} accepted bad input\n{_show(request)}"
        if argv[0] == "eval":
            assert res["energies"] is not None and np.isfinite(np.asarray(res["energies"], float)).all(), \
                f"non-finite energies written: {res['energies']}\n{_show(request)}"
    else:
        assert res["code"] == 2, f"muse {argv[0]} exit {res['code']}: {res['stderr'][-2000:]}\n{_show(request)}"
        assert any(v != "ok" for v in verdicts), \
            f"muse {argv[0]} refused valid input: {res['stderr']}\n{_show(request)}"
        errors = [ln for ln in lines if ln.startswith(f"muse {argv[0]}: error: ")]
        assert len(errors) == 1 and "Traceback" not in res["stderr"], \
            f"muse {argv[0]} should print one error line, got:\n{res['stderr'][-3000:]}\n{_show(request)}"


@_settings(6)
@given(frames=st.lists(structures(max_atoms=8), min_size=1, max_size=2), command=st.sampled_from(["eval", "md"]))
def test_cli_eval_and_md_exit_0_or_2_with_one_line(worker, frames, command):
    frames = [f for f in frames if set(f["numbers"]) <= set(range(1, 119))] or [CONFIG_FRAMES[0]]
    check_cli(worker, frames, EVAL if command == "eval" else MD)


@pytest.mark.slow
@_settings(SLOW_EXAMPLES // 6, slow=True)
@given(frames=st.lists(structures(max_atoms=20), min_size=1, max_size=3), command=st.sampled_from(["eval", "md"]))
def test_cli_long(worker, frames, command):
    frames = [f for f in frames if set(f["numbers"]) <= set(range(1, 119))] or [CONFIG_FRAMES[0]]
    check_cli(worker, frames, EVAL if command == "eval" else MD)
