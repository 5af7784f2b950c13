"""Training loss and running error statistics.

The loss is a weighted sum of mean squared errors of energy per atom (eV/atom), force components (eV/Å),
stress components (eV/Å^3), interaction energies (eV per labelled frame) and dipole components (e Å,
free frames of models with learned charges), see :class:`~muse_ff.training.config.LossWeights`. Missing labels (NaN
after batching, see :func:`muse_ff.data.collate`) are masked out, and so are stress labels of frames that are
not periodic in all three directions. Per-frame weights (``config_type_weights``) multiply each frame's
squared errors; the means still divide by the number of labelled entries (mace's convention).
"""

from __future__ import annotations

import torch

from muse_ff.data.graph import Graph
from muse_ff.training.config import LossWeights

#: quantities tracked by :class:`ErrorSums` (name -> unit factor to meV)
QUANTITIES = ("energy", "forces", "stress", "interaction", "dipole")


def _masked_sq(pred: torch.Tensor, ref: torch.Tensor,
               weight: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of (weighted) squared errors, count) over entries whose reference is finite."""
    ok = torch.isfinite(ref)
    diff = torch.where(ok, pred.double() - torch.nan_to_num(ref.double()), torch.zeros((), dtype=torch.float64,
                                                                                        device=pred.device))
    sq = diff.pow(2)
    if weight is not None:
        sq = sq * weight
    return sq.sum(), ok.sum()


def residuals(out: dict[str, torch.Tensor], batch: Graph) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per-quantity (prediction, reference) pairs present in both: energy per atom, forces, stress.

    Stress references of frames not periodic in all three directions are NaN (never compared).
    """
    pairs = {}
    if batch.energy is not None:
        n = batch.n_atoms.to(torch.float64)
        pairs["energy"] = (out["energy"] / n, batch.energy / n)
    if batch.forces is not None and "forces" in out:
        pairs["forces"] = (out["forces"], batch.forces)
    if batch.stress is not None and "stress" in out:
        ref = batch.stress
        periodic = batch.pbc.all(dim=1)
        if not bool(periodic.all()):
            ref = torch.where(periodic[:, None, None], ref, torch.full_like(ref, float("nan")))
        pairs["stress"] = (out["stress"], ref)
    if batch.dipole is not None and "dipole" in out:  # free frames only: a periodic cell has no dipole moment
        free = ~batch.pbc.any(dim=1)
        ref = batch.dipole if bool(free.all()) else torch.where(free[:, None], batch.dipole,
                                                                 torch.full_like(batch.dipole, float("nan")))
        pairs["dipole"] = (out["dipole"], ref)
    if "interaction" in out:  # [B] predicted and reference (NaN: no label) interaction energies, eV
        pairs["interaction"] = (out["interaction"], out["interaction_ref"])
    return pairs


def entry_weights(name: str, batch: Graph, frame_weight: torch.Tensor | None) -> torch.Tensor | None:
    """Per-frame weights ``[B]`` broadcast to the entries of ``name`` (energy [B], forces [N, 1], stress
    [B, 1, 1])."""
    if frame_weight is None:
        return None
    w = frame_weight.to(device=batch.positions.device, dtype=torch.float64)
    if name in ("energy", "interaction"):
        return w
    if name == "dipole":
        return w[:, None]
    if name == "forces":
        return w[batch.batch].unsqueeze(-1)
    return w[:, None, None]


def loss_terms(out: dict[str, torch.Tensor], batch: Graph, weights: LossWeights,
               frame_weight: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """``{"loss": weighted sum, "energy"/"forces"/"stress": (frame-weighted) MSE}`` for one batch (float64).

    ``frame_weight`` ([B]) multiplies each frame's squared errors (``None``: all 1).
    """
    terms = {}
    total = torch.zeros((), dtype=torch.float64, device=batch.positions.device)
    for name, (pred, ref) in residuals(out, batch).items():
        w = getattr(weights, name)
        if w == 0:
            continue
        sq, count = _masked_sq(pred, ref, entry_weights(name, batch, frame_weight))
        mse = sq / count.clamp(min=1)
        terms[name] = mse.detach()
        total = total + w * mse
    terms["loss"] = total
    return terms


class ErrorSums:
    """Running sums of absolute and squared errors per quantity, reducible across processes."""

    def __init__(self, device=None):
        # rows: energy, forces, stress, interaction, dipole; columns: sum |e|, sum e^2, count, sum w e^2 (frame-weighted)
        self.sums = torch.zeros(len(QUANTITIES), 4, dtype=torch.float64, device=device)

    def update(self, out: dict[str, torch.Tensor], batch: Graph, frame_weight: torch.Tensor | None = None) -> None:
        for name, (pred, ref) in residuals(out, batch).items():
            ok = torch.isfinite(ref)
            err = pred.detach().double() - ref.double()
            w = entry_weights(name, batch, frame_weight)
            weighted = (err.pow(2) * (1.0 if w is None else w))[ok]
            err = err[ok]
            row = QUANTITIES.index(name)
            self.sums[row] += torch.stack([err.abs().sum(), err.pow(2).sum(),
                                           torch.tensor(float(err.numel()), dtype=torch.float64,
                                                        device=err.device), weighted.sum()])

    def weighted_mse(self, name: str) -> torch.Tensor:
        """Frame-weighted mean squared error of ``name`` (what the training loss averages)."""
        row = self.sums[QUANTITIES.index(name)]
        return row[3] / row[2].clamp(min=1)

    def metrics(self, prefix: str) -> dict[str, float]:
        """MAE and RMSE in meV/atom (energy), meV/Å (forces), meV/Å^3 (stress), meV (interaction), me Å (dipole) for
        quantities seen."""
        out = {}
        for row, name in enumerate(QUANTITIES):
            abs_sum, sq_sum, count = self.sums[row, :3].tolist()
            if count > 0:
                out[f"{prefix}{name}_mae"] = 1000.0 * abs_sum / count
                out[f"{prefix}{name}_rmse"] = 1000.0 * (sq_sum / count) ** 0.5
        return out
