"""Workflows: the jobs the command line, the demo and the notebooks run, one implementation each.

- :func:`reconstruct_split`: Table I / S1: reconstruct a split with a model, write the crystals and the metrics;
- :func:`generate_to_folder`: Table II: generate crystals in batches and write them (CIFs, extxyz, JSON);
- :func:`checkpoint_dataset`: the dataset a checkpoint was trained on.

- :func:`run_relax`: relax a folder or file of structures (``dpcdvae relax``) and compute the Table III metrics;
- :func:`run_ground_state_study`: Table III for several checkpoints (generate, relax, tabulate, Fig. S2).

Layering: this module sits above the models, data and metrics and below the command line and the notebooks.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch_geometric.loader import DataLoader

from .utils.fileio import atomic_write_text, strict_json_dumps
from .structures.crystal import structure_to_atoms, tensors_to_structures, write_cif
from .data import DataWarning, load_split
from .diffusion.samplers import get_sampler
from .utils.errors import SamplerError, UserError
from .eval.ground_state import ground_state_metrics, relax_structures, render_table3, table3
from .eval.relax import CHGNetBatchPredictor
from .eval.reconstruction import reconstruction_metrics
from .io import SampleWriter, new_run_dir
from .models import INITIAL_TYPES, concat_outputs, load_model
from .models.pretrained import is_pretrained
from .models.scope import dataset_mismatch, model_scope
from .utils.progress import progress_bar
from .sharding import run_sharded
from .train import resolve_root
from .viz import plot_delta_e_vs_paper

__all__ = ["rank_candidates", "rank_by_proxy", "LATENTS", "encode_posterior", "checkpoint_dataset", "checkpoint_training_dataset", "check_sampling_args", "sampler_for", "run_relax", "run_ground_state_study", "summary_table", "reconstruct_split", "generate_to_folder", "matcher_count_line"]

#: how z is taken in reconstruction: a posterior sample (the paper's protocol) or the posterior mean
LATENTS = ("sample", "mean")


def check_sampling_args(model, sampler: Optional[str], steps: Optional[int]) -> str:
    """The sampler to use with ``model`` (its own default when ``sampler`` is None); a UserError names the argument
    when the sampler does not fit the model or ``--steps`` would be ignored."""
    try:
        sampler = model.check_sampler(sampler)
    except SamplerError as exc:
        if model.sampler_family == "langevin":
            raise UserError(f"--sampler {sampler}: this checkpoint is a {model.cfg.model} model, which samples with "
                            f"annealed Langevin only (--sampler langevin, --steps = iterations per noise level)"
                            ) from exc
        raise UserError(f"--sampler {sampler}: this checkpoint is a DP-CDVAE model; use "
                        f"{', '.join(model.supported_samplers)}") from exc
    smp = get_sampler(sampler)
    if steps is not None:
        if steps < 1:
            raise UserError(f"--steps {steps}: must be >= 1")
        if smp.family == "ddpm" and not smp.strided:
            raise UserError(f"--steps {steps}: --sampler {sampler} always runs all {model.cfg.timesteps} steps; "
                            f"use --sampler strided_eq7 (or strided) for fewer")
        if smp.family == "ddpm" and steps > model.cfg.timesteps:
            raise UserError(f"--steps {steps}: at most T = {model.cfg.timesteps}")
    return sampler


def sampler_for(model, sampler: Optional[str], steps: Optional[int] = None) -> tuple[str, Optional[int], str]:
    """For a study over several model kinds (Table III): ``(sampler, steps, note)`` for ``model``. ``sampler`` is
    used when the model runs it; a model that does not (a CDVAE baseline asked for ``eq7``) uses its own default
    with its default number of steps, and ``note`` says so (print it; empty when nothing was replaced)."""
    if sampler is None or sampler in model.supported_samplers:
        return model.check_sampler(sampler), steps, ""
    own = model.default_sampler
    return own, None, (f"{type(model).__name__} does not run {sampler!r}: it samples with its own {own!r} "
                       f"(default steps)")


def checkpoint_dataset(checkpoint, model=None) -> Optional[str]:
    """The dataset a checkpoint was trained on: the card of a shipped model, else ``config.json`` beside the
    checkpoint file; ``None`` when neither says."""
    card = getattr(model, "card", None)
    if isinstance(card, dict) and card.get("dataset"):
        return card["dataset"]
    info = Path(str(checkpoint)).parent / "config.json"
    return json.loads(info.read_text()).get("dataset") if info.is_file() else None


def checkpoint_training_dataset(checkpoint) -> Optional[str]:
    """The dataset a checkpoint was trained on, without loading its weights: ``"pretrained:<name>"`` -> its card's
    ``dataset``; a path -> the ``config.json`` of its run folder (``training_data.dataset``, else ``dataset``);
    ``None`` when neither says."""
    from .models.pretrained import pretrained_card
    from .models.scope import _config_json_dataset

    if checkpoint is None:
        return None
    if is_pretrained(str(checkpoint)):
        try:
            return pretrained_card(str(checkpoint)).get("dataset")
        except Exception:  # noqa: BLE001 - an unknown name: nothing to say
            return None
    meta = _config_json_dataset(checkpoint)
    if meta is None:
        return None
    return (meta.get("training_data") or {}).get("dataset") or meta.get("dataset")


def matcher_count_line(metrics: dict, n: int) -> str:
    """One line that says what the ``StructureMatcher`` progress bar of :func:`reconstruction_metrics` counted: the
    valid predictions only (an invalid one is never matched), out of ``n`` crystals, and the match rate over all
    ``n``, e.g. ``"StructureMatcher compared the 29 valid reconstructions of 32 crystals (3 invalid count as
    unmatched): 25/32 matched = 78.1 %"``."""
    n_valid, n_matched = int(metrics["n_valid"]), int(metrics["n_matched"])
    return (f"StructureMatcher compared the {n_valid} valid reconstructions of {n} crystals ({n - n_valid} invalid "
            f"count as unmatched): {n_matched}/{n} matched = {100.0 * n_matched / max(n, 1):.1f} %")


def reconstruct_split(checkpoint, out, dataset: Optional[str] = None, split: str = "test",
                      limit: Optional[int] = None, sampler: Optional[str] = None, steps: Optional[int] = None,
                      batch_size: int = 256, seed: int = 0, root: Optional[str] = None, device: str = "cpu",
                      metrics: bool = True, command: str = "", latent: str = "sample",
                      initial_types: Optional[str] = None, ema: bool = True,
                      type_update: Optional[str] = None, on_error: str = "raise", n_workers: int = 1,
                      progress: bool = True, keep_structures: bool = False, extra_meta: Optional[dict] = None,
                      run_prefix: str = "recon", devices: int = 1, strategy: str = "ddp",
                      accelerator: str = "cpu", breakdown: bool = False) -> dict:
    """Reconstruct ``split`` of a dataset with a checkpoint; write CIFs + extxyz + JSON and (optionally) the
    reconstruction metrics (match rate, <delta_rms>) into a fresh run folder inside ``out`` (``out=None``: write
    nothing). Returns the metrics dict.

    ``checkpoint``: a path, ``"pretrained:<name>"`` or an already loaded model. ``latent``: ``"sample"`` draws z from
    the encoder posterior (the paper's protocol), ``"mean"`` takes its mean. ``n_workers``: processes of the
    StructureMatcher step (the numbers do not depend on it). ``keep_structures=True`` adds ``_preds``,
    ``_targets``, ``_ids`` and ``_metrics`` (the full metrics dict, per-structure rows included) to the result.
    ``initial_types`` overrides the checkpoint's ``model.initial_types``; ``ema=False`` samples with the raw weights
    of a run trained with EMA. ``on_error="skip"`` skips bad CSV rows (listed in the result as ``skipped_rows``).
    ``devices=N`` shards the batches over N processes (:mod:`dpcdvae.sharding`; the same crystals whatever N).
    ``breakdown=True`` (with ``metrics``) also sorts every miss into one cause (:mod:`dpcdvae.eval.failures`: wrong
    composition, wrong geometry, two elements exchanged, ...): ``failures`` in the result and ``failures.json``."""
    if latent not in LATENTS:
        raise ValueError(f"latent must be one of {LATENTS}, got {latent!r}")
    if limit is not None and limit < 1:
        raise UserError(f"--limit {limit}: must be >= 1")
    if batch_size < 1:
        raise UserError(f"--batch-size {batch_size}: must be >= 1")
    if not ema and isinstance(checkpoint, (str, Path)) and is_pretrained(checkpoint):
        raise UserError(f"--raw-weights: {checkpoint} is a shipped model, which holds one set of weights (its card "
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
            raise UserError(f"--type-update {type_update!r}: expected argmax or fixed")
        model.cfg.type_update = type_update
    if dataset is None:
        dataset = checkpoint_dataset(checkpoint, model)
        if dataset is None:
            raise UserError("--dataset is needed (no config.json beside the checkpoint and no model card)")
    model_dataset = model_scope(model, None if isinstance(checkpoint, torch.nn.Module) else checkpoint)["dataset"]
    mismatch = dataset_mismatch(model_dataset, dataset)
    if mismatch:  # one line: the model was trained on another dataset (pretrained:carbon_24 on perov_5)
        print(f"[dpcdvae] {mismatch}", file=sys.stderr, flush=True)
    graph = model.data_graph
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)  # listed below and in the result instead
        ds = load_split(dataset, split, root=resolve_root(dataset, root), max_atoms=model.cfg.max_atoms, graph=graph,
                        limit=limit, on_error=on_error, progress=progress)
    for r, mid, why in ds.skipped:
        print(f"[dpcdvae] skipped {ds.source}: row {r} (material_id={mid!r}): {why}", flush=True)
    ck_label = str(checkpoint) if not isinstance(checkpoint, torch.nn.Module) else "(a loaded model)"
    run = new_run_dir(out, run_prefix) if out is not None else None
    writer = None if run is None else SampleWriter(run, meta={"command": command, "checkpoint": ck_label, "dataset": dataset,
                                     "model_dataset": model_dataset,
                                     "split": split, "sampler": sampler, "steps": steps, "seed": seed,
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
            raise UserError("--devices: give a checkpoint path or pretrained:<name> (each process loads the model)")
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
    result = {"out": None if run is None else str(run), "n": len(preds), "sample_wall_s": round(time.time() - t0, 1),
              "sampler": sampler, "steps": steps or model.cfg.timesteps, "latent": latent,
              "initial_types": model.cfg.initial_types, "type_update": getattr(model.cfg, "type_update", "argmax"),
              "weights": weights, "devices": devices, "dataset": dataset, "model_dataset": model_dataset}
    if mismatch:
        result["warning"] = mismatch
    if ds.skipped:
        result["skipped_rows"] = [{"row": r, "material_id": mid, "reason": why} for r, mid, why in ds.skipped]
    m = None
    if metrics:
        m = reconstruction_metrics(preds, targets, ids=ids, n_workers=n_workers, progress=progress)
        result.update({k: v for k, v in m.items() if not isinstance(v, (list, dict))})
        if progress:  # the StructureMatcher bar above counts the valid predictions only: say what it counted
            print(matcher_count_line(m, len(preds)), file=sys.stderr, flush=True)
        if breakdown:
            from .eval.failures import failure_breakdown

            fb = failure_breakdown(preds, targets, m["per_structure"], n_workers=n_workers, progress=progress)
            result["failures"] = {k: v for k, v in fb.items() if k != "per_structure"}
            if run is not None:
                rows = [{"material_id": i, **r} for i, r in zip(ids, fb["per_structure"])]
                (run / "failures.json").write_text(strict_json_dumps({**result["failures"], "per_structure": rows},
                                                                     indent=1))
    if run is not None:
        (run / "metrics.json").write_text(strict_json_dumps(result, indent=1))
        if m is not None:  # per crystal: matched, rms_dist, validity, ... (dpcdvae.eval.compare reads it)
            import pandas as pd

            pd.DataFrame(m["per_structure"]).to_csv(run / "per_structure.csv", index=False)
    if keep_structures:
        result.update({"_preds": preds, "_targets": targets, "_ids": ids, "_metrics": m})
    return result


@torch.no_grad()
def encode_posterior(model, dataset: str, split: str, root: Optional[str] = None, limit: Optional[int] = None,
                 batch_size: int = 512, progress: bool = False) -> dict:
    """Every crystal of a split through ``model``'s encoder: ``{"mu", "logvar"}`` (``[n, L]`` float tensors, the
    posterior), ``"y"`` (``[n]`` the dataset's property column, NaN where absent), ``"ids"`` (material ids) and the
    loaded ``dataset``. Used by the property head (:mod:`dpcdvae.optimize`) and the latent explorer
    (:mod:`dpcdvae.latent`)."""
    ds = load_split(dataset, split, root=resolve_root(dataset, root), max_atoms=model.cfg.max_atoms,
                    graph=model.data_graph, limit=limit, progress=progress)
    mus, lvs, ys, ids = [], [], [], []
    model.eval()
    for batch in DataLoader(ds, batch_size=batch_size):
        batch = batch.to(model.device)
        mu, lv = model.encode(batch)
        mus.append(mu.cpu())
        lvs.append(lv.cpu())
        ys.append(batch.y.reshape(-1).float().cpu() if getattr(batch, "y", None) is not None
                  else torch.full((batch.num_graphs,), float("nan")))
        ids.extend(list(batch.material_id))
    return {"mu": torch.cat(mus), "logvar": torch.cat(lvs), "y": torch.cat(ys), "ids": ids, "dataset": ds}



def generate_to_folder(model, n: int, run_dir, sampler: Optional[str] = None, steps: Optional[int] = None,
                       seed: int = 0, batch_size: int = 256, meta: Optional[dict] = None,
                       symprec: Optional[float] = None, progress: bool = True, reseed_batches: bool = False,
                       devices: int = 1, checkpoint=None, strategy: str = "ddp", accelerator: str = "cpu",
                       resume: bool = False):
    """Generate ``n`` crystals from z ~ N(0, I) with ``model`` and write them into ``run_dir`` as they come (CIFs,
    ``samples.extxyz``, ``samples.json``: :class:`~dpcdvae.io.SampleWriter`). Returns ``(SampleOutput, writer)``;
    ``writer.n_valid`` / ``writer.n_decoded`` count the paper-valid and the built crystals.

    ``sampler=None``: the model's default. Seeding: one random stream seeded with ``seed`` over all batches
    (default; ids ``gen-<i>``), or, with ``reseed_batches=True`` (``dpcdvae sample``), batch ``k`` seeded with
    ``seed + first index of the batch`` so that any batch can be redone alone (ids ``gen-<iiiii>``). The two give
    the same crystals when ``n <= batch_size``. ``devices=N`` (with ``reseed_batches`` and ``checkpoint``, a path or
    ``pretrained:<name>``) shards the batches over N processes (:mod:`dpcdvae.sharding`): the same crystals whatever
    N.

    With ``reseed_batches`` every finished batch is also kept as ``run_dir/batches/batch_<k>.pt``
    (:func:`~dpcdvae.models.output.save_batch`) beside ``batches/spec.json`` (n, batch size, sampler, steps, seed
    and a fingerprint of the model's weights). ``resume=True`` reads the batches already there back instead of
    computing them again and computes the rest: a long run stopped by a crash, Ctrl-C or a time limit continues
    where it stopped and ends with the same crystals as one uninterrupted run. A spec that differs from the
    request raises :class:`~dpcdvae.utils.errors.UserError` naming the setting."""
    sampler = model.check_sampler(sampler)
    run_dir = Path(run_dir)
    batch_dir = None
    if reseed_batches:
        spec = {"n": int(n), "batch_size": int(batch_size), "sampler": sampler, "steps": steps, "seed": int(seed),
                "model_sha256": model_fingerprint(model)}
        batch_dir = _prepare_batch_dir(run_dir, spec, resume)
    elif resume:
        raise UserError("resume: needs reseed_batches=True (batches that can be redone alone)")
    if resume:
        (run_dir / "samples.extxyz").unlink(missing_ok=True)  # the writer rewrites every crystal, in order
    writer = SampleWriter(run_dir, meta={"sampler": sampler, "steps": steps, "seed": seed, **(meta or {})},
                          symprec=symprec)
    with writer.marks_interrupt():  # Ctrl-C: samples.json says "interrupted": true
        return _generate_batches(model, writer, n, sampler, steps, seed, batch_size, progress, reseed_batches,
                                 devices, checkpoint, strategy, accelerator, batch_dir)


def model_fingerprint(model) -> str:
    """sha256 of a model's parameters and buffers (names, shapes, dtypes, values), in hex: two models with the same
    weights give the same string whatever file they came from."""
    import hashlib

    h = hashlib.sha256()

    def feed(name, v):
        if isinstance(v, torch.Tensor):
            t = v.detach().cpu().contiguous()
            h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        elif isinstance(v, dict):  # e.g. a fitted scaler's state kept beside the weights
            for k in sorted(v, key=str):
                feed(f"{name}.{k}", v[k])
        else:
            h.update(f"{name}={v!r}".encode())

    for name, value in sorted(model.state_dict().items()):
        feed(name, value)
    return h.hexdigest()


def _prepare_batch_dir(run_dir: Path, spec: dict, resume: bool) -> Path:
    """``run_dir/batches`` with ``spec.json`` written; with ``resume`` the spec already there must equal ``spec``
    (else a UserError names the first setting that differs)."""
    batch_dir = run_dir / "batches"
    spec_file = batch_dir / "spec.json"
    if resume:
        if not spec_file.is_file():
            raise UserError(f"--resume: {spec_file} not found (resume needs the folder of an earlier run with the "
                            f"same settings)")
        old = json.loads(spec_file.read_text())
        for key, value in spec.items():
            if old.get(key) != value:
                what = "the model's weights differ" if key == "model_sha256" else \
                    f"{key} was {old.get(key)!r}, now {value!r}"
                raise UserError(f"--resume {run_dir}: {what}; resume with the settings of the earlier run "
                                f"(see {spec_file}) or write to a new --out")
        return batch_dir
    batch_dir.mkdir(parents=True, exist_ok=True)
    for stale in batch_dir.glob("batch_*.pt"):  # a fresh run never mixes in another run's batches
        stale.unlink()
    atomic_write_text(spec_file, strict_json_dumps(spec, indent=1))
    return batch_dir


def _generate_batches(model, writer, n, sampler, steps, seed, batch_size, progress, reseed_batches, devices,
                      checkpoint, strategy, accelerator, batch_dir=None):
    """The body of :func:`generate_to_folder` once its writer exists."""
    from .models.output import load_batch, save_batch

    if not reseed_batches:
        out = model.generate(n, sampler=sampler, steps=steps, seed=seed, batch_size=batch_size, progress=progress)
        writer.add(out)
        return out, writer
    n_batches = (n + batch_size - 1) // batch_size
    done_before = sorted(batch_dir.glob("batch_*.pt"))
    writer.meta["batches_read_back"] = len(done_before)
    if done_before and progress:
        print(f"[dpcdvae] resuming: {len(done_before)} of {n_batches} batches already in {batch_dir}",
              file=sys.stderr, flush=True)
    if devices > 1:
        if checkpoint is None or isinstance(checkpoint, torch.nn.Module):
            raise UserError("--devices: give a checkpoint path or pretrained:<name> (each process loads the model)")
        outs = run_sharded({"job": "generate", "checkpoint": str(checkpoint), "n": n, "n_batches": n_batches,
                            "batch_size": batch_size, "sampler": sampler, "steps": steps, "seed": seed,
                            "accelerator": accelerator, "batch_dir": str(batch_dir)}, devices, strategy)
        for out in outs:
            writer.add(out)
        return concat_outputs(outs), writer
    outs = []
    bar = progress_bar(total=n, desc="generating", unit="crystal") if progress else None
    for k in range(n_batches):
        start = k * batch_size
        m = min(batch_size, n - start)
        path = batch_dir / f"batch_{k:06d}.pt"
        if path.is_file():
            out = load_batch(path)
        else:
            out = model.generate(m, sampler=sampler, steps=steps, seed=seed + start, batch_size=m, progress=progress)
            out.ids = [f"gen-{start + i:05d}" for i in range(m)]
            save_batch(out, path)
        writer.add(out)
        outs.append(out)
        if bar is not None:
            bar.update(m)
    if bar is not None:
        bar.close()
    return concat_outputs(outs), writer


# --------------------------------------------------------------------------------------------------------------
# relaxation (Table III)
# --------------------------------------------------------------------------------------------------------------
def _fmt(v, nd=4):
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.{nd}f}"
    return str(v)


def relax_changes(results, energy: str = "enthalpy") -> dict:
    """What relaxing did to the structures, over the successfully relaxed ones: ``n``, the volume change per crystal
    ``V_relaxed / V_generated - 1`` in % (``volume_change_median_pct``, ``_mean_pct``, ``_min_pct``, ``_max_pct``) and
    the enthalpy (or energy) change ``H_relaxed - H_generated`` in meV/atom (``dE_median_mev``, ``dE_mean_mev``;
    negative: relaxing lowered it)."""
    ok = [r for r in results if r.ok]
    if not ok:
        return {"n": 0}
    dv = np.array([100.0 * (r.relaxed_volume_per_atom / r.initial_volume_per_atom - 1.0) for r in ok], dtype=float)
    de = -np.array([r.delta_energy_mev(energy) for r in ok], dtype=float)  # relaxed - generated
    return {"n": len(ok), "volume_change_median_pct": float(np.nanmedian(dv)),
            "volume_change_mean_pct": float(np.nanmean(dv)), "volume_change_min_pct": float(np.nanmin(dv)),
            "volume_change_max_pct": float(np.nanmax(dv)), "dE_median_mev": float(np.nanmedian(de)),
            "dE_mean_mev": float(np.nanmean(de)), "energy_measure": energy}


def relax_headline(results, energy: str = "enthalpy") -> str:
    """The first line of ``dpcdvae relax``'s result: how much the cells' volume and the enthalpy changed on
    relaxing (median, mean and range over the relaxed crystals); a large change means the generated structures were
    far from their minimum, whatever the match rate says."""
    c = relax_changes(results, energy)
    if not c["n"]:
        return "no structure relaxed: no volume or enthalpy change to report"
    word = "enthalpy H = E + pV" if energy == "enthalpy" else "energy"
    return (f"on relaxing {c['n']} crystal{'s' if c['n'] != 1 else ''}: volume {c['volume_change_median_pct']:+.1f} % "
            f"(median; mean {c['volume_change_mean_pct']:+.1f} %, range {c['volume_change_min_pct']:+.1f} to "
            f"{c['volume_change_max_pct']:+.1f} %), {word} {c['dE_median_mev']:+.0f} meV/atom (median; mean "
            f"{c['dE_mean_mev']:+.0f})")


def summary_table(results, energy: str = "enthalpy") -> str:
    """Fixed-width text table: one row per result (energies eV/atom, volumes A^3/atom, dE meV/atom)."""
    head = ["id", "N", "E0", "E", "H0", "H", "V0", "V", f"d{'H' if energy == 'enthalpy' else 'E'}", "steps", "conv",
            "s", "error"]
    rows = []
    for r in results:
        de = r.delta_energy_mev(energy) if r.ok else None
        rows.append([r.id, str(r.n_atoms), _fmt(r.initial_energy_per_atom), _fmt(r.relaxed_energy_per_atom),
                     _fmt(r.initial_enthalpy_per_atom), _fmt(r.relaxed_enthalpy_per_atom),
                     _fmt(r.initial_volume_per_atom, 3), _fmt(r.relaxed_volume_per_atom, 3), _fmt(de, 1),
                     str(r.steps), _fmt(bool(r.converged)), _fmt(r.wall_time_s, 1) + ("*" if r.resumed else ""),
                     (r.error or "")[:60]])
    w = [max(len(x[i]) for x in [head] + rows) for i in range(len(head))]
    lines = ["  ".join(h.ljust(k) for h, k in zip(head, w)), "  ".join("-" * k for k in w)]
    lines += ["  ".join(c.ljust(k) for c, k in zip(r, w)) for r in rows]
    return "\n".join(lines)


def run_relax(path: str, out: str, pressure_gpa: float = 0.0, calculator: str = "chgnet", fmax: float = 0.05,
              max_steps: int = 500, optimizer: str = "FIRE", batch: bool = True, batch_size: int = 32,
              device: str = "cpu", resume: bool = True, retry_failed: bool = False, energy: str = "enthalpy",
              plot: bool = False, progress: bool = True, command: str = "", workers: int = 1) -> dict:
    """The API behind ``dpcdvae relax``: relax, compute the metrics, write ``<out>/summary.json``; returns it.
    ``workers``: processes relaxing at once (see :func:`~dpcdvae.eval.relax.relax_structures`)."""
    out_dir = Path(out)
    earlier = 0.0  # wall time of earlier (interrupted or finished) runs into the same folder
    if resume and (out_dir / "summary.json").is_file():
        try:
            old = json.loads((out_dir / "summary.json").read_text())
            earlier = float(old.get("wall_s_total", old.get("wall_s", 0.0)))
        except (ValueError, TypeError, OSError):
            earlier = 0.0
    t0 = time.time()
    results = relax_structures(path, pressure_gpa=pressure_gpa, calculator=calculator, optimizer=optimizer,
                               fmax=fmax, max_steps=max_steps, out_dir=out_dir, batch=batch, progress=progress,
                               batch_size=batch_size, resume=resume, retry_failed=retry_failed, device=device,
                               workers=workers)
    wall = time.time() - t0
    metrics = ground_state_metrics(results, energy=energy)
    per = metrics.pop("per_structure")
    summary = {
        "command": command,
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "input": str(path),
        "settings": {"pressure_gpa": pressure_gpa, "calculator": calculator, "optimizer": optimizer, "fmax": fmax,
                     "max_steps": max_steps, "batch": batch, "batch_size": batch_size, "device": device,
                     "workers": workers, "energy_measure": energy},
        "wall_s": round(wall, 2),
        "wall_s_total": round(earlier + wall, 2),  # this run plus the earlier runs it resumed
        "n_resumed": sum(1 for r in results if r.resumed),
        "metrics": metrics,
        "results": [{**r.to_dict(structures=False), "resumed": r.resumed, **{k: p[k] for k in
                     ("matched", "rms_dist", "dV", "dE_meV")}} for r, p in zip(results, per)],
    }
    if plot:
        plot_delta_e_vs_paper({Path(str(path)).stem or "relaxed": _delta_e(results, energy)},
                              path=out_dir / "delta_e_hist.png", energy=energy)
        summary["plot"] = str(out_dir / "delta_e_hist.png")
    atomic_write_text(out_dir / "summary.json", strict_json_dumps(summary, indent=1, default=str))
    summary["_results"] = results
    return summary


def run_ground_state_study(checkpoints, out: str, n: int = 100, pressure_gpa: float = 10.0, seed: int = 0,
                           sampler: str | None = None, steps: int | None = None, fmax: float = 0.05,
                           max_steps: int = 500, batch_size: int = 32, device: str = "cpu", plot: bool = True,
                           progress: bool = True, command: str = "", calculator: str = "chgnet",
                           optimizer: str = "FIRE") -> dict:
    """Table III for several models: for each model generate ``n`` crystals (seeded), relax them at ``pressure_gpa``
    (GPa; CHGNet by default, ``fmax`` in eV/A) and compute the ground-state metrics; then one table with the paper's
    DFT rows beside ours, and the Fig. S2 histograms. Layout: ``<out>/<model label>/{generated,relaxed}``,
    ``<out>/table3.md``, ``<out>/study.json``, ``<out>/delta_e_hist.png``. Resumable (finished relaxations are not
    redone).

    ``checkpoints``: a list of checkpoints (paths or ``pretrained:<name>``; labelled by the model kind) or a dict
    ``{label: checkpoint or loaded model}``. ``sampler``: used by the models that run it; the others use their own
    (printed, :func:`sampler_for`). The returned dict also holds ``"_results"`` (``{label: [RelaxResult]}``), not
    written to ``study.json``."""
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    ours, by_model, rows = {}, {}, {}
    items = checkpoints.items() if isinstance(checkpoints, dict) else [(None, ck) for ck in checkpoints]
    for given_label, ck in items:
        model = ck if isinstance(ck, torch.nn.Module) else load_model(ck, map_location=device).to(device)
        label = given_label or model.label
        if given_label is None and label in ours:
            label = f"{label} ({Path(str(ck)).parent.name})"
        smp, smp_steps, note = sampler_for(model, sampler, steps)
        if note:
            print(f"[dpcdvae] {label}: {note}", flush=True)
        mdir = out_dir / label.replace(" ", "_").replace("+", "plus")
        gen_dir = mdir / "generated"
        if not (gen_dir / "samples.extxyz").exists():
            generate_to_folder(model, n, gen_dir, sampler=smp, steps=smp_steps, seed=seed, batch_size=512,
                               progress=progress, meta={"command": command, "checkpoint": ck_name(ck)})
        s = run_relax(str(gen_dir / "samples.extxyz"), str(mdir / "relaxed"), pressure_gpa=pressure_gpa,
                      calculator=calculator, optimizer=optimizer, fmax=fmax, max_steps=max_steps,
                      batch_size=batch_size, device=device, progress=progress, command=command)
        by_model[label] = s.pop("_results")
        m = {**s["metrics"], "n_generated": n, "n_degenerate": n - len(by_model[label]), "relax_wall_s": s["wall_s"]}
        ours[label] = m
        rows[label] = {"checkpoint": ck_name(ck), "sampler": smp, **m}
        if progress:
            print(f"{label}: {m['n_relaxed']} relaxed ({m['n_converged']} converged) in {s['wall_s']} s", flush=True)
    df = table3(ours)
    text = render_table3(df, markdown=True)
    (out_dir / "table3.md").write_text(text + "\n")
    study = {"command": command, "date": _dt.datetime.now().isoformat(timespec="seconds"), "n": n,
             "pressure_gpa": pressure_gpa, "seed": seed, "wall_s": round(time.time() - t0, 1), "models": rows}
    if plot:
        plot_delta_e_vs_paper({k: _delta_e(v) for k, v in by_model.items()}, path=out_dir / "delta_e_hist.png")
        study["plot"] = str(out_dir / "delta_e_hist.png")
    (out_dir / "study.json").write_text(strict_json_dumps(study, indent=1, default=str))
    study["table"] = text
    study["_results"] = by_model
    return study


def ck_name(checkpoint) -> str:
    """How a checkpoint is named in output files: its path or ``pretrained:<name>``, or the card's name of a loaded
    shipped model, or ``"(a loaded model)"``."""
    if isinstance(checkpoint, torch.nn.Module):
        card = getattr(checkpoint, "card", None)
        return f"pretrained:{card['name']}" if isinstance(card, dict) and card.get("name") else "(a loaded model)"
    return str(checkpoint)


def _delta_e(results, energy: str = "enthalpy") -> list:
    """``E_gen - E_relaxed`` (meV/atom) of the successfully relaxed results."""
    return [r.delta_energy_mev(energy) for r in results if r.ok]


def rank_candidates(out, run_dir: str | None = None, relax_steps: int = 0, pressure_gpa: float = 0.0,
                    calculator="chgnet", fmax: float = 0.05, progress: bool = True) -> list[dict]:
    """Rank candidate crystals (a :class:`~dpcdvae.models.SampleOutput`, e.g. from CSP mode) by their energy per
    atom under an ML potential (CHGNet by default), lowest first.

    ``relax_steps = 0``: the static energy of each candidate as sampled (fast; a generated structure is not at its
    minimum, so this ranks the sampler's geometry too). ``relax_steps > 0``: each candidate is first relaxed (cell
    and positions, FIRE, at most ``relax_steps`` steps, ``pressure_gpa`` GPa, ``fmax`` eV/A) and ranked by its
    relaxed enthalpy per atom ``(E + pV) / N``. Only candidates valid in the paper's sense are ranked (an
    overlapping or non-neutral crystal's energy means little); the others get ``rank`` None and stay in the list.

    ``calculator``: ``"chgnet"`` or a batch predictor ``f(list[ase.Atoms]) -> list[dict(energy eV, ...)]``.
    ``run_dir``: if given, writes ``<run_dir>/ranking.json`` and the ranked CIFs ``<run_dir>/ranked/NN_<id>.cif``
    (relaxed structures when relaxed).

    Returns one dict per candidate, ranked ones first: ``id``, ``rank`` (1 = lowest), ``energy_per_atom`` (eV/atom;
    the relaxed enthalpy per atom when relaxed), ``relaxed``, ``converged`` (when relaxed), ``steps``,
    ``formula``, ``valid``, ``error``.
    """
    relax_steps = int(relax_steps)
    if relax_steps < 0:
        raise ValueError(f"relax_steps must be >= 0, got {relax_steps}")
    valid = out.valid_mask
    idx = [i for i, v in enumerate(valid) if v]
    rows = {i: {"id": str(out.ids[i]), "rank": None, "energy_per_atom": None, "relaxed": False, "steps": 0,
                "formula": out.structures[i].composition.reduced_formula if out.structures[i] is not None else None,
                "valid": bool(valid[i]), "error": None if valid[i] else "not valid: not ranked"}
            for i in range(len(out))}
    final = {}
    if idx and relax_steps > 0:
        res = relax_structures([out.structures[i] for i in idx], ids=[str(out.ids[i]) for i in idx],
                               pressure_gpa=pressure_gpa, calculator=calculator, fmax=fmax, max_steps=relax_steps,
                               progress=progress)
        for i, r in zip(idx, res):
            rows[i].update(relaxed=r.error is None, converged=bool(r.converged), steps=int(r.steps or 0), error=r.error,
                           energy_per_atom=None if r.error else float(r.relaxed_enthalpy_per_atom))
            final[i] = r.relaxed_structure if r.error is None else out.structures[i]
    elif idx:
        pred = CHGNetBatchPredictor() if calculator == "chgnet" else calculator
        if not callable(pred):
            raise ValueError(f"calculator {calculator!r}: 'chgnet' or a batch predictor (callable) for static "
                             "ranking; use relax_steps > 0 for other named calculators")
        preds = pred([structure_to_atoms(out.structures[i]) for i in idx])
        for i, p in zip(idx, preds):
            n = len(out.structures[i])
            rows[i]["energy_per_atom"] = float(p["energy"]) / n
            final[i] = out.structures[i]
    ranked, table = _rank_rows(rows, "energy_per_atom", len(out))
    if run_dir is not None:
        d = Path(run_dir)
        _write_ranked_cifs(rows, ranked, final, d)
        measure = (f"relaxed enthalpy per atom at {pressure_gpa:g} GPa (FIRE, <= {relax_steps} steps, fmax {fmax} "
                   "eV/A)" if relax_steps > 0 else "static energy per atom of the structure as sampled")
        name = calculator if isinstance(calculator, str) else type(calculator).__name__
        atomic_write_text(d / "ranking.json", strict_json_dumps(
            {"rank_by": "chgnet" if calculator == "chgnet" else "calculator", "calculator": name,
             "basis": f"{name} {measure}, lowest first (valid candidates only)",
             "measure": measure, "units": "eV/atom", "candidates": table}, indent=1))
    return table


def _rank_rows(rows: dict, key: str, n: int) -> tuple[list[int], list[dict]]:
    """Rank the candidates ``rows[i]`` (``i`` in ``0..n-1``) by ``rows[i][key]``, lowest first (ties by index; rows
    whose value is None get no rank); sets ``rows[i]["rank"]`` (1-based) and returns ``(ranked indices, table)``
    with the ranked rows first, then the others in index order."""
    ranked = sorted((i for i in rows if rows[i][key] is not None), key=lambda i: (rows[i][key], i))
    for r, i in enumerate(ranked, 1):
        rows[i]["rank"] = r
    return ranked, [rows[i] for i in ranked] + [rows[i] for i in range(n) if rows[i]["rank"] is None]


def _write_ranked_cifs(rows: dict, ranked: list[int], structures, run_dir: Path) -> None:
    """Write ``run_dir/ranked/<rank>_<id>.cif`` for every ranked candidate (``structures[i]``) and record the path
    in ``rows[i]["cif"]``."""
    (run_dir / "ranked").mkdir(parents=True, exist_ok=True)
    width = max(2, len(str(len(ranked))))
    for i in ranked:
        name = f"{rows[i]['rank']:0{width}d}_{rows[i]['id']}.cif"
        write_cif(structures[i], run_dir / "ranked" / name, symprec=None)
        rows[i]["cif"] = str(Path("ranked") / name)


def rank_by_proxy(out, run_dir: str | None = None) -> list[dict]:
    """Rank candidate crystals without an ML potential, by the bond-valence global instability index (GII, v.u.;
    :mod:`dpcdvae.eval.plausibility`), lowest first: how far each site's bond-valence sum is from its guessed
    oxidation state. Separates, e.g., the real SrTiO3 perovskite (0.29 v.u.) from the cell with Sr and Ti exchanged
    (4.13 v.u.). Only valid candidates (paper's validity) are ranked; a candidate whose GII cannot be computed
    (element-only crystals such as carbon, no oxidation-state guess) gets ``rank`` None and the reason in ``error``.

    ``run_dir``: writes ``ranking.json`` (``rank_by: "gii"``, ``basis``: one sentence, ``units``, ``candidates``)
    and ``ranked/NN_<id>.cif``. Returns one dict per candidate, ranked ones first: ``id``, ``rank``, ``gii``,
    ``formula``, ``valid``, ``error``."""
    from .eval.plausibility import GII_BASIS, GII_UNITS, global_instability_index

    valid = out.valid_mask
    rows = {}
    for i in range(len(out)):
        s = out.structures[i]
        rows[i] = {"id": str(out.ids[i]), "rank": None, "gii": None,
                   "formula": s.composition.reduced_formula if s is not None else None, "valid": bool(valid[i]),
                   "error": None if valid[i] else "not valid: not ranked"}
        if valid[i]:
            gii, why = global_instability_index(s)
            rows[i].update(gii=None if gii is None else round(float(gii), 4), error=why)
    ranked, table = _rank_rows(rows, "gii", len(out))
    if run_dir is not None:
        d = Path(run_dir)
        _write_ranked_cifs(rows, ranked, out.structures, d)
        basis = GII_BASIS if ranked else ("no ranking: " + (table[0]["error"] if table and table[0]["error"]
                                                             else "no valid candidate") + "; " + GII_BASIS)
        atomic_write_text(d / "ranking.json", strict_json_dumps(
            {"rank_by": "gii", "basis": basis, "units": GII_UNITS, "n_ranked": len(ranked), "candidates": table},
            indent=1))
    return table
