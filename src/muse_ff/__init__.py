"""MuSE: multiscale machine-learning force fields with Soft Coarse-Graining Pooling."""

__version__ = "0.1.0"

from muse_ff.calculator import MuSECalculator
from muse_ff.config import ConfigError, ModelConfig, parse_model_config
from muse_ff.data import Graph, LabelKeys, StructureError, atoms_to_graph
from muse_ff.io.serialization import ModelFileError, load_model, save_model
from muse_ff.nn.model import MuSEModel, build_model

__all__ = [
    "ConfigError", "Graph", "LabelKeys", "ModelConfig", "ModelFileError", "MuSECalculator", "MuSEModel",
    "StructureError", "atoms_to_graph", "build_model", "load_model", "parse_model_config", "save_model",
    "__version__",
]
