"""What the benchmarks share: sizes, training plain and MuSE the same way, thread control, reports.

Every benchmark trains its contestants through :func:`train_pair`: the same data, backbone (features, layers,
radial basis), epochs, loss weights and seed; the only differences are the coarse levels (MuSE) or the
long-range terms. The contestants come from the one registry, :mod:`muse_ff.contestants` (:data:`MODELS` is
its ``bench`` suite). Results go to ``OUT/results.json`` and ``OUT/table.md`` and are printed as rich tables.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from ase import Atoms
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from muse_ff.contestants import SUITES, model_section, slug, with_training
from muse_ff.io.console import print_whole
from muse_ff.io.serialization import atomic_write

#: the contestants of hessian, folding and speed: the registry's ``bench`` suite, as overrides of the PaiNN
#: ``model:`` section (plain, MuSE, the long-range baseline and the physical terms on PaiNN and MuSE-intra)
MODELS: dict[str, dict] = SUITES["bench"]
MODES = ("quick", "default", "full")


@dataclass(frozen=True)
class Budget:
    """Training budget shared by both models of a benchmark.

    features/layers/num_basis: PaiNN size; epochs, batch_size, lr: AdamW with a cosine schedule;
    energy_weight/forces_weight: loss weights (energy MSE per atom, eV/atom; forces eV/Å);
    train_stride: train on every ``train_stride``-th training frame; max_train/max_valid: at most this many
    training/validation frames (None: all); dtype: model precision.
    """

    features: int = 32
    layers: int = 2
    num_basis: int = 12
    epochs: int = 40
    batch_size: int = 8
    lr: float = 3e-3
    energy_weight: float = 100.0
    forces_weight: float = 1.0
    train_stride: int = 1
    max_train: int | None = None
    max_valid: int | None = None
    dtype: str = "float32"
    seed: int = 0
    extra: dict = field(default_factory=dict)

    def scaled(self, **changes) -> "Budget":
        return replace(self, **changes)


def model_config(budget: Budget, levels: list[dict], backbone: dict | None = None) -> dict:
    """The ``model:`` section: a 5 Å backbone with ``levels``; ``backbone`` defaults to PaiNN of the budget's
    size (features, layers, num_basis)."""
    return model_section({"levels": levels}, painn(budget) if backbone is None else backbone, budget.dtype)


def painn(budget: Budget) -> dict:
    """The ``model.backbone`` section of PaiNN of the budget's size."""
    return {"name": "painn", "features": budget.features, "layers": budget.layers, "num_basis": budget.num_basis}


def contestant_config(budget: Budget, spec: dict) -> dict:
    """The ``model:`` section of one registry entry (e.g. of :data:`MODELS`: ``levels`` plus any other
    overrides) on PaiNN of the budget's size (:func:`muse_ff.contestants.model_section`)."""
    return model_section(spec, painn(budget), budget.dtype)


def training_config(budget: Budget, output_dir: Path) -> dict:
    return {"epochs": budget.epochs, "batch_size": budget.batch_size, "lr": budget.lr, "schedule": "cosine",
            "min_lr": budget.lr / 100, "loss": {"energy": budget.energy_weight, "forces": budget.forces_weight},
            "ema_decay": 0.98, "patience": None, "checkpoint_every": max(1, budget.epochs // 4),
            "seed": budget.seed, "output_dir": str(output_dir)}


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run torch on ``threads`` intra-op threads (one is fastest for these small graphs on a busy CPU)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


#: what a benchmark's training file keeps of each frame: the labels a contestant may train on (energies,
#: forces, dipoles, interaction and binding energies) and the total or formal charges the charge inputs read
PLAIN_INFO = ("REF_energy", "REF_dipole", "interaction_energy", "binding_energy", "charge", "frame_id", "split")
PLAIN_ARRAYS = ("numbers", "positions", "REF_forces", "initial_charges")


def _write_plain(path: Path, frames: Sequence[Atoms]) -> Path:
    """``frames`` as plain extxyz with only :data:`PLAIN_INFO` / :data:`PLAIN_ARRAYS`, written atomically (a
    training that reads the file sees the whole of it, even while another benchmark process rewrites it)."""
    from ase.io import write

    path.parent.mkdir(parents=True, exist_ok=True)
    clean = []
    for a in frames:
        b = a.copy()
        b.info = {k: v for k, v in a.info.items() if k in PLAIN_INFO}
        b.arrays = {k: v for k, v in a.arrays.items() if k in PLAIN_ARRAYS}
        clean.append(b)
    atomic_write(path, lambda tmp: write(str(tmp), clean, format="extxyz"))
    return path


@dataclass
class Trained:
    """A trained contestant: its saved model, training wall time (s) and parameter count."""

    name: str
    path: Path
    train_time_s: float
    params: int
    summary: dict


def train_pair(train_frames: Sequence[Atoms], valid_frames: Sequence[Atoms], out: Path, budget: Budget,
               progress: bool = False, retrain: bool = False, console: Console | None = None,
               models: Mapping[str, dict] | None = None,
               training: Mapping[str, dict] | None = None) -> dict[str, Trained]:
    """Train every model of :data:`MODELS` on the same frames with the same ``budget``.

    ``models``: {name: ``model:`` section} to train instead (default: :func:`contestant_config` of each
    entry of :data:`MODELS`, PaiNN of the budget's size). ``training``: {name: additions to that contestant's
    training file} (``data`` keys and ``loss`` weights, :func:`muse_ff.contestants.with_training`). The frames
    are written once to ``out/data/{train,valid}.extxyz`` (plain text: fast to read; :func:`_write_plain`).
    A model already trained in ``out/<name>/`` with the same configuration on the same frames (a hash of
    species, positions and energies) is reused unless ``retrain``.
    """
    from muse_ff.training import train

    console = console or Console()
    train_frames = list(train_frames)[:: budget.train_stride][: budget.max_train]
    valid_frames = list(valid_frames)[: budget.max_valid]
    data = {"train": str(_write_plain(out / "data" / "train.extxyz", train_frames)),
            "valid": str(_write_plain(out / "data" / "valid.extxyz", valid_frames))}
    fingerprint = _fingerprint(train_frames, valid_frames)
    trained = {}
    if models is None:
        models = {name: contestant_config(budget, spec) for name, spec in MODELS.items()}
    for name, model in models.items():
        folder = out / slug(name)
        config = with_training({"model": model, "data": data, "training": training_config(budget, folder)},
                               (training or {}).get(name))
        stamp = {"config": config, "data": fingerprint}
        summary = _reusable(folder, stamp) if not retrain else None
        if summary is None:
            console.rule(f"training {name}: {len(train_frames)} frames, {budget.epochs} epochs")
            summary = train(config, progress=progress, force=True).summary  # a bench folder is retrained in place
            (folder / "bench-config.json").write_text(json.dumps(stamp, sort_keys=True))
        else:
            console.print(f"reusing trained {name} in {folder} (--retrain to train again)")
        trained[name] = Trained(name, folder / "model.pt", float(summary.get("train_time_s", 0.0)),
                                int(summary.get("params", _count_params(folder / "model.pt"))), summary)
    return trained


def _fingerprint(*frame_lists: Sequence[Atoms]) -> str:
    """A hash of the frames' species, positions, energies and total charges: a reused model must have seen the
    same data (a physical model trained before the frames carried their charge is trained again)."""
    import hashlib

    import numpy as np

    h = hashlib.sha256()
    for frames in frame_lists:
        h.update(str(len(frames)).encode())
        for a in frames:
            h.update(a.numbers.tobytes())
            h.update(np.round(a.positions, 6).tobytes())
            h.update(repr(a.info.get("REF_energy")).encode())
            if float(a.info.get("charge", 0) or 0) != 0:  # neutral frames hash as before (no retraining)
                h.update(b"charge" + repr(float(a.info["charge"])).encode())
    return h.hexdigest()[:16]


def _reusable(folder: Path, stamp: dict) -> dict | None:
    stamp_file, summary = folder / "bench-config.json", folder / "summary.json"
    if not (stamp_file.is_file() and summary.is_file() and (folder / "model.pt").is_file()):
        return None
    if json.loads(stamp_file.read_text()) != json.loads(json.dumps(stamp, sort_keys=True)):
        return None
    return json.loads(summary.read_text())


def _count_params(path: Path) -> int:
    from muse_ff.io.serialization import load_model

    return sum(p.numel() for p in load_model(path).parameters())


def markdown_table(title: str, columns: Sequence[str], rows: Sequence[Sequence]) -> str:
    head = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    return f"**{title}**\n\n" + head + "".join("| " + " | ".join(map(str, r)) + " |\n" for r in rows)


def rich_table(title: str, columns: Sequence[str], rows: Sequence[Sequence]) -> Table:
    """A rich table whose columns are at least as wide as their longest cell and header word (printed with
    :func:`muse_ff.io.console.print_whole`, a wide table overflows the terminal rather than cutting cells)."""
    table = Table(title=title)
    cells = [list(map(str, r)) for r in rows]
    for k, col in enumerate(columns):
        widest = max([len(r[k]) for r in cells if k < len(r)] + [len(w) for w in str(col).split()] + [1])
        table.add_column(col, justify="left" if k == 0 else "right", no_wrap=k == 0, min_width=widest)
    for r in cells:
        table.add_row(*r)
    return table


def fmt(x, digits: int = 1) -> str:
    """A number for a table ('-' for None/NaN)."""
    if x is None or (isinstance(x, float) and x != x):
        return "-"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


@dataclass
class Report:
    """Tables (title, columns, rows), plots and raw results of one benchmark run."""

    name: str
    mode: str
    tables: list[tuple[str, list[str], list[list]]] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)
    results: dict = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)

    def add_table(self, title: str, columns: list[str], rows: list[list]) -> None:
        self.tables.append((title, list(columns), [list(r) for r in rows]))

    def write(self, out: Path, console: Console | None = None) -> dict:
        """Print the tables, write ``table.md`` and ``results.json``; returns the JSON content."""
        console = console or Console()
        elapsed = time.perf_counter() - self.started
        for title, cols, rows in self.tables:
            print_whole(console, rich_table(title, cols, rows))
        md = f"# muse bench {self.name} ({self.mode}), {elapsed:.0f} s\n\n"
        md += "\n".join(markdown_table(t, c, r) for t, c, r in self.tables)
        md += "".join(f"\n![{Path(p).stem}]({Path(p).name})\n" for p in self.plots)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(out / "table.md", lambda tmp: Path(tmp).write_text(md))
        content = {"benchmark": self.name, "mode": self.mode, "total_time_s": round(elapsed, 1),
                   "tables": [{"title": t, "columns": c, "rows": r} for t, c, r in self.tables],
                   "plots": self.plots, "results": self.results}
        atomic_write(out / "results.json",
                     lambda tmp: Path(tmp).write_text(json.dumps(content, indent=1, default=_json_default)))
        console.print(f"{self.name}: {escape(str(out / 'table.md'))}, {escape(str(out / 'results.json'))}, "
                      f"{len(self.plots)} plot(s); {elapsed:.0f} s", soft_wrap=True)
        return content


def _json_default(obj):
    import numpy as np

    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "__dataclass_fields__"):
        return asdict(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def pyplot():
    from muse_ff.analysis.plots import _pyplot

    return _pyplot()


def save_figure(fig, path: Path) -> Path:
    """Lay out, write (dpi 90, creating the folder) and close a benchmark figure; returns ``path``."""
    plt = pyplot()
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def trained_rows(trained: dict[str, Trained]) -> list[list]:
    """Rows (model, params, train s, valid E MAE meV/atom, valid F MAE meV/Å) from training summaries."""
    rows = []
    for name, t in trained.items():
        val = {k: v for k, v in t.summary.get("last_metrics", {}).items() if k.startswith("val")}
        rows.append([name, t.params, fmt(t.train_time_s, 0), fmt(_get(val, "energy_mae"), 2),
                     fmt(_get(val, "forces_mae"), 1)])
    return rows


def _get(d: dict, key: str):
    for k, v in d.items():
        if k.endswith(key) and isinstance(v, (int, float)):
            return float(v)
    return None


# ---------------------------------------------------------------------------------------------- seeds
def seed_folder(out: Path, seed: int) -> Path:
    """Where the contestants of training seed ``seed`` are trained: ``out/seed<k>/<slug>``."""
    return Path(out) / f"seed{seed}"


def seed_schedule(seeds: Mapping[str, int]) -> list[tuple[int, str]]:
    """The (seed, contestant) trainings of ``seeds`` ({name: number of seeds}), in the order they run.

    Contestants with more seeds come first (their groups in the order given), and within a group every
    contestant's seed 0, then every seed 1, ...: so a run cut short still has the fully seeded contestants
    complete, compared seed by seed, before the single-seed extras start."""
    order: list[tuple[int, str]] = []
    for n in sorted(set(seeds.values()), reverse=True):
        group = [name for name, k in seeds.items() if k == n]
        order += [(s, name) for s in range(n) for name in group]
    return order


def train_seeds(train_frames: Sequence[Atoms], valid_frames: Sequence[Atoms], out: Path, budget: Budget,
                models: Mapping[str, dict] | Callable[[Budget], Mapping[str, dict]], seeds: int | Mapping[str, int],
                progress: bool = False, retrain: bool = False, console: Console | None = None,
                on_trained: Callable[[int, Trained], None] | None = None,
                training: Mapping[str, dict] | None = None) -> dict[str, list[Trained]]:
    """Train each contestant of ``models`` with ``seeds`` training seeds (an int for all, or {name: n}).

    Seed ``k`` is ``budget.seed = k`` (:func:`training_config`): it draws the model's initial weights and the
    order of the training frames in every epoch (``muse_ff.training``: ``seed_everything`` and the seeded
    sampler); the frames, budget and everything else stay the same. Each training goes through
    :func:`train_pair` into ``out/seed<k>/<slug>`` (reused when already trained, unless ``retrain``), in the
    order of :func:`seed_schedule`. ``models``: {name: ``model:`` section}, or a function of the seeded budget
    giving it. ``on_trained(seed, trained)`` is called after each training (e.g. to evaluate and write a
    partial report); ``training``: per-contestant training-file additions (:func:`train_pair`). Returns {name:
    [Trained per seed, seed 0 first]}."""
    counts = {name: int(seeds) for name in (models(budget) if callable(models) else models)} \
        if isinstance(seeds, int) else {k: int(v) for k, v in seeds.items()}
    if any(n < 1 for n in counts.values()):
        raise ValueError(f"seeds must be >= 1, got {counts}")
    out_runs: dict[str, list[Trained]] = {}
    for seed, name in seed_schedule(counts):
        b = budget.scaled(seed=seed)
        sections = models(b) if callable(models) else models
        t = train_pair(train_frames, valid_frames, seed_folder(out, seed), b, progress, retrain, console,
                       models={name: sections[name]}, training=training)[name]
        out_runs.setdefault(name, []).append(t)
        if on_trained is not None:
            on_trained(seed, t)
    return {name: out_runs[name] for name in counts if name in out_runs}



def train_and_evaluate(train_frames: Sequence[Atoms], valid_frames: Sequence[Atoms], out: Path, budget: Budget,
                       sections: Callable[[Budget], Mapping[str, dict]], seeds: Mapping[str, int],
                       names: Sequence[str], evaluate: Callable[[int, Trained], dict],
                       write: Callable[[dict, dict, bool], dict], progress: bool = False, retrain: bool = False,
                       console: Console | None = None, training: Mapping[str, dict] | None = None) -> dict:
    """:func:`train_seeds`, then ``evaluate(seed, trained)`` of each training as it finishes, with the partial
    report ``write(per_seed, trained, False)`` after every training but the last; returns ``write(per_seed,
    trained, True)`` with both dicts ({name: [per seed]}) in the order of ``names``."""
    per_seed: dict[str, list] = {}
    trained: dict[str, list] = {}
    total = sum(seeds.values())

    def on_trained(seed: int, t: Trained) -> None:
        per_seed.setdefault(t.name, []).append(evaluate(seed, t))
        trained.setdefault(t.name, []).append(t)
        if sum(len(v) for v in trained.values()) < total:
            write(per_seed, trained, False)

    train_seeds(train_frames, valid_frames, out, budget, sections, seeds, progress, retrain, console,
                on_trained=on_trained, training=training)
    order = {n: k for k, n in enumerate(names)}
    return write(dict(sorted(per_seed.items(), key=lambda kv: order[kv[0]])),
                 dict(sorted(trained.items(), key=lambda kv: order[kv[0]])), True)

# ---------------------------------------------------------------------------------------------- statistics
def mean_std(values: Iterable[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; 0.0 for one value) of the finite ``values``; NaNs and
    Nones are dropped; (nan, nan) when none is left."""
    import numpy as np

    v = np.asarray([float(x) for x in values if x is not None and x == x], dtype=float)
    if not len(v):
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def pm(values: Sequence[float], digits: int = 1) -> str:
    """'mean ± std' of ``values`` over seeds (just the value for one, '-' for none)."""
    kept = [x for x in values if x is not None and x == x]
    m, s = mean_std(kept)
    if m != m:
        return "-"
    return f"{m:.{digits}f}" if len(kept) == 1 else f"{m:.{digits}f} ± {s:.{digits}f}"


@dataclass(frozen=True)
class Verdict:
    """The comparison of a contestant's metric with a reference's over seeds (:func:`verdict`)."""

    word: str  # "better", "worse", "within spread" or "n/a"
    difference: float  # mean(contestant) - mean(reference)
    spread: float  # sqrt(std(contestant)^2 + std(reference)^2)
    seeds: tuple[int, int]  # values behind each mean

    def __str__(self) -> str:
        return self.word


#: the least number of seeds on each side for a verdict: with one value there is no spread to beat
MIN_SEEDS_FOR_VERDICT = 2


def verdict(values: Sequence[float], reference: Sequence[float], lower_is_better: bool = True) -> Verdict:
    """Is a contestant better than the reference on one metric, beyond the seed-to-seed spread?

    The rule: with means m and m_ref and sample standard deviations s and s_ref over seeds (ddof 1), the
    difference d = m - m_ref counts only if |d| > sqrt(s^2 + s_ref^2), the combined spread of the two sets of
    runs (one standard deviation of each, added in quadrature; deliberately stricter than a standard error,
    which would shrink with more seeds). Then the word is "better" where d is in the good direction (lower
    for errors, ``lower_is_better``) and "worse" otherwise; else "within spread". With fewer than
    :data:`MIN_SEEDS_FOR_VERDICT` finite values on either side there is no spread and the word is "n/a"."""
    a = [x for x in values if x is not None and x == x]
    b = [x for x in reference if x is not None and x == x]
    (m, s), (mr, sr) = mean_std(a), mean_std(b)
    if min(len(a), len(b)) < MIN_SEEDS_FOR_VERDICT:
        return Verdict("n/a", m - mr if a and b else float("nan"), float("nan"), (len(a), len(b)))
    d, spread = m - mr, float((s * s + sr * sr) ** 0.5)
    if abs(d) <= spread:
        return Verdict("within spread", d, spread, (len(a), len(b)))
    good = d < 0 if lower_is_better else d > 0
    return Verdict("better" if good else "worse", d, spread, (len(a), len(b)))


VERDICT_RULE = ("verdict: 'better'/'worse' only where the difference of the means over seeds exceeds the "
                "combined spread sqrt(std_a^2 + std_b^2) (sample std over seeds); else 'within spread'; "
                f"'n/a' with fewer than {MIN_SEEDS_FOR_VERDICT} seeds on a side")


# ---------------------------------------------------------------------------------------------- learning curves
def learning_curve(folder: Path) -> dict[str, list[float]]:
    """One training's curve from ``folder/logs/metrics.csv`` (:class:`muse_ff.training.callbacks.EpochLog`):
    {"epoch", "train_loss", "val_loss", and the validation MAEs present}, as lists per epoch (NaN where a
    row has no value); {} when there is no log."""
    import csv

    path = Path(folder) / "logs" / "metrics.csv"
    if not path.is_file():
        return {}
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    keys = [k for k in ("epoch", "train_loss", "val_loss", "val_energy_mae", "val_forces_mae") if rows and k in rows[0]]

    def num(x: str | None) -> float:
        try:
            return float(x)
        except (TypeError, ValueError):
            return float("nan")

    return {k: [num(r.get(k)) for r in rows] for k in keys}


def plateau(curve: Mapping[str, Sequence[float]], key: str = "val_loss", tail: float = 0.25) -> float:
    """How much the best ``key`` still improved in the last ``tail`` of the epochs: (best before the tail -
    best overall) / best before the tail, as a fraction (0: no gain in the tail, a plateau; 0.2: the best
    value fell 20% in the tail, still learning). NaN with fewer than 4 epochs."""
    import numpy as np

    v = np.asarray(curve.get(key, []), dtype=float)
    v = v[np.isfinite(v)]
    if len(v) < 4:
        return float("nan")
    cut = max(1, int(round(len(v) * (1 - tail))))
    before = float(v[:cut].min())
    return (before - float(v.min())) / abs(before) if before else 0.0


def plot_learning_curves(curves: Mapping[str, Sequence[Mapping[str, Sequence[float]]]], path: Path,
                         key: str = "val_loss", title: str = "validation loss per epoch") -> Path:
    """Validation loss (log scale) against epoch: one colour per contestant, one line per seed."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for k, (name, runs) in enumerate(curves.items()):
        for j, c in enumerate(runs):
            if c.get(key):
                ax.plot(c["epoch"], c[key], color=f"C{k % 10}", lw=1, alpha=0.85,
                        ls="-" if name.startswith("MuSE(") else "--", label=name if j == 0 else None)
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel(key.replace("_", " "))
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    return save_figure(fig, path)


def curve_rows(trained: Mapping[str, Sequence[Trained]]) -> list[list]:
    """Rows (model, seeds, epochs, best epoch, final val loss, gain in the last quarter) of the learning curves."""
    import numpy as np

    rows = []
    for name, runs in trained.items():
        curves = [learning_curve(t.path.parent) for t in runs]
        curves = [c for c in curves if c.get("val_loss")]
        best = [int(np.nanargmin(c["val_loss"])) for c in curves]
        rows.append([name, len(runs), pm([len(c["val_loss"]) for c in curves], 0), pm(best, 0),
                     pm([float(np.nanmin(c["val_loss"])) for c in curves], 4),
                     pm([100 * plateau(c) for c in curves], 1)])
    return rows


CURVE_COLUMNS = ["model", "seeds", "epochs", "best epoch", "best val loss",
                 "% gain of best val loss in last 25% of epochs"]


def training_rows(trained: Mapping[str, Sequence[Trained]]) -> list[list]:
    """Per contestant: params, seeds, training time (s) and validation E / F MAE, mean ± std over seeds."""
    rows = []
    for name, runs in trained.items():
        val = [{k: v for k, v in t.summary.get("last_metrics", {}).items() if k.startswith("val")} for t in runs]
        rows.append([name, runs[0].params, len(runs), pm([t.train_time_s for t in runs], 0),
                     pm([_get(v, "energy_mae") for v in val], 2), pm([_get(v, "forces_mae") for v in val], 1)])
    return rows


def comparisons(name: str, names) -> list[str]:
    """Every contestant of ``names`` that ``name`` is judged against, the closest first: a MuSE model with
    suffixes against the same backbone with the same suffixes (``MuSE(X)+S`` -> ``X+S``: what the hierarchy
    adds), a variant ``MuSE-v(X)+S`` against ``MuSE(X)+S``, then down :func:`reference_of`'s chain
    (``MuSE(X)+S`` -> ``MuSE(X)`` -> ``X``)."""
    out: list[str] = []
    match = re.fullmatch(r"MuSE(?:-[\w-]+)?\(([^()]+)\)(\+.+)", name)
    if match is not None:
        out.append(match.group(1) + match.group(2))
    ref = reference_of(name, names)
    while ref is not None:
        out.append(ref)
        ref = reference_of(ref, names)
    return [r for r in dict.fromkeys(out) if r in names and r != name]


def reference_of(name: str, names) -> str | None:
    """The contestant ``name`` is judged against: ``MuSE(X)`` and ``X+...`` -> ``X``, a variant ``MuSE-v(X)+S``
    -> ``MuSE(X)+S`` (when present)."""
    variant = re.fullmatch(r"MuSE-[\w-]+\(([^()]+)\)(\+.+)?", name)
    if variant is not None:
        ref = f"MuSE({variant.group(1)}){variant.group(2) or ''}"
        return ref if ref in names else None
    if name.startswith("MuSE(") and name.endswith(")"):
        ref = name[5:-1]
    elif "+" in name:
        ref = name.split("+", 1)[0]
    else:
        return None
    return ref if ref in names else None
