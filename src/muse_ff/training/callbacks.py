"""Lightning plug-ins and callbacks: atomic checkpoint files, rank agreement, per-epoch log (CSV and one line
per epoch), a compact progress bar, a test hook."""

from __future__ import annotations

import os
import time
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import RichProgressBar
from lightning.pytorch.callbacks.progress.rich_progress import ProcessingSpeedColumn
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


#: validation quantities in the order they are logged and printed, with their units
_VAL_UNITS = (("energy", "E", "meV/atom"), ("forces", "F", "meV/Å"), ("stress", "S", "meV/Å³"),
              ("interaction", "Eint", "meV"), ("dipole", "mu", "me·Å"))


def _fmt(value: float | None, spec: str = ".4g") -> str:
    return "-" if value is None else format(value, spec)


class EpochLog(L.Callback):
    """One row per epoch in ``csv_path`` and, with ``echo``, one line per epoch on stdout (main process).

    The row is taken when the epoch (training and validation) is over, before the learning-rate schedule
    steps: ``epoch`` (0-based, as in the checkpoint names), ``step`` (optimiser steps so far), ``lr`` (the
    rate used in the epoch), ``train_loss`` (the epoch mean), ``val_loss`` and the validation MAE/RMSE per
    quantity (meV/atom, meV/Å, meV/Å³) when there are validation frames, and ``time_s`` (wall time of the
    epoch). Columns are fixed by the first row; each row is appended and flushed as soon as it is complete.
    The line says the same in short, with ``best`` when the validation loss improved on every earlier epoch
    (the best checkpoint's score, so also across a resume).
    """

    def __init__(self, csv_path, echo: bool = True):
        self.csv_path = os.fspath(csv_path)
        self.echo = echo
        self._columns: list[str] | None = None
        self._rows: list[dict] = []
        self._start = 0.0
        self._max_epochs = 1

    # -- what an epoch gives -------------------------------------------------------------------------------
    @staticmethod
    def _best_score(trainer: L.Trainer) -> float | None:
        from lightning.pytorch.callbacks import ModelCheckpoint

        for cb in trainer.callbacks:
            if isinstance(cb, ModelCheckpoint) and cb.monitor == "val_loss" and cb.best_model_score is not None:
                return float(cb.best_model_score)
        return None

    def row(self, trainer: L.Trainer) -> dict:
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        opt = trainer.optimizers[0] if trainer.optimizers else None
        row = {"epoch": trainer.current_epoch, "step": trainer.global_step,
               "lr": opt.param_groups[0]["lr"] if opt is not None else None,
               "train_loss": metrics.get("train_loss")}
        if "val_loss" in metrics:
            row["val_loss"] = metrics["val_loss"]
        for name, _, _ in _VAL_UNITS:
            for stat in ("mae", "rmse"):
                key = f"val_{name}_{stat}"
                if key in metrics:
                    row[key] = metrics[key]
        row["time_s"] = round(time.perf_counter() - self._start, 3)
        return row

    def line(self, row: dict, best: bool) -> str:
        """``epoch 3  lr 5.00e-03  loss train 0.8312 valid 0.9034  MAE E 12.3 meV/atom F 145.2 meV/Å  2.1 s``"""
        width = len(str(max(0, self._max_epochs - 1)))
        text = (f"epoch {row['epoch']:>{width}d}  lr {_fmt(row['lr'], '.2e')}  "
                f"loss train {_fmt(row['train_loss'])}")
        if "val_loss" in row:
            text += f" valid {_fmt(row['val_loss'])}"
            maes = [f"{short} {row[f'val_{name}_mae']:.1f} {unit}" for name, short, unit in _VAL_UNITS
                    if f"val_{name}_mae" in row]
            if maes:
                text += "  MAE " + " ".join(maes)
        return text + f"  {row['time_s']:.1f} s" + ("  best" if best else "")

    @staticmethod
    def say(trainer: L.Trainer, text: str) -> None:
        """Print one line; above the progress bar while there is one, wrapped by the terminal, not by rich."""
        bar = trainer.progress_bar_callback
        console = getattr(bar, "_console", None) if isinstance(bar, RichProgressBar) else None
        if console is not None and bar.progress is not None and not getattr(bar, "_progress_stopped", True):
            console.print(text, soft_wrap=True, markup=False, highlight=False, emoji=False)
        else:
            print(text, flush=True)

    # -- CSV ------------------------------------------------------------------------------------------------
    def _write(self, row: dict) -> None:
        import csv

        new = self._columns is None or any(k not in self._columns for k in row)
        self._rows.append(row)
        if new:  # first row, or a column appeared (say, stress validated from now on): write all rows again
            seen = dict.fromkeys(self._columns or [])
            seen.update(dict.fromkeys(row))
            self._columns = list(seen)
            os.makedirs(os.path.dirname(self.csv_path) or ".", exist_ok=True)
            with open(self.csv_path, "w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=self._columns, restval="")
                writer.writeheader()
                writer.writerows(self._rows)
            return
        with open(self.csv_path, "a", newline="") as fh:
            csv.DictWriter(fh, fieldnames=self._columns, restval="").writerow(row)

    # -- hooks ----------------------------------------------------------------------------------------------
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._max_epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else 1
        if not (trainer.is_global_zero and self.echo):
            return
        first, last = trainer.current_epoch, self._max_epochs - 1
        what = "resuming from the last checkpoint:" if first > 0 else "training"
        epochs = f"epoch {first}" if first == last else f"epochs {first}-{last}"
        world, steps = trainer.world_size, trainer.num_training_batches
        self.say(trainer, f"{what} {epochs} on {trainer.strategy.root_device} ({world} "
                 f"process{'es' if world > 1 else ''}, {steps} step{'s' if steps != 1 else ''} per epoch); one "
                 f"line per epoch, every column in {self.csv_path}")

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        row = self.row(trainer)
        self._write(row)
        if self.echo:
            best = self._best_score(trainer)
            improved = "val_loss" in row and (best is None or row["val_loss"] < best)
            self.say(trainer, self.line(row, improved))


class CompactProgressBar(RichProgressBar):
    """Lightning's rich progress bar with a short postfix (the running loss only) and no speed column, so it
    fits on one line of a terminal; the per-epoch lines of :class:`EpochLog` carry the validation errors."""

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict:
        loss = trainer.progress_bar_metrics.get("loss")
        return {} if loss is None else {"loss": float(loss)}

    def configure_columns(self, trainer: L.Trainer) -> list:
        return [c for c in super().configure_columns(trainer) if not isinstance(c, ProcessingSpeedColumn)]
