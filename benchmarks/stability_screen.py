"""Eq. 7 stability screen of a checkpoint (:mod:`dpcdvae.eval.stability`), in minutes on a CPU.

    python benchmarks/stability_screen.py --checkpoint pretrained:carbon_24 --dataset carbon_24 --n 100 \
        --max-atoms 12 [--gen 100] [--raw-weights]

(a) the first ``--n`` test crystals with at most ``--max-atoms`` atoms, reconstructed with strided Eq. 7
(``--base`` calls) and with the same plus every step in ``--band`` (default (350, 450]); same z and x_T in both
arms. ``band_gap_points`` = strided minus banded match rate: positive means the extra calls break structure.
``--full-eq7`` adds the arm ``eq7`` (all T steps: the paper's Eq. 7, noise for noise) and ``eq7_gap_points``.
(b) the fixed-point probe at each ``--probe-t`` (default 350 500 600) after each of ``--repeats`` (1 20) Eq. 7 maps
on the first ``--probe-n`` of those crystals.
(c) with ``--gen N``: COV-R / COV-P of N generated crystals against the whole test split, Eq. 7 (1000 calls) and
strided Eq. 7 (``--base`` calls) (``--gen-arms``: also Eq. 6), with each criterion alone (``cov_r_struct``, ``cov_r_comp``: which one limits
COV) and the number of distinct formulas; CDVAE's Magpie constants by default (``--comp-scaler``), as Table II; the
test split's fingerprints are cached on disk after the first run. ``--gen-only`` runs (c) alone.

Final JSON line: ``arms``, ``band_gap_points``, ``probe``, ``gen`` (when asked), ``wall_s`` and the machine.
"""
from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import machine_info, print_json, probe_parser  # noqa: E402

import torch  # noqa: E402


def main(argv=None) -> dict:
    p = probe_parser(__doc__.splitlines()[0], n_default=100)
    p.set_defaults(dataset="carbon_24", checkpoint="pretrained:carbon_24")
    p.add_argument("--max-atoms", type=int, default=None, help="only crystals with at most this many atoms")
    p.add_argument("--base", type=int, default=100, help="network calls of the strided arm")
    p.add_argument("--band", type=int, nargs=2, default=(350, 450), metavar=("LO", "HI"))
    p.add_argument("--full-eq7", action="store_true",
                   help="add the arm 'eq7': every one of the T steps (the paper's Eq. 7, noise for noise)")
    p.add_argument("--probe-t", type=int, nargs="*", default=(350, 500, 600))
    p.add_argument("--repeats", type=int, nargs="*", default=(1, 20))
    p.add_argument("--probe-n", type=int, default=None, help="crystals in the probe (default: --n)")
    p.add_argument("--gen", type=int, default=0, help="generated crystals for COV (0: skip)")
    p.add_argument("--gen-only", action="store_true", help="only (c): skip the reconstruction arms and the probe")
    p.add_argument("--gen-arms", nargs="+", default=["eq7", "strided"], choices=["eq7", "strided", "eq6"],
                   help="samplers of (c): eq7 (1000 calls), strided (strided Eq. 7, --base calls), eq6 (1000 calls)")
    p.add_argument("--by-spacegroup", action="store_true",
                   help="(c): also the structure-criterion recall per space group of the test crystals (symprec 0.1)")
    p.add_argument("--comp-scaler", default="cdvae", choices=["cdvae", "test"],
                   help="Magpie standardiser of COV: CDVAE's constants (as Table II) or fitted on the test split")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--n-workers", type=int, default=1)
    a = p.parse_args(argv)

    from torch_geometric.data import Batch

    from dpcdvae.data import load_split
    from dpcdvae.eval.stability import band_timesteps, fixed_point_probe, select_indices, step_arms
    from dpcdvae.models import load_model
    from dpcdvae.data.resolve import resolve_root

    t0 = time.time()
    model = load_model(a.checkpoint, ema=not a.raw_weights).eval()
    if a.gen_only:
        out = {"checkpoint": a.checkpoint, "weights": "raw" if a.raw_weights else "ema", "dataset": a.dataset,
               "seed": a.seed, "gen": generation_arms(model, a)}
        out["wall_s"] = round(time.time() - t0, 1)
        out.update(machine_info())
        print_json(out)
        return out
    ds = load_split(a.dataset, a.split, root=resolve_root(a.dataset, None), max_atoms=model.cfg.max_atoms,
                    graph=model.data_graph, progress=False)
    idx = select_indices(ds.num_atoms.tolist(), a.n, a.max_atoms)
    if not idx:
        raise SystemExit(f"no {a.split} crystal of {a.dataset} has at most {a.max_atoms} atoms")
    arms = {"strided": band_timesteps(model.scheduler, a.base, None),
            "strided+band": band_timesteps(model.scheduler, a.base, a.band)}
    if a.full_eq7:
        arms["eq7"] = band_timesteps(model.scheduler, model.scheduler.num_train_timesteps, None)
    res_arms: dict = {k: {"calls": len(v), "matched": 0, "n": 0, "n_valid": 0} for k, v in arms.items()}
    for s in range(0, len(idx), a.batch_size):
        part = idx[s:s + a.batch_size]
        batch = Batch.from_data_list([ds[i] for i in part])
        r = step_arms(model, batch, [ds.get_structure(i) for i in part], arms, seed=a.seed + s,
                      n_workers=a.n_workers)
        for k, v in r.items():
            res_arms[k]["matched"] += v["n_matched"]
            res_arms[k]["n"] += v["n"]
            res_arms[k]["n_valid"] += v["n_valid"]
    for v in res_arms.values():
        v["match_rate"] = round(100.0 * v["matched"] / max(v["n"], 1), 2)
    t_arms = time.time() - t0

    pidx = idx[:a.probe_n or a.n]
    pbatch = Batch.from_data_list([ds[i] for i in pidx])
    ptargets = [ds.get_structure(i) for i in pidx]
    probe = {}
    for t in a.probe_t:
        probe[str(t)] = {str(k): v for k, v in fixed_point_probe(model, pbatch, ptargets, t, a.repeats,
                                                                  seed=a.seed, n_workers=a.n_workers).items()}
    t_probe = time.time() - t0 - t_arms

    out = {"checkpoint": a.checkpoint, "weights": "raw" if a.raw_weights else "ema", "dataset": a.dataset,
           "split": a.split, "n": len(idx), "max_atoms": a.max_atoms, "band": list(a.band), "seed": a.seed,
           "arms": res_arms,
           "band_gap_points": round(res_arms["strided"]["match_rate"] - res_arms["strided+band"]["match_rate"], 2),
           "eq7_gap_points": (round(res_arms["strided"]["match_rate"] - res_arms["eq7"]["match_rate"], 2)
                              if "eq7" in res_arms else None),
           "probe": probe, "probe_n": len(pidx), "time_arms_s": round(t_arms, 1), "time_probe_s": round(t_probe, 1)}
    if a.gen > 0:
        out["gen"] = generation_arms(model, a)
    out["wall_s"] = round(time.time() - t0, 1)
    out.update(machine_info())
    print_json(out)
    return out


def generation_arms(model, a) -> dict:
    """(c): COV of ``a.gen`` generated crystals, Eq. 7 and strided (same z per batch), with the COV breakdown
    (structure / composition criterion alone) and the number of distinct reduced formulas."""
    from dpcdvae.eval.evaluate import load_comp_scaler
    from dpcdvae.eval.generation import generation_metrics
    from dpcdvae.eval.io import load_split_structures

    _, test = load_split_structures(a.dataset, "test")
    test = [t for t in test if t is not None]
    scaler = load_comp_scaler("cdvae" if a.comp_scaler == "cdvae" else "test", a.dataset)
    gen = {}
    arms = {"eq7": ("eq7", None), "strided": ("strided_eq7", a.base), "eq6": ("eq6", None)}
    for name in a.gen_arms:
        sampler, steps = arms[name]
        t1 = time.time()
        # one generator seeded once: the first batch has the same z and x_T in both arms; later batches draw after
        # a different number of sampling steps (different z); --batch-size >= --gen makes every z the same
        structs = model.generate(a.gen, sampler=sampler, steps=steps, seed=a.seed, batch_size=a.batch_size).structures
        m = generation_metrics(structs, test, a.dataset, n_workers=a.n_workers, compute_eform=False,
                               progress=False, cache_generated=False, comp_scaler=scaler)
        formulas = {x.composition.reduced_formula for x in structs if x is not None}
        by_sg = recall_by_spacegroup(structs, test, a.dataset, a.n_workers) if a.by_spacegroup else None
        gen[name] = {**{k: round(m[k], 2) for k in ("cov_r", "cov_p", "cov_r_struct", "cov_r_comp",
                                                    "cov_p_struct", "cov_p_comp", "validity")},
                     "n_formulas": len(formulas), "n": a.gen, "comp_scaler": a.comp_scaler,
                     "time_s": round(time.time() - t1, 1)}
        if by_sg is not None:
            gen[name]["cov_r_struct_by_spacegroup"] = by_sg
    return gen


_TEST_SG: dict = {}


def recall_by_spacegroup(generated: list, test: list, dataset: str, n_workers: int = 1, top: int = 6) -> dict:
    """``{space group number: {"n": test crystals, "cov_r_struct": %}}`` for the ``top`` most common space groups
    of the test crystals (pymatgen's SpacegroupAnalyzer, symprec 0.1): the share of each group's test crystals with a
    generated crystal within the COV structure cutoff (the structure criterion alone)."""
    import collections

    import numpy as np
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    from dpcdvae.data.registry import get_spec
    from dpcdvae.eval.fingerprints import structure_fingerprints
    from dpcdvae.eval.generation import _nn_dists

    def sg(x):
        try:
            return SpacegroupAnalyzer(x, symprec=0.1).get_space_group_number()
        except Exception:  # noqa: BLE001 - spglib failure: its own group
            return -1

    if dataset not in _TEST_SG:
        _TEST_SG[dataset] = np.array([sg(x) for x in test])
    groups = _TEST_SG[dataset]
    g = [x for x in generated if x is not None]
    gfp, gerr = structure_fingerprints(g, n_workers=n_workers, cache=False, progress=False)
    tfp, terr = structure_fingerprints(test, n_workers=n_workers, progress=False)
    gok = np.array([e is None for e in gerr]) & np.isfinite(gfp).all(1)
    tok = np.array([e is None for e in terr]) & np.isfinite(tfp).all(1)
    _, rec = _nn_dists(gfp, gok, tfp, tok)
    covered = rec <= get_spec(dataset).cov_cutoffs[0]
    out = {}
    for k, n in collections.Counter(groups.tolist()).most_common(top):
        m = groups == k
        out[str(k)] = {"n": int(n), "cov_r_struct": round(100.0 * float(covered[m].mean()), 2)}
    return out


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
