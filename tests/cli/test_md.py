from ase.build import molecule
from ase.io import read, write

from muse_ff.cli.main import main


def test_md_writes_trajectory_and_log(model_file, tmp_path, capsys):
    write(tmp_path / "start.xyz", molecule("CH3OH"))
    traj, log = tmp_path / "md.extxyz", tmp_path / "md.log"
    rc = main(["md", str(model_file), str(tmp_path / "start.xyz"), "--steps", "10", "--interval", "5",
               "--temperature", "100", "--trajectory", str(traj), "--log", str(log), "--no-progress"])
    assert rc == 0
    frames = read(traj, ":")
    assert len(frames) == 3  # steps 0, 5, 10
    assert frames[-1].get_forces().shape == (6, 3)
    assert len(log.read_text().splitlines()) == 4  # header + 3 lines
    assert "final T" in capsys.readouterr().out


def test_md_velocity_verlet_runs(model_file, tmp_path):
    write(tmp_path / "start.xyz", molecule("CH3OH"))
    assert main(["md", str(model_file), str(tmp_path / "start.xyz"), "--integrator", "verlet", "--steps", "4",
                 "--interval", "2", "--trajectory", str(tmp_path / "t.traj"), "--log", str(tmp_path / "l.log"),
                 "--no-progress"]) == 0
    assert len(read(tmp_path / "t.traj", ":")) == 3
