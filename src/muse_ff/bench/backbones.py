"""``muse bench backbones``: PaiNN, MACE and SO3krates, each plain and as MuSE(backbone), on the same dimers,
next to the physical long-range terms on PaiNN and on MuSE-intra(PaiNN).

Six models (and the two physical ones, :data:`muse_ff.contestants.BACKBONES_PHYSICAL`: the PaiNN of the mode's
size with ``model.physical`` and charges, plain and with coarse edges only within each molecule, also trained
on the interaction energies with the demo's weight; the same frames and budget otherwise) train on the
long-range dimers (``data/long-range-dimers``: GFN2-xTB, polar and ionic molecule pairs with centres of mass
3-15 Å apart; train/valid/test in ``info["split"]``; the ion of a charged pair carries its charge) through
:func:`muse_ff.bench.common.train_pair`: the same frames, epochs, batch size, learning-rate schedule, loss
weights, seed, float32 and 5 Å backbone cutoff for all. A backbone and its MuSE version differ only in
``levels`` (:data:`~muse_ff.contestants.MUSE_LEVELS`, the two coarse levels of the other benchmarks:
cutoffs 10 and 20 Å); the three backbones differ only in ``model.backbone`` (library defaults in the default
and full modes, i.e. ``{name: ...}`` alone; tiny sizes in quick mode). ``--contestants`` trains some of them.

Seeds (:func:`seed_counts`, ``--seeds``): PaiNN, MuSE(PaiNN) and the two physical models train with
:data:`SEEDS` seeds (3 by default), the MACE and SO3krates pairs with :data:`EXTRA_SEEDS` (1 by default: MACE's
pair alone takes ~30 min); a seed draws the initial weights and the order of the training frames. Tables give
mean ± std over seeds, and a verdict table judges each model against its reference
(:func:`muse_ff.bench.common.comparisons`: MuSE(X) against X, X+phys+Eint against X, MuSE-intra(PaiNN)+phys+Eint
against PaiNN+phys+Eint) by :func:`muse_ff.bench.common.verdict`'s spread rule. A default run takes about an
hour on one CPU thread (39 min for the six backbone models at one seed, ~10 min per extra seed of the PaiNN
family).

Reported per model on the test split: parameters, training wall time (s), MAE of the energy (meV/atom) and
forces (meV/Å), the MAE of the interaction energy E(AB) - E(A) - E(B) (meV, each model evaluating the rigid
monomers itself; :func:`muse_ff.analysis.quantities.interaction_energies` through
:func:`muse_ff.training.demo.evaluate_demo_model`) by centre-of-mass separation (<5, 5-10,
>10 Å: a plain 5 Å model is blind to most of the last two), and the mean wall time (ms) of one energy +
forces evaluation of a single test frame through the ASE calculator. The interaction errors are also split
by kind of pair (neutral, ion + neutral, the formate + methylammonium ion pair): the ion pair's ~1/r
interaction (eV at 5-9 Å) dominates the bins otherwise.
"""

from __future__ import annotations

import inspect
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
from ase import Atoms
from rich.console import Console

from muse_ff.bench.common import (
    CURVE_COLUMNS,
    VERDICT_RULE,
    Budget,
    Report,
    comparisons,
    curve_rows,
    learning_curve,
    pm,
    pyplot,
    save_figure,
    seed_folder,
    train_and_evaluate,
    training_config,
    verdict,
)
from muse_ff.contestants import BACKBONES_PHYSICAL, TRAINING, backbone_pairs, model_section, select, slug

DATA = "long-range-dimers/long-range-dimers.extxyz.xz"  # in the data folder
#: mode -> {backbone label: ``model.backbone`` section}; default and full: each library's defaults
SIZES: dict[str, dict[str, dict]] = {
    "quick": {"PaiNN": {"name": "painn", "features": 8, "layers": 1, "num_basis": 6},
              "MACE": {"name": "mace", "num_channels": 8, "max_ell": 1, "correlation": 1, "num_interactions": 1,
                       "num_radial_basis": 6, "radial_mlp": [8]},
              "SO3krates": {"name": "so3krates", "features": 8, "heads": 2, "degrees": [1], "layers": 1,
                            "num_basis": 6}},
    "default": {"PaiNN": {"name": "painn"}, "MACE": {"name": "mace"}, "SO3krates": {"name": "so3krates"}},
}
SIZES["full"] = SIZES["default"]
#: the budget every model gets. lr 1e-3 (the training default): at 3e-3 MuSE(SO3krates) diverged to NaN
#: coarse positions within the first epoch. Default: 10 epochs of all 1448 training frames, sized so the
#: six trainings fit ~45 min on one CPU thread (MACE and MuSE(MACE) take ~80% of it).
BUDGETS = {
    "quick": Budget(epochs=1, batch_size=6, lr=1e-3, max_valid=4),
    "default": Budget(epochs=10, batch_size=8, lr=1e-3),
    "full": Budget(epochs=100, batch_size=8, lr=1e-3),
}
#: the ionic monomers of the dataset: the interaction of the ion pair (~1/r, eV at 5-9 Å) dwarfs the neutral
#: pairs' (meV beyond 5 Å), so interaction errors are also reported per kind of pair
IONS = ("formate", "methylammonium")
KINDS = ("neutral pair", "ion + neutral", "ion pair")
QUICK_TEST_PER_BIN = 1  # quick mode: this many test frames per separation bin
WARMUP = 3  # untimed evaluations before the timed ones


def models(mode: str) -> dict[str, dict]:
    """{name: ``model:`` section}: each backbone plain (``levels: []``) and as MuSE(backbone)
    (:func:`muse_ff.contestants.backbone_pairs`), then the physical contestants on the mode's PaiNN."""
    return {**backbone_pairs(SIZES[mode], BUDGETS[mode].dtype), **physical_models(mode)}


def physical_models(mode: str) -> dict[str, dict]:
    """{name: ``model:`` section} of :data:`~muse_ff.contestants.BACKBONES_PHYSICAL` on the mode's PaiNN."""
    return {name: model_section(spec, SIZES[mode]["PaiNN"], BUDGETS[mode].dtype)
            for name, spec in BACKBONES_PHYSICAL.items()}


def backbone_hparams(backbone: dict) -> dict:
    """The backbone's full hyper-parameters: the given ones over its constructor defaults (cutoff set apart)."""
    from muse_ff.nn.backbones import backbone_class

    params = inspect.signature(backbone_class(backbone["name"]).__init__).parameters
    skip = {"self", "in_features", "cutoff", "vector_in_features", "tensor_in_features"}
    out = {k: p.default for k, p in params.items() if k not in skip and p.default is not inspect.Parameter.empty}
    out.update({k: v for k, v in backbone.items() if k != "name"})
    return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


def _hparams_text(backbone: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in backbone_hparams(backbone).items())


def load(path: Path, quick: bool) -> dict[str, list[Atoms]]:
    """Frames by split, each with its monomers' formal charges (the ion of an ion + water pair carries the charge:
    :func:`muse_ff.datasets.dimers.add_missing_formal_charges`). Quick mode keeps one training frame per system
    (every element is seen) and :data:`QUICK_TEST_PER_BIN` test frames per separation bin."""
    from muse_ff.datasets.dimers import add_missing_formal_charges
    from muse_ff.teachers.labelling import read_frames
    from muse_ff.training.demo import BINS

    frames = add_missing_formal_charges(read_frames(path))
    out = {s: [a for a in frames if a.info["split"] == s] for s in ("train", "valid", "test")}
    if quick:
        out["train"] = list({a.info["system"]: a for a in reversed(out["train"])}.values())
        out["test"] = [a for lo, hi in BINS
                       for a in [b for b in out["test"] if lo <= b.info["separation"] < hi][:QUICK_TEST_PER_BIN]]
    return out


def time_per_evaluation(model_path: Path, frames: list[Atoms], warmup: int = WARMUP) -> float:
    """Mean wall seconds of one energy + forces evaluation of a single frame through the ASE calculator.

    Each frame is a new structure (graph, neighbour list and, for MuSE, the coarse topology and coarse levels built
    afresh); the first ``warmup`` calls are not timed."""
    from muse_ff.calculator import MuSECalculator

    calc = MuSECalculator(model_path)

    def once(a: Atoms) -> None:
        atoms = Atoms(numbers=a.numbers, positions=a.positions, cell=a.cell, pbc=a.pbc)
        calc._key = None  # time the coarse topology too, as for a structure never seen
        atoms.calc = calc
        atoms.get_forces()

    for a in frames[:warmup]:
        once(a)
    start = time.perf_counter()
    for a in frames:
        once(a)
    return (time.perf_counter() - start) / len(frames)


def evaluate(trained: dict, test: list[Atoms], console: Console) -> dict[str, dict]:
    """Test errors (:func:`~muse_ff.training.demo.evaluate_demo_model`) and evaluation time of every model."""
    from muse_ff.training.demo import evaluate_demo_model

    results = {}
    for name, t in trained.items():
        console.print(f"{name}: evaluate {len(test)} test frames")
        r = evaluate_demo_model(t.path, test)
        r.pop("energy_per_atom", None)
        r["train_time_s"] = t.train_time_s
        r["interaction_mae_meV_by_kind"] = interaction_by_kind(r, test)
        r["eval_time_s"] = time_per_evaluation(t.path, test)
        results[name] = r
    return results


def pair_kind(atoms: Atoms) -> str:
    """'neutral pair', 'ion + neutral' or 'ion pair', from the frame's ``system`` (``A+B``) and :data:`IONS`."""
    return KINDS[sum(m in IONS for m in str(atoms.info["system"]).split("+"))]


def interaction_by_kind(result: dict, test: list[Atoms]) -> dict[str, dict[str, dict]]:
    """{kind: {bin label: {"mae": meV, "frames": n}}} from one model's interaction energies (test order)."""
    from muse_ff.training.demo import BINS, _bin_label

    ie = result.get("interaction")
    if not ie:
        return {}
    sep, err = np.asarray(ie["separation"]), 1000 * np.abs(np.asarray(ie["pred"]) - np.asarray(ie["ref"]))
    kinds = np.array([pair_kind(a) for a in test])
    out: dict[str, dict[str, dict]] = {}
    for kind in KINDS:
        for lo, hi in BINS:
            sel = (kinds == kind) & (sep >= lo) & (sep < hi)
            if sel.any():
                out.setdefault(kind, {})[_bin_label(lo, hi)] = {"mae": float(err[sel].mean()), "frames": int(sel.sum())}
    return out


def kind_rows(per_seed: dict[str, list[dict]]) -> list[list]:
    """Rows (kind, model, Eint MAE per bin over seeds with the frame count) of :func:`interaction_by_kind`."""
    labels, rows = bins(per_seed), []
    for kind in KINDS:
        for name, runs in per_seed.items():
            per = [r.get("interaction_mae_meV_by_kind", {}).get(kind) for r in runs]
            if per[0]:
                rows.append([kind, name, *[f"{pm([p[b]['mae'] for p in per if p], 1)} ({per[0][b]['frames']})"
                                           if b in per[0] else "-" for b in labels]])
    return rows


def bins(per_seed: dict[str, list[dict]]) -> list[str]:
    """The separation-bin labels present in the results, in order."""
    from muse_ff.training.demo import BINS, _bin_label

    present = {b for runs in per_seed.values() for r in runs for b in r.get("interaction_mae_meV", {})}
    return [label for label in (_bin_label(lo, hi) for lo, hi in BINS) if label in present]


def comparison_rows(per_seed: dict[str, list[dict]]) -> list[list]:
    """One row per model: params, seeds, train s, E and F MAE, Eint MAE per bin, ms per evaluation (mean ± std
    over seeds)."""
    labels, rows = bins(per_seed), []
    for name, runs in per_seed.items():
        rows.append([name, runs[0]["params"], len(runs), pm([r["train_time_s"] for r in runs], 0),
                     pm([r["metrics"]["energy_mae"] for r in runs], 2),
                     pm([r["metrics"]["forces_mae"] for r in runs], 1),
                     *[pm([r.get("interaction_mae_meV", {}).get(b) for r in runs], 1) for b in labels],
                     pm([1000 * r["eval_time_s"] for r in runs], 1)])
    return rows


#: (label, value of one seed's result) of the verdict table
VERDICT_METRICS = [("E", lambda r: r["metrics"]["energy_mae"]), ("F", lambda r: r["metrics"]["forces_mae"])]


def verdict_rows(per_seed: dict[str, list[dict]]) -> list[list]:
    """Each contestant against the models it is judged against (:func:`muse_ff.bench.common.comparisons`):
    difference of the means ± combined spread and the verdict, for E, F and Eint in every separation bin."""
    labels, rows = bins(per_seed), []
    metrics = VERDICT_METRICS + [(f"Eint {b}", lambda r, b=b: r.get("interaction_mae_meV", {}).get(b)) for b in labels]
    for name, runs in per_seed.items():
        for ref in comparisons(name, list(per_seed)):
            cells = []
            for _, get in metrics:
                v = verdict([get(r) for r in runs], [get(r) for r in per_seed[ref]])
                cells.append(f"{v.difference:+.1f} ± {v.spread:.1f} {v.word}" if v.word != "n/a" else "n/a")
            rows.append([name, ref, *cells])
    return rows


def levels_text(model_path: Path) -> str:
    """The coarse levels of a trained model as built (defaults resolved): ratio and cutoff (Å) of each."""
    from muse_ff.io.serialization import load_model

    levels = load_model(model_path).levels
    return "; ".join(f"ratio {lv.ratio:g}, cutoff {lv.cutoff:g} Å" for lv in levels) or "none"


def hparam_rows(configs: dict[str, dict], trained: dict) -> list[list]:
    """One row per backbone: its full hyper-parameters, and the coarse levels of its MuSE version."""
    rows = []
    for name, model in configs.items():
        if name.startswith("MuSE(") or name in BACKBONES_PHYSICAL:
            continue
        muse = trained.get(f"MuSE({name})")
        rows.append([name, model["backbone"]["name"], f"{model['cutoff']:g}", _hparams_text(model["backbone"]),
                     levels_text(muse[0].path) if muse else "-"])
    return rows


def plot(results: dict[str, dict], path: Path) -> Path:
    """Interaction-energy error (meV) against separation, 1 Å bins, one line per model (``results``: one seed's)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    edges = np.arange(3.0, 16.0, 1.0)
    for k, (name, r) in enumerate(results.items()):
        ie = r.get("interaction")
        if not ie:
            continue
        sep, err = np.asarray(ie["separation"]), 1000 * np.abs(np.asarray(ie["pred"]) - np.asarray(ie["ref"]))
        idx = np.digitize(sep, edges)
        x = [0.5 * (edges[i - 1] + edges[i]) for i in range(1, len(edges)) if (idx == i).any()]
        y = [err[idx == i].mean() for i in range(1, len(edges)) if (idx == i).any()]
        ax.plot(x, y, "-s" if name.startswith("MuSE") else "--^", color=f"C{k // 2}", ms=3, label=name)
    ax.axvline(5.0, color="grey", lw=0.6, ls=":")
    ax.set_yscale("log")
    ax.set_xlabel("centre-of-mass separation (Å)")
    ax.set_ylabel("|interaction energy error| (meV)")
    ax.legend(fontsize=7, ncol=3)
    return save_figure(fig, path)


#: training seeds of the PaiNN contestants (PaiNN, MuSE(PaiNN) and the physical ones) per mode (``--seeds``)
SEEDS = {"quick": 1, "default": 3, "full": 3}
#: training seeds of the MACE and SO3krates pairs per mode (at most ``--seeds``): MACE's pair alone is ~30 min
EXTRA_SEEDS = {"quick": 1, "default": 1, "full": 3}


def seed_counts(names: list[str], mode: str, seeds: int | None = None, chosen: bool = False) -> dict[str, int]:
    """{name: seeds}: ``seeds`` (default :data:`SEEDS`) for the PaiNN contestants, at most :data:`EXTRA_SEEDS`
    for the other backbones, unless the contestants were ``chosen`` by name and ``seeds`` given: then each
    of them gets ``seeds``."""
    n = SEEDS[mode] if seeds is None else int(seeds)
    if n < 1:
        raise ValueError(f"seeds must be >= 1, got {n}")
    if chosen and seeds is not None:
        return {name: n for name in names}
    painn = {"PaiNN", "MuSE(PaiNN)", *BACKBONES_PHYSICAL}
    return {name: n if name in painn else min(n, EXTRA_SEEDS[mode]) for name in names}


def run(out: Path, mode: str = "default", data_dir: Path = Path("data"), progress: bool = False,
        retrain: bool = False, console: Console | None = None, contestants_filter=None,
        seeds: int | None = None) -> dict:
    """Train the models (all, or those named in ``contestants_filter``) on the dimers with one budget and
    :func:`seed_counts` seeds each, evaluate them on the test split, write the report (with the models of this
    run; rewritten after every training)."""
    import torch

    console = console or Console()
    frames = load(Path(data_dir) / DATA, quick=mode == "quick")
    budget, configs = BUDGETS[mode], models(mode)
    names = select(contestants_filter, list(configs))
    configs = {n: configs[n] for n in names}
    counts = seed_counts(names, mode, seeds, chosen=bool(contestants_filter))

    def evaluate_one(seed: int, t) -> dict:
        return evaluate({t.name: t}, frames["test"], console)[t.name] | {"seed": seed}

    def write(per_seed: dict, trained: dict, final: bool) -> dict:
        report = Report("backbones", mode)
        labels = bins(per_seed)
        report.add_table(f"test split ({len(frames['test'])} frames): E (meV/atom), F (meV/Å), Eint = interaction "
                         f"energy MAE (meV) by separation, mean ± std over seeds; ms = one energy + forces call, "
                         f"torch threads {torch.get_num_threads()}",
                         ["model", "params", "seeds", "train s", "E MAE", "F MAE", *[f"Eint {b}" for b in labels],
                          "ms / eval"], comparison_rows(per_seed))
        report.add_table(f"verdicts: each model against its reference (difference of means ± combined spread); "
                         f"{VERDICT_RULE}", ["model", "against", *[m for m, _ in VERDICT_METRICS],
                                             *[f"Eint {b}" for b in labels]], verdict_rows(per_seed))
        report.add_table(f"interaction-energy MAE (meV) by kind of pair and separation (test frames), mean ± std "
                         f"over seeds; the ion pair is {'+'.join(IONS)}",
                         ["pair", "model", *[f"Eint {b} (frames)" for b in labels]], kind_rows(per_seed))
        b, t = budget, training_config(budget, out)
        shared = {k: v for k, v in asdict(b).items() if k not in ("features", "layers", "num_basis", "extra", "seed")}
        n_train = len(frames["train"][:: b.train_stride][: b.max_train])
        report.add_table(f"backbones (shared budget: {b.epochs} epochs, {n_train} training frames, batch "
                         f"{b.batch_size}, AdamW lr {b.lr:g} {t['schedule']} to {t['min_lr']:g}, loss energy "
                         f"{b.energy_weight:g} / forces {b.forces_weight:g}, EMA {t['ema_decay']:g}, seeds 0.."
                         f"{max(counts.values()) - 1}, {b.dtype})",
                         ["backbone", "name", "cutoff Å", "hyper-parameters", "MuSE levels"],
                         hparam_rows({n: c for n, c in configs.items() if n in trained}, trained))
        if final:
            report.add_table("learning curves (validation loss per epoch)", CURVE_COLUMNS, curve_rows(trained))
            report.plots.append(str(plot({n: runs[0] for n, runs in per_seed.items()},
                                         out / "backbones_interaction.png")))
        report.results = {"models": per_seed, "seeds": {n: len(r) for n, r in per_seed.items()}, "budget": shared,
                          "configs": {n: dict(c, folder=str(seed_folder(out, 0) / slug(n)))
                                      for n, c in configs.items()},
                          "hyperparameters": {n: backbone_hparams(c["backbone"]) for n, c in configs.items()},
                          "frames": {s: len(v) for s, v in frames.items()},
                          "training": {n: [t.summary for t in runs] for n, runs in trained.items()},
                          "learning_curves": {n: [learning_curve(t.path.parent) for t in runs]
                                              for n, runs in trained.items()}}
        return report.write(out, console)

    return train_and_evaluate(frames["train"], frames["valid"], out, budget, lambda b: configs, counts, names,
                              evaluate_one, write, progress, retrain, console, training=TRAINING["backbones"])
