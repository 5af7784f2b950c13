"""Model files: round trip, atomic writes, and safe, clear failures on bad files."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from ase.build import molecule

from muse_ff import ModelFileError, MuSECalculator, build_model, load_model, save_model
from muse_ff.io.serialization import FORMAT, atomic_write, model_payload


def _energy(model):
    atoms = molecule("CH3OH")
    atoms.calc = MuSECalculator(model)
    return atoms.get_potential_energy(), atoms.get_forces()


@pytest.mark.parametrize("levels", [[], [{}]])
def test_round_trip_gives_identical_predictions(tmp_path, levels):
    torch.manual_seed(3)
    model = build_model({"backbone": {"name": "painn", "features": 8}, "levels": levels,
                         "species": ["H", "C", "O"]})
    model.reference.set(e0=[-13.6, -1000.0, -2000.0], scale=2.0, shift=0.3)
    path = tmp_path / "m.pt"
    save_model(model, path)
    loaded = load_model(path)
    assert loaded.config == model.config and loaded.species == [1, 6, 8]
    e0, f0 = _energy(model)
    e1, f1 = _energy(loaded)
    assert e0 == e1
    np.testing.assert_array_equal(f0, f1)


def test_load_raises_if_file_truncated(small_model, tmp_path):
    path = tmp_path / "m.pt"
    save_model(small_model, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="truncated or corrupt"):
        load_model(path)


def test_load_raises_if_file_foreign(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(ModelFileError, match="not a readable MuSE model"):
        load_model(text)
    other = tmp_path / "weights.pt"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(ModelFileError, match="not a MuSE model file"):
        load_model(other)


def test_load_raises_if_format_version_newer(small_model, tmp_path):
    payload = model_payload(small_model)
    payload["format_version"] = 99
    path = tmp_path / "future.pt"
    torch.save(payload, path)
    with pytest.raises(ModelFileError, match="format version 99"):
        load_model(path)


def test_load_raises_if_file_missing(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "nope.pt")


_EVIL = """
import os, sys, torch
class Evil:
    def __reduce__(self):
        return (os.system, ("echo PWNED > " + sys.argv[2],))
torch.save({"format": "%s", "format_version": 1, "config": {}, "state_dict": Evil()}, sys.argv[1])
""" % FORMAT


@pytest.mark.parametrize("force_unsafe_env", [False, True])
def test_load_refuses_pickled_callables_even_if_env_forces_unsafe_load(tmp_path, force_unsafe_env):
    path, marker = tmp_path / "evil.pt", tmp_path / "pwned"
    subprocess.run([sys.executable, "-c", _EVIL, str(path), str(marker)], check=True)
    env = dict(os.environ)
    if force_unsafe_env:  # what importing mace does to the whole process
        env["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"
    code = ("import sys\nfrom muse_ff import load_model, ModelFileError\n"
            "try:\n    load_model(sys.argv[1])\nexcept ModelFileError as e:\n    print('REFUSED', e)\n")
    out = subprocess.run([sys.executable, "-c", code, str(path)], env=env, capture_output=True, text=True)
    assert "REFUSED" in out.stdout, out.stdout + out.stderr
    assert not marker.exists()


def test_atomic_write_keeps_old_file_when_writer_fails(tmp_path):
    path = tmp_path / "x.bin"
    path.write_text("old")

    def broken(tmp):
        with open(tmp, "w") as fh:
            fh.write("partial")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        atomic_write(path, broken)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.bin"]
