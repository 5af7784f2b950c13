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
import zipfile
from pathlib import Path

import torch

from muse_ff.errors import MuseError

FORMAT = "muse-ff-model"
#: 2: coarse levels pool l = 2 features (``levels[k].tensors``); version-1 files load with them off
FORMAT_VERSION = 2


class ModelFileError(MuseError, ValueError):
    """A file that is not a loadable MuSE model (truncated, foreign, unsafe or from a newer version)."""


def _first_line(err: BaseException) -> str:
    """The first line of an exception's message, or its class name if the message is empty."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


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


def _check_archive(path: Path) -> None:
    """Raise :class:`ModelFileError` unless ``path`` is a complete zip archive (what ``torch.save`` writes).

    Checked before ``torch.load``: it reads anything else as a legacy pickle stream, so random bytes
    failed with a misleading "objects other than plain data" or an empty file with an ``IndexError``.
    """
    if path.is_dir():
        raise ModelFileError(f"{path}: not a MuSE model file: it is a directory")
    with open(path, "rb") as fh:  # a file we may not read raises PermissionError (an OSError) here
        head = fh.read(4)
    if not head:
        raise ModelFileError(f"{path}: not a readable MuSE model file: the file is empty (0 bytes)")
    if head != b"PK\x03\x04" or not zipfile.is_zipfile(path):
        what = "it ends early" if head == b"PK\x03\x04" else "it does not start like one"
        raise ModelFileError(f"{path}: not a readable MuSE model file (truncated or corrupt?): MuSE model "
                             f"files are zip archives written by torch.save, and {what}")


def _safe_load(path: Path) -> dict:
    _check_archive(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ModelFileError(f"{path}: refused to load: the file contains objects other than plain data "
                             f"(weights_only load failed: {_first_line(err)})") from None
    except Exception as err:  # torch raises RuntimeError, EOFError, KeyError, ... on damaged archives
        raise ModelFileError(f"{path}: not a readable MuSE model file (truncated or corrupt?): "
                             f"{_first_line(err)}") from None


def upgrade_payload(payload: dict) -> dict:
    """Bring an older payload to ``FORMAT_VERSION``.

    Version 1 -> 2: coarse levels did not pool l = 2 features (``levels[k].tensors``, new in version 2 and true by
    default). A version-1 file gets ``tensors: false`` on each level that would pool them (both backbones with l = 2
    features: MACE with ``max_L: 2``), so it builds and computes as trained; its other levels keep the default, so
    a fine-tuning config that restates them as they were written matches (``tensors`` changes nothing there).

    Not covered: files written between l = 2 pooling and this version (commits 795ba13..37e2230, version 1 with l = 2
    pooling on) load with it off and are refused for their unexpected weights; retrain or re-save them."""
    version = payload.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        raise ModelFileError(f"unsupported MuSE model format version {version!r} (this MuSE reads up to "
                             f"{FORMAT_VERSION}); upgrade muse-ff")
    if version == 1:
        config = payload.get("config")
        if isinstance(config, dict) and isinstance(config.get("levels"), list):
            pooling = _l2_pooling_levels(config)
            levels = [dict(lev, tensors=False) if isinstance(lev, dict) and k in pooling else lev
                      for k, lev in enumerate(config["levels"])]
            payload = {**payload, "config": {**config, "levels": levels}, "format_version": 2}
    return payload


def _l2_pooling_levels(config: dict) -> set[int]:
    """Indices of the coarse levels that pool l = 2 features when ``config`` is built as it stands (none when it
    does not build: the caller reports that)."""
    from muse_ff.nn.model import build_model

    try:
        model = build_model(config)
    except Exception:  # noqa: BLE001  (an invalid config is reported by model_from_payload)
        return set()
    return {k for k, level in enumerate(getattr(model, "levels", [])) if getattr(level, "pool_tensors", False)}


def model_from_payload(payload: dict, source: str = "payload"):
    from muse_ff.nn.model import build_model

    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelFileError(f"{source}: not a MuSE model file (no '{FORMAT}' format marker)")
    payload = upgrade_payload(payload)
    config, state = payload.get("config"), payload.get("state_dict")
    if not isinstance(config, dict):
        raise ModelFileError(f"{source}: damaged MuSE model file: its 'config' is not a mapping")
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise ModelFileError(f"{source}: damaged MuSE model file: its 'state_dict' is not a mapping of "
                             f"parameter names to tensors")
    try:
        model = build_model(config)
    except (ValueError, TypeError, KeyError) as err:  # pydantic's ValidationError is a ValueError
        raise ModelFileError(f"{source}: the file's config is not a valid model config: "
                             f"{_first_line(err)}") from None
    expected = model.state_dict()
    for name, tensor in expected.items():  # load_state_dict would raise a RuntimeError listing them all
        if name in state and tuple(state[name].shape) != tuple(tensor.shape):
            raise ModelFileError(f"{source}: the file's weights do not match its config: parameter {name!r} "
                                 f"has shape {list(state[name].shape)} in the file, but {list(tensor.shape)} "
                                 f"in the model its config builds")
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ModelFileError(f"{source}: the file's weights do not match its config (missing {missing[:5]}, "
                             f"unexpected {unexpected[:5]})")
    model.eval()
    return model


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu"):
    """Load a model written by :func:`save_model`; never executes code from the file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model file not found: {path}")
    return model_from_payload(_safe_load(path), str(path)).to(device)
