"""Plots (matplotlib, Agg backend: no display needed): parity plots and the demo comparison."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _error_text(pred: np.ndarray, ref: np.ndarray, unit: str, scale: float = 1.0) -> str | None:
    """``MAE ... / RMSE ... / N`` of the finite pairs, in ``unit`` after multiplying by ``scale``."""
    ok = np.isfinite(ref)
    if not ok.any():
        return None
    err = scale * (pred[ok] - ref[ok])
    return f"MAE {np.abs(err).mean():.3g} {unit}\nRMSE {np.sqrt((err ** 2).mean()):.3g} {unit}\nN = {err.size}"


def _parity(ax, pred: np.ndarray, ref: np.ndarray, label: str, unit: str, name: str | None = None,
            text: str | None = None, groups: np.ndarray | None = None) -> None:
    """Scatter of ``pred`` against ``ref`` with the diagonal; ``text`` (e.g. MAE/RMSE) in the upper left
    corner; ``groups`` (one name per point): one colour and legend entry per group."""
    ok = np.isfinite(ref)
    pred, ref = pred[ok], ref[ok]
    if ref.size == 0:
        return
    finite = np.isfinite(pred)
    both = np.concatenate([pred[finite], ref])
    lo, hi = float(both.min()), float(both.max())
    ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8)
    if groups is None:
        ax.scatter(ref, pred, s=6, alpha=0.6, label=name)
    else:
        groups = np.asarray(groups)[ok]
        for group in dict.fromkeys(groups.tolist()):
            sel = groups == group
            ax.scatter(ref[sel], pred[sel], s=6, alpha=0.6, label=str(group))
        ax.legend(fontsize=7, loc="lower right", title="config_type", title_fontsize=7)
    ax.set_xlabel(f"reference {label} ({unit})")
    ax.set_ylabel(f"predicted {label} ({unit})")
    if text:
        ax.text(0.04, 0.96, text, transform=ax.transAxes, va="top", ha="left", fontsize=8,
                bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.8, "edgecolor": "0.8"})


def parity_panels(preds) -> list[dict]:
    """What :func:`parity_plots` draws, one dict per panel with labels: ``name``, ``pred``, ``ref`` (the
    plotted values), ``label``, ``unit``, ``text`` (MAE/RMSE/N as in the metrics table) and ``groups``.

    Energy: (E - sum E0) / atoms in meV/atom, E0 the model's own reference energies per element (so the
    per-element offsets do not spread the points into composition clusters); E / atoms in eV/atom where
    E0 is unknown. Forces: components in eV/Å. Stress: components in eV/Å³.
    """
    atom_groups = preds.config_type[preds.atom_frame]
    if np.isfinite(preds.energy_e0).all():
        pe, re = preds.energy_minus_e0_per_atom
        energy = dict(pred=1000.0 * pe, ref=1000.0 * re, label="E − ΣE0", unit="meV/atom",
                      text=_error_text(pe, re, "meV/atom", 1000.0))
    else:
        pe, re = preds.energy_per_atom
        energy = dict(pred=pe, ref=re, label="energy", unit="eV/atom", text=_error_text(pe, re, "meV/atom", 1000.0))
    panels = [dict(name="energy", groups=preds.config_type, **energy),
              dict(name="forces", pred=preds.forces_pred.ravel(), ref=preds.forces_ref.ravel(),
                   label="force component", unit="eV/Å", groups=np.repeat(atom_groups, 3),
                   text=_error_text(preds.forces_pred.ravel(), preds.forces_ref.ravel(), "meV/Å", 1000.0)),
              dict(name="stress", pred=preds.stress_pred.ravel(), ref=preds.stress_ref.ravel(),
                   label="stress component", unit="eV/Å³", groups=np.repeat(preds.config_type, 9),
                   text=_error_text(preds.stress_pred.ravel(), preds.stress_ref.ravel(), "meV/Å³", 1000.0))]
    return [p for p in panels if np.isfinite(p["ref"]).any()]


def parity_plots(preds, folder: str | Path) -> list[Path]:
    """PNG parity plots ``parity_{energy,forces,stress}.png`` of :class:`Predictions` (see
    :func:`parity_panels`), MAE and RMSE printed on each, points coloured by config type when there are
    several; a quantity without labels gets no plot."""
    plt = _pyplot()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for panel in parity_panels(preds):
        groups = panel["groups"] if len(set(preds.config_type.tolist())) > 1 else None
        fig, ax = plt.subplots(figsize=(4, 4))
        _parity(ax, panel["pred"], panel["ref"], panel["label"], panel["unit"], text=panel["text"], groups=groups)
        fig.tight_layout()
        path = folder / f"parity_{panel['name']}.png"
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
        # (E - sum E0) / atoms in meV/atom where the results carry it ("energy_minus_e0_per_atom", eV/atom,
        # from Predictions.energy_minus_e0_per_atom), else the total energy per atom
        e0 = all("energy_minus_e0_per_atom" in r for r in results.values())
        for name, r in results.items():
            pred, ref = (np.asarray(x, dtype=float) for x in r["energy_minus_e0_per_atom" if e0 else "energy_per_atom"])
            text = _error_text(pred, ref, "meV/atom", 1000.0)
            _parity(axes[0], 1000.0 * pred if e0 else pred, 1000.0 * ref if e0 else ref,
                    "E − ΣE0" if e0 else "energy", "meV/atom" if e0 else "eV/atom",
                    f"{name} ({text.splitlines()[0]})" if text else name)
        axes[0].set_title("test frames: energy parity")
    axes[-1].legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
