"""CrystalNN 'ops' structure fingerprints: ``method="fast"`` against ``method="vector"`` on the same real crystals.

For each dataset (default Perov-5 and Carbon-24, test split, first ``--n`` rows) both methods of
:func:`dpcdvae.eval.fingerprints.crystalnn_fingerprint` run in this process, interleaved crystal by crystal (so that
load from other jobs hits both alike), after one warm-up crystal each. Reported per dataset: crystals per second of
each method, the speed-up (vector / fast rate), the max abs difference of the fingerprints, how many order
parameters the vector path computed itself and how many it sent to pymatgen (branch-threshold geometries,
:data:`dpcdvae.eval.order_params.COUNTERS`), and crystals that raised. The last line printed is one JSON object.

    OMP_NUM_THREADS=1 python benchmarks/bench_fingerprints.py --n 100
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_dataset(dataset: str, split: str, n: int) -> dict:
    """Time both methods on the first ``n`` parseable crystals of ``dataset/split``; a dict of figures."""
    from dpcdvae.eval import fingerprints as F
    from dpcdvae.eval import order_params as O
    from dpcdvae.eval.io import load_split_structures

    _, structs = load_split_structures(dataset, split, limit=n)
    structs = [s for s in structs if s is not None][:n]
    F.crystalnn_fingerprint(structs[0], method="fast")  # warm-up: featurizers, imports
    F.crystalnn_fingerprint(structs[0], method="vector")
    O.reset_counters()
    t_fast = t_vec = 0.0
    worst = 0.0
    errors = {"fast": 0, "vector": 0}
    n_sites = 0
    for s in structs:
        n_sites += len(s)
        a = b = None
        t0 = time.perf_counter()
        try:
            a = F.crystalnn_fingerprint(s, method="fast")
        except Exception:
            errors["fast"] += 1
        t1 = time.perf_counter()
        try:
            b = F.crystalnn_fingerprint(s, method="vector")
        except Exception:
            errors["vector"] += 1
        t2 = time.perf_counter()
        t_fast += t1 - t0
        t_vec += t2 - t1
        if a is not None and b is not None:
            worst = max(worst, float(np.abs(a - b).max()))
    cnt = O.counters()
    k = len(structs)
    return {
        f"{dataset}_crystals": k,
        f"{dataset}_sites": n_sites,
        f"{dataset}_fast_per_s": round(k / t_fast, 3),
        f"{dataset}_vector_per_s": round(k / t_vec, 3),
        f"{dataset}_speedup": round(t_fast / t_vec, 3),
        f"{dataset}_max_abs_diff": worst,
        f"{dataset}_vector_ops": cnt["ops_vector"],
        f"{dataset}_vector_ops_via_pymatgen": cnt["ops_fallback"],
        f"{dataset}_vector_fallback_reasons": cnt["fallback_reasons"],
        f"{dataset}_errors": errors,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100, help="crystals per dataset (default 100)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--datasets", nargs="+", default=["perov_5", "carbon_24"])
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")

    out = {"bench": "crystalnn_fingerprint fast vs vector", "date": _dt.date.today().isoformat(),
           "cpu": _cpu_model(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "split": args.split,
           "python": platform.python_version(),
           "load_avg_1min_start": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None}
    total_fast = total_vec = 0.0
    for ds in args.datasets:
        r = run_dataset(ds, args.split, args.n)
        print(f"{ds}: fast {r[f'{ds}_fast_per_s']:.2f}/s, vector {r[f'{ds}_vector_per_s']:.2f}/s, "
              f"x{r[f'{ds}_speedup']:.2f}, max |diff| {r[f'{ds}_max_abs_diff']:.3g}, "
              f"{r[f'{ds}_vector_ops_via_pymatgen']} of {r[f'{ds}_vector_ops'] + r[f'{ds}_vector_ops_via_pymatgen']} "
              f"order parameters via pymatgen", flush=True)
        out.update(r)
        total_fast += r[f"{ds}_crystals"] / r[f"{ds}_fast_per_s"]
        total_vec += r[f"{ds}_crystals"] / r[f"{ds}_vector_per_s"]
    out["max_abs_diff"] = max(out[f"{ds}_max_abs_diff"] for ds in args.datasets)
    out["speedup_all"] = round(total_fast / total_vec, 3)
    out["load_avg_1min_end"] = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
