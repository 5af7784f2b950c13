"""Worker process of tests/reliability/test_fuzz.py: evaluates the fuzzed cases the test sends, one by one.

It runs as a separate process so that a crash (SIGFPE, SIGSEGV, abort, the kernel's OOM kill) or a hang
shows up in the test as a failed example, with the case that caused it, instead of killing pytest. The
test restarts it after a crash.

Protocol: on stdin, requests as length-prefixed (4 bytes, big-endian) pickles of plain dicts; on the
original stdout, one length-prefixed pickled reply per request. Anything the code under test prints goes
to stderr (fd 1 is pointed at fd 2), which the test keeps in a file and shows when the worker dies.
``faulthandler`` writes the Python stack of a fatal signal there too.

Requests (``op``):

* ``structure``: ``model`` (a config dict), ``frames`` (one structure dict: numbers, positions, cell, pbc)
  and ``offsets`` (translations); evaluates the structure and each translated copy with
  :class:`muse_ff.MuSECalculator`.
* ``batch``: ``model`` and several ``frames``; evaluates them as one batch
  (:meth:`MuSEModel.graph_from_atoms` + :func:`energy_and_derivatives`) and each frame alone with the
  calculator.
* ``config``: ``config`` (anything); :func:`muse_ff.build_model`, then the calculator on ``frames``.
* ``cli``: ``model``, ``frames`` and ``argv`` (with ``{model}``, ``{data}``, ``{out}`` placeholders); saves the
  model, writes the frames to an extxyz file and runs :func:`muse_ff.cli.main.main`.

A reply is ``{"results": [...]}`` with, per evaluation, either ``{"energy", "forces", ...}`` or
``{"error": {...}}`` describing the exception (class, its bases, message, where it was raised).
"""

from __future__ import annotations

import contextlib
import faulthandler
import io
import os
import pickle
import struct
import sys
import tempfile
import traceback
import warnings

_REPLY = os.fdopen(os.dup(1), "wb")  # the real stdout, for replies only
os.dup2(2, 1)  # whatever the code under test prints (Python or C) goes to stderr
sys.stdout = sys.stderr
faulthandler.enable()
warnings.simplefilter("ignore")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from ase import Atoms  # noqa: E402

import muse_ff  # noqa: E402
from muse_ff import MuSECalculator, build_model, save_model  # noqa: E402
from muse_ff.physics.derivatives import energy_and_derivatives  # noqa: E402

torch.set_num_threads(1)
_MUSE_DIR = os.path.dirname(os.path.abspath(muse_ff.__file__))
_MODELS: dict[str, object] = {}


def _read() -> dict | None:
    head = sys.stdin.buffer.read(4)
    if len(head) < 4:
        return None
    (size,) = struct.unpack(">I", head)
    return pickle.loads(sys.stdin.buffer.read(size))


def _write(reply: dict) -> None:
    data = pickle.dumps(reply)
    _REPLY.write(struct.pack(">I", len(data)) + data)
    _REPLY.flush()


def describe(err: BaseException) -> dict:
    """What the test needs to judge an exception: class, bases, message and where it was raised."""
    frames = traceback.extract_tb(err.__traceback__)
    origin = frames[-1].filename if frames else ""
    return {
        "type": f"{type(err).__module__}.{type(err).__qualname__}",
        "mro": [f"{c.__module__}.{c.__qualname__}" for c in type(err).__mro__],
        "message": str(err),
        "origin": f"{origin}:{frames[-1].lineno}" if frames else "",
        "in_muse": origin.startswith(_MUSE_DIR),
        "traceback": "".join(traceback.format_exception(type(err), err, err.__traceback__))[-4000:],
    }


def model_for(config: dict):
    key = repr(config)
    if key not in _MODELS:
        torch.manual_seed(0)
        model = build_model(config)
        n = len(model.species)
        model.reference.set(e0=torch.linspace(-1.0, -2.0, n), scale=0.5)
        _MODELS[key] = model.eval()
    return _MODELS[key]


def atoms_of(frame: dict) -> Atoms:
    return Atoms(numbers=frame["numbers"], positions=frame["positions"], cell=frame["cell"], pbc=frame["pbc"])


def evaluate(calc: MuSECalculator, atoms: Atoms) -> dict:
    try:
        atoms.calc = calc
        energy = atoms.get_potential_energy()
        forces = atoms.get_forces()
        return {"energy": float(energy), "forces": np.asarray(forces, dtype=np.float64)}
    except Exception as err:  # judged by the test
        return {"error": describe(err)}


def op_structure(req: dict) -> list[dict]:
    model = model_for(req["model"])
    frame = req["frames"][0]
    out = []
    for offset in [None, *req.get("offsets", [])]:
        atoms = atoms_of(frame)
        if offset is not None:
            atoms.positions = atoms.positions + np.asarray(offset)
        out.append(evaluate(MuSECalculator(model), atoms))
    return out


def op_batch(req: dict) -> list[dict]:
    model = model_for(req["model"])
    frames = [atoms_of(f) for f in req["frames"]]
    try:
        g = model.graph_from_atoms(frames)  # float64 geometry, whatever the model's dtype
        res = energy_and_derivatives(model, g, forces=True)
        batch = {"energy": res["energy"].detach().double().numpy(),
                 "forces": res["forces"].detach().double().numpy()}
    except Exception as err:
        batch = {"error": describe(err)}
    calc = MuSECalculator(model)
    return [batch] + [evaluate(calc, a) for a in frames]


def op_config(req: dict) -> list[dict]:
    try:
        model = model_for(req["config"])
    except Exception as err:
        return [{"error": describe(err), "stage": "build"}]
    calc = MuSECalculator(model)
    return [evaluate(calc, atoms_of(f)) for f in req["frames"]]


def op_cli(req: dict) -> list[dict]:
    from ase.io import read, write

    from muse_ff.cli.main import main

    model = model_for(req["model"])
    with tempfile.TemporaryDirectory() as tmp:
        paths = {"model": os.path.join(tmp, "model.pt"), "data": os.path.join(tmp, "in.extxyz"),
                 "out": os.path.join(tmp, "out.extxyz")}
        save_model(model, paths["model"])
        write(paths["data"], [atoms_of(f) for f in req["frames"]], format="extxyz")
        argv = [a.format(**paths) for a in req["argv"]]
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err):
                code = main(argv)
        except SystemExit as exc:  # argparse
            code = exc.code
        except Exception as exc:
            return [{"error": describe(exc)}]
        energies = None
        if code == 0 and os.path.exists(paths["out"]):
            energies = [a.info.get("MUSE_energy") for a in read(paths["out"], ":")]
        return [{"code": code, "stderr": err.getvalue(), "energies": energies}]


OPS = {"structure": op_structure, "batch": op_batch, "config": op_config, "cli": op_cli}


def main() -> None:
    while (req := _read()) is not None:
        try:
            reply = {"results": OPS[req["op"]](req)}
        except Exception as err:  # a failure of the worker itself (a bug in this file or an escaped error)
            reply = {"worker_error": describe(err)}
        _write(reply)


if __name__ == "__main__":
    main()
