"""Lightning plug-ins and callbacks: atomic checkpoint files, rank agreement, a test hook."""

from __future__ import annotations

import os
from typing import Any

import lightning as L
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from muse_ff.io.serialization import atomic_write


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written to a temporary file and moved into place: a kill never leaves half a file."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        atomic_write(os.fspath(path), lambda tmp: torch.save(checkpoint, tmp))


def weight_fingerprint(model: torch.nn.Module, size: int = 8) -> torch.Tensor:
    """[size] float64 random projections of all parameters (fixed seed): equal weights, equal prints."""
    flat = torch.cat([p.detach().reshape(-1).double().cpu() for p in model.parameters()])
    gen = torch.Generator().manual_seed(1234)
    proj = torch.randn(size, flat.numel(), generator=gen, dtype=torch.float64)
    return proj @ flat


class RankAgreement(L.Callback):
    """At the end of training, gathers every process's weight fingerprint (``pl_module.rank_fingerprints``)."""

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        fp = weight_fingerprint(pl_module.model).to(pl_module.device)
        gathered = pl_module.all_gather(fp)
        pl_module.rank_fingerprints = gathered.reshape(-1, fp.numel()).cpu().tolist()


class StopAfterEpoch(L.Callback):
    """Raise ``RuntimeError`` when epoch ``epoch`` (0-based) has finished training (tests of resume)."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            raise RuntimeError(f"simulated crash after epoch {self.epoch}")
