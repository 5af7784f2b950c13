"""Issue #13 item 12 (loading): a bad model file is one sentence naming the file and the problem.

Were: an empty file an ``IndexError`` inside the error handler, random bytes "objects other than plain
data" (or "pop from empty list"), weights of the wrong shape a ``load_state_dict`` RuntimeError listing
every tensor.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import molecule
from ase.io import write

from muse_ff import ModelFileError, build_model, load_model, save_model
from muse_ff.cli.main import main
from muse_ff.errors import MuseError
from muse_ff.io.serialization import model_payload
from muse_ff.testing.conformance import SMALL_PAINN


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model({"backbone": SMALL_PAINN, "species": ["H", "O"], "dtype": "float64"})


def test_empty_model_file_says_it_is_empty(tmp_path):
    path = tmp_path / "m.pt"
    path.write_bytes(b"")
    with pytest.raises(ModelFileError, match=r"m\.pt: not a readable MuSE model file: the file is empty"):
        load_model(path)


@pytest.mark.parametrize("seed", range(8))
def test_random_bytes_are_not_called_unsafe_objects(tmp_path, seed):
    path = tmp_path / "m.pt"
    path.write_bytes(np.random.default_rng(seed).bytes(2000))
    with pytest.raises(ModelFileError) as err:
        load_model(path)
    message = str(err.value)
    assert "not a readable MuSE model file" in message and "zip archives written by torch.save" in message
    assert "objects other than plain data" not in message and "\n" not in message


def test_zip_with_its_end_cut_off_is_called_truncated(model, tmp_path):
    path = tmp_path / "m.pt"
    save_model(model, path)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ModelFileError, match="truncated or corrupt.*it ends early"):
        load_model(path)


def test_directory_is_not_a_model_file(tmp_path):
    with pytest.raises(ModelFileError, match="it is a directory"):
        load_model(tmp_path)


def test_wrong_shape_weights_name_the_first_mismatched_parameter(model, tmp_path):
    payload = model_payload(model)
    names = list(payload["state_dict"])
    second = names[1]
    payload["state_dict"][second] = torch.zeros(7, 3, dtype=torch.float64)
    payload["state_dict"][names[-1]] = torch.zeros(5, dtype=torch.float64)  # a later one, not reported
    path = tmp_path / "m.pt"
    torch.save(payload, path)
    with pytest.raises(ModelFileError) as err:
        load_model(path)
    expected = list(model.state_dict()[second].shape)
    assert str(err.value) == (f"{path}: the file's weights do not match its config: parameter {second!r} has "
                              f"shape [7, 3] in the file, but {expected} in the model its config builds")


def test_config_of_another_model_is_a_mismatch_not_a_traceback(model, tmp_path):
    payload = model_payload(model)
    payload["config"]["backbone"]["features"] = 2 * payload["config"]["backbone"]["features"]
    path = tmp_path / "m.pt"
    torch.save(payload, path)
    with pytest.raises(ModelFileError, match="weights do not match its config: parameter"):
        load_model(path)


@pytest.mark.parametrize("field, value, match", [
    ("state_dict", [1, 2], "'state_dict' is not a mapping of parameter names to tensors"),
    ("state_dict", {"w": 1.0}, "'state_dict' is not a mapping of parameter names to tensors"),
    ("config", "painn", "'config' is not a mapping"),
    ("config", {"backbone": {"name": "no-such-backbone"}}, "config is not a valid model config"),
])
def test_damaged_payload_fields_are_model_file_errors(model, tmp_path, field, value, match):
    payload = model_payload(model)
    payload[field] = value
    path = tmp_path / "m.pt"
    torch.save(payload, path)
    with pytest.raises(ModelFileError, match=match):
        load_model(path)


def test_model_file_error_is_a_muse_error():
    assert issubclass(ModelFileError, MuseError) and issubclass(ModelFileError, ValueError)


@pytest.mark.parametrize("content", [b"", b"\x80\x02random", None])
def test_muse_eval_reports_a_bad_model_file_in_one_line(tmp_path, capsys, content, model):
    data = tmp_path / "d.extxyz"
    atoms = molecule("H2O")
    atoms.info["REF_energy"] = -1.0
    write(data, atoms)
    path = tmp_path / "m.pt"
    if content is None:  # wrong-shape weights
        payload = model_payload(model)
        name = next(iter(payload["state_dict"]))
        payload["state_dict"][name] = torch.zeros(1)
        torch.save(payload, path)
    else:
        path.write_bytes(content)
    assert main(["eval", str(path), str(data)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"muse eval: error: {path}: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
