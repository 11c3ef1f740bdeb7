"""Loading a trained model: a Lightning checkpoint written by :func:`dpcdvae.train.train`, or a model shipped with
the package (``"pretrained:<name>"``)."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from ..config import Config
from ..data.scalers import LatticeScaler
from ..errors import CheckpointError
from .pretrained import is_pretrained, load_pretrained
from .registry import build_model

__all__ = ["load_model"]


def load_model(checkpoint: str | os.PathLike, map_location: str = "cpu", ema: bool = True):
    """Load a trained model (plain ``nn.Module`` in eval mode) from a checkpoint written by :func:`train`.

    Uses the EMA weights when the run had EMA and ``ema=True``. ``"pretrained:<name>"`` loads a model shipped with
    the package (:func:`dpcdvae.models.pretrained.load_pretrained`).
    """
    if is_pretrained(checkpoint):
        return load_pretrained(checkpoint, map_location=map_location)

    if not Path(checkpoint).is_file():
        raise CheckpointError(f"checkpoint {checkpoint} does not exist (a shipped model is `pretrained:<name>`; "
                              f"`dpcdvae pretrained list`)")
    try:
        ck = torch.load(checkpoint, map_location=map_location, weights_only=False)
    except Exception as exc:  # truncated / not a torch file
        raise CheckpointError(f"checkpoint {checkpoint} cannot be read ({type(exc).__name__}: {exc}); is the file "
                              f"complete?") from None
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
    return model
