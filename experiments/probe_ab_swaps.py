"""Does a trained model know which cation of an ABX3 perovskite sits on the A site and which on the B site?

`dpcdvae reconstruct --breakdown` finds that most Perov-5 reconstructions that miss have the right composition and
the right framework, with the A and B cations exchanged. This probe asks the network directly, at the TRUE geometry
and lattice, with z = the encoder's posterior mean of the true crystal:

* **denoiser**: the coordinates are noised to step t (the same noise for both); the noise-prediction error is
  computed with the true types and with A and B exchanged. A model that knows the sites gives the true assignment
  the lower error. Reported: % of crystals where it does, per t (50 % is a coin).
* **type head** (at t = 1, clean geometry): fed the exchanged types, does it answer the true types on both sites
  (repairs), or echo its input (copies)? Fed the true types, does it keep them?

The A-B pair is the pair of atoms whose minimum-image fractional separation is (1/2, 1/2, 1/2) within 0.2 on each
axis (perovskite cells of Perov-5); crystals where A and B are the same element are skipped. Prints one JSON line.

    python experiments/probe_ab_swaps.py --checkpoint pretrained:perov_5 --n 500
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # for benchmarks/_common.py
from _common import half_diagonal_pairs, probe_model_and_split, probe_parser  # noqa: E402


def ab_pairs(frac: torch.Tensor, ptr, types: torch.Tensor, tol: float = 0.2) -> dict[int, tuple[int, int]]:
    """``{crystal index: (i, j)}``: the flat indices of the two atoms separated by (1/2, 1/2, 1/2) (fractional,
    minimum image, within ``tol`` per axis) and of different elements; crystals without such a pair are left out."""
    out = {}
    ptr = [int(x) for x in ptr]
    for b in range(len(ptr) - 1):
        lo = ptr[b]
        pairs = [(lo + i, lo + j) for i, j in half_diagonal_pairs(frac[lo:ptr[b + 1]].cpu().numpy(), tol)
                 if int(types[lo + i]) != int(types[lo + j])]
        if pairs:
            out[b] = pairs[-1]
    return out


@torch.no_grad()
def probe(model, batch, tsteps=(10, 100, 300, 500, 800), draws: int = 8, seed: int = 0) -> dict:
    """The probe on one batch (see the module docstring). Returns counts: ``n_pairs``, per t
    ``denoiser_prefers_true[t]``, and for the type head ``head_repairs`` / ``head_copies`` (exchanged input) and
    ``head_keeps_true`` (true input)."""
    from dpcdvae.structures.crystal import lattice_params_to_matrix
    from dpcdvae.models.dpcdvae import _recenter, wrap

    model.eval()
    mu, _ = model.encode(batch)
    B, ab = batch.num_graphs, batch.batch
    lattice = lattice_params_to_matrix(batch.lengths, batch.angles)
    x0 = batch.frac_coords
    if model.cfg.recenter:
        x0 = _recenter(x0, ab, B)
    types = batch.atom_types
    pairs = ab_pairs(batch.frac_coords, batch.ptr, types)
    swapped = types.clone()
    for i, j in pairs.values():
        swapped[i], swapped[j] = types[j], types[i]
    res = {"n_crystals": B, "n_pairs": len(pairs), "denoiser_prefers_true": {}}
    if not pairs:
        return res
    idx = torch.tensor(sorted(pairs))
    for t_int in tsteps:
        t = torch.full((B,), int(t_int), dtype=torch.long)
        err_true = torch.zeros(B, dtype=x0.dtype)
        err_swap = torch.zeros(B, dtype=x0.dtype)
        for k in range(draws):
            eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed + k), dtype=x0.dtype)
            if model.cfg.recenter:
                eps = _recenter(eps, ab, B)
            ft = wrap(model.scheduler.add_noise(x0, t[ab], eps))
            for ty, acc in ((types, err_true), (swapped, err_swap)):
                pred, _ = model.decoder(ft, ty, mu, t, lattice, ab, batch.num_atoms)
                acc.index_add_(0, ab, ((pred - eps) ** 2).sum(-1))
        res["denoiser_prefers_true"][int(t_int)] = int((err_true[idx] < err_swap[idx]).sum())
    t1 = torch.ones(B, dtype=torch.long)
    out = {}
    for name, ty in (("true", types), ("swapped", swapped)):
        _, logits = model.decoder(wrap(x0), ty, mu, t1, lattice, ab, batch.num_atoms)
        out[name] = logits.argmax(-1) + 1
    res["head_repairs"] = sum(int(out["swapped"][i] == types[i] and out["swapped"][j] == types[j])
                              for i, j in pairs.values())
    res["head_copies"] = sum(int(out["swapped"][i] == swapped[i] and out["swapped"][j] == swapped[j])
                             for i, j in pairs.values())
    res["head_keeps_true"] = sum(int(out["true"][i] == types[i] and out["true"][j] == types[j])
                                 for i, j in pairs.values())
    return res


def main():
    from torch_geometric.loader import DataLoader

    p = probe_parser(__doc__.split("\n")[0], 500)
    p.add_argument("--draws", type=int, default=8, help="noise draws per t for the denoiser comparison")
    p.add_argument("--t", type=int, nargs="+", default=[10, 100, 300, 500, 800])
    a = p.parse_args()
    model, ds = probe_model_and_split(a)
    total = {"n_crystals": 0, "n_pairs": 0, "denoiser_prefers_true": {t: 0 for t in a.t}, "head_repairs": 0,
             "head_copies": 0, "head_keeps_true": 0}
    for batch in DataLoader(ds, batch_size=250):
        r = probe(model, batch, tsteps=a.t, draws=a.draws)
        for k, v in r.items():
            if isinstance(v, dict):
                for t, c in v.items():
                    total[k][t] += c
            else:
                total[k] += v
    n = max(total["n_pairs"], 1)
    final = {"bench": "probe_ab_swaps", "checkpoint": a.checkpoint, "dataset": a.dataset, "split": a.split,
             "weights": "raw" if a.raw_weights else "ema (when the run had EMA)", "draws": a.draws, **total}
    final["denoiser_prefers_true_pct"] = {t: round(100 * c / n, 1) for t, c in total["denoiser_prefers_true"].items()}
    for k in ("head_repairs", "head_copies", "head_keeps_true"):
        final[f"{k}_pct"] = round(100 * total[k] / n, 1)
    print(json.dumps(final))


if __name__ == "__main__":
    main()
