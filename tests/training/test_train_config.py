import pytest

from muse_ff.config import ConfigError
from muse_ff.training.config import load_train_config, parse_train_config


def test_unknown_training_key_is_named_with_allowed_keys():
    with pytest.raises(ConfigError, match=r"training\.epoch: unknown key; allowed: .*'epochs'"):
        parse_train_config({"data": {"train": "x.extxyz"}, "training": {"epoch": 3}})


def test_ill_typed_value_names_the_key():
    with pytest.raises(ConfigError, match=r"training\.lr: Input should be a valid number"):
        parse_train_config({"data": {"train": "x.extxyz"}, "training": {"lr": "fast"}})


def test_bad_choice_lists_allowed_values():
    with pytest.raises(ConfigError, match=r"training\.schedule: .*'plateau', 'cosine' or 'constant'"):
        parse_train_config({"data": {"train": "x.extxyz"}, "training": {"schedule": "linear"}})


def test_missing_labels_choice_is_validated():
    with pytest.raises(ConfigError, match=r"data\.missing_labels: .*'error' or 'energy_only'"):
        parse_train_config({"data": {"train": "x.extxyz", "missing_labels": "ignore"}})


def test_missing_train_file_is_reported():
    with pytest.raises(ConfigError, match=r"data\.train: required key is missing"):
        parse_train_config({"data": {}})


def test_model_section_errors_name_the_model_key():
    with pytest.raises(ConfigError, match=r"model\.levels\.0\.ratoi: unknown key"):
        parse_train_config({"data": {"train": "x"}, "model": {"levels": [{"ratoi": 4}]}})


def test_unknown_section_is_rejected():
    with pytest.raises(ConfigError, match=r"optimizer: unknown key; allowed: \['data', 'model', 'training'\]"):
        parse_train_config({"data": {"train": "x"}, "optimizer": {}})


def test_all_loss_weights_zero_is_rejected():
    with pytest.raises(ConfigError, match="at least one loss weight"):
        parse_train_config({"data": {"train": "x"}, "training": {"loss": {"energy": 0, "forces": 0, "stress": 0}}})


def test_yaml_paths_are_relative_to_the_file(tmp_path):
    (tmp_path / "c.yaml").write_text("data:\n  train: sub/a.extxyz\n  valid: [b.extxyz]\n")
    cfg = load_train_config(tmp_path / "c.yaml")
    assert cfg.data.train == str(tmp_path / "sub/a.extxyz")
    assert cfg.data.valid == [str(tmp_path / "b.extxyz")]
    assert cfg.training.loss.energy > 0 and cfg.data.energy_key == "REF_energy"
