"""Where a sampling step's time goes: CPU time per part of the GemNet-T denoiser, one reverse step at a time.

The model is built by ``build_model`` from a preset (``published`` = ``paper`` with the 548-wide atom embedding,
as in bench_sampling.py); real Perov-5 / Carbon-24 test lattices and atom counts (synthetic without the data).
Each part's ``forward`` (and the graph builder, the triplet layout, the reverse-edge map) is wrapped with a
process-CPU-time counter; CPU time, unlike wall time, is not inflated by other jobs on a shared machine (with one
torch thread it is the compute of this process). Parts, summed over the blocks:

* ``output_blocks``: the ``num_blocks + 1`` direct-force output MLPs on the edges;
* ``triplet_interaction``: two-hop message passing (gather of the partner edges, bilinear layer, up-projection);
* ``edge_residual_layers``: the residual MLPs on the edge messages (before/after the skip, after the concat);
* ``atom_update``: neighbour sum to the atoms and the atom MLP (548 wide in ``published``);
* ``dense_m``, ``concat`` (edge messages from the updated atoms), ``edge_embedding``, ``input_projection``,
  ``rbf``, ``spherical_basis``, ``triplet_layout``, ``reverse_edges``, ``graph`` (periodic radius graph and
  triplets); ``rest_of_network`` = the network call minus the parts (circular basis assembly, force head, type head);
  ``outside_network`` = the Eq. 7 update and type argmax.

    python benchmarks/profile_sampling_step.py [--config published] [--kind perov] [--batch-size 16] [--threads 1]
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import time

import numpy as np
import dpcdvae.utils.openmp  # noqa: E402  (first: an entry point's OpenMP default, before torch starts its threads)
dpcdvae.utils.openmp.configure_openmp()
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import machine_info  # noqa: E402
from bench_sampling import CONFIGS, _crystals  # noqa: E402

from dpcdvae.diffusion.samplers import Eq7Sampler  # noqa: E402

EQ7 = Eq7Sampler()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="published", choices=sorted(CONFIGS))
    ap.add_argument("--kind", default="perov", choices=["perov", "carbon"])
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    import dpcdvae.nets.gemnet as gm
    from dpcdvae.utils.alloc import tune_allocator
    from dpcdvae.config import load_config
    from dpcdvae.structures.crystal import batch_from_num_atoms, lattice_params_to_matrix, wrap
    from dpcdvae.models.registry import build_model

    tune_allocator()
    preset, overrides = CONFIGS[a.config]
    cfg = load_config(preset, dataset="perov_5" if a.kind == "perov" else "carbon_24", overrides=overrides or None)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    net = model.decoder
    lengths, angles, na, source = _crystals(a.kind, a.batch_size, np.random.default_rng(0))
    lattice = lattice_params_to_matrix(lengths, angles)
    batch = batch_from_num_atoms(na)
    N = int(na.sum())
    z = torch.randn(a.batch_size, cfg.model.latent_dim)
    types = torch.randint(1, 90, (N,))
    x = torch.rand(N, 3)

    acc: dict[str, float] = collections.defaultdict(float)

    def timed(name, fn):
        def wrapper(*args, **kwargs):
            c = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                acc[name] += time.process_time() - c
        return wrapper

    gm.radius_graph_pbc = timed("graph", gm.radius_graph_pbc)
    gm.reverse_edges = timed("reverse_edges", gm.reverse_edges)
    gm.legendre_sph = timed("spherical_basis", gm.legendre_sph)
    gm.TripletLayout.build = staticmethod(timed("triplet_layout", gm.TripletLayout.build))
    for b in net.blocks:
        b.trip.forward = timed("triplet_interaction", b.trip.forward)
        b.atom_update.forward = timed("atom_update", b.atom_update.forward)
        b.concat.forward = timed("concat", b.concat.forward)
        b.dense_m.forward = timed("dense_m", b.dense_m.forward)
        for seq in (b.before_skip, b.after_skip, b.residual_m):
            seq.forward = timed("edge_residual_layers", seq.forward)
    for o in net.out_blocks:
        o.forward = timed("output_blocks", o.forward)
    net.edge_emb.forward = timed("edge_embedding", net.edge_emb.forward)
    net.input_proj.forward = timed("input_projection", net.input_proj.forward)
    net.rbf.forward = timed("rbf", net.rbf.forward)
    net_forward = timed("_network", net.forward)

    def step(k):
        nonlocal x, types
        t = torch.full((a.batch_size,), cfg.model.timesteps - k, dtype=torch.long)
        eps, logits = net_forward(wrap(x), types, z, t, lattice, batch, na)
        x = EQ7.step(model.scheduler, eps, t[batch], x, torch.randn_like(x)).prev_sample
        types = logits.argmax(-1) + 1

    with torch.no_grad():
        for k in range(a.warmup):
            step(k)
        acc.clear()
        c0 = time.process_time()
        for k in range(a.warmup, a.warmup + a.steps):
            step(k)
        total = time.process_time() - c0
    network = acc.pop("_network")
    parts = dict(acc)
    parts["rest_of_network"] = network - sum(parts.values())
    parts["outside_network"] = total - network
    ms = {k: round(1000 * v / a.steps, 2) for k, v in sorted(parts.items(), key=lambda kv: -kv[1])}
    for k, v in ms.items():
        print(f"{k:22s} {v:8.2f} ms/step  {100 * v / (1000 * total / a.steps):5.1f} %", file=sys.stderr)
    print(json.dumps({"bench": "profile_sampling_step", "config": a.config, "kind": a.kind,
                      "batch_size": a.batch_size, "crystals": source, "atoms": N,
                      "cpu_ms_per_step": round(1000 * total / a.steps, 2), "cpu_ms_per_step_by_part": ms,
                      "share_by_part": {k: round(v / (1000 * total / a.steps), 4) for k, v in ms.items()},
                      **machine_info()}))


if __name__ == "__main__":
    main()
