"""Typed, validated model configuration: the single source of defaults for the ``model:`` YAML section.

Unknown or ill-typed keys are rejected with a message naming the key and what is allowed.
"""

from __future__ import annotations

import typing
from typing import Any, Literal

from ase.data import atomic_numbers, chemical_symbols
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from muse_ff.nn.backbones import BACKBONES


class ConfigError(ValueError):
    """An invalid configuration; the message names the offending key."""


def _is_numeric(annotation) -> bool:
    """``int``, ``float`` or an optional one (``float | None``): fields that take a plain number."""
    if annotation in (int, float):
        return True
    args = typing.get_args(annotation)
    return bool(args) and all(a in (int, float, type(None)) for a in args) and any(a is not type(None) for a in args)


def refuse_non_number(value: Any) -> Any:
    """Raise for booleans and strings given where a number is expected (pydantic's lax mode reads
    ``true`` as 1 and ``"5"`` as 5); ints stay valid for float fields."""
    if isinstance(value, bool):
        raise ValueError(f"Input should be a valid number, not a boolean ({value!r})")
    if isinstance(value, (str, bytes)):
        raise ValueError(f"Input should be a valid number, not a string ({value!r})")
    return value


class StrictModel(BaseModel):
    """Base of every configuration section: unknown keys are refused, values are frozen, and numeric
    settings (``int``/``float`` fields, optional or not) take finite numbers only, not booleans, strings, NaN
    or infinity (``cutoff: .inf`` would ask for every pair in the universe)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _numbers_only(cls, value: Any, info: ValidationInfo) -> Any:
        if info.field_name is not None and _is_numeric(cls.model_fields[info.field_name].annotation):
            return refuse_non_number(value)
        return value




def _backbone_spec(name: str):
    """The registry entry of a backbone (:class:`muse_ff.nn.backbones.BackboneSpec`)."""
    return BACKBONES[name]


def _backbone_hparams(name: str) -> dict:
    """The settings a backbone takes (:class:`muse_ff.nn.backbones.Setting`: type, default, meaning), by name."""
    return _backbone_spec(name).settings


class BackboneConfig(StrictModel):
    """A backbone by name with its hyper-parameters (``model.backbone``).

    The keys besides ``name`` are the backbone's settings (:data:`muse_ff.nn.backbones.BACKBONES`, the one
    map of backbones; table in docs/BACKBONES.md): each is checked for its type and allowed values, and the
    backbone's rules over several settings (e.g. SO3krates' ``features`` divisible by ``heads``) with the
    defaults filled in, here, before any model is built. Only the keys given are stored (saved models and
    ``config.yaml`` keep them as written); the defaults are the constructors'.
    """

    model_config = ConfigDict(extra="allow", frozen=True)
    name: str = "painn"

    @model_validator(mode="after")
    def _check(self) -> "BackboneConfig":
        if not isinstance(self.name, str) or self.name not in BACKBONES:
            raise ValueError(f"unknown backbone {self.name!r}; allowed: {sorted(BACKBONES)}")
        _backbone_spec(self.name).check(self.model_extra or {})
        return self

    @property
    def hparams(self) -> dict[str, Any]:
        """The hyper-parameters given, as the backbone takes them (``features: 16.0`` as 16, lists as lists)."""
        return _backbone_spec(self.name).check(self.model_extra or {})

    @property
    def settings(self) -> dict[str, Any]:
        """Every setting of the backbone: the given ones over the defaults."""
        return _backbone_spec(self.name).defaults() | self.hparams


def _as_backbone(v: Any) -> Any:
    return {"name": v} if isinstance(v, str) else v


#: default Gaussian assignment width of a coarse level, as a fraction of its cutoff (levels[k].sigma)
SIGMA_PER_CUTOFF = 0.2


class LevelConfig(StrictModel):
    """One coarse level (``model.levels[k]``); ``{}`` takes every default.

    Attributes:
        ratio: about one coarse node per ``ratio`` nodes of the finer level.
        cutoff: radius (Å) of this level's coarse radius graph; default twice the finer level's.
        hops: assignment radius in bonds: a node may be assigned to a coarse node whose seed group is within
            ``hops`` bonds of it, and every atom is within ``hops`` bonds of a seed (default 4 for the first
            coarse level, doubling per level).
        sigma: width (Å) of the Gaussian assignment kernel; default = ``cutoff`` / 5.
        anchors: ``"topology"`` (the only kind): coarse nodes chosen from the covalent topology alone (see
            :mod:`muse_ff.nn.coarsening`). ``"bond-fps"`` is read as ``"topology"`` (older configs);
            ``"spatial-fps"`` (geometry-dependent anchors) was removed because it made the energy depend on
            the calculator's history.
        reach: not used (kept so that older configs load); topological levels use ``hops``.
        backbone: this level's backbone; default the level-0 backbone (same class, own weights).
        min_nodes: fewest coarse nodes a structure must have at this level (default 1: a small molecule
            may be one coarse node); a structure with fewer raises a clear error.
        dispersion: add a learned, damped -C6/R^6 pair energy between this level's coarse nodes (within
            its cutoff), so the tail has a physical, attractive form (default false).
        saturation: n0 of the density normalisation of this level's messages: an edge i <- j weighs
            ``s_ij n0 / (n0 + rho_i)`` with ``rho_i = sum_j s_ij f_c(r_ij)`` the smooth count of i's coarse
            neighbours (s: inner switch, f_c: cutoff envelope), so the total weight a coarse node receives stays
            below n0 at any density: sums where coarse nodes are sparse (gas phase), means where they are
            dense (a liquid, with one coarse node per molecule, or a tiny periodic cell). Default 8.
        edges: which coarse nodes exchange messages at this level. ``"all"`` (default): every pair within the
            cutoff. ``"within-component"``: only pairs within one instance of a covalent component (one
            molecule, not its periodic copies; or one bonded network such as a graphene sheet, whose periodic
            images are itself; :func:`muse_ff.nn.pooling.coarse_graph`), so the
            hierarchy carries non-local effects along bonds and across a structure, and nothing between
            molecules: their interaction is then the atom level's within its cutoff plus the physical long-range
            terms (``model.physical``), whose form extrapolates to molecules never trained on
            (docs/LONG_RANGE.md). In a molecular liquid it also leaves the coarse levels without edges.
        tensors: pool the finer level's l = 2 features into this level when both backbones have them (MACE with
            ``max_L: 2``; ``BackboneOutput.tensors``), so a headless orientation (a CH2 plane seen along a chain's
            C2 axis) reaches the far end of a molecule (docs/NONLOCAL.md). Default true; model files written
            before l = 2 pooling existed (format version 1) load with false, as they were trained.
    """

    ratio: float = Field(8.0, gt=1.0)
    cutoff: float | None = Field(None, gt=0)
    reach: float | None = Field(None, gt=0)
    hops: int | None = Field(None, ge=1, le=24)
    sigma: float | None = Field(None, gt=0)
    anchors: Literal["topology", "bond-fps", "spatial-fps"] | None = None
    backbone: BackboneConfig | None = None
    min_nodes: int = Field(1, ge=1)
    dispersion: bool = False
    saturation: float = Field(8.0, gt=0)
    edges: Literal["all", "within-component"] = "all"
    tensors: bool = True

    _v_backbone = field_validator("backbone", mode="before")(_as_backbone)

    @model_validator(mode="after")
    def _dispersion_needs_edges_between_molecules(self):
        if self.dispersion and self.edges == "within-component":
            raise ValueError("levels[k].dispersion acts on the level's coarse edges, and edges: within-component "
                             "leaves none between molecules, where that dispersion would act: use model.physical "
                             "(C6 dispersion between all atoms, no cutoff) instead, or edges: all")
        return self

    @field_validator("anchors")
    @classmethod
    def _anchors(cls, v: Any) -> Any:
        if v == "spatial-fps":
            raise ValueError("'spatial-fps' anchors were removed: they depended on the geometry the calculator "
                             "saw first; coarse levels are now chosen from the covalent topology "
                             "(anchors: topology, the default)")
        return v


class HeadConfig(StrictModel):
    """Per-node energy head: an MLP with ``hidden`` units."""

    hidden: int = Field(32, gt=0)


class LongRangeConfig(StrictModel):
    """``model.long_range``: latent Ewald summation (Cheng 2025), the long-range baseline.

    Latent charges from an MLP (``hidden`` units, ``channels`` outputs) on the atoms' final features, with
    the Coulomb energy of Gaussian clouds of width ``smearing`` (Å); periodic sums go to wavevectors of
    wavelength ``wavelength`` (Å, default ``smearing``). ``neutral: true`` makes the latent charges sum to
    zero over each covalent component (not in the paper). See :mod:`muse_ff.nn.long_range`.
    """

    kind: Literal["latent-ewald"] = "latent-ewald"
    smearing: float = Field(1.0, gt=0)
    channels: int = Field(1, gt=0)
    hidden: int = Field(32, gt=0)
    wavelength: float | None = Field(None, gt=0)
    #: latent charges sum to zero over each covalent component (a deviation from the paper, off by default)
    neutral: bool = False


class EwaldConfig(StrictModel):
    """``model.physical.ewald``: how fully periodic frames are summed (torch-pme; see
    :class:`muse_ff.nn.physical.EwaldSettings`, whose defaults these are)."""

    cutoff: float = Field(12.0, gt=0)
    switch_width: float = Field(2.0, gt=0)
    smearing: float | None = Field(None, gt=0)
    wavelength: float | None = Field(None, gt=0)
    method: Literal["auto", "ewald", "pme"] = "auto"
    mesh_spacing: float | None = Field(None, gt=0)
    interpolation_nodes: int = Field(5, ge=3, le=7)

    @model_validator(mode="after")
    def _width(self) -> "EwaldConfig":
        if self.switch_width >= self.cutoff:
            raise ValueError(f"switch_width ({self.switch_width} Å) must be below cutoff ({self.cutoff} Å)")
        return self


class PhysicalConfig(StrictModel):
    """``model.physical``: learned charges that sum to each charge group's total (neutral molecules stay
    neutral) with smeared Coulomb electrostatics, and a C6/r^6 dispersion tail with Becke-Johnson damping,
    both with no cutoff for free structures and Ewald/PME sums for periodic ones. The charges and C6 are read
    from the atoms' final features (after the coarse context has flowed back). See docs/LONG_RANGE.md.

    ``coulomb_switch`` / ``dispersion_switch``: optional ``[r_on, r_off]`` (Å) that fade the term in between
    ``r_on`` and ``r_off`` (default: on at every distance, which the smearing and damping keep finite).
    """

    electrostatics: bool = True
    dispersion: bool = True
    hidden: int = Field(32, gt=0)
    smearing: float = Field(1.0, gt=0)
    coulomb_switch: tuple[float, float] | None = None
    dispersion_switch: tuple[float, float] | None = None
    c6_scale: float = Field(10.0, gt=0)
    radius_offset: float = Field(1.0, ge=0)
    ewald: EwaldConfig = EwaldConfig()

    @model_validator(mode="after")
    def _some(self) -> "PhysicalConfig":
        if not (self.electrostatics or self.dispersion):
            raise ValueError("enable electrostatics, dispersion or both (or remove model.physical)")
        for name in ("coulomb_switch", "dispersion_switch"):
            sw = getattr(self, name)
            if sw is not None and not 0 <= sw[0] < sw[1]:
                raise ValueError(f"{name} [r_on, r_off] needs 0 <= r_on < r_off, got {list(sw)}")
        return self


class D3Config(StrictModel):
    """``model.d3``: a fixed (not learned) D3(BJ) dispersion baseline with a DFT functional's standard
    parameters (tad-dftd3: ``pip install 'muse-ff[d3]'``), added to the energy so that the model learns the
    rest; free structures only. See :mod:`muse_ff.nn.d3`.

    ``cutoff`` / ``cn_cutoff`` (Å): the two-body and coordination-number cutoffs (default tad-dftd3's 31.75 and
    21.17 Å); ``three_body``: the Axilrod-Teller-Muto term (off, as in the parameter fits).
    """

    functional: str = "pbe0"
    three_body: bool = False
    cutoff: float | None = Field(None, gt=0)
    cn_cutoff: float | None = Field(None, gt=0)


class ModelConfig(StrictModel):
    """The ``model:`` section. ``species`` accepts symbols or atomic numbers (default: every element)."""

    backbone: BackboneConfig = BackboneConfig()
    cutoff: float = Field(5.0, gt=0)
    levels: list[LevelConfig] = []
    dtype: Literal["float32", "float64"] = "float32"
    species: list[int] = list(range(1, 119))
    embedding: int = Field(32, gt=0)
    head: HeadConfig = HeadConfig()
    long_range: LongRangeConfig | None = None
    #: total charge and unpaired electrons (``info['charge']``, ``info['uhf']``) as inputs, see
    #: :mod:`muse_ff.nn.charges`
    charges: bool = False
    physical: PhysicalConfig | None = None
    d3: D3Config | None = None

    _v_backbone = field_validator("backbone", mode="before")(_as_backbone)

    @field_validator("levels", mode="before")
    @classmethod
    def _levels(cls, v: Any) -> Any:
        return [] if v is None else v

    @field_validator("species", mode="before")
    @classmethod
    def _species(cls, v: Any) -> Any:
        if not isinstance(v, (list, tuple)):
            raise ValueError(f"species is a list of element symbols or atomic numbers, got {v!r}")
        if not v:
            raise ValueError("species is empty: name at least one element")
        out = []
        for s in v:
            if isinstance(s, str):
                if s not in atomic_numbers or atomic_numbers[s] == 0:
                    raise ValueError(f"unknown element {s!r} in species")
                out.append(atomic_numbers[s])
            else:
                if isinstance(s, bool) or not isinstance(s, (int, float)) or not float(s).is_integer():
                    raise ValueError(f"species entries are element symbols or atomic numbers, got {s!r}")
                if not 1 <= int(s) <= 118:
                    raise ValueError(f"unknown element Z={s} in species")
                out.append(int(s))
        if len(set(out)) != len(out):
            raise ValueError("species has duplicates")
        return sorted(out)

    def level_cutoffs(self) -> list[float]:
        """Cutoff of every level, atoms first (defaults double per level)."""
        cuts = [self.cutoff]
        for lev in self.levels:
            cuts.append(lev.cutoff if lev.cutoff is not None else 2.0 * cuts[-1])
        return cuts

    def level_sigmas(self) -> list[float]:
        """Gaussian assignment width sigma (Å) of every coarse level: ``levels[k].sigma``, default its cutoff / 5."""
        cuts = self.level_cutoffs()
        return [lev.sigma if lev.sigma is not None else SIGMA_PER_CUTOFF * cuts[k + 1]
                for k, lev in enumerate(self.levels)]

    def level_hops(self) -> list[int]:
        """Assignment radius in bonds of every coarse level (default 4, doubling per level)."""
        return [lev.hops if lev.hops is not None else 4 * 2**k for k, lev in enumerate(self.levels)]

    @model_validator(mode="after")
    def _grow(self) -> "ModelConfig":
        cuts = self.level_cutoffs()
        for k in range(1, len(cuts)):
            if cuts[k] <= cuts[k - 1]:
                raise ValueError(f"levels[{k - 1}].cutoff = {cuts[k]} Å must grow: it is not larger than the "
                                 f"finer level's cutoff {cuts[k - 1]} Å")
        return self

    def species_symbols(self) -> list[str]:
        return [chemical_symbols[z] for z in self.species]


def _format(err: ValidationError, section: str) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in (section, *e["loc"]))
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"{loc}: {msg}")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def parse_model_config(config: dict | ModelConfig | None, section: str = "model") -> ModelConfig:
    """Validate a ``model:`` dict into :class:`ModelConfig`, raising :class:`ConfigError` naming bad keys."""
    if isinstance(config, ModelConfig):
        return config
    try:
        return ModelConfig.model_validate(config or {})
    except ValidationError as err:
        raise ConfigError(_format(err, section)) from None
