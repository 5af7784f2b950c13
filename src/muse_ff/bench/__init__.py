"""The MuSE benchmarks: what a multiscale model captures that a short-range backbone misses.

Each benchmark trains the plain backbone (PaiNN, ``levels: []``) and MuSE(PaiNN) (two coarse levels) on the
same teacher data with the same budget (:func:`muse_ff.bench.common.train_pair`), compares both with the
teacher, and writes tables (rich, ``table.md``, ``results.json``) and plots into an output directory.

- :mod:`~muse_ff.bench.graphene`: molecule-graphene binding curves and lateral scans (GFN1-xTB)
- :mod:`~muse_ff.bench.folding`: chignolin MD observables (Amber14 + GBn2)
- :mod:`~muse_ff.bench.hessian`: harmonic frequencies from autograd Hessians (GFN2-xTB FD Hessians)
- :mod:`~muse_ff.bench.speed`: time per MD step of each model next to the teacher's
- :mod:`~muse_ff.bench.backbones`: PaiNN, MACE and SO3krates, plain and as MuSE(backbone), on the long-range
  dimers (GFN2-xTB) with one budget
- :mod:`~muse_ff.bench.nonlocal_chains`: cumulene twist energies and push-pull polyene couplings (GFN2-xTB),
  trained on short chains and tested on longer ones, every contestant over seeds

Modes: ``quick`` (tiny training, few frames: smoke tests), ``default`` (sized for 2 CPU cores),
``full`` (larger models and longer training, for a GPU machine).
"""

#: benchmark name -> module with ``run(out, mode, ...)``
BENCHMARKS: dict[str, str] = {
    "graphene": "muse_ff.bench.graphene",
    "folding": "muse_ff.bench.folding",
    "hessian": "muse_ff.bench.hessian",
    "speed": "muse_ff.bench.speed",
    "backbones": "muse_ff.bench.backbones",
    "nonlocal": "muse_ff.bench.nonlocal_chains",
}
