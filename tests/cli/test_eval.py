import json

from muse_ff.cli.main import main


def test_eval_prints_errors_per_element_and_writes_parity_plots(model_file, labelled_file, tmp_path, capsys):
    assert main(["eval", str(model_file), str(labelled_file), "--plots", str(tmp_path / "plots")]) == 0
    out = capsys.readouterr().out
    assert "energy (meV/atom)" in out and "forces (meV/Å)" in out and "forces O" in out
    assert (tmp_path / "plots" / "parity_energy.png").stat().st_size > 1000
    assert (tmp_path / "plots" / "parity_forces.png").exists()


def test_eval_json_has_mae_rmse_and_counts(model_file, labelled_file, capsys):
    assert main(["eval", str(model_file), str(labelled_file), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["frames"] == 8 and metrics["forces_count"] == 8 * 6 * 3
    assert metrics["energy_rmse"] >= metrics["energy_mae"] > 0
    assert set(metrics["forces_per_element"]) == {"H", "C", "O"}
    assert "stress_mae" not in metrics  # no stress labels, no stress row


def test_eval_of_a_missing_model_is_a_clear_error(labelled_file, tmp_path, capsys):
    assert main(["eval", str(tmp_path / "nope.pt"), str(labelled_file)]) == 2
    assert "model file not found" in capsys.readouterr().err
