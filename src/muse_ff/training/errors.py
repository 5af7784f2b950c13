"""Errors of a training run that the user fixes in the configuration (importable without Lightning)."""

from __future__ import annotations

from muse_ff.errors import MuseError


class TrainingDivergedError(MuseError, RuntimeError):
    """Weights or loss became NaN/inf during training.

    The message is one sentence with the remedy; ``muse train`` prints it without a traceback.
    """
