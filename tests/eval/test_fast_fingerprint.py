"""The fast CrystalNN 'ops' fingerprint (one Voronoi tessellation per structure) equals matminer's per-site path.

Run alone (two CPU cores are busy elsewhere):
    OMP_NUM_THREADS=1 python3 -m pytest -q tests/eval/test_fast_fingerprint.py -p no:xdist
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matminer")
pytest.importorskip("pymatgen")

from pymatgen.core import Lattice, Structure  # noqa: E402

from dpcdvae.eval import fingerprints as F  # noqa: E402

TOL = 1e-8


def _both(structure):
    """(fast, matminer) fingerprints and how many sites the fast path served from its one tessellation."""
    cnn = F._fast_featurizer().cnn
    hits0 = cnn.cache_hits
    fast = F.crystalnn_fingerprint(structure, method="fast")
    hits = cnn.cache_hits - hits0
    ref = F.crystalnn_fingerprint(structure, method="matminer")
    return fast, ref, hits


def _nacl():
    return Structure(Lattice.cubic(5.64), ["Na"] * 4 + ["Cl"] * 4,
                     [[0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0],
                      [.5, .5, .5], [.5, 0, 0], [0, .5, 0], [0, 0, .5]])


def _diamond():
    return Structure(Lattice.cubic(3.567), ["C"] * 8,
                     [[0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0],
                      [.25, .25, .25], [.25, .75, .75], [.75, .25, .75], [.75, .75, .25]])


def _srtio3_supercell():
    s = Structure(Lattice.cubic(3.905), ["Sr", "Ti", "O", "O", "O"],
                  [[0, 0, 0], [.5, .5, .5], [.5, .5, 0], [.5, 0, .5], [0, .5, .5]])
    s.make_supercell([2, 1, 1])
    return s


def _random_carbon(seed: int = 3, n: int = 8):
    rng = np.random.default_rng(seed)
    for _ in range(10000):
        lat = Lattice.from_parameters(*(rng.uniform(3.3, 4.3, 3)), *rng.uniform(75, 105, 3))
        s = Structure(lat, ["C"] * n, rng.random((n, 3)))
        dm = s.distance_matrix + np.eye(n) * 10
        if dm.min() > 1.3 and min(lat.abc) > 1.3:
            return s
    raise RuntimeError("no random carbon cell with sane distances found")


def _one_atom():
    return Structure(Lattice.from_parameters(2.5, 2.6, 2.7, 80, 95, 100), ["Cu"], [[0.1, 0.2, 0.3]])


BUILT = {
    "NaCl rock salt": _nacl,
    "diamond": _diamond,
    "SrTiO3 2x1x1": _srtio3_supercell,
    "random 8-atom carbon": _random_carbon,
    "1-atom cell": _one_atom,
}


@pytest.mark.parametrize("name", list(BUILT))
def test_fast_equals_matminer_on_built_structures(name):
    s = BUILT[name]()
    fast, ref, hits = _both(s)
    assert fast.shape == ref.shape == (61,)
    assert np.isfinite(ref).all() and np.isfinite(fast).all()
    diff = float(np.abs(fast - ref).max())
    assert diff <= TOL, f"{name}: max |fast - matminer| = {diff:.3g}"
    if len(s) > 1:
        # the fast path must really be a different path: its single tessellation served every site
        assert hits == len(s), f"{name}: only {hits}/{len(s)} sites served by the one tessellation"
    else:
        assert hits == 0  # 1-atom cells go through the per-site call


def test_fast_path_wraps_fractional_coordinates():
    """Coordinates outside [0, 1) (pymatgen's all-site path would mix wrapped / unwrapped sites) still agree."""
    s = _random_carbon(seed=11)
    shifted = Structure(s.lattice, s.species, s.frac_coords + np.array([-0.7, 1.3, 0.45]))
    assert (shifted.frac_coords < 0).any() and (shifted.frac_coords >= 1).any()
    fast, ref, hits = _both(shifted)
    assert hits == len(s)
    assert float(np.abs(fast - ref).max()) <= TOL
    assert float(np.abs(fast - F.crystalnn_fingerprint(s, method="matminer")).max()) <= TOL


def test_comparison_is_sensitive():
    """The equality check can fail: a 2 % strain of the random cell moves the fingerprint well beyond TOL."""
    s = _random_carbon()
    strained = Structure(Lattice(s.lattice.matrix * np.array([1.02, 1.0, 1.0])[:, None]), s.species, s.frac_coords)
    d = float(np.abs(F.crystalnn_fingerprint(strained) - F.crystalnn_fingerprint(s, method="matminer")).max())
    assert d > 1e3 * TOL


def test_method_validation_and_worker():
    s = _nacl()
    with pytest.raises(ValueError, match="unknown fingerprint method"):
        F.crystalnn_fingerprint(s, method="nope")
    fp, err = F._struct_fp_worker(F.pack(s))
    fp_m, err_m = F._struct_fp_worker(F.pack(s), method="matminer")
    assert err is None and err_m is None and float(np.abs(fp - fp_m).max()) <= TOL
    fp_none, err_none = F._struct_fp_worker(None)
    assert np.isnan(fp_none).all() and "no structure" in err_none
    assert F.struct_fp_cache_tag(16, "fast") != F.struct_fp_cache_tag(16, "matminer")


def test_structure_fingerprints_method_and_cache(tmp_path):
    structs = [_nacl(), _diamond(), None]
    fa, ea = F.structure_fingerprints(structs, n_workers=1, chunk_size=2, progress=False, cache_dir=tmp_path)
    fm, em = F.structure_fingerprints(structs, n_workers=1, chunk_size=2, progress=False, cache_dir=tmp_path,
                                      method="matminer")
    assert ea[:2] == [None, None] and em[:2] == [None, None] and ea[2] and em[2]
    assert float(np.nanmax(np.abs(fa - fm))) <= TOL
    assert len(list(tmp_path.glob("*.npz"))) == 2  # one cache file per method


# ----------------------------------------------------------------------------------------------------------------
# real structures: first 30 rows of carbon_24/val.csv and perov_5/test.csv
# ----------------------------------------------------------------------------------------------------------------
def _shared_data_root() -> Path | None:
    try:
        from dpcdvae.data.locator import candidate_roots

        roots = [p for p, _ in candidate_roots()]
    except Exception:
        roots = []
    roots += [Path("/work/shared/data"), Path.cwd().parent / "shared" / "data",
              Path(__file__).resolve().parents[3] / "shared" / "data"]
    for r in roots:
        if (r / "carbon_24" / "val.csv").is_file() and (r / "perov_5" / "test.csv").is_file():
            return r
    return None


def _real_rows(dataset: str, split: str, limit: int) -> list:
    """The first ``limit`` structures of a shared-data split (skips the test when the data are absent)."""
    root = _shared_data_root()
    if root is None:
        pytest.skip("shared data not found: need carbon_24/val.csv and perov_5/test.csv under $DPCDVAE_DATA, "
                    "./data, ../shared/data or /work/shared/data")
    from dpcdvae.eval.io import load_split_structures

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, structs = load_split_structures(dataset, split, root=root, limit=limit)
    return [s for s in structs if s is not None]


@pytest.mark.parametrize("dataset,split", [("carbon_24", "val"), ("perov_5", "test")])
def test_fast_equals_matminer_on_real_rows(dataset, split):
    structs = _real_rows(dataset, split, 30)
    assert len(structs) == 30
    worst, hits, sites = 0.0, 0, 0
    for i, s in enumerate(structs):
        fast, ref, h = _both(s)
        d = float(np.abs(fast - ref).max())
        assert d <= TOL, f"{dataset} {split} row {i}: max |fast - matminer| = {d:.3g}"
        worst, hits, sites = max(worst, d), hits + h, sites + len(s)
    print(f"{dataset}/{split}: 30 structures, max |fast - matminer| = {worst:.3g}, "
          f"{hits}/{sites} sites from the single tessellation")
    assert hits >= 0.9 * sites  # the fast path is really taken on real data


# ----------------------------------------------------------------------------------------------------------------
# CDVAE's CrystalNN graph (encoder graph of the paper config, E_form predictor) through the same fast path
# ----------------------------------------------------------------------------------------------------------------
def _edge_set(structure, fast):
    from dpcdvae.structures.graph import crystalnn_edges

    ei, off = crystalnn_edges(structure, fast=fast)
    return sorted(zip(ei[0].tolist(), ei[1].tolist(), map(tuple, off.tolist())))


@pytest.mark.parametrize("name", [n for n in BUILT if n != "1-atom cell"])
def test_crystalnn_graph_fast_equals_pymatgen(name):
    s = BUILT[name]()
    fast, ref = _edge_set(s, True), _edge_set(s, False)
    assert len(ref) > 0 and fast == ref


def test_crystalnn_graph_fast_path_is_taken():
    s = _diamond()
    cnn = F.fast_crystalnn(distance_cutoffs=None, x_diff_weight=-1, porous_adjustment=False)
    assert cnn.prepare(s) == len(s)
    try:
        a = [sorted((n["site_index"], tuple(n["image"])) for n in cnn.get_nn_info(s, i)) for i in range(len(s))]
    finally:
        cnn.release()
    assert cnn.cache_hits == len(s) and cnn.cache_misses == 0
    b = [sorted((n["site_index"], tuple(n["image"])) for n in cnn.get_nn_info(s, i)) for i in range(len(s))]
    assert a == b and cnn.cache_misses == len(s)  # after release: pymatgen's per-site path, same answer


@pytest.mark.parametrize("dataset,split", [("carbon_24", "val"), ("perov_5", "test")])
def test_crystalnn_graph_fast_equals_pymatgen_on_real_rows(dataset, split):
    structs = _real_rows(dataset, split, 20)
    assert len(structs) == 20
    for i, s in enumerate(structs):
        assert _edge_set(s, True) == _edge_set(s, False), f"{dataset} {split} row {i}: CrystalNN graphs differ"
