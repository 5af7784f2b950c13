"""``train(config)``: data -> graphs -> reference fit -> Lightning fit -> saved model and summary.

Output folder (``training.output_dir``)::

    config.yaml              the validated configuration (every default written out)
    checkpoints/last.ckpt    resumable state (weights, EMA, optimiser, scheduler, epoch), every N epochs
    checkpoints/epochNNNN.ckpt, checkpoints/best.ckpt
    logs/metrics.csv         one row per epoch: epoch, step, lr, train and validation loss, validation
                             MAE/RMSE, epoch time (TensorBoard events too, if installed)
    model.pt                 the best-validation model (EMA weights), loadable with muse_ff.load_model
    last_model.pt            the model at the end of training
    summary.json             reference energies (source and value per element), best epoch, validation
                             (last epoch, with counts) and test errors, timing
    previous_runs/N/         outputs of earlier runs replaced with ``force`` (moved, never deleted)
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml

from muse_ff.config import ModelConfig
from muse_ff.devices import check_accelerator
from muse_ff.errors import MuseError
from muse_ff.io.serialization import atomic_write, load_model, save_model
from muse_ff.nn.model import build_model
from muse_ff.training.config import TrainConfig, parse_train_config
from muse_ff.training.data import (
    GraphDataset,
    LabelWarning,
    check_labels,
    config_type,
    frame_weights,
    is_isolated_atom,
    label_keys,
    load_splits,
    species_of,
    take_isolated_atoms,
)
from muse_ff.training.reference import LoadedReference, apply_reference, reference_energies


@dataclass
class TrainResult:
    """What a finished run produced (on the main process; other ranks get ``is_main=False``)."""

    output_dir: Path
    model_path: Path | None
    summary: dict = field(default_factory=dict)
    is_main: bool = True


def _lightning():
    try:
        import lightning
    except ModuleNotFoundError:
        raise ModuleNotFoundError("training needs PyTorch Lightning: pip install 'muse-ff[train]' "
                                  "(or pip install lightning)") from None
    return lightning


def _all_frames(splits) -> list:
    return splits.train + splits.valid + splits.test + splits.isolated


def _model_config(cfg: TrainConfig, splits) -> dict:
    """The model section, with ``species`` taken from the data when the config does not list them."""
    model = cfg.model.model_dump(mode="json")
    if "species" not in cfg.model.model_fields_set:
        model["species"] = species_of(_all_frames(splits))
    return model


class FinetuneError(MuseError, ValueError):
    """``training.finetune_from`` names a model the ``model:`` section or the data do not fit."""


def _first_mismatch(given, loaded: dict, path: str) -> tuple[str, object, object] | None:
    """The first key explicitly set in ``given`` (a config model) whose value differs from ``loaded``."""
    from pydantic import BaseModel

    dumped = given.model_dump(mode="json")
    explicit = given.model_fields_set | set(given.model_extra or {})
    order = list(type(given).model_fields) + sorted(set(given.model_extra or {}) - set(type(given).model_fields))
    for name in (n for n in order if n in explicit):
        if path == "model" and name in ("species", "dtype"):
            continue
        value, other = getattr(given, name), loaded.get(name) if isinstance(loaded, dict) else None
        if isinstance(value, BaseModel) and isinstance(other, dict):
            found = _first_mismatch(value, other, f"{path}.{name}")
            if found is not None:
                return found
        elif dumped[name] != other:
            return f"{path}.{name}", dumped[name], other
    return None


def _finetune_config(cfg: TrainConfig, splits, loaded) -> dict:
    """The model section of a fine-tuning run: the loaded model's architecture, with ``dtype`` as the config
    says and ``species`` as the config lists them (a superset of the loaded ones) or the loaded species plus
    the data's."""
    src = cfg.training.finetune_from
    base = loaded.config.model_dump(mode="json")
    if "model" in cfg.model_fields_set:
        found = _first_mismatch(cfg.model, base, "model")
        if found is not None:
            key, here, there = found
            raise FinetuneError(f"{key} is {here!r} in the training config but {there!r} in the finetune_from "
                                f"model {src}: a fine-tuned model keeps the loaded architecture (leave the key "
                                "out, or set it as the loaded model has it)")
    species = set(loaded.species)
    if "species" in cfg.model.model_fields_set:
        lost = sorted(species - set(cfg.model.species))
        if lost:
            from ase.data import chemical_symbols

            raise FinetuneError(f"model.species lacks {', '.join(chemical_symbols[z] for z in lost)}, which the "
                                f"finetune_from model {src} knows: the species list may only be extended")
        species = set(cfg.model.species)
    else:
        species |= set(species_of(_all_frames(splits)))
    base["species"] = sorted(species)
    if "dtype" in cfg.model.model_fields_set:
        base["dtype"] = cfg.model.dtype
    return ModelConfig.model_validate(base).model_dump(mode="json")


def _copy_weights(loaded, model) -> None:
    """Copy every weight of ``loaded`` into ``model``; species-indexed ones (embedding rows, E0) by element,
    so elements new to ``model`` keep their fresh initialisation."""
    old_col = {z: k for k, z in enumerate(loaded.species)}
    rows = [(k, old_col[z]) for k, z in enumerate(model.species) if z in old_col]
    new_idx = torch.tensor([k for k, _ in rows], dtype=torch.long)
    old_idx = torch.tensor([k for _, k in rows], dtype=torch.long)
    source = loaded.state_dict()
    state = model.state_dict()
    for name, tensor in state.items():
        value = source[name].to(dtype=tensor.dtype)
        if value.shape == tensor.shape and (name not in ("embedding.weight", "reference.e0")
                                            or loaded.species == model.species):
            state[name] = value.clone()
        elif name in ("embedding.weight", "reference.e0"):
            merged = tensor.clone()
            merged[new_idx] = value[old_idx]
            state[name] = merged
        else:  # not reachable while species only index the embedding and E0
            raise FinetuneError(f"cannot fine-tune: parameter {name!r} has shape {list(value.shape)} in the "
                                f"finetune_from model but {list(tensor.shape)} here")
    model.load_state_dict(state)


def _check_type_weights(cfg: TrainConfig, frames) -> None:
    weights = cfg.training.loss.config_type_weights
    seen = {config_type(a, cfg.data.config_type_key) for a in frames}
    unknown = sorted(set(weights) - seen)
    if unknown:
        warnings.warn(f"training.loss.config_type_weights names {unknown}, which no training frame has "
                      f"(training frames have {sorted(seen)} under info[{cfg.data.config_type_key!r}])",
                      LabelWarning, stacklevel=3)


def _check_world(cfg: TrainConfig, world: int) -> None:
    if cfg.training.batch_size % world:
        raise ValueError(f"training.batch_size = {cfg.training.batch_size} must be divisible by the number of "
                         f"processes ({world} = devices x num_nodes): it is the global batch")


def prepare_data(cfg: TrainConfig):
    """(model, train dataset, valid dataset or None, splits, reference fit).

    Isolated-atom frames that give the E0s end up in ``splits.isolated`` (not trained); with
    ``training.finetune_from`` the model starts from the loaded weights (see
    :class:`~muse_ff.training.config.TrainingConfig`).
    """
    splits = load_splits(cfg.data)
    keys = label_keys(cfg.data)
    isolated = take_isolated_atoms(splits, cfg.data)
    need_forces = cfg.training.loss.forces > 0 and cfg.data.missing_labels == "error"
    skip = cfg.data.missing_labels == "energy_only"
    for name in ("train", "valid", "test"):
        frames = getattr(splits, name)
        if name == "train" and not splits.isolated:  # isolated atoms trained as frames: no forces needed
            lone = [is_isolated_atom(a, cfg.data.config_type_key) for a in frames]
            check_labels([a for a, iso in zip(frames, lone) if iso], keys, False, "isolated-atom")
            frames = [a for a, iso in zip(frames, lone) if not iso]
        check_labels(frames, keys, need_forces, name, drop_bad_forces=skip)
    loaded = None
    if cfg.training.finetune_from is not None:
        loaded = load_model(cfg.training.finetune_from)
        model = build_model(_finetune_config(cfg, splits, loaded))
        _copy_weights(loaded, model)
    else:
        model = build_model(_model_config(cfg, splits))
    for a in splits.isolated:
        model.check_species(torch.as_tensor(a.numbers))
    weights = cfg.training.loss.config_type_weights
    if weights:
        _check_type_weights(cfg, splits.train)
    wkey = cfg.data.config_type_key
    train = GraphDataset(splits.train, model, keys, frame_weights(splits.train, wkey, weights))
    valid = GraphDataset(splits.valid, model, keys, frame_weights(splits.valid, wkey, weights)) if splits.valid \
        else None
    fit = reference_energies(train.graphs, model.species, cfg.data.E0s, isolated=isolated if splits.isolated else None,
                             data_species=species_of(_all_frames(splits)),
                             loaded=None if loaded is None else LoadedReference.of(loaded))
    apply_reference(model, fit)
    return model, train, valid, splits, fit


def _keep_old_log(out: Path) -> None:
    """On resume, keep the interrupted run's CSV log (``metrics.csv`` -> ``metrics.partN.csv``)."""
    log = out / "logs" / "metrics.csv"
    if log.exists():
        n = 1 + len(list(log.parent.glob("metrics.part*.csv")))
        log.rename(log.with_name(f"metrics.part{n}.csv"))


def _loggers(out: Path) -> list:
    """Lightning loggers: TensorBoard when installed (``logs/tensorboard``). The CSV log is written by
    :class:`~muse_ff.training.callbacks.EpochLog` (one complete row per epoch)."""
    try:
        import tensorboard  # noqa: F401
    except ModuleNotFoundError:
        return []
    from lightning.pytorch.loggers import TensorBoardLogger

    return [TensorBoardLogger(out, name="logs", version="tensorboard")]


def _stdout_is_terminal() -> bool:
    import sys

    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):  # replaced or closed stdout
        return False


def _strategy(strategy: str | None, devices: int | str, num_nodes: int) -> str:
    """The Lightning strategy: as given, else ``ddp`` for more than one process and ``auto`` for one."""
    if strategy is not None:
        return strategy
    world = (devices if isinstance(devices, int) else 1) * num_nodes
    return "ddp" if world > 1 else "auto"


class TrainerSettingsError(MuseError, ValueError):
    """Lightning refuses the trainer settings (``strategy``, ``accelerator``, ``devices``, ``num_nodes``)."""


def check_trainer_settings(accelerator: str = "auto", devices: int | str = 1, num_nodes: int = 1,
                           strategy: str | None = None) -> None:
    """:class:`TrainerSettingsError` (one sentence) when Lightning cannot build a ``Trainer`` with these
    settings: an unknown ``strategy`` (``--strategy ddpp``), one the accelerator or this install cannot run
    (``fsdp`` on the CPU, ``deepspeed`` without DeepSpeed), ``devices`` or ``num_nodes`` it does not take.

    It builds a bare Trainer (nothing is read or written; Lightning's banners stay quiet), so :func:`train`
    calls it before it reads the data or moves an earlier run aside with ``force``. A
    :class:`~muse_ff.devices.DeviceError` comes first for a GPU that is not there (:func:`check_accelerator`).
    """
    L = _lightning()
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    check_accelerator(accelerator, devices)
    chosen = _strategy(strategy, devices, num_nodes)
    try:
        with _quiet_lightning(False, accelerator):
            L.Trainer(accelerator=accelerator, devices=devices, num_nodes=num_nodes, strategy=chosen, logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    except (MisconfigurationException, ValueError, TypeError, ImportError, RuntimeError) as err:
        given = f"--strategy {chosen}" + ("" if strategy is not None else " (the default)")
        why = " ".join(str(err).split()) or type(err).__name__
        raise TrainerSettingsError(f"Lightning cannot train with {given}, --accelerator {accelerator}, --devices "
                                   f"{devices}, --num-nodes {num_nodes}: {why}") from None


def make_trainer(cfg: TrainConfig, out: Path, *, has_valid: bool, devices: int | str, num_nodes: int,
                 accelerator: str, progress: bool, strategy: str | None, callbacks=()):
    """A Lightning ``Trainer`` configured from ``cfg.training`` (checkpoints, early stopping, loggers).

    Every run writes ``logs/metrics.csv`` and prints one line per epoch
    (:class:`~muse_ff.training.callbacks.EpochLog`); ``progress`` adds a one-line progress bar
    (:class:`~muse_ff.training.callbacks.CompactProgressBar`), meant for a terminal.
    """
    L = _lightning()
    from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint

    from muse_ff.training.callbacks import AtomicCheckpointIO, CompactProgressBar, EpochLog, RankAgreement

    t = cfg.training
    ckpt_dir = out / "checkpoints"
    loggers = _loggers(out)
    cbs = [ModelCheckpoint(dirpath=ckpt_dir, filename="epoch{epoch:04d}", auto_insert_metric_name=False,
                           every_n_epochs=t.checkpoint_every, save_top_k=-1, save_last=True,
                           enable_version_counter=False),
           EpochLog(out / "logs" / "metrics.csv"), RankAgreement(), *callbacks]
    if loggers:  # the learning rate in TensorBoard too (it needs a logger)
        cbs.append(LearningRateMonitor(logging_interval="epoch"))
    if has_valid:
        cbs.append(ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor="val_loss", save_top_k=1,
                                   enable_version_counter=False))
        if t.patience is not None:
            cbs.append(EarlyStopping(monitor="val_loss", patience=t.patience))
    if progress:
        cbs.append(CompactProgressBar(leave=False))
    return L.Trainer(max_epochs=t.epochs, accelerator=accelerator, devices=devices, num_nodes=num_nodes,
                     strategy=_strategy(strategy, devices, num_nodes), inference_mode=False, num_sanity_val_steps=0,
                     gradient_clip_val=t.grad_clip, callbacks=cbs, logger=loggers or False,
                     enable_progress_bar=progress, enable_model_summary=False,
                     plugins=[AtomicCheckpointIO()], use_distributed_sampler=False,
                     log_every_n_steps=1, default_root_dir=out)


class _DropTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Tip:" not in record.getMessage()


#: Lightning's loggers (the others propagate to these): their info messages are banners about this machine
#: ("GPU available: False, used: False", "TPU available: ...", "`Trainer.fit` stopped: ...", "Restoring
#: states from the checkpoint ...", DDP registration); their warnings are kept
_LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric", "pytorch_lightning", "lightning_fabric")


@contextlib.contextmanager
def _quiet_lightning(resume: bool, accelerator: str = "auto"):
    """Drop Lightning's banners and info messages, its advertising tip and warnings that say nothing about
    this run (scoped: levels and filters are restored afterwards)."""
    logger, tips = logging.getLogger("lightning.pytorch.utilities.rank_zero"), _DropTips()
    logger.addFilter(tips)
    quiet = [logging.getLogger(name) for name in _LIGHTNING_LOGGERS]
    levels = [q.level for q in quiet]
    for q in quiet:
        q.setLevel(max(q.getEffectiveLevel(), logging.WARNING))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*LeafSpec.*")
        warnings.filterwarnings("ignore", message=".*all_gather is deprecated.*")
        # without validation frames the (deliberately) empty validation loader is reported as a mistake
        warnings.filterwarnings("ignore", message=r"Total length of `list` across ranks is zero.*")
        # the validation errors are logged after summing over all processes (module.py): already in sync
        warnings.filterwarnings("ignore", message=r"It is recommended to use `self.log\('val_.*sync_dist=True")
        if str(accelerator).lower() == "cpu":  # asked for: no news
            warnings.filterwarnings("ignore", message=r"GPU available but not used.*")
        if resume:
            warnings.filterwarnings("ignore", message=".*Checkpoint directory .* exists and is not empty.*")
            warnings.filterwarnings("ignore", message=".*Experiment logs directory .* exists and is not empty.*")
        try:
            yield
        finally:
            logger.removeFilter(tips)
            for q, level in zip(quiet, levels):
                q.setLevel(level)


#: what a run writes into ``output_dir`` (and nothing else there is touched); ``previous_runs/`` holds
#: the outputs of runs replaced with ``force``
RUN_OUTPUTS = ("config.yaml", "checkpoints", "logs", "model.pt", "last_model.pt", "summary.json")
PREVIOUS_RUNS = "previous_runs"


class OutputExistsError(MuseError, ValueError):
    """``output_dir`` already holds a run and neither ``resume`` nor ``force`` was asked for."""


def _run_outputs(out: Path) -> list[Path]:
    """The outputs of an earlier run in ``out`` (with temporaries a kill may have left), in name order."""
    if not out.is_dir():
        return []
    found = [out / name for name in RUN_OUTPUTS if (out / name).exists()]
    return found + sorted(out.glob(".*.tmp")) if found else []


def _check_fresh(out: Path) -> None:
    """Refuse to start a new run where an earlier one left its outputs (they would be mixed or replaced)."""
    found = _run_outputs(out)
    if found:
        names = ", ".join(p.name + ("/" if p.is_dir() else "") for p in found)
        raise OutputExistsError(
            f"output folder {out} already holds a training run ({names}): pass --resume to continue it, or "
            f"--force to start over (its outputs are then moved to {out / PREVIOUS_RUNS}/N/)")


def _move_previous_run(out: Path) -> Path | None:
    """Move an earlier run's outputs to ``out/previous_runs/N/`` (N = 1, 2, ...); returns that folder."""
    found = _run_outputs(out)
    if not found:
        return None
    n = 1
    while (out / PREVIOUS_RUNS / str(n)).exists():
        n += 1
    dest = out / PREVIOUS_RUNS / str(n)
    dest.mkdir(parents=True)
    for path in found:
        path.rename(dest / path.name)
    return dest


def _resume_path(out: Path) -> Path:
    last = out / "checkpoints" / "last.ckpt"
    if not last.exists():
        hint = ("start over with --force" if _run_outputs(out) else "run without --resume to start")
        raise FileNotFoundError(f"cannot resume: no checkpoint {last} ({hint})")
    return last


def _is_main_process() -> bool:
    """True unless this is a worker launched for DDP or a task of another node.

    Lightning sets ``LOCAL_RANK``/``NODE_RANK`` for the workers it launches, torchrun sets ``RANK``, and
    under SLURM (one task per node) every task but the first has ``SLURM_PROCID`` > 0.
    """
    import os

    return all(os.environ.get(name, "0") == "0" for name in ("LOCAL_RANK", "NODE_RANK", "RANK", "SLURM_PROCID"))


def _write_config(cfg: TrainConfig, model_config, out: Path) -> None:
    """``config.yaml``: the validated configuration with the model section the model was built with.

    In particular ``model.species`` lists the species of the data when the user's config did not list
    them (not the default 1-118), so training again from this file builds the same model.
    """
    cfg = cfg.model_copy(update={"model": model_config})
    text = yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
    atomic_write(out / "config.yaml", lambda tmp: Path(tmp).write_text(text))


def _load_weights(module, ckpt: Path) -> int:
    """Load the module weights (model and EMA) of a Lightning checkpoint; returns its epoch."""
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    module.load_state_dict(state["state_dict"])
    return int(state["epoch"])


def _finish(trainer, module, cfg: TrainConfig, out: Path, splits, fit, elapsed: float) -> TrainResult:
    """On the main process: save last and best models, evaluate the test frames, write the summary."""
    from lightning.pytorch.callbacks import EarlyStopping

    from muse_ff.analysis.metrics import evaluate_frames, to_json

    save_model(module.eval_model, out / "last_model.pt")
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    valid = {k.removeprefix("val_"): v for k, v in metrics.items() if k.startswith("val_") and k != "val_loss"}
    if valid:  # the last validation's errors, with the number of values each averages (as the test has)
        valid |= getattr(module, "val_counts", None) or {}
    stopped = [cb for cb in trainer.callbacks if isinstance(cb, EarlyStopping) and cb.stopped_epoch > 0]
    best, best_epoch = out / "checkpoints" / "best.ckpt", None
    if best.exists():
        best_epoch = _load_weights(module, best)
    save_model(module.eval_model, out / "model.pt")
    summary = {
        "epochs": trainer.current_epoch, "best_epoch": best_epoch, "train_time_s": round(elapsed, 2),
        "world_size": trainer.world_size,
        "frames": {s: len(getattr(splits, s)) for s in ("train", "valid", "test")}
        | ({"isolated_atoms": len(splits.isolated)} if splits.isolated else {}),
        "reference": fit.summary(), "finetune_from": cfg.training.finetune_from,
        "last_metrics": metrics, "rank_fingerprints": getattr(module, "rank_fingerprints", None),
    }
    if valid:
        summary["valid"] = valid
    if stopped:
        summary["stopped_early"] = {"epoch": stopped[0].stopped_epoch, "patience": stopped[0].patience,
                                    "monitor": stopped[0].monitor}
    if splits.test:
        result = evaluate_frames(module.eval_model, splits.test, label_keys(cfg.data))
        summary["test"] = result.metrics()
    text = to_json(summary, indent=2)  # strict JSON: a metric that is NaN or inf is written as null
    atomic_write(out / "summary.json", lambda tmp: Path(tmp).write_text(text))
    return TrainResult(output_dir=out, model_path=out / "model.pt", summary=summary)


def train(config: dict | TrainConfig, *, resume: bool = False, force: bool = False, devices: int | str = 1,
          num_nodes: int = 1, accelerator: str = "auto", progress: bool = True, strategy: str | None = None,
          callbacks=()) -> TrainResult:
    """Train a model as ``config`` says; with ``resume``, continue from ``output_dir/checkpoints/last.ckpt``.

    A new run (no ``resume``) refuses an ``output_dir`` that holds an earlier run's outputs
    (:data:`RUN_OUTPUTS`; :class:`OutputExistsError`) unless ``force``: then those outputs are moved to
    ``output_dir/previous_runs/N/`` before the new run writes anything (nothing is deleted; other files in
    the folder are left alone). ``devices`` x ``num_nodes`` > 1 trains data-parallel (DDP); the global batch
    stays ``training.batch_size``. Returns on every process; only the main one saves and summarises.

    Before training starts the main process prints one line saying where each element's reference energy
    comes from and its value (``data.E0s``, isolated atoms, ``training.finetune_from`` or the fit), with
    ``shift`` and ``scale``; ``summary.json`` records the same under ``reference``. Then it prints one line
    per epoch (epoch, learning rate, train loss, validation loss and MAE, time) and writes the same, with
    RMSEs, as one row per epoch of ``logs/metrics.csv``; ``progress`` adds a one-line progress bar when
    stdout is a terminal. Lightning's banners and info messages are not printed (its warnings are).
    ``accelerator``/``devices`` asking for a GPU that is not there is a
    :class:`~muse_ff.devices.DeviceError`, and a ``strategy`` (or other trainer setting) Lightning refuses a
    :class:`TrainerSettingsError`, both before anything is read, moved or written (with ``force`` the
    earlier run stays where it is).
    """
    L = _lightning()
    cfg = parse_train_config(config)
    out = Path(cfg.training.output_dir)
    if resume and force:
        raise ValueError("--resume continues the run in the output folder and --force starts it over: give one")
    # before anything is read, moved or written: the devices (DeviceError), then any other trainer setting
    # Lightning would refuse (TrainerSettingsError), so that a --force run fails with the earlier run in place
    check_trainer_settings(accelerator, devices, num_nodes, strategy)
    _check_world(cfg, (devices if isinstance(devices, int) else 1) * num_nodes)
    ckpt = _resume_path(out) if resume else None
    main = _is_main_process()  # DDP workers re-run this function after the main process has started writing
    if not resume and not force and main:
        _check_fresh(out)
    if resume and main:
        _keep_old_log(out)
    L.seed_everything(cfg.training.seed, workers=True, verbose=False)
    model, train_ds, valid_ds, splits, fit = prepare_data(cfg)
    if main:
        print(fit.describe(), flush=True)

    from muse_ff.training.module import GraphDataModule, MuSEModule

    t = cfg.training
    module = MuSEModule(model, t, has_validation=valid_ds is not None)
    data = GraphDataModule(train_ds, valid_ds, t.batch_size, t.shuffle, t.seed, t.num_workers, model.dtype_)
    start = time.perf_counter()
    with _quiet_lightning(resume, accelerator):
        # the real trainer too is built before an earlier run is moved aside (building it writes nothing)
        trainer = make_trainer(cfg, out, has_valid=valid_ds is not None, devices=devices, num_nodes=num_nodes,
                               accelerator=accelerator, progress=progress and _stdout_is_terminal(),
                               strategy=strategy, callbacks=callbacks)
        if force and main:
            _move_previous_run(out)
        _write_config(cfg, model.config, out)
        trainer.fit(module, datamodule=data, ckpt_path=ckpt, weights_only=True)  # safe even with mace imported
    if not trainer.is_global_zero:
        return TrainResult(output_dir=out, model_path=None, is_main=False)
    return _finish(trainer, module, cfg, out, splits, fit, time.perf_counter() - start)
