"""Where does the reconstruction RMS of Perov-5 come from? A probe of off-site displacements.

About 42 % of Perov-5 crystals (train and test alike) have their atoms displaced along one axis from the ideal
perovskite sites (fractional coordinates off the half-integer grid after a shift); the rest sit on the grid. This
probe decodes the TRUE crystals with z = the encoder's posterior mean, the true lattice and the true types kept
fixed, starting the reverse diffusion (Eq. 7) from the true coordinates noised to step t0 (t0 = T is a full
reconstruction from noise). For each t0 it reports, separately for displaced and on-grid targets: the share of
outputs that are displaced themselves, and the mean normalised RMS displacement to the target (atoms in one-to-one
correspondence, best common shift, Cartesian, divided by (V/N)^(1/3) as pymatgen's StructureMatcher normalises).

A model that uses z to place the displacements keeps them from t0 = T; one that only denoises locally keeps them
only from small t0. (The one-to-one RMS means something only while the output stays near the target, i.e. for small
t0; a full decode may return an equivalent cell.) Prints one JSON line.

``--latent N`` fits linear probes (displaced or not; the size of the displacement) on the encoder's posterior of
the first N crystals. ``--run DIR`` instead reads a finished ``dpcdvae reconstruct`` folder (``samples.json`` and
its CIFs) and splits the matched crystals' RMS (StructureMatcher, as the reconstruction metric) by displaced /
on-grid target, and counts the outputs that are displaced themselves.

    python experiments/probe_displacements.py --checkpoint pretrained:perov_5 --n 200 [--sampler eq6]
    python experiments/probe_displacements.py --run runs/s8/eval_p5_bs64_swap05 --dataset perov_5
    python experiments/probe_displacements.py --checkpoint pretrained:perov_5 --latent 3000
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # for benchmarks/_common.py
from _common import probe_model_and_split, probe_parser  # noqa: E402


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
    displaced = grid_offset(batch.frac_coords, batch.ptr) > tol
    res = {"n_displaced": int(displaced.sum()), "n_on_grid": int((~displaced).sum()), "per_t0": {}}
    sch = model.scheduler
    from dpcdvae.diffusion.samplers import resolve_sampler

    smp = resolve_sampler(variant)  # a name or a sampler object
    for t0 in t0s:
        g = torch.Generator().manual_seed(seed)
        eps = torch.randn(x0.shape, generator=g, dtype=x0.dtype)
        if model.cfg.recenter:
            eps = _recenter(eps, ab, B)
        x = sch.add_noise(x0, torch.full((x0.shape[0],), int(t0), dtype=torch.long), eps)
        for t in range(int(t0), 0, -1):
            tv = torch.full((B,), t, dtype=torch.long)
            e, _ = model.decoder(wrap(x), types, mu, tv, lattice, ab, batch.num_atoms)
            noise = torch.randn(x.shape, generator=g, dtype=x.dtype, device=x.device)
            x = smp.step(sch, e, sch.as_timesteps(t, 1), x, noise, t_prev=sch.as_timesteps(t - 1)).prev_sample
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


def from_run(run_dir, dataset: str = "perov_5", split: str = "test", tol: float = 0.01) -> dict:
    """The ``--run`` mode (module docstring): counts and mean RMS of the matched crystals by target kind."""
    import json as _json
    from pathlib import Path

    import numpy as np
    from pymatgen.analysis.structure_matcher import StructureMatcher
    from pymatgen.core import Structure

    from dpcdvae.data import load_split
    from dpcdvae.data.csvio import read_csv_frame
    from dpcdvae.eval.reconstruction import MATCHER_KW
    from dpcdvae.data.resolve import resolve_root

    run_dir = Path(run_dir)
    samples = _json.loads((run_dir / "samples.json").read_text())
    source = load_split(dataset, split, root=resolve_root(dataset, None), graph="none", progress=False).source
    frame = read_csv_frame(source)
    cifs = dict(zip(frame["material_id"].astype(str), frame["cif"]))
    matcher = StructureMatcher(**MATCHER_KW)

    def offset(s):
        f = torch.as_tensor(s.frac_coords)
        return float(grid_offset(f, [0, len(s)])[0])

    rows = []
    for c in samples["crystals"]:
        if not c.get("valid"):
            continue
        pred = Structure.from_file(run_dir / c["cif"])
        target = Structure.from_str(cifs[str(c["id"])], fmt="cif")
        res = matcher.get_rms_dist(pred, target)
        rows.append((offset(target) > tol, offset(pred) > tol, None if res is None else float(res[0])))
    disp = [r for r in rows if r[0]]
    grid = [r for r in rows if not r[0]]
    rms_all = [r[2] for r in rows if r[2] is not None]

    def mean_rms(rs):
        v = [r[2] for r in rs if r[2] is not None]
        return (round(float(np.mean(v)), 4) if v else None), len(v)

    (rd, nd), (rg, ng) = mean_rms(disp), mean_rms(grid)
    return {"run": str(run_dir), "n_valid": len(rows), "n_matched": len(rms_all),
            "delta_rms": round(float(np.mean(rms_all)), 4) if rms_all else None,
            "median_rms": round(float(np.median(rms_all)), 4) if rms_all else None,
            "valid_displaced_targets": len(disp), "of_them_output_displaced": sum(r[1] for r in disp),
            "on_grid_targets_output_displaced": sum(r[1] for r in grid),
            "matched_displaced": nd, "rms_matched_displaced": rd, "matched_on_grid": ng, "rms_matched_on_grid": rg}


def latent_probe(checkpoint, dataset: str = "perov_5", split: str = "test", n: int = 3000, tol: float = 0.01,
                 weights_ema: bool = True) -> dict:
    """The ``--latent N`` mode: how much of the displacement the encoder's posterior carries. A logistic regression
    (displaced or not) and a ridge regression (the size of the displacement, :func:`grid_offset`) on the first 2/3
    of ``n`` crystals, scored on the last 1/3, from mu and from one draw of z; and the number of latent dimensions
    whose mean posterior standard deviation is under 0.5."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression, Ridge
    from torch_geometric.loader import DataLoader

    from dpcdvae.models import load_model
    from dpcdvae.workflows import encode_posterior

    model = load_model(checkpoint, ema=weights_ema)
    r = encode_posterior(model, dataset, split, limit=n)
    off = torch.cat([grid_offset(b.frac_coords, b.ptr) for b in DataLoader(r["dataset"], batch_size=500)]).numpy()
    y = (off > tol).astype(int)
    mu = r["mu"].numpy()
    sd = np.exp(0.5 * r["logvar"].numpy())
    k = (2 * len(y)) // 3
    out = {"n": int(len(y)), "displaced_share": round(float(y.mean()), 4),
           "majority_accuracy": round(float(max(y[k:].mean(), 1 - y[k:].mean())), 4),
           "dims_sd_below_0_5": int((sd.mean(0) < 0.5).sum()), "latent_dim": int(mu.shape[1])}
    z = mu + sd * np.random.default_rng(0).standard_normal(mu.shape)
    for name, X in (("mu", mu), ("z", z)):
        clf = LogisticRegression(max_iter=2000).fit(X[:k], y[:k])
        out[f"{name}_displaced_accuracy"] = round(float(clf.score(X[k:], y[k:])), 4)
        out[f"{name}_offset_r2"] = round(float(Ridge(1.0).fit(X[:k], off[:k]).score(X[k:], off[k:])), 4)
    return out


def main():
    from torch_geometric.loader import DataLoader

    p = probe_parser(__doc__.split("\n")[0], 200)
    p.add_argument("--t0", type=int, nargs="+", default=[1000, 300, 100, 30])
    p.add_argument("--sampler", default="eq7", choices=["eq7", "eq6"],
                   help="the reverse step (Eq. 7 paper, Eq. 6 DDPM)")
    p.add_argument("--run", default=None, help="a finished `dpcdvae reconstruct` folder: split its RMS instead")
    p.add_argument("--latent", type=int, default=None, metavar="N",
                   help="linear probes of the posterior on the first N crystals instead")
    a = p.parse_args()
    if a.latent:
        print(json.dumps({"bench": "probe_displacements", "mode": "latent", "checkpoint": a.checkpoint,
                          **latent_probe(a.checkpoint, a.dataset, a.split, a.latent, weights_ema=not a.raw_weights)}))
        return
    if a.run:
        print(json.dumps({"bench": "probe_displacements", "mode": "run", **from_run(a.run, a.dataset, a.split)}))
        return
    model, ds = probe_model_and_split(a)
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
                      "split": a.split, "n": a.n, "sampler": a.sampler,
                      "weights": "raw" if a.raw_weights else "ema (when the run had EMA)",
                      "n_displaced": tot["n_displaced"], "n_on_grid": tot["n_on_grid"], "per_t0": table}))


if __name__ == "__main__":
    main()
