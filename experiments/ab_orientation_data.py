"""Does a Perov-5 crystal's composition say which cation is on the A site? (A fact about the data, no model.)

For every ABX3 cell (the A-B pair: the two atoms (1/2, 1/2, 1/2) apart in fractional coordinates, minimum image,
within 0.2 per axis; B is the one with the shorter distance to its nearest neighbour, its octahedral anion at a/2,
A has 12 anions at a/sqrt(2)) the script records the element on A and on B. Then, on the first N test crystals with
two different cations, it scores the best predictors that see only the composition, fitted on the training split:

* ``pair``: for the unordered pair {A, B}, the orientation seen most often in training (ties and unseen pairs: a coin,
  counted as 1/2);
* ``element``: the cation that is more often on A in training (Laplace-smoothed share) goes to A.

If both are near 50 %, the orientation is not in the composition: a reconstruction must carry it in z. Prints one
JSON line.

    python experiments/ab_orientation_data.py --n 1000
"""
from __future__ import annotations

import argparse
import collections
import json
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # for benchmarks/_common.py
from _common import half_diagonal_pairs  # noqa: E402


def a_b_elements(structure, tol: float = 0.2):
    """``(element on A, element on B)`` of an ABX3 cell, or ``None`` when no atom pair is (1/2, 1/2, 1/2) apart."""
    pairs = half_diagonal_pairs(structure.frac_coords, tol)
    if not pairs:
        return None
    i, j = pairs[0]
    dist = structure.distance_matrix
    near = [np.min(np.delete(dist[k], k)) for k in (i, j)]
    a, b = (i, j) if near[0] > near[1] else (j, i)
    return str(structure[a].specie), str(structure[b].specie)


def main():
    import pandas as pd
    from pymatgen.core import Structure

    from dpcdvae.data.locator import split_path

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=1000, help="the first N test crystals")
    a = p.parse_args()
    warnings.filterwarnings("ignore")
    read = lambda split, n=None: [Structure.from_str(c, fmt="cif")  # noqa: E731
                                  for c in pd.read_csv(split_path("perov_5", split)).cif[:n]]
    as_a, as_b, pair = collections.Counter(), collections.Counter(), collections.Counter()
    n_train = n_both = 0
    for s in read("train"):
        r = a_b_elements(s)
        if r is None or r[0] == r[1]:
            continue
        n_train += 1
        as_a[r[0]] += 1
        as_b[r[1]] += 1
        pair[r] += 1
    unordered = {tuple(sorted(k)) for k in pair}
    n_both = sum(1 for u in unordered if pair[u] and pair[u[::-1]])
    score = lambda e: (as_a[e] + 1) / (as_a[e] + as_b[e] + 2)  # noqa: E731
    n = ok_pair = ok_el = seen = 0
    for s in read("test", a.n):
        r = a_b_elements(s)
        if r is None or r[0] == r[1]:
            continue
        A, B = r
        n += 1
        ok_el += score(A) > score(B)
        fwd, rev = pair[(A, B)], pair[(B, A)]
        seen += (fwd + rev) > 0
        ok_pair += 1.0 if fwd > rev else 0.0 if fwd < rev else 0.5
    print(json.dumps({"bench": "ab_orientation_data", "n_train_cells": n_train,
                      "train_cation_pairs": len(unordered), "train_pairs_in_both_orientations": n_both,
                      "n_test": n, "test_pairs_seen_in_train": seen,
                      "pair_predictor_right_pct": round(100 * ok_pair / max(n, 1), 1),
                      "element_predictor_right_pct": round(100 * ok_el / max(n, 1), 1)}))


if __name__ == "__main__":
    main()
