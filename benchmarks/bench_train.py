"""Benchmark: training throughput (structures/s, forward + backward + Adam step) and peak memory, compact and
paper configs, on Perov-5 batches (real rows when ../shared/data is present, else the synthetic demo set).

Peak memory: CUDA max_memory_allocated on a GPU; on CPU the growth of the process's peak RSS during the timed
steps (an upper bound that includes allocator caching).

    python benchmarks/bench_train.py [--threads 2] [--device cpu] [--batch-size 64] [--steps 5] [--set K=V ...]

``--set model.decoder.checkpoint_blocks=true`` measures activation checkpointing. On CPU the peak RSS of a process
only grows, so compare settings in separate runs (one process each), not in one.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import machine_info, print_json, sync  # noqa: E402

from dpcdvae.config import load_config  # noqa: E402
from dpcdvae.data import DatasetNotFoundError, LatticeScaler, ensure_demo_dataset, load_split  # noqa: E402
from dpcdvae.models import DPCDVAE  # noqa: E402


def _data(n: int, graph: str):
    try:
        return load_split("perov_5", "train", graph=graph, limit=n, progress=False), "perov_5"
    except DatasetNotFoundError:
        root = ensure_demo_dataset().parent
        return load_split("demo_synthetic_perovskites", "train", root=root, graph=graph, limit=n,
                          progress=False), "demo_synthetic_perovskites"


def bench(cfg_name: str, batch_size: int, steps: int, device: str, overrides: dict | None = None) -> dict:
    from torch_geometric.loader import DataLoader

    cfg = load_config(cfg_name, dataset="perov_5", overrides=overrides or None)
    graph = "crystalnn" if cfg.model.encoder.graph == "crystalnn" else "none"
    ds, name = _data(batch_size * (steps + 1), graph)
    torch.manual_seed(0)
    model = DPCDVAE(cfg.model, LatticeScaler(cfg.model.lattice_scaler).fit(ds)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False)
    batches = [b.to(device) for b in loader][: steps + 1]
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    n_struct, elapsed = 0, 0.0
    for k, b in enumerate(batches):
        sync(device)
        t0 = time.perf_counter()
        opt.zero_grad()
        out = model(b, epoch=10_000)  # past teacher forcing: the full path
        out["loss"].backward()
        torch.nn.utils.clip_grad_value_(model.parameters(), 0.5)
        opt.step()
        sync(device)
        if k > 0:
            elapsed += time.perf_counter() - t0
            n_struct += b.num_graphs
    peak = (torch.cuda.max_memory_allocated() / 2 ** 30 if device.startswith("cuda")
            else (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 2 ** 20)
    return {"config": cfg_name, "data": name, "batch_size": batch_size, "structures_per_s": n_struct / elapsed,
            "peak_mem_gib": peak, "num_parameters": sum(p.numel() for p in model.parameters())}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--configs", nargs="+", default=["compact", "paper"])
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides for every config")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    import yaml

    overrides = {k: yaml.safe_load(v) for k, v in (kv.split("=", 1) for kv in a.set)}
    final = {"bench": "train", **machine_info(a.device), "overrides": overrides}
    for cfg in a.configs:
        r = bench(cfg, a.batch_size, a.steps, a.device, overrides)
        print_json({"case": cfg, **r})
        final[f"{cfg}_structures_per_s"] = round(r["structures_per_s"], 2)
        final[f"{cfg}_peak_mem_gib"] = round(r["peak_mem_gib"], 3)
        final[f"{cfg}_num_parameters"] = r["num_parameters"]
    if "paper" in a.configs:
        final["paper_vs_authors_code_speed"] = round(final["paper_structures_per_s"] / 46.0, 2)  # anchor, bs 64
    print_json(final)


if __name__ == "__main__":
    main()
