"""Relaxation throughput (structures/min) of 24-atom carbon cells at 10 GPa with CHGNet: one-by-one vs batched.

Structures: the Carbon-24 validation rows with 24 atoms (``/work/shared/data/carbon_24/val.csv`` or wherever the data
locator finds ``carbon_24``; then the test rows), else synthetic 24-atom diamond supercells. Those rows are already
DFT-relaxed at 10 GPa, so each is perturbed like a generated sample (``--rattle`` A Gaussian displacements and a
random cell strain up to ``--strain``), deterministically (``--seed``).

Modes, each timed on the same structures (CHGNet loaded and warmed up before timing):

* ``one_by_one``: the stock path, one structure at a time: ``chgnet.model.dynamics.CHGNetCalculator`` + ASE
  ``FrechetCellFilter`` + ``Optimizer.run`` (``relax_structures(..., batch=False)``);
* ``one_by_one_fast``: one at a time through :class:`~dpcdvae.eval.ground_state.CHGNetBatchPredictor` (one forward
  and a single backward pass for forces + stresses), i.e. the batched code with batch size 1: isolates the gain of
  batching from the gain of the kernel;
* ``batched``: all structures in lock step, one batched CHGNet call per optimizer step (``batch=True``);
* ``batched_workers``: the same in ``--workers`` processes (default 2) of ``threads / workers`` torch threads each,
  the structures dealt out between them (``relax_structures(..., workers=2)``, ``dpcdvae relax --workers 2``).

The last line printed is a JSON object: ``one_by_one_structures_per_min``, ``batched_structures_per_min``,
``speedup`` (batched / one_by_one), ``speedup_batching_alone`` (batched / one_by_one_fast),
``batched_workers_structures_per_min``, ``speedup_workers`` (batched_workers / one_by_one),
``projected_minutes_100_structures`` (100 structures at the faster batched rate, same fmax / max_steps), the steps taken,
the largest relaxed-enthalpy difference between modes, machine and load. OpenMP waiting is the package's default
(``dpcdvae.utils.openmp.OPENMP_WAIT``: a short spin, or ``PASSIVE`` on a fully loaded machine), what a user's process gets; set
``OMP_WAIT_POLICY`` in the environment to override (with torch's own long spin, 2-thread runs on a loaded 2-core
machine were ~10x slower than 1-thread runs, measured 2026-11).

    python benchmarks/bench_relax.py --n 8 --max-steps 100 --threads 2
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import time
import warnings

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import dpcdvae.utils.openmp  # noqa: E402  (before torch: an entry point's OpenMP default, see dpcdvae/utils/openmp.py)
dpcdvae.utils.openmp.configure_openmp()


def carbon24_cells(n: int, seed: int, rattle: float, strain: float):
    """``n`` perturbed 24-atom carbon cells and a description of where they come from."""
    from pymatgen.core import Lattice, Structure

    rng = np.random.default_rng(seed)
    found = []
    source = None
    for split in ("val", "test"):
        if len(found) >= n:
            break
        try:
            import pandas as pd

            from dpcdvae.data import locate_dataset

            path = os.path.join(locate_dataset("carbon_24"), f"{split}.csv")
            df = pd.read_csv(path)
        except Exception:
            break
        for mid, cif in zip(df["material_id"], df["cif"]):
            if re.search(r"_chemical_formula_sum\s+C24\b", cif):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    found.append((f"{split}-{mid}", Structure.from_str(cif, fmt="cif")))
                if len(found) >= n:
                    break
        source = f"carbon_24 {split if split == 'val' else 'val+test'} rows with 24 atoms"
    out = found[:n]
    if len(out) < n:  # synthetic: 24-atom diamond supercells (conventional cell x 1x1x3) at ~10 GPa density
        diamond = Structure(Lattice.cubic(3.54), ["C"] * 8,
                            [[0, 0, 0], [.5, .5, 0], [.5, 0, .5], [0, .5, .5], [.25, .25, .25], [.75, .75, .25],
                             [.75, .25, .75], [.25, .75, .75]])
        while len(out) < n:
            out.append((f"synthetic-{len(out)}", diamond * (1, 1, 3)))
        source = (source + " + " if found else "") + "synthetic diamond 1x1x3 supercells"
    cells = []
    for sid, s in out:
        s = s.copy()
        eps = rng.uniform(-strain, strain, (3, 3))
        eps = (eps + eps.T) / 2
        s.lattice = Lattice(s.lattice.matrix @ (np.eye(3) + eps))
        disp = rng.normal(0.0, rattle, (len(s), 3))
        for i in range(len(s)):
            s.translate_sites([i], disp[i], frac_coords=False, to_unit_cell=True)
        cells.append((sid, s))
    return cells, source


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=8, help="structures (default 8)")
    ap.add_argument("--max-steps", type=int, default=100)
    ap.add_argument("--fmax", type=float, default=0.05)
    ap.add_argument("--pressure", type=float, default=10.0, help="GPa (default 10, as the paper)")
    ap.add_argument("--optimizer", default="FIRE")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    ap.add_argument("--rattle", type=float, default=0.05, help="A, Gaussian std of the displacements")
    ap.add_argument("--strain", type=float, default=0.03, help="max |strain component| of the random cell strain")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--modes", default="one_by_one,one_by_one_fast,batched,batched_workers")
    ap.add_argument("--workers", type=int, default=2, help="processes of the batched_workers mode")
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args(argv)

    import torch

    torch.set_num_threads(a.threads)
    from benchmarks._common import machine_info, print_json
    from dpcdvae.eval.ground_state import CHGNetBatchPredictor, load_chgnet, relax_structures

    cells, source = carbon24_cells(a.n, a.seed, a.rattle, a.strain)
    ids = [c[0] for c in cells]
    structs = [c[1] for c in cells]
    model = load_chgnet(device=a.device)
    from pymatgen.io.ase import AseAtomsAdaptor

    CHGNetBatchPredictor(model=model, device=a.device)([AseAtomsAdaptor.get_atoms(structs[0])])  # warm-up
    load0 = os.getloadavg()
    kw = dict(ids=ids, pressure_gpa=a.pressure, optimizer=a.optimizer, fmax=a.fmax, max_steps=a.max_steps,
              progress=False, device=a.device)
    runs = {}
    for mode in [m.strip() for m in a.modes.split(",") if m.strip()]:
        t0 = time.perf_counter()
        if mode == "one_by_one":
            res = relax_structures(structs, calculator="chgnet", batch=False, **kw)
        elif mode == "one_by_one_fast":
            res = relax_structures(structs, calculator=CHGNetBatchPredictor(model=model, device=a.device),
                                   batch=False, **kw)
        elif mode == "batched":
            res = relax_structures(structs, calculator="chgnet", batch=True, batch_size=len(structs), **kw)
        elif mode == "batched_workers":
            res = relax_structures(structs, calculator="chgnet", batch=True, batch_size=len(structs),
                                   workers=a.workers, **kw)
        else:
            raise SystemExit(f"unknown mode {mode!r}")
        dt = time.perf_counter() - t0
        steps = [r.steps for r in res]
        runs[mode] = {"wall_s": dt, "structures_per_min": 60.0 * len(res) / dt, "steps": steps,
                      "force_calls": int(sum(s + 1 for s in steps)),
                      "s_per_force_call": dt / max(1, sum(s + 1 for s in steps)),
                      "n_converged": sum(bool(r.converged) for r in res),
                      "n_failed": sum(r.error is not None for r in res),
                      "H": [r.relaxed_enthalpy_per_atom for r in res]}
        print(f"[bench_relax] {mode}: {dt:.1f} s, {runs[mode]['structures_per_min']:.2f} structures/min, "
              f"steps {steps}, {runs[mode]['s_per_force_call']:.3f} s per structure force call", file=sys.stderr,
              flush=True)
    load1 = os.getloadavg()

    def rate(m):
        return runs[m]["structures_per_min"] if m in runs else None

    def ratio(x, y):
        return (rate(x) / rate(y)) if (x in runs and y in runs) else None

    h = [np.asarray(r["H"], float) for r in runs.values()]
    max_dh = float(max((np.nanmax(np.abs(x - h[0])) for x in h[1:]), default=0.0)) * 1000.0
    b = rate("batched")
    bw = rate("batched_workers")
    rec = {
        "benchmark": "bench_relax",
        "structures": source,
        "n": len(structs),
        "n_atoms": 24,
        "pressure_gpa": a.pressure,
        "optimizer": a.optimizer,
        "fmax": a.fmax,
        "max_steps": a.max_steps,
        "perturbation": {"rattle_A": a.rattle, "max_strain": a.strain, "seed": a.seed},
        "one_by_one_structures_per_min": rate("one_by_one"),
        "one_by_one_fast_structures_per_min": rate("one_by_one_fast"),
        "batched_structures_per_min": b,
        "speedup": ratio("batched", "one_by_one"),
        "speedup_batching_alone": ratio("batched", "one_by_one_fast"),
        "speedup_kernel_alone": ratio("one_by_one_fast", "one_by_one"),
        "batched_workers_structures_per_min": bw,
        "workers": a.workers,
        "speedup_workers": ratio("batched_workers", "one_by_one"),
        "projected_minutes_100_structures": (100.0 / max(b or 0, bw or 0)) if (b or bw) else None,
        "s_per_structure_force_call": {m: round(r["s_per_force_call"], 4) for m, r in runs.items()},
        "steps": {m: r["steps"] for m, r in runs.items()},
        "n_converged": {m: r["n_converged"] for m, r in runs.items()},
        "n_failed": {m: r["n_failed"] for m, r in runs.items()},
        "wall_s": {m: round(r["wall_s"], 1) for m, r in runs.items()},
        "max_abs_dH_between_modes_meV_per_atom": round(max_dh, 3),
        "loadavg_1min_before_after": [round(load0[0], 2), round(load1[0], 2)],
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "gomp_spincount": os.environ.get("GOMP_SPINCOUNT"), "openmp_default": dpcdvae.utils.openmp.OPENMP_WAIT,
        **machine_info(a.device),
    }
    for k in ("one_by_one_structures_per_min", "one_by_one_fast_structures_per_min", "batched_structures_per_min",
              "speedup", "speedup_batching_alone", "speedup_kernel_alone", "projected_minutes_100_structures",
              "batched_workers_structures_per_min", "speedup_workers"):
        if rec[k] is not None:
            rec[k] = round(rec[k], 3)
    print_json(rec)
    return rec


if __name__ == "__main__":
    main()
