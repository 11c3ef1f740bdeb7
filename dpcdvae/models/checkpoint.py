"""Loading a trained model: a Lightning checkpoint written by :func:`dpcdvae.train.train`, or a model shipped with
the package (``"pretrained:<name>"``); converting a trusted foreign checkpoint into one that loads without running
code (:func:`convert_checkpoint`, ``dpcdvae convert IN OUT``).

Every checkpoint is read with ``torch.load(weights_only=True)`` (:func:`~dpcdvae.models.safeload.load_weights_only`):
a file whose pickle names anything but tensors and plain data is refused, never executed."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from ..utils.fileio import atomic_open
from ..config import Config
from ..data.scalers import LatticeScaler
from ..utils.errors import CheckpointError
from .pretrained import is_pretrained, load_pretrained
from .registry import build_model
from .safeload import _DROP, _same_file, load_weights_only, to_plain

__all__ = ["load_model", "convert_checkpoint"]


def load_model(checkpoint: str | os.PathLike, map_location: str = "cpu", ema: bool = True):
    """Load a trained model (plain ``nn.Module`` in eval mode) from a checkpoint written by :func:`train`.

    Uses the EMA weights when the run had EMA and ``ema=True``. ``model.training_data`` says what the run trained on
    (dataset, split, elements, cell sizes, max_atoms; :mod:`dpcdvae.models.scope`), None when unknown. ``"pretrained:<name>"`` loads a model shipped with
    the package (:func:`dpcdvae.models.pretrained.load_pretrained`). The file is read with
    ``torch.load(weights_only=True)``: one that needs full unpickling raises :class:`CheckpointError` (one line:
    why, and ``dpcdvae convert`` for a file the user trusts) without running anything stored in it.
    """
    if is_pretrained(checkpoint):
        return load_pretrained(checkpoint, map_location=map_location)

    if not Path(checkpoint).is_file():
        raise CheckpointError(f"checkpoint {checkpoint} does not exist (a shipped model is `pretrained:<name>`; "
                              f"`dpcdvae pretrained list`)")
    ck = load_weights_only(checkpoint, map_location=map_location)
    hp = ck.get("hyper_parameters", {}) if isinstance(ck, dict) else {}
    if "config" not in hp:
        raise CheckpointError(f"{checkpoint}: not a dpcdvae checkpoint (no config in hyper_parameters)")
    cfg = Config.from_dict(hp["config"])
    scaler_state = hp.get("lattice_scaler_state")
    model = build_model(cfg, LatticeScaler.from_state_dict(scaler_state) if scaler_state else None)
    sd = ck["state_dict"]
    prefix = "ema.module." if ema and any(k.startswith("ema.module.") for k in sd) else "model."
    own = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    model.load_state_dict(own)
    model.eval()
    model.config = cfg
    model.training_data = _training_data(hp, checkpoint)
    return model


def _training_data(hp: dict, checkpoint) -> dict | None:
    """What the run trained on (:mod:`dpcdvae.models.scope`): ``hyper_parameters["training_data"]`` of a checkpoint
    written since issue 28, else what the run folder's ``config.json`` says (an older run: its dataset only)."""
    from .scope import _config_json_dataset

    td = hp.get("training_data")
    if isinstance(td, dict) and td.get("dataset"):
        return dict(td)
    meta = _config_json_dataset(checkpoint)
    if meta is None:
        return None
    if isinstance(meta.get("training_data"), dict):
        return dict(meta["training_data"])
    return {"dataset": meta["dataset"], "train_split": meta.get("train_split")} if meta.get("dataset") else None


def _is_training_checkpoint(ck) -> bool:
    return isinstance(ck, dict) and isinstance(ck.get("state_dict"), dict) \
        and isinstance(ck.get("hyper_parameters"), dict) and isinstance(ck["hyper_parameters"].get("config"), dict)


def _is_shipped_file(ck) -> bool:
    return isinstance(ck, dict) and "format" in ck and isinstance(ck.get("state_dict"), dict) \
        and isinstance(ck.get("config"), dict)


def convert_checkpoint(src: str | os.PathLike, dst: str | os.PathLike, log=None) -> dict:
    """Write a weights-only copy ``dst`` of the dpcdvae checkpoint (or shipped-weights file) ``src``.

    **This runs code stored in ``src``** when it needs full unpickling: it is then read with
    ``torch.load(weights_only=False)`` (said through ``log``, a callable taking one line, when given), so call it
    only on a file whose author you trust (``dpcdvae convert IN OUT`` is the explicit request); a file that loads
    weights-only already is read that way and copied. What was read is reduced to
    tensors and plain data (:func:`~dpcdvae.models.safeload.to_plain`: the config becomes a plain dict, anything
    else that is not plain data is left out and listed), written atomically to ``dst`` and checked: ``dst`` must
    load with ``torch.load(weights_only=True)`` and, for a training checkpoint, through :func:`load_model`;
    otherwise ``dst`` is removed and :class:`CheckpointError` is raised. ``dst`` must not exist yet.

    Returns ``{"in", "out", "kind" ("training checkpoint" | "shipped weights"), "was_weights_only", "dropped"}``.
    """
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise CheckpointError(f"convert: {src} does not exist")
    if dst.exists():
        raise CheckpointError(f"convert: {dst} exists already{' (it is the input)' if _same_file(src, dst) else ''}; "
                              f"name a new file")
    try:
        raw, was_safe = load_weights_only(src), True  # nothing to run: a plain copy
    except CheckpointError:
        was_safe = False
    if not was_safe:
        if log is not None:
            log(f"[dpcdvae] reading {src} with full unpickling: this runs code stored in it (you asked for it)")
        try:
            raw = torch.load(src, map_location="cpu", weights_only=False)  # the explicit request of a trusting user
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            raise CheckpointError(f"convert: {src} cannot be read ({type(exc).__name__}: {first})") from None
    dropped: list = []
    plain = to_plain(raw, "", dropped)
    if plain is _DROP:
        plain = None
    if _is_training_checkpoint(plain):
        kind = "training checkpoint"
    elif _is_shipped_file(plain):
        kind = "shipped weights"
    else:
        raise CheckpointError(f"convert: {src} is not a dpcdvae checkpoint (no state_dict with a config in "
                              f"hyper_parameters); nothing written")
    with atomic_open(dst, "wb") as fh:
        torch.save(plain, fh)
    try:
        load_weights_only(dst)
        if kind == "training checkpoint":
            load_model(dst)
    except Exception as exc:
        dst.unlink(missing_ok=True)
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        raise CheckpointError(f"convert: the converted copy of {src} does not load ({type(exc).__name__}: {first}); "
                              f"nothing written") from None
    return {"in": str(src), "out": str(dst), "kind": kind, "was_weights_only": was_safe, "dropped": dropped}
