"""``muse bench hessian``: harmonic frequencies from autograd Hessians against GFN2-xTB finite differences,
on molecules trained on and on molecules never trained on.

**Held-out molecules.** The dataset has water, formaldehyde, methanol, acetonitrile, benzene, naphthalene,
Ace-(Ala)5-NMe and Ace-(Ala)10-NMe. :data:`HELD_OUT` (naphthalene and Ace-(Ala)10-NMe) are never trained on:
every contestant trains on the normal-mode samples of the other six (train split; valid split for validation).
Of each related pair the larger molecule is held out, so the unseen molecule is not a fragment of a trained
one: naphthalene has ring-fusion carbons without hydrogen that benzene lacks and two out-of-plane modes at
157/166 cm^-1 (benzene's lowest is 368); Ace-(Ala)10-NMe is a helix almost twice as long (largest interatomic
distance 19.2 Å against 12.9 Å), far beyond the 10 Å receptive field of a 2-layer 5 Å backbone, with 70 modes
below 300 cm^-1 (the pentapeptide has 37). The reverse choice (benzene, Ace-(Ala)5-NMe) would test pieces of
trained molecules. The unseen set thus holds most of the collective low-frequency modes the benchmark is
about, while amide and aromatic chemistry stay in training (with both peptides held out no amide would be
seen).

Each model relaxes every molecule (BFGS from the teacher's minimum), takes the autograd Hessian
(:meth:`muse_ff.MuSECalculator.get_hessian`) and its harmonic frequencies
(:func:`muse_ff.analysis.harmonic_analysis`, rigid motions projected out); the teacher's frequencies come
from its finite-difference Hessian through the same analysis. Frequencies are paired in ascending order.
Reported for the seen and the unseen molecules apart: MAE over all vibrational modes and over the teacher's
modes below 300 cm^-1 (the collective, low-frequency modes), the mean of the per-molecule MAEs, imaginary
modes, the RMSD of the relaxed geometry, and the energy and force errors on normal-mode samples (seen:
test-split samples; unseen: every sample of the held-out molecules); and per molecule. Transfer to the
unseen molecules is the verdict that counts.

**Seeds.** PaiNN, MuSE(PaiNN), PaiNN+LES and the physical terms on PaiNN and on MuSE-intra(PaiNN) (the
registry's ``bench`` suite; trained on energies and forces: the dataset has no dipoles) train with
:data:`SEEDS` seeds each (``--seeds``); a seed draws the initial weights and the order of the training frames
(:func:`muse_ff.bench.common.train_seeds`). Tables give mean ± std over seeds; every contestant is judged
against PaiNN, and MuSE-intra(PaiNN)+phys also against PaiNN+phys (:func:`references`), and called
better/worse only where the difference of the means exceeds the combined spread
(:func:`muse_ff.bench.common.verdict`). The report is rewritten after each training, seed 0 of every
contestant first, so a run cut short keeps what finished. ``--contestants`` picks a subset.

**Budget.** The default (PaiNN 32 features, 2 layers, 100 epochs, float64, 3 seeds: 9 trainings) was sized
for about an hour on two shared CPU cores, and takes longer. Holding out Ace-(Ala)10-NMe and naphthalene
removes 130 of the 223 atoms of one sample of every molecule (about 60% of the training cost per epoch),
which pays for most of the seeds; the epochs went from 120 (one seed) to 100. Measured on 2026-12-03 at a
load of 6-7 on the two cores, one thread: training 194-340 s (PaiNN), 448-527 s (MuSE(PaiNN)), 263 s
(PaiNN+LES); evaluating one trained model 175-301 s, most of it relaxing the peptides (BFGS to 1e-3 eV/Å:
~900 steps, ~145 s, for Ace-(Ala)10-NMe with PaiNN). That is ~30 min per seed of the three contestants,
~1.5 h for the default run at that load. A cheaper relaxation (a preconditioned optimiser) is the place
to save time without fewer seeds or epochs.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from ase import Atoms
from rich.console import Console

from muse_ff.bench import common
from muse_ff.bench.common import (
    CURVE_COLUMNS,
    VERDICT_RULE,
    Budget,
    Report,
    contestant_config,
    curve_rows,
    learning_curve,
    plot_learning_curves,
    pm,
    pyplot,
    save_figure,
    train_and_evaluate,
    training_rows,
    verdict,
)
from muse_ff.contestants import select

FOLDER = "hessians"
DATA = "hessians.extxyz.xz"  # in FOLDER
LOW = 300.0  # cm^-1: "low-frequency" modes are the teacher's modes below this
BUDGETS = {
    "quick": Budget(features=8, layers=1, num_basis=6, epochs=2, batch_size=8, max_train=24, max_valid=8,
                    dtype="float64"),
    "default": Budget(features=32, layers=2, num_basis=12, epochs=100, batch_size=8, dtype="float64"),
    "full": Budget(features=64, layers=3, num_basis=16, epochs=600, batch_size=8, dtype="float64"),
}
#: never trained on: of each related pair (benzene/naphthalene, the two peptides) the larger molecule
HELD_OUT = ("naphthalene", "ace-ala10-nme")
#: quick mode: water and benzene trained on, naphthalene held out
QUICK_MOLECULES = ("water", "benzene", "naphthalene")
#: quick mode: frames per molecule kept of each use
QUICK_FRAMES = {"train": 12, "valid": 4, "test": 2}
#: training seeds per contestant and mode (``--seeds`` overrides)
SEEDS = {"quick": 1, "default": 3, "full": 5}
#: BFGS steps of the model relaxation per mode (quick models are untrained: no need to wait for them)
RELAX_STEPS = {"quick": 100, "default": 1000, "full": 1000}


def teacher_minima(folder: Path, names: tuple[str, ...] | None = None) -> dict[str, dict]:
    """{molecule: {atoms, frequencies}} from ``hessians.npz``: the GFN2-xTB minimum and its FD frequencies."""
    from muse_ff.analysis.vibrations import harmonic_analysis

    npz = np.load(folder / "hessians.npz")
    out = {}
    for key in npz.files:
        name = key.split("/")[0]
        if name in out or (names is not None and name not in names):
            continue
        atoms = Atoms(numbers=npz[f"{name}/numbers"], positions=npz[f"{name}/positions"])
        ha = harmonic_analysis(npz[f"{name}/hessian"], atoms.get_masses(), atoms.positions)
        out[name] = {"atoms": atoms, "frequencies": ha.frequencies_cm1}
    return out


def load(folder: Path, quick: bool, held_out: tuple[str, ...] = HELD_OUT) -> dict:
    """Frames by use and the teacher's minima.

    ``train``/``valid``: normal-mode samples of the seen molecules (their train/valid splits);
    ``test_seen``: their test-split samples; ``test_unseen``: every sample of the held-out molecules, whatever
    its split; ``minima``: :func:`teacher_minima` of every molecule, each with ``seen``. The molecules of
    ``held_out`` that the data has are the unseen ones; no frame of theirs is in ``train`` or ``valid``.
    Quick mode: :data:`QUICK_MOLECULES`, :data:`QUICK_FRAMES` frames of each molecule per use."""
    from muse_ff.teachers.labelling import read_frames

    folder = Path(folder)
    frames = read_frames(folder / DATA)
    if quick:
        frames = [a for a in frames if a.info["molecule"] in QUICK_MOLECULES]
    present = list(dict.fromkeys(a.info["molecule"] for a in frames))
    unseen = [m for m in held_out if m in present]
    if len(unseen) == len(present):
        raise ValueError(f"holding out {unseen} leaves no molecule to train on")
    seen = [m for m in present if m not in unseen]
    samples = [a for a in frames if a.info["role"] != "minimum"]
    out: dict = {s: [a for a in samples if a.info["molecule"] in seen and a.info["split"] == s]
                 for s in ("train", "valid")}
    out["test_seen"] = [a for a in samples if a.info["molecule"] in seen and a.info["split"] == "test"]
    out["test_unseen"] = [a for a in samples if a.info["molecule"] in unseen]
    if quick:
        for key, kind in (("train", "train"), ("valid", "valid"), ("test_seen", "test"), ("test_unseen", "test")):
            out[key] = _first_per_molecule(out[key], QUICK_FRAMES[kind])
    out["minima"] = teacher_minima(folder, tuple(present))
    for name, m in out["minima"].items():
        m["seen"] = name in seen
    out["seen"], out["unseen"] = seen, unseen
    return out


def _first_per_molecule(frames: list[Atoms], n: int) -> list[Atoms]:
    """The first ``n`` frames of each molecule, in their order."""
    count: dict[str, int] = {}
    kept = []
    for a in frames:
        count[a.info["molecule"]] = count.get(a.info["molecule"], 0) + 1
        if count[a.info["molecule"]] <= n:
            kept.append(a)
    return kept


def model_frequencies(model_path: Path, atoms: Atoms, fmax: float = 1e-3, steps: int = 1000) -> dict:
    """Relax ``atoms`` with the model (BFGS), then its autograd-Hessian frequencies (cm^-1).

    A relaxation that fails (atoms collapse) is reported as not converged, with the Hessian taken at the
    teacher's minimum instead."""
    from ase.optimize import BFGS

    from muse_ff.analysis.vibrations import harmonic_analysis
    from muse_ff.calculator import MuSECalculator
    from muse_ff.datasets.folding import kabsch_rmsd

    calc = MuSECalculator(model_path)
    relaxed = atoms.copy()
    relaxed.calc = calc
    try:
        converged = bool(BFGS(relaxed, logfile=None).run(fmax=fmax, steps=steps))
    except ValueError:  # the relaxation collapsed the molecule: report the Hessian at the teacher minimum
        converged = False
        relaxed.positions = atoms.positions
    hessian = calc.get_hessian(relaxed)
    ha = harmonic_analysis(hessian, relaxed.get_masses(), relaxed.positions)
    return {"frequencies": ha.frequencies_cm1, "converged": converged,
            "rmsd": kabsch_rmsd(relaxed.positions, atoms.positions)}


def frequency_errors(pred: np.ndarray, ref: np.ndarray) -> dict:
    """MAE (cm^-1) over all modes and over the teacher's modes below :data:`LOW`; imaginary mode count."""
    pred, ref = np.sort(pred), np.sort(ref)
    low = ref < LOW
    return {"mae_all": float(np.abs(pred - ref).mean()),
            "mae_low": float(np.abs(pred[low] - ref[low]).mean()) if low.any() else None,
            "n_low": int(low.sum()), "n_imaginary": int((pred < -1e-6).sum())}


def evaluate_model(model_path: Path, data: dict, steps: int = 1000, console: Console | None = None) -> dict:
    """One trained model: ``molecules`` ({name: frequencies, converged, rmsd, errors, seen}: relax and
    Hessian of every molecule) and the sample errors ``test_seen`` / ``test_unseen`` (E meV/atom, F meV/Å)."""
    from muse_ff.analysis.metrics import evaluate_frames
    from muse_ff.io.serialization import load_model

    console = console or Console(quiet=True)
    out: dict = {"molecules": {}}
    for mol, ref in data["minima"].items():
        start = time.perf_counter()
        r = model_frequencies(model_path, ref["atoms"], steps=steps)
        r["errors"] = frequency_errors(r["frequencies"], ref["frequencies"])
        r["seen"] = ref["seen"]
        r["seconds"] = time.perf_counter() - start
        out["molecules"][mol] = r
        console.print(f"  {mol}: MAE {r['errors']['mae_all']:.1f} cm^-1, relaxed {r['converged']}, "
                      f"{r['seconds']:.0f} s")
    model = load_model(model_path)
    for key in ("test_seen", "test_unseen"):
        if data.get(key):
            m = evaluate_frames(model, data[key], batch_size=8).metrics()
            out[key] = {"energy_mae": m["energy_mae"], "forces_mae": m["forces_mae"], "frames": m["frames"]}
    return out


def _pooled(result: dict, minima: dict, molecules: list[str], low: bool) -> float:
    """MAE (cm^-1) over every mode (or every teacher mode below :data:`LOW`) of ``molecules`` together."""
    errs = []
    for m in molecules:
        ref = np.sort(minima[m]["frequencies"])
        err = np.abs(np.sort(result["molecules"][m]["frequencies"]) - ref)
        errs.append(err[ref < LOW] if low else err)
    errs = np.concatenate(errs) if errs else np.array([])
    return float(errs.mean()) if errs.size else float("nan")


#: the scalar scores of one training (:func:`scores`), per group of molecules: key, column title, digits
SCORES = [("mae_all", "MAE all modes", 1), ("mae_low", f"MAE modes < {LOW:g}", 1),
          ("mean_molecule_mae", "mean of per-molecule MAE", 1), ("rmsd", "geometry RMSD (Å)", 3),
          ("imaginary", "imaginary modes", 0), ("E_samples", "E MAE samples (meV/atom)", 2),
          ("F_samples", "F MAE samples (meV/Å)", 1)]
#: the scores the summary tables' verdict column judges
HEADLINE = ("mae_all", "mae_low")
#: the contestant the others are judged against
REFERENCE = "PaiNN"


def scores(result: dict, minima: dict) -> dict[str, float]:
    """``seen_<key>`` and ``unseen_<key>`` for each key of :data:`SCORES` of one evaluated model
    (:func:`evaluate_model`): frequency MAEs pooled over the group's modes, the mean of its per-molecule
    MAEs and RMSDs, its imaginary modes in all, the sample errors (NaN where a group is empty)."""
    out: dict[str, float] = {}
    for group, flag in (("seen", True), ("unseen", False)):
        mols = [m for m, r in result["molecules"].items() if r["seen"] == flag]
        per = [result["molecules"][m] for m in mols]
        samples = result.get(f"test_{group}", {})
        values = {"mae_all": _pooled(result, minima, mols, low=False),
                  "mae_low": _pooled(result, minima, mols, low=True),
                  "mean_molecule_mae": float(np.mean([r["errors"]["mae_all"] for r in per])) if per else float("nan"),
                  "rmsd": float(np.mean([r["rmsd"] for r in per])) if per else float("nan"),
                  "imaginary": float(sum(r["errors"]["n_imaginary"] for r in per)) if per else float("nan"),
                  "E_samples": float(samples.get("energy_mae", float("nan"))),
                  "F_samples": float(samples.get("forces_mae", float("nan")))}
        out.update({f"{group}_{k}": v for k, v in values.items()})
    return out


def references(name: str, names) -> list[str]:
    """The contestants ``name`` is judged against, the closest first: those of
    :func:`muse_ff.bench.common.comparisons` (``MuSE-intra(PaiNN)+phys`` -> ``PaiNN+phys``: what the hierarchy
    adds to the same terms), then :data:`REFERENCE` (when present)."""
    out = common.comparisons(name, names) + [REFERENCE]
    return [r for r in dict.fromkeys(out) if r in names and r != name]


def reference_of(name: str, names) -> str | None:
    """The closest of :func:`references` (the summary tables' verdict column), None for :data:`REFERENCE`."""
    refs = references(name, names)
    return refs[0] if refs else None


def _verdict_text(v) -> str:
    return "n/a" if v.word == "n/a" else f"{v.word} ({v.difference:+.1f} ± {v.spread:.1f})"


def summary_rows(per_seed: dict[str, list[dict]], minima: dict, group: str) -> list[list]:
    """One row per contestant: seeds, mean ± std over seeds of each score of ``group`` (seen/unseen), and
    the verdict against the closest of its :func:`references` on the :data:`HEADLINE` scores."""
    s = {name: [scores(r, minima) for r in runs] for name, runs in per_seed.items()}
    rows = []
    for name, runs in s.items():
        ref = reference_of(name, s)
        judged = "-" if ref is None else f"vs {ref}: " + " / ".join(
            verdict([x[f"{group}_{k}"] for x in runs], [x[f"{group}_{k}"] for x in s[ref]]).word for k in HEADLINE)
        rows.append([name, len(runs), *[pm([x[f"{group}_{k}"] for x in runs], d) for k, _, d in SCORES], judged])
    return rows


def summary_columns() -> list[str]:
    return ["model", "seeds", *[c for _, c, _ in SCORES], f"verdict (MAE all / < {LOW:g})"]


def verdict_rows(per_seed: dict[str, list[dict]], minima: dict) -> list[list]:
    """One row per (contestant, each of its :func:`references`) and group: the verdict on every score with the
    difference of the means and the combined spread."""
    s = {name: [scores(r, minima) for r in runs] for name, runs in per_seed.items()}
    rows = []
    for group in ("unseen", "seen"):
        for name, runs in s.items():
            for ref in references(name, s):
                rows.append([f"{name} vs {ref}", group, f"{len(runs)} / {len(s[ref])}",
                             *[_verdict_text(verdict([x[f"{group}_{k}"] for x in runs],
                                                     [x[f"{group}_{k}"] for x in s[ref]])) for k, _, _ in SCORES]])
    return rows


def per_molecule_rows(per_seed: dict[str, list[dict]], minima: dict) -> list[list]:
    """Per molecule (unseen first) and contestant: MAE all / low modes, RMSD (mean ± std over seeds), imaginary
    modes and converged relaxations over all seeds."""
    rows = []
    order = sorted(minima, key=lambda m: minima[m]["seen"])
    for mol in order:
        t = minima[mol]
        for name, runs in per_seed.items():
            rs = [r["molecules"][mol] for r in runs]
            rows.append([mol, len(t["atoms"]), "seen" if t["seen"] else "UNSEEN", name, len(rs),
                         pm([r["errors"]["mae_all"] for r in rs], 1), pm([r["errors"]["mae_low"] for r in rs], 1),
                         rs[0]["errors"]["n_low"], sum(r["errors"]["n_imaginary"] for r in rs),
                         pm([r["rmsd"] for r in rs], 3), f"{sum(r['converged'] for r in rs)}/{len(rs)}"])
    return rows


def plot(minima: dict, per_seed: dict[str, list[dict]], path: Path) -> Path:
    """Model vs teacher frequencies of the seen and of the unseen molecules (every seed), and the
    low-frequency sticks of the largest unseen molecule, one row per seed."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.4))
    top = max(float(np.max(m["frequencies"])) for m in minima.values())
    for ax, flag in zip(axes[:2], (True, False)):
        mols = [m for m in minima if minima[m]["seen"] == flag]
        ax.plot([0, top], [0, top], color="grey", lw=0.8)
        ref = np.concatenate([np.sort(minima[m]["frequencies"]) for m in mols]) if mols else np.array([])
        for k, (name, runs) in enumerate(per_seed.items()):
            for j, r in enumerate(runs):
                pred = np.concatenate([np.sort(r["molecules"][m]["frequencies"]) for m in mols]) if mols else ref
                ax.scatter(ref, pred, s=6, alpha=0.5, color=f"C{k}", label=name if j == 0 else None,
                           marker="s" if "MuSE" in name else "^")
        ax.set_title(("seen" if flag else "UNSEEN") + f": {', '.join(mols)}", fontsize=8)
        ax.set_xlabel("teacher (GFN2-xTB, FD Hessian) frequency (cm$^{-1}$)")
        ax.set_ylabel("model frequency (cm$^{-1}$)")
        ax.legend(fontsize=7)
    unseen = [m for m in minima if not minima[m]["seen"]] or list(minima)
    big = max(unseen, key=lambda m: len(minima[m]["atoms"]))
    ax2 = axes[2]
    labels, k = [], 0
    f = np.sort(minima[big]["frequencies"])
    ax2.vlines(f[f < 2 * LOW], k, k + 0.8, color="black", lw=1.0)
    labels.append("teacher")
    for c, (name, runs) in enumerate(per_seed.items()):
        for j, r in enumerate(runs):
            k += 1
            f = np.sort(r["molecules"][big]["frequencies"])
            ax2.vlines(f[f < 2 * LOW], k, k + 0.8, color=f"C{c}", lw=1.0)
            labels.append(f"{name} s{j}")
    ax2.set_yticks(np.arange(len(labels)) + 0.4, labels, fontsize=7)
    ax2.axvline(LOW, color="grey", ls=":", lw=0.8)
    ax2.set_xlabel("frequency (cm$^{-1}$)")
    ax2.set_title(f"{big}{'' if minima[big]['seen'] else ' (unseen)'}: modes below {2 * LOW:g} cm$^{{-1}}$",
                  fontsize=9)
    return save_figure(fig, path)


def seed_counts(names: list[str], mode: str, seeds: int | None = None) -> dict[str, int]:
    """{name: seeds}: ``seeds`` (default :data:`SEEDS` of ``mode``) for every contestant."""
    n = SEEDS[mode] if seeds is None else int(seeds)
    if n < 1:
        raise ValueError(f"seeds must be >= 1, got {n}")
    return {name: n for name in names}


def contestants(budget: Budget) -> dict[str, dict]:
    """{name: ``model:`` section}: :data:`muse_ff.bench.common.MODELS` on the budget's PaiNN."""
    return {name: contestant_config(budget, spec) for name, spec in common.MODELS.items()}


def run(out: Path, mode: str = "default", data_dir: Path = Path("data"), progress: bool = False,
        retrain: bool = False, console: Console | None = None, seeds: int | None = None,
        contestants_filter: str | list[str] | None = None) -> dict:
    """Train the contestants on the seen molecules' samples with each seed; relax every molecule, compare
    harmonic frequencies and sample errors for the seen and the unseen molecules; write the report after
    every training (the last one is complete).

    ``seeds``: seeds per contestant (default :data:`SEEDS`); ``contestants_filter``: names (comma-separated
    or a list) to train, default all."""
    console = console or Console()
    started = time.perf_counter()
    out = Path(out)
    budget = BUDGETS[mode]
    data = load(Path(data_dir) / FOLDER, quick=mode == "quick")
    minima, seen, unseen = data["minima"], data["seen"], data["unseen"]
    names = select(contestants_filter, list(contestants(budget)))
    counts = seed_counts(names, mode, seeds)
    total = sum(counts.values())

    def write(per_seed: dict, trained: dict, final: bool) -> dict:
        report = Report("hessian", mode, started=started)
        done = sum(len(v) for v in trained.values())
        status = "" if final else f" [partial: {done} of {total} trainings]"
        n_low = {flag: sum(int((minima[m]["frequencies"] < LOW).sum()) for m in minima if minima[m]["seen"] == flag)
                 for flag in (True, False)}
        report.add_table(f"training{status}: {len(data['train'])} normal-mode samples of {', '.join(seen)} "
                         f"({budget.epochs} epochs); validation samples: E meV/atom, F meV/Å, mean ± std over seeds",
                         ["model", "params", "seeds", "train s", "val E MAE", "val F MAE"], training_rows(trained))
        groups = (("unseen", f"UNSEEN molecules (never trained on: {', '.join(unseen)}; {n_low[False]} teacher modes "
                   f"< {LOW:g} cm^-1; {len(data['test_unseen'])} samples)"),
                  ("seen", f"seen molecules ({', '.join(seen)}; {n_low[True]} teacher modes < {LOW:g} cm^-1; "
                   f"{len(data['test_seen'])} test samples)"))
        for group, what in groups:
            report.add_table(f"{what}{status}: harmonic frequencies vs the teacher's FD Hessian (cm^-1, modes pooled "
                             f"over the molecules), mean RMSD of the model minima, imaginary modes in all, sample "
                             f"errors; mean ± std over seeds. {VERDICT_RULE}", summary_columns(),
                             summary_rows(per_seed, minima, group))
        report.add_table(f"verdicts against {REFERENCE} and the closest contestant{status} (difference of means "
                         "± combined spread; negative = lower)",
                         ["contestant", "molecules", "seeds", *[c for _, c, _ in SCORES]],
                         verdict_rows(per_seed, minima))
        report.add_table(f"per molecule{status} (cm^-1; RMSD of the model minimum to the teacher's, Å; mean ± std "
                         "over seeds; imaginary modes and converged relaxations summed over seeds)",
                         ["molecule", "atoms", "trained on", "model", "seeds", "MAE all", f"MAE < {LOW:g}", "n low",
                          "imaginary", "RMSD", "relaxed"], per_molecule_rows(per_seed, minima))
        report.add_table(f"learning curves (validation loss per epoch, logs/metrics.csv){status}", CURVE_COLUMNS,
                         curve_rows(trained))
        if per_seed:
            report.plots.append(str(plot(minima, per_seed, out / "hessian_frequencies.png")))
        curves = {name: [learning_curve(t.path.parent) for t in runs] for name, runs in trained.items()}
        report.plots.append(str(plot_learning_curves(curves, out / "hessian_learning_curves.png",
                                                     title=f"hessian: validation loss ({', '.join(seen)})")))
        report.results = {
            "teacher": {m: v["frequencies"] for m, v in minima.items()},
            "models": per_seed, "scores": {n: [scores(r, minima) for r in runs] for n, runs in per_seed.items()},
            "training": {n: [t.summary for t in runs] for n, runs in trained.items()},
            "learning_curves": curves, "budget": budget, "seeds": counts, "complete": final,
            "held_out": unseen, "trained_on": seen, "frames": {k: len(data[k]) for k in
                                                               ("train", "valid", "test_seen", "test_unseen")},
            "configs": {n: c for n, c in contestants(budget).items() if n in names}}
        return report.write(out, console if final else Console(quiet=True))

    def evaluate(seed: int, t) -> dict:
        console.print(f"seed {seed}: {t.name}: relax every molecule and take its Hessian")
        start = time.perf_counter()
        result = evaluate_model(t.path, data, RELAX_STEPS[mode], console)
        console.print(f"seed {seed}: {t.name} evaluated in {time.perf_counter() - start:.0f} s")
        return result

    def sections(b: Budget) -> dict[str, dict]:
        return {n: c for n, c in contestants(b).items() if n in names}

    return train_and_evaluate(data["train"], data["valid"], out, budget, sections, counts, names, evaluate, write,
                              progress, retrain, console)
