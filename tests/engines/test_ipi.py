"""i-PI runs an exported MuSE model through its metatomic driver (issue #17, engines).

``i-pi input.xml`` (the server: NVE, 100 steps) and ``i-pi-py_driver -m metatomic -o template=...,model=...``
(the client: the exported metatomic file) talk over a unix socket in ``tmp_path``. i-PI works in atomic
units (Hartree, Bohr); the potential it reports at step 0 must be the Python model's energy.
"""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.build import molecule

from muse_ff import MuSECalculator, build_model
from muse_ff.export import export_model

pytest.importorskip("metatomic.torch")
pytest.importorskip("vesin.metatomic")
try:
    from ipi.utils.units import unit_to_user

    HAVE_IPI = True
except ImportError:
    HAVE_IPI = False

pytestmark = pytest.mark.skipif(not HAVE_IPI, reason="needs i-PI (pip install ipi)")

PAINN = {"name": "painn", "features": 16, "layers": 2, "num_basis": 8}
STEPS = 100
TIMEOUT = 120.0
BOX = 30.0  # Å: i-PI always has a cell (its metatomic driver makes every axis with a nonzero cell periodic)


def _model():
    torch.manual_seed(0)
    cfg = {"backbone": PAINN, "species": [1, 6, 8, 14], "dtype": "float64", "levels": [{"ratio": 4}, {"ratio": 4}]}
    return build_model(cfg).eval()


def _complex():
    """Benzene + water in a 30 Å box (periodic, as i-PI passes it to the driver)."""
    a, b = molecule("C6H6"), molecule("H2O")
    b.translate([0.3, 0.2, 6.0])
    atoms = a + b
    atoms.cell, atoms.pbc = np.eye(3) * BOX, True
    atoms.positions += BOX / 2 - atoms.positions.mean(0)
    return atoms


INPUT = """<simulation verbosity="low" safe_stride="{steps}" sockets_prefix="{prefix}">
  <output prefix="sim">
    <properties stride="1" filename="out" flush="1">[step, time{{femtosecond}}, conserved, potential]</properties>
    <trajectory stride="{steps}" filename="for" format="xyz">forces</trajectory>
  </output>
  <total_steps>{steps}</total_steps>
  <prng><seed>31415</seed></prng>
  <ffsocket name="muse" mode="unix" pbc="false">
    <address>{address}</address>
    <latency>1e-4</latency>
  </ffsocket>
  <system>
    <initialize nbeads="1">
      <file mode="ase" units="angstrom">init.extxyz</file>
      <velocities mode="thermal" units="kelvin">50</velocities>
    </initialize>
    <forces><force forcefield="muse"/></forces>
    <motion mode="dynamics">
      <dynamics mode="nve">
        <timestep units="femtosecond">0.1</timestep>
      </dynamics>
    </motion>
    <ensemble><temperature units="kelvin">50</temperature></ensemble>
  </system>
</simulation>
"""


def _properties(path: Path) -> np.ndarray:
    rows = [line.split() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    return np.array(rows, dtype=float)


def _xyz_frames(path: Path):
    """Frames of an i-PI xyz trajectory (atomic units): [n_frames, n_atoms, 3]."""
    lines = path.read_text().splitlines()
    frames, k = [], 0
    while k < len(lines) and lines[k].strip():
        n = int(lines[k])
        frames.append([[float(x) for x in line.split()[1:4]] for line in lines[k + 2:k + 2 + n]])
        k += n + 2
    return np.array(frames)


def _bin(name):
    exe = Path(sys.executable).with_name(name)
    return str(exe) if exe.exists() else shutil.which(name)


def test_ipi_nve_through_the_metatomic_driver_runs_100_steps_at_the_python_energy(tmp_path):
    model, atoms = _model(), _complex()
    export_model(model, tmp_path / "model.pt", structure=atoms)
    atoms.write(tmp_path / "init.extxyz", format="extxyz")
    address = f"muse{os.getpid()}"
    prefix = str(tmp_path) + "/"
    (tmp_path / "input.xml").write_text(INPUT.format(steps=STEPS, prefix=prefix, address=address))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    logs = {name: open(tmp_path / f"{name}.log", "w") for name in ("server", "driver")}
    server = subprocess.Popen([_bin("i-pi"), "input.xml"], cwd=tmp_path, env=env, stdout=logs["server"],
                              stderr=subprocess.STDOUT)
    driver = None
    try:
        deadline = time.monotonic() + TIMEOUT
        while not (tmp_path / address).exists():  # i-PI binds the socket at startup
            assert server.poll() is None, (tmp_path / "server.log").read_text()
            assert time.monotonic() < deadline, "i-PI did not open its socket"
            time.sleep(0.2)
        driver = subprocess.Popen(
            [_bin("i-pi-py_driver"), "-u", "-S", prefix, "-a", address, "-m", "metatomic",
             "-o", "template=init.extxyz,model=model.pt"],
            cwd=tmp_path, env=env, stdout=logs["driver"], stderr=subprocess.STDOUT)
        server.wait(timeout=max(1.0, deadline - time.monotonic()))
        driver.wait(timeout=30)
    finally:
        for proc in (server, driver):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        for f in logs.values():
            f.close()
    log = (tmp_path / "server.log").read_text() + (tmp_path / "driver.log").read_text()
    assert server.returncode == 0, log
    props = _properties(tmp_path / "sim.out")
    assert props[-1, 0] == STEPS, log  # i-PI ran the 100 steps
    assert np.array_equal(props[:, 0], np.arange(STEPS + 1))
    # step 0 against the Python model on the same structure. i-PI reports atomic units (Hartree, Hartree/Bohr);
    # back to eV with i-PI's own constants, the ones its driver converted with (ASE's Hartree differs by 1e-7)
    ref = atoms.copy()
    ref.calc = MuSECalculator(model)
    e_ref, f_ref = ref.get_potential_energy(), ref.get_forces()
    e_ipi = unit_to_user("energy", "electronvolt", props[0, 3])
    assert abs(e_ipi - e_ref) <= 1e-6 * max(1.0, abs(e_ref)), (e_ipi, e_ref)
    forces = _xyz_frames(tmp_path / "sim.for_0.xyz")
    assert forces.shape == (2, len(atoms), 3)  # steps 0 and 100
    f_ipi = unit_to_user("force", "ev/ang", forces[0])
    np.testing.assert_allclose(f_ipi, f_ref, rtol=1e-6, atol=1e-6)
    # NVE: i-PI's conserved quantity stays (untrained model, 0.1 fs steps)
    assert unit_to_user("energy", "electronvolt", np.ptp(props[:, 2])) < 1e-3
