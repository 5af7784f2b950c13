"""Is the device a command asks for there? One sentence before any work, instead of a traceback later.

:func:`check_device` checks a torch device string (``--device`` of ``muse md``, ``muse hessian``,
``muse eval``; the ``device=`` of :class:`~muse_ff.calculator.MuSECalculator`); :func:`check_accelerator`
checks Lightning's ``accelerator``/``devices`` pair (``muse train --accelerator ... --devices ...``). Both
raise :class:`DeviceError`, a :class:`~muse_ff.errors.MuseError` and a ``ValueError``, which the ``muse``
command prints as one line (exit status 2).
"""

from __future__ import annotations

import torch

from muse_ff.errors import MuseError


class DeviceError(MuseError, ValueError):
    """The device asked for does not exist on this machine (or is not a device name)."""


def _why_no_cuda() -> str:
    if torch.version.cuda is None:
        return f"this PyTorch build has no CUDA support (torch {torch.__version__})"
    return "PyTorch finds no CUDA GPU (check the NVIDIA driver and CUDA_VISIBLE_DEVICES)"


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def _named(what: str, value, quote: bool = False) -> str:
    """``what`` with ``value``: ``--device cuda`` (``--device 'cuda'`` with ``quote``) for an option,
    ``device='cuda'`` for a keyword (``what`` ending in ``=``)."""
    if what.endswith("="):
        return what + repr(str(value) if isinstance(value, (str, torch.device)) else value)
    return f"{what} {value!r}" if quote else f"{what} {value}"


def check_device(device: str | torch.device, what: str = "--device") -> torch.device:
    """``device`` as a ``torch.device``, or :class:`DeviceError` if it is not a device name, is a CUDA
    device without CUDA (or beyond the GPUs there are), or is ``mps`` where MPS is not available.

    ``what`` names the setting in the message: an option (``--device``: "--device cuda asks for ...") or,
    ending in ``=``, a keyword (``device=``: "device='cuda' asks for ...").
    """
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise DeviceError(f"{_named(what, device, quote=True)} is not a device: use cpu, cuda, cuda:N or mps") from None
    given, cpu = _named(what, device), _named(what, "cpu")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"{given} asks for a CUDA GPU, but {_why_no_cuda()}: use {cpu}")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise DeviceError(f"{given} does not exist: PyTorch sees {count} CUDA GPU(s), "
                              f"cuda:0 to cuda:{count - 1}")
    elif dev.type == "mps":
        if not _mps_available():
            raise DeviceError(f"{given} asks for Apple's MPS, which this machine or PyTorch build does not "
                              f"offer: use {cpu}")
    elif dev.type != "cpu":
        raise DeviceError(f"{_named(what, device, quote=True)} is not supported here: use cpu, cuda, cuda:N or mps")
    return dev


def _device_ids(devices: int | str | list) -> tuple[int | None, list[int]]:
    """(number of devices asked for, explicit GPU indices) of a Lightning ``devices`` value."""
    if isinstance(devices, bool):
        return None, []
    if isinstance(devices, int):
        return (devices if devices > 0 else None), []
    if isinstance(devices, (list, tuple)):
        return len(devices), [int(d) for d in devices]
    text = str(devices).strip()
    if text.lstrip("-").isdigit():
        n = int(text)
        return (n if n > 0 else None), []
    if text and all(part.strip().isdigit() for part in text.split(",") if part.strip()) and "," in text:
        ids = [int(part) for part in text.split(",") if part.strip()]
        return len(ids), ids
    return None, []  # "auto" or something Lightning will judge


def check_accelerator(accelerator: str, devices: int | str | list = 1) -> None:
    """:class:`DeviceError` when ``accelerator`` (Lightning's name: auto, cpu, gpu, cuda, mps, ...) asks for a
    GPU that is not there, or ``devices`` for more GPUs (or a GPU index) than there are."""
    acc = str(accelerator).lower()
    if acc in ("auto", "cpu"):
        return
    if acc not in ("gpu", "cuda", "mps"):
        try:
            from lightning.pytorch.accelerators import AcceleratorRegistry
        except ModuleNotFoundError:
            return
        known = sorted(set(AcceleratorRegistry.available_accelerators()) | {"auto", "gpu"})
        if acc not in known:
            raise DeviceError(f"--accelerator {accelerator!r} is not an accelerator: use one of {', '.join(known)}")
        return
    mps = acc == "mps" or (acc == "gpu" and not torch.cuda.is_available() and _mps_available())
    if mps:
        if not _mps_available():
            raise DeviceError(f"--accelerator {accelerator} asks for Apple's MPS, which this machine or PyTorch "
                              "build does not offer: use --accelerator cpu")
        count = 1
    else:
        if not torch.cuda.is_available():
            raise DeviceError(f"--accelerator {accelerator} asks for a GPU, but {_why_no_cuda()}: use "
                              "--accelerator cpu (or auto)")
        count = torch.cuda.device_count()
    n, ids = _device_ids(devices)
    bad = [i for i in ids if i >= count]
    if bad:
        raise DeviceError(f"--devices {devices} names GPU {bad[0]}, but PyTorch sees {count} GPU(s) "
                          f"(0 to {count - 1})")
    if n is not None and not ids and n > count:
        raise DeviceError(f"--devices {devices} asks for {n} GPUs per node, but PyTorch sees {count}: use "
                          f"--devices {count} or fewer")
