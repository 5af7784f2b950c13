"""Issue #14, devices: ``MuSECalculator(model, device=...)`` with a device that is not there (``cuda`` without
CUDA, a GPU index beyond those there are, MPS elsewhere) or not a device name is one sentence
(:class:`~muse_ff.devices.DeviceError`, a ``ValueError``) from the constructor, before the model is read; it
was a traceback from deep inside ``Module.to`` (``Torch not compiled with CUDA enabled``) or ``torch.device``."""

from __future__ import annotations

import pytest
import torch

from muse_ff import MuSECalculator, build_model
from muse_ff.devices import DeviceError


@pytest.fixture
def model():  # fresh each test: the old constructor moved a model it was given to the device
    return build_model({"species": ["H", "O"], "backbone": {"name": "painn", "features": 4, "layers": 1,
                                                             "num_basis": 2}})


def _one_sentence(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg and isinstance(err.value, ValueError)
    return msg


@pytest.mark.parametrize("device", ["cuda", "cuda:0", torch.device("cuda")])
def test_cuda_without_cuda_is_one_sentence(model, monkeypatch, device):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError) as err:
        MuSECalculator(model, device=device)
    msg = _one_sentence(err)
    assert msg.startswith(f"device={str(device)!r} asks for a CUDA GPU") and msg.endswith("use device='cpu'")


def test_a_gpu_index_beyond_the_gpus_there_are(model, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(DeviceError) as err:
        MuSECalculator(model, device="cuda:5")
    assert "device='cuda:5' does not exist: PyTorch sees 2 CUDA GPU(s), cuda:0 to cuda:1" in _one_sentence(err)


def test_mps_where_there_is_none(model, monkeypatch):
    monkeypatch.setattr("muse_ff.devices._mps_available", lambda: False)
    with pytest.raises(DeviceError, match=r"device='mps' asks for Apple's MPS.*use device='cpu'"):
        MuSECalculator(model, device="mps")


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "", None, [0], "meta"])
def test_not_a_device_name(model, device):
    with pytest.raises(DeviceError) as err:
        MuSECalculator(model, device=device)
    msg = _one_sentence(err)
    assert msg.startswith(f"device={device!r} is not") and "use cpu, cuda, cuda:N or mps" in msg


def test_checked_before_the_model_file_is_read(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError, match="asks for a CUDA GPU"):  # not: the file does not exist
        MuSECalculator(tmp_path / "absent.pt", device="cuda")


def test_cpu_still_works(model):
    calc = MuSECalculator(model, device="cpu")
    assert calc.device == torch.device("cpu") and next(calc.model.parameters()).device.type == "cpu"
    assert MuSECalculator(model).device == torch.device("cpu")
