"""Plots (matplotlib, Agg backend: no display needed): parity plots and the demo comparison."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _parity(ax, pred: np.ndarray, ref: np.ndarray, label: str, unit: str, name: str | None = None) -> None:
    ok = np.isfinite(ref)
    pred, ref = pred[ok], ref[ok]
    if ref.size == 0:
        return
    lo, hi = float(min(pred.min(), ref.min())), float(max(pred.max(), ref.max()))
    ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8)
    ax.scatter(ref, pred, s=6, alpha=0.6, label=name)
    ax.set_xlabel(f"reference {label} ({unit})")
    ax.set_ylabel(f"predicted {label} ({unit})")


def parity_plots(preds, folder: str | Path) -> list[Path]:
    """PNG parity plots (energy per atom, force components, stress) of :class:`Predictions`."""
    plt = _pyplot()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pe, re = preds.energy_per_atom
    panels = [("energy", pe, re, "energy", "eV/atom"),
              ("forces", preds.forces_pred.ravel(), preds.forces_ref.ravel(), "force component", "eV/Å"),
              ("stress", preds.stress_pred.ravel(), preds.stress_ref.ravel(), "stress component", "eV/Å³")]
    written = []
    for name, pred, ref, label, unit in panels:
        if not np.isfinite(ref).any():
            continue
        fig, ax = plt.subplots(figsize=(4, 4))
        _parity(ax, pred, ref, label, unit)
        fig.tight_layout()
        path = folder / f"parity_{name}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written


def demo_figure(results: dict[str, dict], path: str | Path, cutoff: float = 5.0) -> Path:
    """Interaction energy vs separation and its parity (dimer data), else energy parity, per demo model."""
    plt = _pyplot()
    with_ie = all("interaction" in r for r in results.values())
    fig, axes = plt.subplots(1, 2 if with_ie else 1, figsize=(10 if with_ie else 5, 4), squeeze=False)
    axes = axes[0]
    if with_ie:
        ax = axes[0]
        first = next(iter(results.values()))["interaction"]
        ax.scatter(first["separation"], 1000 * np.asarray(first["ref"]), s=12, color="black", label="reference")
        for name, r in results.items():
            ie = r["interaction"]
            ax.scatter(ie["separation"], 1000 * np.asarray(ie["pred"]), s=8, alpha=0.7, label=name)
        ax.axvline(cutoff, color="grey", ls="--", lw=0.8)
        ax.set_xlabel("separation (Å)")
        ax.set_ylabel("interaction energy (meV)")
        ax.set_title(f"test frames: E(AB) - E(A) - E(B); backbone cutoff {cutoff:g} Å")
        ax.legend(fontsize=8)
        for name, r in results.items():
            ie = r["interaction"]
            _parity(axes[1], 1000 * np.asarray(ie["pred"]), 1000 * np.asarray(ie["ref"]), "interaction energy",
                    "meV", name)
        axes[1].set_title("test frames: interaction-energy parity")
    else:
        for name, r in results.items():
            pred, ref = (np.asarray(x) for x in r["energy_per_atom"])
            _parity(axes[0], pred, ref, "energy", "eV/atom", name)
        axes[0].set_title("test frames: energy parity")
    axes[-1].legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
