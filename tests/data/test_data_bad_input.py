"""Bad-input corpus: every defect raises DataError naming file, row and material_id, or is skipped AND reported."""
from __future__ import annotations

import csv
import warnings

import pytest

from dpcdvae.data import CrystalDataset, DataError, DataWarning

N_GOOD_BEFORE = 1  # the bad row is data row 1 (0-based) in every single-defect file


def _cif(structure) -> str:
    return structure.to(fmt="cif")


def _write(path, rows, header=("", "material_id", "cif", "heat_ref")):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        for i, r in enumerate(rows):
            w.writerow([i, *r])
    return path


def _replace_line(cif: str, key: str, value: str) -> str:
    out = []
    for ln in cif.splitlines():
        out.append(f"{key}   {value}" if ln.startswith(key + " ") else ln)
    return "\n".join(out) + "\n"


def _replace_site(cif: str, label: str, new_line: str) -> str:
    return "\n".join(new_line if ln.split()[1:2] == [label] else ln for ln in cif.splitlines()) + "\n"


def corpus(good: str):
    """(case id, cif, property, expected reason fragment)."""
    cubic120 = good
    for k in ("_cell_angle_alpha", "_cell_angle_beta", "_cell_angle_gamma"):
        cubic120 = _replace_line(cubic120, k, "120.0")
    return [
        ("garbage", "this is not a CIF at all", "1.0", "malformed CIF"),
        ("truncated", good[: len(good) // 2], "1.0", "malformed CIF"),
        ("empty_cif", "", "1.0", "empty CIF"),
        ("nan_length", _replace_line(good, "_cell_length_a", "nan"), "1.0", "non-finite lattice"),
        ("inf_length", _replace_line(good, "_cell_length_b", "inf"), "1.0", "non-finite lattice"),
        ("nan_angle", _replace_line(good, "_cell_angle_beta", "NaN"), "1.0", "non-finite lattice"),
        ("nan_coord", _replace_site(good, "Ti1", "  Ti  Ti1  1  nan  0.50000000  0.50000000  1"), "1.0",
         "non-finite number"),
        ("inf_coord", _replace_site(good, "Ti1", "  Ti  Ti1  1  inf  0.50000000  0.50000000  1"), "1.0",
         "non-finite number"),
        ("nan_prop", good, "nan", "not finite"),
        ("inf_prop", good, "inf", "not finite"),
        ("empty_prop", good, "", "not a number"),
        ("text_prop", good, "n/a", "not a number"),
        ("unknown_element", _replace_site(good, "Sr0", "  Xx  Xx0  1  0.00000000  0.00000000  0.00000000  1"),
         "1.0", "unknown element"),
        ("zero_length", _replace_line(good, "_cell_length_c", "0.0"), "1.0", "zero or negative"),
        ("negative_length", _replace_line(good, "_cell_length_a", "-3.905"), "1.0", "zero or negative"),
        ("zero_volume", cubic120, "1.0", "zero or negative cell volume"),
        ("partial_occupancy", _replace_site(good, "Sr0", "  Sr  Sr0  1  0.00000000  0.00000000  0.00000000  0.5"),
         "1.0", "partial occupancy"),
    ]


@pytest.fixture
def good_cif(srtio3):
    return _cif(srtio3)


def _load(path, **kw):
    kw.setdefault("graph", "none")
    kw.setdefault("num_workers", 1)
    kw.setdefault("progress", False)
    kw.setdefault("cache", False)
    kw.setdefault("prop", "heat_ref")
    kw.setdefault("max_atoms", 20)
    return CrystalDataset.from_csv(path, name="corpus", **kw)


def test_good_cif_loads(tmp_path, good_cif):
    ds = _load(_write(tmp_path / "ok.csv", [("m0", good_cif, "1.5")]))
    assert len(ds) == 1 and ds.skipped == [] and float(ds.y[0]) == 1.5


@pytest.mark.parametrize("case", range(17))
def test_corpus_raise_and_skip(tmp_path, good_cif, case):
    cid, cif, prop, fragment = corpus(good_cif)[case]
    path = _write(tmp_path / f"{cid}.csv", [("good-0", good_cif, "1.0"), (f"bad-{cid}", cif, prop),
                                            ("good-2", good_cif, "2.0")])
    with pytest.raises(DataError) as ei:
        _load(path)
    msg = str(ei.value)
    assert isinstance(ei.value, ValueError)
    assert str(path) in msg and "row 1" in msg and f"bad-{cid}" in msg, msg
    assert fragment in msg, msg

    with pytest.warns(DataWarning, match=r"skipped 1 of 3 rows") as rec:
        ds = _load(path, on_error="skip")
    assert len(ds) == 2 and ds.material_ids == ["good-0", "good-2"]
    assert [s[:2] for s in ds.skipped] == [(1, f"bad-{cid}")]
    assert fragment in ds.skipped[0][2]
    assert f"bad-{cid}" in str(rec[0].message)


def test_too_many_atoms(tmp_path, good_cif):
    path = _write(tmp_path / "big.csv", [("ok", good_cif, "1.0"), ("big", good_cif, "1.0")])
    with pytest.raises(DataError, match=r"row 0 \(material_id='ok'\): 5 atoms > max_atoms=4"):
        _load(path, max_atoms=4)
    assert len(_load(path, max_atoms=5)) == 2


def test_whole_corpus_skip_reports_every_row(tmp_path, good_cif):
    cases = corpus(good_cif)
    rows = [("good-first", good_cif, "1.0")] + [(f"bad-{c[0]}", c[1], c[2]) for c in cases]
    path = _write(tmp_path / "corpus.csv", rows)
    with pytest.warns(DataWarning, match=rf"skipped {len(cases)} of {len(rows)} rows"):
        ds = _load(path, on_error="skip")
    assert len(ds) == 1
    assert [s[0] for s in ds.skipped] == list(range(1, len(rows)))
    assert [s[1] for s in ds.skipped] == [f"bad-{c[0]}" for c in cases]


def test_skip_with_parallel_workers_and_cache(tmp_path, good_cif, isolated_cache):
    cases = corpus(good_cif)
    rows = [(f"good-{i}", good_cif, "1.0") for i in range(40)] + [(f"bad-{c[0]}", c[1], c[2]) for c in cases]
    path = _write(tmp_path / "corpus.csv", rows)
    with pytest.warns(DataWarning):
        ds = _load(path, on_error="skip", num_workers=2, cache=True)
    assert len(ds) == 40 and len(ds.skipped) == len(cases) and not ds.from_cache
    # a cache hit still reports the skipped rows, and raise mode still raises
    with pytest.warns(DataWarning, match=f"skipped {len(cases)} of"):
        ds2 = _load(path, on_error="skip", num_workers=2, cache=True)
    assert ds2.from_cache and ds2.skipped == ds.skipped
    with pytest.raises(DataError, match="row 40"):
        _load(path, on_error="raise", cache=True)


def test_file_level_errors(tmp_path, good_cif):
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match=f"{empty}.*empty"):
        _load(empty)
    header_only = tmp_path / "header.csv"
    header_only.write_text(",material_id,cif,heat_ref\n")
    with pytest.raises(DataError, match="no data rows"):
        _load(header_only)
    no_cif = _write(tmp_path / "nocif.csv", [("m0", "x", "1.0")], header=("", "material_id", "structure", "heat_ref"))
    with pytest.raises(DataError, match=r"nocif.csv: missing column\(s\) \['cif'\]"):
        _load(no_cif)
    no_prop = _write(tmp_path / "noprop.csv", [("m0", good_cif)], header=("", "material_id", "cif"))
    with pytest.raises(DataError, match=r"missing column\(s\) \['heat_ref'\]"):
        _load(no_prop)
    # without a property column requested, the same file loads (y = NaN)
    ds = _load(no_prop, prop=None)
    assert len(ds) == 1 and ds.y.isnan().all()
    all_bad = _write(tmp_path / "allbad.csv", [("b0", "junk", "1.0"), ("b1", "junk", "1.0")])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        with pytest.raises(DataError, match="all 2 rows were rejected"):
            _load(all_bad, on_error="skip")
    with pytest.raises(ValueError, match="on_error"):
        _load(no_prop, on_error="ignore")
