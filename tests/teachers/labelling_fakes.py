"""Cheap stand-in teachers for the labelling-pipeline tests (importable by spawned worker processes)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
from ase import Atoms

from muse_ff.teachers.base import Label, Teacher, TeacherError


class HarmonicTeacher(Teacher):
    """E = k/2 sum |r|^2, F = -k r. Settings: ``k``; ``log`` (file: one line per label call, the frame's
    ``info['tag']``); ``die_after`` (exit the process, as a kill would, before the call after that many);
    ``delay`` (seconds each call sleeps, a slow teacher); ``threads`` (accepted and ignored, as the ``muse
    label`` command passes it)."""

    name = "harmonic"
    speed_settings = ("log", "die_after", "delay", "threads")

    def __init__(self, k: float = 2.0, log: str | None = None, die_after: int | None = None,
                 delay: float = 0.0, threads: int = 1):
        super().__init__(k=k, log=log, die_after=die_after, delay=delay, threads=threads)

    def version(self) -> str:
        return "harmonic 1"

    def _calls(self) -> int:
        log = self.settings["log"]
        return len(Path(log).read_text().splitlines()) if log and Path(log).exists() else 0

    def label(self, atoms: Atoms) -> Label:
        die_after = self.settings["die_after"]
        if die_after is not None and self._calls() >= die_after:
            os._exit(137)  # like SIGKILL: no clean-up, no exception handling
        if atoms.info.get("bad"):
            raise TeacherError("SCF not converged (fake)")
        if self.settings["delay"]:
            time.sleep(self.settings["delay"])
        if self.settings["log"]:
            with open(self.settings["log"], "a") as fh:
                fh.write(f"{atoms.info['tag']}\n")
        k = self.settings["k"]
        pos = atoms.positions
        return Label(energy=0.5 * k * float((pos**2).sum()), forces=-k * pos)


def frames(n: int, bad: tuple[int, ...] = ()) -> list[Atoms]:
    """``n`` small random structures tagged 0..n-1; those in ``bad`` make the fake teacher fail."""
    rng = np.random.default_rng(0)
    out = []
    for k in range(n):
        a = Atoms("H2O", positions=rng.normal(size=(3, 3)))
        a.info["tag"] = k
        if k in bad:
            a.info["bad"] = 1
        out.append(a)
    return out
