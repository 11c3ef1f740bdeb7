"""Benchmark: the periodic radius graph (edges + max_neighbors + triplets) vs a loop over pymatgen.

Cases (all seeded, synthetic so the script needs no data):

* ``mp20``: 256 crystals of 20 atoms, MP-20-like skewed cells (15-25 A^3/atom, angles 60-120 deg).
* ``carbon24``: 256 Carbon-24-like cells (6-24 atoms, 5.5-7.5 A^3/atom, angles 60-120 deg, short axes ~2.4 A).
* ``perov16`` / ``perov256``: 16 / 256 Perov-5-like cubic cells of 5 atoms, a ~ 3.7-4.7 A (many images at 7 A);
  the sampler rebuilds such graphs at each of its 1000 steps.

For each case: our ``radius_graph_pbc(cutoff=7, max_neighbors=20, triplets=True)`` (float32, as in the model) and
edges alone (all edges within 7 A, no triplets), against ``Structure.get_neighbor_list(7)`` looped over the batch
(edges only, its Cython core). Median wall time of ``--repeats`` runs after a warm-up; the process CPU time is
reported too (robust to other load on a shared machine; it sums all torch threads). Every case runs twice: first
with the process's allocator cold (a fresh process), then warm (see ``_warm_allocator``: the state of any process
that has freed a large tensor, such as a sampler). Since 2026-12-04 a process raises glibc's thresholds before its
first graph (``dpcdvae.utils.alloc``; here at the start of ``main``, as the package's entry points do), so a fresh process no longer pays a page fault per page of its
temporaries; ``DPCDVAE_TUNE_MALLOC=0`` in the environment measures glibc's defaults (the old cold case). One JSON line per case and round, then a final JSON line whose top-level figures
are those of ``mp20`` with the warm allocator, and which holds every case of both rounds.

    python benchmarks/bench_graph.py [--threads 2] [--device cpu] [--repeats 7] [--cases mp20,carbon24]

(vesin-torch was measured as an alternative backend on the same cases and was not faster than this pure-torch
search, which also skips most of the work when ``max_neighbors`` is set, so there is no such backend.)
"""
from __future__ import annotations

import argparse
import math
import os
import sys

# OpenMP waiting: the package's default (dpcdvae.utils.openmp.OPENMP_WAIT, a short spin; PASSIVE on a fully loaded machine),
# i.e. what a user's process gets; export OMP_WAIT_POLICY=PASSIVE to time the sleeping policy instead (on a shared
# 2-core machine torch's own long spin ran this benchmark 3-50x slower than PASSIVE, measured 2026-11).

import numpy as np  # noqa: E402
import dpcdvae.utils.openmp  # noqa: E402  (first: an entry point's OpenMP default, before torch starts its threads)
dpcdvae.utils.openmp.configure_openmp()
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import machine_info, print_json, time_fn  # noqa: E402

from dpcdvae.utils.alloc import allocator_state, tune_allocator  # noqa: E402
from dpcdvae.structures.crystal import lattice_params_to_matrix  # noqa: E402
from dpcdvae.structures.graph import radius_graph_pbc  # noqa: E402


def _valid_angles(rng, lo, hi):
    while True:
        ang = rng.uniform(lo, hi, size=3)
        c = np.cos(np.deg2rad(ang))
        g = 1 - (c ** 2).sum() + 2 * c.prod()
        if g > 0.1:  # not too flat
            return ang, math.sqrt(g)


def random_cells(rng, num_atoms, vol_per_atom, angle_range, aspect=(0.5, 2.0)):
    """Lengths [B,3] and angles [B,3] with the requested volume per atom and random aspect ratios."""
    lengths, angles = [], []
    for n in num_atoms:
        ang, g = _valid_angles(rng, *angle_range)
        ratio = np.exp(rng.uniform(np.log(aspect[0]), np.log(aspect[1]), size=3))
        vol = n * rng.uniform(*vol_per_atom)
        scale = (vol / (ratio.prod() * g)) ** (1 / 3)
        lengths.append(ratio * scale)
        angles.append(ang)
    return np.array(lengths), np.array(angles)


def make_case(name, seed=0):
    rng = np.random.default_rng(seed)
    if name == "mp20":
        num_atoms = np.full(256, 20)
        lengths, angles = random_cells(rng, num_atoms, (15, 25), (60, 120))
    elif name == "carbon24":
        sizes = np.arange(6, 25, 2)
        p = np.array([68, 52, 32, 20, 11, 9, 3, 2, 2, 1], float)
        num_atoms = rng.choice(sizes, size=256, p=p / p.sum())
        lengths, angles = random_cells(rng, num_atoms, (5.5, 7.5), (60, 120), aspect=(0.4, 2.5))
    elif name.startswith("perov"):
        B = int(name[5:])
        num_atoms = np.full(B, 5)
        a = rng.uniform(3.7, 4.7, size=B)
        lengths, angles = np.stack([a, a, a], 1), np.full((B, 3), 90.0)
    else:
        raise ValueError(name)
    frac = rng.random((int(num_atoms.sum()), 3))
    return num_atoms, lengths, angles, frac


def to_structures(num_atoms, lattice, frac):
    from pymatgen.core import Lattice, Structure

    out, start = [], 0
    for b, n in enumerate(num_atoms):
        out.append(Structure(Lattice(lattice[b]), ["C"] * int(n), frac[start:start + n]))
        start += n
    return out


def run_case(name, device, repeats, cutoff=7.0, max_nb=20):
    num_atoms, lengths, angles, frac = make_case(name)
    lat64 = lattice_params_to_matrix(torch.tensor(lengths), torch.tensor(angles))
    structures = to_structures(num_atoms, lat64.numpy(), frac)
    B = len(num_atoms)
    lattice = lat64.float().to(device)
    frac_t = torch.tensor(frac, dtype=torch.float32, device=device)
    na = torch.tensor(num_atoms, device=device)
    batch = torch.repeat_interleave(torch.arange(B, device=device), na)

    full = lambda: radius_graph_pbc(frac_t, lattice, batch, cutoff, max_neighbors=max_nb, triplets=True,
                                    num_atoms=na)
    edges = lambda: radius_graph_pbc(frac_t, lattice, batch, cutoff, max_neighbors=None, triplets=False,
                                     num_atoms=na)
    pmg = lambda: [s.get_neighbor_list(cutoff) for s in structures]

    g = full()
    n_edges, n_trip = g.num_edges, int(g.idx_kj.numel())
    n_edges_all = edges().num_edges
    n_pmg = sum(len(x[0]) for x in pmg())
    # interleave the three so that they see the same background load
    t_full, t_edges, t_pmg = [], [], []
    for _ in range(2):
        t_full.append(time_fn(full, repeats=repeats, device=device))
        t_edges.append(time_fn(edges, repeats=repeats, device=device))
        t_pmg.append(time_fn(pmg, repeats=max(3, repeats // 2), device="cpu"))
    pick = lambda ts, key: min(t[key] for t in ts)  # the quieter of the two rounds
    tf, te, tp = pick(t_full, "median_s"), pick(t_edges, "median_s"), pick(t_pmg, "median_s")
    cf, cp = pick(t_full, "cpu_median_s"), pick(t_pmg, "cpu_median_s")
    info = machine_info(device)
    return {
        "case": name, "batch": B, "atoms": int(num_atoms.sum()), "cutoff_A": cutoff, "max_neighbors": max_nb,
        "speedup_vs_pymatgen": round(tp / tf, 3),
        "edges_only_speedup_vs_pymatgen": round(tp / te, 3),
        "cpu_time_speedup_vs_pymatgen": round(cp / cf, 3),
        "graph_ms_per_crystal": round(1e3 * tf / B, 4),
        "edges_only_ms_per_crystal": round(1e3 * te / B, 4),
        "pymatgen_ms_per_crystal": round(1e3 * tp / B, 4),
        "graph_ms_per_batch": round(1e3 * tf, 3),
        "graph_min_ms_per_batch": round(1e3 * min(t["min_s"] for t in t_full), 3),
        "edges_within_cutoff": n_edges_all, "pymatgen_edges": n_pmg, "edges_kept": n_edges, "triplets": n_trip,
        "device": info["device"], "torch_threads": info["torch_threads"], "torch": info["torch"],
        "load_avg_1min": info["load_avg_1min"], "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "gomp_spincount": os.environ.get("GOMP_SPINCOUNT"), "openmp_default": dpcdvae.utils.openmp.OPENMP_WAIT,
        "allocator_tuning": allocator_state()["reason"],
    }


def _warm_allocator():
    """Free one ~32 MiB tensor, as any training or sampling process does early on: glibc then raises its mmap and
    trim thresholds and serves the 16 MiB triplet arrays from its heap, instead of fresh mmap()ed pages whose page
    faults (~8k per call for mp20) dominate the timing on a loaded machine."""
    buf = torch.ones(4 * 1024 * 1024 - 1024, dtype=torch.float64)  # just under glibc's 32 MiB mmap ceiling
    del buf


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--cases", default="mp20,carbon24,perov16,perov256")
    ap.add_argument("--cold-only", action="store_true", help="skip the second, warm-allocator round")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    tune_allocator()  # an entry point's process tuning (the package's samplers and graph builder no longer do it)
    keys = ("speedup_vs_pymatgen", "graph_ms_per_crystal", "pymatgen_ms_per_crystal", "edges_only_speedup_vs_pymatgen",
            "cpu_time_speedup_vs_pymatgen", "graph_ms_per_batch")
    rounds = {}
    for state in ("cold", "warm") if not args.cold_only else ("cold",):
        if state == "warm":
            _warm_allocator()
        results = {}
        for name in args.cases.split(","):
            rec = run_case(name, args.device, args.repeats)
            rec["allocator"] = state
            results[name] = rec
            print_json(rec)
        rounds[state] = results
    head = rounds.get("warm", rounds["cold"])
    first = head.get("mp20", next(iter(head.values())))
    final = {"benchmark": "graph", "case": first["case"], "allocator": first["allocator"]}
    final.update({k: first[k] for k in keys})
    final.update({k: first[k] for k in ("device", "torch_threads", "torch", "load_avg_1min", "omp_wait_policy",
                                        "gomp_spincount", "openmp_default", "allocator_tuning")})
    for state, results in rounds.items():
        final[f"cases_{state}_allocator"] = {k: {kk: v[kk] for kk in keys} for k, v in results.items()}
    print_json(final)


if __name__ == "__main__":
    main()
