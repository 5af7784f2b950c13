"""``muse bench hessian``: harmonic frequencies from autograd Hessians against GFN2-xTB finite differences.

Both models train on the normal-mode samples around each molecule's GFN2-xTB minimum (train/valid
splits). Each model then relaxes every molecule (BFGS from the teacher's minimum), takes the autograd
Hessian (:meth:`muse_ff.MuSECalculator.get_hessian`) and its harmonic frequencies
(:func:`muse_ff.analysis.harmonic_analysis`, rigid motions projected out); the teacher's frequencies come
from its finite-difference Hessian through the same analysis. Frequencies are paired in ascending order.
Reported per molecule: MAE over all vibrational modes and over the teacher's modes below 300 cm^-1 (the
collective, low-frequency modes), imaginary modes, and the RMSD of the relaxed geometry.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ase import Atoms
from rich.console import Console

from muse_ff.bench.common import Budget, Report, fmt, pyplot, save_figure, train_pair, trained_rows

FOLDER = "hessians"
LOW = 300.0  # cm^-1: "low-frequency" modes are the teacher's modes below this
BUDGETS = {
    "quick": Budget(features=8, layers=1, num_basis=6, epochs=2, batch_size=8, max_train=24, max_valid=8,
                    dtype="float64"),
    "default": Budget(features=32, layers=2, num_basis=12, epochs=120, batch_size=8, dtype="float64"),
    "full": Budget(features=64, layers=3, num_basis=16, epochs=600, batch_size=8, dtype="float64"),
}
QUICK_MOLECULES = ("water", "naphthalene")


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


def rows_and_results(minima: dict, per_model: dict[str, dict]) -> tuple[list[list], list[list]]:
    rows, overall = [], []
    for mol, t in minima.items():
        for name, res in per_model.items():
            r = res[mol]
            e = r["errors"]
            rows.append([mol, len(t["atoms"]), name, fmt(e["mae_all"], 1), fmt(e["mae_low"], 1), e["n_low"],
                         e["n_imaginary"], fmt(r["rmsd"], 3), "yes" if r["converged"] else "NO"])
    for name, res in per_model.items():
        all_err = np.concatenate([np.abs(np.sort(res[m]["frequencies"]) - np.sort(minima[m]["frequencies"]))
                                  for m in minima])
        low_err = np.concatenate([
            np.abs(np.sort(res[m]["frequencies"]) - np.sort(minima[m]["frequencies"]))[
                np.sort(minima[m]["frequencies"]) < LOW] for m in minima])
        overall.append([name, fmt(float(all_err.mean()), 1), fmt(float(low_err.mean()) if low_err.size else None, 1),
                        low_err.size, fmt(float(np.mean([res[m]["errors"]["mae_all"] for m in minima])), 1)])
    return rows, overall


def plot(minima: dict, per_model: dict[str, dict], path: Path) -> Path:
    """Left: model vs teacher frequencies, all molecules; right: low-frequency sticks of the largest molecule."""
    plt = pyplot()
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 4.2))
    top = max(float(np.max(m["frequencies"])) for m in minima.values())
    ax.plot([0, top], [0, top], color="grey", lw=0.8)
    for name, res in per_model.items():
        ref = np.concatenate([np.sort(minima[m]["frequencies"]) for m in minima])
        pred = np.concatenate([np.sort(res[m]["frequencies"]) for m in minima])
        ax.scatter(ref, pred, s=8, alpha=0.6, label=name, marker="s" if "MuSE" in name else "^")
    ax.set_xlabel("teacher (GFN2-xTB, FD Hessian) frequency (cm$^{-1}$)")
    ax.set_ylabel("model frequency (cm$^{-1}$)")
    ax.legend(fontsize=8)
    big = max(minima, key=lambda m: len(minima[m]["atoms"]))
    spectra = {"teacher": np.sort(minima[big]["frequencies"])}
    spectra.update({n: np.sort(r[big]["frequencies"]) for n, r in per_model.items()})
    for k, (name, f) in enumerate(spectra.items()):
        f = f[f < 2 * LOW]
        ax2.vlines(f, k, k + 0.8, color=f"C{k - 1}" if k else "black", lw=1.0)
    ax2.set_yticks(np.arange(len(spectra)) + 0.4, list(spectra))
    ax2.axvline(LOW, color="grey", ls=":", lw=0.8)
    ax2.set_xlabel("frequency (cm$^{-1}$)")
    ax2.set_title(f"{big}: modes below {2 * LOW:g} cm$^{{-1}}$")
    return save_figure(fig, path)


def run(out: Path, mode: str = "default", data_dir: Path = Path("data"), progress: bool = False,
        retrain: bool = False, console: Console | None = None) -> dict:
    """Train the models on the normal-mode samples, relax each molecule, compare harmonic frequencies."""
    from muse_ff.teachers.labelling import read_frames

    console = console or Console()
    report = Report("hessian", mode)
    folder = Path(data_dir) / FOLDER
    names = QUICK_MOLECULES if mode == "quick" else None
    frames = [a for a in read_frames(folder / "hessians.extxyz.xz") if names is None or a.info["molecule"] in names]
    split = {s: [a for a in frames if a.info["split"] == s and a.info["role"] != "minimum"]
             for s in ("train", "valid")}
    trained = train_pair(split["train"], split["valid"], out, BUDGETS[mode], progress, retrain, console)
    minima = teacher_minima(folder, names)
    per_model: dict[str, dict] = {}
    for name, t in trained.items():
        per_model[name] = {}
        for mol, ref in minima.items():
            console.print(f"{name}: relax {mol} and take its Hessian")
            r = model_frequencies(t.path, ref["atoms"])
            r["errors"] = frequency_errors(r["frequencies"], ref["frequencies"])
            per_model[name][mol] = r
    rows, overall = rows_and_results(minima, per_model)
    report.add_table("training (validation frames): E meV/atom, F meV/Å",
                     ["model", "params", "train s", "val E MAE", "val F MAE"], trained_rows(trained))
    report.add_table(f"harmonic frequencies vs the teacher's FD Hessian, all molecules (cm^-1; low = teacher "
                     f"modes < {LOW:g})", ["model", "MAE all modes", "MAE low modes", "low modes",
                                           "mean of per-molecule MAE"], overall)
    report.add_table("per molecule (cm^-1; geometry RMSD of the model minimum to the teacher's, Å)",
                     ["molecule", "atoms", "model", "MAE all", f"MAE < {LOW:g}", "n low", "imaginary", "RMSD",
                      "relaxed"], rows)
    report.plots.append(str(plot(minima, per_model, out / "hessian_frequencies.png")))
    report.results = {"teacher": {m: v["frequencies"] for m, v in minima.items()},
                      "models": {n: {m: {k: v for k, v in r.items()} for m, r in res.items()}
                                 for n, res in per_model.items()},
                      "training": {k: t.summary for k, t in trained.items()}, "budget": BUDGETS[mode]}
    return report.write(out, console)
