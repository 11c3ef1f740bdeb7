"""Benchmark: Eq. 7 sampling throughput in structure-steps per second (one step = graph build + GemNet-T call +
update), for Perov-5-like (5 atoms) and Carbon-24 crystals (real rows when ../shared/data is present, else
Carbon-24-like random cells), compact and paper configs, at several batch sizes; where the time goes
(graph / network / rest); projected hours for 10,240 samples x 1000 steps.

Weights are random (throughput does not depend on them); lattices and atom counts are those of the data.

    python benchmarks/bench_sampling.py [--threads 2] [--device cpu] [--batch-sizes 1 16 64 256] [--steps 5]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import machine_info, print_json, sync  # noqa: E402

from dpcdvae.config import load_config  # noqa: E402
from dpcdvae.crystal import batch_from_num_atoms, lattice_params_to_matrix, wrap  # noqa: E402
from dpcdvae.graph import radius_graph_pbc  # noqa: E402
from dpcdvae.nets.gemnet import GemNetTDenoiser  # noqa: E402


def _crystals(kind: str, n: int, rng) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(lengths [n,3], angles [n,3], num_atoms [n]) of real dataset rows when found, else synthetic."""
    try:
        from dpcdvae.data import load_split

        name = "perov_5" if kind == "perov" else "carbon_24"
        ds = load_split(name, "test", graph="none", limit=max(n, 64), progress=False)
        idx = rng.integers(0, len(ds), size=n)
        items = [ds[int(i)] for i in idx]
        return (torch.cat([d.lengths for d in items]), torch.cat([d.angles for d in items]),
                torch.cat([d.num_atoms for d in items]))
    except Exception:
        if kind == "perov":
            a = torch.tensor(rng.uniform(3.7, 4.7, size=n), dtype=torch.float32)
            return a[:, None].repeat(1, 3), torch.full((n, 3), 90.0), torch.full((n,), 5, dtype=torch.long)
        na = torch.tensor(rng.integers(6, 25, size=n))
        vol = na.float() * 7.0
        lengths = vol[:, None].pow(1 / 3).repeat(1, 3) * torch.tensor(rng.uniform(0.8, 1.2, size=(n, 3))).float()
        return lengths, torch.tensor(rng.uniform(70, 110, size=(n, 3))).float(), na


def bench_case(cfg_name: str, kind: str, batch_size: int, steps: int, device: str, seed: int = 0) -> dict:
    cfg = load_config(cfg_name, dataset="perov_5" if kind == "perov" else "carbon_24").model
    d = cfg.decoder
    torch.manual_seed(seed)
    net = GemNetTDenoiser(latent_dim=cfg.latent_dim, num_blocks=d.num_blocks, emb_size_atom=d.emb_size_atom,
                          emb_size_edge=d.emb_size_edge, emb_size_trip=d.emb_size_trip, emb_size_rbf=d.emb_size_rbf,
                          emb_size_cbf=d.emb_size_cbf, emb_size_bil_trip=d.emb_size_bil_trip,
                          num_spherical=d.num_spherical, num_radial=d.num_radial, cutoff=d.cutoff,
                          max_neighbors=d.max_neighbors, type_emb_dim=d.type_emb_dim, time_emb_dim=d.time_emb_dim,
                          fourier=(d.fourier_min, d.fourier_max), project_input=d.project_input,
                          T=cfg.timesteps).to(device).eval()
    rng = np.random.default_rng(seed)
    lengths, angles, na = _crystals(kind, batch_size, rng)
    lattice = lattice_params_to_matrix(lengths, angles).to(device)
    na = na.to(device)
    batch = batch_from_num_atoms(na)
    N = int(na.sum())
    z = torch.randn(batch_size, cfg.latent_dim, device=device)
    types = torch.randint(1, 90, (N,), device=device)
    x = torch.randn(N, 3, device=device)
    from dpcdvae.diffusion.ddpm import DDPMScheduler

    sched = DDPMScheduler(cfg.timesteps, cfg.beta_schedule)
    t_graph = t_net = 0.0
    with torch.no_grad():
        for k in range(steps + 1):  # first iteration = warm-up
            t_val = cfg.timesteps - k
            t = torch.full((batch_size,), t_val, device=device, dtype=torch.long)
            sync(device)
            a = time.perf_counter()
            xw = wrap(x)
            g = radius_graph_pbc(xw, lattice, batch, d.cutoff, d.max_neighbors, triplets=True, num_atoms=na)
            sync(device)
            b = time.perf_counter()
            eps, logits = net(xw, types, z, t, lattice, batch, na, graph=g)
            x = sched.step(eps, t[batch], x, variant="eq7")
            types = logits.argmax(-1) + 1
            sync(device)
            c = time.perf_counter()
            if k > 0:
                t_graph += b - a
                t_net += c - b
    total = t_graph + t_net
    return {"config": cfg_name, "kind": kind, "batch_size": batch_size, "atoms_mean": N / batch_size,
            "structure_steps_per_s": batch_size * steps / total, "graph_frac": t_graph / total,
            "network_frac": t_net / total, "ms_per_step": 1000 * total / steps,
            "num_parameters": sum(p.numel() for p in net.parameters())}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16, 64, 256])
    p.add_argument("--steps", type=int, default=5, help="timed reverse steps per case (after one warm-up)")
    p.add_argument("--configs", nargs="+", default=["compact", "paper"])
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    rows = []
    for cfg in a.configs:
        for kind in ("perov", "carbon"):
            for bs in a.batch_sizes:
                r = bench_case(cfg, kind, bs, a.steps, a.device)
                rows.append(r)
                print_json({"case": f"{cfg}/{kind}/bs{bs}", **{k: (round(v, 3) if isinstance(v, float) else v)
                                                               for k, v in r.items()}})
    final = {"bench": "sampling", **machine_info(a.device)}
    for cfg in a.configs:
        for kind in ("perov", "carbon"):
            best = max((r for r in rows if r["config"] == cfg and r["kind"] == kind),
                       key=lambda r: r["structure_steps_per_s"])
            final[f"{kind}_steps_per_s_{cfg}"] = round(best["structure_steps_per_s"], 1)
            final[f"{kind}_best_batch_{cfg}"] = best["batch_size"]
            final[f"{kind}_graph_frac_{cfg}"] = round(best["graph_frac"], 3)
            final[f"{kind}_hours_10240x1000_{cfg}"] = round(10240 * 1000 / best["structure_steps_per_s"] / 3600, 2)
    anchors = {"perov": 127.0, "carbon": 67.5}  # authors' code, paper config, 2 threads (issue 3)
    if "paper" in a.configs:
        for kind, v in anchors.items():
            final[f"{kind}_paper_vs_authors_code"] = round(final[f"{kind}_steps_per_s_paper"] / v, 2)
    print_json(final)


if __name__ == "__main__":
    main()
