"""Training data: reading extended XYZ, splits, label checks, and a dataset of precomputed graphs.

Each frame becomes a single-frame :class:`~muse_ff.data.graph.Graph` once, before training, with the
model's neighbour list and its discrete per-system choices (``model.prepare``: components, coarse topology), so
an epoch only batches tensors (:func:`collate_graphs`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from ase import Atoms
from ase.io import read

from muse_ff.data.atoms import LabelKeys, StructureError, collate, frame_graph
from muse_ff.data.graph import Graph
from muse_ff.training.config import DataConfig

SPLITS = ("train", "valid", "test")


class LabelError(ValueError):
    """Frames lack labels the training needs; the message lists which frames lack which labels."""


@dataclass
class Splits:
    """Frames of each split (lists of ``Atoms``; ``valid`` and ``test`` may be empty)."""

    train: list[Atoms]
    valid: list[Atoms]
    test: list[Atoms]


def read_frames(paths: Sequence[str]) -> list[Atoms]:
    """All frames of the given extended-XYZ files, in order; ``info['_source']`` names file:index."""
    frames = []
    for path in paths:
        try:
            got = read(path, index=":")
        except FileNotFoundError:
            raise FileNotFoundError(f"data file not found: {path}") from None
        for k, atoms in enumerate(got):
            atoms.info["_source"] = f"{path}:{k}"
            frames.append(atoms)
    return frames


def _by_key(frames: list[Atoms], key: str) -> Splits:
    out: dict[str, list[Atoms]] = {s: [] for s in SPLITS}
    for a in frames:
        value = a.info.get(key)
        if value not in out:
            raise LabelError(f"frame {a.info.get('_source', '?')}: info[{key!r}] = {value!r}; "
                             f"expected one of {list(SPLITS)}")
        out[value].append(a)
    return Splits(**out)


def _by_fraction(frames: list[Atoms], valid: float, test: float, seed: int) -> Splits:
    order = np.random.default_rng(seed).permutation(len(frames))
    n_valid, n_test = int(round(valid * len(frames))), int(round(test * len(frames)))
    if valid > 0 and len(frames) > 1:
        n_valid = max(n_valid, 1)
    pick = lambda idx: [frames[i] for i in sorted(idx)]  # noqa: E731
    return Splits(train=pick(order[n_valid + n_test:]), valid=pick(order[:n_valid]),
                  test=pick(order[n_valid:n_valid + n_test]))


def load_splits(config: DataConfig) -> Splits:
    """Train/valid/test frames as the ``data:`` section describes."""
    frames = read_frames(config.files("train"))
    if config.split_key is not None:
        splits = _by_key(frames, config.split_key)
    elif config.valid is None:
        splits = _by_fraction(frames, config.valid_fraction, config.test_fraction, config.split_seed)
    else:
        splits = Splits(train=frames, valid=[], test=[])
    if config.valid is not None:
        splits.valid = read_frames(config.files("valid"))
    if config.test is not None:
        splits.test = read_frames(config.files("test"))
    if not splits.train:
        raise LabelError("no training frames: check data.train and the split settings")
    return splits


def label_keys(config: DataConfig) -> LabelKeys:
    return LabelKeys(energy=config.energy_key, forces=config.forces_key, stress=config.stress_key)


def check_labels(frames: Sequence[Atoms], keys: LabelKeys, need_forces: bool, name: str = "train") -> None:
    """Raise :class:`LabelError` listing each frame that lacks its energy (or forces, when needed)."""
    problems = []
    for k, a in enumerate(frames):
        lacking = []
        if keys.energy not in a.info:
            lacking.append(keys.energy)
        if need_forces and keys.forces not in a.arrays:
            lacking.append(keys.forces)
        if lacking:
            problems.append(f"{a.info.get('_source', f'frame {k}')}: {', '.join(lacking)}")
    if problems:
        shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
        hint = ("" if not need_forces else
                "\n(set data.missing_labels: energy_only to train frames without forces on their energy)")
        raise LabelError(f"{len(problems)} of {len(frames)} {name} frames lack labels:\n  " + "\n  ".join(shown)
                         + hint)


def species_of(frames: Sequence[Atoms]) -> list[int]:
    """Sorted atomic numbers present in ``frames``."""
    return sorted({int(z) for a in frames for z in a.numbers})


class GraphDataset(torch.utils.data.Dataset):
    """Single-frame graphs of ``frames``, built once with the model's cutoff and ``model.prepare``."""

    def __init__(self, frames: Sequence[Atoms], model, keys: LabelKeys):
        self.graphs: list[Graph] = []
        for k, atoms in enumerate(frames):
            try:
                g = frame_graph(atoms, model.cutoff, keys=keys, index=k)
                model.check_species(g.species)
            except StructureError as err:
                raise StructureError(f"{atoms.info.get('_source', f'frame {k}')}: {err}") from None
            self.graphs.append(model.prepare(g))

    def __len__(self) -> int:
        return len(self.graphs)

    def __getitem__(self, index: int) -> Graph:
        return self.graphs[index]


def collate_graphs(graphs: Sequence[Graph]) -> Graph:
    """``collate_fn`` for a ``DataLoader`` over :class:`GraphDataset`."""
    return collate(list(graphs))
