"""What the jobs share: the sampler a model runs with (:func:`check_sampling_args`, :func:`sampler_for`), the dataset
a checkpoint was trained on (:func:`checkpoint_dataset`, :func:`checkpoint_training_dataset`) and a split through the
encoder (:func:`encode_posterior`, for the property head and the latent explorer)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import torch
from torch_geometric.loader import DataLoader

from ..data import load_split
from ..diffusion.samplers import SAMPLERS, Sampler
from ..models.pretrained import is_pretrained
from ..utils.errors import ArgumentError, SamplerError, mention

__all__ = ["check_sampling_args", "sampler_for", "checkpoint_dataset", "checkpoint_training_dataset",
           "encode_posterior"]


def check_sampling_args(model, sampler, steps: Optional[int]) -> Sampler:
    """The sampler object to use with ``model``: ``sampler`` is a name (the command line's ``--sampler``; the
    model's own default when None), resolved here once, or a sampler object, returned as it is. An
    :class:`~dpcdvae.utils.errors.ArgumentError` names the argument (``sampler``, ``steps``; the command line prints
    the flag) when the sampler does not fit the model or ``steps`` would be ignored. Record
    ``.label`` (the name as asked for) where a name is written down."""
    try:
        smp = model.resolve_sampler(sampler)
    except SamplerError as exc:
        if model.sampler_family == "langevin":
            raise ArgumentError("sampler", f"{sampler}: this checkpoint is a {model.cfg.model} model, which samples "
                                           f"with annealed Langevin only ({mention('sampler')} langevin, "
                                           f"{mention('steps')} = iterations per noise level)") from exc
        raise ArgumentError("sampler", f"{sampler}: this checkpoint is a DP-CDVAE model; use "
                                       f"{', '.join(model.supported_samplers)}") from exc
    if steps is not None:
        if steps < 1:
            raise ArgumentError("steps", f"{steps}: must be >= 1")
        if smp.family == "ddpm" and not smp.strided:
            strided = [n for n, c in SAMPLERS.items() if c.family == "ddpm" and c.strided]
            raise ArgumentError("steps", f"{steps}: {mention('sampler')} {smp.label} always runs all "
                                         f"{model.cfg.timesteps} steps; use {mention('sampler')} "
                                         f"{' or '.join(strided)} for fewer")
        if smp.family == "ddpm" and steps > model.cfg.timesteps:
            raise ArgumentError("steps", f"{steps}: at most T = {model.cfg.timesteps}")
    return smp


def sampler_for(model, sampler, steps: Optional[int] = None) -> tuple[Sampler, Optional[int], str]:
    """For a study over several model kinds (Table III): ``(sampler object, steps, note)`` for ``model``.
    ``sampler`` (a name or an object) is used when the model runs it; a model that does not (a CDVAE baseline asked
    for ``eq7``) uses its own default with its default number of steps, and ``note`` says so (print it; empty when
    nothing was replaced)."""
    runs = (sampler.family == model.sampler_family if isinstance(sampler, Sampler)
            else sampler is None or sampler in model.supported_samplers)
    if runs:
        return model.resolve_sampler(sampler), steps, ""
    own = model.default_sampler
    asked = sampler.label if isinstance(sampler, Sampler) else sampler
    return model.resolve_sampler(own), None, (f"{type(model).__name__} does not run {asked!r}: it samples with "
                                              f"its own {own!r} (default steps)")


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
    from ..models.pretrained import pretrained_card
    from ..models.scope import _config_json_dataset

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


@torch.no_grad()
def encode_posterior(model, dataset, split: str, root: Optional[str] = None, limit: Optional[int] = None,
                 batch_size: int = 512, progress: bool = False) -> dict:
    """Every crystal of a split through ``model``'s encoder: ``{"mu", "logvar"}`` (``[n, L]`` float tensors, the
    posterior), ``"y"`` (``[n]`` the dataset's property column, NaN where absent), ``"ids"`` (material ids) and the
    loaded ``dataset``. Used by the property head (:mod:`dpcdvae.workflows.optimize`) and the latent explorer
    (:mod:`dpcdvae.workflows.latent`). ``dataset``: a name (resolved once, with ``root``) or a
    :class:`~dpcdvae.data.resolve.DatasetHandle`."""
    ds = load_split(dataset, split, root=root, max_atoms=model.cfg.max_atoms,
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
