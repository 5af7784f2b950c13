"""Adapters to third-party pretrained models used as baselines (zero-shot peers) in the benchmarks.

They wrap the other package's own loader and calculator: their model files are never read by
:mod:`muse_ff.io.serialization`, which only loads MuSE's safe (plain-data) files.
"""
