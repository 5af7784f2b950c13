"""Issue #13 item 12 (training part): user errors as one sentence, not tracebacks or silent coercions.

* a diverging run (``TrainingDivergedError``, a RuntimeError) reached the user as a traceback;
* ``cutoff: true`` was read as 1.0 Å (pydantic's lax mode), ``epochs: "3"`` as 3;
* ``summary.json`` (like ``muse eval --json``) could hold ``NaN``, which is not JSON.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import lightning as L
import pytest
import yaml
from ase.io import write

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
from tiny_runs import tiny_config, water_dimers  # noqa: E402

from muse_ff.cli.main import main  # noqa: E402
from muse_ff.config import ConfigError, parse_model_config  # noqa: E402
from muse_ff.training import load_train_config, train  # noqa: E402
from muse_ff.training.config import parse_train_config  # noqa: E402


@pytest.fixture(scope="module")
def frames_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "dimers.extxyz"
    write(path, water_dimers(10))
    return path


def test_a_diverging_run_ends_with_one_sentence_naming_the_learning_rate(frames_file, tmp_path, capsys):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config(frames_file, tmp_path / "run", lr=1e12, grad_clip=None)))
    assert main(["train", str(cfg), "--no-progress", "--accelerator", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("muse train: error:")]
    assert len(lines) == 1
    assert "training diverged at epoch" in lines[0] and "lower training.lr (now 1e+12)" in lines[0]
    assert lines[0].count(". ") == 0  # one sentence


@pytest.mark.parametrize(("section", "value", "key"), [
    ({"cutoff": True}, "a boolean", "model.cutoff"),
    ({"cutoff": "5"}, "a string", "model.cutoff"),
    ({"levels": [{"cutoff": True}]}, "a boolean", "model.levels.0.cutoff"),
    ({"embedding": False}, "a boolean", "model.embedding"),
    ({"backbone": {"name": "painn", "features": True}}, "a boolean", "'features'"),
    ({"species": [True]}, "got True", "model.species"),
])
def test_booleans_and_strings_are_refused_for_numeric_model_settings(section, value, key):
    with pytest.raises(ConfigError, match=rf"{key}.*{value}"):
        parse_model_config(section)


def test_integers_stay_valid_for_float_settings():
    cfg = parse_model_config({"cutoff": 5, "levels": [{"cutoff": 12, "ratio": 4}]})
    assert cfg.cutoff == 5.0 and isinstance(cfg.cutoff, float) and cfg.level_cutoffs() == [5.0, 12.0]


@pytest.mark.parametrize(("training", "message"), [
    ({"lr": True}, r"training\.lr: .*not a boolean"),
    ({"epochs": "3"}, r"training\.epochs: .*not a string"),
    ({"grad_clip": False}, r"training\.grad_clip: .*not a boolean"),
    ({"loss": {"energy": True}}, r"training\.loss\.energy: .*not a boolean"),
])
def test_booleans_and_strings_are_refused_for_numeric_training_settings(training, message):
    with pytest.raises(ConfigError, match=message):
        parse_train_config({"data": {"train": "x.extxyz"}, "training": training})


def test_yaml_numbers_in_exponent_form_are_numbers(tmp_path):
    # PyYAML reads `1e-3` (no dot) as the string "1e-3"; refusing strings must not refuse it
    (tmp_path / "c.yaml").write_text("data: {train: x.extxyz}\nmodel: {cutoff: 5}\n"
                                     "training: {lr: 1e-3, min_lr: 5E-7, epochs: 7}\n")
    cfg = load_train_config(tmp_path / "c.yaml")
    assert (cfg.training.lr, cfg.training.min_lr, cfg.training.epochs, cfg.model.cutoff) == (1e-3, 5e-7, 7, 5.0)


class _LogNaN(L.Callback):
    def on_train_epoch_end(self, trainer, pl_module):
        pl_module.log("odd_metric", float("nan"))


def test_summary_json_is_strict_json(frames_file, tmp_path):
    train(tiny_config(frames_file, tmp_path / "run", epochs=1), progress=False, callbacks=[_LogNaN()])
    text = (tmp_path / "run" / "summary.json").read_text()
    summary = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c} in summary.json"))
    assert "odd_metric" in summary["last_metrics"] and summary["last_metrics"]["odd_metric"] is None


def test_no_checkpoint_of_a_diverging_run_holds_non_finite_weights(tmp_path):
    """Divergence was detected only at the start of the next step, after the epoch's validation and
    checkpoint had seen the weights of the last step; and weights that were huge but finite gave a NaN
    validation loss, which early stopping took as the end of the run: it 'finished', saving a model that
    predicts NaN. Now every step is checked right after the optimiser and a non-finite validation loss is
    divergence too, both before any checkpoint is written."""
    import torch

    from muse_ff.training.errors import TrainingDivergedError

    path = tmp_path / "d.extxyz"
    write(path, [a for a in water_dimers(10) if a.info["split"] == "train"][:4])  # one step per epoch
    cfg = tiny_config(path, tmp_path / "run", lr=1e12, grad_clip=None, epochs=3)
    cfg["data"] = {"train": str(path), "valid_fraction": 0.25, "test_fraction": 0.0}
    with pytest.raises(TrainingDivergedError):
        train(parse_train_config(cfg))
    assert not (tmp_path / "run" / "model.pt").exists()
    for ckpt in (tmp_path / "run" / "checkpoints").glob("*.ckpt"):
        state = torch.load(ckpt, weights_only=True, map_location="cpu")["state_dict"]
        bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
        assert not bad, f"{ckpt.name} holds non-finite {bad[:3]}"
