"""Chignolin (GYDPETGTWG) folding data: amber14 + GBn2 MD at several temperatures, labelled frames, observables.

The peptide is built offline: RDKit ``MolFromSequence`` -> 3D embedding (fixed seed) -> backbone dihedrals
set to a beta-hairpin guess (strands Y2-D3 / T8-W9, turn P4-G7) -> MMFF clean-up -> heavy atoms to PDB ->
pdbfixer adds hydrogens at pH 7 (charged termini, Asp-, Glu-: net charge -2, 138 atoms). The NMR
structure (PDB 1UAO) cannot be downloaded here, so the reference ("folded") structure is this model
hairpin after amber14+GBn2 minimisation, not the experimental fold: RMSD and folded fraction (CA RMSD
below 3 Å, loose because the guess relaxes by ~2 Å at 300 K) are relative to it. pdbfixer places hydrogens
non-deterministically, so builds reuse the stored ``data/folding/chignolin.pdb`` when it exists.

MD: OpenMM Langevin (1/ps), HBond constraints, hydrogen mass 3 amu, 3 fs steps, CPU platform with one
thread, fixed seeds; each temperature starts from the minimised hairpin. The 300 K run stays near the
hairpin, the hotter runs leave it part of the time, so folded and unfolded states are both present (runs of
100 ps are short: the fractions are not equilibrium populations). Labelled frames are then recomputed
with the ``amber14-gbn2`` teacher (Reference platform, double precision), so labels are exactly reproducible
from the stored coordinates.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms

from muse_ff.datasets import common
from muse_ff.teachers.amber import build_system, net_charge
from muse_ff.teachers.base import require

SEQUENCE = "GYDPETGTWG"
#: residue number -> (phi, psi) in degrees of the hairpin guess (None: leave as embedded)
HAIRPIN = {2: (-130, 150), 3: (-100, 160), 4: (None, -30), 5: (-90, 0), 6: (-100, 10), 7: (80, 20),
           8: (-130, 150), 9: (-120, 140)}


@dataclass(frozen=True)
class FoldingConfig:
    """MD protocol. Times in ps, temperatures in K."""

    temperatures: tuple[float, ...] = (300.0, 400.0, 500.0)
    equilibration_ps: float = 6.0
    production_ps: float = 100.0
    frame_every_ps: float = 1.0
    observable_every_ps: float = 0.3
    subset_frames: int = 2
    timestep_fs: float = 3.0
    hydrogen_mass: float = 3.0
    friction_per_ps: float = 1.0
    seed: int = 5
    rmsd_folded: float = 3.0  # Å, CA RMSD to the model hairpin below which a frame counts as folded


CONFIG = FoldingConfig()


def _backbone(mol) -> dict[tuple[int, str], int]:
    out = {}
    for atom in mol.GetAtoms():
        info = atom.GetPDBResidueInfo()
        if info is not None and info.GetName().strip() in ("N", "CA", "C"):
            out[(info.GetResidueNumber(), info.GetName().strip())] = atom.GetIdx()
    return out


def hairpin_pdb_text(seed: int = 7) -> str:
    """Heavy-atom PDB text of chignolin in the hairpin guess (RDKit, deterministic for a given version)."""
    chem = require("rdkit.Chem", "folding dataset")
    all_chem = require("rdkit.Chem.AllChem", "folding dataset")
    transforms = require("rdkit.Chem.rdMolTransforms", "folding dataset")
    mol = chem.AddHs(chem.MolFromSequence(SEQUENCE))
    if all_chem.EmbedMolecule(mol, randomSeed=seed) != 0:
        raise RuntimeError("RDKit could not embed chignolin in 3D")
    conf, bb, n = mol.GetConformer(), _backbone(mol), len(SEQUENCE)
    for i in range(1, n + 1):
        phi, psi = HAIRPIN.get(i, (-120, 140))
        if phi is not None and i > 1:
            transforms.SetDihedralDeg(conf, bb[(i - 1, "C")], bb[(i, "N")], bb[(i, "CA")], bb[(i, "C")], phi)
        if psi is not None and i < n:
            transforms.SetDihedralDeg(conf, bb[(i, "N")], bb[(i, "CA")], bb[(i, "C")], bb[(i + 1, "N")], psi)
    all_chem.MMFFOptimizeMolecule(mol, maxIters=5000)
    return chem.MolToPDBBlock(chem.RemoveHs(mol))


def write_chignolin_pdb(path: Path, seed: int = 7) -> Path:
    """Build chignolin with hydrogens (pdbfixer, pH 7) and write it to ``path`` (the teacher topology)."""
    fixer_mod = require("pdbfixer", "folding dataset")
    app = require("openmm.app", "folding dataset")
    fixer = fixer_mod.PDBFixer(pdbfile=io.StringIO(hairpin_pdb_text(seed)))
    fixer.findMissingResidues()
    fixer.missingResidues = {}
    fixer.findMissingAtoms()
    fixer.addMissingAtoms()
    fixer.addMissingHydrogens(7.0)
    with open(path, "w") as fh:
        app.PDBFile.writeFile(fixer.topology, fixer.positions, fh, keepIds=True)
    return path


def _simulation(pdb, temperature: float, cfg: FoldingConfig):
    mm = require("openmm", "folding dataset")
    app = require("openmm.app", "folding dataset")
    unit = require("openmm.unit", "folding dataset")
    system = build_system(pdb.topology, constraints=app.HBonds)
    for bond in pdb.topology.bonds():  # hydrogen mass repartitioning: dynamics only, same potential
        a, b = bond
        if (a.element.symbol == "H") != (b.element.symbol == "H"):
            h, heavy = (a, b) if a.element.symbol == "H" else (b, a)
            delta = cfg.hydrogen_mass - system.getParticleMass(h.index).value_in_unit(unit.dalton)
            system.setParticleMass(h.index, cfg.hydrogen_mass * unit.dalton)
            system.setParticleMass(heavy.index, system.getParticleMass(heavy.index) - delta * unit.dalton)
    integrator = mm.LangevinMiddleIntegrator(temperature * unit.kelvin, cfg.friction_per_ps / unit.picosecond,
                                             cfg.timestep_fs * unit.femtosecond)
    integrator.setRandomNumberSeed(cfg.seed + int(temperature))
    platform = mm.Platform.getPlatformByName("CPU")
    sim = app.Simulation(pdb.topology, system, integrator, platform, {"Threads": "1"})
    return sim, unit


def kabsch_rmsd(x: np.ndarray, ref: np.ndarray) -> float:
    """RMSD (Å) of points ``x`` [M, 3] to ``ref`` [M, 3] after optimal superposition."""
    a, b = x - x.mean(axis=0), ref - ref.mean(axis=0)
    u, _, vt = np.linalg.svd(a.T @ b)
    d = np.sign(np.linalg.det(u @ vt))
    rot = u @ np.diag([1.0, 1.0, d]) @ vt
    return float(np.sqrt(((a @ rot - b) ** 2).sum(axis=1).mean()))


def observables(pos: np.ndarray, ca: np.ndarray, heavy: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """End-to-end CA1-CA10 distance, heavy-atom radius of gyration, CA RMSD to ``ref`` (all Å)."""
    h = pos[heavy]
    return {
        "end_to_end": float(np.linalg.norm(pos[ca[-1]] - pos[ca[0]])),
        "rg": float(np.sqrt(((h - h.mean(axis=0)) ** 2).sum(axis=1).mean())),
        "rmsd_ca": kabsch_rmsd(pos[ca], ref[ca]),
    }


def _split(t: float, total: float) -> str:
    """Time-block split inside each trajectory: first 80% train, next 10% valid, last 10% test."""
    return "train" if t <= 0.8 * total else ("valid" if t <= 0.9 * total else "test")


def run_md(pdb, reference_nm, temperature: float, cfg: FoldingConfig, n_frames: int | None,
           numbers: np.ndarray, ca: np.ndarray, heavy: np.ndarray, charge: int = 0) -> tuple[list[Atoms], list[dict]]:
    """One Langevin run from the reference: (unlabelled frames with ``info['charge'] = charge``, the peptide's
    total charge; observable rows every ``observable_every_ps``)."""
    sim, unit = _simulation(pdb, temperature, cfg)
    sim.context.setPositions(reference_nm)
    sim.context.setVelocitiesToTemperature(temperature * unit.kelvin, cfg.seed)
    steps_obs = max(1, round(cfg.observable_every_ps * 1000 / cfg.timestep_fs))
    obs_per_frame = max(1, round(cfg.frame_every_ps / cfg.observable_every_ps))
    sim.step(round(cfg.equilibration_ps * 1000 / cfg.timestep_fs))
    ref = np.asarray(reference_nm.value_in_unit(unit.angstrom))
    n_obs = round(cfg.production_ps / cfg.observable_every_ps)
    frames, rows = [], []
    for k in range(1, n_obs + 1):
        sim.step(steps_obs)
        state = sim.context.getState(getPositions=True, getEnergy=True)
        pos = np.asarray(state.getPositions(asNumpy=True).value_in_unit(unit.angstrom))
        t = round(k * steps_obs * cfg.timestep_fs / 1000, 4)
        row = {"temperature": temperature, "time_ps": t, **observables(pos, ca, heavy, ref),
               "potential_md": state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)}
        rows.append(row)
        if k % obs_per_frame == 0:
            atoms = Atoms(numbers, positions=pos)
            j = len(frames)
            atoms.info.update({"frame_id": f"T{temperature:.0f}/{j:04d}", "charge": charge,
                               "folded": int(row["rmsd_ca"] < cfg.rmsd_folded), "split": _split(t, cfg.production_ps),
                               **{key: round(v, 6) for key, v in row.items() if key != "potential_md"}})
            frames.append(atoms)
            if n_frames is not None and len(frames) >= n_frames:
                break
    return frames, rows


#: the stored topology (pdbfixer places hydrogens non-deterministically, so rebuilds reuse this file)
STORED_PDB = Path(__file__).resolve().parents[3] / "data" / "folding" / "chignolin.pdb"


def _topology(path: Path) -> Path:
    """``path`` if it exists, else a copy of :data:`STORED_PDB` if present, else a freshly built chignolin."""
    if path.exists():
        return path
    if STORED_PDB.exists():
        path.write_bytes(STORED_PDB.read_bytes())
        return path
    return write_chignolin_pdb(path)


def minimised_reference(pdb_path: Path, cfg: FoldingConfig):
    """(PDBFile, minimised positions as an OpenMM Quantity in nm) — the reference "folded" structure."""
    app = require("openmm.app", "folding dataset")
    pdb = app.PDBFile(str(pdb_path))
    sim, _ = _simulation(pdb, cfg.temperatures[0], cfg)
    sim.context.setPositions(pdb.positions)
    sim.minimizeEnergy(maxIterations=5000)
    return pdb, sim.context.getState(getPositions=True).getPositions(asNumpy=True)


def _summary(rows: list[dict], cfg: FoldingConfig) -> str:
    lines = ["\n## Teacher reference observables (from `observables.csv`, every "
             f"{cfg.observable_every_ps} ps)\n", "| T (K) | end-to-end (Å) | Rg (Å) | CA RMSD (Å) | folded fraction |",
             "|---|---|---|---|---|"]
    for temp in sorted({r["temperature"] for r in rows}):
        sel = [r for r in rows if r["temperature"] == temp]
        stat = {k: (np.mean([r[k] for r in sel]), np.std([r[k] for r in sel])) for k in ("end_to_end", "rg", "rmsd_ca")}
        folded = np.mean([r["rmsd_ca"] < cfg.rmsd_folded for r in sel])
        lines.append(f"| {temp:.0f} | " + " | ".join(f"{m:.2f} ± {s:.2f}" for m, s in stat.values())
                     + f" | {folded:.2f} |")
    return "\n".join(lines) + "\n"


def _write_observables(path: Path, rows: list[dict]) -> Path:
    from ase.units import kJ, mol

    head = "temperature_K,time_ps,end_to_end_A,rg_A,rmsd_ca_A,potential_md_eV"
    body = [f"{r['temperature']:.1f},{r['time_ps']:.4f},{r['end_to_end']:.5f},{r['rg']:.5f},{r['rmsd_ca']:.5f},"
            f"{r['potential_md'] * kJ / mol:.6f}" for r in rows]
    path.write_text("\n".join([head, *body]) + "\n")
    return path


def build(out_dir: Path, subset: bool = False, workers: int = 1, progress: bool = False,
          command: str = "", cfg: FoldingConfig = CONFIG) -> common.BuildResult:
    """Build chignolin, run the MD, label frames; write extxyz, observables, PDBs and the data card."""
    start = common.timer()
    stem = "folding" + ("-subset" if subset else "")
    pdb_path = _topology(out_dir / ("chignolin.pdb" if not subset else "chignolin-subset.pdb"))
    pdb, reference = minimised_reference(pdb_path, cfg)
    numbers = np.array([a.element.atomic_number for a in pdb.topology.atoms()])
    ca = np.array([a.index for a in pdb.topology.atoms() if a.name == "CA"])
    heavy = np.flatnonzero(numbers > 1)
    charge = net_charge(pdb.topology)
    frames, rows = [], []
    for temp in cfg.temperatures[:1] if subset else cfg.temperatures:
        f, r = run_md(pdb, reference, temp, cfg, cfg.subset_frames if subset else None, numbers, ca, heavy, charge)
        frames, rows = frames + f, rows + r
    settings = {"pdb": str(pdb_path)}
    work = out_dir / f"_work-{stem}"
    labelled, report = common.label_with_teacher(frames, "amber14-gbn2", settings, work, workers, progress)
    files = [common.write_frames(out_dir / f"{stem}.extxyz.xz", labelled), pdb_path,
             _write_observables(out_dir / f"{stem}-observables.csv", rows)]
    ref_atoms = Atoms(numbers, positions=np.asarray(reference.value_in_unit(reference.unit)) * 10.0,
                      info={"charge": charge})
    files.append(common.write_frames(out_dir / f"{stem}-reference.extxyz", [ref_atoms]))
    seconds = common.timer() - start
    from muse_ff.teachers import TEACHERS

    extra = (f"- MD: temperatures {list(cfg.temperatures)} K, {cfg.equilibration_ps} ps equilibration + "
             f"{cfg.production_ps} ps each, {cfg.timestep_fs} fs steps, frames every "
             f"{cfg.frame_every_ps} ps, seed {cfg.seed}; split by time blocks (80/10/10) in each run\n"
             f"- extra info keys: `charge` (e, the peptide's total charge: {charge}), `temperature` (K), `time_ps`, "
             "`end_to_end` (Å, CA1-CA10), `rg` (Å, heavy atoms), `rmsd_ca` (Å, to the reference), "
             f"`folded` (rmsd_ca < {cfg.rmsd_folded} Å)\n"
             f"- files: `{pdb_path.name}` (topology for the teacher: `muse label ... --teacher amber14-gbn2 --pdb "
             f"{pdb_path.name}`), `{stem}-reference.extxyz` (minimised reference structure), "
             f"`{stem}-observables.csv` (observables of the teacher's own trajectories)\n" + _summary(rows, cfg))
    files.append(common.write_card(out_dir / ("README.md" if not subset else f"{stem}.md"),
                                   title="Folding: chignolin GYDPETGTWG with amber14 + GBn2"
                                   + (" (subset)" if subset else ""), what=__doc__.split("\n\n", 1)[1],
                                   command=command, provenance=TEACHERS["amber14-gbn2"](**settings).provenance(),
                                   frames=labelled, seconds=seconds, tags=("temperature", "folded"),
                                   extra=extra, failures=report.failures))
    common.remove_work_dir(work)
    return common.BuildResult("folding", out_dir, files, len(labelled), report.failures, seconds)
