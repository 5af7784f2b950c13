import pytest
import torch

from muse_ff import build_model
from muse_ff.testing.conformance import SMALL_PAINN


@pytest.fixture
def small_model():
    """A small float64 plain PaiNN with non-trivial reference energies."""
    torch.manual_seed(0)
    model = build_model({"backbone": SMALL_PAINN, "dtype": "float64"})
    model.reference.set(e0=torch.linspace(-1.0, -2.0, len(model.species)), scale=0.5, shift=0.1)
    return model.eval()


@pytest.fixture
def small_muse():
    """A small float64 MuSE(PaiNN) with two coarse levels."""
    torch.manual_seed(0)
    model = build_model({"backbone": SMALL_PAINN, "levels": [{"ratio": 4}, {"ratio": 4}], "dtype": "float64"})
    model.reference.set(scale=0.5)
    return model.eval()
