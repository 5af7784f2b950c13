"""Backbones implementing the :class:`~muse_ff.nn.backbones.base.Backbone` protocol, and their registry.

``BACKBONES`` is the one map of backbones: config name (``model.backbone.name``) -> :class:`BackboneSpec`.
A spec holds the class and the backbone's typed settings (:class:`Setting`, the hyper-parameters that
``model.backbone`` takes), and is called like the class: ``BACKBONES[name](in_features, cutoff,
vector_in_features=0, tensor_in_features=0, **hparams)``.

Where each part of a setting comes from (one place each):

* name, type and default: the class's constructor signature (every parameter but ``in_features``,
  ``cutoff``, ``vector_in_features`` and ``tensor_in_features``, which the MuSE model sets per level);
* meaning and allowed values: the declarations below (:data:`_DECLARED`), with each backbone's rules that
  involve several settings (:func:`_check_so3krates`, :func:`_check_mace`).

:func:`muse_ff.config.parse_model_config` validates ``model.backbone`` and every ``levels[k].backbone``
against them before any model is built; :func:`settings_table` writes the table of docs/BACKBONES.md
(``tests/test_backbone_settings.py`` checks that the file matches it). The MACE adapter imports mace-torch
only when a MACE backbone is built, so validating a MACE configuration needs no mace-torch.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from muse_ff.nn.backbones.base import Backbone, BackboneOutput
from muse_ff.nn.backbones.mace import MACE
from muse_ff.nn.backbones.painn import PaiNN
from muse_ff.nn.backbones.so3krates import SO3krates
from muse_ff.nn.sph import MAX_DEGREE, check_degrees

#: constructor parameters that are not settings: the MuSE model passes them for each level
NOT_SETTINGS = ("self", "in_features", "cutoff", "vector_in_features", "tensor_in_features")

#: annotation text in the constructors -> the type as a setting (YAML lists for sequences)
_TYPES = {"int": "int", "float": "float", "bool": "bool", "str": "str", "Sequence[int]": "list[int]",
          "list[int]": "list[int]", "tuple[int, ...]": "list[int]"}


def _plain(value: Any) -> Any:
    """A default as the configuration writes it (tuples as lists)."""
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def _number_text(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


@dataclass(frozen=True)
class Setting:
    """One hyper-parameter of a backbone (a key of ``model.backbone``).

    ``type`` is ``int``, ``float``, ``bool``, ``str`` or ``list[int]``; ``ge``/``gt``/``le`` bound a number
    (each entry of a ``list[int]``), ``min_items`` the length of a list.
    """

    name: str
    type: str
    default: Any
    meaning: str
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    min_items: int | None = None

    def allowed(self) -> str:
        """The allowed values in words (``">= 1"``, ``"0 to 3"``, ``"each 1 to 11, at least 1"``)."""
        if self.type == "bool":
            return "true or false"
        if self.type == "str":
            return "a string"
        text = self._range()
        if self.type == "list[int]":
            text = f"each {text}" if text else ""
            if self.min_items:
                text = ", ".join(t for t in (text, f"at least {self.min_items}") if t)
        return text or "any"

    def _range(self) -> str:
        """The bounds of a number (of each entry of a list) in words, ``""`` if none."""
        parts = []
        if self.ge is not None and self.le is not None:
            parts.append(f"{_number_text(self.ge)} to {_number_text(self.le)}")
        elif self.ge is not None:
            parts.append(f">= {_number_text(self.ge)}")
        elif self.le is not None:
            parts.append(f"<= {_number_text(self.le)}")
        if self.gt is not None:
            parts.append(f"> {_number_text(self.gt)}")
        return ", ".join(parts)

    def check(self, value: Any) -> Any:
        """``value`` as the backbone takes it, or ``ValueError`` naming this setting.

        Numbers are strict: not booleans or strings, finite, an ``int`` whole (``16.0`` is read as 16, ``16.5``
        refused); a ``list[int]`` is a list of whole numbers; a ``bool`` is true or false; a ``str`` a string.
        """
        where = f"backbone hyper-parameter {self.name!r}"
        if self.type in ("int", "float"):
            number = _number(value, where, whole=self.type == "int")
            self._bounds(number, where)
            return int(number) if self.type == "int" else float(number)
        if self.type == "list[int]":
            if not isinstance(value, (list, tuple)) or not all(_is_whole(v) for v in value):
                raise ValueError(f"{where}: Input should be a list of whole numbers, got {value!r}")
            if self.min_items is not None and len(value) < self.min_items:
                n = self.min_items
                raise ValueError(f"{where}: Input should have at least {n} entr{'y' if n == 1 else 'ies'}, "
                                 f"got {list(value)!r}")
            for v in value:
                self._bounds(v, where, entry=True)
            return [int(v) for v in value]
        if self.type == "bool" and not isinstance(value, bool):
            raise ValueError(f"{where}: Input should be true or false, got {value!r}")
        if self.type == "str" and not isinstance(value, str):
            raise ValueError(f"{where}: Input should be a string, got {value!r}")
        return value

    def _bounds(self, x: float, where: str, entry: bool = False) -> None:
        ok = (self.ge is None or x >= self.ge) and (self.gt is None or x > self.gt) \
            and (self.le is None or x <= self.le)
        if not ok:
            what = "each entry must be" if entry else "must be"
            raise ValueError(f"{where}: {what} {self._range()}, got {x!r}")


def _is_whole(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
        and float(value).is_integer()


def _number(value: Any, where: str, whole: bool) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{where}: Input should be a valid number, not a boolean ({value!r})")
    if isinstance(value, (str, bytes)):
        raise ValueError(f"{where}: Input should be a valid number, not a string ({value!r})")
    if not isinstance(value, (int, float)):
        raise ValueError(f"{where}: Input should be a valid number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{where}: Input should be a finite number, got {value!r}")
    if whole and not float(value).is_integer():
        raise ValueError(f"{where}: Input should be a whole number, got {value!r}")
    return value


@dataclass(frozen=True)
class _Declared:
    """What a constructor signature cannot say about a setting: its meaning and allowed values."""

    meaning: str
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    min_items: int | None = None


@dataclass(frozen=True)
class BackboneSpec:
    """A backbone of the registry: its config name, class, typed settings and cross-setting rules.

    Calling it builds the backbone: ``spec(in_features, cutoff, vector_in_features=0, tensor_in_features=0,
    **hparams)``.
    """

    name: str
    cls: type
    declared: Mapping[str, _Declared] = field(repr=False)
    #: rules over several settings, given every setting's value (defaults filled in); raise ValueError
    rules: Callable[[dict[str, Any]], None] | None = field(default=None, repr=False)
    #: what building it needs beyond MuSE itself (for the docs)
    requires: str | None = None

    def __post_init__(self) -> None:  # checked at import: a constructor changed without its declaration here
        params = {k: p for k, p in inspect.signature(self.cls.__init__).parameters.items() if k not in NOT_SETTINGS}
        missing, extra = sorted(set(params) - set(self.declared)), sorted(set(self.declared) - set(params))
        if missing or extra:
            raise TypeError(f"backbone {self.name!r}: settings of {self.cls.__name__}.__init__ without a meaning "
                            f"{missing}, meanings of no setting {extra}")
        settings = {}
        for name, p in params.items():
            a = p.annotation
            text = a if isinstance(a, str) else getattr(a, "__name__", str(a))
            if text not in _TYPES or p.default is inspect.Parameter.empty:
                raise TypeError(f"backbone {self.name!r}: setting {name!r} needs a default and one of the "
                                f"annotations {sorted(_TYPES)}, has {text!r}")
            d = self.declared[name]
            settings[name] = Setting(name, _TYPES[text], _plain(p.default), d.meaning, d.ge, d.gt, d.le, d.min_items)
        object.__setattr__(self, "_settings", settings)

    @property
    def settings(self) -> dict[str, Setting]:
        """Every setting, in the constructor's order: name, type and default from the signature."""
        return dict(self._settings)

    def defaults(self) -> dict[str, Any]:
        """Every setting's default (fresh lists: yours to change)."""
        return {k: _plain(s.default) for k, s in self._settings.items()}

    def check(self, hparams: Mapping[str, Any]) -> dict[str, Any]:
        """The given ``hparams`` (only those) as the backbone takes them; ``ValueError`` naming the first bad
        key: unknown, ill-typed, out of range, or breaking a rule that involves several settings."""
        settings = self._settings
        out = {}
        for key, value in hparams.items():
            if key not in settings:
                raise ValueError(f"unknown hyper-parameter {key!r} for backbone {self.name!r}; "
                                 f"allowed: {sorted(settings)}")
            out[key] = settings[key].check(value)
        if self.rules is not None:
            self.rules(self.defaults() | out)
        return out

    def __call__(self, in_features: int, cutoff: float, vector_in_features: int = 0, tensor_in_features: int = 0,
                 **hparams) -> Backbone:
        """Build it; ``tensor_in_features`` (l = 2 input channels) reaches only a class that takes them
        (``takes_tensors``): any other backbone is built without l = 2 input."""
        if tensor_in_features and getattr(self.cls, "takes_tensors", False):
            hparams = {**hparams, "tensor_in_features": tensor_in_features}
        return self.cls(in_features, cutoff=cutoff, vector_in_features=vector_in_features, **hparams)


def _check_so3krates(s: dict[str, Any]) -> None:
    try:
        degrees = check_degrees(s["degrees"])
    except ValueError as err:
        raise ValueError(f"backbone hyper-parameter 'degrees': {err}") from None
    if s["features"] % s["heads"] or s["features"] % len(degrees):
        raise ValueError(f"so3krates backbone: features ({s['features']}) must be divisible by heads "
                         f"({s['heads']}) and by the number of degrees ({len(degrees)})")


def _check_mace(s: dict[str, Any]) -> None:
    if s["max_ell"] < s["max_L"]:
        raise ValueError(f"mace backbone: max_ell ({s['max_ell']}) must be >= max_L ({s['max_L']})")
    if s["vector_output"] and s["max_L"] < 1:
        raise ValueError("mace backbone: vector_output needs max_L >= 1 (no l = 1 hidden features); set "
                         "vector_output: false for an invariant MACE")


_POSITIVE = {"ge": 1}
#: each backbone's settings: meaning and allowed values (names, types and defaults: the constructors)
_DECLARED: dict[str, dict[str, _Declared]] = {
    "painn": {
        "features": _Declared("width F of the scalar and vector features", **_POSITIVE),
        "layers": _Declared("message-passing steps (message + update block each)", **_POSITIVE),
        "num_basis": _Declared("Bessel radial basis functions", **_POSITIVE),
    },
    "mace": {  # names as in mace-torch's mace_run_train
        "num_channels": _Declared("channels per irrep", **_POSITIVE),
        "max_L": _Declared("highest l of the hidden features (0: invariant MACE, 1: + vectors, 2: + l = 2 features, which coarse "
                           "MACE levels pool and pass on: docs/NONLOCAL.md)",
                           ge=0, le=3),
        "max_ell": _Declared("highest l of the edge spherical harmonics; at least max_L", **_POSITIVE),
        "correlation": _Declared("body order of the symmetric contraction", ge=1, le=4),
        "num_interactions": _Declared("message-passing layers", **_POSITIVE),
        "num_radial_basis": _Declared("Bessel radial functions", **_POSITIVE),
        "num_cutoff_basis": _Declared("p of mace's PolynomialCutoff (C2 at the cutoff for every p)", ge=2),
        "radial_mlp": _Declared("hidden widths of the radial MLP", ge=1),
        "avg_num_neighbors": _Declared("messages are divided by it; fixed, not fitted to the data, so energies "
                                       "stay extensive", gt=0),
        "interaction": _Declared("mace-torch interaction class of the layers after the first (a name in "
                                 "mace.modules.interaction_classes, checked when the model is built)"),
        "interaction_first": _Declared("mace-torch interaction class of the first layer (as interaction)"),
        "vector_output": _Declared("return the last layer's 1o channels as vectors (needs max_L >= 1); false keeps "
                                   "only scalars in the last layer, as MACE itself does"),
    },
    "so3krates": {  # defaults as published (Frank et al. 2024)
        "features": _Declared("invariant width F; divisible by heads and by the number of degrees", **_POSITIVE),
        "heads": _Declared("attention heads of the invariant update (the Euclidean update has one per degree)",
                           **_POSITIVE),
        "degrees": _Declared("degrees of the Euclidean variables, distinct (the reference code's default is "
                             "[1, 2, 3, 4]); the l = 1 ones are the backbone's vector output",
                             ge=1, le=MAX_DEGREE, min_items=1),
        "layers": _Declared("attention + exchange layers", **_POSITIVE),
        "num_basis": _Declared("Bessel radial functions (the reference uses 16 Bernstein polynomials)", **_POSITIVE),
        "residual_mlp": _Declared("the two per-layer residual MLPs on the invariant features (as in the reference "
                                  "code)"),
    },
}

#: backbone name -> :class:`BackboneSpec` (the one map of backbones)
BACKBONES: dict[str, BackboneSpec] = {
    "painn": BackboneSpec("painn", PaiNN, _DECLARED["painn"]),
    "mace": BackboneSpec("mace", MACE, _DECLARED["mace"], _check_mace,
                         requires="mace-torch: pip install 'muse-ff[mace]'"),
    "so3krates": BackboneSpec("so3krates", SO3krates, _DECLARED["so3krates"], _check_so3krates),
}

__all__ = ["BACKBONES", "Backbone", "BackboneOutput", "BackboneSpec", "MACE", "PaiNN", "SO3krates", "Setting",
           "backbone_class", "settings_table"]


def backbone_class(name: str) -> type:
    """The class behind a backbone name."""
    return BACKBONES[name].cls


def _cell(value: Any) -> str:
    """A default as YAML writes it, as code."""
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    return f"`{value}`"


def settings_table() -> str:
    """Markdown: one table per backbone of its settings (name, type, default, allowed values, meaning),
    generated from :data:`BACKBONES` (the text between the markers of docs/BACKBONES.md)."""
    lines = []
    for name, spec in BACKBONES.items():
        needs = f" (needs {spec.requires})" if spec.requires else ""
        lines += [f"### `{name}`: {spec.cls.__name__}{needs}", "",
                  "| setting | type | default | allowed | meaning |", "|---|---|---|---|---|"]
        for s in spec.settings.values():
            lines.append(f"| `{s.name}` | {s.type} | {_cell(s.default)} | {s.allowed()} | {s.meaning} |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


#: the generated part of docs/BACKBONES.md lies between these lines
TABLE_BEGIN = "<!-- settings table: generated by muse_ff.nn.backbones.settings_table(); do not edit by hand -->"
TABLE_END = "<!-- end of settings table -->"


def write_settings_table(path: str | Path) -> bool:
    """Replace the generated table in ``path`` (between :data:`TABLE_BEGIN` and :data:`TABLE_END`) by
    :func:`settings_table`; returns whether the file changed."""
    path = Path(path)
    text = path.read_text()
    head, sep, rest = text.partition(TABLE_BEGIN + "\n")
    _, sep2, tail = rest.partition(TABLE_END)
    if not (sep and sep2):
        raise ValueError(f"{path} lacks the lines {TABLE_BEGIN!r} ... {TABLE_END!r}")
    new = head + TABLE_BEGIN + "\n" + settings_table() + TABLE_END + tail
    if new != text:
        path.write_text(new)
    return new != text

