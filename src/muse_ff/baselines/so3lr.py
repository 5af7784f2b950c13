"""Pretrained SO3LR as a zero-shot baseline, through the package ``so3krates-torch`` (MIT).

SO3LR: A. Kabylda, J. T. Frank, S. Suárez-Dou, A. Khabibrakhmanov, L. Medrano Sandonas, O. T. Unke,
S. Chmiela, K.-R. Müller, A. Tkatchenko, "Molecular Simulations with a Pretrained Neural Network and
Universal Pairwise Force Fields", J. Am. Chem. Soc. 2025 (SO3krates short-range network + electrostatics
from predicted partial charges + Tkatchenko-Scheffler-like dispersion + ZBL repulsion, trained on
PBE0+MBD(-NL) data). The PyTorch port and its packaged weights
(``so3krates_torch/pretrained/so3lr/so3lr.model``) are T. Henkes' ``so3krates-torch``
(https://github.com/tohenkes/So3krates-torch).

The weights file is a full pickle (``torch.load(weights_only=False)`` of the model object): it is loaded
only by so3krates-torch's own :class:`SO3LRCalculator`, never by :func:`muse_ff.load_model` (which
refuses it). Install the extra with ``pip install "muse-ff[so3lr]"`` (``so3krates-torch==0.2.1``).

Charges: the model takes **one total charge per structure** (``atoms.info['charge']``, default 0), used
as an input embedding and as the constraint of its charge equilibration over the whole structure. A charge
per fragment *inside* one structure cannot be given; evaluate the fragments as structures of their own
(each with its own ``info['charge']``) for interaction energies.

Trained SO3LR (:func:`train_so3lr`, :func:`trained_so3lr_calculator`): the SO3LR *architecture* (SO3krates
short-range network, partial charges with Coulomb, dispersion, ZBL; the hyperparameters of the pretrained
model, :data:`SO3LR_ARCHITECTURE`) trained from scratch on frames we give, by so3krates-torch's own
training entry point (``python -m so3krates_torch.cli.run_train --config config.yaml``, the
``torchkrates-train`` CLI) in a subprocess inside a working folder the caller names. Its best-validation
checkpoint (EMA weights, what the package checkpoints) is evaluated through the package's own
:class:`TorchkratesCalculator`, which reads the package's pickled model file; MuSE never unpickles it.
``dipole_weight`` > 0 trains on the frames' dipole moments too (the package's own dipole loss: its
``sum_i q_i r_i`` about the coordinates' origin, the convention of MuSE's teachers and dipole loss);
:func:`matched_dipole_weight` maps MuSE's ``training.loss.dipole`` onto the package's per-atom form.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import numpy as np
import torch

#: the extra that installs the package
EXTRA = "so3lr"
REQUIREMENT = "so3krates-torch==0.2.1"
#: long-range cutoff (Å) used when none is given, for gas-phase structures up to ~25 Å across: so3krates-torch
#: switches the (shifted-force) Coulomb term off smoothly between 0.45 r_max_lr and r_max_lr
DEFAULT_R_MAX_LR = 100.0


def _import_calculator():
    try:
        from so3krates_torch.calculator.so3 import SO3LRCalculator
    except ImportError as err:
        raise ImportError(f"the SO3LR baseline needs the package so3krates-torch: pip install "
                          f"\"muse-ff[{EXTRA}]\" (or pip install {REQUIREMENT}); import failed: {err}") from err
    return SO3LRCalculator


def _calculator_class(base):
    """``base`` (a so3krates-torch calculator class) that keeps torch's default dtype and sees charge changes."""

    class MuseSO3Calculator(base):
        def check_state(self, atoms, tol=1e-15):
            changes = super().check_state(atoms, tol)
            if self.atoms is not None and atoms.info.get("charge", 0) != self.atoms.info.get("charge", 0):
                changes = [*changes, "charge"]
            return changes

        def calculate(self, atoms=None, properties=None, system_changes=None):
            previous = torch.get_default_dtype()
            torch.set_default_dtype(self.model_dtype)  # AtomicData builds its tensors in the default dtype
            try:
                if system_changes is None:
                    super().calculate(atoms, properties)
                else:
                    super().calculate(atoms, properties, system_changes)
            finally:
                torch.set_default_dtype(previous)

    MuseSO3Calculator.__name__ = f"Muse{base.__name__}"
    return MuseSO3Calculator


def _construct(cls, **kwargs):
    """``cls(**kwargs)`` with torch's default dtype restored afterwards (so3krates-torch sets it globally)."""
    previous = torch.get_default_dtype()
    try:
        calc = cls(**kwargs)
    finally:
        torch.set_default_dtype(previous)
    calc.model_dtype = next(calc.models[0].parameters()).dtype
    return calc


def so3lr_calculator(r_max_lr: float = DEFAULT_R_MAX_LR, dtype: str = "float64", device: str = "cpu",
                     dispersion_damping: float = 2.0):
    """An ASE calculator for the pretrained SO3LR (energy in eV, forces in eV/Å).

    ``r_max_lr``: cutoff (Å) of the electrostatic and dispersion sums (so3krates-torch's default: 12 Å).
    Its Coulomb term is shifted-force and switched off between 0.45 ``r_max_lr`` and ``r_max_lr``, so
    for gas-phase structures use more than the largest interatomic distance / 0.45 (the default 100 Å
    serves ~40 Å; a periodic cell with a large ``r_max_lr`` gets a large long-range neighbour list).

    ``dtype``: the model is stored in float32; ``"float64"`` (default) evaluates an upcast copy, so
    that differences of large total energies (interaction energies) are not float32 rounding.

    ``dispersion_damping``: so3krates-torch's ``dispersion_energy_cutoff_lr_damping`` (the width of
    the dispersion switch-off below ``r_max_lr``; its SO3LRCalculator default, 2.0).

    The total charge is read from ``atoms.info['charge']`` at every call (a changed charge is
    recomputed, unlike a plain ASE cache, which ignores ``info``). torch's default dtype is left as
    it was.
    """
    return _construct(_calculator_class(_import_calculator()), r_max_lr=float(r_max_lr), default_dtype=dtype,
                      device=device, dispersion_energy_cutoff_lr_damping=float(dispersion_damping))


# --------------------------------------------------------------------------------------------------------------
# SO3LR trained from scratch on our frames, by so3krates-torch's own training code
# --------------------------------------------------------------------------------------------------------------

#: the SO3LR architecture as the pretrained model has it (so3krates-torch's ``so3lr.model``: 529,852 parameters
#: at 128 features), in the keys of so3krates-torch's training config (``ARCHITECTURE``); ``r_max`` and
#: ``r_max_lr`` are set by :func:`so3lr_training_config`. Keys the pretrained model has that its config does not
#: expose (``final_mlp_layers``, ``interaction_bias``, ``cutoff_p``) keep the package's defaults.
SO3LR_ARCHITECTURE: dict = {
    "degrees": [1, 2, 3, 4], "num_features": 128, "num_heads": 4, "num_layers": 3, "num_radial_basis_fn": 32,
    "radial_basis_fn": "bernstein", "cutoff_fn": "phys", "energy_regression_dim": 128,
    "energy_learn_atomic_type_shifts": True, "energy_learn_atomic_type_scales": True,
    "layer_normalization_1": True, "layer_normalization_2": True, "residual_mlp_1": True, "residual_mlp_2": False,
    "use_charge_embed": True, "use_spin_embed": True, "qk_non_linearity": "identity", "activation_fn": "silu",
    "energy_activation_fn": "silu", "zbl_repulsion_bool": True, "electrostatic_energy_bool": True,
    "electrostatic_energy_scale": 4.0, "dispersion_energy_bool": True, "dispersion_energy_scale": 1.2,
    "dispersion_energy_cutoff_lr_damping": 2.0,
}
#: the training budget of MuSE's demo contestants (``muse_ff.training.demo.DEMO_TRAINING``) in so3krates-torch's
#: terms: both losses are ``w_E * mean over frames of (dE / n_atoms)^2 + w_F * mean over force components of
#: dF^2`` (eV, Å), so the weights carry over as they are (energy 100, forces 1); Adam at 3e-3, cosine to 1e-5 over
#: the epochs (stepped per epoch in both), EMA of the weights (decay 0.98, updated every step in both), gradient
#: norm clipped at 10, no early stopping, the best-validation EMA weights kept
TRAINING_DEFAULTS: dict = {"epochs": 150, "batch_size": 16, "lr": 3e-3, "min_lr": 1e-5, "energy_weight": 100.0,
                           "forces_weight": 1.0, "ema_decay": 0.98, "clip_grad": 10.0}
#: short-range cutoff (Å): MuSE's atom-level cutoff
DEFAULT_R_MAX = 5.0
#: files :func:`train_so3lr` writes in its working folder (and nothing else)
WORK_FILES = ("train.xyz", "valid.xyz", "config.yaml", "train.log", "checkpoints", "logs", "model",
              "so3lr.model", "so3lr.pth", "result.json")
#: the experiment name given to so3krates-torch (its checkpoint tag and model file stem)
NAME = "so3lr"


#: the info key under which :func:`train_so3lr` writes the dipole labels for so3krates-torch (``keys.dipole_key``)
DIPOLE_KEY = "REF_dipole"
#: MuSE's dipole weight of its "+mu" contestants (``training.loss.dipole``, on the MSE of the dipole components in
#: e Å; ``benchmarks/dimer_tails.py`` ``DIPOLE_WEIGHT``), the weight :func:`matched_dipole_weight` maps by default
MUSE_DIPOLE_WEIGHT = 10.0


def matched_dipole_weight(frames, muse_weight: float = MUSE_DIPOLE_WEIGHT) -> float:
    """so3krates-torch's ``dipole_weight`` that gives its dipole term the size of MuSE's ``training.loss.dipole``
    = ``muse_weight`` on ``frames`` (the training frames).

    MuSE's term: ``w_mu * mean over frames and components of dmu^2`` (e Å). so3krates-torch's
    (``weighted_mean_squared_error_dipole``): ``w * mean over frames and components of (dmu / n_atoms)^2``. With
    errors that do not depend on the frame's size the two are equal in expectation for
    ``w = w_mu / mean over frames of 1 / n_atoms^2`` (a frame of n atoms then weighs ``w_mu n_ref^2 / n^2`` of
    MuSE's, ``n_ref`` the root of that harmonic mean of n^2: larger frames weigh less, smaller more). Fixed by
    the training frames' sizes alone, not tuned on any result.
    """
    n = np.array([len(a) for a in frames], dtype=np.float64)
    if not len(n) or (n <= 0).any():
        raise ValueError("need frames with atoms")
    return float(muse_weight / np.mean(1.0 / n ** 2))


def _training_frames(frames, charge_key: str, energy_key: str, forces_key: str,
                     dipole_key: str | None = None) -> list:
    """Copies of ``frames`` with only what so3krates-torch reads: numbers, positions, cell, pbc, ``REF_energy``,
    ``REF_forces``, the total charge as ``info['charge']`` and, with ``dipole_key``, the dipole moment (e Å, 3
    numbers, about the origin of the frame's own coordinates, which are copied unchanged) as
    ``info[DIPOLE_KEY]``."""
    from ase import Atoms

    out = []
    for i, a in enumerate(frames):
        b = Atoms(a.numbers, positions=a.positions, cell=a.cell, pbc=a.pbc)
        energy = a.info.get(energy_key)
        forces = a.arrays.get(forces_key)
        if energy is None or forces is None:
            raise ValueError(f"frame {i} has no {energy_key!r} (info) or {forces_key!r} (arrays)")
        b.info["REF_energy"] = float(energy)
        b.info["charge"] = float(a.info.get(charge_key, 0.0))
        b.arrays["REF_forces"] = np.asarray(forces, dtype=np.float64).reshape(len(a), 3)
        if dipole_key is not None:
            dipole = a.info.get(dipole_key)
            if dipole is None:
                # so3krates-torch would read a missing dipole as (0, 0, 0) and train towards it
                raise ValueError(f"frame {i} has no {dipole_key!r} (info): the dipole loss needs it on every frame")
            if np.asarray(a.pbc, dtype=bool).any():
                raise ValueError(f"frame {i} is periodic: a dipole label needs a free structure")
            b.info[DIPOLE_KEY] = np.asarray(dipole, dtype=np.float64).reshape(3)
        out.append(b)
    return out


def so3lr_training_config(seed: int = 0, epochs: int = TRAINING_DEFAULTS["epochs"],
                          batch_size: int = TRAINING_DEFAULTS["batch_size"], lr: float = TRAINING_DEFAULTS["lr"],
                          min_lr: float = TRAINING_DEFAULTS["min_lr"],
                          energy_weight: float = TRAINING_DEFAULTS["energy_weight"],
                          forces_weight: float = TRAINING_DEFAULTS["forces_weight"],
                          ema_decay: float | None = TRAINING_DEFAULTS["ema_decay"],
                          clip_grad: float | None = TRAINING_DEFAULTS["clip_grad"], r_max: float = DEFAULT_R_MAX,
                          r_max_lr: float = DEFAULT_R_MAX_LR, architecture: dict | None = None,
                          dtype: str = "float32", dipole_weight: float = 0.0) -> dict:
    """so3krates-torch's training config (``TrainConfig``, as its ``torchkrates-train`` reads it from YAML) for
    the SO3LR architecture trained on ``train.xyz`` and validated on ``valid.xyz`` in the working folder.

    ``seed``: so3krates-torch's ``GENERAL.seed``, which seeds the model initialisation and (through torch's global
    generator) the order of the training batches. ``architecture``: overrides of :data:`SO3LR_ARCHITECTURE`
    (e.g. ``{"num_features": 16}``). ``r_max_lr``: the long-range cutoff of Coulomb and dispersion (the Coulomb
    term is switched off between 0.45 ``r_max_lr`` and ``r_max_lr``). The total charge is read from
    ``info['charge']`` (``keys.total_charge_key``); the total spin is not given (0: closed shells).

    ``dipole_weight`` > 0: so3krates-torch's dipole loss as well (``TRAINING.dipole_weight``, ``loss_type``
    ``energy_forces_dipole``: ``dipole_weight * mean of ((mu_ref - sum_i q_i r_i) / n_atoms)^2``, the package's
    predicted charges about the origin of the frame's coordinates, e Å), labels read from ``info[DIPOLE_KEY]``
    (``keys.dipole_key``), validation errors logged with the dipole MAE (``MISC.error_table``); see
    :func:`matched_dipole_weight` for a weight of MuSE's size. 0 (default): energies and forces only, and the
    config is the one without the option.
    """
    if dipole_weight < 0:
        raise ValueError(f"dipole_weight must be >= 0, not {dipole_weight}")
    arch = {**SO3LR_ARCHITECTURE, **(architecture or {}), "r_max": float(r_max), "r_max_lr": float(r_max_lr)}
    training = {"batch_size": int(batch_size), "valid_batch_size": int(batch_size), "lr": float(lr),
                "num_epochs": int(epochs), "path_to_train_data": "train.xyz", "path_to_val_data": "valid.xyz",
                "optimizer": "adam", "scheduler": "cosine_annealing",
                "scheduler_args": {"T_max": max(int(epochs), 1), "eta_min": float(min_lr)},
                "energy_weight": float(energy_weight), "forces_weight": float(forces_weight),
                "ema": ema_decay is not None, "ema_decay": float(ema_decay or 0.99),
                "clip_grad": None if clip_grad is None else float(clip_grad),
                "patience": int(epochs) + 1,  # no early stopping (MuSE's demo: patience None)
                "keys": {"energy_key": "REF_energy", "forces_key": "REF_forces", "total_charge_key": "charge"}}
    misc = {"device": "cpu", "restart_latest": False, "log_level": "INFO"}
    if dipole_weight > 0:
        training["dipole_weight"] = float(dipole_weight)
        training["loss_type"] = "energy_forces_dipole"
        training["keys"]["dipole_key"] = DIPOLE_KEY
        misc["error_table"] = "EnergyForceDipoleMAE"
    return {"GENERAL": {"name_exp": NAME, "checkpoints_dir": "checkpoints", "model_dir": "model", "log_dir": "logs",
                        "default_dtype": dtype, "seed": int(seed)},
            "ARCHITECTURE": arch, "TRAINING": training, "MISC": misc}


def _check_work_dir(work: Path) -> dict | None:
    """The finished run's ``result.json`` in ``work``, ``None`` if ``work`` is missing or empty; refuses a folder
    holding anything else (a user's files, or an unfinished run)."""
    if not work.exists():
        return None
    if not work.is_dir():
        raise NotADirectoryError(f"{work} is not a folder")
    present = sorted(p.name for p in work.iterdir())
    if not present:
        return None
    if (work / "result.json").is_file():
        return json.loads((work / "result.json").read_text())
    raise FileExistsError(f"{work} is not empty and holds no finished SO3LR run ({', '.join(present[:5])}"
                          f"{', ...' if len(present) > 5 else ''}): give an empty or new folder")


def train_so3lr(train_frames, valid_frames, work_dir, *, seed: int = 0, threads: int = 1,
                timeout: float | None = None, charge_key: str = "charge", energy_key: str = "REF_energy",
                forces_key: str = "REF_forces", dipole_key: str = "REF_dipole", **config) -> dict:
    """Train the SO3LR architecture on ``train_frames`` (validation: ``valid_frames``) with so3krates-torch's own
    training entry point, in ``work_dir``; returns the run's summary (also ``work_dir/result.json``).

    ``work_dir`` must be missing or empty; a folder holding a finished run (``result.json``) with the same
    config is reused as it is (a different config is refused), and anything else is refused: nothing of the
    caller's is ever overwritten. Written there: :data:`WORK_FILES` only. ``config``: the keywords of
    :func:`so3lr_training_config` (epochs, batch_size, lr, ..., r_max, r_max_lr, architecture, dtype).

    The training runs as ``python -m so3krates_torch.cli.run_train --config config.yaml`` in a subprocess
    (so3krates-torch sets torch's default dtype and clears the logging handlers of its process) with
    ``threads`` torch threads (``OMP_NUM_THREADS``); its output goes to ``work_dir/train.log``. ``timeout``:
    seconds, then the subprocess is killed and ``TimeoutError`` raised.

    Frames: energies from ``info[energy_key]`` (eV), forces from ``arrays[forces_key]`` (eV/Å), the total charge
    from ``info[charge_key]`` (default 0): one total charge per structure, the only charge input the package has.
    With ``dipole_weight`` > 0 (a keyword of the config) also the dipole moments from ``info[dipole_key]`` (e Å,
    about the origin of the frame's coordinates, as MuSE's teachers write them; every frame needs one).
    """
    import subprocess
    import sys

    import yaml
    from ase.io import write

    work = Path(work_dir)
    cfg = so3lr_training_config(seed=seed, **config)
    done = _check_work_dir(work)
    if done is not None:
        if done.get("config") != cfg:
            raise FileExistsError(f"{work} holds a finished SO3LR run with another config: give a new folder")
        return done
    _import_calculator()
    work.mkdir(parents=True, exist_ok=True)
    dipoles = dipole_key if cfg["TRAINING"].get("dipole_weight", 0.0) > 0 else None
    train = _training_frames(train_frames, charge_key, energy_key, forces_key, dipoles)
    valid = _training_frames(valid_frames, charge_key, energy_key, forces_key, dipoles)
    if not train or not valid:
        raise ValueError(f"need training and validation frames (got {len(train)} and {len(valid)})")
    write(str(work / "train.xyz"), train, format="extxyz")
    write(str(work / "valid.xyz"), valid, format="extxyz")
    (work / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    with open(work / "train.log", "w") as log:
        try:
            proc = subprocess.run([sys.executable, "-m", "so3krates_torch.cli.run_train", "--config", "config.yaml"],
                                  cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=timeout)
        except subprocess.TimeoutExpired as err:
            raise TimeoutError(f"SO3LR training ran past {timeout} s (log: {work / 'train.log'})") from err
    elapsed = time.perf_counter() - start
    text = (work / "train.log").read_text(errors="replace")
    if proc.returncode != 0 or not (work / f"{NAME}.model").is_file():
        tail = "\n".join(text.splitlines()[-15:])
        raise RuntimeError(f"so3krates-torch training failed (exit {proc.returncode}; log {work / 'train.log'}):\n"
                           f"{tail}")
    checkpoint, best_epoch = _best_checkpoint(work) if cfg["TRAINING"]["num_epochs"] > 0 else (None, None)
    params = re.search(r"The model has (\d+) parameters", text)
    valid_lines = re.findall(r"Epoch (\d+): head: \S+, loss=([-\d.e+]+), MAE_E_per_atom=\s*([-\d.e+]+) meV, "
                             r"MAE_F=\s*([-\d.e+]+) meV / A(?:, MAE_dipole=\s*([-\d.e+]+))?", text)
    best = [v for v in valid_lines if int(v[0]) == best_epoch]
    result = {"seed": int(seed), "config": cfg, "train_time_s": round(elapsed, 1), "best_epoch": best_epoch,
              "checkpoint": None if checkpoint is None else checkpoint.name, "model_file": f"{NAME}.model",
              "n_train": len(train), "n_valid": len(valid), "params": int(params.group(1)) if params else None,
              "threads": int(threads), "package": REQUIREMENT,
              "best_valid": ({"loss": float(best[0][1]), "energy_mae_meV_per_atom": float(best[0][2]),
                              "forces_mae_meV_per_A": float(best[0][3]),
                              # so3krates-torch logs it as "mDebye" but it is 1e3 x the labels' unit: me Å here
                              **({"dipole_mae_me_A": float(best[0][4])} if best[0][4] else {})}
                             if best else None)}
    (work / "result.json").write_text(json.dumps(result, indent=1))
    return result


def _best_checkpoint(work: Path) -> tuple[Path, int]:
    """so3krates-torch's checkpoint of the best validation loss (the only one it keeps: it saves on improvement,
    with the EMA weights, and deletes the previous one), found by its own checkpoint naming."""
    from so3krates_torch.tools.checkpoint import CheckpointIO

    io = CheckpointIO(directory=str(work / "checkpoints"), tag=NAME)
    path = io._get_latest_checkpoint_path(swa=False)
    if path is None:
        raise FileNotFoundError(f"no so3krates-torch checkpoint in {work / 'checkpoints'}")
    return Path(path), io._parse_checkpoint_path(path).epochs


def trained_so3lr_calculator(work_dir, r_max_lr: float | None = None, dtype: str = "float64", device: str = "cpu",
                             weights: str = "best"):
    """An ASE calculator for the SO3LR trained by :func:`train_so3lr` in ``work_dir``.

    The model is the package's own pickled file (``so3lr.model``, read by so3krates-torch's
    ``TorchkratesCalculator``, never by MuSE's loader); ``weights="best"`` (default) loads into it the
    best-validation checkpoint (EMA weights, the package's ``torch.load`` of a state dict), ``"last"`` keeps the
    last epoch's raw weights that the package's training saves in the file. A run of 0 epochs has no checkpoint:
    its file holds the untrained model (initialised with ``seed``, energy shifts fitted to the training frames).
    ``r_max_lr``: the long-range cutoff (default: the training's). ``dtype``: ``"float64"`` (default) evaluates
    an upcast copy of the float32 weights, for interaction energies. The total charge is
    ``atoms.info['charge']``, read at every call.
    """
    from so3krates_torch.calculator.so3 import TorchkratesCalculator
    from so3krates_torch.tools.checkpoint import CheckpointIO

    work = Path(work_dir)
    done = _check_work_dir(work)
    if done is None:
        raise FileNotFoundError(f"no finished SO3LR training in {work}")
    if weights not in ("best", "last"):
        raise ValueError(f"weights: 'best' or 'last', not {weights!r}")
    arch = done["config"]["ARCHITECTURE"]
    calc = _construct(_calculator_class(TorchkratesCalculator), model_paths=[str(work / done["model_file"])],
                      model_type="so3lr", r_max_lr=float(r_max_lr or arch["r_max_lr"]),
                      dispersion_energy_cutoff_lr_damping=float(arch["dispersion_energy_cutoff_lr_damping"]),
                      default_dtype=dtype, device=device, charges_key="Qs")
    if weights == "best" and done["checkpoint"] is not None:
        checkpoint, _ = CheckpointIO(directory=str(work / "checkpoints"), tag=NAME).load(
            str(work / "checkpoints" / done["checkpoint"]), device=torch.device(device))
        calc.models[0].load_state_dict(checkpoint["model"], strict=True)
    calc.weights = weights
    return calc


def interaction_curve(calc, frames) -> np.ndarray:
    """E(AB) - E(A) - E(B) (eV) of dimer frames (``info['n_first']`` atoms in the first molecule) by an SO3LR
    calculator: the dimer with the frame's total charge ``info['charge']``, each monomer with its own
    (:func:`muse_ff.data.atoms.fragment`), every structure a calculation of its own (the package takes one total
    charge per structure; a charge per fragment inside one structure cannot be given)."""
    from muse_ff.data.atoms import fragment

    def energy(atoms) -> float:
        atoms = atoms.copy()
        atoms.info["charge"] = float(atoms.info.get("charge", 0.0))
        atoms.calc = calc
        return float(atoms.get_potential_energy())

    n = int(frames[0].info["n_first"])
    return np.array([energy(f) - energy(fragment(f, slice(None, n))) - energy(fragment(f, slice(n, None)))
                     for f in frames])
