"""Data-parallel training (DDP) with two CPU processes (gloo) agrees with a single process."""

import json
import os
import subprocess
import sys

import torch
import yaml
from ase.io import write

from muse_ff.training import train


def test_two_process_ddp_matches_single_process(tmp_path, make_config, make_dimers):
    # every frame has 6 atoms and the global batch (4) splits evenly, so the DDP gradient (mean over the
    # ranks of per-rank means) equals the single-process one; no shuffling, same seed
    frames = make_dimers(20, seed=5, splits=False)
    write(tmp_path / "train.extxyz", frames[:16])
    write(tmp_path / "valid.extxyz", frames[16:])
    cfg = make_config(tmp_path / "train.extxyz", tmp_path / "ddp", epochs=2, batch_size=4)
    cfg["data"] = {"train": str(tmp_path / "train.extxyz"), "valid": str(tmp_path / "valid.extxyz")}
    (tmp_path / "ddp.yaml").write_text(yaml.safe_dump(cfg))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, "-m", "muse_ff.cli.main", "train", str(tmp_path / "ddp.yaml"),
                           "--devices", "2", "--accelerator", "cpu", "--no-progress"],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert summary["world_size"] == 2
    prints = summary["rank_fingerprints"]
    assert len(prints) == 2 and prints[0] == prints[1]  # ranks end with identical weights

    single = train(dict(cfg, training=dict(cfg["training"], output_dir=str(tmp_path / "single"))),
                   devices=1, accelerator="cpu", progress=False)
    a = torch.load(tmp_path / "ddp" / "last_model.pt", weights_only=True)["state_dict"]
    b = torch.load(single.output_dir / "last_model.pt", weights_only=True)["state_dict"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)
