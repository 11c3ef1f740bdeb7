"""Two reconstruction runs of the same crystals compared crystal by crystal: paired difference of the match rates
with its standard error, match rates by atom count, and (``--coordination``) the mean coordination of each run's
valid outputs and of the targets.

Each run is a ``dpcdvae reconstruct --out DIR`` folder (it holds ``per_structure.csv``); for runs made before that
file existed, first score the run with ``dpcdvae evaluate --task recon --samples DIR/samples.extxyz --dataset D
--out DIR_eval`` and pass ``DIR_eval`` (its ``per_structure.csv``) with ``--samples-a/--samples-b DIR`` for the
structures.

    python experiments/compare_recon_runs.py RUN_A RUN_B [--bands 1-8,9-12,13-16,17-24] [--coordination
        --dataset carbon_24 --cutoff 1.75]

Final JSON line: the keys of :func:`dpcdvae.eval.compare.compare_runs` (``diff_points``, ``se_points``, ``bands``)
and, with ``--coordination``, ``coordination`` = {run: mean neighbours per atom within ``--cutoff`` A (periodic
images included), share of outputs in which every atom has exactly 2 neighbours}.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import warnings

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))  # _common.py
from _common import print_json  # noqa: E402

from dpcdvae.eval.compare import compare_runs, parse_bands  # noqa: E402


def coordination(structures, cutoff: float) -> dict:
    """Mean over structures of the mean number of neighbours within ``cutoff`` (A, periodic images included) per
    atom, and the share (%) of structures in which every atom has exactly two neighbours (chains)."""
    means, chains = [], 0
    for s in structures:
        centres = s.get_neighbor_list(cutoff)[0]
        cnt = np.bincount(centres, minlength=len(s))
        means.append(float(cnt.mean()))
        chains += bool((cnt == 2).all())
    n = len(means)
    return {"n": n, "mean_coordination": float(np.mean(means)) if n else float("nan"),
            "all_two_coordinated_pct": 100.0 * chains / n if n else float("nan")}


def _valid_outputs(run: str):
    from pymatgen.core import Structure

    meta = json.load(open(os.path.join(run, "samples.json")))
    out = {}
    for c in meta["crystals"]:
        if c.get("valid") and c.get("cif"):
            out[str(c["id"])] = Structure.from_file(os.path.join(run, c["cif"]))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run_a")
    p.add_argument("run_b")
    p.add_argument("--bands", default="1-8,9-12,13-16,17-20,21-24", help="atom-count bands, e.g. 1-8,9-12")
    p.add_argument("--coordination", action="store_true", help="mean coordination of the valid outputs and targets")
    p.add_argument("--samples-a", default=None, help="folder with samples.json of run A (default: run_a)")
    p.add_argument("--samples-b", default=None, help="folder with samples.json of run B (default: run_b)")
    p.add_argument("--dataset", default=None, help="for the targets' coordination (--coordination)")
    p.add_argument("--split", default="test")
    p.add_argument("--cutoff", type=float, default=1.75, help="neighbour cutoff for --coordination (A)")
    a = p.parse_args(argv)
    warnings.filterwarnings("ignore", module="pymatgen")
    try:
        res = compare_runs(a.run_a, a.run_b, bands=parse_bands(a.bands))
    except (FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"compare_recon_runs: {exc}")
    if a.coordination:
        outs_a = _valid_outputs(a.samples_a or a.run_a)
        outs_b = _valid_outputs(a.samples_b or a.run_b)
        res["coordination"] = {"a": coordination(outs_a.values(), a.cutoff),
                               "b": coordination(outs_b.values(), a.cutoff), "cutoff_A": a.cutoff}
        if a.dataset:
            from dpcdvae.eval import load_split_structures

            ids, targets = load_split_structures(a.dataset, a.split)
            keep = set(outs_a)
            res["coordination"]["targets_of_valid_a"] = coordination(
                [t for i, t in zip(ids, targets) if str(i) in keep], a.cutoff)
    for row in res.get("bands", []):
        print(f"N_a {row['atoms']:>6}: n={row['n']:5d}  A {row['rate_a']:6.2f} %  B {row['rate_b']:6.2f} %")
    print_json(res)


if __name__ == "__main__":
    main()
