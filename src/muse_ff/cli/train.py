"""``muse train CONFIG.yaml``: train a model from a YAML file (see docs/TRAINING.md)."""

from __future__ import annotations

import argparse

HELP = "train a model from a YAML config (model/data/training sections); multi-GPU with --devices"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="training YAML file")
    again = parser.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue from OUTPUT_DIR/checkpoints/last.ckpt")
    again.add_argument("--force", action="store_true",
                       help="start a new run even if OUTPUT_DIR holds an earlier one: its outputs (config.yaml, "
                            "checkpoints/, logs/, model.pt, last_model.pt, summary.json) are first moved to "
                            "OUTPUT_DIR/previous_runs/N/ (nothing is deleted; other files are left alone). "
                            "Without --resume or --force, a folder with an earlier run is refused")
    parser.add_argument("--devices", default="1", help="devices per node (an integer, or 'auto'); default 1")
    parser.add_argument("--num-nodes", type=int, default=1, help="number of nodes (DDP); default 1")
    parser.add_argument("--accelerator", default="auto",
                        help="auto, cpu, gpu, cuda, mps; default auto (a GPU if there is one, else the CPU)")
    parser.add_argument("--strategy", default=None, help="Lightning strategy (default: ddp when >1 process)")
    parser.add_argument("--output-dir", default=None, help="override training.output_dir")
    parser.add_argument("--finetune-from", default=None, metavar="MODEL.pt",
                        help="override training.finetune_from: start from this model's weights (same or extended "
                             "species; the model section may be left out)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads per process (small molecules train fastest with 1)")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar (there is none either when stdout is not a terminal); one line per "
                             "epoch is printed in every case")


def _devices(text: str) -> int | str:
    return int(text) if text.isdigit() else text


def run(args: argparse.Namespace) -> int:
    from muse_ff.devices import check_accelerator
    from muse_ff.training import load_train_config, train
    from muse_ff.training.report import print_train_summary

    check_accelerator(args.accelerator, _devices(args.devices))  # one sentence before any work (train checks too)
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    cfg = load_train_config(args.config)
    overrides = {k: v for k, v in (("output_dir", args.output_dir), ("finetune_from", args.finetune_from))
                 if v is not None}
    if overrides:
        cfg = cfg.model_copy(update={"training": cfg.training.model_copy(update=overrides)})
    devices = _devices(args.devices)
    # TrainingDivergedError, LabelError, OutputExistsError, DeviceError are MuseErrors: muse prints them as one
    # line, exit 2
    result = train(cfg, resume=args.resume, force=args.force, devices=devices, num_nodes=args.num_nodes,
                   accelerator=args.accelerator, strategy=args.strategy, progress=not args.no_progress)
    if result.is_main:
        print_train_summary(result.summary, result.output_dir)
    return 0
