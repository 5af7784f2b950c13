"""A real kill: ``muse train`` in a subprocess gets SIGKILL after its first checkpoints, then ``--resume``."""

import os
import signal
import subprocess
import sys
import time

import torch
import yaml

from muse_ff.cli.main import main
from muse_ff.training import train


def test_sigkill_then_resume_matches_uninterrupted_run(dimer_file, tmp_path, make_config):
    cfg = make_config(dimer_file, tmp_path / "killed", epochs=8, checkpoint_every=1, ema_decay=0.9,
                      shuffle=True)
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    cmd = [sys.executable, "-m", "muse_ff.cli.main", "train", str(tmp_path / "cfg.yaml"), "--no-progress",
           "--accelerator", "cpu"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt_dir = tmp_path / "killed" / "checkpoints"
    deadline = time.time() + 300
    while not (ckpt_dir / "epoch0002.ckpt").exists():
        assert proc.poll() is None and time.time() < deadline, "training ended or stalled before epoch 2"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed" / "model.pt").exists()
    for ckpt in ckpt_dir.glob("*.ckpt"):  # atomic writes: every checkpoint on disk is complete
        torch.load(ckpt, weights_only=True)
    start_epoch = torch.load(ckpt_dir / "last.ckpt", weights_only=True)["epoch"]
    assert 1 <= start_epoch < 7  # last.ckpt is written just after epochNNNN.ckpt
    assert main(["train", str(tmp_path / "cfg.yaml"), "--resume", "--no-progress", "--accelerator", "cpu"]) == 0
    full = train(dict(cfg, training=dict(cfg["training"], output_dir=str(tmp_path / "full"))), progress=False)
    a = torch.load(tmp_path / "killed" / "last_model.pt", weights_only=True)["state_dict"]
    b = torch.load(full.output_dir / "last_model.pt", weights_only=True)["state_dict"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)
