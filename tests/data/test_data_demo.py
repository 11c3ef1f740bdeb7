"""The self-generated SYNTHETIC demo dataset: deterministic, labelled, and loadable through the pipeline."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from dpcdvae.data import DEMO_NAME, ensure_demo_dataset, load_dataset_splits, load_split, make_demo_dataset
from dpcdvae.data.demo import IONIC_RADII, demo_compositions, demo_rows

SMALL = (24, 6, 6)


def _bytes(d):
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


def test_deterministic_same_bytes(tmp_path):
    a = make_demo_dataset(tmp_path / "a", n=SMALL, seed=0)
    b = make_demo_dataset(tmp_path / "b", n=SMALL, seed=0)
    assert a.name == DEMO_NAME
    assert _bytes(a) == _bytes(b)
    c = make_demo_dataset(tmp_path / "c", n=SMALL, seed=1)
    assert _bytes(c)["train.csv"] != _bytes(a)["train.csv"]
    # default sizes 300/60/60
    rows = demo_rows(3)
    assert [r["material_id"] for r in rows] == ["synthetic-00000", "synthetic-00001", "synthetic-00002"]


def test_labelled_synthetic(tmp_path):
    d = make_demo_dataset(tmp_path, n=SMALL)
    meta = json.loads((d / "dataset.json").read_text())
    assert meta["synthetic"] is True and meta["name"] == DEMO_NAME
    assert "SYNTHETIC" in (d / "README.md").read_text()
    text = (d / "train.csv").read_text()
    assert text.startswith(",material_id,cif,formula,heat_ref\n")
    assert text.count("# SYNTHETIC structure") == SMALL[0]


def test_compositions_charge_balanced():
    comps = demo_compositions()
    assert len(comps) >= 20
    for a, b, x in comps:
        assert IONIC_RADII["A"][a][0] + IONIC_RADII["B"][b][0] + 3 * IONIC_RADII["X"][x][0] == 0


def test_loads_through_pipeline(tmp_path, isolated_cache):
    root = tmp_path / "demo-root"
    make_demo_dataset(root, n=SMALL)
    ds = load_split(DEMO_NAME, "train", root=root, graph="none", num_workers=1, progress=False)
    assert len(ds) == SMALL[0] and ds.synthetic and ds.skipped == []
    assert all(m.startswith("synthetic-") for m in ds.material_ids)
    d = ds[0]
    assert d.num_atoms.tolist() == [5] and d.frac_coords.shape == (5, 3)
    assert math.isfinite(float(d.y))
    # physically sensible: lattice constants 3.5..5.3 A (chlorides are the largest), shortest bond > 1.6 A
    assert float(ds.lengths.min()) > 3.5 and float(ds.lengths.max()) < 5.3
    s = ds.get_structure(3)
    dm = s.distance_matrix + np.eye(len(s)) * 100
    assert dm.min() > 1.6
    again = load_split(DEMO_NAME, "train", root=root, graph="none", num_workers=1, progress=False)
    assert again.from_cache


def test_ensure_reuses_and_locator_generates(tmp_path, isolated_cache, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DPCDVAE_DATA", raising=False)
    d = ensure_demo_dataset(n=SMALL)
    assert d == isolated_cache / "demo" / DEMO_NAME
    mtime = (d / "train.csv").stat().st_mtime_ns
    assert ensure_demo_dataset(n=SMALL) == d
    assert (d / "train.csv").stat().st_mtime_ns == mtime  # reused, not rewritten
    splits = load_dataset_splits(DEMO_NAME, graph="none", num_workers=1, progress=False, root=d.parent)
    out = capsys.readouterr().out
    assert "training split" in out and "SYNTHETIC" in out
    assert len(splits.train) == SMALL[0] and len(splits.val) == SMALL[1] and len(splits.test) == SMALL[2]
    assert splits.lattice_scaler.fitted


def test_bad_sizes():
    with pytest.raises(ValueError):
        make_demo_dataset(n=(1, 2))
    with pytest.raises(ValueError):
        make_demo_dataset(n=2)
