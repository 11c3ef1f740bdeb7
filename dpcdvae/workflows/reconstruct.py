"""Table I / S1: reconstruct a split with a model, write the crystals and the metrics (:func:`reconstruct_split`)."""
from __future__ import annotations

import contextlib
import sys
import time
import warnings
from pathlib import Path
from typing import Optional

import torch
from torch_geometric.loader import DataLoader

from ..data import DataWarning, load_split, resolve_dataset
from ..eval.reconstruction import reconstruction_metrics
from ..io import SampleWriter, new_run_dir
from ..models import INITIAL_TYPES, load_model
from ..models.pretrained import is_pretrained
from ..models.scope import dataset_mismatch, model_scope
from ..structures.crystal import tensors_to_structures
from ..utils.errors import ArgumentError
from ..utils.fileio import strict_json_dumps
from ..utils.progress import progress_bar
from .common import check_sampling_args, checkpoint_dataset
from .results import ReconstructionResult
from .sharding import run_sharded

__all__ = ["LATENTS", "reconstruct_split", "matcher_count_line", "ReconstructionResult"]

#: how z is taken in reconstruction: a posterior sample (the paper's protocol) or the posterior mean
LATENTS = ("sample", "mean")


def matcher_count_line(metrics: dict, n: int) -> str:
    """One line that says what the ``StructureMatcher`` progress bar of :func:`reconstruction_metrics` counted: the
    valid predictions only (an invalid one is never matched), out of ``n`` crystals, and the match rate over all
    ``n``, e.g. ``"StructureMatcher compared the 29 valid reconstructions of 32 crystals (3 invalid count as
    unmatched): 25/32 matched = 78.1 %"``."""
    n_valid, n_matched = int(metrics["n_valid"]), int(metrics["n_matched"])
    return (f"StructureMatcher compared the {n_valid} valid reconstructions of {n} crystals ({n - n_valid} invalid "
            f"count as unmatched): {n_matched}/{n} matched = {100.0 * n_matched / max(n, 1):.1f} %")


def reconstruct_split(checkpoint, out, dataset: Optional[str] = None, split: str = "test",
                      limit: Optional[int] = None, sampler=None, steps: Optional[int] = None,
                      batch_size: int = 256, seed: int = 0, root: Optional[str] = None, device: str = "cpu",
                      metrics: bool = True, command: str = "", latent: str = "sample",
                      initial_types: Optional[str] = None, ema: bool = True,
                      type_update: Optional[str] = None, on_error: str = "raise", n_workers: int = 1,
                      progress: bool = True, keep_structures: bool = False, extra_meta: Optional[dict] = None,
                      run_prefix: str = "recon", devices: int = 1, strategy: str = "ddp",
                      accelerator: str = "cpu", breakdown: bool = False) -> ReconstructionResult:
    """Reconstruct ``split`` of a dataset with a checkpoint; write CIFs + extxyz + JSON and (optionally) the
    reconstruction metrics (match rate, <delta_rms>) into a fresh run folder inside ``out`` (``out=None``: write
    nothing). Returns a :class:`~dpcdvae.workflows.results.ReconstructionResult` (settings, ``metrics``, ``ids``; its
    :meth:`~dpcdvae.workflows.results.ReconstructionResult.summary` is what ``metrics.json`` holds).

    ``checkpoint``: a path, ``"pretrained:<name>"`` or an already loaded model. ``latent``: ``"sample"`` draws z from
    the encoder posterior (the paper's protocol), ``"mean"`` takes its mean. ``n_workers``: processes of the
    StructureMatcher step (the numbers do not depend on it). ``keep_structures=True`` also keeps the predicted
    and the target structures in the result (``preds``, ``targets``).
    ``initial_types`` overrides the checkpoint's ``model.initial_types``; ``ema=False`` samples with the raw weights
    of a run trained with EMA. ``on_error="skip"`` skips bad CSV rows (listed in the result's ``skipped_rows``).
    ``devices=N`` shards the batches over N processes (:mod:`dpcdvae.workflows.sharding`; the same crystals whatever N).
    ``breakdown=True`` (with ``metrics``) also sorts every miss into one cause (:mod:`dpcdvae.eval.failures`: wrong
    composition, wrong geometry, two elements exchanged, ...): the result's ``failures`` and ``failures.json``."""
    if latent not in LATENTS:
        raise ValueError(f"latent must be one of {LATENTS}, got {latent!r}")
    if limit is not None and limit < 1:
        raise ArgumentError("limit", f"{limit}: must be >= 1")
    if batch_size < 1:
        raise ArgumentError("batch_size", f"{batch_size}: must be >= 1")
    if not ema and isinstance(checkpoint, (str, Path)) and is_pretrained(checkpoint):
        raise ArgumentError("ema", f": {checkpoint} is a shipped model, which holds one set of weights (its card "
                                   f"says which: `dpcdvae pretrained list`)")
    if isinstance(checkpoint, torch.nn.Module):
        model = checkpoint
    else:
        model = (load_model(checkpoint, map_location=device) if ema
                 else load_model(checkpoint, map_location=device, ema=False)).to(device)
    sampler = check_sampling_args(model, sampler, steps)
    card = getattr(model, "card", None)  # a shipped model holds one set of weights: its card says which
    weights = card.get("weights", "shipped") if isinstance(card, dict) else ("ema" if ema else "raw")
    if initial_types is not None:
        if initial_types not in INITIAL_TYPES:
            raise ValueError(f"initial_types must be one of {INITIAL_TYPES}, got {initial_types!r}")
        model.cfg.initial_types = initial_types
    if type_update is not None:
        if type_update not in ("argmax", "fixed"):
            raise ArgumentError("type_update", f"{type_update!r}: expected argmax or fixed")
        model.cfg.type_update = type_update
    if dataset is None:
        dataset = checkpoint_dataset(checkpoint, model)
        if dataset is None:
            raise ArgumentError("dataset", " is needed (no config.json beside the checkpoint and no model card)")
    data = resolve_dataset(dataset, root)  # once: an alias -> its registered name, the folder found
    dataset = data.name
    model_dataset = model_scope(model, None if isinstance(checkpoint, torch.nn.Module) else checkpoint)["dataset"]
    mismatch = dataset_mismatch(model_dataset, dataset)
    if mismatch:  # one line: the model was trained on another dataset (pretrained:carbon_24 on perov_5)
        print(f"[dpcdvae] {mismatch}", file=sys.stderr, flush=True)
    graph = model.data_graph
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)  # listed below and in the result instead
        ds = load_split(data, split, max_atoms=model.cfg.max_atoms, graph=graph,
                        limit=limit, on_error=on_error, progress=progress)
    for r, mid, why in ds.skipped:
        print(f"[dpcdvae] skipped {ds.source}: row {r} (material_id={mid!r}): {why}", flush=True)
    ck_label = str(checkpoint) if not isinstance(checkpoint, torch.nn.Module) else "(a loaded model)"
    run = new_run_dir(out, run_prefix) if out is not None else None
    writer = None if run is None else SampleWriter(run, meta={"command": command, "checkpoint": ck_label, "dataset": dataset,
                                     "model_dataset": model_dataset,
                                     "split": split, "sampler": sampler.label, "steps": steps, "seed": seed,
                                     "latent": latent, "initial_types": model.cfg.initial_types,
                                     "type_update": getattr(model.cfg, "type_update", "argmax"),
                                     "weights": weights, **(extra_meta or {})})
    preds, targets = [], []
    t0 = time.time()
    ids = []
    loader = DataLoader(ds, batch_size=batch_size)
    sharded = None
    if devices > 1:
        if isinstance(checkpoint, torch.nn.Module):
            raise ArgumentError("devices", ": give a checkpoint path or pretrained:<name> (each process loads the "
                                           "model)")
        sharded = run_sharded({"job": "reconstruct", "checkpoint": str(checkpoint), "ema": ema,
                               "initial_types": initial_types, "type_update": type_update, "dataset": dataset,
                               "split": split, "root": root, "limit": limit, "on_error": on_error,
                               "n_batches": len(loader), "batch_size": batch_size, "sampler": sampler,
                               "steps": steps, "seed": seed, "latent": latent, "accelerator": accelerator},
                              devices, strategy)
    # the bar counts crystals (a batch of 256 used to show as 1/1 beside the crystal counts elsewhere)
    bar = progress_bar(total=len(ds), desc="reconstructing", unit="crystal") if progress and not sharded else None
    with writer.marks_interrupt() if writer is not None else contextlib.nullcontext(), \
            bar if bar is not None else contextlib.nullcontext():  # Ctrl-C: "interrupted"; the bar is closed
        for k, batch in enumerate(loader):
            res = sharded[k] if sharded else model.reconstruct(batch, sampler=sampler, steps=steps, seed=seed + k,
                                                               progress=progress, use_mean=latent == "mean")
            if bar is not None:
                bar.update(len(res.structures))
            if writer is not None:
                writer.add(res)
            preds.extend(res.structures)
            ids.extend(res.ids)
            targets.extend(tensors_to_structures(batch.frac_coords, batch.atom_types, batch.lengths, batch.angles,
                                                 batch.num_atoms))
    result = ReconstructionResult(
        out=run, n=len(preds), sample_wall_s=round(time.time() - t0, 1), sampler=sampler.label,
        steps=steps or model.cfg.timesteps, latent=latent, initial_types=model.cfg.initial_types,
        type_update=getattr(model.cfg, "type_update", "argmax"), weights=weights, devices=devices, dataset=dataset,
        model_dataset=model_dataset, warning=mismatch or None,
        skipped_rows=[{"row": r, "material_id": mid, "reason": why} for r, mid, why in ds.skipped], ids=ids)
    if metrics:
        m = reconstruction_metrics(preds, targets, ids=ids, n_workers=n_workers, progress=progress)
        result.metrics = m
        if progress:  # the StructureMatcher bar above counts the valid predictions only: say what it counted
            print(matcher_count_line(m, len(preds)), file=sys.stderr, flush=True)
        if breakdown:
            from ..eval.failures import failure_breakdown

            fb = failure_breakdown(preds, targets, m["per_structure"], n_workers=n_workers, progress=progress)
            result.failures = {k: v for k, v in fb.items() if k != "per_structure"}
            if run is not None:
                rows = [{"material_id": i, **r} for i, r in zip(ids, fb["per_structure"])]
                (run / "failures.json").write_text(strict_json_dumps({**result.failures, "per_structure": rows},
                                                                     indent=1))
    if run is not None:
        (run / "metrics.json").write_text(strict_json_dumps(result.summary(), indent=1))
        if result.metrics is not None:  # per crystal: matched, rms_dist, validity, ... (dpcdvae.eval.compare reads it)
            import pandas as pd

            pd.DataFrame(result.metrics["per_structure"]).to_csv(run / "per_structure.csv", index=False)
    if keep_structures:
        result.preds, result.targets = preds, targets
    return result
