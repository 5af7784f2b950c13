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

from muse_ff.bench.common import Budget, Report, fmt, pyplot, save_figure, train_pair, training_config
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


def kind_rows(results: dict[str, dict]) -> list[list]:
    """Rows (kind, model, Eint MAE per bin with the frame count) of :func:`interaction_by_kind`."""
    labels, rows = bins(results), []
    for kind in KINDS:
        for name, r in results.items():
            per = r.get("interaction_mae_meV_by_kind", {}).get(kind)
            if per:
                rows.append([kind, name, *[f"{fmt(per[b]['mae'], 1)} ({per[b]['frames']})" if b in per else "-"
                                           for b in labels]])
    return rows


def bins(results: dict[str, dict]) -> list[str]:
    """The separation-bin labels present in the results, in order."""
    from muse_ff.training.demo import BINS, _bin_label

    present = {b for r in results.values() for b in r.get("interaction_mae_meV", {})}
    return [label for label in (_bin_label(lo, hi) for lo, hi in BINS) if label in present]


def comparison_rows(results: dict[str, dict]) -> list[list]:
    """One row per model: params, train s, E and F MAE, Eint MAE per bin, ms per evaluation."""
    rows = []
    for name, r in results.items():
        m, ie = r["metrics"], r.get("interaction_mae_meV", {})
        rows.append([name, r["params"], fmt(r["train_time_s"], 0), fmt(m["energy_mae"], 2), fmt(m["forces_mae"], 1),
                     *[fmt(ie.get(b), 1) for b in bins(results)], fmt(1000 * r["eval_time_s"], 1)])
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
                     levels_text(muse.path) if muse else "-"])
    return rows


def plot(results: dict[str, dict], path: Path) -> Path:
    """Interaction-energy error (meV) against separation, 1 Å bins, one line per model."""
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


def run(out: Path, mode: str = "default", data_dir: Path = Path("data"), progress: bool = False,
        retrain: bool = False, console: Console | None = None, contestants_filter=None) -> dict:
    """Train the models (all, or those named in ``contestants_filter``) on the dimers with one budget, evaluate
    them on the test split, write the report (with the models of this run)."""
    console = console or Console()
    report = Report("backbones", mode)
    frames = load(Path(data_dir) / DATA, quick=mode == "quick")
    budget, configs = BUDGETS[mode], models(mode)
    configs = {n: configs[n] for n in select(contestants_filter, list(configs))}
    trained = train_pair(frames["train"], frames["valid"], out, budget, progress, retrain, console, models=configs,
                         training=TRAINING["backbones"])
    results = evaluate(trained, frames["test"], console)
    import torch

    labels = bins(results)
    report.add_table(f"test split ({len(frames['test'])} frames): E (meV/atom), F (meV/Å), Eint = interaction "
                     f"energy MAE (meV) by separation; ms = one energy + forces call, torch threads "
                     f"{torch.get_num_threads()}",
                     ["model", "params", "train s", "E MAE", "F MAE", *[f"Eint {b}" for b in labels], "ms / eval"],
                     comparison_rows(results))
    report.add_table(f"interaction-energy MAE (meV) by kind of pair and separation (test frames); the ion pair is "
                     f"{'+'.join(IONS)}", ["pair", "model", *[f"Eint {b} (frames)" for b in labels]],
                     kind_rows(results))
    b, t = budget, training_config(budget, out)
    shared = {k: v for k, v in asdict(b).items() if k not in ("features", "layers", "num_basis", "extra")}
    n_train = len(frames["train"][:: b.train_stride][: b.max_train])
    report.add_table(f"backbones (shared budget: {b.epochs} epochs, {n_train} training frames, batch {b.batch_size}, "
                     f"AdamW lr {b.lr:g} {t['schedule']} to {t['min_lr']:g}, loss energy {b.energy_weight:g} / "
                     f"forces {b.forces_weight:g}, EMA {t['ema_decay']:g}, seed {b.seed}, {b.dtype})",
                     ["backbone", "name", "cutoff Å", "hyper-parameters", "MuSE levels"], hparam_rows(configs, trained))
    report.plots.append(str(plot(results, out / "backbones_interaction.png")))
    report.results = {"models": results, "budget": shared,
                      "configs": {n: dict(c, folder=str(out / slug(n))) for n, c in configs.items()},
                      "hyperparameters": {n: backbone_hparams(c["backbone"]) for n, c in configs.items()},
                      "frames": {s: len(v) for s, v in frames.items()},
                      "training": {n: t.summary for n, t in trained.items()}}
    return report.write(out, console)
