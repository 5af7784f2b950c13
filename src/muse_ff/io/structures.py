"""Reading structure files (extxyz or any format ASE reads) with one clear error for a bad file.

ASE reports an empty, truncated or binary file with whatever its parser hits first (``ValueError: could
not assign tuple of length 2 ...``, ``UnicodeDecodeError``, ``StopIteration``, ...), without the file name.
:func:`read_structures` turns every such failure into :class:`StructureReadError`, one sentence starting
``could not read structures from FILE:``, which the ``muse`` command prints without a traceback. An
(ext)xyz file must end with a newline: one cut inside its last line would otherwise be read silently, a
cut number (``-0.477047`` -> ``-0.``) taken as a shorter one.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import ase.io
from ase import Atoms
from ase.io.formats import UnknownFileTypeError

from muse_ff.errors import MuseError

#: compressed extxyz suffix -> module whose ``open`` reads it
_OPENERS = {".xz": "lzma", ".gz": "gzip", ".bz2": "bz2"}


class StructureReadError(MuseError, ValueError):
    """A structure file that cannot be read (empty, truncated, binary, unknown format, no such frame)."""


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _reason(err: Exception, index: int | str | slice) -> str:
    if isinstance(err, UnicodeDecodeError):
        return "it is not a text structure file (it holds binary data)"
    if "empty file" in str(err).lower():
        return "the file is empty"
    if isinstance(err, UnknownFileTypeError):
        return f"ASE does not know its format ({_first_line(err)}); give an extxyz file or any format ASE reads"
    if isinstance(err, (IndexError, StopIteration)) and isinstance(index, int):
        return f"it has no structure at index {index}"
    return (f"{type(err).__name__}: {_first_line(err).rstrip('.')} (is the file truncated, or not in the "
            f"format its name says?)")


#: message for an (ext)xyz file whose last line is incomplete
_NO_FINAL_NEWLINE = ("its last line does not end with a newline, so it looks truncated (ASE would read a cut "
                     "number such as '-0.' without complaint); if the file is complete, add the final newline")


def _read(path: Path, index: int | str | slice, format: str | None):
    """ASE's reading of ``path``; then, for (ext)xyz, the check that the last line is complete."""
    if path.suffix in _OPENERS and path.with_suffix("").suffix == ".extxyz":
        # ASE re-opens a compressed stream for every frame it indexes (minutes for a few thousand
        # frames); decompressing once is linear
        module = __import__(_OPENERS[path.suffix])
        with module.open(path, "rt") as fh:
            text = fh.read()
        got = ase.io.read(io.StringIO(text), index=index, format="extxyz")
        complete = not text or text.endswith("\n")
    else:
        got = ase.io.read(path, index=index, format=format)
        complete = True
        if format in ("xyz", "extxyz") or format is None and path.suffix in (".xyz", ".extxyz"):
            with open(path, "rb") as fh:  # (not empty: ASE has read something)
                fh.seek(-1, os.SEEK_END)
                complete = fh.read(1) == b"\n"
    if not complete:  # a cut inside the last line still parses (a truncated number is read as a shorter one)
        raise StructureReadError(f"could not read structures from {path}: {_NO_FINAL_NEWLINE}")
    return got


def read_structures(path: str | Path, index: int | str | slice = ":", *,
                    format: str | None = None) -> Atoms | list[Atoms]:
    """The structures of ``path`` selected by ``index`` (ASE's meaning: ``":"`` and slices give a list,
    an int one ``Atoms``). ``.extxyz.gz``, ``.extxyz.xz`` and ``.extxyz.bz2`` are decompressed once.

    Raises :class:`FileNotFoundError` for a missing file and :class:`StructureReadError` (one sentence
    naming the file and the problem) for a file that cannot be read or selects no structure.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"structures file not found: {path}")
    if path.is_dir():
        raise StructureReadError(f"could not read structures from {path}: it is a directory, not a file")
    try:
        got = _read(path, index, format)
    except (MemoryError, RecursionError, StructureReadError):
        raise
    except PermissionError as err:
        raise StructureReadError(f"could not read structures from {path}: permission denied") from err
    except Exception as err:  # any parser failure of ASE: one sentence, the file named
        raise StructureReadError(f"could not read structures from {path}: {_reason(err, index)}") from err
    if isinstance(got, list) and not got:
        raise StructureReadError(f"could not read structures from {path}: it holds no structures"
                                 + ("" if index == ":" else f" at index {index!r}"))
    return got
