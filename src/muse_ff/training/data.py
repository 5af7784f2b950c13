"""Training data: reading extended XYZ, splits, isolated atoms, label checks, per-frame loss weights, and a
dataset of precomputed graphs.

Isolated-atom frames (``config_type: IsolatedAtom``, one atom; mace's convention) are always training
frames: :func:`load_splits` keeps them out of random validation/test splits and moves any that a split key or
a separate valid/test file puts there into ``train`` (with a :class:`LabelWarning`).

Each frame becomes a single-frame :class:`~muse_ff.data.graph.Graph` once, before training, with the
model's neighbour list and its discrete per-system choices (``model.prepare``: components, coarse topology), so
an epoch only batches tensors (:func:`collate_graphs`).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from ase import Atoms

from muse_ff.data.atoms import LabelKeys, StructureError, collate, frame_graph
from muse_ff.data.graph import Graph
from muse_ff.errors import MuseError
from muse_ff.io.structures import read_structures
from muse_ff.training.config import DEFAULT_CONFIG_TYPE, ISOLATED_ATOM, DataConfig

SPLITS = ("train", "valid", "test")


class LabelError(MuseError, ValueError):
    """Frames lack labels the training needs; the message lists which frames lack which labels."""


@dataclass
class Splits:
    """Frames of each split (lists of ``Atoms``; ``valid`` and ``test`` may be empty).

    ``isolated`` holds the isolated-atom frames taken out of ``train`` because they give the reference
    energies (see :func:`take_isolated_atoms`); empty otherwise.
    """

    train: list[Atoms]
    valid: list[Atoms]
    test: list[Atoms]
    isolated: list[Atoms] = field(default_factory=list)


def config_type(atoms: Atoms, key: str = "config_type") -> str:
    """The frame's configuration type (``info[key]`` as text), ``Default`` when it has none."""
    value = atoms.info.get(key)
    return DEFAULT_CONFIG_TYPE if value is None else str(value)


def is_isolated_atom(atoms: Atoms, key: str = "config_type") -> bool:
    """Whether the frame is an isolated atom (``config_type: IsolatedAtom``); such a frame with more than one
    atom raises :class:`LabelError` (it cannot give an element's reference energy)."""
    if config_type(atoms, key) != ISOLATED_ATOM:
        return False
    if len(atoms) != 1:
        raise LabelError(f"frame {atoms.info.get('_source', '?')}: {key} = {ISOLATED_ATOM} but it has "
                         f"{len(atoms)} atoms; an isolated-atom frame has exactly one")
    return True


def read_frames(paths: Sequence[str]) -> list[Atoms]:
    """All frames of the given extended-XYZ files, in order; ``info['_source']`` names file:index."""
    frames = []
    for path in paths:
        got = read_structures(path, ":")
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
    """Train/valid/test frames as the ``data:`` section describes.

    Isolated-atom frames go to ``train`` whatever the split settings say: they are left out of the random
    split (so the other frames split as they would without them), and any that ``split_key`` marks
    valid/test or that ``data.valid``/``data.test`` hold are moved to ``train`` with a warning.
    """
    frames = read_frames(config.files("train"))
    key = config.config_type_key
    isolated = [a for a in frames if is_isolated_atom(a, key)]
    moved: dict[str, list[Atoms]] = {"valid": [], "test": []}
    if isolated:
        frames = [a for a in frames if not is_isolated_atom(a, key)]
        if config.split_key is not None:
            for a in isolated:
                if a.info.get(config.split_key) in moved:
                    moved[a.info[config.split_key]].append(a)
    if config.split_key is not None:
        splits = _by_key(frames, config.split_key)
    elif config.valid is None:
        splits = _by_fraction(frames, config.valid_fraction, config.test_fraction, config.split_seed)
    else:
        splits = Splits(train=frames, valid=[], test=[])
    splits.train.extend(isolated)
    for name in ("valid", "test"):
        if getattr(config, name) is not None:
            got = read_frames(config.files(name))
            iso = [a for a in got if is_isolated_atom(a, key)]
            setattr(splits, name, [a for a in got if not is_isolated_atom(a, key)])
            splits.train.extend(iso)
            moved[name].extend(iso)
    for name, iso in moved.items():
        if iso:
            warnings.warn(f"{len(iso)} isolated-atom frame(s) ({key} = {ISOLATED_ATOM}; first: "
                          f"{iso[0].info.get('_source', '?')}) were in the {name} frames; isolated atoms are "
                          "training data (reference energies), so they were moved to the training frames",
                          LabelWarning, stacklevel=2)
    if not splits.train:
        raise LabelError("no training frames: check data.train and the split settings")
    return splits


def take_isolated_atoms(splits: Splits, config: DataConfig) -> dict[int, float]:
    """``{Z: energy}`` of the isolated-atom frames of ``splits.train``.

    Where they give the reference energies (``data.E0s`` ``auto`` or ``isolated``) they are moved from
    ``splits.train`` to ``splits.isolated`` (not trained as ordinary frames, mace's convention); with ``fit``
    or a map they stay training frames. Raises :class:`LabelError` for an isolated atom without a usable
    energy label, or two of one element whose energies differ by more than 1 meV.
    """
    key = config.config_type_key
    isolated = [a for a in splits.train if is_isolated_atom(a, key)]
    if not isolated:
        return {}
    check_labels(isolated, label_keys(config), need_forces=False, name="isolated-atom")
    by_z: dict[int, list[Atoms]] = {}
    for a in isolated:
        by_z.setdefault(int(a.numbers[0]), []).append(a)
    energies = {}
    for z, got in sorted(by_z.items()):
        e = np.array([float(np.asarray(a.info[config.energy_key]).reshape(())) for a in got])
        if e.max() - e.min() > 1e-3:
            lo, hi = got[int(e.argmin())], got[int(e.argmax())]
            raise LabelError(f"isolated-atom frames of {lo.get_chemical_symbols()[0]} disagree: "
                             f"{lo.info.get('_source', '?')} has {e.min():.6f} eV and {hi.info.get('_source', '?')} "
                             f"{e.max():.6f} eV (more than 1 meV apart); keep one")
        energies[z] = float(e.mean())
    if config.E0s in ("auto", "isolated"):
        splits.isolated = isolated
        splits.train = [a for a in splits.train if not is_isolated_atom(a, key)]
        if not splits.train:
            raise LabelError("no training frames besides the isolated atoms (they give the reference energies "
                             "and are not trained on): add frames, or set data.E0s: fit to train on them")
    return energies


def frame_weights(frames: Sequence[Atoms], key: str, weights: Mapping[str, float]) -> list[float]:
    """Loss weight of each frame: ``weights[config_type]``, 1 for types not named."""
    return [float(weights.get(config_type(a, key), 1.0)) for a in frames]


def label_keys(config: DataConfig) -> LabelKeys:
    return LabelKeys(energy=config.energy_key, forces=config.forces_key, stress=config.stress_key,
                     dipole=config.dipole_key, interaction=config.interaction_key)


class LabelWarning(UserWarning):
    """Labels were left out of training (only where the configuration allows it)."""


def _where(atoms: Atoms, k: int) -> str:
    return atoms.info.get("_source", f"frame {k}")


def label_problem(atoms: Atoms, key: str, kind: str) -> tuple[str, str] | None:
    """Why the ``kind`` label (energy, forces, stress) under ``key`` cannot be used, or ``None`` if it can.

    Returns ``(reason, detail)``: reason ``"not_finite"`` (NaN or inf values) or ``"malformed"`` (not a
    number, or the wrong shape). Absent labels are not checked here.
    """
    value = atoms.arrays[key] if kind == "forces" else atoms.info[key]
    arr = np.asarray(value)
    if arr.dtype.kind not in "iuf":
        return "malformed", f"{key} = {_short(value)} is not a number"
    expected = {"energy": "one number", "forces": f"shape ({len(atoms)}, 3)", "stress": "6 (Voigt) or 9 numbers"}
    ok = {"energy": arr.size == 1, "forces": arr.shape == (len(atoms), 3), "stress": arr.size in (6, 9)}[kind]
    if not ok:
        return "malformed", f"{key} has shape {arr.shape}, expected {expected[kind]}"
    bad = ~np.isfinite(arr.astype(np.float64))
    if bad.any():
        if kind == "forces":
            atoms_bad = np.flatnonzero(bad.any(axis=1))
            shown = atoms_bad[:5].tolist() + (["..."] if atoms_bad.size > 5 else [])
            return "not_finite", f"{key} is not finite (NaN or inf) for atoms {shown}"
        return "not_finite", f"{key} is not finite ({_short(value)})"
    return None


def _short(value) -> str:
    text = repr(value.tolist() if isinstance(value, (np.ndarray, np.generic)) else value)
    return text if len(text) <= 40 else text[:37] + "..."


def check_label_values(frames: Sequence[Atoms], keys: LabelKeys, name: str = "train",
                       drop_bad_forces: bool = False) -> int:
    """Raise :class:`LabelError` naming each frame and key whose label is present but unusable.

    Unusable: not a number (e.g. a string), the wrong shape, or not finite (NaN, inf). With
    ``drop_bad_forces`` (``missing_labels: energy_only``), frames whose forces are only *non-finite* lose
    their forces label (they are then trained on their energy alone, like frames without forces) and a
    :class:`LabelWarning` counts them; the number of such frames is returned.
    """
    problems, dropped = [], []
    for k, a in enumerate(frames):
        for kind, key, where in (("energy", keys.energy, a.info), ("forces", keys.forces, a.arrays),
                                 ("stress", keys.stress, a.info)):
            if key not in where:
                continue
            found = label_problem(a, key, kind)
            if found is None:
                continue
            if kind == "forces" and drop_bad_forces and found[0] == "not_finite":
                del a.arrays[key]
                dropped.append(_where(a, k))
            else:
                problems.append(f"{_where(a, k)}: {found[1]}")
    if problems:
        shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
        if len(problems) == 1:
            raise LabelError(f"unusable label in the {name} frames: {problems[0]}")
        raise LabelError(f"{len(problems)} unusable labels in {len(frames)} {name} frames:\n  " + "\n  ".join(shown))
    if dropped:
        import warnings

        warnings.warn(f"{len(dropped)} of {len(frames)} {name} frames have non-finite {keys.forces} (first: "
                      f"{', '.join(dropped[:3])}); with data.missing_labels: energy_only they are trained on "
                      "their energy alone", LabelWarning, stacklevel=2)
    return len(dropped)


def check_labels(frames: Sequence[Atoms], keys: LabelKeys, need_forces: bool, name: str = "train",
                 drop_bad_forces: bool = False) -> None:
    """Raise :class:`LabelError` for frames that lack their energy (or forces, when needed) or whose labels
    are unusable (:func:`check_label_values`: not numbers, wrong shape, NaN or inf)."""
    check_label_values(frames, keys, name, drop_bad_forces)
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


def interaction_fragments(atoms: Atoms, model, key: str, index: int) -> tuple[float, list[Graph]]:
    """``(label, graphs of the frame's covalent components)`` for an interaction-energy label under ``key``,
    or ``(nan, [])`` when the frame has none. A label on a frame of one component, or one that is not a
    finite number, raises :class:`LabelError`.

    Each component is taken alone at the frame's geometry. In a periodic frame, a component bonded to its own
    images (a sheet, a crystal, a polymer through the boundary) keeps the cell; any other component (a
    molecule, an adsorbate) is the free molecule, unwrapped across the boundary and without a cell: the
    usual convention of adsorption and lattice energies (E(complex) - E(substrate) - E(isolated molecule)),
    and that of the molecule-graphene teacher's ``binding_energy``."""
    from muse_ff.data.atoms import fragment
    from muse_ff.nn.coarsening import bond_graph

    if key not in atoms.info:
        return float("nan"), []
    where = atoms.info.get("_source", f"frame {index}")
    value = np.asarray(atoms.info[key])
    if value.dtype.kind not in "iuf" or value.size != 1 or not np.isfinite(value.astype(float)).all():
        raise LabelError(f"{where}: {key} = {_short(atoms.info[key])} is not one finite number (eV)")
    bg = bond_graph(atoms.positions, atoms.numbers, np.asarray(atoms.cell), atoms.pbc)
    comp = bg.component
    if comp.max() < 1:
        raise LabelError(f"{where}: {key} is given but the frame is a single covalent component; an interaction "
                         "energy is E(frame) - sum of E(component alone) over two or more components")
    graphs = []
    for c in range(int(comp.max()) + 1):
        index_c = np.flatnonzero(comp == c)
        part = fragment(atoms, index_c)
        if atoms.pbc.any() and not bg.percolating[c]:  # a molecule in a periodic frame: the free molecule
            part.positions = atoms.positions[index_c] + bg.image[index_c] @ np.asarray(atoms.cell[:])
            part.pbc, part.cell = False, None
        g = frame_graph(part, model.cutoff, keys=None, index=index)
        graphs.append(model.prepare(g))
    return float(value.reshape(())), graphs


class GraphDataset(torch.utils.data.Dataset):
    """Single-frame graphs of ``frames``, built once with the model's cutoff and ``model.prepare``.

    ``weights`` are the frames' loss weights (default 1); an item is ``(graph, weight)``, or with
    ``keys.interaction`` set ``(graph, weight, interaction label or NaN, [graphs of its components])``.
    """

    def __init__(self, frames: Sequence[Atoms], model, keys: LabelKeys, weights: Sequence[float] | None = None):
        if weights is not None and len(weights) != len(frames):
            raise ValueError(f"{len(weights)} weights for {len(frames)} frames")
        self.weights: list[float] = [1.0] * len(frames) if weights is None else [float(w) for w in weights]
        self.graphs: list[Graph] = []
        self.interaction: list[tuple[float, list[Graph]]] | None = [] if keys.interaction else None
        for k, atoms in enumerate(frames):
            try:
                g = frame_graph(atoms, model.cutoff, keys=keys, index=k)
                model.check_species(g.species)
                if self.interaction is not None:
                    self.interaction.append(interaction_fragments(atoms, model, keys.interaction, k))
            except StructureError as err:
                raise StructureError(f"{atoms.info.get('_source', f'frame {k}')}: {err}") from None
            self.graphs.append(model.prepare(g))

    def __len__(self) -> int:
        return len(self.graphs)

    def __getitem__(self, index: int) -> tuple:
        if self.interaction is None:
            return self.graphs[index], self.weights[index]
        return (self.graphs[index], self.weights[index], *self.interaction[index])


@dataclass
class TrainBatch:
    """A batch of :class:`GraphDataset` items: the batched graph and each frame's loss weight; with
    interaction labels also ``interaction`` [B] (eV, NaN where a frame has none), ``fragments`` (the batched
    components of the labelled frames) and ``fragment_frame`` [F] (the frame of each component)."""

    graph: Graph
    weight: torch.Tensor  # [B] float64
    interaction: torch.Tensor | None = None
    fragments: Graph | None = None
    fragment_frame: torch.Tensor | None = None

    def to(self, device=None, dtype: torch.dtype | None = None) -> "TrainBatch":
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return TrainBatch(self.graph.to(device, dtype=dtype), self.weight.to(device), move(self.interaction),
                          None if self.fragments is None else self.fragments.to(device, dtype=dtype),
                          move(self.fragment_frame))


def collate_graphs(graphs: Sequence[Graph]) -> Graph:
    """Batch single-frame graphs into one :class:`Graph`."""
    return collate(list(graphs))


def collate_items(items: Sequence[tuple]) -> TrainBatch:
    """``collate_fn`` for a ``DataLoader`` over :class:`GraphDataset`."""
    batch = TrainBatch(collate([it[0] for it in items]), torch.tensor([it[1] for it in items], dtype=torch.float64))
    if items and len(items[0]) == 4:
        batch.interaction = torch.tensor([it[2] for it in items], dtype=torch.float64)
        parts = [(b, g) for b, it in enumerate(items) for g in it[3]]
        if parts:
            batch.fragments = collate([g for _, g in parts])
            batch.fragment_frame = torch.tensor([b for b, _ in parts], dtype=torch.int64)
    return batch
