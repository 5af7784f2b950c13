"""Long-range tails on dimers the models never saw (issue #15): train on the packaged demo data, evaluate
interaction-energy scans of held-out pairs against GFN2-xTB.

Contestants, all PaiNN (the demo's backbone and training settings, ``muse_ff.training.demo``), each trained
with ``--seeds`` seeds (model initialisation and data order):

- ``PaiNN``, ``MuSE(PaiNN)`` and ``PaiNN+LES``: the demo's three models;
- ``PaiNN+D3`` (the fixed PBE0-D3(BJ) baseline, tad-dftd3, a user's usual fix) and ``PaiNN+LES(neutral)`` (latent
  charges neutral per molecule, a deviation from LES);
- ``PaiNN+phys`` and ``MuSE(PaiNN)+phys``: the same with ``model.physical`` (charges conserved per molecule,
  Coulomb and BJ-damped C6 dispersion with no cutoff) and ``model.charges``;
- ``...+phys+Eint``: the same, also trained on the frames' interaction energies (``training.loss.interaction``
  = 100 on eV, next to the demo's 100 on the energy per atom);
- ``...+phys+Eint+mu``: and on the teacher's dipole moments (``training.loss.dipole`` = 10 on e Å);
  ``MuSE-intra(PaiNN)+phys+Eint+mu``: the same with coarse edges only within each molecule
  (``levels[k].edges: within-component``), so that what passes between the molecules beyond 5 Å is the physical
  terms alone.

Held-out scans: rigid GFN2-xTB interaction-energy curves E(AB) - E(A) - E(B) of pairs that are in no
training frame (``--pairs``; default acetonitrile+water, whose molecules are seen but never together, and
methanol+water and methanol+acetonitrile, with a molecule never seen), ``--orientations`` random relative
orientations each, centre-of-mass separations 3..15 Å (the demo's range) and a far point at 25 Å. Reported,
mean ± std over seeds: MAE beyond 5 Å (the backbone cutoff) in meV, the fraction of points beyond 8 Å whose
interaction energy has the teacher's sign and at least 0.1 meV, and the absolute error at 12 and 25 Å, averaged
over scans (with the teacher's mean |E_int| there for scale).

    python benchmarks/dimer_tails.py --out /tmp/tails --seeds 3            # about 1 h on 2 idle cores
    python benchmarks/dimer_tails.py --out /tmp/tails --seeds 1 --epochs 20 --quick   # smoke test

Trained models are kept under ``OUT/<model>/seed<k>/`` and reused when present (delete them to retrain).

A peer that is not trained here: ``SO3LR (pretrained, zero-shot)`` (Kabylda et al., JACS 2025; the package
so3krates-torch, ``muse_ff.baselines.so3lr``), **another level of theory** (PBE0+MBD training data, not
GFN2-xTB), evaluated on the same scans with no training. Its absolute errors against our teacher mix model
error and level of theory, so its table also reports the shape of the curves: the sign of the tail beyond
8 Å, E_int at 12 Å next to the teacher's, the separation and depth of the minimum. Charges: one total
charge per structure (the dimer gets the frame's ``info['charge']``, each monomer its own, as
:func:`muse_ff.data.atoms.fragment` gives it); SO3LR cannot take a charge per fragment inside one
structure. Run it alone (~20 s on 2 cores after the teacher scans; predictions are kept in
``OUT/SO3LR_pretrained/`` and reused):

    python benchmarks/dimer_tails.py --only so3lr --out /tmp/tails      # or --so3lr next to the others

A trained peer: ``SO3LR (trained; one charge per frame)``, the SO3LR architecture (the pretrained model's
hyperparameters, 529,852 parameters) trained from scratch by so3krates-torch's own training code
(:func:`muse_ff.baselines.so3lr.train_so3lr`) on the same train/valid frames as the others (the demo data's
``split`` train and valid), with the demo's budget (150 epochs, batch 16, Adam 3e-3 cosine to 1e-5, EMA 0.98,
gradient clip 10, best-validation EMA weights; loss 100 x MSE of the energy per atom + 1 x MSE of the force
components, the same form in both codes), short-range cutoff 5 Å (our atom cutoff), long-range cutoff 100 Å (as
for the pretrained one), the frame's total charge as input (the package takes one total charge per structure: a
charge per fragment cannot be given, so the ion+water training frames carry their charge for the whole frame).
``--seeds`` seeds (so3krates-torch's ``GENERAL.seed``: model initialisation and batch order; bit-reproducible on
CPU). Evaluated through the package's own calculator in float64, dimers and monomers as for the pretrained one.
Kept in ``OUT/SO3LR_trained/seed<k>/`` (reused when finished):

    python benchmarks/dimer_tails.py --only so3lr-trained --seeds 3 --out /tmp/tails   # ~6 min a seed, 1 thread

The same trained on the teacher's dipole moments as well, as our "+mu" contestants are: ``SO3LR (trained +mu; one
charge per frame)``, so3krates-torch's own dipole loss (``REF_dipole``, e Å, about the frame's origin, against
sum_i q_i r_i of its charges, the convention of our teacher's labels and of MuSE's dipole loss) with the weight
that gives it the size of MuSE's ``training.loss.dipole`` = 10 on these training frames
(:func:`muse_ff.baselines.so3lr.matched_dipole_weight`: the package divides each frame's dipole error by its
atom count, so its weight is 10 / mean over the training frames of 1 / n_atoms^2, fixed by the frames' sizes,
not tuned on any result). No interaction-energy term: so3krates-torch's training has none. Kept in
``OUT/SO3LR_trained_mu/seed<k>/``; results in ``OUT/dimer_tails_so3lr_trained_mu.{md,json}``, rewritten after
each seed:

    python benchmarks/dimer_tails.py --only so3lr-trained-mu --seeds 3 --out /tmp/tails
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from ase import Atoms

from muse_ff.data.atoms import fragment
from muse_ff.training.demo import BACKBONE, DEMO_MODELS, demo_config, demo_data

PHYSICAL = {"physical": {}, "charges": True}
MODELS: dict[str, dict] = {
    **{name: DEMO_MODELS[name] for name in ("PaiNN", "MuSE(PaiNN)", "PaiNN+LES")},
    "PaiNN+D3": {**DEMO_MODELS["PaiNN"], "d3": {"functional": "pbe0"}},
    "PaiNN+LES(neutral)": {**DEMO_MODELS["PaiNN"], "long_range": {"kind": "latent-ewald", "neutral": True}},
    "PaiNN+phys": {**DEMO_MODELS["PaiNN"], **PHYSICAL},
    "MuSE(PaiNN)+phys": {**DEMO_MODELS["MuSE(PaiNN)"], **PHYSICAL},
    "PaiNN+phys+Eint": {**DEMO_MODELS["PaiNN"], **PHYSICAL},
    "MuSE(PaiNN)+phys+Eint": {**DEMO_MODELS["MuSE(PaiNN)"], **PHYSICAL},
    "PaiNN+phys+Eint+mu": {**DEMO_MODELS["PaiNN"], **PHYSICAL},
    "MuSE(PaiNN)+phys+Eint+mu": {**DEMO_MODELS["MuSE(PaiNN)"], **PHYSICAL},
    "MuSE-intra(PaiNN)+phys+Eint+mu": DEMO_MODELS["MuSE-intra(PaiNN)+phys"],
}
#: models trained on the teacher's dipole moments as well (REF_dipole, e Å)
DIPOLE_WEIGHT = 10.0
#: models trained with the interaction-energy loss term as well (data.interaction_key: interaction_energy)
INTERACTION_WEIGHT = 100.0
PAIRS = ("acetonitrile+water", "methanol+water", "methanol+acetonitrile")
SEPARATIONS = tuple(np.round(np.arange(3.0, 15.01, 0.5), 3)) + (25.0,)


def scans(pairs, orientations: int, seed: int = 11) -> list[dict]:
    """Rigid scans: ``[{pair, orientation, separation [k], frames [k], ref [k] (eV)}]`` (GFN2-xTB)."""
    from muse_ff.datasets import common
    from muse_ff.datasets.molecules import optimised
    from muse_ff.teachers import TEACHERS

    teacher = TEACHERS["gfn2-xtb"]()
    out = []
    monomers = {}
    for p, pair in enumerate(pairs):
        a_name, b_name = pair.split("+")
        for name in (a_name, b_name):
            if name not in monomers:
                monomers[name] = optimised(name, teacher)
        a, b = monomers[a_name], monomers[b_name]
        rng = np.random.default_rng([seed, p])
        made = 0
        while made < orientations:
            pa = a.positions @ common.random_rotation(rng).T
            pb = b.positions @ common.random_rotation(rng).T
            u = common.random_unit_vector(rng)
            frames, seps = [], []
            for r in SEPARATIONS:
                pos_b = pb + r * u
                d = np.linalg.norm(pa[:, None] - pos_b[None], axis=-1).min()
                if d < 1.8:
                    continue
                atoms = Atoms(np.concatenate([a.numbers, b.numbers]), positions=np.vstack([pa, pos_b]))
                atoms.info.update({"charge": 0, "n_first": len(a)})
                frames.append(atoms)
                seps.append(r)
            if len(seps) < 10 or min(seps) > 5.0:
                continue
            e_a = teacher.label(Atoms(a.numbers, positions=pa)).energy
            e_b = teacher.label(Atoms(b.numbers, positions=pb)).energy
            ref = np.array([teacher.label(f).energy - e_a - e_b for f in frames])
            out.append({"pair": pair, "orientation": made, "separation": np.array(seps), "frames": frames,
                        "ref": ref})
            made += 1
    return out


def interaction(model, frames: list[Atoms]) -> np.ndarray:
    from muse_ff.analysis.metrics import predict_energies

    n = int(frames[0].info["n_first"])
    e_ab = predict_energies(model, frames)
    e_a = predict_energies(model, [fragment(f, slice(None, n)) for f in frames])
    e_b = predict_energies(model, [fragment(f, slice(n, None)) for f in frames])
    return e_ab - e_a - e_b


def metrics(pred: np.ndarray, ref: np.ndarray, sep: np.ndarray) -> dict[str, float]:
    far = sep > 5.0
    tail = sep > 8.0
    at = lambda r, v: float(v[np.argmin(np.abs(sep - r))])  # noqa: E731
    return {"mae_beyond_5": float(np.abs(pred - ref)[far].mean() * 1e3),
            "mae_beyond_8": float(np.abs(pred - ref)[tail].mean() * 1e3),
            # a tail of the teacher's sign and at least 0.1 meV (a model blind there predicts rounding noise)
            "sign_beyond_8": float(((pred[tail] * ref[tail] > 0) & (np.abs(pred[tail]) >= 1e-4)).mean()),
            "err_12": abs(at(12.0, pred) - at(12.0, ref)) * 1e3, "ref_12": abs(at(12.0, ref)) * 1e3,
            "err_25": abs(at(25.0, pred) - at(25.0, ref)) * 1e3, "ref_25": abs(at(25.0, ref)) * 1e3}


SO3LR = "SO3LR (pretrained, zero-shot)"
SO3LR_DIR = "SO3LR_pretrained"
#: so3krates-torch switches SO3LR's (shifted-force) Coulomb off between 0.45 r_max_lr and r_max_lr: the switch
#: starts this far (Å) beyond the largest centre-of-mass separation, so r_max_lr = (25 + 20) / 0.45 = 100 Å
#: (E_int at 12 and 25 Å within 2 µeV of r_max_lr = 200 Å; at 45 Å the 25 Å point moved by up to 0.13 meV)
SO3LR_MARGIN = 20.0
SO3LR_CUTON = 0.45


def so3lr_interaction(calc, frames: list[Atoms]) -> np.ndarray:
    """SO3LR's E(AB) - E(A) - E(B) (eV): the dimer with the frame's total charge, each monomer with its own
    (:func:`muse_ff.data.atoms.fragment`), every structure a calculation of its own
    (:func:`muse_ff.baselines.so3lr.interaction_curve`)."""
    from muse_ff.baselines.so3lr import interaction_curve

    return interaction_curve(calc, frames)


#: centre-of-mass separation (Å) of the "separated" diagnostic: beyond SO3LR's long-range cutoff
SO3LR_FAR = 300.0


def so3lr_separated(calc, frame: Atoms, direction: np.ndarray) -> tuple[float, float]:
    """SO3LR at ``SO3LR_FAR`` Å along ``direction``, beyond every interaction: (E_int in eV, the net charge of the
    first monomer inside the dimer, e). Both are 0 for a model whose charges are conserved per molecule; SO3LR
    equilibrates one total charge over the whole structure, so the monomers trade a fraction of a charge at any
    distance and E_int does not go to 0."""
    n = int(frame.info["n_first"])
    far = frame.copy()
    com = lambda a: a.get_center_of_mass()  # noqa: E731
    far.positions[n:] += (SO3LR_FAR - np.linalg.norm(com(far[n:]) - com(far[:n]))) * direction
    e_int = float(so3lr_interaction(calc, [far])[0])
    far.info["charge"] = float(far.info.get("charge", 0.0))
    far.calc = calc
    far.get_potential_energy()
    return e_int, float(calc.results["partial_charges"][:n].sum())


def shape(pred: np.ndarray, ref: np.ndarray, sep: np.ndarray) -> dict[str, float]:
    """:func:`metrics` and the curves' shape: E_int at 12 Å (meV, signed) and the minimum (Å, meV), both
    the model's and the teacher's."""
    at12 = int(np.argmin(np.abs(sep - 12.0)))
    lo, lo_ref = int(np.argmin(pred)), int(np.argmin(ref))
    return {**metrics(pred, ref, sep), "e_12": float(pred[at12] * 1e3), "ref_e_12": float(ref[at12] * 1e3),
            "r_min": float(sep[lo]), "ref_r_min": float(sep[lo_ref]), "e_min": float(pred[lo] * 1e3),
            "ref_e_min": float(ref[lo_ref] * 1e3), "dr_min": abs(float(sep[lo] - sep[lo_ref])),
            # the teacher's curve has a minimum (negative, inside the scan) rather than being repulsive
            "bound": bool(ref[lo_ref] < 0 and lo_ref < len(sep) - 1)}


def run_so3lr(curves: list[dict], out: Path) -> tuple[list[dict], str]:
    """SO3LR on every scan (predictions reused from ``out/SO3LR_pretrained/predictions.json`` when they
    match the scans and cutoff); the per-scan :func:`shape` metrics and a markdown table."""
    r_max_lr = so3lr_r_max_lr()
    cache = out / SO3LR_DIR / "predictions.json"
    keys = [(c["pair"], c["orientation"], [float(r) for r in c["separation"]]) for c in curves]
    kept = json.loads(cache.read_text()) if cache.exists() else {}
    same = [tuple(k) for k in kept.get("keys", [])] == [(a, b, c) for a, b, c in keys]
    if same and kept.get("r_max_lr") == r_max_lr and kept.get("far") == SO3LR_FAR:
        preds = [np.array(p) for p in kept["pred"]]
        separated = kept["separated"]
        print(f"{SO3LR}: predictions reused from {cache}", flush=True)
    else:
        from muse_ff.baselines.so3lr import so3lr_calculator

        t0 = time.time()
        calc = so3lr_calculator(r_max_lr=r_max_lr)
        preds = [so3lr_interaction(calc, c["frames"]) for c in curves]
        separated = []
        for c in curves:
            n = int(c["frames"][0].info["n_first"])
            u = c["frames"][-1].positions[n] - c["frames"][-2].positions[n]
            separated.append(so3lr_separated(calc, c["frames"][-1], u / np.linalg.norm(u)))
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps({"r_max_lr": r_max_lr, "far": SO3LR_FAR, "dtype": "float64", "keys": keys,
                                     "pred": [p.tolist() for p in preds], "separated": separated,
                                     "ref": [c["ref"].tolist() for c in curves]}, indent=1))
        print(f"{SO3LR}: {sum(3 * len(c['frames']) for c in curves)} calculations in {time.time() - t0:.0f} s "
              f"(r_max_lr {r_max_lr:.0f} Å, float64)", flush=True)
    per_scan = [{"pair": c["pair"], "orientation": c["orientation"], **shape(p, c["ref"], c["separation"]),
                 "e_far": far[0] * 1e3, "q_first_far": far[1]} for c, p, far in zip(curves, preds, separated)]
    # diagnostic: the curves less their separated limit, what a charge conserved per molecule would remove
    shifted = [{"pair": c["pair"], **shape(p - far[0], c["ref"], c["separation"])}
               for c, p, far in zip(curves, preds, separated)]
    rows = []
    for label, ms in (("", per_scan), (f", less E_int({SO3LR_FAR:.0f} Å)", shifted)):
        rows += [("all" + label, ms)] + [(pair + label, [m for m in ms if m["pair"] == pair])
                                         for pair in dict.fromkeys(m["pair"] for m in ms)]
    mean = lambda ms, k: float(np.mean([m[k] for m in ms])) if ms else float("nan")  # noqa: E731
    bound = lambda ms: [m for m in ms if m["bound"]]  # noqa: E731
    lines = [f"{SO3LR}: so3krates-torch's packaged SO3LR weights (PBE0+MBD training data: another level of "
             f"theory than the GFN2-xTB teacher), no training; long-range cutoff {r_max_lr:.0f} Å, float64; "
             f"one total charge per structure (dimer: the frame's; monomers: their own). Means over the scans; "
             f"model / teacher where both are given; r_min, |Δr_min| and E_min over the scans whose teacher "
             f"curve has a minimum (bound). 'less E_int({SO3LR_FAR:.0f} Å)': the curves less SO3LR's E_int at "
             f"{SO3LR_FAR:.0f} Å, beyond every interaction (a diagnostic, not a contestant).", "",
             "| scans | n (bound) | right sign > 8 Å | E_int 12 Å (meV) | r_min (Å) | abs. Δr_min (Å) "
             "| E_min (meV) | abs. error 12 Å (meV) | MAE > 5 Å (meV) | MAE > 8 Å (meV) | abs. error 25 Å (meV) |",
             "|---" * 11 + "|"]
    for label, ms in rows:
        b = bound(ms)
        lines.append(f"| {label} | {len(ms)} ({len(b)}) | {mean(ms, 'sign_beyond_8'):.2f} | "
                     f"{mean(ms, 'e_12'):+.2f} / {mean(ms, 'ref_e_12'):+.2f} | {mean(b, 'r_min'):.2f} / "
                     f"{mean(b, 'ref_r_min'):.2f} | {mean(b, 'dr_min'):.2f} | {mean(b, 'e_min'):.1f} / "
                     f"{mean(b, 'ref_e_min'):.1f} | {mean(ms, 'err_12'):.2f} | "
                     f"{mean(ms, 'mae_beyond_5'):.2f} | {mean(ms, 'mae_beyond_8'):.2f} | "
                     f"{mean(ms, 'err_25'):.3f} |")
    lines += ["", "Per scan (model / teacher; r_min and E_min on the scanned grid, 3-15 Å and 25 Å; teacher "
              f"'repulsive': its lowest point is positive or the 25 Å one; at {SO3LR_FAR:.0f} Å, beyond every "
              "interaction, "
              "SO3LR's E_int and the net charge of the first monomer inside the dimer, both 0 if charges were "
              "conserved per molecule):", "",
              "| pair | orientation | teacher | right sign > 8 Å | E_int 12 Å (meV) | E_int 25 Å (meV) "
              f"| r_min (Å) | E_min (meV) | MAE > 5 Å (meV) | E_int {SO3LR_FAR:.0f} Å (meV) "
              f"| q(first) {SO3LR_FAR:.0f} Å (e) |", "|---" * 11 + "|"]
    for c, p, m in zip(curves, preds, per_scan):
        lines.append(f"| {m['pair']} | {m['orientation']} | {'bound' if m['bound'] else 'repulsive'} | "
                     f"{m['sign_beyond_8']:.2f} | {m['e_12']:+.2f} / {m['ref_e_12']:+.2f} | "
                     f"{p[-1] * 1e3:+.3f} / {c['ref'][-1] * 1e3:+.3f} | {m['r_min']:.1f} / {m['ref_r_min']:.1f} | "
                     f"{m['e_min']:.1f} / {m['ref_e_min']:.1f} | {m['mae_beyond_5']:.2f} | {m['e_far']:+.3f} | "
                     f"{m['q_first_far']:+.4f} |")
    for m, d in zip(per_scan, shifted):
        m["less_separated"] = d
    return per_scan, "\n".join(lines)


SO3LR_TRAINED = "SO3LR (trained; one charge per frame)"
SO3LR_TRAINED_DIR = "SO3LR_trained"
SO3LR_TRAINED_MU = "SO3LR (trained +mu; one charge per frame)"
SO3LR_TRAINED_MU_DIR = "SO3LR_trained_mu"


def so3lr_r_max_lr() -> float:
    """The long-range cutoff (Å) of both SO3LR contestants: the Coulomb switch starts ``SO3LR_MARGIN`` beyond
    the largest scanned separation."""
    return float(round((max(SEPARATIONS) + SO3LR_MARGIN) / SO3LR_CUTON, 6))


def demo_splits() -> tuple[list[Atoms], list[Atoms]]:
    """The demo data's training and validation frames (``info['split']``), what ``muse_ff.training.train``
    uses for the other contestants (``data.split_key: split``)."""
    from muse_ff.training.data import read_frames

    frames = read_frames([str(demo_data())])
    return ([a for a in frames if a.info.get("split") == "train"],
            [a for a in frames if a.info.get("split") == "valid"])


def run_so3lr_trained(curves: list[dict], out: Path, seed: int, epochs: int | None, dipole: bool = False) -> dict:
    """Train (or reuse) SO3LR for ``seed`` in ``out/SO3LR_trained/seed<k>/`` and evaluate it on the scans
    (predictions kept in ``predictions.json`` there); returns the mean :func:`shape` metrics over scans, with the
    separated-limit diagnostic (E_int at ``SO3LR_FAR`` Å, meV; the first monomer's charge inside the dimer) and the
    run's training summary. ``dipole``: trained on the dipole labels too (``OUT/SO3LR_trained_mu/``), with
    :func:`muse_ff.baselines.so3lr.matched_dipole_weight` of ``DIPOLE_WEIGHT`` on the training frames."""
    from muse_ff.baselines.so3lr import TRAINING_DEFAULTS, matched_dipole_weight, train_so3lr, trained_so3lr_calculator

    folder = out / (SO3LR_TRAINED_MU_DIR if dipole else SO3LR_TRAINED_DIR) / f"seed{seed}"
    r_max_lr = so3lr_r_max_lr()
    train, valid = demo_splits()
    extra = {"dipole_weight": matched_dipole_weight(train, DIPOLE_WEIGHT)} if dipole else {}
    run = train_so3lr(train, valid, folder / "run", seed=seed, threads=1, r_max_lr=r_max_lr,
                      epochs=TRAINING_DEFAULTS["epochs"] if epochs is None else epochs, **extra)
    cache = folder / "predictions.json"
    keys = [[c["pair"], c["orientation"], [float(r) for r in c["separation"]]] for c in curves]
    kept = json.loads(cache.read_text()) if cache.exists() else {}
    if kept.get("keys") == keys and kept.get("far") == SO3LR_FAR and kept.get("r_max_lr") == r_max_lr:
        preds, separated, t_eval = [np.array(p) for p in kept["pred"]], kept["separated"], kept["eval_time_s"]
    else:
        t1 = time.time()
        calc = trained_so3lr_calculator(folder / "run", r_max_lr=r_max_lr)
        preds = [so3lr_interaction(calc, c["frames"]) for c in curves]
        separated = []
        for c in curves:
            n = int(c["frames"][0].info["n_first"])
            u = c["frames"][-1].positions[n] - c["frames"][-2].positions[n]
            separated.append(so3lr_separated(calc, c["frames"][-1], u / np.linalg.norm(u)))
        t_eval = round(time.time() - t1, 1)
        cache.write_text(json.dumps({"keys": keys, "far": SO3LR_FAR, "r_max_lr": r_max_lr, "dtype": "float64",
                                     "weights": "best", "pred": [p.tolist() for p in preds],
                                     "separated": separated, "eval_time_s": t_eval}, indent=1))
    per_scan = [shape(p, c["ref"], c["separation"]) for c, p in zip(curves, preds)]
    bound = [m for m in per_scan if m["bound"]]
    mean = {k: float(np.mean([m[k] for m in per_scan])) for k in per_scan[0] if k != "bound"}
    for k in ("dr_min", "r_min", "e_min"):
        mean[f"{k}_bound"] = _mean([m[k] for m in bound])
    # diagnostic (not a contestant): the curves less their separated limit, what charges conserved per molecule
    # would remove
    less = [metrics(p - far[0], c["ref"], c["separation"]) for c, p, far in zip(curves, preds, separated)]
    for k in ("mae_beyond_5", "sign_beyond_8", "err_12"):
        mean[f"less_far_{k}"] = float(np.mean([m[k] for m in less]))
    mean["e_far"] = float(np.mean([f[0] for f in separated]) * 1e3)
    mean["abs_e_far"] = float(np.mean([abs(f[0]) for f in separated]) * 1e3)
    mean["abs_q_first_far"] = float(np.mean([abs(f[1]) for f in separated]))
    mean["train_time_s"] = run["train_time_s"]  # of the run that trained it (a reused run: its own time)
    mean["eval_time_s"] = t_eval
    mean["best_epoch"] = run["best_epoch"]
    mean["valid_energy_mae"] = (run["best_valid"] or {}).get("energy_mae_meV_per_atom", float("nan"))
    mean["valid_forces_mae"] = (run["best_valid"] or {}).get("forces_mae_meV_per_A", float("nan"))
    if dipole:
        mean["valid_dipole_mae"] = (run["best_valid"] or {}).get("dipole_mae_me_A", float("nan"))
        mean["dipole_weight"] = run["config"]["TRAINING"]["dipole_weight"]
    mean["params"] = run["params"]
    return mean


def _mean(values) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


def so3lr_trained_shape_table(runs: list[dict], curves: list[dict], name: str = SO3LR_TRAINED) -> list[str]:
    """Markdown lines: the trained SO3LR's curve shape, separated limit and cost, mean ± std over seeds, with the
    teacher's values."""

    def stat(key: str, fmt: str = ".2f") -> str:
        v = np.array([r[key] for r in runs], dtype=float)
        if np.isnan(v).any():
            return "n/a"
        return f"{v.mean():{fmt}} ± {v.std(ddof=1) if len(v) > 1 else 0.0:{fmt}}"

    teacher = [shape(c["ref"], c["ref"], c["separation"]) for c in curves]
    bound = [t for t in teacher if t["bound"]]
    return [f"{name}: shape of the curves and cost, mean ± std over {len(runs)} seed(s) (means over scans; "
            f"r_min, |Δr_min| and E_min over the {len(bound)} scans whose teacher curve has a minimum; E_int and "
            f"q(first) at {SO3LR_FAR:.0f} Å: the separated limit, 0 for charges conserved per molecule; valid: the "
            f"best epoch's validation MAE as so3krates-torch reports it):", "",
            "| model | E_int 12 Å (meV) | abs. Δr_min (Å) | r_min (Å) | E_min (meV) "
            f"| abs. E_int {SO3LR_FAR:.0f} Å (meV) | abs. q(first) {SO3LR_FAR:.0f} Å (e) | valid E (meV/atom) "
            "| valid F (meV/Å) | train s | eval s | MAE > 5 Å less E_int(far) (meV) | right sign > 8 Å, less "
            "| abs. error 12 Å, less (meV) |", "|---" * 14 + "|",
            f"| {name} | {stat('e_12')} | {stat('dr_min_bound')} | {stat('r_min_bound')} | "
            f"{stat('e_min_bound', '.1f')} | {stat('abs_e_far', '.3f')} | {stat('abs_q_first_far', '.4f')} | "
            f"{stat('valid_energy_mae')} | {stat('valid_forces_mae', '.1f')} | {stat('train_time_s', '.0f')} | "
            f"{stat('eval_time_s', '.0f')} | {stat('less_far_mae_beyond_5')} | {stat('less_far_sign_beyond_8')} | "
            f"{stat('less_far_err_12')} |",
            f"| teacher | {np.mean([t['e_12'] for t in teacher]):+.2f} | 0 | "
            f"{_mean([t['r_min'] for t in bound]):.2f} | {_mean([t['e_min'] for t in bound]):.1f} | 0 | 0 "
            "| | | | | | | |", "",
            f"'less E_int(far)': the curves less the model's E_int at {SO3LR_FAR:.0f} Å (a diagnostic, not a "
            "contestant: a simulation cannot subtract it)."]


def train_one(name: str, seed: int, out: Path, epochs: int | None) -> Path:
    from muse_ff.training.run import train

    folder = out / name.replace("(", "_").replace(")", "").replace("+", "_") / f"seed{seed}"
    if (folder / "model.pt").exists():
        return folder / "model.pt"
    cfg = demo_config(MODELS[name], demo_data(), folder, epochs)
    cfg["training"]["seed"] = seed
    if "+Eint" in name:
        cfg["data"]["interaction_key"] = "interaction_energy"
        cfg["training"]["loss"] = {**cfg["training"]["loss"], "interaction": INTERACTION_WEIGHT}
    if name.endswith("+mu"):
        cfg["training"]["loss"] = {**cfg["training"]["loss"], "dipole": DIPOLE_WEIGHT}
    return train(cfg, force=True, progress=False).model_path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=None, help="default: the demo's 150")
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--pairs", nargs="+", default=list(PAIRS))
    ap.add_argument("--orientations", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="one orientation of one pair")
    ap.add_argument("--so3lr", action="store_true", help=f"also evaluate {SO3LR} (so3krates-torch)")
    ap.add_argument("--so3lr-trained", action="store_true", help=f"also train and evaluate {SO3LR_TRAINED}")
    ap.add_argument("--so3lr-trained-mu", action="store_true",
                    help=f"also train and evaluate {SO3LR_TRAINED_MU}")
    ap.add_argument("--only", choices=["so3lr", "so3lr-trained", "so3lr-trained-mu"], default=None,
                    help=f"only {SO3LR} (no training, results in OUT/dimer_tails_so3lr.{{md,json}}), only "
                         f"{SO3LR_TRAINED} (--seeds seeds, results in OUT/dimer_tails_so3lr_trained.{{md,json}}) "
                         f"or only {SO3LR_TRAINED_MU} (OUT/dimer_tails_so3lr_trained_mu.{{md,json}}, rewritten "
                         f"after each seed)")
    args = ap.parse_args(argv)
    from muse_ff import load_model

    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    curves = scans(args.pairs[:1] if args.quick else args.pairs, 1 if args.quick else args.orientations)
    print(f"{len(curves)} teacher scans in {time.time() - t0:.0f} s", flush=True)
    if args.so3lr or args.only == "so3lr":
        per_scan, table = run_so3lr(curves, args.out)
        print(table)
        (args.out / "dimer_tails_so3lr.md").write_text(table + "\n")
        (args.out / "dimer_tails_so3lr.json").write_text(json.dumps(
            {"contestant": SO3LR, "per_scan": per_scan, "args": vars(args)}, default=str, indent=1))
        if args.only == "so3lr":
            return 0
    results: dict[str, list[dict]] = {}
    ref12 = float(np.mean([metrics(c["ref"], c["ref"], c["separation"])["ref_12"] for c in curves]))
    ref25 = float(np.mean([metrics(c["ref"], c["ref"], c["separation"])["ref_25"] for c in curves]))
    stem = {"so3lr-trained": "dimer_tails_so3lr_trained",
            "so3lr-trained-mu": "dimer_tails_so3lr_trained_mu"}.get(args.only, "dimer_tails")

    def report(final: bool) -> None:
        keys = ("mae_beyond_5", "mae_beyond_8", "sign_beyond_8", "err_12", "err_25")
        lines = [f"held-out pairs {', '.join(sorted({c['pair'] for c in curves}))}: {len(curves)} scans; teacher "
                 f"mean |E_int| at 12 Å {ref12:.2f} meV, at 25 Å {ref25:.3f} meV; mean ± std over the seeds that "
                 f"finished (of {args.seeds})" + ("" if final else "; written before all had finished"),
                 "", "| model | seeds | MAE > 5 Å (meV) | MAE > 8 Å (meV) | right sign > 8 Å "
                 "| abs. error 12 Å (meV) | abs. error 25 Å (meV) |", "|---|---|---|---|---|---|---|"]
        for name, runs in results.items():
            cells = []
            for k in keys:
                v = np.array([r[k] for r in runs])
                cells.append(f"{v.mean():.2f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.2f}")
            lines.append(f"| {name} | {len(runs)} | " + " | ".join(cells) + " |")
        for name in (SO3LR_TRAINED, SO3LR_TRAINED_MU):
            if name in results:
                lines += ["", *so3lr_trained_shape_table(results[name], curves, name)]
        text = "\n".join(lines)
        if final:
            print(text)
        (args.out / f"{stem}.md").write_text(text + "\n")
        (args.out / f"{stem}.json").write_text(json.dumps({"results": results, "ref_12": ref12, "ref_25": ref25,
                                                           "backbone": BACKBONE, "args": vars(args),
                                                           "complete": final}, default=str, indent=1))

    trained = [(SO3LR_TRAINED, False, args.so3lr_trained or args.only == "so3lr-trained"),
               (SO3LR_TRAINED_MU, True, args.so3lr_trained_mu or args.only == "so3lr-trained-mu")]
    for label, dipole, wanted in trained:
        if not wanted:
            continue
        for seed in range(args.seeds):
            t1 = time.time()
            mean = run_so3lr_trained(curves, args.out, seed, args.epochs, dipole=dipole)
            results.setdefault(label, []).append(mean)
            print(f"{label} seed {seed}: " + ", ".join(f"{k} {v:.4g}" for k, v in mean.items()
                                                       if isinstance(v, float))
                  + f"  ({time.time() - t1:.0f} s)", flush=True)
            if args.only in ("so3lr-trained", "so3lr-trained-mu"):
                report(final=False)
    for name in ([] if args.only in ("so3lr-trained", "so3lr-trained-mu") else args.models):
        for seed in range(args.seeds):
            t1 = time.time()
            model = load_model(train_one(name, seed, args.out, args.epochs)).eval()
            per_scan = [metrics(interaction(model, c["frames"]), c["ref"], c["separation"]) for c in curves]
            mean = {k: float(np.mean([m[k] for m in per_scan])) for k in per_scan[0]}
            results.setdefault(name, []).append(mean)
            print(f"{name} seed {seed}: " + ", ".join(f"{k} {v:.2f}" for k, v in mean.items())
                  + f"  ({time.time() - t1:.0f} s)", flush=True)
    report(final=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
