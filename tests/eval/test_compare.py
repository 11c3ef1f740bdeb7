"""Two reconstruction runs compared crystal by crystal (dpcdvae.eval.compare, experiments/compare_recon_runs.py)."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from dpcdvae.eval.compare import compare_runs, paired_difference, parse_bands, read_per_structure


def test_paired_difference_counts_and_standard_error():
    a = [True] * 50 + [True] * 7 + [False] * 3 + [False] * 40  # 57 matched
    b = [True] * 50 + [False] * 7 + [True] * 3 + [False] * 40  # 53 matched
    r = paired_difference(a, b)
    assert (r["n"], r["only_a"], r["only_b"]) == (100, 7, 3)
    assert r["rate_a"] == pytest.approx(57.0) and r["rate_b"] == pytest.approx(53.0)
    assert r["diff_points"] == pytest.approx(4.0)
    d = np.array(a, float) - np.array(b, float)
    assert r["se_points"] == pytest.approx(100 * d.std(ddof=1) / math.sqrt(len(d)))
    same = paired_difference(a, a)
    assert same["diff_points"] == 0.0 and same["se_points"] == 0.0
    with pytest.raises(ValueError, match="same length"):
        paired_difference([True, False], [True])
    with pytest.raises(ValueError, match="no crystals"):
        paired_difference([], [])


def test_parse_bands():
    assert parse_bands("1-8, 9-12,13") == [(1, 8), (9, 12), (13, 13)]
    for bad in ("8-1", "a-b", ""):
        with pytest.raises(ValueError):
            parse_bands(bad)


def _csv(path, rows):
    pd.DataFrame(rows, columns=["material_id", "matched", "n_atoms_target"]).to_csv(path, index=False)
    return path


def test_compare_runs_aligns_by_id_and_splits_by_atom_count(tmp_path):
    a = _csv(tmp_path / "a.csv", [("x1", True, 6), ("x2", False, 6), ("x3", True, 20), ("x4", True, 8)])
    # another order, one crystal missing and one extra
    b = _csv(tmp_path / "b.csv", [("x3", False, 20), ("x2", True, 6), ("x1", True, 6), ("x9", True, 4)])
    r = compare_runs(a, b, bands=[(1, 8), (9, 24)])
    assert r["n"] == 3 and r["n_only_in_a"] == 1 and r["n_only_in_b"] == 1
    assert (r["only_a"], r["only_b"]) == (1, 1)  # x3 only in A, x2 only in B
    small, large = r["bands"]
    assert small == {"atoms": "1-8", "n": 2, "rate_a": 50.0, "rate_b": 100.0}
    assert large["n"] == 1 and large["rate_a"] == 100.0 and large["rate_b"] == 0.0
    with pytest.raises(ValueError, match="share no material id"):
        compare_runs(a, _csv(tmp_path / "c.csv", [("y", True, 5)]))
    with pytest.raises(FileNotFoundError, match="per_structure.csv"):
        read_per_structure(tmp_path / "nowhere")


def test_reconstruct_writes_the_per_crystal_table(demo_root, tmp_path):
    from dpcdvae.workflows import reconstruct_split

    res = reconstruct_split("pretrained:perov_5", out=tmp_path, dataset="demo_synthetic_perovskites", root=str(demo_root), limit=3,
                            sampler="strided_eq7", steps=3, progress=False)
    run = res.out
    per = read_per_structure(run)
    ids = [str(c["id"]) for c in json.loads(open(f"{run}/samples.json").read())["crystals"]]
    assert list(per.index) == ids and int(per["matched"].sum()) == res.metrics["n_matched"]
    assert per["n_atoms_target"].tolist() == [5, 5, 5]
    same = compare_runs(run, run)
    assert same["diff_points"] == 0.0 and same["n"] == 3
