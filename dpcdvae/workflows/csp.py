"""The CSP benchmark (DiffCSP's protocol, :func:`csp_match`): for each test crystal, predict structures from its
composition and atom count alone (:func:`dpcdvae.models.csp.predict_structures`) and match them with
``StructureMatcher(stol=0.5, angle_tol=10, ltol=0.3)`` against the true crystal (``dpcdvae csp-match``).

Match rate with 1 sample (the first) and with the best of ``samples`` (a crystal counts when any of its samples
matches; RMS = the smallest over the matching samples). ``rank="chgnet"`` also scores every valid candidate with
CHGNet's static energy per atom (as sampled, no relaxation; the ranking of ``dpcdvae csp --rank chgnet``) and
reports the match rate of each crystal's lowest-energy candidate (``match_rate_chgnet_top1``): does the ranking pick
a matching candidate more often than the first sample does?

Anchors (quoted from the DiffCSP paper, Perov-5, for orientation): CDVAE used as a CSP model 45.31 % (1 sample),
DiffCSP 52.02 % (1 sample) and 98.60 % (20 samples).
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Optional

import torch
from torch_geometric.loader import DataLoader

from ..data import load_split
from ..data.resolve import UnknownDatasetNameError, resolve_dataset
from ..eval.reconstruction import reconstruction_metrics
from ..models import load_model
from ..models.csp import LATENT_MODES, predict_structures
from ..models.pretrained import is_pretrained
from ..structures.crystal import tensors_to_structures
from ..utils.errors import ArgumentError
from .common import check_sampling_args

__all__ = ["csp_match", "FORCED_TYPES", "RANKINGS", "MATCHER"]

#: how the requested types are placed (:func:`dpcdvae.models.csp.predict_structures`)
FORCED_TYPES = ("assign", "fixed")
#: ranking of the candidates whose top-1 match rate is reported
RANKINGS = ("none", "chgnet")
#: the matcher of the protocol, as recorded in the result
MATCHER = "StructureMatcher(stol=0.5, angle_tol=10, ltol=0.3)"


def _check(dataset, limit, samples, latent, forced_types, batch_size, n_workers, rank, ema, checkpoint) -> None:
    """Refuse bad arguments before any work: an :class:`~dpcdvae.utils.errors.ArgumentError` naming the argument."""
    if samples < 1:
        raise ArgumentError("samples", f"{samples}: the number of candidates per crystal must be >= 1")
    if limit is not None and limit < 1:
        raise ArgumentError("limit", f"{limit}: must be >= 1")
    if batch_size < 1:
        raise ArgumentError("batch_size", f"{batch_size}: must be >= 1")
    if n_workers < 1:
        raise ArgumentError("n_workers", f"{n_workers}: must be >= 1")
    if latent not in LATENT_MODES:
        raise ArgumentError("latent", f"{latent!r}: expected {' or '.join(LATENT_MODES)}")
    if forced_types not in FORCED_TYPES:
        raise ArgumentError("forced_types", f"{forced_types!r}: expected {' or '.join(FORCED_TYPES)}")
    if rank not in RANKINGS:
        raise ArgumentError("rank", f"{rank!r}: expected {' or '.join(RANKINGS)}")
    if not ema and isinstance(checkpoint, (str, Path)) and is_pretrained(str(checkpoint)):
        raise ArgumentError("ema", f": {checkpoint} is a shipped model, which holds one set of weights (its card "
                                   f"says which: `dpcdvae pretrained list`)")
    if dataset is None:
        raise ArgumentError("dataset", " is needed")


def csp_match(checkpoint, dataset="perov_5", limit: Optional[int] = None, samples: int = 20,
              latent: str = "search", forced_types: str = "assign", sampler="eq7", steps: Optional[int] = None,
              batch_size: int = 256, seed: int = 0, n_workers: int = 1, rank: str = "none", ema: bool = True,
              root: Optional[str] = None, calculator=None, progress: bool = True) -> dict:
    """The CSP benchmark on the test split of ``dataset`` (the first ``limit`` crystals; default the whole split):
    ``samples`` candidates per crystal, candidate ``k`` drawn with seed ``seed + 1000 k``, each batch of
    ``batch_size`` (see the module docstring). Prints one progress line per candidate round when ``progress``.

    ``checkpoint``: a path, ``"pretrained:<name>"`` or an already loaded DP-CDVAE model; ``ema=False``: a training
    checkpoint's raw weights. ``sampler`` / ``steps``: as :func:`~dpcdvae.workflows.common.check_sampling_args`.
    ``rank``: ``"none"`` or ``"chgnet"`` (``calculator``: a batch predictor to use instead of CHGNet, see
    :func:`~dpcdvae.workflows.rank.rank_candidates`). ``n_workers``: processes of the StructureMatcher step (the
    numbers do not depend on it). A bad argument raises an :class:`~dpcdvae.utils.errors.ArgumentError` naming it,
    before the model is loaded.

    Returns the result as a dict (``dpcdvae csp-match`` prints it as one JSON line): the settings,
    ``match_rate_1`` (%), ``rms_1``, ``validity_1`` (%), ``match_rate_best_<samples>`` (%), ``rms_best_<samples>``,
    with ``rank="chgnet"`` ``match_rate_chgnet_top1`` (%) and ``chgnet_ranked``, ``matcher`` and ``wall_s``."""
    _check(dataset, limit, samples, latent, forced_types, batch_size, n_workers, rank, ema, checkpoint)
    try:
        data = resolve_dataset(dataset, root)  # once: the test split is read through this handle
    except UnknownDatasetNameError as exc:
        raise ArgumentError("dataset", f"{dataset}: {exc}") from None
    predictor = None
    if rank == "chgnet":
        from .rank import rank_candidates

        if calculator is None:
            from ..eval.relax import CHGNetBatchPredictor

            calculator = CHGNetBatchPredictor(batch_size=128)
        predictor = calculator

    t0 = time.time()
    if isinstance(checkpoint, torch.nn.Module):
        model, label = checkpoint, "(a loaded model)"
    else:
        model, label = load_model(checkpoint, ema=ema), str(checkpoint)
    if getattr(model.cfg, "model", "dpcdvae") != "dpcdvae":
        raise ArgumentError("checkpoint", f"{label}: CSP mode needs a DP-CDVAE model (this is {model.cfg.model})")
    smp = check_sampling_args(model, sampler, steps)  # the name resolved once for every candidate round
    ds = load_split(data, "test", max_atoms=model.cfg.max_atoms, graph="none", limit=limit, progress=False)
    targets = []
    for batch in DataLoader(ds, batch_size=1024):
        targets += tensors_to_structures(batch.frac_coords, batch.atom_types, batch.lengths, batch.angles,
                                         batch.num_atoms)
    formulas = [t.composition.formula for t in targets]
    sizes = [len(t) for t in targets]
    best = [math.inf] * len(targets)
    first = None
    low_e = [math.inf] * len(targets)  # lowest CHGNet energy per atom so far, and whether that candidate matched
    low_matched = [False] * len(targets)
    for k in range(samples):
        out = predict_structures(model, formulas, sizes, latent=latent, sampler=smp, steps=steps,
                                 seed=seed + 1000 * k, batch_size=batch_size, forced_types=forced_types)
        m = reconstruction_metrics(out.structures, targets, n_workers=n_workers, progress=False)
        for i, p in enumerate(m["per_structure"]):
            if p["matched"] and p["rms_dist"] is not None:
                best[i] = min(best[i], float(p["rms_dist"]))
        if first is None:
            first = m
        if predictor is not None:  # the ranking of `dpcdvae csp --rank chgnet`, one row per candidate
            index = {str(sid): i for i, sid in enumerate(out.ids)}
            for row in rank_candidates(out, calculator=predictor, progress=False):
                i, e = index[row["id"]], row["energy_per_atom"]
                if e is not None and e < low_e[i]:
                    low_e[i], low_matched[i] = e, bool(m["per_structure"][i]["matched"])
        if progress:
            n_best = sum(b < math.inf for b in best)
            top1 = (f", CHGNet top-1 of {k + 1} {100 * sum(low_matched) / len(targets):.2f} %"
                    if predictor is not None else "")
            print(f"sample {k + 1}/{samples}: match rate this sample {m['match_rate']:.2f} %, best of {k + 1} "
                  f"{100 * n_best / len(targets):.2f} %{top1} ({time.time() - t0:.0f} s)", flush=True)
    matched = [b for b in best if b < math.inf]
    return {
        "checkpoint": label, "weights": "ema (when the run had EMA)" if ema else "raw",
        "dataset": data.name, "n_targets": len(targets), "samples": samples,
        "latent": latent, "forced_types": forced_types, "sampler": smp.label, "steps": steps, "seed": seed,
        "match_rate_1": first["match_rate"], "rms_1": None if math.isnan(first["delta_rms"]) else first["delta_rms"],
        "validity_1": first["n_valid"] / len(targets) * 100,
        f"match_rate_best_{samples}": 100 * len(matched) / len(targets),
        f"rms_best_{samples}": sum(matched) / len(matched) if matched else None,
        **({"match_rate_chgnet_top1": 100 * sum(low_matched) / len(targets),
            "chgnet_ranked": sum(e < math.inf for e in low_e)} if predictor is not None else {}),
        "matcher": MATCHER, "wall_s": round(time.time() - t0, 1)}
