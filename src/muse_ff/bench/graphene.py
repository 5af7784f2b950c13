"""``muse bench graphene``: binding curves and lateral scans of molecules over graphene (GFN1-xTB teacher),
trained on some molecules and tested on others.

**Held-out molecules.** The dataset has benzene, naphthalene, pyridine and pyrrole. :data:`HELD_OUT` (one
aromatic, naphthalene, and one heteroaromatic, pyrrole) are never trained on: every contestant trains on the
``role=sample`` frames of the other molecules (benzene, pyridine: train split; valid split for validation).
Everything is reported for the seen and the unseen molecules apart: the rigid ``role=curve`` frames (heights
2.8-12 Å) over the flake and the periodic sheet, the benzene ``role=scan`` frames (seen), and the force and
energy errors of the ``sample`` frames (seen: test split; unseen: every sample of the held-out molecules).
Transfer to the unseen molecules is the verdict that counts. Pyridine stays in training so nitrogen is seen.

The binding energy is ``E(complex) - E(substrate) - E(molecule)`` with each model evaluating the rigid
fragments itself, as the teacher's ``binding_energy`` does (the same fragments:
:func:`muse_ff.analysis.quantities.substrate_and_molecule`). Long-range tails are judged on the flake only: the
periodic-sheet GFN1-xTB tail turns repulsive beyond ~8 Å, a teacher artefact (docs/DATASETS.md); periodic
curves are reported below 8 Å.

**Contestants and seeds.** PaiNN, MuSE(PaiNN), PaiNN+LES, PaiNN+phys+Eint, MuSE(PaiNN)+phys+Eint (the
registry's ``graphene`` suite, PaiNN of the budget's size; the last two carry the physical long-range terms,
charges conserved per molecule with Coulomb and BJ-damped C6 dispersion, and also train on the binding energy
of every training sample, ``data.interaction_key: binding_energy``) and PaiNN+Eint (the ablation: PaiNN
trained on the same binding energies without the physical terms) train with :data:`SEEDS` seeds each
(``--seeds``); SO3krates, MuSE(SO3krates), MACE and
MuSE(MACE) (:func:`backbones`, at about PaiNN's size in the default mode) with :data:`EXTRA_SEEDS`
(at most ``--seeds``). A seed draws the initial weights and the order of the training frames
(:func:`muse_ff.bench.common.train_seeds`). Tables give mean ± std over seeds; the verdicts compare each
contestant with its plain backbone (MuSE(X) and X+LES with X; MuSE(X)+phys+Eint with MuSE(X), then with X)
and say better/worse only where the difference of the means exceeds the combined spread
(:func:`muse_ff.bench.common.verdict`). The trainings run fully seeded contestants first, and the report
(tables, plots, ``results.json``) is rewritten after each one, so a run cut short keeps what finished.
``--contestants`` picks a subset.

**Cost of the default mode** (measured in session 9 on the 2-core machine, one thread per training, load 2-4):
training per seed PaiNN 270 ± 21 s, MuSE(PaiNN) 355 ± 53, PaiNN+Eint 255 ± 24, PaiNN+phys+Eint 899 ± 208,
MuSE(PaiNN)+phys+Eint 1011 ± 309 (fragments of the binding loss and Ewald sums over the periodic frames); about
20 s of evaluation per model. With 3 seeds for the PaiNN family and the MACE and SO3krates pairs, a default run
takes about 3 hours on one core; ``--contestants`` and several processes sharing ``--output-dir`` (each
training is reused by the next run) split it, as docs/BENCHMARKS.md shows.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from ase import Atoms
from rich.console import Console

from muse_ff.analysis.quantities import binding_energies
from muse_ff.bench.common import (
    CURVE_COLUMNS,
    VERDICT_RULE,
    Budget,
    Report,
    comparisons,
    contestant_config,
    curve_rows,
    fmt,
    learning_curve,
    plot_learning_curves,
    pm,
    pyplot,
    reference_of,
    save_figure,
    train_and_evaluate,
    training_rows,
    verdict,
)
from muse_ff.contestants import SMALL_BACKBONES, SUITES, TRAINING, backbone_pairs, select

DATA = "molecule-graphene/molecule-graphene.extxyz.xz"  # in the data folder
CUTOFF = 5.0  # Å, the backbone cutoff: curve errors are split inside / beyond it
#: periodic curves beyond this height carry the teacher's repulsive-tail artefact
PERIODIC_MAX_HEIGHT = 8.0
BUDGETS = {
    "quick": Budget(features=8, layers=1, num_basis=6, epochs=2, batch_size=4, max_train=12, max_valid=4,
                    energy_weight=1000.0),
    "default": Budget(features=32, layers=2, num_basis=12, epochs=40, batch_size=4, energy_weight=1000.0),
    "full": Budget(features=64, layers=3, num_basis=16, epochs=300, batch_size=4, energy_weight=1000.0),
}


#: never trained on: one aromatic and one heteroaromatic molecule (those the dataset has are held out)
HELD_OUT = ("naphthalene", "pyrrole")
#: training seeds of PaiNN, MuSE(PaiNN) and PaiNN+LES per mode (``--seeds`` overrides)
SEEDS = {"quick": 1, "default": 3, "full": 5}
#: training seeds of the MACE and SO3krates pairs per mode (at most ``--seeds``)
EXTRA_SEEDS = {"quick": 1, "default": 1, "full": 3}


def backbones(mode: str) -> dict[str, dict]:
    """The MACE and SO3krates ``model.backbone`` sections of ``mode``: tiny in quick mode (those of
    ``muse bench backbones --quick``), about PaiNN's size by default (:data:`~muse_ff.contestants.SMALL_BACKBONES`),
    each library's defaults with ``--full`` (those of ``muse bench backbones``)."""
    from muse_ff.bench.backbones import SIZES

    sizes = SMALL_BACKBONES if mode == "default" else SIZES[mode]
    return {label: dict(sizes[label]) for label in ("SO3krates", "MACE")}  # the cheaper first


def contestants(budget: Budget, mode: str) -> dict[str, dict]:
    """{name: ``model:`` section}: the ``graphene`` suite of :mod:`muse_ff.contestants` on the budget's PaiNN
    (:data:`muse_ff.contestants.BENCH` and the physical terms, trained also on binding energies), then MACE and
    SO3krates plain and as MuSE(backbone) (:func:`muse_ff.contestants.backbone_pairs`)."""
    out = {name: contestant_config(budget, spec) for name, spec in SUITES["graphene"].items()}
    out.update(backbone_pairs(backbones(mode), budget.dtype))
    return out


def seed_counts(names: list[str], mode: str, seeds: int | None = None) -> dict[str, int]:
    """{name: seeds}: ``seeds`` (default :data:`SEEDS`) for the PaiNN contestants, at most :data:`EXTRA_SEEDS`
    for the others."""
    n = SEEDS[mode] if seeds is None else int(seeds)
    if n < 1:
        raise ValueError(f"seeds must be >= 1, got {n}")
    primary = set(SUITES["graphene"])
    return {name: n if name in primary else min(n, EXTRA_SEEDS[mode]) for name in names}


def load(path: Path, quick: bool, held_out: tuple[str, ...] = HELD_OUT) -> dict[str, list[Atoms]]:
    """Frames by use: ``train``/``valid`` (samples of the seen molecules), ``test_seen`` (their test-split
    samples), ``test_unseen`` (every sample of the held-out molecules), ``curve`` and ``scan`` (rigid, every
    molecule). The molecules of ``held_out`` that the dataset has are the unseen ones
    (:func:`unseen_molecules`); no frame of theirs is in ``train`` or ``valid``. Training samples over the
    periodic sheet higher than :data:`PERIODIC_MAX_HEIGHT` lose their ``binding_energy`` (the teacher's
    repulsive periodic tail is an artefact; their energies and forces stay). Quick mode: benzene and the
    first held-out molecule over the flake."""
    from muse_ff.teachers.labelling import read_frames

    frames = read_frames(path)
    present = list(dict.fromkeys(a.info["molecule"] for a in frames))
    unseen = [m for m in held_out if m in present]
    if len(unseen) == len(present):
        raise ValueError(f"holding out {unseen} leaves no molecule to train on")
    if quick:
        keep = {"benzene", *unseen[:1]}
        frames = [a for a in frames if a.info["molecule"] in keep and a.info["substrate"] == "flake"]
    samples = [a for a in frames if a.info["role"] == "sample"]
    seen = lambda a: a.info["molecule"] not in unseen  # noqa: E731
    out = {s: [a for a in samples if seen(a) and a.info["split"] == s] for s in ("train", "valid")}
    out["test_seen"] = [a for a in samples if seen(a) and a.info["split"] == "test"]
    out["test_unseen"] = [a for a in samples if not seen(a)]
    out["curve"] = [a for a in frames if a.info["role"] == "curve"]
    out["scan"] = [a for a in frames if a.info["role"] == "scan"]
    if quick:
        out["test_seen"], out["test_unseen"] = out["test_seen"][:2], out["test_unseen"][:2]
    for a in frames:
        a.info["seen"] = seen(a)
    for a in out["train"] + out["valid"]:  # the teacher's periodic tail is an artefact: not a training target
        if a.info["substrate"] == "periodic" and a.info.get("height", 0.0) > PERIODIC_MAX_HEIGHT:
            a.info.pop("binding_energy", None)
    return out


def unseen_molecules(frames: dict[str, list[Atoms]]) -> list[str]:
    """The held-out molecules of :func:`load`'s frames (those of ``test_unseen`` and of unseen curves)."""
    return list(dict.fromkeys(a.info["molecule"] for k in ("test_unseen", "curve", "scan") for a in frames[k]
                              if not a.info.get("seen", True)))


def seen_molecules(frames: dict[str, list[Atoms]]) -> list[str]:
    """The trained molecules of :func:`load`'s frames."""
    return list(dict.fromkeys(a.info["molecule"] for a in frames["train"]))


def _minimum(h: np.ndarray, e: np.ndarray) -> tuple[float, float]:
    """Height and energy of the curve minimum: parabola through the lowest grid point and its neighbours."""
    k = int(np.argmin(e))
    if 0 < k < len(h) - 1:
        a, b, c = np.polyfit(h[k - 1:k + 2], e[k - 1:k + 2], 2)
        if a > 0:
            hm = -b / (2 * a)
            return float(hm), float(np.polyval([a, b, c], hm))
    return float(h[k]), float(e[k])


#: Å: the tail (sign and power law) is judged from here to the end of each curve (issue #15's targets)
TAIL_FROM = 6.0
#: meV: a tail value smaller than this counts as no sign at all (a 5 Å model's exact zero is wrong-signed)
SIGN_FLOOR = 0.1


def tail_power(h: np.ndarray, e: np.ndarray) -> float:
    """p of the least-squares fit |e| = A h^-p over the heights given; NaN unless every e has one sign and
    is at least :data:`SIGN_FLOOR` meV."""
    if len(h) < 2 or not (np.all(e <= -SIGN_FLOOR) or np.all(e >= SIGN_FLOOR)):
        return float("nan")
    return float(-np.polyfit(np.log(h), np.log(np.abs(e)), 1)[0])


def curve_metrics(h: np.ndarray, pred: np.ndarray, ref: np.ndarray, max_height: float = np.inf) -> dict:
    """Minimum height (Å), depth (meV) of model and teacher, curve MAE (meV) over all heights up to
    ``max_height`` and inside / beyond the cutoff; the tail from :data:`TAIL_FROM` on: the fraction of heights
    where the model's sign is not the teacher's (or its value is below :data:`SIGN_FLOOR`), and both fitted
    power laws (:func:`tail_power`)."""
    keep = h <= max_height
    h, pred, ref = h[keep], pred[keep] * 1000, ref[keep] * 1000
    err = np.abs(pred - ref)
    (hp, ep), (hr, er) = _minimum(h, pred), _minimum(h, ref)
    tail = h >= TAIL_FROM
    wrong = (np.sign(pred[tail]) != np.sign(ref[tail])) | (np.abs(pred[tail]) < SIGN_FLOOR)
    return {"h_min": hp, "h_min_ref": hr, "depth": ep, "depth_ref": er, "mae": float(err.mean()),
            "mae_inside": float(err[h < CUTOFF].mean()), "mae_beyond": float(err[h >= CUTOFF].mean()),
            "e_far": float(pred[-1]), "e_far_ref": float(ref[-1]), "h_far": float(h[-1]),
            "tail_wrong_sign": float(wrong.mean()) if tail.any() else float("nan"),
            "tail_power": tail_power(h[tail], pred[tail]), "tail_power_ref": tail_power(h[tail], ref[tail])}


def group(frames: list[Atoms]) -> dict[tuple[str, str], list[int]]:
    """Frame indices by (molecule, substrate), ordered by height or shift."""
    out: dict[tuple[str, str], list[int]] = {}
    for k, a in enumerate(frames):
        out.setdefault((a.info["molecule"], a.info["substrate"]), []).append(k)
    key = lambda k: (frames[k].info.get("height", 0.0), np.linalg.norm(frames[k].info.get("shift", 0.0)))  # noqa: E731
    return {g: sorted(idx, key=key) for g, idx in out.items()}


def evaluate_model(model, frames: dict[str, list[Atoms]]) -> dict:
    """Curves, scans and sample errors of one model (binding energies in meV, E meV/atom, F meV/Å)."""
    from muse_ff.analysis.metrics import evaluate_frames

    out: dict = {"curves": {}, "scans": {}}
    for role in ("curve", "scan"):
        fr = frames[role]
        if not fr:
            continue
        pred, ref = binding_energies(model, fr), np.array([a.info["binding_energy"] for a in fr])
        for (mol, sub), idx in group(fr).items():
            x = np.array([fr[k].info["height" if role == "curve" else "shift"] for k in idx], dtype=float)
            entry = {"x": x, "pred": pred[idx] * 1000, "ref": ref[idx] * 1000, "seen": bool(fr[idx[0]].info["seen"])}
            if role == "curve":
                entry["metrics"] = curve_metrics(x, pred[idx], ref[idx],
                                                 PERIODIC_MAX_HEIGHT if sub == "periodic" else np.inf)
            out["curves" if role == "curve" else "scans"][f"{mol}/{sub}"] = entry
    for name in ("test_seen", "test_unseen"):
        if frames.get(name):
            m = evaluate_frames(model, frames[name], batch_size=4).metrics()
            out[name] = {"energy_mae": m["energy_mae"], "forces_mae": m["forces_mae"], "frames": m["frames"]}
    return out


#: the scalar scores of one training (:func:`scores`), per group of molecules: key, column title, digits
SCORES = [("curve_inside", "curve MAE <5 Å", 1), ("curve_beyond", "curve MAE ≥5 Å", 1),
          ("depth", "depth error", 1), ("h_min", "h_min error (Å)", 2),
          ("tail_wrong_sign", "wrong-sign fraction ≥6 Å", 2), ("periodic", "periodic curve MAE ≤8 Å", 1),
          ("E_samples", "E MAE samples (meV/atom)", 2), ("F_samples", "F MAE samples", 1)]
#: the benzene lateral scans (seen molecule only)
SCAN_SCORES = [("scan", "scan MAE", 1), ("corrugation", "corrugation error", 1)]
#: the scores the summary tables' verdict column judges (the binding curves over the flake)
HEADLINE = ("curve_inside", "curve_beyond")


def scores(result: dict) -> dict[str, float]:
    """Scalar scores of one evaluated model (:func:`evaluate_model`), ``seen_<key>`` and ``unseen_<key>`` for
    each key of :data:`SCORES` (flake curves: mean over the group's molecules; NaN where a group is empty),
    plus the benzene scans (:data:`SCAN_SCORES`)."""
    def mean(values) -> float:
        values = [v for v in values if v == v]
        return float(np.mean(values)) if values else float("nan")

    out: dict[str, float] = {}
    for group_name, seen in (("seen", True), ("unseen", False)):
        curves = {k: c for k, c in result["curves"].items() if c["seen"] == seen}
        flake = [c["metrics"] for k, c in curves.items() if k.endswith("/flake")]
        periodic = [c["metrics"] for k, c in curves.items() if k.endswith("/periodic")]
        samples = result.get(f"test_{group_name}", {})
        values = {"curve_inside": mean([m["mae_inside"] for m in flake]),
                  "curve_beyond": mean([m["mae_beyond"] for m in flake]),
                  "depth": mean([abs(m["depth"] - m["depth_ref"]) for m in flake]),
                  "h_min": mean([abs(m["h_min"] - m["h_min_ref"]) for m in flake]),
                  "tail_wrong_sign": mean([m.get("tail_wrong_sign", float("nan")) for m in flake]),
                  "periodic": mean([m["mae"] for m in periodic]),
                  "E_samples": float(samples.get("energy_mae", float("nan"))),
                  "F_samples": float(samples.get("forces_mae", float("nan")))}
        out.update({f"{group_name}_{k}": v for k, v in values.items()})
    scans = list(result["scans"].values())
    out["scan"] = mean([float(np.abs(np.asarray(c["pred"]) - np.asarray(c["ref"])).mean()) for c in scans])
    out["corrugation"] = mean([abs(float(np.ptp(c["pred"]) - np.ptp(c["ref"]))) for c in scans])
    return out


def _verdict_text(v) -> str:
    if v.word == "n/a":
        return "n/a"
    return f"{v.word} ({v.difference:+.1f} ± {v.spread:.1f})"


def summary_rows(per_seed: dict[str, list[dict]], group_name: str, with_scans: bool = False) -> list[list]:
    """One row per contestant: seeds, mean ± std over seeds of each score of ``group_name`` (seen/unseen),
    and the verdict against its plain backbone on the :data:`HEADLINE` scores."""
    s = {name: [scores(r) for r in runs] for name, runs in per_seed.items()}
    rows = []
    keys = [(f"{group_name}_{k}", d) for k, _, d in SCORES]
    keys += [(k, d) for k, _, d in SCAN_SCORES] if with_scans else []
    for name, runs in s.items():
        ref = reference_of(name, s)
        judged = "-" if ref is None else f"vs {ref}: " + " / ".join(
            verdict([x[f"{group_name}_{k}"] for x in runs], [x[f"{group_name}_{k}"] for x in s[ref]]).word
            for k in HEADLINE)
        rows.append([name, len(runs), *[pm([x[k] for x in runs], d) for k, d in keys], judged])
    return rows


def summary_columns(with_scans: bool = False) -> list[str]:
    return ["model", "seeds", *[c for _, c, _ in SCORES], *([c for _, c, _ in SCAN_SCORES] if with_scans else []),
            "verdict (curve MAE <5 Å / ≥5 Å)"]


def verdict_rows(per_seed: dict[str, list[dict]]) -> list[list]:
    """One row per (contestant, its plain backbone) and group: the verdict on every score, with the
    difference of the means and the combined spread (meV; Å for h_min)."""
    s = {name: [scores(r) for r in runs] for name, runs in per_seed.items()}
    rows = []
    for group_name in ("unseen", "seen"):
        for name, runs in s.items():
            # MuSE(PaiNN)+phys+Eint: against PaiNN+phys+Eint, MuSE(PaiNN), then PaiNN (bench.common.comparisons)
            for ref in comparisons(name, s):
                rows.append([f"{name} vs {ref}", group_name, f"{len(runs)} / {len(s[ref])}",
                             *[_verdict_text(verdict([x[f"{group_name}_{k}"] for x in runs],
                                                     [x[f"{group_name}_{k}"] for x in s[ref]]))
                               for k, _, _ in SCORES]])
    return rows


def per_curve_rows(per_seed: dict[str, list[dict]]) -> list[list]:
    """Per curve (molecule/substrate): the teacher, then each contestant's mean ± std over seeds."""
    rows = []
    first = next(iter(per_seed.values()))[0]
    for key, c in first["curves"].items():
        m = c["metrics"]
        tag = "seen" if c["seen"] else "unseen"
        rows.append(["teacher", key, tag, fmt(m["h_min_ref"], 2), fmt(m["depth_ref"], 0), "-", "-",
                     f"{m['e_far_ref']:.1f} @ {m['h_far']:g} Å", "-", fmt(m.get("tail_power_ref"), 2)])
        for name, runs in per_seed.items():
            ms = [r["curves"][key]["metrics"] for r in runs]
            powers = [x.get("tail_power", float("nan")) for x in ms]
            rows.append([name, key, tag, pm([x["h_min"] for x in ms], 2), pm([x["depth"] for x in ms], 0),
                         pm([x["mae_inside"] for x in ms], 1), pm([x["mae_beyond"] for x in ms], 1),
                         f"{pm([x['e_far'] for x in ms], 1)} @ {m['h_far']:g} Å",
                         pm([x.get("tail_wrong_sign", float("nan")) for x in ms], 2),
                         f"{pm(powers, 2)} ({sum(p == p for p in powers)}/{len(powers)})"])
    return rows


STYLE = {"teacher": ("black", "-o"), "PaiNN": ("C0", "--^"), "MuSE(PaiNN)": ("C1", "-s"),
         "PaiNN+LES": ("C2", "-.d"), "MACE": ("C3", "--v"), "MuSE(MACE)": ("C4", "-P"),
         "SO3krates": ("C5", "--<"), "MuSE(SO3krates)": ("C6", "-X"), "PaiNN+phys+Eint": ("C8", "--o"),
         "MuSE(PaiNN)+phys+Eint": ("C9", "-*"), "PaiNN+Eint": ("C7", ":o"),
         "MuSE-intra(PaiNN)+phys+Eint": ("m", "-.*")}


def _style(name: str) -> tuple[str, str]:
    return STYLE.get(name, ("C7", "-d"))


def _mean_over_seeds(runs: list[dict], role: str, key: str) -> np.ndarray:
    return np.mean([np.asarray(r[role][key]["pred"]) for r in runs], axis=0)


def _plot_scans(ax, per_seed: dict[str, list[dict]]) -> None:
    first = next(iter(per_seed.values()))[0]
    for key, s in first["scans"].items():
        dotted = key.endswith("/periodic")
        ax.plot(s["x"], s["ref"], "o" + (":" if dotted else "-"), color="black", ms=3)
        for name, runs in per_seed.items():
            color, style = _style(name)
            ax.plot(s["x"], _mean_over_seeds(runs, "scans", key), style[-1] + (":" if dotted else "-"),
                    color=color, ms=3)
    ax.set_title("benzene lateral scans at 3.4 Å\n(solid: flake, dotted: periodic)", fontsize=9)
    ax.set_xlabel("shift (Å)")


def plot(per_seed: dict[str, list[dict]], path: Path) -> Path:
    """Binding curves over the flake, mean over seeds (top: full, bottom: the tail beyond the cutoff; titles
    say which molecules were never trained on) and the lateral scans."""
    plt = pyplot()
    first = next(iter(per_seed.values()))[0]
    flake = [k for k in first["curves"] if k.endswith("/flake")]
    ncol = len(flake) + bool(first["scans"])
    fig, axes = plt.subplots(2, ncol, figsize=(3.3 * ncol, 5.6), squeeze=False)
    for j, key in enumerate(flake):
        c = first["curves"][key]
        for row, ax in enumerate(axes[:, j]):
            ax.plot(c["x"], c["ref"], _style("teacher")[1], color="black", ms=3, label="teacher (GFN1-xTB)")
            for name, runs in per_seed.items():
                color, style = _style(name)
                ax.plot(c["x"], _mean_over_seeds(runs, "curves", key), style, color=color, ms=3, label=name)
            ax.axvline(CUTOFF, color="grey", lw=0.6, ls=":")
            if row == 1:
                ax.set_xlim(4.8, 12.3)
                tail = np.asarray(c["ref"])[np.asarray(c["x"]) >= 4.8]
                ax.set_ylim(1.6 * tail.min() - 5, 25)
                ax.set_xlabel("height (Å)")
        axes[0, j].set_title(key.replace("/", " over ") + ("" if c["seen"] else " (unseen)"))
        axes[0, j].set_ylabel("binding energy (meV)")
    axes[1, 0].set_ylabel("tail beyond 5 Å (meV)")
    if first["scans"]:
        _plot_scans(axes[0, -1], per_seed)
        axes[1, -1].axis("off")
    axes[0, 0].legend(fontsize=7)
    return save_figure(fig, path)


def run(out: Path, mode: str = "default", data_dir: Path = Path("data"), progress: bool = False,
        retrain: bool = False, console: Console | None = None, seeds: int | None = None,
        contestants_filter: str | list[str] | None = None) -> dict:
    """Train the contestants on the seen molecules with each seed, evaluate curves, scans and samples of the
    seen and the unseen molecules; write the report after every training (the last one is complete).

    ``seeds``: seeds of the PaiNN contestants (default :data:`SEEDS`; the others get at most
    :data:`EXTRA_SEEDS`); ``contestants_filter``: names (comma-separated or a list) to train, default all."""
    from muse_ff.io.serialization import load_model

    console = console or Console()
    started = time.perf_counter()
    out = Path(out)
    budget = BUDGETS[mode]
    frames = load(Path(data_dir) / DATA, quick=mode == "quick")
    unseen, seen = unseen_molecules(frames), seen_molecules(frames)
    names = select(contestants_filter, list(contestants(budget, mode)))
    counts = seed_counts(names, mode, seeds)
    total = sum(counts.values())

    def write(per_seed: dict, trained: dict, final: bool) -> dict:
        report = Report("graphene", mode, started=started)
        done = sum(len(v) for v in trained.values())
        status = "" if final else f" [partial: {done} of {total} trainings]"
        report.add_table(f"training{status}: {len(frames['train'])} samples of {', '.join(seen)} ({budget.epochs} "
                         f"epochs); validation samples: E meV/atom, F meV/Å, mean ± std over seeds",
                         ["model", "params", "seeds", "train s", "val E MAE", "val F MAE"], training_rows(trained))
        groups = (("unseen", f"UNSEEN molecules (never trained on: {', '.join(unseen)}; "
                   f"{len(frames['test_unseen'])} samples)", False),
                  ("seen", f"seen molecules ({', '.join(seen)}; {len(frames['test_seen'])} test samples)", True))
        for group_name, what, scans in groups:
            report.add_table(f"{what}{status}: flake binding curves, mean over molecules (meV), periodic curves up "
                             f"to {PERIODIC_MAX_HEIGHT:g} Å, sample errors; mean ± std over seeds. {VERDICT_RULE}",
                             summary_columns(scans), summary_rows(per_seed, group_name, scans))
        report.add_table(f"verdicts against the plain backbone{status} (difference of means ± combined spread; "
                         "negative = lower error)", ["contestant", "molecules", "seeds", *[c for _, c, _ in SCORES]],
                         verdict_rows(per_seed))
        report.add_table(f"binding curves (meV), mean ± std over seeds{status}; periodic curves only up to "
                         f"{PERIODIC_MAX_HEIGHT:g} Å (teacher artefact beyond)",
                         ["model", "curve", "molecule", "h_min (Å)", "depth", "MAE <5 Å", "MAE ≥5 Å", "E at far end",
                          "wrong sign ≥6 Å", "tail power ≥6 Å (seeds with one sign)"],
                         per_curve_rows(per_seed))
        report.add_table(f"learning curves (validation loss per epoch, logs/metrics.csv){status}", CURVE_COLUMNS,
                         curve_rows(trained))
        report.plots.append(str(plot(per_seed, out / "graphene_curves.png")))
        curves = {name: [learning_curve(t.path.parent) for t in runs] for name, runs in trained.items()}
        report.plots.append(str(plot_learning_curves(curves, out / "graphene_learning_curves.png",
                                                     title=f"graphene: validation loss ({', '.join(seen)})")))
        report.results = {"models": per_seed, "scores": {n: [scores(r) for r in runs] for n, runs in per_seed.items()},
                          "training": {n: [t.summary for t in runs] for n, runs in trained.items()},
                          "learning_curves": curves, "budget": budget, "seeds": counts, "complete": final,
                          "held_out": unseen, "trained_on": seen, "frames": {k: len(v) for k, v in frames.items()},
                          "configs": {n: c for n, c in contestants(budget, mode).items() if n in names}}
        return report.write(out, console if final else Console(quiet=True))

    def evaluate(seed: int, t) -> dict:
        console.print(f"seed {seed}: evaluating {t.name}")
        return evaluate_model(load_model(t.path), frames)

    def sections(b: Budget) -> dict[str, dict]:
        return {n: c for n, c in contestants(b, mode).items() if n in names}

    return train_and_evaluate(frames["train"], frames["valid"], out, budget, sections, counts, names, evaluate, write,
                              progress, retrain, console, training=TRAINING["graphene"])
