"""Benchmark: one complete sampling run, timed end to end: ``--n`` crystals, every one of the T = 1000 Eq. 7 steps,
in batches of ``--batch-size`` (issue 13's GPU goal: 10,240 Perov-5 samples, 1000 steps, published architecture,
<= 2 minutes).

The network is built through ``build_model`` from a preset (``published`` = the ``paper`` preset with
``model.decoder.project_input=false``, the authors' 548-wide GemNet-T), with random weights (speed does not depend
on them); lattices and atom counts are real test crystals (synthetic cells without ../shared/data), forced into the
model's own sampler (``sample_from_latent``), as in ``bench_sampling.py``. One untimed trajectory of 2 crystals warms
the device up first. Reports the wall time of the whole run (the sum over its batches, each ended by
a device synchronisation), structure-steps per second, and on a GPU ``torch.cuda.max_memory_allocated``.

    python benchmarks/full_sampling_run.py [--config published] [--kind perov] [--n 10240] [--batch-size 2048]
        [--device cuda] [--threads 2] [--set model.timesteps=5 ...]

``--set`` overrides the preset (e.g. ``model.timesteps=5`` for a quick run on a CPU); ``--max-seconds S`` stops
after the batch that passes S seconds and projects the whole run (``projected``). Final JSON line: ``wall_s``,
``structure_steps_per_s``, ``per_batch_s``, ``peak_mem_gib`` (GPU), ``goal_s`` (120) and ``goal_met`` (only for a
complete, unprojected run of >= 10,240 crystals x 1000 steps with the published network).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import dpcdvae.utils.openmp  # noqa: E402  (first: an entry point's OpenMP default, before torch starts its threads)
dpcdvae.utils.openmp.configure_openmp()
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import machine_info, print_json, sync  # noqa: E402
from bench_sampling import CONFIGS, _crystals  # noqa: E402

GOAL_S = 120.0


def full_run(config: str = "published", kind: str = "perov", n: int = 10240, batch_size: int = 2048,
             device: str = "cpu", overrides: dict | None = None, seed: int = 0,
             max_seconds: float | None = None) -> dict:
    """Sample ``n`` crystals with every diffusion step; returns the timing record (see the module docstring).

    ``max_seconds``: stop after the first batch that ends past this budget; ``wall_s`` is then projected from the
    batches run (``projected: true``, ``n_sampled`` < ``n``)."""
    from dpcdvae.config import load_config
    from dpcdvae.models.registry import build_model

    preset, base = CONFIGS[config]
    cfg = load_config(preset, dataset="perov_5" if kind == "perov" else "carbon_24",
                      overrides={**base, **(overrides or {})} or None)
    torch.manual_seed(seed)
    model = build_model(cfg).to(device).eval()
    rng = np.random.default_rng(seed)
    lengths, angles, na, source = _crystals(kind, n, rng)
    gen = torch.Generator(device=device).manual_seed(seed)
    T = int(cfg.model.timesteps)

    def run(sl, **kw):
        z = torch.randn(sl.stop - sl.start, cfg.model.latent_dim, device=device, generator=gen)
        return model.sample_from_latent(z, sampler="eq7", num_atoms=na[sl].to(device),
                                        lengths=lengths[sl].to(device), angles=angles[sl].to(device),
                                        generator=gen, **kw)

    with torch.no_grad():
        run(slice(0, min(2, n)))  # warm-up (a full trajectory of 2 crystals): kernels, allocator, graph paths
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        per_batch = []
        n_out = 0
        for start in range(0, n, batch_size):
            sl = slice(start, min(n, start + batch_size))
            sync(device)
            t0 = time.perf_counter()
            run(sl)
            sync(device)
            per_batch.append(time.perf_counter() - t0)
            n_out += sl.stop - sl.start
            if max_seconds is not None and sum(per_batch) > max_seconds and sl.stop < n:
                break
    measured = float(sum(per_batch))
    projected = n_out < n
    wall = measured * n / n_out if projected else measured
    rec = {"config": config, "kind": kind, "n": n, "batch_size": batch_size, "timesteps": T, "crystals": source,
           "atoms_mean": float(na.float().mean()), "wall_s": wall, "structure_steps_per_s": n * T / wall,
           "per_batch_s": [round(x, 3) for x in per_batch], "n_sampled": int(n_out), "projected": projected,
           "measured_s": measured,
           "peak_mem_gib": (torch.cuda.max_memory_allocated() / 2 ** 30 if device.startswith("cuda") else None),
           "decoder_parameters": sum(p.numel() for p in model.decoder.parameters()), "overrides": overrides or {},
           "goal_s": GOAL_S}
    rec["goal_met"] = bool(T == 1000 and n >= 10240 and config == "published" and wall <= GOAL_S and not projected)
    return rec


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default="published", choices=sorted(CONFIGS))
    p.add_argument("--kind", default="perov", choices=["perov", "carbon"])
    p.add_argument("--n", type=int, default=10240)
    p.add_argument("--batch-size", type=int, default=2048)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    p.add_argument("--max-seconds", type=float, default=None,
                   help="stop after the batch that passes this budget and project the whole run's time")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    from dpcdvae.utils.alloc import tune_allocator

    tune_allocator()  # an entry point's process tuning (the package's samplers and graph builder no longer do it)
    import yaml

    overrides = {k: yaml.safe_load(v) for k, v in (kv.split("=", 1) for kv in a.set)}
    rec = full_run(a.config, a.kind, a.n, a.batch_size, a.device, overrides, max_seconds=a.max_seconds)
    print_json({"bench": "full_sampling_run", **machine_info(a.device), **rec})


if __name__ == "__main__":
    main()
