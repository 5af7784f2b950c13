"""Predictions of a model on labelled frames and their errors (energies per atom, forces, stress)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from ase import Atoms
from ase.data import chemical_symbols

from muse_ff.data.atoms import LabelKeys
from muse_ff.physics.derivatives import energy_and_derivatives


@dataclass
class Predictions:
    """Model predictions next to reference labels (NaN where a label is missing).

    energy_*: [F] eV; n_atoms: [F]; forces_*: [N, 3] eV/Å; species: [N]; stress_*: [F, 3, 3] eV/Å^3
    (NaN for frames without a stress label or not fully periodic).
    """

    energy_pred: np.ndarray
    energy_ref: np.ndarray
    n_atoms: np.ndarray
    forces_pred: np.ndarray
    forces_ref: np.ndarray
    species: np.ndarray
    stress_pred: np.ndarray
    stress_ref: np.ndarray

    @property
    def energy_per_atom(self) -> tuple[np.ndarray, np.ndarray]:
        return self.energy_pred / self.n_atoms, self.energy_ref / self.n_atoms

    def metrics(self) -> dict:
        """MAE/RMSE in meV/atom (energy), meV/Å (forces, also per element) and meV/Å^3 (stress)."""
        out: dict = {"frames": int(len(self.n_atoms)), "atoms": int(self.n_atoms.sum())}
        pe, re = self.energy_per_atom
        out.update(_errors("energy", pe, re))
        out.update(_errors("forces", self.forces_pred, self.forces_ref))
        out.update(_errors("stress", self.stress_pred, self.stress_ref))
        per_element = {}
        for z in np.unique(self.species):
            sel = self.species == z
            errs = _errors("forces", self.forces_pred[sel], self.forces_ref[sel])
            if errs:
                per_element[chemical_symbols[int(z)]] = errs
        if per_element:
            out["forces_per_element"] = per_element
        return out


def _errors(name: str, pred: np.ndarray, ref: np.ndarray) -> dict:
    ok = np.isfinite(ref)
    if not ok.any():
        return {}
    err = (pred - ref)[ok]
    return {f"{name}_mae": 1000.0 * float(np.abs(err).mean()), f"{name}_rmse": 1000.0 * float(np.sqrt((err**2).mean())),
            f"{name}_count": int(err.size)}


def _batch_predictions(model, frames: Sequence[Atoms], keys: LabelKeys) -> dict[str, np.ndarray]:
    dtype = next(model.parameters()).dtype
    device = next(model.parameters()).device
    g = model.graph_from_atoms(list(frames), keys=keys).to(device, dtype)
    stress = g.stress is not None and bool(g.pbc.all())
    out = energy_and_derivatives(model, g, forces=True, stress=stress)
    nan = lambda shape: np.full(shape, np.nan)  # noqa: E731
    as_np = lambda t: t.detach().double().cpu().numpy()  # noqa: E731
    B, N = g.num_frames, g.num_atoms
    return {
        "energy_pred": as_np(out["energy"]), "energy_ref": as_np(g.energy) if g.energy is not None else nan(B),
        "n_atoms": g.n_atoms.cpu().numpy(), "forces_pred": as_np(out["forces"]),
        "forces_ref": as_np(g.forces) if g.forces is not None else nan((N, 3)), "species": g.species.cpu().numpy(),
        "stress_pred": as_np(out["stress"]) if stress else nan((B, 3, 3)),
        "stress_ref": as_np(g.stress) if stress else nan((B, 3, 3)),
    }


def evaluate_frames(model, frames: Sequence[Atoms], keys: LabelKeys = LabelKeys(), batch_size: int = 16) -> Predictions:
    """Predict energies, forces (and stress for periodic frames with a stress label) of ``frames``.

    Frames may lack labels (they are left out of that quantity's errors), but a label that is present must
    be usable: a string, the wrong shape, NaN or inf raise :class:`~muse_ff.training.data.LabelError`
    naming the frame (``info['_source']`` or its index) and the key, instead of being dropped silently.
    """
    from muse_ff.training.data import check_label_values

    if len(frames) == 0:
        raise ValueError("no frames to evaluate")
    check_label_values(frames, keys, name="evaluated")
    parts = [_batch_predictions(model, frames[i:i + batch_size], keys) for i in range(0, len(frames), batch_size)]
    return Predictions(**{k: np.concatenate([p[k] for p in parts]) for k in parts[0]})


def predict_energies(model, frames: Sequence[Atoms], batch_size: int = 32) -> np.ndarray:
    """[F] total energies (eV) of ``frames``, without derivatives."""
    dtype = next(model.parameters()).dtype
    device = next(model.parameters()).device
    out = []
    with torch.no_grad():
        for i in range(0, len(frames), batch_size):
            g = model.graph_from_atoms(list(frames[i:i + batch_size]), keys=None).to(device, dtype)
            out.append(model(g)["energy"].double().cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def json_safe(obj):
    """``obj`` with every non-finite float (NaN, inf) replaced by ``None``, so that it is valid JSON."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def to_json(obj, **kwargs) -> str:
    """Strict JSON text of ``obj`` (``allow_nan=False``; NaN and inf become ``null``)."""
    return json.dumps(json_safe(obj), allow_nan=False, **kwargs)
