"""``muse bench graphene``: binding curves and lateral scans of molecules over graphene (GFN1-xTB teacher).

Both models train on the ``role=sample`` frames (train/valid splits; flake and periodic sheet) and are
evaluated on the rigid ``role=curve`` (heights 2.8-12 Å) and ``role=scan`` frames. The binding energy is
``E(complex) - E(substrate) - E(molecule)`` with each model evaluating the rigid fragments itself, as the
teacher's ``binding_energy`` does (the same fragments: :func:`muse_ff.analysis.quantities.substrate_and_molecule`).
Long-range tails are judged on the flake only: the periodic-sheet GFN1-xTB tail turns repulsive beyond ~8 Å,
a teacher artefact (docs/DATASETS.md); periodic curves are reported below 8 Å.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ase import Atoms
from rich.console import Console

from muse_ff.analysis.quantities import binding_energies
from muse_ff.bench.common import Budget, Report, fmt, pyplot, save_figure, train_pair, trained_rows

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


def load(path: Path, quick: bool) -> dict[str, list[Atoms]]:
    """Frames by role: ``train``/``valid``/``test`` samples, ``curve`` and ``scan`` frames."""
    from muse_ff.teachers.labelling import read_frames

    frames = read_frames(path)
    out = {s: [a for a in frames if a.info["role"] == "sample" and a.info["split"] == s]
           for s in ("train", "valid", "test")}
    out["curve"] = [a for a in frames if a.info["role"] == "curve"]
    out["scan"] = [a for a in frames if a.info["role"] == "scan"]
    if quick:  # benzene over the flake only
        keep = lambda a: a.info["molecule"] == "benzene" and a.info["substrate"] == "flake"  # noqa: E731
        out = {k: [a for a in v if keep(a)] for k, v in out.items()}
        out["test"] = out["test"][:2]
    return out


def _minimum(h: np.ndarray, e: np.ndarray) -> tuple[float, float]:
    """Height and energy of the curve minimum: parabola through the lowest grid point and its neighbours."""
    k = int(np.argmin(e))
    if 0 < k < len(h) - 1:
        a, b, c = np.polyfit(h[k - 1:k + 2], e[k - 1:k + 2], 2)
        if a > 0:
            hm = -b / (2 * a)
            return float(hm), float(np.polyval([a, b, c], hm))
    return float(h[k]), float(e[k])


def curve_metrics(h: np.ndarray, pred: np.ndarray, ref: np.ndarray, max_height: float = np.inf) -> dict:
    """Minimum height (Å), depth (meV) of model and teacher, curve MAE (meV) inside / beyond the cutoff."""
    keep = h <= max_height
    h, pred, ref = h[keep], pred[keep] * 1000, ref[keep] * 1000
    err = np.abs(pred - ref)
    (hp, ep), (hr, er) = _minimum(h, pred), _minimum(h, ref)
    return {"h_min": hp, "h_min_ref": hr, "depth": ep, "depth_ref": er,
            "mae_inside": float(err[h < CUTOFF].mean()), "mae_beyond": float(err[h >= CUTOFF].mean()),
            "e_far": float(pred[-1]), "e_far_ref": float(ref[-1]), "h_far": float(h[-1])}


def group(frames: list[Atoms]) -> dict[tuple[str, str], list[int]]:
    """Frame indices by (molecule, substrate), ordered by height or shift."""
    out: dict[tuple[str, str], list[int]] = {}
    for k, a in enumerate(frames):
        out.setdefault((a.info["molecule"], a.info["substrate"]), []).append(k)
    key = lambda k: (frames[k].info.get("height", 0.0), np.linalg.norm(frames[k].info.get("shift", 0.0)))  # noqa: E731
    return {g: sorted(idx, key=key) for g, idx in out.items()}


def evaluate_model(model, frames: dict[str, list[Atoms]]) -> dict:
    """Curves, scans and force errors of one model (energies in meV, forces in meV/Å)."""
    from muse_ff.analysis.metrics import evaluate_frames

    out: dict = {"curves": {}, "scans": {}}
    for role in ("curve", "scan"):
        fr = frames[role]
        if not fr:
            continue
        pred, ref = binding_energies(model, fr), np.array([a.info["binding_energy"] for a in fr])
        for (mol, sub), idx in group(fr).items():
            x = np.array([fr[k].info["height" if role == "curve" else "shift"] for k in idx], dtype=float)
            entry = {"x": x, "pred": pred[idx] * 1000, "ref": ref[idx] * 1000}
            if role == "curve":
                entry["metrics"] = curve_metrics(x, pred[idx], ref[idx],
                                                 PERIODIC_MAX_HEIGHT if sub == "periodic" else np.inf)
            out["curves" if role == "curve" else "scans"][f"{mol}/{sub}"] = entry
    labelled = frames["test"] + frames["curve"] + frames["scan"]
    for name, fr in (("forces_test", frames["test"]), ("forces_curves_scans", frames["curve"] + frames["scan"])):
        if fr:
            out[name] = evaluate_frames(model, fr, batch_size=4).metrics()["forces_mae"]
    out["n_labelled"] = len(labelled)
    return out


def curve_rows(results: dict[str, dict]) -> list[list]:
    rows = []
    first = next(iter(results.values()))
    for key in first["curves"]:
        m = first["curves"][key]["metrics"]
        rows.append(["teacher", key, fmt(m["h_min_ref"], 2), fmt(m["depth_ref"], 0), "-", "-",
                     f"{m['e_far_ref']:.1f} @ {m['h_far']:g} Å"])
        for name, r in results.items():
            m = r["curves"][key]["metrics"]
            rows.append([name, key, fmt(m["h_min"], 2), fmt(m["depth"], 0), fmt(m["mae_inside"], 1),
                         fmt(m["mae_beyond"], 1), f"{m['e_far']:.1f} @ {m['h_far']:g} Å"])
    return rows


def summary_rows(results: dict[str, dict]) -> list[list]:
    rows = []
    for name, r in results.items():
        flake = [c["metrics"] for k, c in r["curves"].items() if k.endswith("/flake")]
        scans = [np.abs(s["pred"] - s["ref"]).mean() for s in r["scans"].values()]
        corr = [(np.ptp(s["pred"]), np.ptp(s["ref"])) for s in r["scans"].values()]
        rows.append([name, fmt(np.mean([m["mae_inside"] for m in flake]), 1),
                     fmt(np.mean([m["mae_beyond"] for m in flake]), 1),
                     fmt(np.mean([abs(m["depth"] - m["depth_ref"]) for m in flake]), 1),
                     fmt(np.mean([abs(m["h_min"] - m["h_min_ref"]) for m in flake]), 2),
                     fmt(float(np.mean(scans)) if scans else None, 1),
                     " / ".join(f"{p:.0f} ({q:.0f})" for p, q in corr) or "-",
                     fmt(r.get("forces_test"), 1), fmt(r.get("forces_curves_scans"), 1)])
    return rows


SUMMARY_COLUMNS = ["model", "curve MAE <5 Å", "curve MAE ≥5 Å", "|Δ depth|", "|Δ h_min| (Å)", "scan MAE",
                   "scan corrugation (teacher)", "F MAE test samples", "F MAE curves+scans"]


STYLE = {"teacher": ("black", "-o"), "PaiNN": ("C0", "--^"), "MuSE(PaiNN)": ("C1", "-s"),
         "PaiNN+LES": ("C2", "-.d")}


def _style(name: str) -> tuple[str, str]:
    return STYLE.get(name, ("C2", "-d"))


def _plot_scans(ax, results: dict[str, dict]) -> None:
    first = next(iter(results.values()))
    for key, s in first["scans"].items():
        dotted = key.endswith("/periodic")
        ax.plot(s["x"], s["ref"], "o" + (":" if dotted else "-"), color="black", ms=3)
        for name, r in results.items():
            color, style = _style(name)
            ax.plot(s["x"], r["scans"][key]["pred"], style[-1] + (":" if dotted else "-"), color=color, ms=3)
    ax.set_title("benzene lateral scans at 3.4 Å\n(solid: flake, dotted: periodic)", fontsize=9)
    ax.set_xlabel("shift (Å)")


def plot(results: dict[str, dict], path: Path) -> Path:
    """Binding curves over the flake (top: full, bottom: the tail beyond the cutoff) and the lateral scans."""
    plt = pyplot()
    first = next(iter(results.values()))
    flake = [k for k in first["curves"] if k.endswith("/flake")]
    ncol = len(flake) + bool(first["scans"])
    fig, axes = plt.subplots(2, ncol, figsize=(3.3 * ncol, 5.6), squeeze=False)
    for j, key in enumerate(flake):
        c = first["curves"][key]
        for row, ax in enumerate(axes[:, j]):
            ax.plot(c["x"], c["ref"], _style("teacher")[1], color="black", ms=3, label="teacher (GFN1-xTB)")
            for name, r in results.items():
                color, style = _style(name)
                ax.plot(c["x"], r["curves"][key]["pred"], style, color=color, ms=3, label=name)
            ax.axvline(CUTOFF, color="grey", lw=0.6, ls=":")
            if row == 1:
                ax.set_xlim(4.8, 12.3)
                tail = c["ref"][c["x"] >= 4.8]
                ax.set_ylim(1.6 * tail.min() - 5, 25)
                ax.set_xlabel("height (Å)")
        axes[0, j].set_title(key.replace("/", " over "))
        axes[0, j].set_ylabel("binding energy (meV)")
    axes[1, 0].set_ylabel("tail beyond 5 Å (meV)")
    if first["scans"]:
        _plot_scans(axes[0, -1], results)
        axes[1, -1].axis("off")
    axes[0, 0].legend(fontsize=7)
    return save_figure(fig, path)


def run(out: Path, mode: str = "default", data_dir: Path = Path("data"), progress: bool = False,
        retrain: bool = False, console: Console | None = None) -> dict:
    """Train PaiNN, MuSE(PaiNN) and PaiNN+LES on the samples, evaluate curves, scans and forces; write the report."""
    from muse_ff.io.serialization import load_model

    console = console or Console()
    report = Report("graphene", mode)
    frames = load(Path(data_dir) / DATA, quick=mode == "quick")
    trained = train_pair(frames["train"], frames["valid"], out, BUDGETS[mode], progress, retrain, console)
    results = {name: evaluate_model(load_model(t.path), frames) for name, t in trained.items()}
    report.add_table("training (validation samples): E meV/atom, F meV/Å",
                     ["model", "params", "train s", "val E MAE", "val F MAE"], trained_rows(trained))
    report.add_table("flake binding curves and scans, mean over molecules (meV; forces meV/Å)",
                     SUMMARY_COLUMNS, summary_rows(results))
    report.add_table(f"binding curves (meV); periodic curves only up to {PERIODIC_MAX_HEIGHT:g} Å (teacher "
                     "artefact beyond)", ["model", "curve", "h_min (Å)", "depth", "MAE <5 Å", "MAE ≥5 Å",
                                           "E at far end"], curve_rows(results))
    report.plots.append(str(plot(results, out / "graphene_curves.png")))
    report.results = {"models": results, "training": {k: t.summary for k, t in trained.items()},
                      "budget": BUDGETS[mode]}
    return report.write(out, console)
