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
    "export": "muse_ff.cli.export",
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


def error_message(err: BaseException) -> str:
    """The one-line text ``muse`` prints for a user error (an ``OSError`` as ``reason: file``)."""
    if isinstance(err, OSError) and err.strerror:
        names = [str(n) for n in (err.filename, err.filename2) if n is not None]
        return err.strerror + (": " + " -> ".join(names) if names else "")
    text = str(err).strip()
    return text if text else type(err).__name__


def main(argv: list[str] | None = None) -> int:
    """Run one command. Exit status: 0 success, 1 the command's own failure (e.g. frames that could not
    be labelled), 2 a user error, 3 a missing optional package, 130 interrupted.

    User errors are printed as one line, ``muse COMMAND: error: MESSAGE``, without a traceback: every
    :class:`muse_ff.errors.MuseError` (the base class for MuSE's own user errors, e.g. ``ModelFileError``,
    ``StructureReadError``, ``TeacherError``), ``ValueError`` (bad values, also pydantic's validation
    errors) and ``OSError`` (a file that is missing, exists already, is a directory, is not readable or
    writable, a full disk, ...).
    """
    from muse_ff.errors import MuseError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except BrokenPipeError:  # the reader went away (`muse eval --json | head`): not an error of ours
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return 141  # 128 + SIGPIPE, as a shell reports a command killed by it
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except ImportError as err:  # an optional extra is missing: say which
        # (caught before MuseError: MissingTeacherPackage is both)
        print(f"muse {args.command}: error: {error_message(err)}", file=sys.stderr)
        return 3
    except (MuseError, ValueError, OSError) as err:  # user errors: one sentence, no traceback
        print(f"muse {args.command}: error: {error_message(err)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
