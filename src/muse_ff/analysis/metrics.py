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

#: ``config_type`` of frames whose info has none (mace's name)
DEFAULT_CONFIG_TYPE = "Default"


@dataclass
class Predictions:
    """Model predictions next to reference labels (NaN where a label is missing).

    energy_*: [F] eV; n_atoms: [F]; forces_*: [N, 3] eV/Å; species: [N]; stress_*: [F, 3, 3] eV/Å^3
    (``stress_pred`` is NaN for frames that are not periodic in all three directions, ``stress_ref`` for
    frames without a stress label). energy_e0: [F] eV, the sum of the model's reference energies E0(Z)
    over each frame's atoms (NaN where unknown); config_type: [F] ``info['config_type']`` of each frame
    (``"Default"`` where absent).
    """

    energy_pred: np.ndarray
    energy_ref: np.ndarray
    n_atoms: np.ndarray
    forces_pred: np.ndarray
    forces_ref: np.ndarray
    species: np.ndarray
    stress_pred: np.ndarray
    stress_ref: np.ndarray
    energy_e0: np.ndarray | None = None
    config_type: np.ndarray | None = None

    def __post_init__(self):
        frames = len(self.n_atoms)
        if self.energy_e0 is None:
            self.energy_e0 = np.full(frames, np.nan)
        if self.config_type is None:
            self.config_type = np.full(frames, DEFAULT_CONFIG_TYPE, dtype=object)

    @property
    def energy_per_atom(self) -> tuple[np.ndarray, np.ndarray]:
        return self.energy_pred / self.n_atoms, self.energy_ref / self.n_atoms

    @property
    def energy_minus_e0_per_atom(self) -> tuple[np.ndarray, np.ndarray]:
        """(predicted, reference) (E - sum E0) / atoms in eV/atom: the energy the model learns beyond its
        per-element reference energies (NaN where E0 is unknown). Its errors equal those of E per atom."""
        return (self.energy_pred - self.energy_e0) / self.n_atoms, (self.energy_ref - self.energy_e0) / self.n_atoms

    @property
    def atom_frame(self) -> np.ndarray:
        """[N] index of the frame of each atom."""
        return np.repeat(np.arange(len(self.n_atoms)), self.n_atoms)

    def frame_forces(self) -> list[np.ndarray]:
        """Predicted forces split per frame: a list of [n_atoms, 3] arrays."""
        return np.split(self.forces_pred, np.cumsum(self.n_atoms)[:-1])

    def select(self, frames: np.ndarray) -> Predictions:
        """The predictions of the frames where the boolean mask ``frames`` [F] is true."""
        frames = np.asarray(frames, dtype=bool)
        atoms = frames[self.atom_frame]
        return Predictions(
            energy_pred=self.energy_pred[frames], energy_ref=self.energy_ref[frames], n_atoms=self.n_atoms[frames],
            forces_pred=self.forces_pred[atoms], forces_ref=self.forces_ref[atoms], species=self.species[atoms],
            stress_pred=self.stress_pred[frames], stress_ref=self.stress_ref[frames],
            energy_e0=self.energy_e0[frames], config_type=self.config_type[frames])

    @property
    def config_types(self) -> list[str]:
        """The frames' config types in order of first appearance."""
        return list(dict.fromkeys(self.config_type.tolist()))

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

    def metrics_by_config_type(self) -> dict[str, dict]:
        """:meth:`metrics` of the frames of each config type (mace's per-config-type tables), in order of
        first appearance."""
        return {name: self.select(self.config_type == name).metrics() for name in self.config_types}


def _errors(name: str, pred: np.ndarray, ref: np.ndarray) -> dict:
    ok = np.isfinite(ref)
    if not ok.any():
        return {}
    err = (pred - ref)[ok]
    return {f"{name}_mae": 1000.0 * float(np.abs(err).mean()), f"{name}_rmse": 1000.0 * float(np.sqrt((err**2).mean())),
            f"{name}_count": int(err.size)}


def _batch_predictions(model, frames: Sequence[Atoms], keys: LabelKeys, stress: bool) -> dict[str, np.ndarray]:
    """Predictions of ``frames`` (one batch); ``stress``: all of them are periodic in three directions."""
    from muse_ff.data.atoms import StructureError, collate

    device = next(model.parameters()).device
    graphs = []
    for k, a in enumerate(frames):
        try:
            graphs.append(model.graph_from_atoms(a, keys=keys))
        except StructureError as err:  # name the frame by its place in the file, not in the batch
            raise StructureError(f"{a.info.get('_source', f'frame {k}')}: {err}") from None
    g = collate(graphs).to(device)  # geometry stays float64: differences are rounded to the model dtype, not coordinates
    out = energy_and_derivatives(model, g, forces=True, stress=stress)
    nan = lambda shape: np.full(shape, np.nan)  # noqa: E731
    as_np = lambda t: t.detach().double().cpu().numpy()  # noqa: E731
    B, N = g.num_frames, g.num_atoms
    return {
        "energy_pred": as_np(out["energy"]), "energy_ref": as_np(g.energy) if g.energy is not None else nan(B),
        "n_atoms": g.n_atoms.cpu().numpy(), "forces_pred": as_np(out["forces"]),
        "forces_ref": as_np(g.forces) if g.forces is not None else nan((N, 3)), "species": g.species.cpu().numpy(),
        "stress_pred": as_np(out["stress"]) if stress else nan((B, 3, 3)),
        "stress_ref": as_np(g.stress) if stress and g.stress is not None else nan((B, 3, 3)),
    }


#: per-frame (not per-atom) fields of :func:`_batch_predictions`
_FRAME_FIELDS = ("energy_pred", "energy_ref", "n_atoms", "stress_pred", "stress_ref")


def _reference_sums(model, frames: Sequence[Atoms]) -> np.ndarray:
    """[F] sum of the model's reference energies E0(Z) over each frame's atoms (NaN without a reference)."""
    ref = getattr(model, "reference", None)
    if ref is None or getattr(ref, "e0", None) is None:
        return np.full(len(frames), np.nan)
    e0 = dict(zip((int(z) for z in model.species), ref.e0.detach().double().cpu().tolist()))
    return np.array([sum(e0.get(int(z), np.nan) for z in a.numbers) for a in frames], dtype=np.float64)


def evaluate_frames(model, frames: Sequence[Atoms], keys: LabelKeys = LabelKeys(), batch_size: int = 16,
                    config_type_key: str = "config_type", predict_stress: bool = False) -> Predictions:
    """Predict energies, forces and, for frames periodic in all three directions, stress of ``frames``.

    Frames may lack labels (they are left out of that quantity's errors), but a label that is present must
    be usable: a string, the wrong shape, NaN or inf raise :class:`~muse_ff.training.data.LabelError`
    naming the frame (``info['_source']`` or its index) and the key, instead of being dropped silently.
    Periodic and non-periodic frames are batched apart (results are in the order of ``frames``), so every
    periodic frame with a stress label has its stress evaluated, and with ``predict_stress`` every periodic
    frame gets a predicted stress, labelled or not (else only batches holding a stress label do).
    """
    from muse_ff.training.data import check_label_values

    if len(frames) == 0:
        raise ValueError("no frames to evaluate")
    frames = list(frames)
    check_label_values(frames, keys, name="evaluated")
    periodic = [bool(np.all(a.pbc)) for a in frames]
    order, parts = [], []
    for flag in (False, True):
        idx = [k for k, p in enumerate(periodic) if p == flag]
        for i in range(0, len(idx), batch_size):
            chunk = idx[i:i + batch_size]
            stress = flag and (predict_stress or any(keys.stress in frames[k].info for k in chunk))
            part = _batch_predictions(model, [frames[k] for k in chunk], keys, stress=stress)
            # per-frame pieces: atom fields split by the frames' atom counts
            cuts = np.cumsum(part["n_atoms"])[:-1]
            per_frame = {f: list(part[f]) if f in _FRAME_FIELDS else np.split(part[f], cuts) for f in part}
            parts.extend({f: per_frame[f][j] for f in part} for j in range(len(chunk)))
            order.extend(chunk)
    slot = np.argsort(order)  # slot[k]: where frame k's results are in parts
    fields = {}
    for f in parts[0]:
        pieces = [parts[s][f] for s in slot]
        fields[f] = np.stack(pieces) if f in _FRAME_FIELDS else np.concatenate(pieces)
    config = np.array([str(a.info.get(config_type_key, DEFAULT_CONFIG_TYPE)) for a in frames], dtype=object)
    return Predictions(**fields, energy_e0=_reference_sums(model, frames), config_type=config)


def predict_energies(model, frames: Sequence[Atoms], batch_size: int = 32) -> np.ndarray:
    """[F] total energies (eV) of ``frames``, without derivatives."""
    device = next(model.parameters()).device
    out = []
    with torch.no_grad():
        for i in range(0, len(frames), batch_size):
            g = model.graph_from_atoms(list(frames[i:i + batch_size]), keys=None).to(device)
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
