"""Typed, validated training configuration: the single source of defaults for ``muse train CONFIG.yaml``.

A training file has three sections::

    model:     # muse_ff.config.ModelConfig (backbone, cutoff, levels, species, ...)
    data:      # DataConfig: where the frames come from, label keys, splits
    training:  # TrainingConfig: optimiser, schedule, loss weights, EMA, checkpoints, output dir

Unknown or ill-typed keys are rejected with :class:`~muse_ff.config.ConfigError` naming the key and what
is allowed. Paths in ``data`` are relative to the config file's folder when read with
:func:`load_train_config`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from muse_ff.config import ConfigError, ModelConfig, StrictModel, parse_model_config


_Strict = StrictModel  # unknown keys refused; numbers must be numbers (not booleans or strings)


class DataConfig(_Strict):
    """The ``data:`` section.

    Attributes:
        train: extended-XYZ file(s) of training frames (or of all frames, when split by ``split_key`` or
            by fractions).
        valid, test: optional separate files. When absent, frames are taken from ``train``: by the info
            key ``split_key`` (values ``train``/``valid``/``test``) when set, else at random with
            ``valid_fraction`` / ``test_fraction`` and ``split_seed``.
        energy_key, forces_key, stress_key: label names (mace-style ``REF_*`` defaults).
        missing_labels: ``error`` (default): every frame (train, valid and test) needs an energy, and forces
            when they are trained (``training.loss.forces > 0``); otherwise the run stops listing the frames
            and missing labels. ``energy_only``: frames without forces are trained on their energy alone,
            and so are frames whose forces contain NaN or inf (a warning counts them).
            Stress is trained where present (fully periodic frames only) and never required.
            Whatever this says, a label that is present must be usable: an energy that is not finite or not
            a number, forces of the wrong shape or (with ``error``) not finite, a malformed or non-finite
            stress stop the run with an error naming the frame (``file:index``) and the key.
    """

    train: str | list[str]
    valid: str | list[str] | None = None
    test: str | list[str] | None = None
    split_key: str | None = None
    valid_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    test_fraction: float = Field(0.0, ge=0.0, lt=1.0)
    split_seed: int = 0
    energy_key: str = "REF_energy"
    forces_key: str = "REF_forces"
    stress_key: str = "REF_stress"
    missing_labels: Literal["error", "energy_only"] = "error"

    @model_validator(mode="after")
    def _fractions(self) -> "DataConfig":
        if self.valid_fraction + self.test_fraction >= 1.0:
            raise ValueError("valid_fraction + test_fraction must leave frames for training (< 1)")
        return self

    def files(self, name: str) -> list[str]:
        value = getattr(self, name)
        return [] if value is None else ([value] if isinstance(value, str) else list(value))


class LossWeights(_Strict):
    """Loss weights (``training.loss``): MSE of energy per atom (eV/atom), forces (eV/Å), stress (eV/Å^3).

    Energies get real weight by default: long-range effects live in energies far more than in forces.
    """

    energy: float = Field(10.0, ge=0)
    forces: float = Field(1.0, ge=0)
    stress: float = Field(1.0, ge=0)

    @model_validator(mode="after")
    def _any(self) -> "LossWeights":
        if self.energy == 0 and self.forces == 0 and self.stress == 0:
            raise ValueError("at least one loss weight must be positive")
        return self


class TrainingConfig(_Strict):
    """The ``training:`` section.

    Attributes:
        epochs: maximum number of epochs.
        batch_size: frames per optimiser step, over all devices together (split evenly between them, so
            ``--devices`` does not change the optimisation).
        lr, weight_decay: AdamW learning rate and decoupled weight decay.
        schedule: ``plateau`` (ReduceLROnPlateau on the validation loss, ``plateau_factor`` /
            ``plateau_patience`` epochs), ``cosine`` (to ``min_lr`` at ``epochs``) or ``constant``.
        loss: :class:`LossWeights`.
        ema_decay: exponential moving average of the weights (validation, checkpoints and the saved
            model use the averaged weights); ``null`` disables it.
        grad_clip: gradient-norm clipping; ``null`` disables it.
        patience: early stopping after this many epochs without validation improvement; ``null`` never.
        seed: seeds weights, shuffling and everything else: the same config gives the same model.
        shuffle: reshuffle training frames every epoch (deterministically from ``seed`` and the epoch).
        checkpoint_every: write a resumable checkpoint every this many epochs (plus the last and best).
        output_dir: where checkpoints, logs and the trained model go.
        num_workers: data-loader worker processes.
    """

    epochs: int = Field(100, gt=0)
    batch_size: int = Field(8, gt=0)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    schedule: Literal["plateau", "cosine", "constant"] = "plateau"
    plateau_factor: float = Field(0.5, gt=0, lt=1)
    plateau_patience: int = Field(10, ge=0)
    min_lr: float = Field(1e-6, ge=0)
    loss: LossWeights = LossWeights()
    ema_decay: float | None = Field(0.99, ge=0, lt=1)
    grad_clip: float | None = Field(10.0, gt=0)
    patience: int | None = Field(50, gt=0)
    seed: int = 0
    shuffle: bool = True
    checkpoint_every: int = Field(10, gt=0)
    output_dir: str = "muse_run"
    num_workers: int = Field(0, ge=0)


class TrainConfig(_Strict):
    """A whole training file: ``model``, ``data`` and ``training`` sections."""

    model: ModelConfig = ModelConfig()
    data: DataConfig
    training: TrainingConfig = TrainingConfig()

    @field_validator("model", mode="before")
    @classmethod
    def _model(cls, v: Any) -> Any:
        return parse_model_config(v)  # ConfigError (a ValueError) is reported under "model"


def _format(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            parent = _section_fields(e["loc"][:-1])
            msg = "unknown key" + (f"; allowed: {sorted(parent)}" if parent else "")
        elif e["type"] == "missing":
            msg = "required key is missing"
        if msg.startswith("invalid configuration:"):  # nested model-config error: already names its keys
            lines.extend(m.strip() for m in msg.splitlines()[1:])
            continue
        lines.append(f"{loc}: {msg}")
    return "invalid training configuration:\n  " + "\n  ".join(lines)


def _section_fields(loc: tuple) -> list[str]:
    """Allowed keys at ``loc`` (a path of section names) for the error message."""
    cls: type[BaseModel] | None = TrainConfig
    for part in loc:
        if cls is None or part not in cls.model_fields:
            return []
        ann = cls.model_fields[part].annotation
        cls = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
    return list(cls.model_fields) if cls is not None else []


def parse_train_config(config: dict | TrainConfig) -> TrainConfig:
    """Validate a training dict, raising :class:`ConfigError` that names every bad key."""
    if isinstance(config, TrainConfig):
        return config
    if not isinstance(config, dict):
        raise ConfigError(f"a training configuration is a mapping with sections model/data/training, "
                          f"got {type(config).__name__}")
    try:
        return TrainConfig.model_validate(config)
    except ValidationError as err:
        raise ConfigError(_format(err)) from None


def _resolve(value: str | list[str] | None, base: Path):
    if value is None:
        return None
    if isinstance(value, str):
        p = Path(value).expanduser()
        return str(p if p.is_absolute() else base / p)
    return [_resolve(v, base) for v in value]


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that also reads ``1e-3`` as a number (YAML 1.2; PyYAML's 1.1 rules need a dot,
    ``1.0e-3``, and give the string ``"1e-3"``, which a numeric setting then refuses)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def load_train_config(path: str | Path) -> TrainConfig:
    """Read and validate a YAML training file; data paths are taken relative to its folder."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"training config not found: {path}")
    try:
        raw = yaml.load(path.read_text(), Loader=_Loader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if isinstance(raw, dict) and isinstance(raw.get("data"), dict):
        base = path.resolve().parent
        raw["data"] = {k: (_resolve(v, base) if k in ("train", "valid", "test") else v)
                       for k, v in raw["data"].items()}
    return parse_train_config(raw)
