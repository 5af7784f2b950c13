"""One energy + forces call of a large system through an exported MuSE model (issue #17 item 6: a single-rank
exported run of >= 100k atoms), against the Python model, each in a fresh process with its peak memory.

Graphite (periodic, AB-stacked) of about ``--atoms`` atoms; MuSE(PaiNN ``--features`` x 2) with two default
coarse levels, float32, ``--threads`` torch threads. ``export``: ``muse export --format torchscript`` bound to
the structure (export time reported: topology + TorchScript), then ``forward(positions, cell, pbc)`` with its
own neighbour list and autograd forces. ``python``: ``MuSECalculator`` on the same structure.

    python benchmarks/export_large.py --atoms 100000 --features 16
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _graphite(n_atoms: int):
    import importlib.util

    spec = importlib.util.spec_from_file_location("speed", Path(__file__).with_name("speed.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.graphite(n_atoms)


def _one(mode: str, n_atoms: int, features: int, threads: int) -> dict:
    import warnings

    import numpy as np
    import torch

    warnings.filterwarnings("ignore")
    torch.set_num_threads(threads)
    from muse_ff import MuSECalculator, build_model

    torch.manual_seed(0)
    model = build_model({"backbone": {"name": "painn", "features": features, "layers": 2, "num_basis": 8},
                         "levels": [{}, {}]}).eval()
    atoms = _graphite(n_atoms)
    atoms.rattle(0.01, seed=1)
    out = {"mode": mode, "atoms": len(atoms)}
    if mode == "export":
        import vesin_torch  # noqa: F401

        from muse_ff.export import export_model

        path = Path(tempfile.mkdtemp()) / "m.ts"
        t = time.perf_counter()
        export_model(model, path, structure=atoms, format="torchscript")
        out["export_s"] = time.perf_counter() - t
        scripted = torch.jit.load(str(path))
        cell, pbc = torch.tensor(atoms.cell.array), torch.tensor(atoms.pbc)
        times = []
        for _ in range(4):  # TorchScript's profiling executor optimises over its first calls: keep the best later
            pos = torch.tensor(atoms.positions, dtype=torch.float64, requires_grad=True)
            t = time.perf_counter()
            energy = scripted(pos, cell, pbc)
            forces = -torch.autograd.grad(energy, pos)[0]
            times.append(time.perf_counter() - t)
        out["first_call_s"], out["call_s"] = times[0], min(times[2:])
        out["energy"] = float(energy)
        out["fmax"] = float(forces.abs().max())
    else:
        atoms.calc = MuSECalculator(model)
        times = []
        for _ in range(4):  # the first call also builds the coarse topology
            atoms.calc.reset()
            t = time.perf_counter()
            out["energy"] = float(atoms.get_potential_energy())
            out["fmax"] = float(np.abs(atoms.get_forces()).max())
            times.append(time.perf_counter() - t)
        out["first_call_s"], out["call_s"] = times[0], min(times[2:])
    out["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--atoms", type=int, default=100000)
    p.add_argument("--features", type=int, default=16)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--modes", nargs="+", default=["export", "python"], choices=["export", "python"])
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(_one(args.one, args.atoms, args.features, args.threads)))
        return 0
    rows = []
    for mode in args.modes:
        cmd = [sys.executable, __file__, "--one", mode, "--atoms", str(args.atoms), "--features",
               str(args.features), "--threads", str(args.threads)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            print(f"{mode}: failed\n{res.stderr[-3000:]}")
            continue
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    if len(rows) == 2:
        print(f"energy difference exported - python: {rows[0]['energy'] - rows[1]['energy']:.3e} eV; "
              f"time ratio {rows[0]['call_s'] / rows[1]['call_s']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
