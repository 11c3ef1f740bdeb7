"""Preprocessing throughput of the data pipeline (structures per second), cold and cached.

Default: Perov-5 test split (3785 rows), CrystalNN graphs, all CPU cores. The cold run uses a fresh cache directory
(CIF parsing + Niggli reduction + canonical rebuild + CrystalNN in worker processes); the cached run loads the same
split again from the on-disk cache (CSV hashing + torch.load). Also reports how fast ``Data`` items are built.

    python benchmarks/bench_data.py [--dataset perov_5] [--split test] [--graph crystalnn] [--workers N] [--limit N]

The last line printed is JSON: {"bench": "data", "cold_structures_per_s": ..., "cached_structures_per_s": ..., ...}
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="perov_5")
    ap.add_argument("--split", default="test")
    ap.add_argument("--graph", default="crystalnn", choices=["crystalnn", "none"])
    ap.add_argument("--workers", type=int, default=None, help="worker processes (default: os.cpu_count())")
    ap.add_argument("--limit", type=int, default=None, help="only the first N rows")
    ap.add_argument("--root", default=None, help="data root (default: the data locator)")
    args = ap.parse_args(argv)

    cache = tempfile.mkdtemp(prefix="dpcdvae-bench-cache-")
    os.environ["DPCDVAE_CACHE"] = cache
    try:
        from dpcdvae.data import load_split

        kw = dict(root=args.root, graph=args.graph, num_workers=args.workers, limit=args.limit, progress=False)
        def cpu_s() -> float:  # this process + reaped worker processes (user + system CPU seconds)
            a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
            return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime

        c0, t0 = cpu_s(), time.perf_counter()
        cold = load_split(args.dataset, args.split, **kw)
        t_cold, c_cold = time.perf_counter() - t0, cpu_s() - c0
        assert not cold.from_cache
        t0 = time.perf_counter()
        warm = load_split(args.dataset, args.split, **kw)
        t_cached = time.perf_counter() - t0
        assert warm.from_cache and len(warm) == len(cold)
        t0 = time.perf_counter()
        for i in range(len(warm)):
            warm[i]
        t_items = time.perf_counter() - t0
        n = len(cold)
        result = {
            "bench": "data",
            "dataset": args.dataset,
            "split": args.split,
            "n": n,
            "skipped": len(cold.skipped),
            "graph": args.graph,
            "workers": args.workers or os.cpu_count(),
            "cold_s": round(t_cold, 3),
            "cached_s": round(t_cached, 4),
            "cold_structures_per_s": round(n / t_cold, 1),
            # CPU time per structure is insensitive to other load on a shared machine:
            # expected cold throughput on W idle cores ~ W * 1000 / cold_cpu_ms_per_structure
            "cold_cpu_ms_per_structure": round(1000 * c_cold / n, 2),
            "cached_structures_per_s": round(n / t_cached, 1),
            "data_items_per_s": round(n / t_items, 1),
            "cpu_count": os.cpu_count(),
            "load_avg_1min": round(os.getloadavg()[0], 2),
            "python": platform.python_version(),
        }
        print(f"{args.dataset}/{args.split}: {n} crystals; cold {t_cold:.1f} s, cached {t_cached:.3f} s",
              file=sys.stderr)
        print(json.dumps(result))
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
