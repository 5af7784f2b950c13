import pytest
from ase.io import write
from tiny_data import water_dimers


@pytest.fixture(scope="session")
def dimer_file(tmp_path_factory):
    """30 EMT water dimers with a ``split`` info key (train/valid/test)."""
    path = tmp_path_factory.mktemp("data") / "dimers.extxyz"
    write(path, water_dimers(30))
    return path
