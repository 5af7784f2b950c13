"""The contestants of ``muse demo`` and of every ``muse bench``: one registry, read by both.

A contestant is a named override of a 5 Å backbone's ``model:`` section: plain (``levels: []``), MuSE
(coarse ``levels``), the latent-Ewald long-range baseline (``long_range``, Cheng 2025) or the physical
long-range terms (``physical: {}`` with ``charges: true``). Each suite is one such set:

- ``demo``: :mod:`muse_ff.training.demo` (one coarse level of 18 Å; LES with its default smearing;
  the physical terms on PaiNN and on MuSE(PaiNN) with coarse edges only within each molecule, both also
  trained on interaction energies and dipoles: :data:`TRAINING`);
- ``bench``: ``muse bench hessian``, ``folding`` and ``speed`` (two coarse levels with the
  library defaults, :data:`MUSE_LEVELS`; LES smearing 1 Å, :data:`LES`; the physical terms on PaiNN and on
  MuSE(PaiNN) with coarse edges only within components, :data:`BENCH_PHYSICAL`, trained on energies and
  forces alone: these datasets have one molecule per frame and no dipoles);
- ``graphene``: ``muse bench graphene``: :data:`BENCH` plus the physical terms on PaiNN and on
  MuSE(PaiNN) (with every coarse edge, and with coarse edges only within components, ``MuSE-intra``), each also
  trained on the samples' binding energies (:data:`TRAINING`), and PaiNN trained on them without the physical
  terms (the ablation);
- ``nonlocal``: ``muse bench nonlocal`` (three coarse levels reaching across a 24-carbon chain,
  :data:`NONLOCAL_LEVELS`; plus the physical model);
- ``muse bench backbones``: each backbone plain and as MuSE(backbone) with :data:`MUSE_LEVELS`
  (:func:`backbone_pairs`), plus the physical terms on PaiNN and on MuSE-intra(PaiNN)
  (:data:`BACKBONES_PHYSICAL`, also trained on the dimers' interaction energies: :data:`TRAINING`);
  ``muse bench graphene`` adds the MACE and SO3krates pairs of
  :data:`SMALL_BACKBONES` to its ``bench`` suite.

:func:`select` picks contestants by name or folder name (the ``--contestants`` option of ``muse bench``).

:func:`model_section` turns an entry into the ``model:`` section (backbone, cutoff, levels, optional dtype,
then the entry's other keys); :func:`contestants` does it for a whole suite. This module imports nothing of
the library, so neither ``muse_ff.training`` nor ``muse_ff.bench`` needs the other for it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

#: Å, the backbone cutoff of every contestant
CUTOFF = 5.0
#: the demo's backbone: PaiNN, 32 features, 2 layers, 12 radial functions
DEMO_BACKBONE: dict = {"name": "painn", "features": 32, "layers": 2, "num_basis": 12}
#: two coarse levels with the library defaults (ratio 8, cutoffs 10 and 20 Å): the 20 Å top cutoff covers
#: every distance in the benchmarks (a molecule 12 Å above the flake edge is ~16 Å from its far atoms)
MUSE_LEVELS: list[dict] = [{}, {}]
#: :data:`MUSE_LEVELS` with coarse edges only inside each covalent component (``levels[k].edges``): the hierarchy
#: works along molecules and bonded networks, and what passes between molecules is the atom level's 5 Å and the
#: physical terms, whose form extrapolates (the ``MuSE-intra`` contestants)
MUSE_INTRA_LEVELS: list[dict] = [{"edges": "within-component"}, {"edges": "within-component"}]
#: the latent-Ewald baseline of the benchmarks (Cheng 2025): one latent charge per atom, smearing 1 Å
LES: dict = {"kind": "latent-ewald", "smearing": 1.0}
#: model.physical with the charge inputs (charges conserved per molecule, Coulomb and C6 dispersion)
PHYSICAL: dict = {"physical": {}, "charges": True}
#: three coarse levels: about one node per 4 atoms (cutoff 10 Å), per 8 (20 Å) and per 16 (40 Å): on a 24-carbon
#: cumulene (~31 Å end to end) 7, 5 and 3 nodes, every top-level pair within its cutoff
NONLOCAL_LEVELS: list[dict] = [{"cutoff": 10.0, "ratio": 4}, {"cutoff": 20.0, "ratio": 2},
                               {"cutoff": 40.0, "ratio": 2}]

#: MACE and SO3krates at about the size of the benchmarks' PaiNN (32 features, 2 layers, 12 radial functions;
#: 27.6k parameters in muse bench graphene): SO3krates with 32 features, 2 layers, degrees 1-2 (25k); MACE with
#: 16 channels, 2 interactions, max_ell 1, correlation order 2 (59k), still ~5x PaiNN's time per graphene frame
#: on one CPU thread (32 channels: ~10x). The library defaults (muse bench backbones) cost 5-20x more.
SMALL_BACKBONES: dict[str, dict] = {
    "SO3krates": {"name": "so3krates", "features": 32, "heads": 2, "degrees": [1, 2], "layers": 2, "num_basis": 12},
    "MACE": {"name": "mace", "num_channels": 16, "max_ell": 1, "correlation": 2, "num_interactions": 2,
             "num_radial_basis": 8},
}

#: the benchmarks' three contestants: plain, MuSE with :data:`MUSE_LEVELS`, the latent-Ewald baseline
BENCH: dict[str, dict] = {
    "PaiNN": {"levels": []},
    "MuSE(PaiNN)": {"levels": MUSE_LEVELS},
    "PaiNN+LES": {"levels": [], "long_range": LES},
}
#: the physical long-range terms on PaiNN and on MuSE(PaiNN) with coarse edges within components: the
#: configuration recommended for long-range physics (docs/LONG_RANGE.md), in the single-molecule benchmarks
BENCH_PHYSICAL: dict[str, dict] = {
    "PaiNN+phys": {"levels": [], **PHYSICAL},
    "MuSE-intra(PaiNN)+phys": {"levels": MUSE_INTRA_LEVELS, **PHYSICAL},
}
#: the contestants that also train on binding energies (:data:`TRAINING`): the physical terms on PaiNN and on
#: MuSE(PaiNN), the ablation (the binding loss without the physical terms), and the physical terms on MuSE with
#: coarse edges only within components (:data:`MUSE_INTRA_LEVELS`)
BINDING: dict[str, dict] = {
    "PaiNN+phys+Eint": {"levels": [], **PHYSICAL},
    "MuSE(PaiNN)+phys+Eint": {"levels": MUSE_LEVELS, **PHYSICAL},
    "PaiNN+Eint": {"levels": []},
    "MuSE-intra(PaiNN)+phys+Eint": {"levels": MUSE_INTRA_LEVELS, **PHYSICAL},
}

#: the physical terms on PaiNN and on MuSE-intra(PaiNN) in ``muse bench backbones``, also trained on the dimers'
#: interaction energies (:data:`TRAINING`; the dimers carry no dipoles): what a user adds for long-range physics
#: next to the plain backbones and MuSE(backbone)
BACKBONES_PHYSICAL: dict[str, dict] = {
    "PaiNN+phys+Eint": {"levels": [], **PHYSICAL},
    "MuSE-intra(PaiNN)+phys+Eint": {"levels": MUSE_INTRA_LEVELS, **PHYSICAL},
}

#: suite -> {contestant name: overrides of the backbone's ``model:`` section}
SUITES: dict[str, dict[str, dict]] = {
    "demo": {
        "PaiNN": {"levels": []},
        "MuSE(PaiNN)": {"levels": [{"cutoff": 18.0}]},
        "PaiNN+LES": {"levels": [], "long_range": {"kind": "latent-ewald"}},
        "PaiNN+phys": {"levels": [], **PHYSICAL},
        "MuSE-intra(PaiNN)+phys": {"levels": [{"cutoff": 18.0, "edges": "within-component"}], **PHYSICAL},
    },
    "bench": {**BENCH, **BENCH_PHYSICAL},
    "graphene": {**BENCH, **BINDING},
    "nonlocal": {
        "PaiNN": {"levels": []},
        "MuSE(PaiNN)": {"levels": NONLOCAL_LEVELS},
        "PaiNN+LES": {"levels": [], "long_range": LES},
        "PaiNN+physical": {"levels": [], **PHYSICAL},
    },
}

#: suite -> {contestant name: additions to its training file (``data`` keys, ``loss`` weights)}. The demo's
#: physical model also fits interaction energies and dipoles (its charges are otherwise poorly determined by
#: energies alone: docs/LONG_RANGE.md, dimer tails)
TRAINING: dict[str, dict[str, dict]] = {
    "demo": {name: {"data": {"interaction_key": "interaction_energy"}, "loss": {"interaction": 100.0, "dipole": 10.0}}
             for name in ("PaiNN+phys", "MuSE-intra(PaiNN)+phys")},
    # binding energies of every training sample (GFN1-xTB has no dipoles in this dataset). Weight 10: at the
    # accuracy aimed for (binding 10 meV, E 1 meV/atom, F 30 meV/Å) the three terms of the loss are alike
    # (10 * 0.01^2 = 1e-3, 1000 * 0.001^2 = 1e-3, 0.03^2 = 9e-4)
    "graphene": {name: {"data": {"interaction_key": "binding_energy"}, "loss": {"interaction": 10.0}}
                 for name in BINDING},
    # the demo's interaction weight, on the same kind of dimers (GFN2-xTB, polar and ionic pairs)
    "backbones": {name: {"data": {"interaction_key": "interaction_energy"}, "loss": {"interaction": 100.0}}
                  for name in BACKBONES_PHYSICAL},
}


def model_section(spec: Mapping, backbone: Mapping, dtype: str | None = None, cutoff: float = CUTOFF) -> dict:
    """The ``model:`` section of one contestant: ``backbone`` (copied), ``cutoff``, the entry's ``levels``,
    ``dtype`` when given, then the entry's other keys (``long_range``, ``physical``, ``charges``, ...)."""
    spec = dict(spec)
    out = {"backbone": dict(backbone), "cutoff": cutoff, "levels": spec.pop("levels", [])}
    if dtype is not None:
        out["dtype"] = dtype
    return {**out, **spec}


def contestants(suite: str, backbone: Mapping, dtype: str | None = None, **extra) -> dict[str, dict]:
    """{name: ``model:`` section} of every contestant of ``suite`` on ``backbone``; ``extra`` keys (e.g.
    ``species``) are added to each."""
    return {name: {**model_section(spec, backbone, dtype), **extra} for name, spec in SUITES[suite].items()}


def backbone_pairs(backbones: Mapping[str, Mapping], dtype: str | None = None) -> dict[str, dict]:
    """{label: plain, ``MuSE(label)``: with :data:`MUSE_LEVELS`} ``model:`` sections of each backbone."""
    out = {}
    for label, backbone in backbones.items():
        out[label] = model_section({"levels": []}, backbone, dtype)
        out[f"MuSE({label})"] = model_section({"levels": MUSE_LEVELS}, backbone, dtype)
    return out


def training_overrides(suite: str, name: str) -> dict | None:
    """The training-file additions of contestant ``name`` of ``suite`` (None: none)."""
    return TRAINING.get(suite, {}).get(name)


def with_training(config: Mapping, extra: Mapping | None) -> dict:
    """The training file ``config`` ({model, data, training}) with ``extra``'s ``data`` keys added to its
    ``data`` section and its ``loss`` weights to ``training.loss`` (a copy; ``extra`` None: unchanged)."""
    out = {k: dict(v) if isinstance(v, Mapping) else v for k, v in config.items()}
    if extra:
        out["data"] = {**out.get("data", {}), **extra.get("data", {})}
        training = out.setdefault("training", {})
        training["loss"] = {**training.get("loss", {}), **extra.get("loss", {})}
    return out


def slug(name: str) -> str:
    """A contestant's folder name: ``MuSE(PaiNN)`` -> ``muse_painn``, ``PaiNN+LES`` -> ``painn_les``."""
    return name.replace("(", "_").replace(")", "").replace(" ", "_").replace("+", "_").lower()


def select(wanted: str | Sequence[str] | None, available: Sequence[str]) -> list[str]:
    """The contestants of ``available`` named in ``wanted`` (comma-separated text or a list), in
    ``available``'s order; each name may be given as is or as its :func:`slug` (``muse_painn``), any case.
    ``None`` or empty: all. An unknown name is a ``ValueError`` listing the available ones."""
    if wanted is None:
        return list(available)
    items = [w.strip() for w in (wanted.split(",") if isinstance(wanted, str) else wanted) if w.strip()]
    if not items:
        return list(available)
    keys = {k: name for name in available for k in (name.lower(), slug(name))}
    unknown = [w for w in items if w.lower() not in keys and slug(w) not in keys]
    if unknown:
        raise ValueError(f"unknown contestant(s) {', '.join(unknown)}; available: {', '.join(available)}")
    chosen = {keys.get(w.lower(), keys.get(slug(w))) for w in items}
    return [name for name in available if name in chosen]
