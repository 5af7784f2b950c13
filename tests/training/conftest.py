"""Tiny labelled datasets for training tests (EMT water dimers: 6 atoms, fast), offered as fixtures.

Helpers are fixtures (``make_dimers``, ``make_config``) rather than an imported module, so this folder works
whatever pytest's import mode and whichever other conftest.py files are collected first. They are defined
in ``tiny_runs.py`` (importable from other test folders too).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from ase.io import write

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tiny_runs import tiny_config, water_dimers  # noqa: E402


@pytest.fixture(scope="session")
def make_dimers():
    """``make_dimers(n, seed=0, splits=True)``: labelled water dimers."""
    return water_dimers


@pytest.fixture(scope="session")
def make_config():
    """``make_config(data, output_dir, **training)``: a seconds-long training config."""
    return tiny_config


@pytest.fixture(scope="session")
def dimer_file(tmp_path_factory):
    """30 EMT water dimers with a ``split`` info key (train/valid/test)."""
    path = tmp_path_factory.mktemp("data") / "dimers.extxyz"
    write(path, water_dimers(30))
    return path
