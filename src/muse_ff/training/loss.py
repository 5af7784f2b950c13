"""Training loss and running error statistics.

The loss is a weighted sum of mean squared errors of
energy per atom (eV/atom), force components (eV/Å) and stress components (eV/Å^3). Missing labels
(NaN after batching, see :func:`muse_ff.data.collate`) are masked out.
"""

from __future__ import annotations

import torch

from muse_ff.data.graph import Graph
from muse_ff.training.config import LossWeights

#: quantities tracked by :class:`ErrorSums` (name -> unit factor to meV)
QUANTITIES = ("energy", "forces", "stress")


def _masked_sq(pred: torch.Tensor, ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of squared errors, count) over entries whose reference is finite."""
    ok = torch.isfinite(ref)
    diff = torch.where(ok, pred.double() - torch.nan_to_num(ref.double()), torch.zeros((), dtype=torch.float64,
                                                                                        device=pred.device))
    return diff.pow(2).sum(), ok.sum()


def residuals(out: dict[str, torch.Tensor], batch: Graph) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per-quantity (prediction, reference) pairs present in both: energy per atom, forces, stress."""
    pairs = {}
    if batch.energy is not None:
        n = batch.n_atoms.to(torch.float64)
        pairs["energy"] = (out["energy"] / n, batch.energy / n)
    if batch.forces is not None and "forces" in out:
        pairs["forces"] = (out["forces"], batch.forces)
    if batch.stress is not None and "stress" in out:
        pairs["stress"] = (out["stress"], batch.stress)
    return pairs


def loss_terms(out: dict[str, torch.Tensor], batch: Graph, weights: LossWeights) -> dict[str, torch.Tensor]:
    """``{"loss": weighted sum, "energy"/"forces"/"stress": MSE}`` for one batch (float64)."""
    terms = {}
    total = torch.zeros((), dtype=torch.float64, device=batch.positions.device)
    for name, (pred, ref) in residuals(out, batch).items():
        w = getattr(weights, name)
        if w == 0:
            continue
        sq, count = _masked_sq(pred, ref)
        mse = sq / count.clamp(min=1)
        terms[name] = mse.detach()
        total = total + w * mse
    terms["loss"] = total
    return terms


class ErrorSums:
    """Running sums of absolute and squared errors per quantity, reducible across processes."""

    def __init__(self, device=None):
        # rows: energy, forces, stress; columns: sum |e|, sum e^2, count
        self.sums = torch.zeros(len(QUANTITIES), 3, dtype=torch.float64, device=device)

    def update(self, out: dict[str, torch.Tensor], batch: Graph) -> None:
        for name, (pred, ref) in residuals(out, batch).items():
            ok = torch.isfinite(ref)
            err = (pred.detach().double() - ref.double())[ok]
            row = QUANTITIES.index(name)
            self.sums[row] += torch.stack([err.abs().sum(), err.pow(2).sum(),
                                           torch.tensor(float(err.numel()), dtype=torch.float64,
                                                        device=err.device)])

    def metrics(self, prefix: str) -> dict[str, float]:
        """MAE and RMSE in meV/atom (energy), meV/Å (forces), meV/Å^3 (stress) for quantities seen."""
        out = {}
        for row, name in enumerate(QUANTITIES):
            abs_sum, sq_sum, count = self.sums[row].tolist()
            if count > 0:
                out[f"{prefix}{name}_mae"] = 1000.0 * abs_sum / count
                out[f"{prefix}{name}_rmse"] = 1000.0 * (sq_sum / count) ** 0.5
        return out
