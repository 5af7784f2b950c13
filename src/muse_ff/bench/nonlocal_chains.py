"""``muse bench nonlocal``: non-local energies along conjugated chains, trained on short chains, tested on long ones.

Data: the ``nonlocal-chains`` dataset (GFN2-xTB; :mod:`muse_ff.datasets.nonlocal_chains`): cumulenes
H2C=(C=)n-2 CH2 whose far CH2 group is twisted, and push-pull polyenes NH2/H-(CH=CH)n/2-CHO/H. It is read
from ``DATA_DIR/nonlocal-chains`` when present, else built into ``OUT/dataset`` (about a minute on one core;
quick mode builds the subset, a few seconds).

Every contestant (PaiNN; MuSE(PaiNN) with three coarse levels whose cutoffs, 10/20/40 Å, reach across a
24-carbon chain; PaiNN+LES; PaiNN+physical: learned charges conserved per molecule, Coulomb and damped C6
dispersion with no cutoff, and the charge inputs; and the other two backbones, SO3krates and MACE, plain and
as MuSE(backbone) with the same three levels, at about PaiNN's size with three layers each: :func:`backbones`)
trains on the rattled ``sample`` frames of the chains with at most :data:`MAX_TRAIN_LENGTH` carbons (train
split; valid split for validation), with the same budget and seeds, one training per seed (the PaiNN
contestants :data:`SEEDS`, the other backbones :data:`EXTRA_SEEDS`, which CPU time allows). They are then
evaluated on:

- the rigid cumulene twist scans of every length: the twist energy E(90°) - E(0°) (meV) and the whole scan
  E(θ) - E(0°), at lengths seen in training and at longer, unseen ones;
- the rigid polyene quartets: the end-to-end coupling E(NH2..CHO) - E(NH2..H) - E(H..CHO) + E(H..H) (meV),
  which is exactly zero for a model none of whose terms sees both ends;
- the ``sample`` frames of the test split at seen lengths and all samples at unseen lengths: energy
  (meV/atom) and force (meV/Å) MAE.

Every number is a mean ± std over seeds (``--seeds``; one in quick mode); verdicts against the plain backbone
follow :func:`muse_ff.bench.common.verdict` (better or worse only beyond the combined spread over seeds).
``--contestants`` trains a subset. The report is rewritten after each training, so a run cut short keeps what
finished. Plots: the twist energy and the coupling against the number of carbons, teacher and models
(``nonlocal_chains.png``), predicted against teacher twist energies (``nonlocal_parity.png``), and the
learning curves (``nonlocal_learning_curves.png``).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from ase import Atoms
from rich.console import Console

from muse_ff.bench.common import (
    CURVE_COLUMNS,
    VERDICT_RULE,
    Budget,
    Report,
    curve_rows,
    fmt,
    learning_curve,
    mean_std,
    painn,
    plot_learning_curves,
    pm,
    pyplot,
    reference_of,
    save_figure,
    train_and_evaluate,
    training_rows,
    verdict,
)
from muse_ff.contestants import NONLOCAL_LEVELS, SMALL_BACKBONES, SUITES, model_section, select, slug
from muse_ff.contestants import contestants as registry_contestants
from muse_ff.datasets import nonlocal_chains as chains

DATA = "nonlocal-chains/nonlocal-chains.extxyz.xz"  # in the data folder
#: chains with at most this many carbons are trained on (per mode); longer ones are never seen
MAX_TRAIN_LENGTH = {"quick": 5, "default": 15, "full": 15}
#: the issue's target range: test lengths of at least this many carbons are also reported apart
LONG = 20
#: three coarse levels reaching across a 24-carbon chain (:data:`muse_ff.contestants.NONLOCAL_LEVELS`)
LEVELS: list[dict] = NONLOCAL_LEVELS
#: the contestants, as overrides of the PaiNN ``model:`` section: the registry's ``nonlocal`` suite (PaiNN,
#: MuSE(PaiNN) with :data:`LEVELS`, PaiNN+LES, PaiNN+physical with :data:`~muse_ff.contestants.PHYSICAL`:
#: charges sum to each molecule's total, here 0)
CONTESTANTS: dict[str, dict] = SUITES["nonlocal"]
#: default: 3 PaiNN layers (the issue's "5 Å, 3-layer model", receptive field 15 Å), 100 epochs of the 243 training
#: samples: one epoch of all four contestants takes ~7 s on one CPU thread, so 3 seeds fit about 40 min
BUDGETS = {
    "quick": Budget(features=8, layers=1, num_basis=6, epochs=2, batch_size=4, max_train=12, max_valid=4,
                    energy_weight=1000.0),
    "default": Budget(features=32, layers=3, num_basis=12, epochs=100, batch_size=8, lr=2e-3, energy_weight=1000.0),
    "full": Budget(features=64, layers=3, num_basis=16, epochs=300, batch_size=8, lr=2e-3, energy_weight=1000.0),
}
SEEDS = {"quick": 1, "default": 3, "full": 3}
#: training seeds of the SO3krates and MACE contestants per mode (at most ``--seeds``): MACE costs ~5x PaiNN
EXTRA_SEEDS = {"quick": 1, "default": 1, "full": 3}
#: message-passing layers of the SO3krates and MACE contestants outside quick mode: PaiNN's three (receptive
#: field 15 Å), so that no plain backbone sees further than the others
LAYERS = 3
#: the tag of the ablation MuSE-nol2(MACE-l2): MuSE(MACE-l2) whose coarse levels do not pool l = 2 features
NO_L2 = "nol2"
#: the elements of the dataset (set explicitly: a small training set need not hold them all)
SPECIES = ("H", "C", "N", "O")


# ---------------------------------------------------------------------------------------------- data
def dataset(out: Path, mode: str, data_dir: Path, console: Console) -> Path:
    """The dataset file: ``data_dir/DATA`` when present (not in quick mode), else built into ``out/dataset``."""
    stored = Path(data_dir) / DATA
    if mode != "quick" and stored.is_file():
        return stored
    subset = mode == "quick"
    folder = out / "dataset"
    path = folder / f"nonlocal-chains{'-subset' if subset else ''}.extxyz.xz"
    if not path.is_file():
        console.print(f"building the nonlocal-chains dataset{' subset' if subset else ''} into {folder}")
        folder.mkdir(parents=True, exist_ok=True)
        chains.build(folder, subset=subset, command="muse bench nonlocal (on demand)"
                     + (" --quick" if subset else ""))
    return path


def load(path: Path, max_train_length: int) -> dict[str, list[Atoms]]:
    """Frames by use: ``train``/``valid`` samples at seen lengths, ``test_seen`` (test-split samples at seen
    lengths), ``test_unseen`` (every sample at longer lengths), ``scan`` and ``quartet`` (rigid, all lengths).
    Without any valid sample at seen lengths (the subset), a seen test sample (else a training one) validates."""
    from muse_ff.teachers.labelling import read_frames

    frames = read_frames(path)
    seen = lambda a: int(a.info["n_carbons"]) <= max_train_length  # noqa: E731
    samples = [a for a in frames if a.info["role"] == "sample"]
    out = {"train": [a for a in samples if seen(a) and a.info["split"] == "train"],
           "valid": [a for a in samples if seen(a) and a.info["split"] == "valid"],
           "test_seen": [a for a in samples if seen(a) and a.info["split"] == "test"],
           "test_unseen": [a for a in samples if not seen(a)],
           "scan": [a for a in frames if a.info["role"] == "scan"],
           "quartet": [a for a in frames if a.info["role"] == "quartet"]}
    if not out["valid"]:  # the subset (quick mode) may have no valid sample at seen lengths
        out["valid"] = out["test_seen"][:1] or out["train"][-1:]
    return out


# ---------------------------------------------------------------------------------------------- evaluation
def observables(frames: dict[str, list[Atoms]], energies: dict[str, np.ndarray] | None = None) -> dict:
    """Twist scans {n: {twist: meV}} and couplings {n: meV}, from ``energies`` (per role; default the labels)."""
    e = energies or {}
    tw = chains.twist_energies(frames["scan"], e.get("scan"))
    cp = chains.couplings(frames["quartet"], e.get("quartet"))
    return {"twist": {n: {t: 1000 * v for t, v in s.items()} for n, s in tw.items()},
            "coupling": {n: 1000 * v for n, v in cp.items()}}


def evaluate_model(model, frames: dict[str, list[Atoms]]) -> dict:
    """One model's twist scans, couplings (meV) and sample errors (meV/atom, meV/Å)."""
    from muse_ff.analysis.metrics import evaluate_frames, predict_energies

    energies = {role: predict_energies(model, frames[role], batch_size=8) for role in ("scan", "quartet")
                if frames[role]}
    out = observables(frames, energies)
    for name in ("test_seen", "test_unseen"):
        if frames[name]:
            m = evaluate_frames(model, frames[name], batch_size=8).metrics()
            out[name] = {"energy_mae": m["energy_mae"], "forces_mae": m["forces_mae"], "frames": m["frames"]}
    return out


def scores(pred: dict, ref: dict, max_train_length: int) -> dict[str, float]:
    """Scalar scores of one model (meV; NaN where a group is empty)."""
    def mae(values: list[float]) -> float:
        return float(np.mean(values)) if values else float("nan")

    tw = {n: abs(pred["twist"][n][90.0] - s[90.0]) for n, s in ref["twist"].items() if 90.0 in s}
    scan = {n: np.mean([abs(pred["twist"][n][t] - v) for t, v in s.items() if t > 0]) for n, s in ref["twist"].items()}
    cp = {n: abs(pred["coupling"][n] - v) for n, v in ref["coupling"].items()}
    seen = lambda n: n <= max_train_length  # noqa: E731
    out = {"twist_seen": mae([v for n, v in tw.items() if seen(n)]),
           "twist_unseen": mae([v for n, v in tw.items() if not seen(n)]),
           "twist_long": mae([v for n, v in tw.items() if n >= LONG and not seen(n)]),
           "scan_unseen": mae([v for n, v in scan.items() if not seen(n)]),
           "twist_max": max([abs(pred["twist"][n][90.0]) for n in tw], default=float("nan")),
           "coupling_seen": mae([v for n, v in cp.items() if seen(n)]),
           "coupling_unseen": mae([v for n, v in cp.items() if not seen(n)])}
    for name in ("test_seen", "test_unseen"):
        r = pred.get(name, {})
        out[f"E_{name}"] = r.get("energy_mae", float("nan"))
        out[f"F_{name}"] = r.get("forces_mae", float("nan"))
    return out


SCORE_COLUMNS = [("twist_seen", "twist seen"), ("twist_unseen", "twist unseen"),
                 ("twist_long", f"twist unseen ≥{LONG} C"), ("scan_unseen", "scan unseen"),
                 ("twist_max", "max abs pred. twist"), ("coupling_seen", "coupling seen"),
                 ("coupling_unseen", "coupling unseen")]
SAMPLE_COLUMNS = [("E_test_seen", "E seen"), ("E_test_unseen", "E unseen"), ("F_test_seen", "F seen"),
                  ("F_test_unseen", "F unseen")]


def summary_rows(per_seed: dict[str, list[dict]], ref: dict, max_train_length: int,
                 columns=SCORE_COLUMNS) -> list[list]:
    """One row per model, mean ± std over seeds of ``columns`` (score key, title); with the non-locality
    columns a first row scores predicting zero (what a model blind to the other end gets at best)."""
    rows = []
    if columns is SCORE_COLUMNS:
        zero = scores({"twist": {n: {t: 0.0 for t in s} for n, s in ref["twist"].items()},
                       "coupling": {n: 0.0 for n in ref["coupling"]}}, ref, max_train_length)
        rows.append(["predict zero", *[fmt(zero[k], 1) for k, _ in columns]])
    for name, runs in per_seed.items():
        s = [scores(r, ref, max_train_length) for r in runs]
        rows.append([name, *[_max_text([x[k] for x in s]) if k == "twist_max"
                             else pm([x[k] for x in s], 2 if k.startswith("E_") else 1) for k, _ in columns]])
    return rows


def _max_text(values) -> str:
    """The largest of ``values`` (meV) in scientific notation: a model blind to the twist predicts ~1e-13."""
    v = [x for x in values if x == x]
    return f"{max(v):.1e}" if v else "-"


def length_rows(per_seed: dict[str, list[dict]], ref: dict, max_train_length: int) -> list[list]:
    """One row per cumulene length: seen?, teacher twist energy, each model's (mean ± std over seeds)."""
    rows = []
    for n, s in ref["twist"].items():
        if 90.0 not in s:
            continue
        rows.append([n, "seen" if n <= max_train_length else "unseen", fmt(s[90.0], 0),
                     *[pm([r["twist"][n][90.0] for r in runs], 0) for runs in per_seed.values()]])
    return rows


def coupling_rows(per_seed: dict[str, list[dict]], ref: dict, max_train_length: int) -> list[list]:
    return [[n, "seen" if n <= max_train_length else "unseen", fmt(v, 1),
             *[pm([r["coupling"][n] for r in runs], 1) for runs in per_seed.values()]]
            for n, v in ref["coupling"].items()]


# ---------------------------------------------------------------------------------------------- plots
STYLE = {"PaiNN": ("C0", "--^"), "MuSE(PaiNN)": ("C1", "-s"), "PaiNN+LES": ("C2", "-.d"),
         "PaiNN+physical": ("C3", ":v"), "SO3krates": ("C5", "--<"), "MuSE(SO3krates)": ("C6", "-X"),
         "MACE": ("C8", "--v"), "MuSE(MACE)": ("C9", "-P"), "MACE-l2": ("C7", "--d"), "MuSE(MACE-l2)": ("C4", "-D"),
         "MuSE-nol2(MACE-l2)": ("C4", ":x")}


def _style(name: str) -> tuple[str, str]:
    return STYLE.get(name, ("C4", "-o"))


def plot(per_seed: dict[str, list[dict]], ref: dict, max_train_length: int, path: Path) -> Path:
    """Twist energy E(90°) - E(0°) and the polyene coupling against the number of carbons: teacher and models
    (mean over seeds, bars: std); the trained lengths are shaded."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 3.9))
    panels = ((axes[0], {n: s[90.0] for n, s in ref["twist"].items() if 90.0 in s},
               lambda r, n: r["twist"][n][90.0], "cumulene twist energy E(90°) - E(0°) (meV)"),
              (axes[1], ref["coupling"], lambda r, n: r["coupling"][n],
               "polyene end-to-end coupling (meV)"))
    for ax, teacher, get, label in panels:
        if not teacher:
            ax.axis("off")
            continue
        n = np.array(sorted(teacher))
        ax.axvspan(min(n.min(), 4) - 0.5, max_train_length + 0.5, color="0.92", zorder=0)
        ax.axhline(0.0, color="grey", lw=0.6)
        ax.plot(n, [teacher[k] for k in n], "-o", color="black", ms=4, label="teacher (GFN2-xTB)")
        for name, runs in per_seed.items():
            color, style = _style(name)
            stats = np.array([mean_std([get(r, k) for r in runs]) for k in n])
            ax.errorbar(n, stats[:, 0], yerr=stats[:, 1], fmt=style, color=color, ms=3, lw=1, capsize=2,
                        label=name)
        ax.set_xlabel("carbons (shaded: trained lengths)")
        ax.set_ylabel(label)
    axes[0].legend(fontsize=7)
    return save_figure(fig, path)


def plot_parity(per_seed: dict[str, list[dict]], ref: dict, max_train_length: int, path: Path) -> Path:
    """Predicted against teacher twist energies, every seed and length (open: unseen lengths)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.4, 4.2))
    teacher = {n: s[90.0] for n, s in ref["twist"].items() if 90.0 in s}
    lim = 1.1 * max(abs(v) for v in teacher.values()) if teacher else 1.0
    ax.plot([-lim, lim], [-lim, lim], color="grey", lw=0.6)
    for name, runs in per_seed.items():
        color, style = _style(name)
        for seen in (True, False):
            ns = [n for n in teacher if (n <= max_train_length) == seen]
            x = [teacher[n] for r in runs for n in ns]
            y = [r["twist"][n][90.0] for r in runs for n in ns]
            ax.plot(x, y, style[-1], color=color, ms=4, mfc=color if seen else "none", ls="none",
                    label=name if seen else None)
    ax.set_xlabel("teacher E(90°) - E(0°) (meV)")
    ax.set_ylabel("predicted (meV)")
    ax.set_title("cumulene twist energy (open: unseen lengths)", fontsize=9)
    ax.legend(fontsize=7)
    return save_figure(fig, path)


# ---------------------------------------------------------------------------------------------- run
def backbones(mode: str) -> dict[str, dict]:
    """The SO3krates, MACE and MACE-l2 ``model.backbone`` sections of ``mode``: tiny in quick mode (``muse bench
    backbones --quick``'s), else about PaiNN's size (:data:`~muse_ff.contestants.SMALL_BACKBONES`, default; the
    libraries' defaults with ``--full``) with :data:`LAYERS` message-passing layers. MACE-l2 is MACE with l = 2
    hidden features (``max_L: 2``), which MuSE pools into its coarse nodes."""
    from muse_ff.bench.backbones import SIZES

    sizes = SMALL_BACKBONES if mode == "default" else SIZES[mode]
    out = {label: dict(sizes[label]) for label in ("SO3krates", "MACE")}
    if mode != "quick":
        out["SO3krates"]["layers"] = LAYERS
        out["MACE"]["num_interactions"] = LAYERS
    # MACE with l = 2 hidden features (max_L 2; spherical harmonics up to l = 2): the only contestant whose
    # hierarchy pools and passes on l = 2 features, which is what the cumulene twist needs (docs/NONLOCAL.md)
    out["MACE-l2"] = {**out["MACE"], "max_L": 2, "max_ell": max(2, int(out["MACE"].get("max_ell", 3)))}
    return out


def contestants(budget: Budget, mode: str = "default") -> dict[str, dict]:
    """{name: ``model:`` section}: the registry's ``nonlocal`` suite on ``budget``'s PaiNN, then SO3krates, MACE
    and MACE-l2 (:func:`backbones`) plain and as MuSE(backbone) with :data:`LEVELS`, and MuSE-nol2(MACE-l2): the
    same levels with their l = 2 pooling off (the ablation of MuSE(MACE-l2))."""
    out = registry_contestants("nonlocal", painn(budget), budget.dtype, species=list(SPECIES))
    for label, backbone in backbones(mode).items():
        for name, levels in ((label, []), (f"MuSE({label})", LEVELS)):
            out[name] = {**model_section({"levels": levels}, backbone, budget.dtype), "species": list(SPECIES)}
    # the ablation: the same hierarchy over MACE-l2 with the l = 2 pooling off (levels[k].tensors: false)
    out[f"MuSE-{NO_L2}(MACE-l2)"] = {**model_section({"levels": [dict(lev, tensors=False) for lev in LEVELS]},
                                                     backbones(mode)["MACE-l2"], budget.dtype),
                                     "species": list(SPECIES)}
    return out


def seed_counts(names: list[str], mode: str, seeds: int | None = None, chosen: bool = False) -> dict[str, int]:
    """{name: seeds}: ``seeds`` (default :data:`SEEDS`) for the PaiNN contestants, at most :data:`EXTRA_SEEDS`
    for the other backbones, unless the contestants were ``chosen`` by name (``--contestants``) and ``seeds``
    given (``--seeds``): then each of them gets ``seeds``."""
    n = SEEDS[mode] if seeds is None else int(seeds)
    if n < 1:
        raise ValueError(f"seeds must be >= 1, got {n}")
    if chosen and seeds is not None:
        return {name: n for name in names}
    return {name: n if name in CONTESTANTS else min(n, EXTRA_SEEDS[mode]) for name in names}


#: (score key, title) of the verdict table: transfer to unseen lengths, and the sample errors there
VERDICT_COLUMNS = [("twist_unseen", "twist unseen"), ("coupling_unseen", "coupling unseen"),
                   ("E_test_unseen", "E unseen"), ("F_test_unseen", "F unseen")]


def verdict_rows(per_seed: dict[str, list[dict]], ref: dict, max_train_length: int) -> list[list]:
    """One row per contestant with a plain reference: difference of means ± combined spread and the verdict."""
    rows = []
    sc = {name: [scores(r, ref, max_train_length) for r in runs] for name, runs in per_seed.items()}
    for name in per_seed:
        base = reference_of(name, per_seed)
        if base is None:
            continue
        cells = []
        for key, _ in VERDICT_COLUMNS:
            v = verdict([x[key] for x in sc[name]], [x[key] for x in sc[base]])
            digits = 2 if key.startswith("E_") else 1
            cells.append(f"{v.difference:+.{digits}f} ± {v.spread:.{digits}f}: {v.word}" if v.spread == v.spread
                         else f"{v.difference:+.{digits}f}: {v.word}")
        rows.append([name, base, f"{len(sc[name])} / {len(sc[base])}", *cells])
    return rows


def run(out: Path, mode: str = "default", data_dir: Path = Path("data"), progress: bool = False,
        retrain: bool = False, console: Console | None = None, seeds: int | None = None,
        contestants_filter: str | list[str] | None = None) -> dict:
    """Train every contestant on the short chains with each seed, evaluate twist scans, couplings and samples;
    write the report after every training (the last one is complete).

    ``seeds``: seeds of the PaiNN contestants (default :data:`SEEDS`; SO3krates and MACE get at most
    :data:`EXTRA_SEEDS`, or ``seeds`` too when named in ``contestants_filter``); ``contestants_filter``: names
    (comma-separated or a list) to train, default all."""
    from muse_ff.io.serialization import load_model

    console = console or Console()
    started = time.perf_counter()
    out = Path(out)
    budget = BUDGETS[mode]
    max_len = MAX_TRAIN_LENGTH[mode]
    names = select(contestants_filter, list(contestants(budget, mode)))
    counts = seed_counts(names, mode, seeds, chosen=bool(contestants_filter))
    path = dataset(out, mode, data_dir, console)
    frames = load(path, max_len)
    ref = observables(frames)
    lengths = sorted({int(a.info["n_carbons"]) for a in frames["scan"] + frames["quartet"]})
    total = sum(counts.values())

    def write(per_seed: dict, trained: dict, final: bool) -> dict:
        report = Report("nonlocal", mode, started=started)
        status = "" if final else f" [partial: {sum(len(v) for v in trained.values())} of {total} trainings]"
        seeds_text = ", ".join(f"{n} {k}" for n, k in counts.items())
        report.add_table(f"training{status} ({len(frames['train'])} frames of chains with ≤{max_len} carbons, "
                         f"{budget.epochs} epochs; valid samples): E meV/atom, F meV/Å, mean ± std over seeds",
                         ["model", "params", "seeds", "train s", "val E MAE", "val F MAE"], training_rows(trained))
        report.add_table(f"non-locality{status}, mean ± std over seeds ({seeds_text}): trained on ≤{max_len} "
                         f"carbons, unseen = {max_len + 1}-{max(lengths)}; twist = cumulene E(90°)-E(0°), scan = all "
                         "angles, coupling = polyene E(D..A)-E(D..H)-E(H..A)+E(H..H); MAE in meV",
                         ["model", *[c for _, c in SCORE_COLUMNS]], summary_rows(per_seed, ref, max_len))
        report.add_table(f"sample frames{status}, mean ± std over seeds: seen = test split at ≤{max_len} carbons "
                         f"({len(frames['test_seen'])} frames), unseen = every sample at longer chains "
                         f"({len(frames['test_unseen'])}); E MAE meV/atom, F MAE meV/Å",
                         ["model", *[c for _, c in SAMPLE_COLUMNS]],
                         summary_rows(per_seed, ref, max_len, SAMPLE_COLUMNS))
        report.add_table(f"verdicts against the plain backbone{status} (difference of means ± combined spread, "
                         f"negative = lower error; meV, E meV/atom, F meV/Å). {VERDICT_RULE}",
                         ["contestant", "against", "seeds", *[c for _, c in VERDICT_COLUMNS]],
                         verdict_rows(per_seed, ref, max_len))
        report.add_table("cumulene twist energy E(90°) - E(0°) by length (meV)",
                         ["carbons", "trained", "teacher", *per_seed], length_rows(per_seed, ref, max_len))
        if ref["coupling"]:
            report.add_table("polyene end-to-end coupling by length (meV)",
                             ["carbons", "trained", "teacher", *per_seed], coupling_rows(per_seed, ref, max_len))
        report.add_table(f"learning curves (validation loss per epoch, logs/metrics.csv){status}", CURVE_COLUMNS,
                         curve_rows(trained))
        report.plots.append(str(plot(per_seed, ref, max_len, out / "nonlocal_chains.png")))
        report.plots.append(str(plot_parity(per_seed, ref, max_len, out / "nonlocal_parity.png")))
        curves = {name: [learning_curve(t.path.parent) for t in runs] for name, runs in trained.items()}
        report.plots.append(str(plot_learning_curves(curves, out / "nonlocal_learning_curves.png",
                                                     title="nonlocal chains: validation loss")))
        report.results = {"teacher": ref, "models": per_seed,
                          "scores": {n: [scores(r, ref, max_len) for r in runs] for n, runs in per_seed.items()},
                          "training": {n: [t.summary for t in runs] for n, runs in trained.items()},
                          "learning_curves": curves, "budget": budget, "seeds": counts, "complete": final,
                          "max_train_length": max_len, "dataset": str(path),
                          "frames": {k: len(v) for k, v in frames.items()},
                          "configs": {n: dict(c, folder=str(out / "seed0" / slug(n)))
                                      for n, c in contestants(budget, mode).items() if n in names}}
        return report.write(out, console if final else Console(quiet=True))

    def evaluate(seed: int, t) -> dict:
        console.print(f"seed {seed}: evaluating {t.name}")
        return evaluate_model(load_model(t.path), frames)

    def sections(b: Budget) -> dict[str, dict]:
        return {n: c for n, c in contestants(b, mode).items() if n in names}

    return train_and_evaluate(frames["train"], frames["valid"], out, budget, sections, counts, names, evaluate, write,
                              progress, retrain, console)

