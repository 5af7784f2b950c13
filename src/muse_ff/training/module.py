"""The one training path for every model: a PyTorch Lightning module and data module.

Lightning brings multi-device / multi-node training (DDP), checkpoint-resume of optimiser, scheduler and
loop state, gradient clipping and logging; this module only says what a step is. Validation takes forces
by autograd, so the trainer must run with ``inference_mode=False`` (and the step re-enables gradients).
"""

from __future__ import annotations

import lightning as L
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, DistributedSampler

from muse_ff.data.graph import Graph
from muse_ff.physics.derivatives import _strained, _volume, energy_and_derivatives
from muse_ff.training.config import TrainingConfig
from muse_ff.training.data import GraphDataset, TrainBatch, collate_items
from muse_ff.training.errors import TrainingDivergedError
from muse_ff.training.loss import QUANTITIES, ErrorSums, loss_terms


def make_ema(model: torch.nn.Module, decay: float | None) -> AveragedModel | None:
    """Exponential moving average of ``model``'s parameters (``None`` when ``decay`` is ``None``)."""
    if decay is None:
        return None
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=False)
    for p in ema.parameters():
        p.requires_grad_(False)  # not trained: DDP and the optimiser leave it alone
    return ema


def _sync_buffers(ema: AveragedModel, model: torch.nn.Module) -> None:
    """Copy buffers (reference energies, scale, shift, species index) from the model, unaveraged."""
    with torch.no_grad():
        for b_ema, b in zip(ema.module.buffers(), model.buffers()):
            b_ema.copy_(b)


def derivatives(model, batch: Graph, *, forces: bool, stress: bool, create_graph: bool) -> dict[str, torch.Tensor]:
    """:func:`~muse_ff.physics.derivatives.energy_and_derivatives`, also for stress in batches that mix fully
    periodic frames with others: every frame is strained (a frame without a cell only has its positions
    moved, which changes nothing at zero strain), and ``stress`` is ``dE/d(strain) / V`` for the periodic
    frames and 0 for the others (whose stress labels the loss ignores)."""
    periodic = batch.pbc.all(dim=1)
    if not stress or bool(periodic.all()):
        return energy_and_derivatives(model, batch, forces=forces, stress=stress, create_graph=create_graph)
    positions = batch.positions.detach().requires_grad_(True)
    strain = torch.zeros_like(batch.cell, requires_grad=True)
    pos_in, cell_in = _strained(batch, positions, batch.cell, strain)
    out = model(batch, positions=pos_in, cell=cell_in)
    g_pos, g_strain = torch.autograd.grad(out["energy"].sum(), [positions, strain], create_graph=create_graph,
                                          allow_unused=True)
    if forces:
        out["forces"] = -(g_pos if g_pos is not None else torch.zeros_like(positions))
    g_strain = g_strain if g_strain is not None else torch.zeros_like(batch.cell)
    one = torch.ones((), dtype=batch.cell.dtype, device=batch.cell.device)
    volume = torch.where(periodic, _volume(batch.cell), one)  # no 1/0 for cell-less frames (nor NaN gradients)
    sigma = g_strain / volume.unsqueeze(-1).unsqueeze(-1).to(g_strain.dtype)
    out["stress"] = torch.where(periodic[:, None, None], sigma, torch.zeros_like(sigma))
    return out


class MuSEModule(L.LightningModule):
    """Trains a :class:`~muse_ff.nn.model.MuSEModel` on energies, forces and stresses."""

    def __init__(self, model, config: TrainingConfig, has_validation: bool = True):
        super().__init__()
        self.model = model
        self.config = config
        self.has_validation = has_validation
        self.ema = make_ema(model, config.ema_decay)
        self.val_errors: ErrorSums | None = None
        self.val_counts: dict[str, int] = {}  # values averaged by the last validation ({"energy_count": ...})

    @property
    def eval_model(self):
        """The weights that are validated and saved: the EMA when enabled."""
        if self.ema is None:
            return self.model
        _sync_buffers(self.ema, self.model)
        return self.ema.module

    def predict_batch(self, model, batch: Graph, create_graph: bool) -> dict[str, torch.Tensor]:
        """Energies and the derivatives that have labels (in training: only those with loss weight); stress
        where some frame of the batch is periodic in all three directions."""
        w = self.config.loss
        stress = (batch.stress is not None and bool(batch.pbc.all(dim=1).any())
                  and (w.stress > 0 or not create_graph))
        forces = batch.forces is not None and (w.forces > 0 or not create_graph)
        return derivatives(model, batch, forces=forces, stress=stress, create_graph=create_graph)

    def _diverged(self, what: str) -> TrainingDivergedError:
        clip = "none" if self.config.grad_clip is None else f"{self.config.grad_clip:g}"
        return TrainingDivergedError(
            f"training diverged at epoch {self.current_epoch}, step {self.global_step}: {what} not finite; "
            f"lower training.lr (now {self.config.lr:g}) or set a smaller training.grad_clip (now {clip}) and "
            "start again with --force (a resumed run keeps the old learning rate)")

    def add_interaction(self, model, out: dict, batch: TrainBatch) -> dict:
        """``out`` with ``interaction`` [B] = E(frame) - sum of its components' energies and ``interaction_ref``
        (NaN where a frame has no label), when the batch carries interaction labels and fragments."""
        if batch.fragments is None or batch.interaction is None:
            return out
        e_parts = model(batch.fragments)["energy"]
        parts = torch.zeros_like(out["energy"]).index_add_(0, batch.fragment_frame, e_parts.to(out["energy"].dtype))
        out["interaction"] = out["energy"] - parts
        out["interaction_ref"] = batch.interaction
        return out

    def training_step(self, batch: TrainBatch, batch_idx: int) -> torch.Tensor:
        graph = batch.graph
        out = self.predict_batch(self.model, graph, create_graph=True)
        if self.config.loss.interaction > 0:
            out = self.add_interaction(self.model, out, batch)
        terms = loss_terms(out, graph, self.config.loss, frame_weight=batch.weight)
        if not torch.isfinite(terms["loss"]):
            raise self._diverged("the loss is")
        n = graph.num_frames
        self.log("loss", terms["loss"], prog_bar=True, logger=False, batch_size=n)
        self.log("train_loss", terms["loss"], on_step=False, on_epoch=True, sync_dist=True, batch_size=n)
        return terms["loss"]

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        # checked right after the optimiser step, before the EMA, a validation or a checkpoint can see the
        # weights (and before NaN weights give NaN coarse positions deep inside a neighbour list): no checkpoint
        # or model file ever holds non-finite weights. One reduction (one host sync per step), names on failure.
        if not torch.stack([torch.isfinite(p).all() for p in self.model.parameters()]).all():
            bad = [name for name, p in self.model.named_parameters() if not torch.isfinite(p).all()]
            raise self._diverged(f"parameters {bad[:3]}{' ...' if len(bad) > 3 else ''} are")
        if self.ema is not None:
            self.ema.update_parameters(self.model)

    def on_validation_epoch_start(self) -> None:
        self.val_errors = ErrorSums(self.device)

    def validation_step(self, batch: TrainBatch, batch_idx: int) -> None:
        with torch.enable_grad():
            out = self.predict_batch(self.eval_model, batch.graph, create_graph=False)
        out = self.add_interaction(self.eval_model, out, batch)
        self.val_errors.update(out, batch.graph, frame_weight=batch.weight)

    def on_validation_epoch_end(self) -> None:
        sums = self.trainer.strategy.reduce(self.val_errors.sums, reduce_op="sum")
        self.val_errors.sums = sums
        metrics = self.val_errors.metrics("val_")
        loss = sum(getattr(self.config.loss, q) * self.val_errors.weighted_mse(q) for q in QUANTITIES)
        if not torch.isfinite(torch.as_tensor(loss)):
            # finite but huge weights: raised before the checkpoint callbacks, and before early stopping's
            # check_finite would end the run as if it had finished and save a model that predicts NaN
            raise self._diverged("the validation loss is")
        # not in the progress bar: the per-epoch line (callbacks.EpochLog) shows them
        self.log("val_loss", loss)
        for name, value in metrics.items():
            self.log(name, value)
        self.val_counts = {f"{q}_count": int(n) for q, n in zip(QUANTITIES, sums[:, 2].tolist()) if n > 0}

    def on_train_epoch_end(self) -> None:
        """Step ReduceLROnPlateau here, before the epoch's checkpoint is written.

        Lightning steps plateau schedulers only after the ``on_train_epoch_end`` callbacks, i.e. after
        ``ModelCheckpoint`` has saved the epoch: the checkpoint then holds the scheduler as it was before
        this epoch's step, and a resumed run silently skips that step (a different learning rate from there
        on). This hook runs before the checkpoint callbacks, so the saved state includes the step;
        :meth:`lr_scheduler_step` leaves plateau schedulers alone so they are not stepped twice.
        """
        for config in self.trainer.lr_scheduler_configs:
            if not config.reduce_on_plateau:
                continue
            value = self.trainer.callback_metrics.get(config.monitor)
            if value is None:
                raise RuntimeError(f"ReduceLROnPlateau monitors {config.monitor!r}, which was not logged this "
                                   f"epoch (logged: {sorted(self.trainer.callback_metrics)})")
            config.scheduler.step(float(value))

    def lr_scheduler_step(self, scheduler, metric) -> None:
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            return  # already stepped in on_train_epoch_end, before the checkpoint
        scheduler.step()

    def configure_optimizers(self):
        c = self.config
        opt = torch.optim.AdamW(self.model.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        if c.schedule == "constant":
            return opt
        if c.schedule == "cosine":
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=c.epochs, eta_min=c.min_lr)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=c.plateau_factor,
                                                           patience=c.plateau_patience, min_lr=c.min_lr)
        monitor = "val_loss" if self.has_validation else "train_loss"
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch", "monitor": monitor}}


class GraphDataModule(L.LightningDataModule):
    """Loaders over precomputed graphs, each process taking its share of every global batch.

    ``batch_size`` is the global batch (frames per optimiser step over all processes). Shuffling is a
    permutation drawn from ``seed`` and the epoch (``DistributedSampler``), identical on every process and
    after a resume.
    """

    def __init__(self, train: GraphDataset, valid: GraphDataset | None, batch_size: int, shuffle: bool,
                 seed: int, num_workers: int = 0, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.train, self.valid, self.dtype = train, valid, dtype
        self.batch_size, self.shuffle, self.seed, self.num_workers = batch_size, shuffle, seed, num_workers

    def _loader(self, dataset: GraphDataset, shuffle: bool) -> DataLoader:
        world, rank = self.trainer.world_size, self.trainer.global_rank
        sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=shuffle, seed=self.seed)
        return DataLoader(dataset, batch_size=max(1, self.batch_size // world), sampler=sampler,
                          collate_fn=collate_items, num_workers=self.num_workers)

    def transfer_batch_to_device(self, batch: TrainBatch, device, dataloader_idx: int) -> TrainBatch:
        """Batches move themselves: positions, cell and labels cast to the model's dtype."""
        return batch.to(device, dtype=self.dtype)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train, self.shuffle)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.valid, False) if self.valid is not None else []
