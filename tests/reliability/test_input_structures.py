"""Issue #13 item 12 (input): bad structures, labels and files are one sentence, not a traceback.

Were: Z > 118 an ``IndexError`` in ``validate_atoms``; a string energy or mis-shaped forces a bare
``ValueError`` from numpy; an empty, truncated or binary extxyz whatever ASE's parser hit (without the
file name); ``FileExistsError`` & co. tracebacks from the ``muse`` command.
"""

from __future__ import annotations

import errno
import types

import ase.io
import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule

from muse_ff import StructureError, atoms_to_graph
from muse_ff.cli import main as cli_main
from muse_ff.errors import MuseError
from muse_ff.io.structures import StructureReadError, read_structures
from muse_ff.teachers import MissingTeacherPackage, TeacherError


# ------------------------------------------------------------------------------------ structures
@pytest.mark.parametrize("z", [119, 200, 10**6, -1, -119])
def test_atomic_number_out_of_range_is_a_structure_error(z):
    atoms = Atoms("H2", positions=[[0, 0, 0], [1, 0, 0]])
    atoms.numbers[1] = z
    with pytest.raises(StructureError) as err:
        atoms_to_graph([molecule("H2O"), atoms], 5.0)
    assert str(err.value) == f"unknown element (Z={z}) at atom 1 (structure 1): atomic numbers must be 1 to 118"


# ---------------------------------------------------------------------------------------- labels
def _read_back(tmp_path, atoms: Atoms) -> Atoms:
    ase.io.write(tmp_path / "f.extxyz", atoms)
    return ase.io.read(tmp_path / "f.extxyz")


def test_energy_given_as_a_string_names_frame_and_key(tmp_path):
    bad = molecule("H2O")
    bad.info["REF_energy"] = "abc"
    bad = _read_back(tmp_path, bad)
    with pytest.raises(StructureError) as err:
        atoms_to_graph([molecule("CH4"), bad], 5.0)
    assert str(err.value) == ("label 'REF_energy' of structure 1 is not numeric (got 'abc'); "
                              "expected one number (eV)")


def test_energy_given_as_several_numbers_names_frame_and_key():
    bad = molecule("H2O")
    bad.info["REF_energy"] = np.array([1.0, 2.0])
    with pytest.raises(StructureError, match=r"label 'REF_energy' of structure 1 has shape \[2\]; expected one"):
        atoms_to_graph([molecule("CH4"), bad], 5.0)


@pytest.mark.parametrize("shape", [(3, 2), (3, 4), (2, 3)])
def test_forces_of_the_wrong_shape_name_frame_key_and_expected_shape(tmp_path, shape):
    bad = molecule("H2O")
    bad.arrays["REF_forces"] = np.ones(shape)  # (ASE's new_array would refuse the wrong length)
    atoms_to_graph([molecule("CH4"), molecule("NH3"), bad], 5.0, keys=None)  # fine when labels are not read
    with pytest.raises(StructureError) as err:
        atoms_to_graph([molecule("CH4"), molecule("NH3"), bad], 5.0)
    assert str(err.value) == (f"label 'REF_forces' of structure 2 has shape {list(shape)}; "
                              f"expected shape [3, 3] (eV/Å, one row per atom)")


def test_stress_of_the_wrong_size_names_key():
    bad = molecule("H2O")
    bad.info["REF_stress"] = np.ones(4)
    with pytest.raises(StructureError, match=r"label 'REF_stress' has shape \[4\]; expected 9 numbers"):
        atoms_to_graph(bad, 5.0)


def test_good_labels_still_read():
    a = molecule("H2O")
    a.info["REF_energy"] = np.array([-2.5])
    a.arrays["REF_forces"] = np.arange(9.0).reshape(3, 3)
    a.info["REF_stress"] = np.arange(9.0).reshape(3, 3)
    g = atoms_to_graph(a, 5.0)
    assert g.energy.tolist() == [-2.5] and g.forces[2, 1] == 7.0 and g.stress[0, 1, 2] == 5.0


# ------------------------------------------------------------------------------- structure files
@pytest.fixture
def two_frames(tmp_path):
    path = tmp_path / "two.extxyz"
    frames = [molecule("H2O"), molecule("CH4")]
    for a in frames:
        a.info["REF_energy"] = -1.0
    ase.io.write(path, frames)
    return path


def test_empty_file(tmp_path):
    (tmp_path / "e.extxyz").write_text("")
    with pytest.raises(StructureReadError) as err:
        read_structures(tmp_path / "e.extxyz")
    assert str(err.value) == f"could not read structures from {tmp_path / 'e.extxyz'}: the file is empty"


def test_binary_file(tmp_path):
    path = tmp_path / "b.extxyz"
    path.write_bytes(np.random.default_rng(0).bytes(500))
    with pytest.raises(StructureReadError, match=r"b\.extxyz: it is not a text structure file"):
        read_structures(path)


def test_every_truncation_gives_whole_frames_or_one_sentence(two_frames, tmp_path):
    """Cut at every byte: either the frames before the cut read back, or StructureReadError naming the file."""
    data = two_frames.read_bytes()
    full = read_structures(two_frames)
    cut = tmp_path / "cut.extxyz"
    errors = 0
    for n in range(1, len(data)):
        cut.write_bytes(data[:n])
        try:
            got = read_structures(cut)
        except StructureReadError as err:
            assert str(err).startswith(f"could not read structures from {cut}: ")
            assert "\n" not in str(err)
            errors += 1
            continue
        assert 1 <= len(got) <= 2
        for a, b in zip(got, full):  # what reads is the start of the file, whole
            assert len(a) == len(b) and np.allclose(a.positions, b.positions)
    assert errors > 0.5 * len(data)


def test_missing_index_directory_and_missing_file(two_frames, tmp_path):
    with pytest.raises(StructureReadError, match="it has no structure at index 5"):
        read_structures(two_frames, 5)
    with pytest.raises(StructureReadError, match="it holds no structures at index '5:9'"):
        read_structures(two_frames, "5:9")
    with pytest.raises(StructureReadError, match="it is a directory"):
        read_structures(tmp_path)
    with pytest.raises(FileNotFoundError, match="structures file not found"):
        read_structures(tmp_path / "nope.extxyz")
    assert len(read_structures(two_frames, -1)) == 5 and len(read_structures(two_frames)) == 2


def test_compressed_extxyz_is_read(two_frames, tmp_path):
    import lzma

    path = tmp_path / "two.extxyz.xz"
    path.write_bytes(lzma.compress(two_frames.read_bytes()))
    assert [len(a) for a in read_structures(path)] == [3, 5]
    path.write_bytes(lzma.compress(two_frames.read_bytes())[:-20])
    with pytest.raises(StructureReadError, match="two.extxyz.xz"):
        read_structures(path)


# ------------------------------------------------------------------------------------ muse label
def test_muse_label_with_a_truncated_input_is_one_line(two_frames, tmp_path, capsys):
    cut = tmp_path / "cut.extxyz"
    data = two_frames.read_bytes()
    cut.write_bytes(data[: len(data) - 30])
    assert cli_main.main(["label", str(cut), str(tmp_path / "o.extxyz"), "--teacher", "gfn2-xtb",
                          "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"muse label: error: could not read structures from {cut}: ") and err.count("\n") == 1


def test_muse_label_with_an_empty_input_or_a_directory_as_output(two_frames, tmp_path, capsys):
    (tmp_path / "e.extxyz").write_text("")
    assert cli_main.main(["label", str(tmp_path / "e.extxyz"), str(tmp_path / "o.extxyz"),
                          "--teacher", "gfn2-xtb"]) == 2
    assert "the file is empty" in capsys.readouterr().err
    (tmp_path / "outdir").mkdir()
    assert cli_main.main(["label", str(two_frames), str(tmp_path / "outdir"), "--teacher", "gfn2-xtb"]) == 2
    assert capsys.readouterr().err == (f"muse label: error: output {tmp_path / 'outdir'} is a directory; give the "
                                       f"path of the extxyz file to write\n")


# ---------------------------------------------------------------------------------- muse's errors
class _Boom(MuseError):
    pass


@pytest.mark.parametrize("error, status, message", [
    (_Boom("the widget is broken"), 2, "the widget is broken"),
    (FileExistsError(errno.EEXIST, "File exists", "/x/out"), 2, "File exists: /x/out"),
    (IsADirectoryError(errno.EISDIR, "Is a directory", "/x/d"), 2, "Is a directory: /x/d"),
    (PermissionError(errno.EACCES, "Permission denied", "/x/p"), 2, "Permission denied: /x/p"),
    (OSError(errno.ENOSPC, "No space left on device"), 2, "No space left on device"),
    (TeacherError("journal locked"), 2, "journal locked"),
    (ValueError(), 2, "ValueError"),
    (MissingTeacherPackage("install tblite"), 3, "install tblite"),
])
def test_main_turns_user_errors_into_one_line(monkeypatch, capsys, error, status, message):
    def run(args):
        raise error

    fake = types.SimpleNamespace(HELP="a command that fails", add_arguments=lambda p: None, run=run)
    monkeypatch.setattr(cli_main, "_available_commands", lambda: {"boom": fake})
    assert cli_main.main(["boom"]) == status
    assert capsys.readouterr().err == f"muse boom: error: {message}\n"


def test_main_lets_a_programming_error_through(monkeypatch):
    def run(args):
        raise KeyError("a bug")

    fake = types.SimpleNamespace(HELP="h", add_arguments=lambda p: None, run=run)
    monkeypatch.setattr(cli_main, "_available_commands", lambda: {"boom": fake})
    with pytest.raises(KeyError):
        cli_main.main(["boom"])


def test_cut_inside_the_last_number_is_not_read_silently(two_frames, tmp_path):
    text = two_frames.read_text()
    cut = tmp_path / "cut.extxyz"
    cut.write_text(text[: len(text) - 6])  # "... -0.626622\n" -> "... -0.626"
    with pytest.raises(StructureReadError, match="last line does not end with a newline, so it looks truncated"):
        read_structures(cut)
    cut.write_text(text[: len(text) - 6] + "\n")  # the user says it is complete: read as it stands
    assert len(read_structures(cut)) == 2
