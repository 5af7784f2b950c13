"""Model configuration: defaults, and errors that name the bad key."""

import pytest

from muse_ff import ConfigError, build_model, parse_model_config


def test_defaults():
    cfg = parse_model_config({})
    assert cfg.backbone.name == "painn" and cfg.levels == [] and cfg.dtype == "float32"
    assert cfg.level_cutoffs() == [5.0]
    two = parse_model_config({"levels": [{}, {}]})
    assert two.level_cutoffs() == [5.0, 10.0, 20.0]


def test_backbone_given_by_name_or_dict_and_species_by_symbol():
    a = parse_model_config({"backbone": "painn", "species": ["O", "H", 6]})
    b = parse_model_config({"backbone": {"name": "painn", "features": 8}})
    assert a.species == [1, 6, 8] and b.backbone.hparams == {"features": 8}


@pytest.mark.parametrize("config, message", [
    ({"bogus": 1}, r"model\.bogus: unknown key"),
    ({"dtype": "float16"}, r"model\.dtype"),
    ({"backbone": "schnet"}, r"unknown backbone 'schnet'.*allowed: \[.*'painn'"),
    ({"backbone": {"name": "painn", "widht": 3}}, r"unknown hyper-parameter 'widht'.*features"),
    ({"levels": [{"ratio": "many"}]}, r"model\.levels\.0\.ratio"),
    ({"levels": [{"cutof": 3}]}, r"model\.levels\.0\.cutof: unknown key"),
    ({"levels": [{"cutoff": 4.0}]}, r"levels\[0\]\.cutoff = 4.0 Å must grow"),
    ({"species": ["Xx"]}, r"unknown element 'Xx'"),
    # backbone settings: checked when the config is read, before anything is built (issue #14)
    ({"levels": [{"backbone": {"name": "painn", "features": 0}}]},
     r"model\.levels\.0\.backbone: backbone hyper-parameter 'features': must be >= 1, got 0"),
    ({"backbone": {"name": "so3krates", "features": 10}}, r"model\.backbone: so3krates backbone: features \(10\) "
                                                          r"must be divisible by heads"),
])
def test_bad_config_raises_naming_the_key(config, message):
    with pytest.raises(ConfigError, match=message):
        build_model(config)


def test_level_sigma_default_lives_in_the_config():
    from muse_ff import build_model
    from muse_ff.config import parse_model_config

    cfg = parse_model_config({"levels": [{}, {"sigma": 1.5}, {"cutoff": 50.0}]})
    assert cfg.level_sigmas() == [2.0, 1.5, 10.0]  # cutoffs 10, 20, 50: default cutoff / 5
    model = build_model({"backbone": {"name": "painn", "features": 8, "layers": 1},
                         "levels": [{}, {"sigma": 1.5}, {"cutoff": 50.0}]})
    assert [lev.sigma for lev in model.levels] == cfg.level_sigmas()
