"""Where does the reconstruction RMS of Perov-5 come from? A probe of off-site displacements.

About 42 % of Perov-5 crystals (train and test alike) have their atoms displaced along one axis from the ideal
perovskite sites (fractional coordinates off the half-integer grid after a shift); the rest sit on the grid. This
probe decodes the TRUE crystals with z = the encoder's posterior mean, the true lattice and the true types kept
fixed, starting the reverse diffusion (Eq. 7) from the true coordinates noised to step t0 (t0 = T is a full
reconstruction from noise). For each t0 it reports, separately for displaced and on-grid targets: the share of
outputs that are displaced themselves, and the mean normalised RMS displacement to the target (atoms in one-to-one
correspondence, best common shift, Cartesian, divided by (V/N)^(1/3) as pymatgen's StructureMatcher normalises).

A model that uses z to place the displacements keeps them from t0 = T; one that only denoises locally keeps them
only from small t0. Prints one JSON line.

    python benchmarks/probe_displacements.py --checkpoint pretrained:perov_5 --n 200
"""
from __future__ import annotations

import argparse
import json

import torch


def grid_offset(frac: torch.Tensor, ptr) -> torch.Tensor:
    """Per crystal, the largest distance (fractional) of any atom from the half-integer grid, after shifting the
    crystal so that its first atom sits on the grid; ``[B]``. 0 for ideal perovskite sites."""
    out = []
    ptr = [int(p) for p in ptr]
    for b in range(len(ptr) - 1):
        x = frac[ptr[b]:ptr[b + 1]]
        d = (x - x[:1]) * 2.0
        d = (d - d.round()).abs() / 2.0
        out.append(float(d.max()))
    return torch.tensor(out)


def normalised_rms(pred: torch.Tensor, target: torch.Tensor, lattice: torch.Tensor, ptr) -> torch.Tensor:
    """Per crystal RMS of the minimum-image displacement pred - target after removing the best common shift,
    in Angstrom through ``lattice [B,3,3]`` (rows = lattice vectors), divided by (V/N)^(1/3); ``[B]``."""
    out = []
    ptr = [int(p) for p in ptr]
    for b in range(len(ptr) - 1):
        d = pred[ptr[b]:ptr[b + 1]] - target[ptr[b]:ptr[b + 1]]
        d = d - d.round()
        shift = torch.atan2(torch.sin(2 * torch.pi * d).mean(0), torch.cos(2 * torch.pi * d).mean(0)) / (2 * torch.pi)
        d = d - shift
        d = d - d.round()
        d = d - d.mean(0)  # the least-squares common shift (the circular mean only chose the branch)
        cart = d @ lattice[b]
        n = d.shape[0]
        scale = (torch.linalg.det(lattice[b]).abs() / n) ** (1.0 / 3.0)
        out.append(float(cart.pow(2).sum(-1).mean().sqrt() / scale))
    return torch.tensor(out)


@torch.no_grad()
def probe(model, batch, t0s=(1000, 300, 100, 30), seed: int = 0, tol: float = 0.01, variant: str = "eq7") -> dict:
    """The probe on one batch (see the module docstring); sums per t0 for displaced / on-grid targets."""
    from dpcdvae.crystal import lattice_params_to_matrix
    from dpcdvae.models.dpcdvae import _recenter, wrap

    model.eval()
    mu, _ = model.encode(batch)
    B, ab = batch.num_graphs, batch.batch
    lattice = lattice_params_to_matrix(batch.lengths, batch.angles)
    x0 = batch.frac_coords
    if model.cfg.recenter:
        x0 = _recenter(x0, ab, B)
    types = batch.atom_types
    displaced = grid_offset(batch.frac_coords, batch.ptr) > tol
    res = {"n_displaced": int(displaced.sum()), "n_on_grid": int((~displaced).sum()), "per_t0": {}}
    sch = model.scheduler
    for t0 in t0s:
        g = torch.Generator().manual_seed(seed)
        eps = torch.randn(x0.shape, generator=g, dtype=x0.dtype)
        if model.cfg.recenter:
            eps = _recenter(eps, ab, B)
        x = sch.add_noise(x0, torch.full((x0.shape[0],), int(t0), dtype=torch.long), eps)
        for t in range(int(t0), 0, -1):
            tv = torch.full((B,), t, dtype=torch.long)
            e, _ = model.decoder(wrap(x), types, mu, tv, lattice, ab, batch.num_atoms)
            x = sch.step(e, t, x, generator=g, variant=variant)
            if model.cfg.recenter:
                x = _recenter(x, ab, B)
        out = wrap(x)
        out_disp = grid_offset(out, batch.ptr) > tol
        rms = normalised_rms(out, batch.frac_coords, lattice, batch.ptr)
        res["per_t0"][int(t0)] = {
            "displaced_kept": int((displaced & out_disp).sum()),
            "on_grid_displaced": int((~displaced & out_disp).sum()),
            "rms_sum_displaced": float(rms[displaced].sum()),
            "rms_sum_on_grid": float(rms[~displaced].sum()),
        }
    return res


def main():
    from torch_geometric.loader import DataLoader

    from dpcdvae.data import load_split
    from dpcdvae.models import load_model
    from dpcdvae.train import resolve_root

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", default="pretrained:perov_5")
    p.add_argument("--dataset", default="perov_5")
    p.add_argument("--split", default="test")
    p.add_argument("--n", type=int, default=200, help="the first N crystals of the split")
    p.add_argument("--t0", type=int, nargs="+", default=[1000, 300, 100, 30])
    p.add_argument("--sampler", default="eq7", choices=["eq7", "eq6"], help="the reverse step (Eq. 7 paper, Eq. 6 DDPM)")
    p.add_argument("--raw-weights", action="store_true")
    a = p.parse_args()
    model = load_model(a.checkpoint, ema=not a.raw_weights)
    ds = load_split(a.dataset, a.split, root=resolve_root(a.dataset, None), max_atoms=model.cfg.max_atoms,
                    graph=model.data_graph, limit=a.n, progress=False)
    tot = {"n_displaced": 0, "n_on_grid": 0, "per_t0": {}}
    for batch in DataLoader(ds, batch_size=250):
        r = probe(model, batch, t0s=a.t0, variant=a.sampler)
        tot["n_displaced"] += r["n_displaced"]
        tot["n_on_grid"] += r["n_on_grid"]
        for t0, d in r["per_t0"].items():
            acc = tot["per_t0"].setdefault(t0, {k: 0 for k in d})
            for k, v in d.items():
                acc[k] += v
    nd, ng = max(tot["n_displaced"], 1), max(tot["n_on_grid"], 1)
    table = {t0: {"displaced_kept_pct": round(100 * d["displaced_kept"] / nd, 1),
                  "on_grid_made_displaced_pct": round(100 * d["on_grid_displaced"] / ng, 1),
                  "rms_displaced": round(d["rms_sum_displaced"] / nd, 4),
                  "rms_on_grid": round(d["rms_sum_on_grid"] / ng, 4)} for t0, d in tot["per_t0"].items()}
    print(json.dumps({"bench": "probe_displacements", "checkpoint": a.checkpoint, "dataset": a.dataset,
                      "split": a.split, "n": a.n, "sampler": a.sampler, "weights": "raw" if a.raw_weights else "ema (when the run had EMA)",
                      "n_displaced": tot["n_displaced"], "n_on_grid": tot["n_on_grid"], "per_t0": table}))


if __name__ == "__main__":
    main()
