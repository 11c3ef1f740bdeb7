"""The reference-side caches of the evaluation (:mod:`dpcdvae.eval.refcache`): parsed splits and reference
predictions are reused only while the file / structures / predictor are the same, and give the same answer."""
from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from conftest import write_perov5_csvs


def _perovskites(n: int) -> dict:
    rng = np.random.default_rng(0)
    out = {}
    for i in range(n):
        a = 3.8 + 0.3 * rng.random()
        frac = np.array([[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
        frac = frac + 0.01 * rng.standard_normal(frac.shape)
        out[f"mp-{i}"] = Structure(Lattice.cubic(a), ["Sr", "Ti", "O", "O", "O"], frac)
    return out


def _same(a, b) -> bool:
    if a is None or b is None:
        return a is b
    return (np.array_equal(a.lattice.matrix, b.lattice.matrix) and np.array_equal(a.frac_coords, b.frac_coords)
            and [x.symbol for x in a.species] == [x.symbol for x in b.species])


def test_split_cache_same_structures_and_invalidated_by_a_changed_file(tmp_path, isolated_cache):
    from dpcdvae.eval.io import load_split_structures

    root = write_perov5_csvs(tmp_path, _perovskites(6), splits=("test",))
    ids0, ref = load_split_structures("perov_5", "test", root=root, cache=False)
    ids1, first = load_split_structures("perov_5", "test", root=root)     # parses, writes the cache
    files = list((isolated_cache / "reference" / "splits").glob("*.npz"))
    assert len(files) == 1
    ids2, second = load_split_structures("perov_5", "test", root=root)    # from the cache
    assert ids0 == ids1 == ids2 == [f"mp-{i}" for i in range(6)]
    assert all(_same(a, b) for a, b in zip(ref, second)) and all(_same(a, b) for a, b in zip(ref, first))

    # the cache is really read: a planted file under the same key is what comes back
    from dpcdvae.eval import refcache
    d = dict(np.load(files[0]))
    d["frac"] = d["frac"] + 0.125
    with open(files[0], "wb") as fh:
        np.savez(fh, **d)
    _, planted = load_split_structures("perov_5", "test", root=root)
    assert np.allclose(planted[0].frac_coords, ref[0].frac_coords + 0.125)

    # a changed file (one more row) misses the cache and is parsed afresh
    write_perov5_csvs(tmp_path, _perovskites(7), splits=("test",))
    ids3, third = load_split_structures("perov_5", "test", root=root)
    assert len(ids3) == 7 and _same(third[0], ref[0])
    assert len(list((isolated_cache / "reference" / "splits").glob("*.npz"))) == 2
    assert refcache.CACHE_VERSION >= 1


def test_split_cache_off_by_environment(tmp_path, isolated_cache, monkeypatch):
    from dpcdvae.eval.io import load_split_structures

    monkeypatch.setenv("DPCDVAE_NO_REFERENCE_CACHE", "1")
    root = write_perov5_csvs(tmp_path, _perovskites(3), splits=("test",))
    load_split_structures("perov_5", "test", root=root)
    assert not (isolated_cache / "reference").exists()


def test_split_that_cannot_be_stored_exactly_is_not_cached(tmp_path, isolated_cache):
    from dpcdvae.eval.refcache import cached_split

    csv = tmp_path / "x.csv"
    csv.write_text("material_id,cif\n")
    disordered = Structure(Lattice.cubic(4.0), [{"Sr": 0.5, "Ba": 0.5}], [[0, 0, 0]])
    calls = []

    def parse():
        calls.append(1)
        return ["a", "b"], [disordered, None]

    for _ in range(2):
        ids, structs = cached_split(csv, parse)
        assert ids == ["a", "b"] and structs[1] is None
    assert len(calls) == 2  # parsed both times: nothing stored


def test_cached_values_keyed_by_structures_and_tag(isolated_cache):
    from dpcdvae.eval.refcache import cached_values

    structs = list(_perovskites(4).values())
    calls = []

    def compute(ss):
        calls.append(len(ss))
        return np.array([s.volume for s in ss])

    v1 = cached_values(structs, "model A", compute)
    v2 = cached_values(structs, "model A", compute)
    assert calls == [4] and np.array_equal(v1, v2) and np.allclose(v1, [s.volume for s in structs])
    cached_values(structs, "model B", compute)           # another predictor
    cached_values(structs[:3], "model A", compute)       # other structures
    assert calls == [4, 4, 3]

    def wrong_length(ss):
        calls.append(-1)
        return np.zeros(1)

    for _ in range(2):
        assert cached_values(structs, "model C", wrong_length).shape == (1,)
    assert calls[-2:] == [-1, -1]  # a wrong-length answer is never stored


def test_generation_metrics_reuse_reference_predictions(isolated_cache):
    """The test split's E_form is predicted once per (structures, predictor tag); the generated side every time,
    and the W1 is the same with or without the cache."""
    from dpcdvae.eval.generation import generation_metrics

    test = list(_perovskites(6).values())
    gen = list(_perovskites(3).values())
    seen = []

    def prop(structures, dataset):
        seen.append(len(structures))
        return np.array([s.density for s in structures])

    kw = dict(n_workers=1, progress=False, n_property_samples=3, property_fn=prop, cache_generated=False)
    m1 = generation_metrics(gen, test, "perov_5", property_cache_tag="density v1", **kw)
    m2 = generation_metrics(gen, test, "perov_5", property_cache_tag="density v1", **kw)
    m3 = generation_metrics(gen, test, "perov_5", cache=False, **kw)
    assert seen == [3, 6, 3, 3, 6]
    assert m1["w1_eform"] == pytest.approx(m2["w1_eform"]) == pytest.approx(m3["w1_eform"])
    # no tag, no cache: an unnamed predictor is never confused with another
    seen.clear()
    generation_metrics(gen, test, "perov_5", **kw)
    generation_metrics(gen, test, "perov_5", **kw)
    assert seen == [3, 6, 3, 6]


def test_real_split_cache_equals_parse(shared_data_dir, isolated_cache):
    from dpcdvae.eval.io import load_split_structures

    ids0, ref = load_split_structures("carbon_24", "test", root=shared_data_dir, limit=40, cache=False)
    load_split_structures("carbon_24", "test", root=shared_data_dir, limit=40)
    ids1, cached = load_split_structures("carbon_24", "test", root=shared_data_dir, limit=40)
    assert ids0 == ids1 and all(_same(a, b) for a, b in zip(ref, cached))
