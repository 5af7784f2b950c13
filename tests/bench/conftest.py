from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[2] / "data"


@pytest.fixture(scope="module")
def data_dir() -> Path:
    if not (DATA / "molecule-graphene").is_dir():
        pytest.skip("the repository's data/ folder is not available")
    return DATA


@pytest.fixture(autouse=True)
def one_thread():
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
