"""On-disk preprocessing cache: reuse, rebuild on changed CSV bytes / settings, prefixes, corruption."""
from __future__ import annotations

import warnings

import pytest
import torch

from dpcdvae.data import CrystalDataset, DataWarning, PreprocessSettings, cache_key, make_demo_dataset


@pytest.fixture
def demo_csv(tmp_path):
    d = make_demo_dataset(tmp_path / "src", n=(40, 3, 3))
    return d / "train.csv"


def _load(path, **kw):
    kw.setdefault("graph", "none")
    kw.setdefault("num_workers", 1)
    kw.setdefault("progress", False)
    return CrystalDataset.from_csv(path, **kw)


def _same(a, b):
    for k in ("lengths", "angles", "num_atoms", "y"):
        assert torch.equal(getattr(a, k), getattr(b, k)), k
    assert a.material_ids == b.material_ids
    for i in (0, len(a) - 1):
        assert torch.equal(a[i].frac_coords, b[i].frac_coords) and torch.equal(a[i].atom_types, b[i].atom_types)


def test_reuse_when_unchanged(demo_csv, isolated_cache):
    a = _load(demo_csv)
    assert not a.from_cache and a.cache_path.is_file()
    assert isolated_cache in a.cache_path.parents
    mtime = a.cache_path.stat().st_mtime_ns
    b = _load(demo_csv)
    assert b.from_cache and b.cache_path == a.cache_path
    assert b.cache_path.stat().st_mtime_ns == mtime
    _same(a, b)
    assert not list(isolated_cache.rglob("*.tmp"))  # atomic writes leave no temporary files


def test_rebuild_when_csv_bytes_change(demo_csv, isolated_cache):
    a = _load(demo_csv)
    text = demo_csv.read_text()
    head, last_value = text.rstrip("\n").rsplit(",", 1)  # the last row's heat_ref
    demo_csv.write_text(f"{head},{float(last_value) + 1.0:.6f}\n")
    b = _load(demo_csv)
    assert not b.from_cache and b.cache_path != a.cache_path
    assert float(b.y[-1]) == pytest.approx(float(a.y[-1]) + 1.0)
    assert _load(demo_csv).from_cache


@pytest.mark.parametrize("change", [{"max_atoms": 10}, {"niggli": False}, {"prop": None}, {"graph": "crystalnn"}])
def test_rebuild_when_setting_changes(demo_csv, isolated_cache, change):
    base = _load(demo_csv, limit=8)
    other = _load(demo_csv, limit=8, **change)
    assert not other.from_cache and other.cache_path != base.cache_path
    assert _load(demo_csv, limit=8, **change).from_cache
    assert _load(demo_csv, limit=8).from_cache


def test_cache_key_covers_version_and_settings():
    s = PreprocessSettings()
    assert cache_key("abc", s) == cache_key("abc", PreprocessSettings())
    assert cache_key("abc", s) != cache_key("abd", s)
    assert cache_key("abc", s) != cache_key("abc", PreprocessSettings(version=s.version + 1))
    assert cache_key("abc", s) != cache_key("abc", PreprocessSettings(max_atoms=20))


def test_limit_prefixes(demo_csv, isolated_cache):
    a = _load(demo_csv, limit=10)
    assert len(a) == 10 and not a.from_cache
    b = _load(demo_csv, limit=4)
    assert b.from_cache and len(b) == 4 and b.material_ids == a.material_ids[:4]
    c = _load(demo_csv, limit=20)
    assert not c.from_cache and len(c) == 20
    full = _load(demo_csv)
    assert not full.from_cache and len(full) == 40
    d = _load(demo_csv, limit=30)
    assert d.from_cache and len(d) == 30 and d.n_rows == 30
    _same(d, _load(demo_csv, limit=30, cache=False))


def test_corrupt_cache_rebuilds(demo_csv, isolated_cache):
    a = _load(demo_csv, limit=5)
    a.cache_path.write_bytes(b"not a torch file")
    with pytest.warns(DataWarning, match="unreadable cache"):
        b = _load(demo_csv, limit=5)
    assert not b.from_cache
    assert _load(demo_csv, limit=5).from_cache


def test_cache_disabled_writes_nothing(demo_csv, isolated_cache):
    ds = _load(demo_csv, cache=False, limit=5)
    assert ds.cache_path is None and not list(isolated_cache.rglob("*.pt"))


def test_parallel_equals_serial(demo_csv, isolated_cache):
    serial = _load(demo_csv, cache=False, num_workers=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no fallback to in-process work
        parallel = _load(demo_csv, cache=False, num_workers=2)
    _same(serial, parallel)
