"""Benchmark: reverse-diffusion sampling throughput in structure-steps per second, like for like.

One structure-step = one step of the model's own Eq. 7 sampler (``DPCDVAE.sample_from_latent``: periodic graph +
GemNet-T call + update + type argmax) for one crystal. The model is built through ``build_model`` from a config
preset, so the benchmarked network is the one the package samples with:

* ``published``: the authors' architecture, the ``paper`` preset with ``model.decoder.project_input=false``
  (548-wide GemNet-T atom embedding in every block); it lacks only the energy head the published code computes and
  throws away. This is the like-for-like comparison with the authors' code (127 Perov-5 / 67.5 Carbon-24
  structure-steps/s at their best batch, 2 threads, REFERENCE-BENCH.md).
* ``paper``: the ``paper`` preset (node input projected 548 -> 128, as CDVAE did): a smaller network.
* ``compact``: the ``compact`` preset (0.42 M decoder parameters).

Timing: every case (config, dataset, batch size) runs in a fresh process, so no case inherits another's warm
allocator or oneDNN caches; inside it, ``--warmup`` steps are discarded, then ``--repeats`` blocks of ``--steps``
steps are timed one after the other (the sampler is stopped after the last); the case's figure is the median block,
with the min and max. Weights are random (speed does not depend on them); lattices and atom counts are real test
crystals (random cells of the same kind when ../shared/data is absent), forced into the sampler.

    python benchmarks/bench_sampling.py [--configs published paper compact] [--batch-sizes 16 64 256]
        [--threads 2] [--warmup 5] [--steps 5] [--repeats 3] [--device cpu] [--processes 1]

``--processes 2`` measures what ``dpcdvae sample --devices 2`` gets from a 2-core CPU: two processes of one thread
each, timed at once, their throughputs summed (``min``/``max`` are then sums of the per-process extremes).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np
import dpcdvae.utils.openmp  # noqa: E402  (first: an entry point's OpenMP default, before torch starts its threads)
dpcdvae.utils.openmp.configure_openmp()
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import machine_info, print_json, sync  # noqa: E402

#: the authors' code, published architecture, 2 threads, best batch (REFERENCE-BENCH.md; another CPU, see there).
#: Only the default of --authors-perov / --authors-carbon: pass the figures measured on the machine at hand.
AUTHORS = {"perov": 127.0, "carbon": 67.5}
CONFIGS = {"published": ("paper", {"model.decoder.project_input": False}), "paper": ("paper", {}),
           "compact": ("compact", {})}


def _crystals(kind: str, n: int, rng) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, str]:
    """(lengths [n,3] A, angles [n,3] deg, num_atoms [n], source) of real test rows when found, else synthetic."""
    name = "perov_5" if kind == "perov" else "carbon_24"
    try:
        from dpcdvae.data import load_split

        ds = load_split(name, "test", graph="none", limit=max(n, 64), progress=False)
        idx = rng.integers(0, len(ds), size=n)
        items = [ds[int(i)] for i in idx]
        return (torch.cat([d.lengths for d in items]), torch.cat([d.angles for d in items]),
                torch.cat([d.num_atoms for d in items]), f"{name} test rows")
    except Exception:
        if kind == "perov":
            a = torch.tensor(rng.uniform(3.7, 4.7, size=n), dtype=torch.float32)
            return a[:, None].repeat(1, 3), torch.full((n, 3), 90.0), torch.full((n,), 5, dtype=torch.long), "synthetic"
        na = torch.tensor(rng.integers(6, 25, size=n))
        vol = na.float() * 7.0
        lengths = vol[:, None].pow(1 / 3).repeat(1, 3) * torch.tensor(rng.uniform(0.8, 1.2, size=(n, 3))).float()
        return lengths, torch.tensor(rng.uniform(70, 110, size=(n, 3))).float(), na, "synthetic"


class _Enough(Exception):
    pass


def run_case(config: str, kind: str, batch_size: int, warmup: int, steps: int, repeats: int, device: str,
             seed: int = 0) -> dict:
    """Time one case in this process (see the module docstring)."""
    import dpcdvae.nets.gemnet as gemnet_mod
    from dpcdvae.utils.alloc import allocator_state, tune_allocator
    from dpcdvae.config import load_config
    from dpcdvae.models.registry import build_model

    preset, overrides = CONFIGS[config]
    cfg = load_config(preset, dataset="perov_5" if kind == "perov" else "carbon_24", overrides=overrides or None)
    torch.manual_seed(seed)
    model = build_model(cfg).to(device).eval()
    rng = np.random.default_rng(seed)
    lengths, angles, na, source = _crystals(kind, batch_size, rng)
    z = torch.randn(batch_size, cfg.model.latent_dim, device=device)

    stamps: list[float] = []
    graph_s = [0.0]
    need = warmup + steps * repeats + 1  # step k = interval between network calls k and k+1
    build_graph = gemnet_mod.radius_graph_pbc

    def timed_graph(*args, **kwargs):
        sync(device)
        a = time.perf_counter()
        g = build_graph(*args, **kwargs)
        sync(device)
        if warmup < len(stamps) <= warmup + steps * repeats:
            graph_s[0] += time.perf_counter() - a
        return g

    forward = model.decoder.forward

    def stamped_forward(*args, **kwargs):
        sync(device)
        stamps.append(time.perf_counter())
        if len(stamps) >= need:
            raise _Enough
        return forward(*args, **kwargs)

    tune_allocator()  # an entry point's process tuning (the package's samplers and graph builder no longer do it)
    gemnet_mod.radius_graph_pbc = timed_graph
    model.decoder.forward = stamped_forward
    gen = torch.Generator(device=device).manual_seed(seed)
    try:
        model.sample_from_latent(z, sampler="eq7", num_atoms=na.to(device), lengths=lengths.to(device),
                                 angles=angles.to(device), generator=gen)
        raise RuntimeError(f"the sampler stopped after {len(stamps)} calls; need {need} (T too small?)")
    except _Enough:
        pass
    finally:
        gemnet_mod.radius_graph_pbc = build_graph
        del model.decoder.forward
    dt = np.diff(np.asarray(stamps))[warmup:]
    blocks = [float(dt[r * steps:(r + 1) * steps].sum()) for r in range(repeats)]
    rates = sorted(batch_size * steps / b for b in blocks)
    med = statistics.median(rates)
    return {"config": config, "kind": kind, "batch_size": batch_size, "crystals": source,
            "atoms_mean": float(na.float().mean()), "structure_steps_per_s": med, "min": rates[0], "max": rates[-1],
            "spread": (rates[-1] - rates[0]) / med, "ms_per_step": 1000 * statistics.median(blocks) / steps,
            "graph_frac": graph_s[0] / sum(blocks), "repeats": repeats, "steps_per_repeat": steps,
            "warmup_steps": warmup,
            "decoder_parameters": sum(p.numel() for p in model.decoder.parameters()),
            "allocator": allocator_state()["reason"]}


def _run_isolated(args: argparse.Namespace, config: str, kind: str, bs: int) -> dict:
    """The case in a fresh process; with ``--processes P > 1``, P copies at once with ``threads // P`` torch threads
    each (what ``--devices P`` does on a CPU): the machine's throughput is their sum."""
    P = max(1, args.processes)
    cmd = [sys.executable, os.path.abspath(__file__), "--one-case", f"{config}:{kind}:{bs}",
           "--threads", str(max(1, args.threads // P)), "--device", args.device, "--warmup", str(args.warmup),
           "--steps", str(args.steps), "--repeats", str(args.repeats)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(P)]
    rows = []
    for pr in procs:
        out, err = pr.communicate()
        if pr.returncode != 0:
            raise SystemExit(f"case {config}/{kind}/bs{bs} failed:\n{err[-3000:]}")
        rows.append(json.loads(out.strip().splitlines()[-1]))
    if P == 1:
        return rows[0]
    r = dict(rows[0])
    for key in ("structure_steps_per_s", "min", "max"):
        r[key] = sum(x[key] for x in rows)
    r["spread"] = (r["max"] - r["min"]) / r["structure_steps_per_s"]
    r["processes"] = P
    return r


def anchor_ratios(final: dict, authors: dict) -> dict:
    """``{kind}_authors_anchor`` (the figure used), ``{kind}_authors_anchor_is_reference_cpu`` (whether it is still
    REFERENCE-BENCH.md's figure from another CPU) and ``{kind}_published_vs_authors_anchor`` (ours / theirs) for
    every kind whose published figure is in ``final``."""
    out = {}
    for kind, v in authors.items():
        if f"{kind}_steps_per_s_published" in final:
            out[f"{kind}_authors_anchor"] = v
            out[f"{kind}_authors_anchor_is_reference_cpu"] = v == AUTHORS[kind]
            out[f"{kind}_published_vs_authors_anchor"] = round(final[f"{kind}_steps_per_s_published"] / v, 2)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 64, 256])
    p.add_argument("--kinds", nargs="+", default=["perov", "carbon"], choices=["perov", "carbon"])
    p.add_argument("--configs", nargs="+", default=["published", "paper", "compact"], choices=sorted(CONFIGS))
    p.add_argument("--warmup", type=int, default=5, help="steps discarded at the start of each case")
    p.add_argument("--steps", type=int, default=5, help="steps per timed repeat")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats per case (the median is reported)")
    p.add_argument("--processes", type=int, default=1,
                   help="run each case as P concurrent processes of threads/P torch threads and sum them")
    p.add_argument("--authors-perov", type=float, default=AUTHORS["perov"], metavar="STEPS_PER_S",
                   help="the authors' code on this machine, Perov-5 structure-steps/s (default: REFERENCE-BENCH.md's "
                        "figure from another CPU); the *_vs_authors_anchor keys divide by it")
    p.add_argument("--authors-carbon", type=float, default=AUTHORS["carbon"], metavar="STEPS_PER_S",
                   help="the same for Carbon-24")
    p.add_argument("--one-case", default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    if a.one_case:
        config, kind, bs = a.one_case.split(":")
        r = run_case(config, kind, int(bs), a.warmup, a.steps, a.repeats, a.device)
        print(json.dumps(r))
        return
    rows = []
    for cfg in a.configs:
        for kind in a.kinds:
            for bs in a.batch_sizes:
                r = _run_isolated(a, cfg, kind, bs)
                rows.append(r)
                print_json({"case": f"{cfg}/{kind}/bs{bs}", **{k: (round(v, 3) if isinstance(v, float) else v)
                                                               for k, v in r.items()}})
    final = {"bench": "sampling", **machine_info(a.device), "isolated_processes": True, "warmup": a.warmup,
             "concurrent_processes_per_case": a.processes,
             "steps": a.steps, "repeats": a.repeats, "allocator": rows[0]["allocator"] if rows else None}
    for cfg in a.configs:
        for kind in a.kinds:
            best = max((r for r in rows if r["config"] == cfg and r["kind"] == kind),
                       key=lambda r: r["structure_steps_per_s"])
            final[f"{kind}_steps_per_s_{cfg}"] = round(best["structure_steps_per_s"], 1)
            final[f"{kind}_spread_{cfg}"] = round(best["spread"], 3)
            final[f"{kind}_best_batch_{cfg}"] = best["batch_size"]
            final[f"{kind}_graph_frac_{cfg}"] = round(best["graph_frac"], 3)
            final[f"{kind}_hours_10240x1000_{cfg}"] = round(10240 * 1000 / best["structure_steps_per_s"] / 3600, 2)
            final[f"{kind}_decoder_parameters_{cfg}"] = best["decoder_parameters"]
    if "published" in a.configs and a.device == "cpu":
        final.update(anchor_ratios(final, {"perov": a.authors_perov, "carbon": a.authors_carbon}))
    print_json(final)


if __name__ == "__main__":
    main()
