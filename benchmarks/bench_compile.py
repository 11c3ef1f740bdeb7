"""Does ``torch.compile`` pay for the denoiser on this CPU? Eq. 7 steps of the compact GemNet-T, eager vs compiled.

    OMP_NUM_THREADS=1 python benchmarks/bench_compile.py [--batch-size 256] [--steps 10] [--mode default]

Random weights, real Perov-5 test cells (synthetic without the data; as ``bench_sampling.py``), one torch thread.
Times ``--steps`` Eq. 7 steps (network + update) eagerly and with ``torch.compile(net.forward, dynamic=True)``
after a warm-up of 3 steps (the compile time is reported separately). Final JSON line: ``eager_ms_per_step``,
``compiled_ms_per_step``, ``compile_s``, ``speedup``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np  # noqa: E402
from _common import machine_info  # noqa: E402

import torch  # noqa: E402

from dpcdvae.diffusion.samplers import Eq7Sampler  # noqa: E402

EQ7 = Eq7Sampler()

def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--mode", default="default", help="torch.compile mode (default, reduce-overhead, max-autotune)")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    from bench_sampling import _crystals

    from dpcdvae.config import load_config
    from dpcdvae.structures.crystal import batch_from_num_atoms, lattice_params_to_matrix, wrap
    from dpcdvae.models.registry import build_model

    cfg = load_config("compact", dataset="perov_5")
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    net = model.decoder
    B = a.batch_size
    lengths, angles, na, _ = _crystals("perov", B, np.random.default_rng(0))
    lattice = lattice_params_to_matrix(lengths, angles)
    batch = batch_from_num_atoms(na)
    n = int(na.sum())
    z = torch.randn(B, cfg.model.latent_dim)
    types = torch.randint(1, 90, (n,))
    x0 = torch.rand(n, 3)

    def run(f, steps):
        x, ty = x0, types
        for k in range(steps):
            t = torch.full((B,), 1000 - k, dtype=torch.long)
            eps, logits = f(wrap(x), ty, z, t, lattice, batch, na)
            x = EQ7.step(model.scheduler, eps, t[batch], x, torch.randn_like(x)).prev_sample
            ty = logits.argmax(-1) + 1
        return x

    out: dict = {"bench": "compile", "batch_size": B, "atoms": n, "steps": a.steps, "mode": a.mode}
    with torch.no_grad():
        run(net.forward, 2)
        t0 = time.perf_counter()
        run(net.forward, a.steps)
        out["eager_ms_per_step"] = round(1000 * (time.perf_counter() - t0) / a.steps, 2)
        f = torch.compile(net.forward, dynamic=True, mode=None if a.mode == "default" else a.mode)
        t0 = time.perf_counter()
        run(f, 3)
        out["compile_s"] = round(time.perf_counter() - t0, 1)
        t0 = time.perf_counter()
        run(f, a.steps)
        out["compiled_ms_per_step"] = round(1000 * (time.perf_counter() - t0) / a.steps, 2)
    out["speedup"] = round(out["eager_ms_per_step"] / out["compiled_ms_per_step"], 3)
    out.update(machine_info())
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
