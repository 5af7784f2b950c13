"""Training: typed config, data and graphs, reference-energy fit, loss, and the Lightning loop.

``muse_ff.training.config``, ``.data``, ``.reference`` and ``.loss`` need only the core dependencies;
``train`` (and ``.module``, ``.callbacks``) need PyTorch Lightning (``pip install 'muse-ff[train]'``).
"""

from muse_ff.training.config import (
           DataConfig,
           LossWeights,
           TrainConfig,
           TrainingConfig,
           load_train_config,
           parse_train_config,
)
from muse_ff.training.reference import ReferenceFit, fit_reference
from muse_ff.training.run import TrainResult, train

__all__ = ["DataConfig", "LossWeights", "ReferenceFit", "TrainConfig", "TrainResult", "TrainingConfig",
           "fit_reference", "load_train_config", "parse_train_config", "train"]
