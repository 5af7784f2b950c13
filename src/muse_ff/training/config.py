"""Typed, validated training configuration: the single source of defaults for ``muse train CONFIG.yaml``.

A training file has three sections::

    model:     # muse_ff.config.ModelConfig (backbone, cutoff, levels, species, ...)
    data:      # DataConfig: where the frames come from, label keys, splits
    training:  # TrainingConfig: optimiser, schedule, loss weights, EMA, checkpoints, output dir

Unknown or ill-typed keys are rejected with :class:`~muse_ff.config.ConfigError` naming the key and what
is allowed. Paths in ``data`` and ``training.finetune_from`` are relative to the config file's folder when
read with :func:`load_train_config`.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from ase.data import atomic_numbers, chemical_symbols
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from muse_ff.config import ConfigError, ModelConfig, StrictModel, parse_model_config, refuse_non_number

#: ``config_type`` of isolated-atom frames (mace's convention): one atom, energy label = its E0
ISOLATED_ATOM = "IsolatedAtom"
#: ``config_type`` of frames without one (mace's convention)
DEFAULT_CONFIG_TYPE = "Default"
#: the named choices of ``data.E0s`` (``average`` is mace's name for the least-squares fit)
E0_CHOICES = ("auto", "isolated", "fit", "average")


def _finite_number(value: Any, what: str) -> float:
    try:
        refuse_non_number(value)
    except ValueError as err:
        raise ValueError(f"{what}: {err}") from None
    if not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise ValueError(f"{what}: expected a finite number, got {value!r}")
    return float(value)


def _element_symbol(key: Any) -> str:
    """An element symbol from a symbol or an atomic number (``"H"``, ``1``, ``"1"``)."""
    if isinstance(key, bool):
        raise ValueError(f"keys are element symbols or atomic numbers, got {key!r}")
    if isinstance(key, str) and key.strip().isdigit():
        key = int(key)
    if isinstance(key, int):
        if not 1 <= key <= 118:
            raise ValueError(f"unknown element Z={key}")
        return chemical_symbols[key]
    if isinstance(key, str) and atomic_numbers.get(key, 0) > 0:
        return key
    raise ValueError(f"unknown element {key!r} (keys are element symbols such as 'H' or atomic numbers)")


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
        dipole_key: info key of the dipole-moment label (e Å, 3 numbers; default ``REF_dipole``), trained
            with ``training.loss.dipole``.
        interaction_key: info key of an interaction (or binding) energy label (eV), ``E(frame) - sum over
            its covalent components E(component alone)`` at the frame's geometry (the datasets'
            ``interaction_energy`` and ``binding_energy``); trained with ``training.loss.interaction``. Each
            labelled frame's components are evaluated as structures of their own (a component's charge is
            the sum of its ``initial_charges``). Default ``None``: not read.
        missing_labels: ``error`` (default): every frame (train, valid and test) needs an energy, and forces
            when they are trained (``training.loss.forces > 0``); otherwise the run stops listing the frames
            and missing labels. ``energy_only``: frames without forces are trained on their energy alone,
            and so are frames whose forces contain NaN or inf (a warning counts them).
            Stress is trained where present (fully periodic frames only) and never required.
            Whatever this says, a label that is present must be usable: an energy that is not finite or not
            a number, forces of the wrong shape or (with ``error``) not finite, a malformed or non-finite
            stress stop the run with an error naming the frame (``file:index``) and the key.
        config_type_key: info key of each frame's configuration type (mace: ``config_type``); frames
            without it have the type ``Default``. It selects ``training.loss.config_type_weights`` and marks
            isolated atoms.
        E0s: where the per-element reference energies E0 (eV) of the model come from
            (``E = sum_i E0[Z_i] + shift * N + scale * network``):

            - ``auto`` (default): from the isolated-atom frames when the data has any, else ``fit``.
            - ``isolated``: from the isolated-atom frames; an error when there are none.
            - ``fit`` (or ``average``, mace's name for it): the least-squares fit of E0 to the training
              energies (minimum-norm when the compositions do not determine it).
            - a map ``{element: eV}`` (symbols or atomic numbers as keys), e.g. ``{H: -13.6, O: -2041.8}``.

            Isolated-atom frames are frames with ``config_type: IsolatedAtom`` (under
            ``config_type_key``), exactly one atom and an energy label (mace's convention; forces are not
            needed). They are always training data: they never enter a random validation/test split, and
            any found in ``data.valid``/``data.test`` or marked valid/test by ``split_key`` are moved to the
            training frames with a warning. Frames of one element must agree within 1 meV. When they give
            the E0s (``auto``, ``isolated``) they are not trained on as ordinary frames (mace leaves them out
            of the loss too) and the summary counts them under ``frames.isolated_atoms``; with ``fit`` or a
            map they are ordinary training frames (``config_type_weights: {IsolatedAtom: 0}`` drops them).

            With isolated atoms or a map, every element of the data (train, valid and test frames) needs
            an E0 from that source (or from ``training.finetune_from``), else the run stops naming the
            elements that lack one; a map may name elements the data does not have. Elements the model
            knows but the training frames never show (and no source gives) get the mean energy per atom.
            Unless ``training.finetune_from`` keeps them, ``shift`` (a per-atom constant: the mean residual
            energy per atom after the E0s) and ``scale`` (the force RMS) are fitted as well. The choice is
            printed when training starts (one line naming each element's source and value) and written to
            ``summary.json`` under ``reference`` (``e0_by_element``, ``e0_source``, ``source``).
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
    interaction_key: str | None = None
    dipole_key: str = "REF_dipole"
    missing_labels: Literal["error", "energy_only"] = "error"
    config_type_key: str = "config_type"
    E0s: Literal["auto", "isolated", "fit", "average"] | dict[str, float] = "auto"

    @field_validator("E0s", mode="before")
    @classmethod
    def _e0s(cls, v: Any) -> Any:
        if isinstance(v, str):
            if v not in E0_CHOICES:
                raise ValueError(f"{v!r} is not a choice: expected one of {list(E0_CHOICES)} or a map "
                                 "{element: energy in eV}")
            return v
        if not isinstance(v, dict):
            raise ValueError(f"expected one of {list(E0_CHOICES)} or a map {{element: energy in eV}}, "
                             f"got {type(v).__name__}")
        if not v:
            raise ValueError("the map is empty; give {element: energy in eV} or one of "
                             f"{list(E0_CHOICES)}")
        out: dict[str, float] = {}
        for key, value in v.items():
            sym = _element_symbol(key)
            if sym in out:
                raise ValueError(f"element {sym} is given twice")
            out[sym] = _finite_number(value, f"energy of {key!r}")
        return out

    @model_validator(mode="after")
    def _fractions(self) -> "DataConfig":
        if self.valid_fraction + self.test_fraction >= 1.0:
            raise ValueError("valid_fraction + test_fraction must leave frames for training (< 1)")
        return self

    def files(self, name: str) -> list[str]:
        value = getattr(self, name)
        return [] if value is None else ([value] if isinstance(value, str) else list(value))


class LossWeights(_Strict):
    """Loss weights (``training.loss``).

    The loss of a batch is ``energy * MSE(E/N) + forces * MSE(F) + stress * MSE(sigma)``: mean squared
    errors of the energy per atom (eV/atom), of the force components (eV/Å) and of the stress components
    (eV/Å^3) over the labelled entries. Energies get real weight by default: long-range effects live in
    energies far more than in forces. Stress is trained on frames with a stress label that are periodic
    in all three directions, also in batches that mix them with molecules or slabs (their stress labels,
    if any, are ignored); a weight of 0 switches a term off (and its derivative is then not computed).

    Attributes:
        energy, forces, stress: the weights above (>= 0, at least one positive).
        interaction: weight of the MSE of interaction energies (eV, per labelled frame; ``data.interaction_key``,
            needed when this is positive), default 0. They are meV-sized next to eV totals and decide the
            long-range tails: weigh them like the energy per atom (e.g. 10-100).
        dipole: weight of the MSE of the dipole components (e Å; label ``data.dipole_key``, default
            ``REF_dipole``, which ``muse label`` writes for free structures with the xTB teachers) against
            ``sum_i q_i r_i`` of the learned charges; needs ``model.physical`` with electrostatics. Default 0.
            The charges are otherwise fixed by energies alone, which leaves them poorly determined.
        config_type_weights: ``{config_type: weight}`` (>= 0; types not named weigh 1; frames without a
            type are ``Default``, see ``data.config_type_key``). Each frame's squared errors (its energy,
            each of its force components, its stress components) are multiplied by its weight before the
            means above (mace's convention: the means still divide by the number of labelled entries, so a
            weight of 0 removes a frame's pull on the gradient and 2 doubles it). The validation loss
            (best model, early stopping, ``plateau``) is weighted the same way; the reported MAE/RMSE are
            not. A type that no training frame has gets a warning (a typo would otherwise go unnoticed).
    """

    energy: float = Field(10.0, ge=0)
    forces: float = Field(1.0, ge=0)
    stress: float = Field(1.0, ge=0)
    interaction: float = Field(0.0, ge=0)
    dipole: float = Field(0.0, ge=0)
    config_type_weights: dict[str, float] = {}

    @field_validator("config_type_weights", mode="before")
    @classmethod
    def _type_weights(cls, v: Any) -> Any:
        if v is None:
            return {}
        if not isinstance(v, dict):
            raise ValueError(f"expected a map {{config_type: weight}}, got {type(v).__name__}")
        out = {}
        for key, value in v.items():
            w = _finite_number(value, f"weight of {key!r}")
            if w < 0:
                raise ValueError(f"weight of {key!r} is {value}: weights must be >= 0")
            out[str(key)] = w
        return out

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
        finetune_from: a MuSE model file (``model.pt`` of an earlier run; relative to the config file's
            folder) whose weights the training starts from. It is read with :func:`muse_ff.load_model`
            (weights and config only, never a pickle). The ``model:`` section may be left out: the loaded
            model's architecture is used. Keys it does give must equal the loaded model's (else the run stops
            naming the first mismatched key), except ``dtype`` (the weights are cast) and ``species``, which
            may extend the loaded list (it must contain every loaded element). Without ``model.species`` the
            species are the loaded model's plus any new element of the data. Every weight is copied;
            a new element gets a fresh embedding row (the embedding's usual random initialisation, from
            ``seed``), so on the loaded elements the fine-tuned model starts at exactly the loaded model's
            predictions. Reference energies: the loaded model's E0s, ``scale`` and ``shift`` are kept, and
            only what the data or config gives anew replaces them: E0s from isolated-atom frames or a
            ``data.E0s`` map replace those elements' E0s (and ``shift`` is then refitted, as the old one
            belonged to the old E0s), ``data.E0s: fit`` refits every E0 and ``shift``; new elements that no
            source gives are fitted by least squares with every other E0 held fixed. ``scale`` is always
            the loaded model's. The optimiser, schedule and EMA start afresh (use ``--resume`` to continue
            an interrupted run instead).
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
    finetune_from: str | None = None


class TrainConfig(_Strict):
    """A whole training file: ``model``, ``data`` and ``training`` sections."""

    model: ModelConfig = ModelConfig()
    data: DataConfig
    training: TrainingConfig = TrainingConfig()

    @field_validator("model", mode="before")
    @classmethod
    def _model(cls, v: Any) -> Any:
        return parse_model_config(v)  # ConfigError (a ValueError) is reported under "model"

    @model_validator(mode="after")
    def _interaction(self) -> "TrainConfig":
        if self.training.loss.dipole > 0 and (self.model.physical is None or not self.model.physical.electrostatics):
            raise ValueError("training.loss.dipole is positive but the model has no learned charges: add "
                             "model.physical (with electrostatics)")
        if self.training.loss.interaction > 0 and self.data.interaction_key is None:
            raise ValueError("training.loss.interaction is positive but data.interaction_key is not set: name "
                             "the info key of the interaction energies (e.g. interaction_energy)")
        return self


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
    base = path.resolve().parent
    if isinstance(raw, dict) and isinstance(raw.get("data"), dict):
        raw["data"] = {k: (_resolve(v, base) if k in ("train", "valid", "test") else v)
                       for k, v in raw["data"].items()}
    if isinstance(raw, dict) and isinstance(raw.get("training"), dict) and \
            isinstance(raw["training"].get("finetune_from"), str):
        raw["training"] = {**raw["training"], "finetune_from": _resolve(raw["training"]["finetune_from"], base)}
    return parse_train_config(raw)
