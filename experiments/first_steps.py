"""The first optimizer steps of a preset from random weights: total, KL and coordinate losses and the largest
posterior logvar per step, for each encoder output init (``model.encoder.output_init``).

Adam at the preset's learning rate, gradients clipped by value as in training, the first ``--n`` Perov-5 test
crystals in batches of ``--batch-size`` (the graph the preset's encoder needs), seed 0. Prints one JSON line per init.

    python experiments/first_steps.py --config paper --set model.decoder.project_input=false --n 256 --batch-size 256
"""
from __future__ import annotations

import argparse
import json

import torch


@torch.no_grad()
def init_eps_rms(model, batch, seed: int = 0) -> float:
    """RMS of the untrained decoder's predicted noise (fractional units) on ``batch``: its true coordinates, true
    types, z ~ N(0, I), t uniform in 1..T (a network whose output matches the target's scale gives about 1)."""
    from dpcdvae.structures.crystal import lattice_params_to_matrix

    g = torch.Generator().manual_seed(seed)
    B = batch.num_graphs
    z = torch.randn(B, model.cfg.latent_dim, generator=g)
    t = torch.randint(1, model.cfg.timesteps + 1, (B,), generator=g)
    lattice = lattice_params_to_matrix(batch.lengths, batch.angles)
    model.eval()
    eps, _ = model.decoder(batch.frac_coords, batch.atom_types, z, t, lattice, batch.batch, batch.num_atoms)
    model.train()
    return float(eps.pow(2).mean().sqrt())


def main():
    from torch_geometric.loader import DataLoader

    from dpcdvae.config import load_config
    from dpcdvae.data import LatticeScaler, load_split
    from dpcdvae.models import build_model
    from dpcdvae.data.resolve import resolve_root

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default="paper")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    p.add_argument("--inits", nargs="+", default=["glorot_orthogonal", "zeros"])
    p.add_argument("--dataset", default="perov_5")
    p.add_argument("--n", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=8)
    a = p.parse_args()
    over = {}
    for kv in a.set:
        k, v = kv.split("=", 1)
        over[k] = {"true": True, "false": False}.get(v.lower(), v)
    cfg0 = load_config(a.config, overrides=over)
    graph = "crystalnn" if cfg0.model.encoder.graph == "crystalnn" else "none"
    ds = load_split(a.dataset, "test", root=resolve_root(a.dataset, None), max_atoms=cfg0.model.max_atoms,
                    graph=graph, limit=a.n, progress=False)
    batches = list(DataLoader(ds, batch_size=a.batch_size))
    for init in a.inits:
        cfg = load_config(a.config, overrides={**over, "model.encoder.output_init": init})
        torch.manual_seed(0)
        model = build_model(cfg, LatticeScaler(cfg.model.lattice_scaler).fit(ds))
        opt = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)
        eps_rms = init_eps_rms(model, batches[0])
        rows = []
        for step in range(a.steps):
            b = batches[step % len(batches)]
            out = model(b, generator=torch.Generator().manual_seed(step))
            with torch.no_grad():
                _, logvar = model.encode(b)
            rows.append({"step": step, "loss": float(out["loss"]), "kld": float(out["kld"]),
                         "coord": float(out["coord"]), "max_logvar": float(logvar.max())})
            opt.zero_grad()
            out["loss"].backward()
            torch.nn.utils.clip_grad_value_(model.parameters(), cfg.train.grad_clip_value)
            opt.step()
        print(json.dumps({"bench": "first_steps", "config": a.config, "set": a.set, "init": init,
                          "batch_size": a.batch_size, "eps_pred_rms_at_init": eps_rms, "rows": rows}), flush=True)


if __name__ == "__main__":
    main()
