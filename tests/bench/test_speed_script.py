"""benchmarks/speed.py, the scaling script: several backbones in one run, rows and ratios written."""

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "speed.py"


def _speed_module():
    spec = importlib.util.spec_from_file_location("speed_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_speed_script_measures_backbones_side_by_side(tmp_path, capsys):
    out = tmp_path / "rows.json"
    assert _speed_module().main(["--system", "graphite", "--sizes", "60", "--backbone", "painn", "so3krates",
                                 "--threads", "1", "--repeats", "1", "--rounds", "1", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert {(r["backbone"], r["levels"]) for r in rows} == {("painn", 0), ("painn", 2), ("so3krates", 0),
                                                             ("so3krates", 2)}
    for r in rows:
        assert r["t_energy_forces_s"] > 0 and r["edges"] > 0
        assert (len(r["coarse_nodes"]) == 2) == (r["levels"] == 2)
    text = capsys.readouterr().out
    assert "MuSE(SO3krates) / SO3krates" in text and "relative to PaiNN" in text
