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


def test_speed_script_measures_the_physical_terms_free_and_periodic(tmp_path, capsys):
    """--physical adds PaiNN+phys and MuSE(PaiNN)+phys, timed with the others, and prints their ratios to PaiNN."""
    module = _speed_module()
    out = tmp_path / "rows.json"
    assert module.main(["--system", "water", "--sizes", "45", "--physical", "--threads", "1", "--repeats", "1",
                        "--rounds", "1", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert {(r["levels"], r["physical"]) for r in rows} == {(0, False), (2, False), (0, True), (2, True)}
    assert all(r["t_energy_forces_s"] > 0 for r in rows)
    text = capsys.readouterr().out
    assert "relative to PaiNN" in text and "MuSE(PaiNN)+phys" in text
    free, box = module.water_cluster(45), module.water_box(45)  # the same molecules, without the cell
    assert not free.pbc.any() and (free.positions == box.positions).all()
