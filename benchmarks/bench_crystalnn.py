"""CDVAE's CrystalNN graph (paper-config encoder graph, E_form predictor input): fast path vs pymatgen per-site.

``dpcdvae.structures.graph.crystalnn_edges(s, fast=True)`` tessellates once per structure; ``fast=False`` is pymatgen's own
per-site path (one tessellation per site). Both run here on the same structures (first ``--n`` rows of Carbon-24 val
and Perov-5 test from the shared data), alternating, best of ``--repeats``; the edge sets are checked to be equal.

    OMP_NUM_THREADS=1 python3 benchmarks/bench_crystalnn.py --n 40

Final line: JSON with structures/s per path and dataset and the speed-up (a ratio measured in one run).
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, print_json  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=40, help="structures per dataset (default 40)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--data-root", default=None, help="folder with carbon_24/ and perov_5/ (default: the locator's)")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    from dpcdvae.data.locator import DatasetNotFoundError
    from dpcdvae.eval.io import load_split_structures
    from dpcdvae.structures.graph import crystalnn_edges

    res = {"benchmark": "bench_crystalnn", "n": args.n, **machine_info()}
    for ds, split in (("carbon_24", "val"), ("perov_5", "test")):
        try:
            _, structs = load_split_structures(ds, split, root=args.data_root, limit=args.n)
        except (DatasetNotFoundError, FileNotFoundError) as exc:
            res[ds] = f"skipped: {exc}"[:200]
            continue
        structs = [s for s in structs if s is not None]
        rates = {True: 0.0, False: 0.0}
        for _ in range(args.repeats):
            for fast in (False, True):
                t = time.perf_counter()
                graphs = [crystalnn_edges(s, fast=fast) for s in structs]
                rates[fast] = max(rates[fast], len(structs) / (time.perf_counter() - t))
                if fast:
                    fast_graphs = graphs
                else:
                    ref_graphs = graphs
        same = all(a[0].tolist() == b[0].tolist() and a[1].tolist() == b[1].tolist()
                   for a, b in zip(fast_graphs, ref_graphs))
        res[ds] = {"per_site_per_s": round(rates[False], 2), "fast_per_s": round(rates[True], 2),
                   "speedup": round(rates[True] / rates[False], 2), "identical_edges": same,
                   "mean_atoms": round(sum(len(s) for s in structs) / len(structs), 2)}
    print_json(res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
