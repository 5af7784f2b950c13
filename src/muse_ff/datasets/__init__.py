"""Dataset builders: deterministic geometries, teacher labels, extxyz files and data cards.

``BUILDERS`` maps a dataset name to its build function ``(out_dir, subset, workers, progress, command)``
and its default output directory; ``muse dataset build NAME`` calls them. See ``docs/DATASETS.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from muse_ff.datasets import dimers, folding, hessians, molecule_graphene, nonlocal_chains
from muse_ff.datasets.common import BuildResult

#: where the packaged demo dataset lives
DEMO_DIR = Path(__file__).resolve().parent.parent / "resources" / "demo"


@dataclass(frozen=True)
class Builder:
    """A dataset: ``build(out_dir, subset=, workers=, progress=, command=) -> BuildResult``."""

    build: Callable[..., BuildResult]
    default_out: Path
    summary: str


BUILDERS: dict[str, Builder] = {
    "demo": Builder(partial(dimers.build, dimers.DEMO), DEMO_DIR,
                    "500 small polar and ion-water dimers at 3-15 Å, GFN2-xTB (packaged with muse_ff)"),
    "long-range-dimers": Builder(partial(dimers.build, dimers.LONG_RANGE), Path("data/long-range-dimers"),
                                 "polar and ionic molecule pairs at 3-15 Å, GFN2-xTB"),
    "molecule-graphene": Builder(molecule_graphene.build, Path("data/molecule-graphene"),
                                 "benzene/naphthalene/pyridine over a graphene flake and sheet, GFN1-xTB"),
    "folding": Builder(folding.build, Path("data/folding"),
                       "chignolin amber14+GBn2 MD at 300/400/500 K, frames + reference observables"),
    "hessians": Builder(hessians.build, Path("data/hessians"),
                        "GFN2-xTB minima, finite-difference Hessians and normal-mode frames (+ Ace-(Ala)5,10-NMe)"),
    "nonlocal-chains": Builder(nonlocal_chains.build, Path("data/nonlocal-chains"),
                               "cumulene twist scans and push-pull polyenes, 4-24 carbons, GFN2-xTB"),
}


def get_builder(name: str) -> Builder:
    try:
        return BUILDERS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(BUILDERS)}") from None


__all__ = ["BUILDERS", "BuildResult", "Builder", "DEMO_DIR", "get_builder"]
