"""Analysis of trained models: error metrics against labels, parity plots, harmonic vibrations."""

from muse_ff.analysis.metrics import Predictions, evaluate_frames
from muse_ff.analysis.vibrations import HarmonicAnalysis, harmonic_analysis

__all__ = ["HarmonicAnalysis", "Predictions", "evaluate_frames", "harmonic_analysis"]
