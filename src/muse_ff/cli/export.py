"""``muse export MODEL OUT``: one TorchScript file for an MD engine (see :mod:`muse_ff.export`).

``--format metatomic`` (default) writes a metatomic AtomisticModel, which ASE (metatomic-ase), i-PI, TorchSim
and LAMMPS (``pair_style metatomic``) load; ``--format torchscript`` a module ``forward(positions, cell, pbc)
-> energy`` for engines that pass positions only (OpenMM's TorchForce). A model with coarse levels or charges
is bound to the structure given with ``--structure`` (its elements in order and its bonds; the exported model
refuses any other system). ``--dtype float64`` exports a float32 model in float64.
"""

from __future__ import annotations

import argparse

HELP = "export a model as one TorchScript file for MD engines (metatomic: LAMMPS, i-PI, TorchSim, ASE; OpenMM)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from muse_ff.export import FORMATS

    parser.add_argument("model", help="model file (model.pt)")
    parser.add_argument("output", help="exported file to write (e.g. model-metatomic.pt)")
    parser.add_argument("--format", choices=FORMATS, default="metatomic", help="file format (metatomic)")
    parser.add_argument("--structure", default=None,
                        help="the system the engine will run (any ASE-readable file; last frame), atoms in the "
                             "engine's order: needed for models with coarse levels or charges")
    parser.add_argument("--dtype", choices=("float32", "float64"), default=None,
                        help="precision of the exported model (default: the model's own)")
    parser.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")


def run(args: argparse.Namespace) -> int:
    from muse_ff.export import export_model
    from muse_ff.io.structures import read_structures

    structure = read_structures(args.structure, -1) if args.structure else None
    path = export_model(args.model, args.output, structure=structure, format=args.format, overwrite=args.overwrite,
                        dtype=args.dtype)
    bound = f", bound to {len(structure)} atoms of {args.structure}" if structure is not None else ""
    print(f"wrote {path} ({args.format}{bound})")
    return 0
