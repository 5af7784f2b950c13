"""``muse bench folding``: chignolin folding and unfolding with each trained model against the Amber14 + GBn2 teacher.

Every contestant trains on the teacher's labelled MD frames (300/400/500 K) from the early time blocks of
each trajectory (:func:`time_block_split`: first 80 % train, next 10 % validation, last 10 % test, so a
10 ps block lies between any training frame and any test frame). Then every model, and the teacher itself
through the same ASE code, runs the same replicas: Langevin MD at :data:`TEMPERATURE` (500 K, 2 fs, friction
1/ps) from the folded structure (the minimised model hairpin), the same seeds (initial velocities and noise)
for every model, bonds to hydrogen constrained as in the teacher's own MD (the training frames never sample
X-H stretches) and hydrogens at 3 amu (the dataset's MD used 3 fs with the same masses).

Why 500 K and 40 ps per replica (default: 2 replicas; ``--full``: 8 x 100 ps): the teacher itself (OpenMM,
one thread, X-H constrained, H 3 amu, 2 fs, 1/ps, from the folded structure; measured 2026-12-03) left the
folded core (CA RMSD > 3.5 Å) in 0 of 3 runs within 40 ps at 400 K (one at 49.5 ps) and in 1 of 3 at 450 K
(at 28.6 ps, back below 2.5 Å at 39.2 ps); at 500 K in 5 of 8 runs within 40 ps (at 18, 23, 26, 29 and
39 ps), 4 of which refolded before 40 ps: 9 transitions in 8 x 40 ps, folded fraction 0.52-1.00 per run.
Through this benchmark's ASE code with all 61 X-H bonds constrained the teacher's seed-0 replica stayed
folded for 40 ps (0 transitions); an earlier run that constrained only 15 of them (see :func:`bonds`)
unfolded at 21 ps. Cost, measured on 2 cores shared with three other benchmarks: ASE's ``FixBondLengths``
takes ~40 ms per ``adjust_positions`` call for the 61 coupled pairs, so a step costs the teacher ~66 ms and
PaiNN ~190 ms (without it: ~11-20 and ~26 ms): at that cost the default does not fit an hour; a faster
constraint solver, or fewer steps, is needed.

Compared with the teacher's replicas:

- distributions of CA RMSD to the folded reference, heavy-atom radius of gyration and end-to-end CA1-CA10
  distance: Jensen-Shannon divergence of histograms (bits: 0 identical, 1 disjoint), with a bootstrap
  spread over time blocks of the replicas (:func:`bootstrap_jsd`); the teacher's own row gives the noise
  floor (two independent resamples of its blocks);
- folded fraction (CA RMSD < 3 Å) and transitions (:func:`transitions`: crossings between the folded core,
  RMSD < 2.5 Å, and the unfolded one, > 3.5 Å, so a fluctuation around 3 Å does not count);
- error of folded-minus-unfolded energy differences (:func:`gap_error`) on teacher frames never trained on:
  the dataset's test blocks and the frames of the teacher's own benchmark replicas;
- stability: the time of the first frame with a bond more than 30 % off its reference length (or a failed
  step) in each replica, which ends that replica; observables use the frames before it;
- speed: ns/day of each contestant's MD.

Contestants: the registry's ``bench`` suite (PaiNN, MuSE(PaiNN), PaiNN+LES and the physical terms on PaiNN
and on MuSE-intra(PaiNN)); the physical ones take chignolin's total charge (-2, every frame's
``info['charge']``) as the sum of their charges. ``--contestants`` picks some; the teacher's replicas are
kept in the output folder and reused while the MD settings, start and topology are the same
(:func:`load_replicas`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms
from rich.console import Console

from muse_ff.bench.common import Budget, Report, fmt, pyplot, save_figure, train_pair, trained_rows

try:  # ase >= 3.29
    from ase.md.velocitydistribution import thermalize_momenta as _thermalize
except ImportError:  # older ase
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution as _thermalize

FOLDER = "folding"
#: MD temperature (K) of every replica: the teacher's runs of the default length cross between the states
TEMPERATURE = 500.0
RMSD_FOLDED = 3.0  # Å: folded = CA RMSD to the reference below this (the dataset's definition)
#: transition counting: a replica is in the folded core below the first, in the unfolded core above the second
CORES = (2.5, 3.5)
BOND_TOLERANCE = 0.3  # a bond stretched or squeezed by more than this fraction counts as a blow-up
#: histogram ranges (Å) and bin count per observable, for the Jensen-Shannon divergences and plots
RANGES = {"rmsd_ca": (0.0, 9.0), "rg": (4.5, 11.0), "end_to_end": (0.0, 32.0)}
BINS = 24
BOOTSTRAP = 200  # bootstrap resamples for every spread
LABELS = {"rmsd_ca": "CA RMSD", "rg": "Rg", "end_to_end": "e2e"}


@dataclass(frozen=True)
class MDBudget:
    """``replicas`` runs of ``steps`` steps each, frames every ``interval`` steps, timestep (fs; hydrogens at
    3 amu, X-H bonds constrained), friction (1/fs), temperature (K), bootstrap blocks per replica, and at most
    ``gap_frames`` teacher-replica frames per state for the energy-gap errors."""

    replicas: int
    steps: int
    interval: int
    timestep: float = 2.0
    friction: float = 0.001
    temperature: float = TEMPERATURE
    blocks: int = 4
    gap_frames: int = 100

    @property
    def ps(self) -> float:
        """Length of one replica (ps)."""
        return self.steps * self.timestep / 1000


BUDGETS = {
    "quick": (Budget(features=8, layers=1, num_basis=6, epochs=2, batch_size=4, max_train=12, max_valid=4),
              MDBudget(replicas=2, steps=20, interval=5, blocks=2, gap_frames=4)),
    "default": (Budget(features=32, layers=2, num_basis=12, epochs=20, batch_size=4, train_stride=2),
                MDBudget(replicas=2, steps=20_000, interval=50)),
    "full": (Budget(features=64, layers=3, num_basis=16, epochs=300, batch_size=4),
             MDBudget(replicas=8, steps=50_000, interval=100, blocks=10, gap_frames=300)),
}


@dataclass
class Topology:
    """CA and heavy-atom indices of chignolin, the folded reference positions [N, 3] (Å) and the peptide's
    total charge (e; the input of the physical contestants' charges)."""

    ca: np.ndarray
    heavy: np.ndarray
    reference: Atoms
    pdb: Path
    charge: int = 0


def topology(folder: Path) -> Topology:
    from ase.io import read

    names, elements = [], []
    for line in (folder / "chignolin.pdb").read_text().splitlines():
        if line.startswith(("ATOM", "HETATM")):
            names.append(line[12:16].strip())
            elements.append(line[76:78].strip())
    ref = read(folder / "folding-reference.extxyz")
    if "charge" in ref.info:
        charge = int(ref.info["charge"])
    else:  # a data build from before the frames carried their charge: the force field's
        from openmm import app

        from muse_ff.teachers.amber import net_charge

        charge = net_charge(app.PDBFile(str(folder / "chignolin.pdb")).topology)
    return Topology(np.array([k for k, n in enumerate(names) if n == "CA"]),
                    np.array([k for k, e in enumerate(elements) if e != "H"]), ref, folder / "chignolin.pdb",
                    charge)


# ----------------------------------------------------------------------------------------------- statistics


def jensen_shannon(x: np.ndarray, y: np.ndarray, lo: float, hi: float, bins: int = BINS) -> float:
    """Jensen-Shannon divergence (bits, 0..1) between histograms of samples ``x`` and ``y``."""
    if len(x) == 0 or len(y) == 0:
        return float("nan")
    edges = np.linspace(lo, hi, bins + 1)
    p = np.histogram(np.clip(x, lo, hi), edges)[0].astype(float)
    q = np.histogram(np.clip(y, lo, hi), edges)[0].astype(float)
    p, q = p / p.sum(), q / q.sum()
    m = 0.5 * (p + q)
    kl = lambda a: float(np.sum(a[a > 0] * np.log2(a[a > 0] / m[a > 0])))  # noqa: E731
    return 0.5 * kl(p) + 0.5 * kl(q)


def blocks_of(series: list[np.ndarray], blocks: int) -> list[np.ndarray]:
    """Each replica's series cut into ``blocks`` contiguous time blocks (empty blocks dropped): the units of
    the bootstrap, long enough that frames of different blocks are roughly independent."""
    return [b for s in series for b in np.array_split(np.asarray(s, dtype=float), blocks) if len(b)]


def bootstrap_jsd(x_units: list[np.ndarray], y_units: list[np.ndarray], lo: float, hi: float,
                  n: int = BOOTSTRAP, seed: int = 0) -> tuple[float, float]:
    """(JSD of the pooled samples, bootstrap standard deviation): ``n`` times, both sides' units (time blocks)
    are resampled with replacement and the JSD recomputed. NaN when a side has no data."""
    if not x_units or not y_units:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    point = jensen_shannon(np.concatenate(x_units), np.concatenate(y_units), lo, hi)
    draws = [jensen_shannon(np.concatenate([x_units[i] for i in rng.integers(len(x_units), size=len(x_units))]),
                            np.concatenate([y_units[i] for i in rng.integers(len(y_units), size=len(y_units))]),
                            lo, hi) for _ in range(n)]
    return point, float(np.std(draws))


def noise_floor(units: list[np.ndarray], lo: float, hi: float, n: int = BOOTSTRAP, seed: int = 0
                ) -> tuple[float, float]:
    """(mean, std) of the JSD between two independent bootstrap resamples of the same units: how large a JSD
    the sampling noise of this much data gives on its own."""
    if not units:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    pick = lambda: np.concatenate([units[i] for i in rng.integers(len(units), size=len(units))])  # noqa: E731
    draws = [jensen_shannon(pick(), pick(), lo, hi) for _ in range(n)]
    return float(np.mean(draws)), float(np.std(draws))


def transitions(rmsd: np.ndarray, cores: tuple[float, float] = CORES) -> int:
    """Crossings between the folded core (RMSD < ``cores[0]``) and the unfolded one (> ``cores[1]``): frames in
    between keep the last core visited, so fluctuations around the folded threshold do not count."""
    state, count = None, 0
    for r in np.asarray(rmsd, dtype=float):
        now = "folded" if r < cores[0] else ("unfolded" if r > cores[1] else None)
        if now is not None:
            count += state is not None and now != state
            state = now
    return int(count)


def gap_error(d_folded: np.ndarray, d_unfolded: np.ndarray, n: int = BOOTSTRAP, seed: int = 0) -> dict:
    """Error of folded-minus-unfolded energy differences, from per-frame errors ``d = E_model - E_teacher``
    (eV) of folded and unfolded frames. The pair (i folded, j unfolded) has the error d_i - d_j. Returns meV:
    ``bias`` (mean pair error = mean(d_F) - mean(d_U)), ``mae`` (mean |d_i - d_j| over all pairs), their
    bootstrap spreads (frames of each state resampled with replacement) and the frame counts."""
    f, u = np.asarray(d_folded, dtype=float) * 1000, np.asarray(d_unfolded, dtype=float) * 1000
    out = {"n_folded": len(f), "n_unfolded": len(u)}
    if not len(f) or not len(u):
        return out | {"bias": float("nan"), "mae": float("nan"), "bias_spread": float("nan"),
                      "mae_spread": float("nan")}
    stat = lambda a, b: (a.mean() - b.mean(), np.abs(a[:, None] - b[None, :]).mean())  # noqa: E731
    rng = np.random.default_rng(seed)
    draws = np.array([stat(rng.choice(f, len(f)), rng.choice(u, len(u))) for _ in range(n)])
    bias, mae = stat(f, u)
    return out | {"bias": float(bias), "mae": float(mae), "bias_spread": float(draws[:, 0].std()),
                  "mae_spread": float(draws[:, 1].std())}


def time_block_split(frames: list[Atoms], total_ps: float, blocks: int = 10, test: int = 1, gap: int = 1
                     ) -> dict[str, list[Atoms]]:
    """Split each temperature's trajectory (``info['temperature']``, ``info['time_ps']`` in (0, total_ps]) into
    ``blocks`` equal time blocks: the first ``blocks - gap - test`` train, the next ``gap`` validate (never
    trained on: a buffer that decorrelates the test frames from the training frames), the last ``test`` are
    the test blocks. With the defaults this is the dataset's own 80/10/10 split."""
    if not (0 < test and 0 <= gap and test + gap < blocks):
        raise ValueError(f"need 0 < test, 0 <= gap and test + gap < blocks; got {blocks=}, {test=}, {gap=}")
    out: dict[str, list[Atoms]] = {"train": [], "valid": [], "test": []}
    for a in frames:
        t = float(a.info["time_ps"])
        block = min(blocks - 1, max(0, int(np.ceil(round(t * blocks / total_ps, 9))) - 1))
        key = "train" if block < blocks - gap - test else ("valid" if block < blocks - test else "test")
        out[key].append(a)
    return out


# ------------------------------------------------------------------------------------------------------- MD


def bonds(atoms: Atoms) -> np.ndarray:
    """[B, 2] covalent bonds of ``atoms``: pairs closer than 1.2 x the sum of covalent radii (the models' own
    bond rule; on the chignolin reference exactly the 141 bonds of the OpenMM topology). With plain covalent
    radii (ASE ``natural_cutoffs``) a C-H bond of 1.09 Å is longer than 0.76 + 0.31 Å, so only 64 bonds and 15
    of the 61 X-H bonds were found, and the C-H bonds went unconstrained (runs before 2026-12-03)."""
    from ase.neighborlist import natural_cutoffs, neighbor_list

    i, j = neighbor_list("ij", atoms, natural_cutoffs(atoms, mult=1.2))
    return np.stack([i[i < j], j[i < j]], axis=1)


def start_structure(top: Topology) -> Atoms:
    """The folded start (the minimised hairpin) with bonds to hydrogen constrained (``FixBondLengths``, as the
    teacher's own MD: OpenMM ``HBonds``) and hydrogens at 3 amu."""
    from ase.constraints import FixBondLengths

    a = top.reference.copy()
    a.info, a.calc = {"charge": top.charge}, None
    a.set_constraint(FixBondLengths([tuple(b) for b in bonds(a) if (a.numbers[b] == 1).any()]))
    a.set_masses(np.where(a.numbers == 1, 3.0, a.get_masses()))
    return a


def run_replica(start: Atoms, calculator, md: MDBudget, top: Topology, bond_list: np.ndarray, seed: int) -> dict:
    """One Langevin replica from ``start`` (velocities and noise from ``seed``); stops at the first frame with
    a bond more than :data:`BOND_TOLERANCE` off its reference length, a non-finite energy or a failed step.

    Returns times (ps), observables, potential energies (eV) and positions of the frames before a blow-up,
    ``failed_at_ps`` (None: stable), the error if a step raised, wall time and steps done."""
    from ase import units
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import Stationary, ZeroRotation

    from muse_ff.datasets.folding import observables

    atoms = start.copy()
    atoms.calc = calculator
    _thermalize(atoms, temperature_K=md.temperature, rng=np.random.default_rng(seed))
    Stationary(atoms)
    ZeroRotation(atoms)
    atoms.set_momenta(atoms.get_momenta(), apply_constraint=True)
    dyn = Langevin(atoms, md.timestep * units.fs, temperature_K=md.temperature, friction=md.friction / units.fs,
                   fixcm=False, rng=np.random.default_rng([seed, 1]))
    ref = top.reference.positions
    d0 = np.linalg.norm(ref[bond_list[:, 0]] - ref[bond_list[:, 1]], axis=1)
    rec = {"time_ps": [], "energy": [], "temperature": [], "positions": [], **{k: [] for k in RANGES}}
    failed, error, steps = None, None, 0
    t0 = time.perf_counter()
    for chunk in range(md.steps // md.interval + 1):
        if chunk:
            try:
                dyn.run(md.interval)
            except Exception as err:  # a blow-up (NaN, failed constraint) is a result, not a crash of the bench
                error, failed = f"{type(err).__name__}: {err}", steps * md.timestep / 1000
                break
            steps += md.interval
        t = steps * md.timestep / 1000
        pos = atoms.get_positions()
        energy = float(atoms.get_potential_energy())
        d = np.linalg.norm(pos[bond_list[:, 0]] - pos[bond_list[:, 1]], axis=1)
        if not (np.isfinite(energy) and np.abs(d / d0 - 1).max() < BOND_TOLERANCE):
            failed = t
            break
        rec["time_ps"].append(t)
        rec["energy"].append(energy)
        rec["temperature"].append(float(atoms.get_temperature()))
        rec["positions"].append(pos.astype(np.float32))
        for k, v in observables(pos, top.ca, top.heavy, ref).items():
            rec[k].append(v)
    wall = time.perf_counter() - t0
    out = {k: np.array(v) for k, v in rec.items()}
    return out | {"failed_at_ps": failed, "error": error, "wall_s": wall, "steps": steps}


def summarise(reps: list[dict], md: MDBudget) -> dict:
    """Per contestant: folded fraction, transitions, means, blow-ups and speed over its replicas."""
    rmsd = [r["rmsd_ca"] for r in reps]
    pooled = {k: np.concatenate([r[k] for r in reps]) for k in RANGES}
    steps, wall = sum(r["steps"] for r in reps), sum(r["wall_s"] for r in reps)
    ns = steps * md.timestep * 1e-6
    n = len(pooled["rmsd_ca"])
    return {"folded_fraction": float((pooled["rmsd_ca"] < RMSD_FOLDED).mean()) if n else float("nan"),
            "transitions": [transitions(r) for r in rmsd],
            "replicas_unfolded": int(sum((r > CORES[1]).any() for r in rmsd)),
            **{f"mean_{k}": float(v.mean()) if n else float("nan") for k, v in pooled.items()},
            "failed_at_ps": [r["failed_at_ps"] for r in reps], "errors": [r["error"] for r in reps],
            "stable": sum(r["failed_at_ps"] is None for r in reps), "replicas": len(reps),
            "ns_per_day": ns / (wall / 86400) if wall > 0 else float("nan"),
            "ms_per_step": 1000 * wall / steps if steps else float("nan"), "simulated_ps": ns * 1000,
            "mean_temperature": float(np.mean(np.concatenate([r["temperature"][1:] for r in reps])))
            if sum(len(r["temperature"]) > 1 for r in reps) else float("nan")}


def compare(reps: list[dict], teacher: list[dict], md: MDBudget) -> dict:
    """JSD (bits) of each observable against the teacher's replicas, with bootstrap spreads over time blocks;
    the teacher against itself gives the noise floor."""
    out = {}
    for k, (lo, hi) in RANGES.items():
        mine, ref = blocks_of([r[k] for r in reps], md.blocks), blocks_of([r[k] for r in teacher], md.blocks)
        if reps is teacher:
            out[f"jsd_{k}"], out[f"jsd_{k}_spread"] = noise_floor(ref, lo, hi)
        else:
            out[f"jsd_{k}"], out[f"jsd_{k}_spread"] = bootstrap_jsd(mine, ref, lo, hi)
    return out


def model_energies(calculator, positions: np.ndarray, numbers: np.ndarray, charge: int = 0) -> np.ndarray:
    """Energies (eV) of a calculator on frames [F, N, 3] of total charge ``charge``."""
    out = []
    for pos in positions:
        a = Atoms(numbers, positions=pos, info={"charge": charge})
        a.calc = calculator
        out.append(float(a.get_potential_energy()))
    return np.array(out)


def teacher_gap_frames(teacher: list[dict], md: MDBudget) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{folded, unfolded}: (positions [F, N, 3], teacher energies [F]) from the teacher's replicas, at most
    ``md.gap_frames`` per state evenly spread over the run. Folded: CA RMSD < 2.5 Å, unfolded: > 3.5 Å."""
    pos = np.concatenate([r["positions"] for r in teacher]) if teacher else np.zeros((0, 0, 3))
    energy = np.concatenate([r["energy"] for r in teacher]) if teacher else np.zeros(0)
    rmsd = np.concatenate([r["rmsd_ca"] for r in teacher]) if teacher else np.zeros(0)
    out = {}
    for state, sel in (("folded", rmsd < CORES[0]), ("unfolded", rmsd > CORES[1])):
        idx = np.flatnonzero(sel)
        idx = idx[np.unique(np.linspace(0, len(idx) - 1, min(len(idx), md.gap_frames)).round().astype(int))] \
            if len(idx) else idx
        out[state] = (pos[idx], energy[idx])
    return out


def teacher_calculator(top: Topology):
    from muse_ff.teachers import get_teacher
    from muse_ff.teachers.calculator import TeacherCalculator

    return TeacherCalculator(get_teacher("amber14-gbn2", pdb=str(top.pdb), platform="CPU"))


def _md_device(mode: str) -> str:
    """``cuda`` for ``--full`` runs on a GPU machine, else ``cpu``."""
    import torch

    return "cuda" if mode == "full" and torch.cuda.is_available() else "cpu"


# ----------------------------------------------------------------------------------------------- reporting

COLUMNS = ["model", "folded frac.", "transitions per replica", "replicas unfolded", "<RMSD> Å", "<Rg> Å",
           "<e2e> Å", "JSD RMSD", "JSD Rg", "JSD e2e", "stable replicas (blow-up at, ps)", "<T> K", "ns/day"]
GAP_COLUMNS = ["model", "test blocks: bias", "test blocks: MAE", "teacher replicas: bias", "teacher replicas: MAE"]


def _pm(x: float, s: float, digits: int = 2) -> str:
    return "-" if x != x else f"{x:.{digits}f} ± {s:.{digits}f}"


def md_rows(summaries: dict, comparisons: dict) -> list[list]:
    rows = []
    for name, s in summaries.items():
        c = comparisons[name]
        fails = [f"{f:.2f}" for f in s["failed_at_ps"] if f is not None]
        rows.append([name + (" (noise floor)" if name == "teacher" else ""), fmt(s["folded_fraction"], 2),
                     "/".join(map(str, s["transitions"])), f"{s['replicas_unfolded']}/{s['replicas']}",
                     *[fmt(s[f"mean_{k}"], 2) for k in RANGES],
                     *[_pm(c[f"jsd_{k}"], c[f"jsd_{k}_spread"]) for k in RANGES],
                     f"{s['stable']}/{s['replicas']}" + (f" ({', '.join(fails)})" if fails else ""),
                     fmt(s["mean_temperature"], 0), fmt(s["ns_per_day"], 2)])
    return rows


def gap_rows(gaps: dict) -> list[list]:
    rows = []
    for name, g in gaps.items():
        cells = []
        for src in ("test", "replicas"):
            e = g[src]
            cells += [_pm(e["bias"], e["bias_spread"], 1),
                      _pm(e["mae"], e["mae_spread"], 1) + f" ({e['n_folded']} x {e['n_unfolded']})"]
        rows.append([name, *cells])
    return rows


def plot(runs: dict[str, list[dict]], path: Path, ps: float | None = None) -> Path:
    """Top: histograms of the three observables for the teacher and each model; bottom: CA RMSD against time
    for each contestant's replicas."""
    plt = pyplot()
    n = len(runs)
    fig, axes = plt.subplots(2, max(len(RANGES), n), figsize=(3.4 * max(len(RANGES), n), 5.6), squeeze=False)
    labels = {"end_to_end": "end-to-end CA1-CA10 (Å)", "rg": "radius of gyration (Å)", "rmsd_ca": "CA RMSD (Å)"}
    for j, (k, (lo, hi)) in enumerate(RANGES.items()):
        ax = axes[0, j]
        edges = np.linspace(lo, hi, BINS + 1)
        for name, reps in runs.items():
            x = np.concatenate([r[k] for r in reps])
            if len(x):
                ax.hist(x, edges, density=True, histtype="stepfilled" if name == "teacher" else "step",
                        color="lightgrey" if name == "teacher" else None, lw=1.5, label=name)
        ax.set_xlabel(labels[k])
        ax.set_ylabel("density")
    for j in range(len(RANGES), axes.shape[1]):
        axes[0, j].axis("off")
    axes[0, 0].legend(fontsize=7)
    for j, (name, reps) in enumerate(runs.items()):
        ax = axes[1, j]
        for r in reps:
            ax.plot(r["time_ps"], r["rmsd_ca"], lw=0.8)
        ax.axhline(RMSD_FOLDED, color="k", ls=":", lw=0.8)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("time (ps)")
        ax.set_ylabel("CA RMSD (Å)")
        ax.set_ylim(0, RANGES["rmsd_ca"][1])
        if ps:
            ax.set_xlim(0, ps)  # the same time axis for every contestant: a short trace is an early blow-up
    for j in range(n, axes.shape[1]):
        axes[1, j].axis("off")
    return save_figure(fig, path)


def _json_run(r: dict) -> dict:
    return {k: v for k, v in r.items() if k not in ("positions",)}


#: the arrays of one replica kept on disk (``OUT/md/<name>/replicas.npz``)
REPLICA_ARRAYS = ("time_ps", "energy", "temperature", "positions", *RANGES)


#: bump when what a saved replica holds, or how it is computed, changes
REPLICA_FORMAT = 1


def _stamp(md: MDBudget, start: Atoms, pdb: Path | None = None) -> str:
    """What the teacher's replicas depend on: the MD settings, the start structure, the teacher's topology
    file (``pdb``), the OpenMM version, the blow-up rule and the arrays kept."""
    import hashlib

    h = hashlib.sha256(repr((md, REPLICA_FORMAT, BOND_TOLERANCE, REPLICA_ARRAYS, RANGES)).encode())
    h.update(np.round(start.positions, 6).tobytes())
    h.update(start.get_masses().tobytes())
    if pdb is not None:
        h.update(Path(pdb).read_bytes())
    try:
        import openmm

        h.update(openmm.__version__.encode())
    except ImportError:
        pass
    return h.hexdigest()[:16]


def save_replicas(path: Path, reps: list[dict], stamp: str) -> Path:
    """Write ``reps`` (:func:`run_replica` results) to ``path`` (.npz) with their ``stamp``."""
    import json

    meta = [{k: r[k] for k in ("failed_at_ps", "error", "wall_s", "steps")} for r in reps]
    _mkdir(path.parent)
    tmp = path.with_name(path.name + ".part.npz")  # written whole, then renamed: a killed run leaves no torn file
    np.savez_compressed(tmp, stamp=np.array(stamp), meta=np.array(json.dumps(meta)),
                        **{f"{k}_{i}": r[k] for i, r in enumerate(reps) for k in REPLICA_ARRAYS})
    tmp.replace(path)
    return path


def load_replicas(path: Path, stamp: str) -> list[dict] | None:
    """The replicas saved by :func:`save_replicas` at ``path`` if their stamp is ``stamp``, else None."""
    import json
    import zipfile

    if not path.is_file():
        return None
    try:
        with np.load(path) as z:
            if "stamp" not in z.files or str(z["stamp"]) != stamp:
                return None
            meta = json.loads(str(z["meta"]))
            return [{**{k: z[f"{k}_{i}"] for k in REPLICA_ARRAYS}, **m} for i, m in enumerate(meta)]
    except (KeyError, ValueError, OSError, zipfile.BadZipFile):  # an unreadable or foreign file: run again
        return None


def run(out: Path, mode: str = "default", data_dir: Path = Path("data"), progress: bool = False,
        retrain: bool = False, console: Console | None = None,
        contestants_filter: str | list[str] | None = None) -> dict:
    """Train the models on early time blocks of the teacher's MD, run the same replicas with every model and
    the teacher, compare distributions, energy gaps on held-out frames, stability and speed.

    ``contestants_filter``: names (comma-separated or a list) of the models to train and run, default all;
    the report then holds those and the teacher. The teacher's replicas are kept in
    ``OUT/md/teacher/replicas.npz`` and reused by a later run with the same MD settings, start and topology
    (:func:`_stamp`; its seeds are fixed), so a run of other contestants in the same folder skips the teacher's
    MD (the models' MD always runs; the reused teacher's ns/day is the one measured when it ran)."""
    from muse_ff.bench.common import MODELS, contestant_config
    from muse_ff.calculator import MuSECalculator
    from muse_ff.contestants import select, slug
    from muse_ff.datasets.folding import CONFIG
    from muse_ff.teachers.labelling import read_frames

    console = console or Console()
    report = Report("folding", mode)
    budget, md = BUDGETS[mode]
    folder = Path(data_dir) / FOLDER
    frames, top = read_frames(folder / "folding.extxyz.xz"), topology(folder)
    for a in frames:  # a data build from before the frames carried their charge: train at the MD's charge
        a.info.setdefault("charge", top.charge)
    split = time_block_split(frames, CONFIG.production_ps)
    names = select(contestants_filter, list(MODELS))
    trained = train_pair(split["train"], split["valid"], out, budget, progress, retrain, console,
                         models={n: contestant_config(budget, MODELS[n]) for n in names})
    device = _md_device(mode)
    calculators = {"teacher": lambda: teacher_calculator(top)}
    calculators.update({name: (lambda p=t.path: MuSECalculator(p, device=device)) for name, t in trained.items()})
    start, bond_list = start_structure(top), bonds(top.reference)
    stamp = _stamp(md, start, top.pdb)
    runs: dict[str, list[dict]] = {}
    for name, make in calculators.items():
        path = out / "md" / slug(name) / "replicas.npz"
        if name == "teacher" and (kept := load_replicas(path, stamp)) is not None:
            runs[name] = kept
            console.print(f"reusing the teacher's {len(kept)} replicas in {path}")
            continue
        runs[name] = []
        calc = make()
        for k in range(md.replicas):
            r = run_replica(start, calc, md, top, bond_list, seed=k)
            runs[name].append(r)
            console.print(f"MD {name} replica {k + 1}/{md.replicas}: {r['steps']}/{md.steps} steps in "
                          f"{r['wall_s']:.0f} s, transitions {transitions(r['rmsd_ca'])}"
                          + (f", blew up at {r['failed_at_ps']:.2f} ps" if r["failed_at_ps"] is not None else ""))
        save_replicas(path, runs[name], stamp)
    summaries = {name: summarise(reps, md) for name, reps in runs.items()}
    comparisons = {name: compare(reps, runs["teacher"], md) for name, reps in runs.items()}
    # folded-minus-unfolded energy gaps on teacher frames no model trained on
    test = split["test"]
    test_pos = np.array([a.positions for a in test]).reshape(len(test), len(top.reference), 3)
    test_e = np.array([a.info["REF_energy"] for a in test])
    test_folded = np.array([a.info["rmsd_ca"] < RMSD_FOLDED for a in test], dtype=bool)
    held = teacher_gap_frames(runs["teacher"], md)
    gaps = {}
    for name, t in trained.items():
        calc = MuSECalculator(t.path, device=device)
        d = model_energies(calc, test_pos, top.reference.numbers, top.charge) - test_e
        dr = {s: model_energies(calc, p, top.reference.numbers, top.charge) - e for s, (p, e) in held.items()}
        gaps[name] = {"test": gap_error(d[test_folded], d[~test_folded]),
                      "replicas": gap_error(dr["folded"], dr["unfolded"])}
    report.add_table("training (validation frames): E meV/atom, F meV/Å",
                     ["model", "params", "train s", "val E MAE", "val F MAE"], trained_rows(trained))
    report.add_table(f"chignolin, {md.replicas} replicas x {md.ps:g} ps of Langevin MD at {md.temperature:g} K "
                     f"from the folded structure ({md.timestep:g} fs, friction {md.friction * 1000:g}/ps, H 3 amu, "
                     f"X-H constrained), same seeds for every model; folded = CA RMSD < {RMSD_FOLDED:g} Å; "
                     f"transitions between RMSD < {CORES[0]:g} and > {CORES[1]:g} Å; JSD (bits) vs the teacher's "
                     f"replicas ± bootstrap std over {md.blocks} time blocks per replica (teacher row: two "
                     "resamples of its own blocks); observables from the frames before a blow-up",
                     COLUMNS, md_rows(summaries, comparisons))
    report.add_table("error of folded-minus-unfolded energy differences (meV per molecule, pairs of one folded "
                     f"and one unfolded teacher frame; ± bootstrap std): the dataset's test blocks (last "
                     f"10 % of each run, folded = RMSD < {RMSD_FOLDED:g} Å) and the teacher's own replicas "
                     f"(RMSD < {CORES[0]:g} vs > {CORES[1]:g} Å); count folded x unfolded", GAP_COLUMNS,
                     gap_rows(gaps))
    report.plots.append(str(plot(runs, out / "folding_observables.png", md.ps)))
    report.results = {"md": md, "summaries": summaries, "comparisons": comparisons, "energy_gaps": gaps,
                      "runs": {n: [_json_run(r) for r in reps] for n, reps in runs.items()},
                      "split": {k: len(v) for k, v in split.items()},
                      "training": {k: t.summary for k, t in trained.items()}, "budget": budget}
    return report.write(out, console)


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
