"""Hessians (GFN2-xTB): optimised geometries, finite-difference Hessians and frames around the minima.

Molecules: water, formaldehyde, methanol, acetonitrile, benzene, naphthalene (ASE G2 / ideal geometries)
and the capped peptides Ace-(Ala)5-NMe (62 atoms) and Ace-(Ala)10-NMe (112 atoms), built with RDKit from
SMILES with every backbone (phi, psi) set to the alpha helix (-57, -47) so they have collective
low-frequency modes.

Each molecule is optimised with BFGS to max force ``fmax``; its Hessian is central differences of the
teacher's forces, ``H[i, j] = -(F_j(x + h e_i) - F_j(x - h e_i)) / 2h`` with ``h`` = 0.005 Å, symmetrised
(units eV/Å^2). Training frames are classical harmonic normal-mode samples at 300 K and 600 K (mode
amplitudes from the Hessian, soft modes floored at 100 cm^-1 so no amplitude explodes), labelled with
the same teacher.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms, units
from ase.optimize import BFGS

from muse_ff.datasets import common
from muse_ff.datasets.molecules import molecule
from muse_ff.teachers import TEACHERS, Teacher, TeacherCalculator
from muse_ff.teachers.base import require

#: sqrt(eV / Å^2 / amu) expressed as an energy quantum in eV (h-bar omega), as in ase.vibrations
_HBAR_OMEGA = units._hbar * 1e10 / np.sqrt(units._e * units._amu)


@dataclass(frozen=True)
class HessianConfig:
    molecules: tuple[str, ...] = ("water", "formaldehyde", "methanol", "acetonitrile", "benzene", "naphthalene")
    peptide_alanines: tuple[int, ...] = (5, 10)  # Ace-(Ala)n-NMe for each n: 10n + 12 atoms; () for none
    subset_molecules: tuple[str, ...] = ("water", "formaldehyde")
    frames_per_temperature: int = 20
    subset_frames: int = 2
    temperatures: tuple[float, ...] = (300.0, 600.0)
    fmax: float = 5e-4
    step: float = 0.005
    soft_mode_floor_cm: float = 100.0
    seed: int = 3
    teacher: str = "gfn2-xtb"


CONFIG = HessianConfig()


def capped_alanine(n: int, seed: int = 1) -> Atoms:
    """Ace-(Ala)n-NMe in an alpha helix (RDKit; deterministic for a given RDKit version)."""
    chem = require("rdkit.Chem", "hessians dataset")
    all_chem = require("rdkit.Chem.AllChem", "hessians dataset")
    transforms = require("rdkit.Chem.rdMolTransforms", "hessians dataset")
    mol = chem.AddHs(chem.MolFromSmiles("CC(=O)" + "N[C@@H](C)C(=O)" * n + "NC"))
    if all_chem.EmbedMolecule(mol, randomSeed=seed) != 0:
        raise RuntimeError(f"RDKit could not embed Ace-(Ala){n}-NMe")
    conf = mol.GetConformer()
    # heavy atoms in SMILES order: CH3 0, C 1, O 2; residue k: N 3+5k, CA 4+5k, CB 5+5k, C 6+5k, O 7+5k;
    # then the cap: N 3+5n, CH3 4+5n
    n_, ca, c = (lambda k: 3 + 5 * k), (lambda k: 4 + 5 * k), (lambda k: 6 + 5 * k)
    prev_c = lambda k: 1 if k == 0 else c(k - 1)  # noqa: E731
    transforms.SetDihedralDeg(conf, 0, 1, n_(0), ca(0), 180.0)
    for k in range(n):
        transforms.SetDihedralDeg(conf, prev_c(k), n_(k), ca(k), c(k), -57.0)
        transforms.SetDihedralDeg(conf, n_(k), ca(k), c(k), n_(k + 1), -47.0)
        transforms.SetDihedralDeg(conf, ca(k), c(k), n_(k + 1), ca(k + 1) if k + 1 < n else 4 + 5 * n, 180.0)
    atoms = Atoms([a.GetAtomicNum() for a in mol.GetAtoms()], positions=conf.GetPositions())
    atoms.info.update({"charge": 0, "molecule": f"ace-ala{n}-nme"})
    atoms.positions -= atoms.get_center_of_mass()
    return atoms


def optimise(atoms: Atoms, teacher: Teacher, fmax: float, steps: int = 2000) -> Atoms:
    """``atoms`` relaxed with ``teacher`` to max force ``fmax`` eV/Å (raises if it does not get there)."""
    out = atoms.copy()
    out.calc = TeacherCalculator(teacher)
    if not BFGS(out, logfile=None, maxstep=0.1).run(fmax=fmax, steps=steps):
        raise RuntimeError(f"{atoms.info.get('molecule')}: BFGS did not reach fmax={fmax} eV/Å in {steps} steps")
    out.calc = None
    out.info = dict(atoms.info)
    return out


def fd_hessian(atoms: Atoms, teacher: Teacher, step: float) -> np.ndarray:
    """Central-difference Hessian ``[3N, 3N]`` in eV/Å^2 from teacher forces (6N calls), symmetrised."""
    x0 = atoms.positions.copy()
    n = len(atoms)
    hess = np.zeros((3 * n, 3 * n))
    probe = atoms.copy()
    for i in range(3 * n):
        forces = []
        for sign in (1.0, -1.0):
            probe.positions = x0.copy()
            probe.positions[i // 3, i % 3] += sign * step
            forces.append(teacher.label(probe).forces.reshape(-1))
        hess[i] = -(forces[0] - forces[1]) / (2 * step)
    return 0.5 * (hess + hess.T)


def normal_modes(hess: np.ndarray, masses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(eigenvalues [3N] in eV/Å^2/amu, mass-weighted eigenvectors [3N, 3N] as columns), ascending."""
    inv_sqrt_m = np.repeat(1.0 / np.sqrt(masses), 3)
    return np.linalg.eigh(hess * inv_sqrt_m[:, None] * inv_sqrt_m[None, :])


def frequencies_cm(eigenvalues: np.ndarray) -> np.ndarray:
    """Harmonic wavenumbers in cm^-1 (negative numbers for imaginary modes):
    :func:`muse_ff.analysis.vibrations.wavenumbers_cm1`."""
    from muse_ff.analysis.vibrations import wavenumbers_cm1

    return wavenumbers_cm1(eigenvalues)


def normal_mode_sample(rng: np.random.Generator, atoms: Atoms, eigenvalues: np.ndarray, vectors: np.ndarray,
                       temperature: float, floor_cm: float) -> Atoms:
    """Classical harmonic sample at ``temperature`` K (6 rigid-body modes skipped, soft modes floored).

    The mass-weighted displacement is ``V diag(sqrt(kT / lambda)) V^T z`` with ``z`` standard normal in all 3N
    coordinates: the same distribution as independent normal-mode amplitudes, but a continuous function of
    the Hessian that does not depend on the arbitrary signs of eigenvectors or on the basis chosen inside a
    degenerate subspace, so a rebuild reproduces the stored frames.
    """
    floor = (floor_cm * units.invcm / _HBAR_OMEGA) ** 2
    amp = np.sqrt(units.kB * temperature / np.maximum(eigenvalues[6:], floor))
    vib = vectors[:, 6:]
    z = rng.normal(size=vib.shape[0])
    inv_sqrt_m = np.repeat(1.0 / np.sqrt(atoms.get_masses()), 3)
    out = atoms.copy()
    out.positions = atoms.positions + (inv_sqrt_m * (vib @ (amp * (vib.T @ z)))).reshape(-1, 3)
    return out


def _minimum_and_hessian(name: str, cfg: HessianConfig, teacher: Teacher) -> dict:
    """Optimised geometry, FD Hessian, normal modes and timings of one molecule."""
    start = common.timer()
    atoms = capped_alanine(int(name[7:-4])) if name.startswith("ace-ala") else molecule(name)
    opt = optimise(atoms, teacher, cfg.fmax)
    t_opt = common.timer() - start
    hess = fd_hessian(opt, teacher, cfg.step)
    lam, vec = normal_modes(hess, opt.get_masses())
    return {"atoms": opt, "hessian": hess, "eigenvalues": lam, "vectors": vec,
            "frequencies": frequencies_cm(lam), "seconds_opt": t_opt, "seconds_hessian": common.timer() - start - t_opt}


def generate(cfg: HessianConfig, subset: bool, teacher: Teacher) -> tuple[list[Atoms], dict[str, dict]]:
    """(unlabelled frames: minima + normal-mode samples, per-molecule Hessian results)."""
    names = list(cfg.subset_molecules if subset else cfg.molecules)
    if not subset:
        names += [f"ace-ala{n}-nme" for n in cfg.peptide_alanines]
    frames, results = [], {}
    for k, name in enumerate(names):
        res = results[name] = _minimum_and_hessian(name, cfg, teacher)
        minimum = res["atoms"].copy()
        minimum.info.update({"molecule": name, "role": "minimum", "frame_id": f"{name}/minimum", "split": "test"})
        frames.append(minimum)
        for temp in cfg.temperatures:  # one stream per (molecule, temperature): subsets are prefixes
            rng = np.random.default_rng([cfg.seed, k, int(temp)])
            for j in range(cfg.subset_frames if subset else cfg.frames_per_temperature):
                f = normal_mode_sample(rng, res["atoms"], res["eigenvalues"], res["vectors"], temp,
                                       cfg.soft_mode_floor_cm)
                f.info.update({"molecule": name, "role": f"normal-mode-{temp:.0f}K", "temperature": temp,
                               "frame_id": f"{name}/{temp:.0f}K/{j:03d}", "split": common.split_of(rng)})
                frames.append(f)
    return frames, results


def _write_npz(path: Path, results: dict[str, dict]) -> Path:
    arrays = {}
    for name, r in results.items():
        arrays[f"{name}/numbers"] = r["atoms"].numbers
        arrays[f"{name}/positions"] = r["atoms"].positions
        arrays[f"{name}/hessian"] = r["hessian"]
        arrays[f"{name}/frequencies_cm"] = r["frequencies"]
    np.savez_compressed(path, **arrays)
    return path


def _table(results: dict[str, dict]) -> str:
    rows = ["\n## Minima and Hessians (`hessians.npz`: `<molecule>/numbers|positions|hessian|frequencies_cm`)\n",
            "| molecule | atoms | lowest 3 vibrational wavenumbers (cm^-1) | highest | largest rigid-body mode (cm^-1) "
            "| optimisation (s) | Hessian (s) |", "|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        f = r["frequencies"]
        rows.append(f"| {name} | {len(r['atoms'])} | {', '.join(f'{x:.1f}' for x in f[6:9])} | {f[-1]:.1f} | "
                    f"{np.abs(f[:6]).max():.1f} | {r['seconds_opt']:.0f} | {r['seconds_hessian']:.0f} |")
    return "\n".join(rows) + "\n"


def build(out_dir: Path, subset: bool = False, workers: int = 1, progress: bool = False,
          command: str = "", cfg: HessianConfig = CONFIG) -> common.BuildResult:
    """Optimise, take FD Hessians, sample and label; write extxyz, ``hessians.npz`` and the data card."""
    start = common.timer()
    teacher = TEACHERS[cfg.teacher]()
    frames, results = generate(cfg, subset, teacher)
    stem = "hessians" + ("-subset" if subset else "")
    work = out_dir / f"_work-{stem}"
    labelled, report = common.label_with_teacher(frames, cfg.teacher, {}, work, workers, progress)
    files = [common.write_frames(out_dir / f"{stem}.extxyz.xz", labelled), _write_npz(out_dir / f"{stem}.npz", results)]
    seconds = common.timer() - start
    extra = (f"- optimisation: BFGS to fmax {cfg.fmax} eV/Å; Hessian: central differences, step {cfg.step} Å "
             f"(6N teacher calls); samples: {cfg.frames_per_temperature} per temperature {list(cfg.temperatures)} K,"
             f" soft-mode floor {cfg.soft_mode_floor_cm} cm^-1, seed {cfg.seed}\n"
             "- extra info keys: `molecule`, `role` (minimum / normal-mode-300K / normal-mode-600K), `temperature`\n"
             + _table(results))
    files.append(common.write_card(out_dir / ("README.md" if not subset else f"{stem}.md"),
                                   title="Hessians: minima, finite-difference Hessians and normal-mode frames"
                                   " (GFN2-xTB)" + (" (subset)" if subset else ""), what=__doc__.split("\n\n", 1)[1],
                                   command=command, provenance=teacher.provenance(), frames=labelled,
                                   seconds=seconds, tags=("molecule", "role"), extra=extra, failures=report.failures))
    common.remove_work_dir(work)
    return common.BuildResult("hessians", out_dir, files, len(labelled), report.failures, seconds)
