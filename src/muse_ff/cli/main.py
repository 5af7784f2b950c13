"""Entry point of the ``muse`` console script.

Each sub-command is a module in :mod:`muse_ff.cli` exposing ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``. The map below is explicit (no registry):
a command whose module is not yet present in this install is simply not offered.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: command name -> module implementing it
COMMANDS: dict[str, str] = {
    "info": "muse_ff.cli.info",
    "demo": "muse_ff.cli.demo",
    "train": "muse_ff.cli.train",
    "eval": "muse_ff.cli.evaluate",
    "md": "muse_ff.cli.md",
    "hessian": "muse_ff.cli.hessian",
    "label": "muse_ff.cli.label",
    "dataset": "muse_ff.cli.dataset",
    "bench": "muse_ff.cli.bench",
}


def _available_commands() -> dict[str, object]:
    modules = {}
    for name, modname in COMMANDS.items():
        try:
            modules[name] = importlib.import_module(modname)
        except ModuleNotFoundError as err:
            if err.name != modname:  # the module exists but one of its imports is missing
                raise
    return modules


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="muse", description="MuSE multiscale machine-learning force fields")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in _available_commands().items():
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError) as err:  # user errors: clear message, no traceback
        print(f"muse {args.command}: error: {err}", file=sys.stderr)
        return 2
    except ImportError as err:  # an optional extra is missing: say which
        print(f"muse {args.command}: error: {err}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
