"""Known cases for the evaluation metrics (validity, matching, coverage, Wasserstein). Fast: tiny structures."""
import math
import warnings

import numpy as np
import pytest

pytest.importorskip("pymatgen")
pytest.importorskip("smact")
from pymatgen.core import Lattice, Structure  # noqa: E402

from dpcdvae.eval.generation import (coverage, composition_invalid_reason, composition_validity,  # noqa: E402
                                     generation_metrics, property_statistics, structure_invalid_reason,
                                     structure_validity, validity, wasserstein)
from dpcdvae.eval.reconstruction import reconstruction_metrics  # noqa: E402


def rocksalt(a=5.64, el=("Na", "Cl")):
    return Structure(Lattice.cubic(a), [el[0], el[1]], [[0, 0, 0], [0.5, 0.5, 0.5]])


def four_atom():
    lat = Lattice.orthorhombic(4.0, 5.0, 6.0)
    return Structure(lat, ["Na", "Cl", "K", "Br"],
                     [[0.1, 0.2, 0.3], [0.6, 0.5, 0.7], [0.3, 0.8, 0.1], [0.85, 0.1, 0.55]])


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DPCDVAE_CACHE", str(tmp_path / "cache"))
    warnings.filterwarnings("ignore")


# ---------------------------------------------------------------- structure validity
def test_atoms_0p3_apart_invalid():
    s = Structure(Lattice.cubic(5.0), ["C", "C"], [[0, 0, 0], [0.06, 0, 0]])  # 0.3 A apart
    assert not structure_validity(s)
    assert "0.3 A apart" in structure_invalid_reason(s)


def test_periodic_image_distance_counts():
    # 0.4 A apart only through the periodic boundary (frac 0.02 and 0.98 along a 10 A axis)
    s = Structure(Lattice.cubic(10.0), ["C", "C"], [[0.02, 0, 0], [0.98, 0, 0]])
    assert not structure_validity(s)
    ok = Structure(Lattice.cubic(10.0), ["C", "C"], [[0.0, 0, 0], [0.06, 0, 0]])  # 0.6 A
    assert structure_validity(ok)


def test_self_image_check_and_cdvae_mode():
    s = Structure(Lattice.orthorhombic(0.4, 10, 10), ["C"], [[0, 0, 0]])  # atom 0.4 A from its own image
    assert not structure_validity(s)
    assert structure_validity(s, self_images=False)  # CDVAE's check ignores self-images


def test_small_volume_nan_none_empty_invalid():
    assert not structure_validity(Structure(Lattice.cubic(0.3), ["C"], [[0, 0, 0]]))  # 0.027 A^3
    nan = Structure(Lattice(np.full((3, 3), np.nan)), ["C"], [[0, 0, 0]])
    assert "non-finite" in structure_invalid_reason(nan)
    assert structure_invalid_reason(None) == "no structure"
    assert structure_validity(rocksalt())


# ---------------------------------------------------------------- composition validity
def test_comp_validity_known_cases():
    assert composition_validity(rocksalt())          # NaCl neutral
    assert composition_validity("NaCl")
    assert not composition_validity("NaCl2")         # Na+ Cl- in 1:2 cannot be neutral
    assert composition_validity("CuZn3")             # all metals (alloy) -> valid
    assert composition_validity("C24")               # single element -> valid
    assert composition_validity("Fe2O3")
    assert composition_validity({"Sr": 2, "Ti": 2, "O": 6})  # gcd-reduced SrTiO3
    assert composition_validity("CaTiO3")
    assert not composition_validity(None)
    assert composition_invalid_reason(None) == "no composition"


# ---------------------------------------------------------------- reconstruction
def test_identical_structures_match_with_zero_rms():
    s = four_atom()
    m = reconstruction_metrics([s.copy()], [s], n_workers=1, progress=False)
    assert m["match_rate"] == 100.0 and m["n_matched"] == 1
    assert m["delta_rms"] == pytest.approx(0.0, abs=1e-8)
    assert m["lattice_length_rmse"] == pytest.approx(0.0, abs=1e-8)


def test_perturbed_copy_expected_rms():
    s = four_atom()
    u = np.array([[0.05, 0, 0], [0, -0.04, 0.02], [0.01, 0.03, -0.06], [-0.02, 0.0, 0.04]])  # A
    p = Structure(s.lattice, s.species, s.cart_coords + u, coords_are_cartesian=True)
    # definition: best rigid translation removed, RMS over atoms, normalised by (V/N)^(1/3)
    du = u - u.mean(axis=0)
    expected = math.sqrt(float((du ** 2).sum(axis=1).mean())) / (s.volume / len(s)) ** (1 / 3)
    m = reconstruction_metrics([p], [s], n_workers=1, progress=False)
    assert m["n_matched"] == 1
    assert m["delta_rms"] == pytest.approx(expected, rel=1e-6)
    assert m["per_structure"][0]["max_dist"] == pytest.approx(
        float(np.sqrt((du ** 2).sum(axis=1)).max()) / (s.volume / len(s)) ** (1 / 3), rel=1e-6)


def test_invalid_and_missing_predictions_are_misses():
    s = rocksalt()
    bad = Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.05, 0, 0]])  # 0.28 A apart
    nacl2 = Structure(Lattice.cubic(5.64), ["Na", "Cl", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0, 0]])
    m = reconstruction_metrics([s.copy(), None, bad, nacl2], [s, s, s, s], n_workers=1, progress=False,
                               read_errors=[None, "unreadable CIF: boom", None, None])
    assert m["n_targets"] == 4 and m["n_matched"] == 1 and m["n_valid"] == 1
    assert m["match_rate"] == pytest.approx(25.0)
    reasons = [r["invalid_reason"] for r in m["per_structure"]]
    assert reasons[0] is None and reasons[1].startswith("unreadable CIF")
    assert "apart" in reasons[2] and reasons[3].startswith("composition")
    m2 = reconstruction_metrics([s.copy(), None, bad, nacl2], [s] * 4, n_workers=1, progress=False,
                                require_comp_valid=False)
    assert m2["n_valid"] == 2


def test_recon_bad_inputs_raise_clearly():
    with pytest.raises(ValueError, match="no targets"):
        reconstruction_metrics([], [])
    with pytest.raises(ValueError, match="predictions for"):
        reconstruction_metrics([None], [rocksalt(), rocksalt()])
    m = reconstruction_metrics([None], [rocksalt()], progress=False)
    assert m["match_rate"] == 0.0 and math.isnan(m["delta_rms"])


def test_recon_parallel_workers_same_result():
    s = four_atom()
    preds = [s.copy() for _ in range(6)]
    m1 = reconstruction_metrics(preds, [s] * 6, n_workers=1, progress=False, chunk_size=2)
    m2 = reconstruction_metrics(preds, [s] * 6, n_workers=2, progress=False, chunk_size=2)
    assert m1["match_rate"] == m2["match_rate"] == 100.0


# ---------------------------------------------------------------- coverage / W1
def test_cov_of_fingerprint_set_against_itself_is_100():
    rng = np.random.default_rng(0)
    S, C = rng.random((20, 61)), rng.normal(size=(20, 132)) * 10
    cov = coverage(S, C, S, C, 0.2, 4.0)
    assert cov["cov_r"] == 100.0 and cov["cov_p"] == 100.0
    assert cov["amsd_recall"] == 0.0


def test_cov_independent_nearest_neighbours_and_failures():
    # gen 0 is close in structure, gen 1 close in composition: each test crystal is covered (independent NNs)
    ref_s, ref_c = np.zeros((1, 2)), np.zeros((1, 2))
    gen_s = np.array([[0.1, 0.0], [5.0, 0.0]])
    gen_c = np.array([[9.0, 0.0], [1.0, 0.0]])
    cov = coverage(gen_s, gen_c, ref_s, ref_c, 0.2, 4.0)
    assert cov["cov_r"] == 100.0 and cov["cov_p"] == 0.0
    # a generated crystal whose fingerprint failed (NaN) covers nothing and counts in the COV-P denominator
    S = np.array([[0.0, 0.0], [np.nan, np.nan]])
    C = np.zeros((2, 2))
    cov = coverage(S, C, S[:1], C[:1], 0.2, 4.0)
    assert cov["cov_p"] == 50.0 and cov["cov_r"] == 100.0 and cov["n_gen_fp_failed"] == 1


def test_cov_breakdown_names_the_limiting_criterion():
    # three reference crystals: one covered on both counts, one only by structure, one only by composition
    ref_s = np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]])
    ref_c = np.array([[0.0, 0.0], [50.0, 0.0], [0.0, 0.0]])
    gen_s = np.array([[0.0, 0.0], [1.0, 0.0], [9.0, 9.0]])
    gen_c = np.array([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    cov = coverage(gen_s, gen_c, ref_s, ref_c, 0.2, 4.0)
    assert cov["cov_r_struct"] == pytest.approx(200 / 3)   # refs 0 and 1
    assert cov["cov_r_comp"] == pytest.approx(200 / 3)     # refs 0 and 2
    assert cov["cov_r"] == pytest.approx(100 / 3)          # both: ref 0 only
    assert cov["cov_p_struct"] == pytest.approx(200 / 3) and cov["cov_p_comp"] == 100.0
    assert cov["cov_p"] == pytest.approx(200 / 3)


def test_w1_self_zero_and_errors():
    x = np.random.default_rng(1).random(100)
    assert wasserstein(x, x) == 0.0
    assert wasserstein([0.0], [1.0]) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        wasserstein([], [1.0])
    with pytest.raises(ValueError):
        wasserstein([np.nan], [1.0])


def test_property_statistics_unavailable_is_text_not_number():
    class PropertyModelUnavailable(RuntimeError):
        pass

    def fn(structs, ds):
        raise PropertyModelUnavailable("no checkpoint here")

    s = [rocksalt(a) for a in (5.5, 5.6, 5.7)]
    out = property_statistics(s, s, "perov_5", n_samples=1000, property_fn=fn)
    assert out["w1_density"] == 0.0 and out["w1_n_elem"] == 0.0
    assert out["w1_eform"] == "unavailable: no checkpoint here"
    out = property_statistics(s, s, "perov_5", property_fn=lambda st, ds: np.array([x.density for x in st]))
    assert out["w1_eform"] == 0.0 and out["n_property_samples"] == 3


def test_validity_handles_none_and_counts():
    s = rocksalt()
    v = validity([s, None, Structure(Lattice.cubic(5), ["Na", "Cl", "Cl"], [[0, 0, 0], [.5, .5, .5], [.5, 0, 0]])],
                 read_errors=[None, "unreadable CIF: x", None])
    assert v["struct_valid"].tolist() == [True, False, True]
    assert v["comp_valid"].tolist() == [True, False, False]
    assert v["struct_reason"][1] == "unreadable CIF: x"


def test_generation_metrics_set_against_itself():
    structs = [rocksalt(), rocksalt(4.2, ("Cs", "Cl")),
               Structure(Lattice.cubic(5.43), ["Si"] * 2, [[0, 0, 0], [0.25, 0.25, 0.25]]).get_primitive_structure()]
    m = generation_metrics(structs, structs, "perov_5", n_workers=1, progress=False,
                           property_fn=lambda st, ds: np.array([x.density for x in st]))
    assert m["struct_validity"] == 100.0 and m["comp_validity"] == 100.0
    assert m["cov_r"] == 100.0 and m["cov_p"] == 100.0
    assert m["w1_density"] == 0.0 and m["w1_n_elem"] == 0.0 and m["w1_eform"] == 0.0
    assert m["comp_scaler"].startswith("fitted on test split")
    # unreadable samples are invalid, do not cover, and stay in the denominators
    m2 = generation_metrics(structs + [None], structs, "perov_5", n_workers=1, progress=False,
                            compute_eform=False, read_errors=[None, None, None, "unreadable CIF: x"])
    assert m2["struct_validity"] == pytest.approx(75.0) and m2["cov_p"] == pytest.approx(75.0)
    assert m2["cov_r"] == 100.0 and m2["w1_eform"].startswith("unavailable")
    with pytest.raises(ValueError):
        generation_metrics([], structs, "perov_5")


def test_fingerprint_cache_and_resume(tmp_path):
    import os

    from dpcdvae.eval.fingerprints import cache_root, struct_fp_cache_tag, structure_fingerprints, structures_hash

    structs = [rocksalt(a) for a in (5.5, 5.6, 5.7)] + [None]
    assert cache_root() == tmp_path / "cache" / "fingerprints"
    fps, errs = structure_fingerprints(structs, n_workers=1, chunk_size=2, progress=False)
    assert fps.shape == (4, 61) and np.isfinite(fps[:3]).all() and np.isnan(fps[3]).all()
    assert errs[:3] == [None] * 3 and "no structure" in errs[3]
    key = structures_hash(structs, tag=struct_fp_cache_tag(2))
    assert (cache_root() / f"{key}.npz").exists()
    fps2, errs2 = structure_fingerprints(structs, n_workers=1, chunk_size=2, progress=False)
    assert np.array_equal(fps, fps2, equal_nan=True) and errs2 == errs
    # resume: a finished chunk on disk is reused, not recomputed
    os.remove(cache_root() / f"{key}.npz")
    parts = cache_root() / f"{key}.parts"
    parts.mkdir()
    np.savez(parts / "chunk_000000.npz", fps=np.full((2, 61), 7.0), errors=np.array(["", ""]))
    fps3, _ = structure_fingerprints(structs, n_workers=1, chunk_size=2, progress=False)
    assert (fps3[:2] == 7.0).all() and np.allclose(fps3[2], fps[2])
    assert not parts.exists()


def test_parallel_map_two_workers():
    from dpcdvae.eval.fingerprints import parallel_map

    assert parallel_map(abs, list(range(-7, 7)), n_workers=2, chunk_size=3, progress=False) == \
        [abs(x) for x in range(-7, 7)]
