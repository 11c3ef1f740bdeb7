"""Generate N crystals from z ~ N(0, I) with a checkpoint (or ``pretrained:<name>``) and report the paper's validity
(structural: every interatomic distance >= 0.5 A; compositional: SMACT charge neutrality + electronegativity) and
the number-of-atoms histogram. No data needed. Prints one JSON line.

    python experiments/sample_validity.py --checkpoint pretrained:perov_5 --n 100
"""
from __future__ import annotations

import argparse
import collections
import json
import time


def main():
    from dpcdvae.eval.generation import validity
    from dpcdvae.models import load_model

    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sampler", default=None, help="default: eq7 (DP-CDVAE) / langevin (CDVAE)")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--raw-weights", action="store_true", help="the raw weights of a run trained with EMA")
    a = ap.parse_args()
    model = load_model(a.checkpoint, ema=not a.raw_weights)
    sampler = model.check_sampler(a.sampler)
    t0 = time.time()
    out = model.generate(a.n, sampler=sampler, steps=a.steps, seed=a.seed, batch_size=a.n)
    wall = time.time() - t0
    v = validity(out.structures)
    na = collections.Counter(int(n) for n in out.num_atoms.tolist())
    print(json.dumps({"checkpoint": a.checkpoint, "weights": "raw" if a.raw_weights else "ema", "n": a.n, "sampler": sampler, "steps": a.steps, "seed": a.seed,
                      "struct_valid_pct": round(100 * float(v["struct_valid"].mean()), 2),
                      "comp_valid_pct": round(100 * float(v["comp_valid"].mean()), 2),
                      "num_atoms_hist": dict(sorted(na.items())), "sample_wall_s": round(wall, 1)}))


if __name__ == "__main__":
    main()
