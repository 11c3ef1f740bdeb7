"""Property-guided generation in latent space (CDVAE's optimisation task, which DP-CDVAE lacks).

1. **A property head on z, fitted afterwards on the frozen encoder** (:func:`fit_property_head`): an MLP
   ``z -> property`` trained on posterior samples ``z ~ q(z | x)`` of the training split (fresh samples every epoch,
   so the head sees the z the decoder was trained on), standardised targets, early stopping on the validation
   split's MAE. Why afterwards and not jointly (as CDVAE trains ``fc_property``): the shipped models stay exactly
   the models that reproduce the paper's tables, a head costs a few CPU minutes for any checkpoint, and the head
   can be refitted for another property column without retraining the generator.
2. **Gradient steps on z** (:func:`optimize_latents`): Adam on the head's (standardised) prediction, toward a
   minimum or a maximum, from the posterior samples of test crystals (CDVAE's ``start_from="data"``) or from the
   prior; z is saved at CDVAE's steps (every ``steps // (num_saved - 1)`` steps and the last).
3. **Decoded with the diffusion sampler** and **judged by an independent model** (:func:`run_optimization`): the
   saved latents are decoded (:meth:`DPCDVAE.sample_from_latent`), the valid crystals' property is predicted by
   CDVAE's pretrained property model (not by the head that was optimised), and the success rates SR5/SR10/SR15
   (:mod:`dpcdvae.eval.optimization`) are computed with CDVAE's thresholds and with the test split's percentiles.

Units: the property's own (eV/atom for heat_ref, energy_per_atom, formation_energy_per_atom).
"""
from __future__ import annotations

import csv
import datetime
import hashlib
import json
import subprocess
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn as nn

from ..utils.fileio import atomic_open, atomic_write_text, jsonable, strict_json_dumps
from ..data import load_split
from ..data.resolve import DatasetHandle, resolve_dataset
from ..data.registry import find_spec
from ..utils.errors import ArgumentError, UserError
from ..eval.optimization import SR_LEVELS, cdvae_thresholds, split_thresholds, success_rates
from ..eval.property import PropertyModelUnavailable, predict_property
from ..io import SampleWriter
from ..models import concat_outputs
from ..models.pretrained import PREFIX, WEIGHTS_DIR, is_pretrained, list_pretrained, load_pretrained
from ..utils.progress import progress_bar
from .common import encode_posterior

__all__ = ["LatentPropertyHead", "fit_property_head", "fit_shipped_head", "save_head", "load_head",
           "optimize_latents", "run_optimization", "shipped_head_path", "HEAD_FORMAT", "HEADS_DIR"]

HEAD_FORMAT = 1
#: property heads fitted for the shipped models: ``<name>.pt`` (``dpcdvae optimize --checkpoint pretrained:<name>``)
HEADS_DIR = WEIGHTS_DIR / "heads"


def shipped_head_path(checkpoint) -> Optional[Path]:
    """The property head shipped for ``pretrained:<name>`` (``None`` for other checkpoints or when none ships)."""
    if not is_pretrained(str(checkpoint)):
        return None
    p = HEADS_DIR / f"{str(checkpoint).split(':', 1)[1]}.pt"
    return p if p.is_file() else None


class LatentPropertyHead(nn.Module):
    """MLP ``z [B, L] -> property [B]``. :meth:`forward` returns the standardised prediction (what is optimised),
    :meth:`predict` the property in its units (``mean + std * forward``)."""

    def __init__(self, latent_dim: int, hidden: int = 128, layers: int = 2, mean: float = 0.0, std: float = 1.0,
                 meta: Optional[dict] = None):
        super().__init__()
        dims = [latent_dim] + [hidden] * layers
        mods: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            mods += [nn.Linear(a, b), nn.SiLU()]
        mods.append(nn.Linear(dims[-1], 1))
        self.net = nn.Sequential(*mods)
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(float(std)))
        self.latent_dim, self.hidden, self.layers = int(latent_dim), int(hidden), int(layers)
        self.meta = dict(meta or {})

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).squeeze(-1)

    def predict(self, z: torch.Tensor) -> torch.Tensor:
        return self.mean + self.std * self.forward(z)


def fit_property_head(model, dataset, root: Optional[str] = None, split: str = "train",
                      val_split: str = "val", limit: Optional[int] = None, epochs: int = 300, lr: float = 1e-3,
                      batch_size: int = 256, hidden: int = 128, patience: int = 30, seed: int = 0,
                      max_minutes: Optional[float] = None, progress: bool = True) -> tuple[LatentPropertyHead, dict]:
    """Fit a :class:`LatentPropertyHead` on the frozen encoder of ``model`` (see the module docstring); with
    ``val_split == split`` every 10th crystal of the split is held out for validation. Returns the head (best
    validation MAE; eval mode) and a report: MAE (property units) of the head and of the constant
    training mean on the validation split, R^2, epochs, wall time. ``dataset``: a name (resolved once, with
    ``root``) or a :class:`~dpcdvae.data.resolve.DatasetHandle`."""
    t0 = time.time()
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    data = resolve_dataset(dataset, root)
    dataset = data.name
    tr = encode_posterior(model, data, split, limit=limit, progress=progress)
    if val_split == split:  # e.g. Carbon-24 here: only val and test; hold out every 10th crystal of the split
        hold = torch.zeros(len(tr["y"]), dtype=torch.bool)
        hold[::10] = True
        va = {k: tr[k][hold] for k in ("mu", "logvar", "y")}
        tr = {k: tr[k][~hold] for k in ("mu", "logvar", "y")}
    else:
        va = encode_posterior(model, data, val_split, progress=progress)
    ok_tr, ok_va = torch.isfinite(tr["y"]), torch.isfinite(va["y"])
    if int(ok_tr.sum()) < 10 or int(ok_va.sum()) < 2:
        raise UserError(f"dataset {dataset!r}: too few crystals with a property value in {split!r} / {val_split!r} "
                        f"({int(ok_tr.sum())} / {int(ok_va.sum())}) to fit a property head")
    mu, std_z, y = tr["mu"][ok_tr], (0.5 * tr["logvar"][ok_tr]).exp(), tr["y"][ok_tr]
    mean, std = float(y.mean()), float(y.std().clamp(min=1e-8))
    spec = find_spec(dataset, aliases=True)
    meta = {"dataset": dataset, "prop": spec.prop if spec else None,
            "units": spec.units_of(spec.prop) if spec and spec.prop else None, "train_split": split,
            "val_split": val_split, "n_train": int(ok_tr.sum()), "n_val": int(ok_va.sum()), "seed": seed}
    head = LatentPropertyHead(mu.shape[1], hidden=hidden, mean=mean, std=std, meta=meta)
    opt = torch.optim.Adam(head.parameters(), lr=lr)
    yn = (y - mean) / std
    mu_va, y_va = va["mu"][ok_va], va["y"][ok_va]
    best = (float("inf"), None, 0)
    epoch = 0
    bar = progress_bar(total=epochs, desc="property head") if progress else None
    for epoch in range(1, epochs + 1):
        head.train()
        perm = torch.randperm(len(yn), generator=g)
        for i in range(0, len(perm), batch_size):
            idx = perm[i:i + batch_size]
            z = mu[idx] + std_z[idx] * torch.randn(mu[idx].shape, generator=g)
            loss = nn.functional.mse_loss(head(z), yn[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        head.eval()
        with torch.no_grad():
            mae = float((head.predict(mu_va) - y_va).abs().mean())
        if mae < best[0]:
            best = (mae, {k: v.clone() for k, v in head.state_dict().items()}, epoch)
        if bar is not None:
            bar.update(1)
        if epoch - best[2] >= patience or (max_minutes and time.time() - t0 > 60 * max_minutes):
            break
    if bar is not None:
        bar.close()
    head.load_state_dict(best[1])
    head.eval()
    with torch.no_grad():
        pred = head.predict(mu_va)
    ss_res = float(((pred - y_va) ** 2).sum())
    ss_tot = float(((y_va - y_va.mean()) ** 2).sum())
    report = {**meta, "val_mae": best[0], "val_mae_constant": float((y_va - mean).abs().mean()),
              "val_r2": 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan"), "best_epoch": best[2],
              "epochs": epoch, "wall_s": round(time.time() - t0, 1)}
    head.meta.update({k: report[k] for k in ("val_mae", "val_mae_constant", "val_r2", "best_epoch")})
    return head, report


def save_head(head: LatentPropertyHead, path) -> Path:
    """Write a head as plain tensors + JSON-able metadata (loads with ``torch.load(weights_only=True)``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = {"format": HEAD_FORMAT, "state_dict": {k: v.detach().cpu() for k, v in head.state_dict().items()},
            "latent_dim": head.latent_dim, "hidden": head.hidden, "layers": head.layers,
            "meta_json": json.dumps(jsonable(head.meta, nonfinite="keep"))}  # a NaN val_r2 reads back as NaN
    with atomic_open(path, "wb") as f:
        torch.save(blob, f)
    return path


def load_head(path) -> LatentPropertyHead:
    """Read a head written by :func:`save_head` with ``torch.load(weights_only=True)``; a missing, unreadable or
    unsafe file (one that needs full unpickling) raises :class:`~dpcdvae.utils.errors.CheckpointError` (one line)."""
    from ..models.safeload import load_weights_only

    blob = load_weights_only(path, what="property head")  # one line (CheckpointError) if unreadable or unsafe
    if not isinstance(blob, dict) or blob.get("format") != HEAD_FORMAT:
        raise UserError(f"property head {path}: not a dpcdvae property head of format {HEAD_FORMAT}")
    head = LatentPropertyHead(blob["latent_dim"], hidden=blob["hidden"], layers=blob["layers"],
                              meta=json.loads(blob["meta_json"]))
    head.load_state_dict(blob["state_dict"])
    return head.eval()


def _checkout_commit() -> str:
    """The short commit of the source checkout this package runs from (``""`` outside a git checkout)."""
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).resolve().parents[2]).stdout.strip()
    except OSError:  # no git
        return ""


def fit_shipped_head(name: str, out=None, seed: int = 0, weights_dir=None, root: Optional[str] = None,
                     command: Optional[str] = None, progress: bool = False) -> dict:
    """Fit the property head shipped with ``pretrained:<name>`` (``dpcdvae pretrained fit-heads NAME``): a
    :func:`fit_property_head` on the model's own training split (Carbon-24: its validation split, every 10th crystal
    held out), seed ``seed``; writes ``<out>/<name>.pt`` and its card ``<out>/<name>.json`` and returns the card: the
    fit's report plus the model, the SHA-256 of its weights file (a head belongs to those weights:
    ``tests/workflows/test_optimize.py`` checks the shipped cards against the shipped files), the checkout's commit,
    the date and ``command``.

    ``weights_dir``: where the shipped models are (default the package's, :data:`HEADS_DIR` its heads); ``out``:
    default ``<weights_dir>/heads``; ``root``: the data root of the model's dataset (default: the data locator)."""
    name = name[len(PREFIX):] if is_pretrained(name) else name
    model = load_pretrained(name, weights_dir=weights_dir)  # an unknown name: one line listing the shipped ones
    if not model.card.get("dataset"):
        raise UserError(f"pretrained:{name}: its card names no dataset to fit a property head on")
    out = Path(out) if out is not None else (Path(weights_dir) / "heads" if weights_dir is not None else HEADS_DIR)
    split = model.card.get("train_split", "train")
    head, card = fit_property_head(model, model.card["dataset"], root=root, split=split,
                                   val_split="val" if split == "train" else split, seed=seed, progress=progress)
    save_head(head, out / f"{name}.pt")
    weights = next(c["file"] for c in list_pretrained(weights_dir) if c["name"] == name)
    card.update({"model": f"pretrained:{name}", "model_sha256": hashlib.sha256(Path(weights).read_bytes()).hexdigest(),
                 "commit": _checkout_commit(), "date": datetime.date.today().isoformat(),
                 "command": command or f"dpcdvae pretrained fit-heads {name} --seed {seed}"})
    atomic_write_text(out / f"{name}.json", strict_json_dumps(card, indent=1) + "\n")
    return card


def optimize_latents(head: LatentPropertyHead, z0: torch.Tensor, steps: int = 5000, lr: float = 1e-3,
                     direction: str = "min", num_saved: int = 10, prior_weight: float = 0.0) -> tuple[list, torch.Tensor]:
    """Adam on ``z`` (``[n, L]``, a copy of ``z0``) minimising (``direction="min"``) or maximising the head's
    standardised prediction (mean over the batch), plus ``prior_weight * |z|^2 / 2`` (0: none, as CDVAE). The
    state is saved after step ``i`` when ``i % (steps // (num_saved - 1)) == 0`` or ``i == steps - 1`` (CDVAE's
    schedule; 11 saves for 5000 steps and 10). Returns ``(saved steps, z saved [S, n, L])``."""
    if direction not in ("min", "max"):
        raise UserError(f"direction {direction!r}: expected min or max")
    if steps < 1 or num_saved < 2:
        raise UserError(f"steps ({steps}) must be >= 1 and num_saved ({num_saved}) >= 2")
    sign = 1.0 if direction == "min" else -1.0
    z = z0.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)
    for p in head.parameters():
        p.requires_grad_(False)
    interval = max(1, steps // (num_saved - 1))
    saved_steps, saved = [], []
    for i in range(steps):
        opt.zero_grad()
        loss = sign * head(z).mean()
        if prior_weight:
            loss = loss + prior_weight * 0.5 * (z ** 2).sum(-1).mean()
        loss.backward()
        opt.step()
        if i % interval == 0 or i == steps - 1:
            saved_steps.append(i + 1)
            saved.append(z.detach().clone())
    return saved_steps, torch.stack(saved)


def run_optimization(model, head: LatentPropertyHead, dataset, out, n: int = 100, start: str = "data",
                     steps: int = 5000, lr: float = 1e-3, num_saved: int = 10, direction: str = "min",
                     prior_weight: float = 0.0, sampler=None, sampler_steps: Optional[int] = None,
                     seed: int = 0, root: Optional[str] = None, batch_size: int = 512, evaluate: bool = True,
                     n_workers: int = 1, progress: bool = True, command: str = "") -> dict:
    """The whole task: ``n`` starting latents (``start="data"``: posterior samples of the first ``n`` test crystals,
    CDVAE's default; ``"prior"``: z ~ N(0, I)), :func:`optimize_latents`, decode every saved latent with
    ``sampler``, predict the valid crystals' property with CDVAE's pretrained model and compute SR5/10/15.

    Writes into ``out``: the best valid crystal of each start (CIFs, ``samples.extxyz``, ``samples.json``),
    ``optimization.json`` (settings, metrics) and ``per_start.csv``. Returns the metrics dict. ``dataset``: a name
    or a :class:`~dpcdvae.data.resolve.DatasetHandle`; a name is resolved (with ``root``) once, when the data are
    first read."""
    t0 = time.time()
    handle = [dataset] if isinstance(dataset, DatasetHandle) else []
    dataset = str(dataset)

    def data() -> DatasetHandle:
        if not handle:
            handle.append(resolve_dataset(dataset, root))
        return handle[0]

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sampler = model.resolve_sampler(sampler)
    gen = torch.Generator().manual_seed(seed)
    test = None
    if start == "data":
        test = encode_posterior(model, data(), "test", limit=n, progress=progress)
        if len(test["ids"]) < n:
            raise ArgumentError("n", f"{n}: the {dataset} test split has only {len(test['ids'])} crystals")
        mu, lv = test["mu"][:n], test["logvar"][:n]
        z0 = mu + (0.5 * lv).exp() * torch.randn(mu.shape, generator=gen)
        start_ids = test["ids"][:n]
    elif start == "prior":
        z0 = torch.randn(n, model.cfg.latent_dim, generator=gen)
        start_ids = [f"prior-{i}" for i in range(n)]
    else:
        raise ArgumentError("start", f"{start!r}: expected data or prior")
    saved_steps, zs = optimize_latents(head, z0, steps=steps, lr=lr, direction=direction, num_saved=num_saved,
                                       prior_weight=prior_weight)
    with torch.no_grad():
        head_pred = head.predict(zs.reshape(-1, zs.shape[-1])).reshape(zs.shape[:2]).numpy()
    S = zs.shape[0]
    flat = zs.reshape(S * n, -1).to(model.device)
    outs = []
    chunks = range(0, flat.shape[0], batch_size)
    for i in (progress_bar(chunks, desc="decoding") if progress else chunks):
        outs.append(model.sample_from_latent(flat[i:i + batch_size], sampler=sampler, steps=sampler_steps,
                                             generator=gen, ids=[f"s{(i + k) // n}-{(i + k) % n}" for k in
                                                                 range(min(batch_size, flat.shape[0] - i))]))
    decoded = concat_outputs(outs)
    valid = np.array(decoded.valid_mask, dtype=bool).reshape(S, n)
    res = {"dataset": dataset, "n": n, "start": start, "direction": direction, "steps": steps, "lr": lr,
           "num_saved": S, "saved_steps": saved_steps, "prior_weight": prior_weight, "sampler": sampler.label,
           "sampler_steps": sampler_steps or model.cfg.timesteps, "seed": seed, "command": command,
           "head": {k: v for k, v in head.meta.items()},
           "head_pred_start_mean": float(head_pred[0].mean()), "head_pred_end_mean": float(head_pred[-1].mean()),
           "validity_start": float(100 * valid[0].mean()), "validity_end": float(100 * valid[-1].mean()),
           "validity_all": float(100 * valid.mean())}
    props = np.full((S, n), np.nan)
    if evaluate:
        structs = [s for s, v in zip(decoded.structures, valid.reshape(-1)) if v]
        try:
            pred = predict_property(structs, dataset, n_workers=n_workers, progress=progress) if structs else []
            props.reshape(-1)[np.flatnonzero(valid.reshape(-1))] = pred
            res["property_model"] = f"CDVAE pretrained ({dataset})"
        except PropertyModelUnavailable as exc:
            res["property_model"] = f"unavailable: {exc}"
            evaluate = False
    if evaluate:
        thr = cdvae_thresholds(dataset) if direction == "min" else None
        if thr is not None:
            sr = success_rates(props, thr, direction)
            res.update({f"SR{p}_cdvae": sr[f"SR{p}"] for p in SR_LEVELS})
            res["thresholds_cdvae"] = list(thr)
        y_test = load_split(data(), "test", max_atoms=model.cfg.max_atoms,
                            graph="none", progress=False).y.double().numpy().reshape(-1)
        thr_split = split_thresholds(y_test, direction)
        sr2 = success_rates(props, thr_split, direction)
        res.update({f"SR{p}_test_split": sr2[f"SR{p}"] for p in SR_LEVELS})
        res["thresholds_test_split"] = list(thr_split)
        best = sr2["best"]
        res["best_property_mean"] = float(np.nanmean(best)) if np.isfinite(best).any() else None
        res["start_property_mean"] = float(np.nanmean(props[0])) if np.isfinite(props[0]).any() else None
        res["test_property_mean"] = float(np.nanmean(y_test))
    # the best valid crystal of each start (by the independent model when available, else the last valid one)
    writer = SampleWriter(out / "best", meta={"task": "optimize", "dataset": dataset, "sampler": sampler.label})
    rows = []
    sign = 1.0 if direction == "min" else -1.0
    for j in range(n):
        cand = [s for s in range(S) if valid[s, j]]
        pick = None
        if cand:
            pick = (min(cand, key=lambda s: sign * props[s, j]) if np.isfinite(props[[*cand], j]).any()
                    else cand[-1])
        rows.append({"start": start_ids[j], "best_saved_index": pick,
                     "best_step": saved_steps[pick] if pick is not None else None,
                     "property_best": float(props[pick, j]) if pick is not None else None,
                     "property_start": float(props[0, j]),
                     "head_start": float(head_pred[0, j]), "head_end": float(head_pred[-1, j]),
                     "n_valid_saved": len(cand)})
        if pick is not None:
            writer.add(_select(decoded, pick * n + j, f"opt-{j:03d}"))
    res["n_starts_with_valid"] = int(sum(1 for r in rows if r["n_valid_saved"]))
    res["wall_s"] = round(time.time() - t0, 1)
    with atomic_open(out / "per_start.csv", "w") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with atomic_open(out / "optimization.json", "w") as f:
        f.write(strict_json_dumps(res, indent=1))
    return res


def _select(out, k: int, new_id: str):
    """Crystal ``k`` of a :class:`SampleOutput` as a one-crystal output named ``new_id``."""
    na = out.num_atoms.tolist()
    a = int(sum(na[:k]))
    b = a + int(na[k])
    return out.__class__(structures=[out.structures[k]], frac_coords=out.frac_coords[a:b],
                         atom_types=out.atom_types[a:b], lengths=out.lengths[k:k + 1], angles=out.angles[k:k + 1],
                         num_atoms=out.num_atoms[k:k + 1], flags=[out.flags[k]], ids=[new_id], meta=dict(out.meta))
