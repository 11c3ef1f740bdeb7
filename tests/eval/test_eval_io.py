"""Reading samples: a folder of CIFs, an extxyz file, broken files (counted, never crashing)."""
import warnings

import pytest

pytest.importorskip("pymatgen")
pytest.importorskip("ase")
from pymatgen.core import Lattice, Structure  # noqa: E402

from dpcdvae.eval.io import align_by_id, read_samples, read_samples_with_errors  # noqa: E402


@pytest.fixture(autouse=True)
def _quiet():
    warnings.filterwarnings("ignore")


def nacl(a=5.64):
    return Structure(Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def test_read_cif_dir_with_a_broken_file(tmp_path):
    nacl().to(filename=str(tmp_path / "mp-2.cif"))
    nacl(6.0).to(filename=str(tmp_path / "mp-10.cif"))
    (tmp_path / "mp-3.cif").write_text("data_broken\n_cell_length_a oops\n")
    (tmp_path / "notes.txt").write_text("ignored")
    ids, structs, errs = read_samples_with_errors(tmp_path)
    assert ids == ["mp-2", "mp-3", "mp-10"]  # natural order
    assert structs[0] is not None and structs[2].lattice.a == pytest.approx(6.0)
    assert structs[1] is None and errs[1].startswith("unreadable CIF")
    assert errs[0] is None and errs[2] is None


def test_read_extxyz_with_material_ids_and_a_bad_frame(tmp_path):
    import ase.io
    from pymatgen.io.ase import AseAtomsAdaptor

    frames = []
    for k, a in enumerate((5.5, 5.6, 5.7)):
        at = AseAtomsAdaptor.get_atoms(nacl(a))
        at.info["material_id"] = f"id-{k}"
        frames.append(at)
    path = tmp_path / "gen.extxyz"
    ase.io.write(str(path), frames, format="extxyz")
    ids, structs = read_samples(path)
    assert ids == ["id-0", "id-1", "id-2"]
    assert [round(s.lattice.a, 6) for s in structs] == [5.5, 5.6, 5.7]
    assert structs[0].composition.reduced_formula == "NaCl"
    # corrupt the middle frame's atom line: that frame is counted unreadable, the others survive
    lines = path.read_text().splitlines(keepends=True)
    n_per = 2 + 2
    lines[n_per + 2] = "Na  not-a-number 0 0\n"
    path.write_text("".join(lines))
    ids, structs, errs = read_samples_with_errors(path)
    assert len(ids) == 3 and structs[1] is None and "frame 1" in errs[1]
    assert structs[0] is not None and structs[2] is not None


def test_extxyz_frame_without_cell_is_invalid(tmp_path):
    from ase import Atoms
    import ase.io

    ase.io.write(str(tmp_path / "x.extxyz"), [Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.7]])], format="extxyz")
    ids, structs, errs = read_samples_with_errors(tmp_path / "x.extxyz")
    assert structs == [None] and "cell" in errs[0]


def test_missing_path_and_empty_dir(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_samples(tmp_path / "nope")
    with pytest.raises(FileNotFoundError):
        read_samples(tmp_path)


def test_align_by_id():
    a, b = nacl(5.0), nacl(6.0)
    aligned, errs, unknown = align_by_id(["x", "y", "zz"], [a, None, b], ["y", "x", "w"],
                                         [None, "unreadable CIF: q", None])
    assert aligned[0] is None and errs[0] == "unreadable CIF: q"
    assert aligned[1] is a and errs[1] is None
    assert aligned[2] is None and errs[2] == "no prediction for this material_id"
    assert unknown == ["zz"]
