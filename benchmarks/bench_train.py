"""Benchmark: training throughput (structures/s; forward + backward + gradient clipping + Adam step) and peak
memory, like for like with the authors' code.

Configs (built through ``build_model`` from the presets, as ``dpcdvae train`` builds them):

* ``published``: the authors' architecture (``paper`` with ``model.decoder.project_input=false``: 548-wide GemNet-T
  atom embedding; DimeNet++ encoder on CrystalNN graphs). Anchor: the authors' code, 46 Perov-5 structures/s at
  batch 64 and 7.7 GiB peak RSS at batch 256 (2 threads, REFERENCE-BENCH.md; another CPU, see there).
* ``paper``: node input projected 548 -> 128 (CDVAE's choice): a smaller network. ``compact``: the compact preset.

Each config runs in a fresh process (a process's peak RSS only grows, and warm caches would favour the second
case). ``--warmup`` steps are discarded (the authors' figure discarded 6), then ``--steps`` steps are timed one by
one; the figure is the median step, with the min and max. Peak memory: ``torch.cuda.max_memory_allocated`` on a
GPU; on CPU the growth of the process's peak RSS over the timed and warm-up steps (allocator caching included).
Batches are Perov-5 training rows (the synthetic demo set without ../shared/data), cycled over 3 distinct batches.

    python benchmarks/bench_train.py [--configs published paper compact] [--batch-size 64] [--threads 2]
        [--warmup 4] [--steps 7] [--set K=V ...] [--no-tune-malloc]

``--set model.decoder.checkpoint_blocks=true`` measures activation checkpointing (less memory, more compute).

Learning rate: ``--lr 0`` (the default) runs Adam's full arithmetic (moments, bias correction, the update) with a zero
step, so the weights stay at their initial values and every timed step does the same work. The benchmark times the
full path (``epoch=10_000``: past teacher forcing, the denoiser sees the *predicted* lattice); from random weights
on that path the ``paper`` / ``published`` networks diverge within 3-8 steps at lr 1e-3 (coordinate loss 224 -> 1e6
-> 8e9 at batch 64, then non-finite type probabilities stop the run; measured 2026-12-07), and a diverged step does
different work (lattice fallbacks, other neighbour counts). Real training starts teacher-forced and is stable (the
``paper`` preset, batch 256, epoch 0: loss 326 -> 35 over 12 steps, same date). ``--lr 1e-3`` times a real rate.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import dpcdvae.utils.openmp  # noqa: E402  (first: an entry point's OpenMP default, before torch starts its threads)
dpcdvae.utils.openmp.configure_openmp()
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import machine_info, print_json, sync  # noqa: E402

AUTHORS_STRUCTURES_PER_S = 46.0  # Perov-5, batch 64, 2 threads (REFERENCE-BENCH.md)
AUTHORS_PEAK_GIB_BS256 = 7.7
CONFIGS = {"published": ("paper", {"model.decoder.project_input": False}), "paper": ("paper", {}),
           "compact": ("compact", {})}


def _data(n: int, graph: str):
    from dpcdvae.data import DatasetNotFoundError, ensure_demo_dataset, load_split

    try:
        return load_split("perov_5", "train", graph=graph, limit=n, progress=False), "perov_5"
    except DatasetNotFoundError:
        root = ensure_demo_dataset().parent
        return load_split("demo_synthetic_perovskites", "train", root=root, graph=graph, limit=n,
                          progress=False), "demo_synthetic_perovskites"


def run_case(config: str, batch_size: int, warmup: int, steps: int, device: str, overrides: dict,
             lr: float = 0.0) -> dict:
    from torch_geometric.loader import DataLoader

    from dpcdvae.utils.alloc import allocator_state, tune_allocator
    from dpcdvae.config import load_config
    from dpcdvae.data import LatticeScaler
    from dpcdvae.models.registry import build_model

    tune_allocator()  # as dpcdvae.train.train does (a no-op under DPCDVAE_TUNE_MALLOC=0)
    preset, base = CONFIGS[config]
    cfg = load_config(preset, dataset="perov_5", overrides={**base, **overrides} or None)
    graph = "crystalnn" if cfg.model.encoder.graph == "crystalnn" else "none"
    ds, name = _data(batch_size * 3, graph)
    torch.manual_seed(0)
    model = build_model(cfg, LatticeScaler(cfg.model.lattice_scaler).fit(ds)).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    batches = [b.to(device) for b in DataLoader(ds, batch_size=batch_size, shuffle=False)][:3]
    watched = [q for q in model.parameters() if q.requires_grad]
    watched = [watched[0], watched[-1]]  # two tensors are enough to tell whether the optimizer moved the weights
    before = [q.detach().clone() for q in watched]
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times, sizes = [], []
    for k in range(warmup + steps):
        b = batches[k % len(batches)]
        sync(device)
        t0 = time.perf_counter()
        opt.zero_grad()
        out = model(b, epoch=10_000)  # past teacher forcing: the full path
        out["loss"].backward()
        torch.nn.utils.clip_grad_value_(model.parameters(), 0.5)
        opt.step()
        sync(device)
        if k >= warmup:
            times.append(time.perf_counter() - t0)
            sizes.append(b.num_graphs)
    peak = (torch.cuda.max_memory_allocated() / 2 ** 30 if device.startswith("cuda")
            else (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 2 ** 20)
    moved = max(float((q.detach() - q0).abs().max()) for q, q0 in zip(watched, before))
    rates = sorted(n / t for n, t in zip(sizes, times))
    med = statistics.median(rates)
    return {"config": config, "data": name, "batch_size": batch_size, "structures_per_s": med, "min": rates[0],
            "max": rates[-1], "spread": (rates[-1] - rates[0]) / med, "s_per_step": statistics.median(times),
            "peak_mem_gib": peak, "peak_mem_kind": "cuda max_memory_allocated" if device.startswith("cuda")
            else "peak RSS growth", "num_parameters": sum(p.numel() for p in model.parameters()),
            "warmup_steps": warmup, "timed_steps": steps, "overrides": overrides, "lr": lr,
            "max_weight_change": moved,
            "allocator": allocator_state()["reason"]}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--warmup", type=int, default=4)
    p.add_argument("--steps", type=int, default=7)
    p.add_argument("--configs", nargs="+", default=["published", "paper", "compact"], choices=sorted(CONFIGS))
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides for every config")
    p.add_argument("--lr", type=float, default=0.0,
                   help="Adam's learning rate (default 0: the full optimizer arithmetic, weights unchanged; see above)")
    p.add_argument("--no-tune-malloc", action="store_true", help="glibc's default allocator thresholds")
    p.add_argument("--authors", type=float, default=AUTHORS_STRUCTURES_PER_S, metavar="STRUCTURES_PER_S",
                   help="the authors' code on this machine at the same batch (default: REFERENCE-BENCH.md's figure "
                        "from another CPU); published_vs_authors_anchor_speed divides by it")
    p.add_argument("--one-case", default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    import yaml

    overrides = {k: yaml.safe_load(v) for k, v in (kv.split("=", 1) for kv in a.set)}
    if a.one_case:
        print(json.dumps(run_case(a.one_case, a.batch_size, a.warmup, a.steps, a.device, overrides, a.lr)))
        return
    env = {**os.environ, **({"DPCDVAE_TUNE_MALLOC": "0"} if a.no_tune_malloc else {})}
    final = {"bench": "train", **machine_info(a.device), "overrides": overrides, "batch_size": a.batch_size, "lr": a.lr,
             "isolated_processes": True}
    for cfg in a.configs:
        cmd = [sys.executable, os.path.abspath(__file__), "--one-case", cfg, "--batch-size", str(a.batch_size),
               "--threads", str(a.threads), "--device", a.device, "--warmup", str(a.warmup),
               "--steps", str(a.steps), "--lr", str(a.lr), "--set", *a.set]
        out = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if out.returncode != 0:
            raise SystemExit(f"config {cfg} failed:\n{out.stderr[-3000:]}")
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print_json({"case": cfg, **{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()}})
        final[f"train_structures_per_s_{cfg}"] = round(r["structures_per_s"], 2)
        final[f"train_spread_{cfg}"] = round(r["spread"], 3)
        final[f"train_peak_gib_{cfg}"] = round(r["peak_mem_gib"], 3)
        final[f"num_parameters_{cfg}"] = r["num_parameters"]
        final["allocator"] = r["allocator"]
    if "published" in a.configs and a.device == "cpu":
        final["authors_anchor"] = a.authors
        final["authors_anchor_is_reference_cpu"] = a.authors == AUTHORS_STRUCTURES_PER_S
        final["published_vs_authors_anchor_speed"] = round(final["train_structures_per_s_published"] / a.authors, 2)
    print_json(final)


if __name__ == "__main__":
    main()
