"""CrystalNN 'ops' structure fingerprints: the fast path, the previous default and the default, on the same crystals.

For each dataset (default Perov-5 and Carbon-24, test split, first ``--n`` rows) these run in this process,
interleaved crystal by crystal (so that load from other jobs hits all alike), after one warm-up crystal each:

* ``fast``: :func:`dpcdvae.eval.fingerprints.crystalnn_fingerprint` with ``method="fast"`` and the CrystalNN cell
  info of pymatgen (``cnn.impl = "pymatgen"``): matminer's order parameters on the one-tessellation CrystalNN;
* ``vector``: ``method="vector"`` (numpy order parameters) with pymatgen's cell info: the default before the
  vectorised cell info;
* for each ``--impls`` entry other than ``pymatgen`` (:data:`dpcdvae.structures.crystalnn.IMPLS`): ``method="vector"`` with
  ``cnn.impl = <impl>``, reported under that name (``cells``: numpy cell info + pymatgen's ``get_nn_data``), the
  last one as ``default`` (``vector``: numpy cell info and CrystalNN weights, the default now).

Reported per dataset: crystals per second of each, speed-ups, the max abs difference of each fingerprint from the
``fast`` one and of the default from ``vector``, the order-parameter counters of the vector path
(:data:`dpcdvae.eval.order_params.COUNTERS`), the CrystalNN counters of the default path
(:data:`dpcdvae.structures.crystalnn.COUNTERS`: faces / sites that went to pymatgen's code and why) and crystals that raised.
Unless ``--no-stage-split``, the default path is also run stage by stage on the same crystals: ``prepare`` (of
which the eligibility checks + neighbour search + qhull tessellation, the numpy cell info and the numpy CrystalNN
weights), ``get_nn_data`` and the order parameters, as fractions of its time. The last line printed is one JSON
object. ``vector`` and ``fast`` use pymatgen's all-site tessellation (``get_all_voronoi_polyhedra``), ``cells`` and
the default the same points made from arrays (:func:`dpcdvae.structures.crystalnn._tessellation`).

    OMP_NUM_THREADS=1 python benchmarks/bench_fingerprints.py --n 100
"""
from __future__ import annotations

import argparse
import datetime as _dt
import functools
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


def _fp(structure, method: str, impl: str):
    from dpcdvae.eval import fingerprints as F

    cnn = F._fast_featurizer().cnn
    old = cnn.impl
    cnn.impl = impl
    try:
        return F.crystalnn_fingerprint(structure, method=method)
    finally:
        cnn.impl = old


def _split_one(structure, impl: str, acc: dict) -> None:
    """The default path's stages for one crystal (what ``crystalnn_fingerprint(method="vector")`` does), timed."""
    from dpcdvae.eval import fingerprints as F
    from dpcdvae.eval import order_params as O

    fp = F._fast_featurizer()
    cnn = fp.cnn
    old = cnn.impl
    cnn.impl = impl
    t0 = time.perf_counter()
    work = F._wrapped(structure)
    try:
        cnn.prepare(work)
        t1 = time.perf_counter()
        nnd = [cnn.get_nn_data(work, i) for i in range(len(work))]
        t2 = time.perf_counter()
        sites = [O.site_fingerprint(fp, work, i, nndata=d) for i, d in enumerate(nnd)]
        np.asarray(sites, dtype=np.float64).mean(axis=0)
        t3 = time.perf_counter()
    finally:
        cnn.release()
        cnn.impl = old
    t4 = time.perf_counter()
    for k, v in (("prepare", t1 - t0), ("get_nn_data", t2 - t1), ("order_params", t3 - t2), ("release", t4 - t3)):
        acc[k] = acc.get(k, 0.0) + v


def run_dataset(dataset: str, split: str, n: int, impls: list[str], do_split: bool) -> dict:
    """Time the variants on the first ``n`` parseable crystals of ``dataset/split``; a dict of figures."""
    from dpcdvae.structures import crystalnn as C
    from dpcdvae.eval import order_params as O
    from dpcdvae.eval.io import load_split_structures

    _, structs = load_split_structures(dataset, split, limit=n)
    structs = [s for s in structs if s is not None][:n]
    variants = [("fast", "fast", "pymatgen"), ("vector", "vector", "pymatgen")]
    variants += [("default" if i == impls[-1] else i, "vector", i) for i in impls if i != "pymatgen"]
    default = variants[-1][0]
    for _, method, impl in variants:  # warm-up: featurizers, imports
        _fp(structs[0], method, impl)
    O.reset_counters()
    C.reset_counters()
    times = {name: 0.0 for name, _, _ in variants}
    worst = {name: 0.0 for name, _, _ in variants if name != "fast"}
    errors = {name: 0 for name, _, _ in variants}
    worst_dv = 0.0  # default against the previous default (method "vector" with pymatgen's cell info)
    n_sites = 0
    for s in structs:
        n_sites += len(s)
        out = {}
        for name, method, impl in variants:
            t0 = time.perf_counter()
            try:
                out[name] = _fp(s, method, impl)
            except Exception:
                errors[name] += 1
            times[name] += time.perf_counter() - t0
        for name in worst:
            if "fast" in out and name in out:
                worst[name] = max(worst[name], float(np.abs(out[name] - out["fast"]).max()))
        if default in out and "vector" in out:
            worst_dv = max(worst_dv, float(np.abs(out[default] - out["vector"]).max()))
    # counters of the default path alone: one more pass, untimed
    O.reset_counters()
    C.reset_counters()
    for s in structs:
        try:
            _fp(s, "vector", variants[-1][2])
        except Exception:
            pass
    op_counts, cnn_counts = O.counters(), C.counters()
    k = len(structs)
    res = {f"{dataset}_crystals": k, f"{dataset}_sites": n_sites}
    for name, _, _ in variants:
        res[f"{dataset}_{name}_per_s"] = round(k / times[name], 3)
    res[f"{dataset}_speedup"] = round(times["fast"] / times["vector"], 3)  # as before: vector / fast rate
    res[f"{dataset}_speedup_default_vs_vector"] = round(times["vector"] / times[default], 3)
    res[f"{dataset}_speedup_default_vs_fast"] = round(times["fast"] / times[default], 3)
    res[f"{dataset}_default"] = default
    res[f"{dataset}_default_impl"] = variants[-1][2]
    for name, v in worst.items():
        res[f"{dataset}_{name}_max_abs_diff"] = v
    res[f"{dataset}_max_abs_diff"] = max(worst.values())
    res[f"{dataset}_default_vs_vector_max_abs_diff"] = worst_dv
    res[f"{dataset}_vector_ops"] = op_counts["ops_vector"]
    res[f"{dataset}_vector_ops_via_pymatgen"] = op_counts["ops_fallback"]
    res[f"{dataset}_vector_fallback_reasons"] = op_counts["fallback_reasons"]
    res[f"{dataset}_crystalnn_counters"] = cnn_counts
    res[f"{dataset}_errors"] = errors
    if do_split:
        acc: dict = {}
        timed = {"cells": 0.0, "weights": 0.0}
        orig_cells, orig_w = C.voronoi_cell_arrays, C._crystalnn_weight_arrays

        def _timed(fn, key, *a, **kw):
            t = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                timed[key] += time.perf_counter() - t

        C.voronoi_cell_arrays = functools.partial(_timed, orig_cells, "cells")
        C._crystalnn_weight_arrays = functools.partial(_timed, orig_w, "weights")
        try:
            for s in structs:
                _split_one(s, variants[-1][2], acc)
        finally:
            C.voronoi_cell_arrays, C._crystalnn_weight_arrays = orig_cells, orig_w
        total = sum(acc.values())
        acc["prepare_numpy_cells"] = timed["cells"]
        acc["prepare_numpy_weights"] = timed["weights"]
        acc["prepare_tessellation_and_checks"] = acc["prepare"] - timed["cells"] - timed["weights"]
        res[f"{dataset}_split_ms_per_crystal"] = round(1e3 * total / k, 2)
        res[f"{dataset}_split_fraction"] = {key: round(v / total, 3) for key, v in acc.items()}
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100, help="crystals per dataset (default 100)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--datasets", nargs="+", default=["perov_5", "carbon_24"])
    ap.add_argument("--impls", nargs="+", default=["cells", "vector"],
                    help="CrystalNN cell-info implementations to time with method='vector' besides pymatgen's "
                         "(dpcdvae.structures.crystalnn.IMPLS; the last one is reported as the default)")
    ap.add_argument("--no-stage-split", dest="stage_split", action="store_false",
                    help="skip the stage-by-stage timing of the default path")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")

    out = {"bench": "crystalnn_fingerprint fast / vector (pymatgen cell info) / vector (numpy cell info)",
           "date": _dt.date.today().isoformat(),
           "cpu": _cpu_model(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "split": args.split,
           "python": platform.python_version(), "impls": args.impls,
           "load_avg_1min_start": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None}
    totals: dict = {}
    for ds in args.datasets:
        r = run_dataset(ds, args.split, args.n, args.impls, args.stage_split)
        d = r[f"{ds}_default"]
        print(f"{ds}: fast {r[f'{ds}_fast_per_s']:.2f}/s, vector {r[f'{ds}_vector_per_s']:.2f}/s, "
              + ", ".join(f"{k[len(ds) + 1:-6]} {v:.2f}/s" for k, v in r.items()
                          if k.endswith("_per_s") and k[len(ds) + 1:-6] not in ("fast", "vector"))
              + f"; {d} (impl {r[f'{ds}_default_impl']}) x{r[f'{ds}_speedup_default_vs_vector']:.2f} vs vector, "
              f"x{r[f'{ds}_speedup_default_vs_fast']:.2f} vs fast; max |diff| {r[f'{ds}_max_abs_diff']:.3g} vs fast, "
              f"{r[f'{ds}_default_vs_vector_max_abs_diff']:.3g} default vs vector; "
              f"CrystalNN counters {r[f'{ds}_crystalnn_counters']}", flush=True)
        if f"{ds}_split_fraction" in r:
            print(f"{ds}: default path {r[f'{ds}_split_ms_per_crystal']} ms/crystal, split "
                  f"{r[f'{ds}_split_fraction']}", flush=True)
        out.update(r)
        for key, v in r.items():
            if key.endswith("_per_s"):
                name = key[len(ds) + 1:-6]
                totals[name] = totals.get(name, 0.0) + r[f"{ds}_crystals"] / v
    out["max_abs_diff"] = max(out[f"{ds}_max_abs_diff"] for ds in args.datasets)
    out["default_vs_vector_max_abs_diff"] = max(out[f"{ds}_default_vs_vector_max_abs_diff"] for ds in args.datasets)
    out["speedup_all"] = round(totals["fast"] / totals["vector"], 3)
    d = out[f"{args.datasets[0]}_default"]
    out["speedup_all_default_vs_vector"] = round(totals["vector"] / totals[d], 3)
    out["speedup_all_default_vs_fast"] = round(totals["fast"] / totals[d], 3)
    out["load_avg_1min_end"] = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
