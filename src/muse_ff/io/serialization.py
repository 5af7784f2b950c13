"""Saving and loading models safely: one file, no code execution on load.

The file is a ``torch.save`` archive of plain data only (a dict of str, numbers, lists and tensors):
``format`` (``"muse-ff-model"``), ``format_version``, ``muse_version``, ``config`` (the validated
``model:`` section as a dict), ``species`` (atomic numbers) and ``state_dict``. It is read back with
``torch.load(weights_only=True)`` passed explicitly, so a file carrying pickled callables is refused even
when another library (e.g. mace) has set ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` for the process.
Files are written atomically (temporary file in the same folder, then ``os.replace``).
"""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path

import torch

FORMAT = "muse-ff-model"
FORMAT_VERSION = 1


class ModelFileError(ValueError):
    """A file that is not a loadable MuSE model (truncated, foreign, unsafe or from a newer version)."""


def atomic_write(path: str | os.PathLike, write) -> None:
    """Call ``write(tmp_path)`` then atomically move the result to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def model_payload(model) -> dict:
    from muse_ff import __version__

    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "muse_version": __version__,
        "config": model.config.model_dump(mode="json"),
        "species": list(model.species),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }


def save_model(model, path: str | os.PathLike) -> None:
    """Write ``model`` (config, weights, species, format version) to one file, atomically."""
    payload = model_payload(model)
    atomic_write(path, lambda tmp: torch.save(payload, tmp))


def _safe_load(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ModelFileError(f"{path}: refused to load: the file contains objects other than plain data "
                             f"(weights_only load failed: {str(err).splitlines()[0]})") from None
    except FileNotFoundError:
        raise
    except Exception as err:  # torch raises RuntimeError, EOFError, KeyError, ... on damaged archives
        raise ModelFileError(f"{path}: not a readable MuSE model file (truncated or corrupt?): "
                             f"{str(err).splitlines()[0]}") from None


def upgrade_payload(payload: dict) -> dict:
    """Bring an older payload to ``FORMAT_VERSION`` (the upgrade path for future format changes)."""
    version = payload.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelFileError(f"unsupported MuSE model format version {version!r} (this MuSE reads up to "
                             f"{FORMAT_VERSION}); upgrade muse-ff")
    return payload


def model_from_payload(payload: dict, source: str = "payload"):
    from muse_ff.nn.model import build_model

    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelFileError(f"{source}: not a MuSE model file (no '{FORMAT}' format marker)")
    payload = upgrade_payload(payload)
    model = build_model(payload["config"])
    missing, unexpected = model.load_state_dict(payload["state_dict"], strict=False)
    if missing or unexpected:
        raise ModelFileError(f"{source}: weights do not match the config (missing {missing[:5]}, "
                             f"unexpected {unexpected[:5]})")
    model.eval()
    return model


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu"):
    """Load a model written by :func:`save_model`; never executes code from the file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model file not found: {path}")
    return model_from_payload(_safe_load(path), str(path)).to(device)
