"""Analysis of trained models: error metrics against labels, parity plots, harmonic vibrations, and the
physical quantities of fragments (interaction and binding energies)."""

from muse_ff.analysis.metrics import Predictions, evaluate_frames
from muse_ff.analysis.quantities import binding_energies, interaction_energies, interaction_energy
from muse_ff.analysis.vibrations import HarmonicAnalysis, harmonic_analysis, wavenumbers_cm1

__all__ = ["HarmonicAnalysis", "Predictions", "binding_energies", "evaluate_frames", "harmonic_analysis",
           "interaction_energies", "interaction_energy", "wavenumbers_cm1"]
