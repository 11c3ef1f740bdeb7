"""Train a fresh property regressor (``dpcdvae train-property``) usable by :class:`~dpcdvae.eval.property.PropertyPredictor`.

Table II's W1(E_form) uses CDVAE's pretrained DimeNet++ regressors (:mod:`dpcdvae.eval.property`). For a dataset
without a published regressor, or to check one, this module trains a new one on a dataset's property column::

    dpcdvae train-property --dataset perov_5 --max-minutes 30 --out runs/prop_perov
    dpcdvae evaluate --task gen --samples runs/gen --dataset perov_5 --property-model runs/prop_perov/best.pt

or from Python::

    from dpcdvae.eval.property_train import train_property
    res = train_property("perov_5", "runs/prop_perov", max_minutes=30)
    res["best_val_mae"], res["baseline_val_mae"]          # eV/atom

What is trained is exactly what predicts later:

* data: :func:`dpcdvae.data.load_split` with ``graph='crystalnn'`` (Niggli-canonical cell, CDVAE's symmetric
  CrystalNN graph); ``y`` = the property column (default: the dataset's, from :mod:`dpcdvae.data.registry`). Rows
  whose property is NaN / missing / not a number are excluded and their number printed; so are rows the
  preprocessing rejects and crystals with an element beyond the embedding (Z > 94, as CDVAE's models).
* model: :class:`dpcdvae.nets.dimenet.PeriodicDimeNetPlusPlus` with ``out_channels=1`` and mean readout. Default size
  (trains on a 2-core CPU): hidden 64, 2 interaction blocks, int_emb 32, basis_emb 8, out_emb 128, 7 spherical,
  6 radial, cutoff 7 A (CDVAE's published models: hidden 128, 4 blocks, out_emb 256).
* batches: the same :func:`dpcdvae.eval.property.collate_prepared` that :class:`PropertyPredictor` uses at prediction
  time (``dpcdvae.structures.graph.graph_from_edges`` on the stored CrystalNN edges, CDVAE's triplet rule), through the same
  :meth:`PropertyPredictor.forward_prepared`.
* targets standardised with the training split's mean/std (``value = mean + std * output``); MSE loss on the
  standardised targets; Adam, ``ReduceLROnPlateau`` on the validation MAE, early stopping on it, a wall-clock limit.

Outputs in ``out``: ``best.pt`` (written atomically whenever the validation MAE improves; load it with
:meth:`PropertyPredictor.from_checkpoint`), ``metrics.jsonl`` (one JSON line per epoch) and ``summary.json``.
"""
from __future__ import annotations

import datetime as _dt
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Optional, Union

import numpy as np

from ..utils.fileio import atomic_open, atomic_write_text, strict_json_dumps
from ..utils.errors import ArgumentError

# torch and dpcdvae.eval.property are imported inside the functions: `dpcdvae --help` (which registers this
# subcommand) must not import torch.

__all__ = ["DEFAULT_MODEL_KWARGS", "property_units", "train_property"]

PathLike = Union[str, "os.PathLike[str]"]

#: Default network (small: ~0.2 M parameters, a few ms per 5-atom crystal on one CPU thread).
DEFAULT_MODEL_KWARGS: dict = {
    "out_channels": 1, "hidden_channels": 64, "num_blocks": 2, "int_emb_size": 32, "basis_emb_size": 8,
    "out_emb_channels": 128, "num_spherical": 7, "num_radial": 6, "cutoff": 7.0, "envelope_exponent": 5,
    "num_before_skip": 1, "num_after_skip": 2, "num_output_layers": 3, "num_atom_types": 95, "readout": "mean",
}

def property_units(dataset: str, prop: str) -> str:
    """Units of ``prop`` in ``dataset``, from :mod:`dpcdvae.data.registry`: eV/atom for the CDVAE benchmark
    properties (MP-20's ``band_gap``: eV); every column of a synthetic dataset (the demo's ``heat_ref``) is
    dimensionless; ``"unknown"`` for any other dataset or column."""
    from ..data.registry import find_spec

    spec = find_spec(dataset, aliases=False)
    if spec is None:
        return "unknown"
    return spec.prop_units if spec.synthetic else spec.units_of(prop)


def _log(msg: str) -> None:
    print(f"[train-property] {msg}", flush=True)


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for pkg in ("dpcdvae", "torch", "torch_geometric", "pymatgen", "numpy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _load_items(name: str, split: str, prop: str, root, limit, max_z: int, progress: bool,
                num_workers: Optional[int] = None) -> tuple[list, dict]:
    """One split as prepared items (the dicts :func:`collate_prepared` takes, plus ``y``) and its exclusion counts.

    Items: ``frac [n,3]``, ``z [n]``, ``lattice [3,3]`` (rows, Angstrom, from the stored lengths/angles as
    ``Lattice.from_parameters`` builds them), ``edge_index [2,E]``, ``offsets [E,3]`` (= ``to_jimages``),
    ``y`` (property units) and ``material_id``.
    """
    from ..structures.crystal import lattice_params_to_matrix
    from ..data import load_split

    ds = load_split(name, split, root=root, graph="crystalnn", prop=prop, on_error="skip", limit=limit,
                    progress=progress, num_workers=num_workers)
    nan_prefix = f"property {prop!r} is not"
    n_nan = sum(1 for _, _, why in ds.skipped if str(why).startswith(nan_prefix))
    n_rejected = len(ds.skipped) - n_nan
    lat = lattice_params_to_matrix(ds.lengths.double(), ds.angles.double()).numpy()
    y_all = ds.y.double().numpy()
    items, n_z = [], 0
    for k in range(len(ds)):
        d = ds[k]
        y = float(y_all[k])
        if not math.isfinite(y):  # defensive: load_split already rejects these rows when prop is set
            n_nan += 1
            continue
        z = d.atom_types.numpy().astype(np.int64)
        if z.min() < 1 or z.max() > max_z:
            n_z += 1
            continue
        items.append({"frac": d.frac_coords.double().numpy(), "z": z, "lattice": lat[k],
                      "edge_index": d.edge_index.numpy(), "offsets": d.to_jimages.numpy(), "y": y,
                      "material_id": d.material_id})
    report = {"n_rows": int(ds.n_rows), "n_used": len(items), "n_excluded_nan": int(n_nan),
              "n_rejected": int(n_rejected), "n_excluded_element": int(n_z)}
    msg = (f"{name}/{split}: {len(items)} of {ds.n_rows} rows used; excluded {n_nan} with a NaN / missing / "
           f"non-numeric {prop!r}")
    if n_rejected:
        reasons = sorted({str(why)[:80] for _, _, why in ds.skipped if not str(why).startswith(nan_prefix)})[:3]
        msg += f"; {n_rejected} rejected by preprocessing ({'; '.join(reasons)})"
    if n_z:
        msg += f"; {n_z} with an element Z > {max_z}"
    _log(msg)
    return items, report


def _seed_all(seed: int):
    """Seed Python, NumPy and torch; returns the ``torch.Generator`` of the batch order."""
    import torch

    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def train_property(dataset: str, out: PathLike, prop: Optional[str] = None, train_split: str = "train",
                   val_split: str = "val", root: Optional[PathLike] = None, max_epochs: int = 300,
                   max_minutes: Optional[float] = None, batch_size: int = 64, lr: float = 1e-3,
                   hidden_channels: int = 64, num_blocks: int = 2, graph: str = "crystalnn", seed: int = 0,
                   progress: bool = True, limit_train: Optional[int] = None, limit_val: Optional[int] = None,
                   patience: int = 30, lr_patience: int = 10, lr_factor: float = 0.5, min_lr: float = 1e-5,
                   model_kwargs: Optional[dict] = None, device: str = "cpu", num_workers: Optional[int] = None,
                   command: Optional[str] = None) -> dict:
    """Train a DimeNet++ property regressor on ``dataset``'s ``prop`` column and write ``out/best.pt``.

    Args:
        dataset: dataset name (``perov_5``, ``carbon_24``, ``mp_20``, ``demo_synthetic_perovskites`` or any folder
            of CDVAE CSVs the data locator finds under ``root``).
        out: output folder (created): ``best.pt``, ``metrics.jsonl``, ``summary.json``.
        prop: property column (default: the dataset's in :mod:`dpcdvae.data.registry`; required otherwise).
        train_split, val_split: splits to fit on and to select / early-stop on (Carbon-24 here has no ``train``:
            use ``train_split='val', val_split='test'`` and say so).
        root: data root (default: the data locator).
        max_epochs: epoch limit (default 300); max_minutes: wall-clock limit of the training loop in minutes (data
            loading not counted; checked after every batch, the epoch is then validated and the best checkpoint so
            far kept).
        batch_size: crystals per batch (default 64); lr: Adam's initial learning rate (default 1e-3), multiplied by
            ``lr_factor`` after ``lr_patience`` epochs without a better validation MAE (down to ``min_lr``);
            training stops after ``patience`` epochs without one.
        hidden_channels, num_blocks: network size (defaults 64 and 2, see :data:`DEFAULT_MODEL_KWARGS`);
            ``model_kwargs`` overrides any :class:`~dpcdvae.nets.dimenet.PeriodicDimeNetPlusPlus` argument.
        graph: only ``'crystalnn'`` (the graph :class:`PropertyPredictor` builds at prediction time).
        seed: seeds Python, NumPy, torch and the batch order.
        limit_train, limit_val: use only the first N rows of a split (quick runs).
        num_workers: processes for the CrystalNN preprocessing of a split not yet cached (default: one per CPU
            core; 0 or 1: in this process). device: torch device of the network (default ``'cpu'``).
        command: the command line recorded in the checkpoint and summary (default ``sys.argv``).

    Returns:
        dict with ``best_val_mae`` (property units), ``val_std`` (std of the property over the validation set),
        ``baseline_val_mae`` (MAE of predicting the training mean on the validation set: the trivial baseline),
        ``best_epoch``, ``epochs``, ``stopped`` (``'max_epochs'``, ``'early_stopping'`` or ``'max_minutes'``),
        ``wall_s``, ``n_train``/``n_val``, exclusion counts, ``units``, ``checkpoint`` (path of ``best.pt``) and
        ``predictor``: a :class:`PropertyPredictor` holding the best weights in memory (everything but
        ``predictor`` is also in ``summary.json``).
    """
    import torch
    from ..utils.progress import progress_bar as tqdm

    from ..data.registry import default_prop, find_spec
    from ..nets.dimenet import PeriodicDimeNetPlusPlus
    from .property import CHECKPOINT_FORMAT, PropertyModelSpec, PropertyPredictor

    t_start = time.time()
    if graph != "crystalnn":
        raise ValueError(f"graph must be 'crystalnn' (the graph PropertyPredictor builds), got {graph!r}")
    alias = find_spec(dataset)
    if alias is not None and alias.synthetic:  # "demo" -> the demo's registered name
        dataset = alias.name
    prop = prop or default_prop(dataset)
    if not prop:
        raise ArgumentError("prop", f" is needed: dataset {dataset!r} has no default property column")
    if train_split == val_split:
        raise ValueError(f"train_split and val_split are both {train_split!r}: choose two different splits")
    if max_epochs < 1 or batch_size < 1:
        raise ValueError("max_epochs and batch_size must be >= 1")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    gen = _seed_all(seed)
    units = property_units(dataset, prop)
    mk = dict(DEFAULT_MODEL_KWARGS, hidden_channels=int(hidden_channels), num_blocks=int(num_blocks))
    mk.update(model_kwargs or {})
    mk["out_channels"] = 1
    max_z = int(mk["num_atom_types"]) - 1

    train_items, rep_train = _load_items(dataset, train_split, prop, root, limit_train, max_z, progress, num_workers)
    val_items, rep_val = _load_items(dataset, val_split, prop, root, limit_val, max_z, progress, num_workers)
    if len(train_items) < 2 or len(val_items) < 1:
        raise ValueError(f"too little data: {len(train_items)} training and {len(val_items)} validation crystals "
                         f"with a finite {prop!r}")
    y_train = np.array([it["y"] for it in train_items])
    y_val = np.array([it["y"] for it in val_items])
    mean = float(y_train.mean())
    std = float(y_train.std())
    if not std > 1e-12:
        std = 1.0
    baseline_mae = float(np.abs(y_val - mean).mean())
    val_std = float(y_val.std())
    _log(f"{prop} ({units}): train mean {mean:.4g}, std {std:.4g}; validation std {val_std:.4g}, "
         f"predict-the-mean MAE {baseline_mae:.4g}")

    model = PeriodicDimeNetPlusPlus(**mk)
    spec = PropertyModelSpec(dataset, str(out / "best.pt"), prop, mean, std, units)
    predictor = PropertyPredictor(model, spec, device=device)
    n_params = sum(p.numel() for p in model.parameters())
    _log(f"PeriodicDimeNetPlusPlus: {n_params} parameters, {len(train_items)} train / {len(val_items)} val "
         f"crystals, batch {batch_size}, lr {lr}")
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=lr_factor, patience=lr_patience,
                                                       min_lr=min_lr)
    targets = torch.tensor((y_train - mean) / std, dtype=torch.float32, device=predictor.device)

    meta = {"format": CHECKPOINT_FORMAT, "model_kwargs": mk, "dataset": dataset, "prop": prop, "units": units,
            "mean": mean, "std": std, "n_train": len(train_items), "n_val": len(val_items),
            "train_split": train_split, "val_split": val_split, "val_std": val_std,
            "baseline_val_mae": baseline_mae, "niggli": True, "graph": "cdvae", "triplets": predictor.triplets,
            "train_graph": "crystalnn", "seed": int(seed), "lr": float(lr), "batch_size": int(batch_size),
            "command": command if command is not None else " ".join(sys.argv), "versions": _versions()}
    ckpt_path = out / "best.pt"
    metrics_path = out / "metrics.jsonl"
    lines: list[str] = []
    best_mae, best_epoch, best_state = math.inf, 0, None
    bad_epochs, epoch, stopped = 0, 0, "max_epochs"
    t_loop = time.time()
    deadline = t_loop + 60.0 * max_minutes if max_minutes is not None else math.inf
    bar = tqdm(range(1, max_epochs + 1), desc=f"train-property {dataset}/{prop}", disable=not progress)
    for epoch in bar:
        t_epoch = time.time()
        model.train()
        perm = torch.randperm(len(train_items), generator=gen).tolist()
        loss_sum, n_seen, out_of_time = 0.0, 0, False
        for start in range(0, len(perm), batch_size):
            idx = perm[start:start + batch_size]
            pred = predictor.forward_prepared([train_items[k] for k in idx])
            loss = torch.nn.functional.mse_loss(pred, targets[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.item() * len(idx)
            n_seen += len(idx)
            if time.time() > deadline:
                out_of_time = True
                break
        model.eval()
        val_pred = predictor.predict_prepared(val_items, batch_size=max(batch_size, 256))
        val_mae = float(np.abs(val_pred - y_val).mean())
        sched.step(val_mae)
        improved = val_mae < best_mae
        if improved:
            best_mae, best_epoch, bad_epochs = val_mae, epoch, 0
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            with atomic_open(ckpt_path, "wb") as fh:
                torch.save({**meta, "state_dict": best_state, "best_val_mae": best_mae, "best_epoch": best_epoch,
                            "created": _dt.datetime.now().astimezone().isoformat(timespec="seconds")}, fh)
        else:
            bad_epochs += 1
        rec = {"epoch": epoch, "train_loss": loss_sum / max(n_seen, 1), "train_loss_units": "standardised MSE",
               "val_mae": val_mae, "units": units, "best_val_mae": best_mae, "lr": opt.param_groups[0]["lr"],
               "n_train_seen": n_seen, "epoch_s": round(time.time() - t_epoch, 3),
               "elapsed_s": round(time.time() - t_start, 3)}
        lines.append(strict_json_dumps(rec))
        atomic_write_text(metrics_path, "\n".join(lines) + "\n")
        bar.set_postfix(loss=f"{rec['train_loss']:.3g}", val_mae=f"{val_mae:.3g}", best=f"{best_mae:.3g}")
        if out_of_time or time.time() > deadline:
            stopped = "max_minutes"
            break
        if bad_epochs >= patience:
            stopped = "early_stopping"
            break
    bar.close()
    if best_state is None:
        raise ArgumentError("lr", f"{lr:g}: training diverged, the validation MAE was never finite ({epoch} epochs); "
                            "try a smaller one")
    model.load_state_dict(best_state)
    model.eval()
    wall = time.time() - t_start
    summary = {"dataset": dataset, "prop": prop, "units": units, "best_val_mae": best_mae, "best_epoch": best_epoch,
               "val_std": val_std, "baseline_val_mae": baseline_mae,
               "best_val_mae_over_baseline": best_mae / baseline_mae if baseline_mae > 0 else None,
               "train_mean": mean, "train_std": std, "epochs": epoch, "stopped": stopped, "wall_s": round(wall, 2),
               "train_loop_s": round(time.time() - t_loop, 2),
               "n_train": len(train_items), "n_val": len(val_items), "train_split": train_split,
               "val_split": val_split, "exclusions": {"train": rep_train, "val": rep_val},
               "n_excluded_nan": rep_train["n_excluded_nan"] + rep_val["n_excluded_nan"],
               "model_kwargs": mk, "n_parameters": n_params, "checkpoint": str(ckpt_path),
               "metrics": str(metrics_path), "command": meta["command"], "versions": meta["versions"]}
    atomic_write_text(out / "summary.json", strict_json_dumps(summary, indent=2))
    _log(f"best val MAE {best_mae:.4g} {units} at epoch {best_epoch} (predict-the-mean {baseline_mae:.4g}, "
         f"val std {val_std:.4g}); {epoch} epochs, {wall:.1f} s, stopped: {stopped}; wrote {ckpt_path}")
    return {**summary, "predictor": predictor}
