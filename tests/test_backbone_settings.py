"""Issue #14, backbone settings: one map of backbones (``BACKBONES``: name -> class and typed settings), the
defaults read from the constructors only, every setting validated when the configuration is read (before any
model is built), and the table of docs/BACKBONES.md generated from the same settings."""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

import pytest

import muse_ff.nn.backbones as registry
from muse_ff import ConfigError, build_model, parse_model_config
from muse_ff.nn.backbones import BACKBONES, BackboneSpec, Setting, backbone_class, settings_table

DOC = Path(__file__).resolve().parents[1] / "docs" / "BACKBONES.md"

#: the defaults as they were before the registry (config keys and defaults must not change: saved models and
#: configs that leave a setting out keep meaning the same backbone)
DEFAULTS = {
    "painn": {"features": 64, "layers": 3, "num_basis": 16},
    "mace": {"num_channels": 32, "max_L": 1, "max_ell": 3, "correlation": 3, "num_interactions": 2,
             "num_radial_basis": 8, "num_cutoff_basis": 5, "radial_mlp": [64, 64, 64], "avg_num_neighbors": 10.0,
             "interaction": "RealAgnosticResidualInteractionBlock",
             "interaction_first": "RealAgnosticResidualInteractionBlock", "vector_output": True},
    "so3krates": {"features": 132, "heads": 4, "degrees": [1, 2, 3], "layers": 3, "num_basis": 16,
                  "residual_mlp": True},
}


def test_one_map_of_backbones_with_class_and_settings():
    assert sorted(BACKBONES) == ["mace", "painn", "so3krates"]
    assert not hasattr(registry, "_CLASSES")  # the second, hand-kept map is gone
    for name, spec in BACKBONES.items():
        assert isinstance(spec, BackboneSpec) and spec.name == name and backbone_class(name) is spec.cls
        assert all(isinstance(s, Setting) for s in spec.settings.values())


@pytest.mark.parametrize("name", sorted(DEFAULTS))
def test_defaults_unchanged_and_read_from_the_constructor(name):
    spec = BACKBONES[name]
    assert spec.defaults() == DEFAULTS[name]
    params = inspect.signature(spec.cls.__init__).parameters
    for key, setting in spec.settings.items():
        default = params[key].default
        assert setting.default == (list(default) if isinstance(default, tuple) else default)
    cfg = parse_model_config({"backbone": name})
    assert cfg.backbone.hparams == {} and cfg.backbone.settings == DEFAULTS[name]
    given = parse_model_config({"backbone": {"name": name, **{k: v for k, v in list(DEFAULTS[name].items())[:1]}}})
    assert list(given.backbone.hparams) == list(DEFAULTS[name])[:1]  # only the given keys are stored


def test_a_constructor_setting_without_a_declaration_is_refused_at_import():
    declared = dict(registry._DECLARED["painn"])
    del declared["layers"]
    with pytest.raises(TypeError, match=r"without a meaning \['layers'\]"):
        BackboneSpec("painn", backbone_class("painn"), declared)
    with pytest.raises(TypeError, match=r"meanings of no setting \['width'\]"):
        BackboneSpec("painn", backbone_class("painn"), registry._DECLARED["painn"] | {"width": declared["features"]})


def test_docs_table_matches_the_code():
    text = DOC.read_text()
    begin, end = text.index(registry.TABLE_BEGIN) + len(registry.TABLE_BEGIN) + 1, text.index(registry.TABLE_END)
    assert text[begin:end] == settings_table(), (
        "docs/BACKBONES.md is out of date: run python -c \"from muse_ff.nn.backbones import write_settings_table; "
        "write_settings_table('docs/BACKBONES.md')\"")
    for name, spec in BACKBONES.items():  # every setting, with its type, default and meaning
        for s in spec.settings.values():
            assert f"| `{s.name}` | {s.type} |" in text and s.meaning in text
    assert "docs/BACKBONES.md" in (DOC.parent / "TRAINING.md").read_text()


def test_write_settings_table_only_rewrites_between_the_markers(tmp_path):
    doc = tmp_path / "b.md"
    doc.write_text(f"intro\n{registry.TABLE_BEGIN}\nold table\n{registry.TABLE_END}\noutro\n")
    assert registry.write_settings_table(doc) is True and registry.write_settings_table(doc) is False
    assert doc.read_text() == f"intro\n{registry.TABLE_BEGIN}\n{settings_table()}{registry.TABLE_END}\noutro\n"
    (tmp_path / "c.md").write_text("no markers\n")
    with pytest.raises(ValueError, match="lacks the lines"):
        registry.write_settings_table(tmp_path / "c.md")


@pytest.mark.parametrize("backbone, message", [
    ({"name": "painn", "features": 0}, r"model\.backbone: backbone hyper-parameter 'features': must be >= 1, got 0"),
    ({"name": "painn", "layers": -2}, r"'layers': must be >= 1, got -2"),
    ({"name": "painn", "features": "x"}, r"'features': Input should be a valid number, not a string"),
    ({"name": "painn", "features": 8.5}, r"'features': Input should be a whole number"),
    ({"name": "so3krates", "features": 10}, r"so3krates backbone: features \(10\) must be divisible by heads \(4\)"),
    ({"name": "so3krates", "degrees": [1, 1]}, r"'degrees': degrees must be distinct"),
    ({"name": "so3krates", "degrees": [0, 1]}, r"'degrees': each entry must be 1 to 11, got 0"),
    ({"name": "so3krates", "degrees": []}, r"'degrees': Input should have at least 1 entry"),
    ({"name": "so3krates", "residual_mlp": "yes"}, r"'residual_mlp': Input should be true or false"),
    ({"name": "mace", "max_L": 4}, r"'max_L': must be 0 to 3, got 4"),
    ({"name": "mace", "max_L": 2, "max_ell": 1}, r"mace backbone: max_ell \(1\) must be >= max_L \(2\)"),
    ({"name": "mace", "max_L": 0}, r"mace backbone: vector_output needs max_L >= 1"),
    ({"name": "mace", "radial_mlp": [8, 0]}, r"'radial_mlp': each entry must be >= 1, got 0"),
    ({"name": "mace", "avg_num_neighbors": 0}, r"'avg_num_neighbors': must be > 0, got 0"),
    ({"name": "mace", "num_cutoff_basis": 1}, r"'num_cutoff_basis': must be >= 2, got 1"),
])
def test_settings_are_checked_when_the_config_is_read(backbone, message, monkeypatch):
    """``parse_model_config`` builds nothing: these were found only when the backbone was built, if at all."""
    monkeypatch.setitem(sys.modules, "mace", None)  # no mace-torch needed
    with pytest.raises(ConfigError, match=message):
        parse_model_config({"backbone": backbone})
    with pytest.raises(ConfigError, match=message.replace(r"model\.backbone", r"model\.levels\.0\.backbone")):
        parse_model_config({"levels": [{"backbone": backbone}]})


@pytest.mark.parametrize("name, setting, least", [
    ("painn", "features", 1), ("painn", "layers", 1), ("painn", "num_basis", 1),
    ("so3krates", "heads", 1), ("so3krates", "layers", 1), ("so3krates", "num_basis", 1),
])
def test_lower_bounds_agree_with_the_constructors(name, setting, least):
    """The smallest value the config allows builds; one below it the constructor would refuse too."""
    small = {"painn": {"features": 4, "layers": 1, "num_basis": 2},
             "so3krates": {"features": 6, "heads": 1, "degrees": [1, 2], "layers": 1, "num_basis": 2}}[name]
    assert BACKBONES[name].settings[setting].ge == least
    build_model({"backbone": {"name": name, **small, setting: least}, "species": ["H"]})
    with pytest.raises(ValueError, match=setting):
        BACKBONES[name](4, 4.0, **{**small, setting: least - 1})
