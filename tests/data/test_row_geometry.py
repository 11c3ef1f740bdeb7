"""Issue 28, item 4: the row checks catch degenerate cells after the canonical (Niggli) rebuild: cell angles, the
shortest lattice vector and the shortest interatomic distance. A rejected row is named (file, row, material_id);
``on_error="skip"`` (CLI ``--on-error skip``) skips it; no row of the real Perov-5 / Carbon-24 data is rejected."""
from __future__ import annotations

import csv
import warnings

import numpy as np
import pytest

from dpcdvae.data import CrystalDataset, DataError, DataWarning
from dpcdvae.data import csvio


def _write(path, rows):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(("", "material_id", "cif", "heat_ref"))
        for i, r in enumerate(rows):
            w.writerow([i, *r])
    return path


def _flat_cif(gamma: float = 170.0) -> str:
    """A perovskite-like 5-atom row whose cell has a ``gamma`` degree angle and 4 A edges (the issue's row)."""
    from pymatgen.core import Lattice, Structure

    s = Structure(Lattice.from_parameters(4.0, 4.0, 4.0, 90, 90, gamma), ["Sr", "Ti", "O", "O", "O"],
                  [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    return s.to(fmt="cif")


def _load(path, **kw):
    kw = {"graph": "none", "num_workers": 1, "progress": False, "cache": False, "prop": "heat_ref",
          "max_atoms": 20, **kw}
    return CrystalDataset.from_csv(path, name="geom", **kw)


def test_170_degree_row_rejected_and_named(tmp_path, srtio3):
    good = srtio3.to(fmt="cif")
    path = _write(tmp_path / "flat.csv", [("good-0", good, "1.0"), ("flat-170", _flat_cif(170.0), "1.0"),
                                          ("good-2", good, "2.0")])
    with pytest.raises(DataError) as ei:
        _load(path)
    msg = str(ei.value)
    assert "\n" not in msg
    assert str(path) in msg and "row 1" in msg and "flat-170" in msg, msg
    assert "degenerate cell after the Niggli reduction" in msg and "< 1 A" in msg, msg

    with pytest.warns(DataWarning, match=r"skipped 1 of 3 rows"):
        ds = _load(path, on_error="skip")
    assert ds.material_ids == ["good-0", "good-2"]
    assert [s[:2] for s in ds.skipped] == [(1, "flat-170")]
    assert "shortest lattice vector" in ds.skipped[0][2]


def test_degenerate_crystal_rejected_without_niggli(tmp_path, srtio3):
    """Without the reduction the checks judge the crystal, not its basis: the 170 degree cell is still rejected
    (its reduced cell has a 0.70 A vector), and a skewed basis of a sane crystal is not (test_data_preprocess)."""
    path = _write(tmp_path / "flat.csv", [("good-0", srtio3.to(fmt="cif"), "1.0"), ("flat", _flat_cif(170.0), "1.0")])
    with pytest.raises(DataError, match=r"row 1 \(material_id='flat'\): degenerate cell after the Niggli reduction"):
        _load(path, niggli=False)


def test_close_atoms_rejected(tmp_path, srtio3):
    """A sane cell with two atoms 0.3 A apart (across the periodic boundary)."""
    s = srtio3.copy()
    s.replace(2, "O", [0.0, 0.0, 1.0 - 0.3 / 3.905])  # 0.3 A from Sr at the origin, through the c boundary
    path = _write(tmp_path / "close.csv", [("good-0", srtio3.to(fmt="cif"), "1.0"), ("close", s.to(fmt="cif"), "1.0")])
    with pytest.raises(DataError, match=r"row 1 \(material_id='close'\): .*atoms \d and \d are 0.300 A apart"):
        _load(path)


def test_check_function_thresholds():
    lat = np.diag([4.0, 4.0, 4.0])
    csvio.check_canonical_geometry(lat, np.array([[0, 0, 0], [0.5, 0.5, 0.5]]))  # fine
    with pytest.raises(csvio.RowError, match="shortest lattice vector c = 0.900 A"):
        csvio.check_canonical_geometry(np.diag([4.0, 4.0, 0.9]), np.array([[0, 0, 0]]))
    with pytest.raises(csvio.RowError, match="0.490 A apart"):
        csvio.check_canonical_geometry(lat, np.array([[0, 0, 0], [0.49 / 4, 0, 0]]))
    csvio.check_canonical_geometry(lat, np.array([[0, 0, 0], [0.51 / 4, 0, 0]]))
    assert csvio.PREPROCESS_VERSION >= 2  # caches made before these checks are rebuilt


@pytest.mark.shared_data
@pytest.mark.slow
@pytest.mark.parametrize("dataset,split", [("perov_5", "test"), ("perov_5", "val"), ("perov_5", "train"),
                                           ("carbon_24", "test"), ("carbon_24", "val")])
def test_no_real_row_rejected(shared_data_dir, isolated_cache, dataset, split):
    """Every row of the shared data passes (the thresholds were chosen well below its minima: angles 60-120 deg,
    shortest lattice vector 2.40 A, shortest distance 1.19 A). Skips, saying why, when the data is absent."""
    path = shared_data_dir / dataset / f"{split}.csv"
    if not path.is_file():
        pytest.skip(f"{path} absent (shared data of this machine has no {dataset} {split} split)")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        ds = CrystalDataset.from_csv(path, name=dataset, split=split, graph="none", num_workers=1, progress=False,
                                     cache=False)
    assert ds.skipped == [] and len(ds) == ds.n_rows
