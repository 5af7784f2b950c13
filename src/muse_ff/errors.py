"""The base class of MuSE's user errors.

Raise :class:`MuseError` (or a subclass) for a problem the user can fix from its message alone: a bad
input file, a wrong option, a model file that does not match its config. The ``muse`` command
(:func:`muse_ff.cli.main.main`) prints such an error as one line, ``muse COMMAND: error: MESSAGE``, with
no traceback, and exits with status 2. The message should be one sentence naming the problem (and the
file or frame concerned).

Subclasses may also derive from a built-in class (``class ModelFileError(MuseError, ValueError)``) so
that code catching the built-in class keeps working.
"""

from __future__ import annotations


class MuseError(Exception):
    """A user error: reported by the ``muse`` command as one sentence, exit status 2."""


class NonFiniteError(MuseError, ArithmeticError):
    """A model gave (or was about to give) a non-finite (NaN or inf) result for a structure."""
