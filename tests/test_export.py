"""`muse export`: the exported TorchScript model reproduces the Python model in the engines (issue #17)."""

import warnings

import numpy as np
import pytest
import torch
from ase import units
from ase.build import bulk, graphene, molecule
from ase.md.verlet import VelocityVerlet

from muse_ff import MuSECalculator, build_model, save_model
from muse_ff.cli.main import main
from muse_ff.export import ExportError, export_model

metatomic_ase = pytest.importorskip("metatomic_ase")

PAINN = {"name": "painn", "features": 16, "layers": 2, "num_basis": 8}
SPECIES = [1, 6, 8, 14]


def _model(levels=2, **extra):
    torch.manual_seed(0)
    cfg = {"backbone": PAINN, "species": SPECIES, "dtype": "float64",
           "levels": [{"ratio": 4}, {"ratio": 4}][:levels], **extra}
    return build_model(cfg).eval()


def _free():
    a, b = molecule("C6H6"), molecule("H2O")
    b.translate([0.3, 0.2, 6.0])
    return a + b


def _periodic():
    waters = molecule("H2O") + molecule("H2O")
    waters.positions[3:] += [2.6, 1.4, 1.1]
    waters.cell, waters.pbc = np.eye(3) * 6.5, True
    waters.positions += 0.5
    return waters


def _mixed():
    g = graphene(size=(3, 3, 1), vacuum=7.0)
    g.pbc = [True, True, False]
    ch4 = molecule("CH4")
    ch4.translate(g.positions.mean(0) + [0.2, 0.1, 3.4])
    return g + ch4


def _reference(model, atoms):
    a = atoms.copy()
    a.calc = MuSECalculator(model)
    stress = a.get_stress() if a.pbc.all() else None
    return a.get_potential_energy(), a.get_forces(), stress


def _exported(path, atoms):
    a = atoms.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a.calc = metatomic_ase.MetatomicCalculator(str(path))
    stress = a.get_stress() if a.pbc.all() else None
    return a.get_potential_energy(), a.get_forces(), stress


def _close(ref, got):
    e0, f0, s0 = ref
    e1, f1, s1 = got
    assert abs(e1 - e0) <= 1e-6 * max(1.0, abs(e0))
    np.testing.assert_allclose(f1, f0, rtol=1e-6, atol=1e-9)
    if s0 is not None:
        np.testing.assert_allclose(s1, s0, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("make", [_free, _periodic, _mixed], ids=["free", "periodic", "mixed"])
def test_metatomic_export_of_a_multiscale_model_reproduces_energy_forces_stress(make, tmp_path):
    model, atoms = _model(), make()
    path = export_model(model, tmp_path / "m.pt", structure=atoms)
    _close(_reference(model, atoms), _exported(path, atoms))
    # the same system moved: the exported model is the same function of the positions
    moved = atoms.copy()
    moved.positions += np.random.default_rng(1).normal(scale=0.03, size=moved.positions.shape)
    _close(_reference(model, moved), _exported(path, moved))


def test_export_of_levels_with_edges_only_within_components(tmp_path):
    """``levels[k].edges: within-component``: the exported model reads the bound components, as Python does."""
    torch.manual_seed(0)
    levels = [{"ratio": 4, "edges": "within-component"}, {"ratio": 4, "edges": "within-component"}]
    model = build_model({"backbone": PAINN, "species": SPECIES, "dtype": "float64", "levels": levels}).eval()
    atoms = _mixed()
    path = export_model(model, tmp_path / "w.pt", structure=atoms)
    _close(_reference(model, atoms), _exported(path, atoms))


def test_plain_backbone_export_runs_on_any_structure_of_its_elements(tmp_path):
    model = _model(levels=0)
    path = export_model(model, tmp_path / "plain.pt")  # nothing to bind
    si = bulk("Si", "diamond", a=5.43, cubic=True)
    si.rattle(0.05, seed=2)
    for atoms in (_free(), si, _mixed()):
        _close(_reference(model, atoms), _exported(path, atoms))


@pytest.mark.parametrize("edges", ["all", "within-component"])
def test_atoms_wrapped_into_the_cell_give_the_same_energy(edges, tmp_path):
    """Engines wrap atoms back into the box: the bound topology's images (with ``within-component``, each coarse
    node's image too) are restored from the atoms' fractional coordinates, so a molecule split across the
    boundary keeps its energy."""
    model, atoms = _model(), _periodic()
    if edges != "all":
        torch.manual_seed(0)
        levels = [{"ratio": 4, "edges": edges}, {"ratio": 4, "edges": edges}]
        model = build_model({"backbone": PAINN, "species": SPECIES, "dtype": "float64", "levels": levels}).eval()
        atoms = molecule("CH3CH2OCH3")  # several coarse nodes, its copies 9 Å away within the 10 Å cutoff
        atoms.cell, atoms.pbc = np.eye(3) * 9.0, True
        atoms.positions += 4.5
        moved = atoms.copy()
        moved.positions += [4.6, 0.0, 0.0]  # one coarse node's reference atom crosses the boundary, the other not
        wrapped = moved.copy()
        wrapped.wrap()
        path = export_model(model, tmp_path / "w.pt", structure=atoms)
        _close(_reference(model, moved), _exported(path, wrapped))
        assert any(int(s.edge_index.shape[1]) for s in model.coarse_grain(model.graph_from_atoms(atoms)))
        return
    path = export_model(model, tmp_path / "m.pt", structure=atoms)
    moved = atoms.copy()
    moved.positions[3:] += [0.0, 0.0, 4.7]  # the second water now straddles the boundary: some of its atoms wrap
    wrapped = moved.copy()
    wrapped.wrap()
    assert not np.allclose(wrapped.positions, moved.positions)
    _close(_reference(model, moved), _exported(path, wrapped))


def test_exported_model_refuses_another_system_and_a_broken_bond(tmp_path):
    model, atoms = _model(), _free()
    path = export_model(model, tmp_path / "m.pt", structure=atoms)
    other = molecule("CH3OH")
    with pytest.raises(Exception, match="bound to a structure of 15 atoms"):
        _exported(path, other)
    reordered = atoms[list(range(12, 15)) + list(range(12))]  # the same atoms in another order
    with pytest.raises(Exception, match="other elements or another order"):
        _exported(path, reordered)
    broken = atoms.copy()
    broken.positions[-1] += [0.0, 0.0, 3.0]  # an O-H bond of the water breaks
    with pytest.raises(Exception, match="bond topology changed"):
        _exported(path, broken)


def test_nve_md_in_ase_through_the_exported_model_follows_the_python_model(tmp_path):
    model, atoms = _model(), _free()
    path = export_model(model, tmp_path / "m.pt", structure=atoms)
    runs = {}
    for name in ("python", "exported"):
        a = atoms.copy()
        a.set_velocities(np.random.default_rng(0).normal(scale=0.01, size=(len(a), 3)))
        if name == "python":
            a.calc = MuSECalculator(model)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                a.calc = metatomic_ase.MetatomicCalculator(str(path))
        energies = []
        dyn = VelocityVerlet(a, 0.1 * units.fs)  # short: an untrained model's forces would break bonds in 50 fs
        dyn.attach(lambda a=a: energies.append(a.get_total_energy()))
        dyn.run(100)
        runs[name] = (a.positions.copy(), np.array(energies))
    np.testing.assert_allclose(runs["exported"][0], runs["python"][0], atol=1e-8)
    drift = np.ptp(runs["exported"][1])
    assert drift < 1e-3  # NVE: total energy conserved along the 100 steps


def _check_torchscript(model, atoms, tmp_path):
    """The torchscript export of ``model`` bound to ``atoms``: energy and forces from positions alone equal the
    Python model's to 1e-6."""
    path = export_model(model, tmp_path / "m.ts", structure=atoms, format="torchscript")
    scripted = torch.jit.load(str(path))
    pos = torch.tensor(atoms.positions, requires_grad=True)
    energy = scripted(pos, torch.tensor(atoms.cell.array), torch.tensor(atoms.pbc))
    forces = -torch.autograd.grad(energy, pos)[0]
    e0, f0, _ = _reference(model, atoms)
    assert abs(float(energy) - e0) <= 1e-6 * max(1.0, abs(e0))
    np.testing.assert_allclose(forces.numpy(), f0, rtol=1e-6, atol=1e-9)


def test_torchscript_format_is_a_function_of_positions_only(tmp_path):
    import vesin_torch  # noqa: F401  (the coarse neighbour lists' extension)

    model, atoms = _model(), _mixed()
    _check_torchscript(model, atoms, tmp_path)


def test_export_refusals_name_the_problem(tmp_path):
    with pytest.raises(ExportError, match="--structure"):
        export_model(_model(), tmp_path / "m.pt")
    with pytest.raises(ExportError, match="unknown export format"):
        export_model(_model(levels=0), tmp_path / "m.pt", format="lammps")
    (tmp_path / "taken.pt").write_text("keep me")
    with pytest.raises(ExportError, match="exists"):
        export_model(_model(levels=0), tmp_path / "taken.pt")
    assert (tmp_path / "taken.pt").read_text() == "keep me"


def test_cli_export_writes_and_refuses_to_overwrite(tmp_path, capsys):
    model, atoms = _model(), _free()
    save_model(model, tmp_path / "model.pt")
    atoms.write(tmp_path / "system.xyz")
    out = tmp_path / "exported.pt"
    args = ["export", str(tmp_path / "model.pt"), str(out), "--structure", str(tmp_path / "system.xyz")]
    assert main(args) == 0
    assert "bound to 15 atoms" in capsys.readouterr().out
    _close(_reference(model, atoms), _exported(out, atoms))
    before = out.read_bytes()
    assert main(args) == 2
    assert "exists" in capsys.readouterr().err
    assert out.read_bytes() == before
    assert main(args + ["--overwrite"]) == 0
    assert main(["export", str(tmp_path / "model.pt"), str(tmp_path / "x.pt")]) == 2
    assert "--structure" in capsys.readouterr().err


BACKBONE_CASES = {
    "so3krates": {"name": "so3krates", "features": 8, "heads": 2, "degrees": [1, 2], "layers": 2, "num_basis": 4},
    "mace": {"name": "mace", "num_channels": 4, "max_L": 1, "max_ell": 2, "correlation": 2, "num_interactions": 2,
             "num_radial_basis": 4, "radial_mlp": [8]},
    # l = 2 hidden features, pooled into the coarse level's MACE (BackboneOutput.tensors)
    "mace-l2": {"name": "mace", "num_channels": 4, "max_L": 2, "max_ell": 2, "correlation": 2,
                "num_interactions": 2, "num_radial_basis": 4, "radial_mlp": [8]},
}


@pytest.mark.parametrize("name", list(BACKBONE_CASES))
def test_every_backbone_exports_with_its_coarse_levels(name, tmp_path, monkeypatch):
    if name.startswith("mace"):
        pytest.importorskip("mace")
        monkeypatch.delenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", raising=False)  # mace sets it at import: undone after
    torch.manual_seed(0)
    model = build_model({"backbone": BACKBONE_CASES[name], "species": SPECIES, "dtype": "float64",
                         "levels": [{"ratio": 4}]}).eval()
    atoms = _mixed()
    path = export_model(model, tmp_path / "m.pt", structure=atoms)
    _close(_reference(model, atoms), _exported(path, atoms))


def test_exported_file_runs_without_importing_muse(tmp_path):
    """What a user of the exported file needs is metatomic: the MuSE code is inside the TorchScript file."""
    import subprocess
    import sys

    model, atoms = _model(), _free()
    path = export_model(model, tmp_path / "m.pt", structure=atoms)
    atoms.write(tmp_path / "s.xyz")
    code = ("import sys, warnings; warnings.simplefilter('ignore'); import ase.io; "
            "from metatomic_ase import MetatomicCalculator; "
            f"a = ase.io.read({str(tmp_path / 's.xyz')!r}); a.calc = MetatomicCalculator({str(path)!r}); "
            "e = a.get_potential_energy(); assert 'muse_ff' not in sys.modules; print(repr(float(e)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    e0, _, _ = _reference(model, atoms)
    assert abs(float(out.stdout.strip().splitlines()[-1]) - e0) <= 1e-6 * max(1.0, abs(e0))


def test_cli_export_of_a_float32_model_in_float64(tmp_path):
    torch.manual_seed(0)
    model = build_model({"backbone": PAINN, "species": SPECIES, "levels": [{"ratio": 4}]}).eval()  # float32
    atoms = _free()
    save_model(model, tmp_path / "model.pt")
    atoms.write(tmp_path / "system.xyz")
    out = tmp_path / "f64.pt"
    assert main(["export", str(tmp_path / "model.pt"), str(out), "--structure", str(tmp_path / "system.xyz"),
                 "--dtype", "float64"]) == 0
    ref = atoms.copy()
    ref.calc = MuSECalculator(model, dtype="float64")  # the same weights, evaluated in float64
    _close((ref.get_potential_energy(), ref.get_forces(), None), _exported(out, atoms))
