"""The model kinds (``model.model`` in a config) and :func:`build_model`, the one place a config becomes a model.

Adding a model kind: a class with the :class:`~dpcdvae.models.dpcdvae.DPCDVAE` interface (``encode``,
``sample_from_latent``, ``reconstruct``, ``generate``, ``supported_samplers``, ``default_sampler``) and one line in
:data:`MODEL_KINDS`.
"""
from __future__ import annotations

from typing import Optional

import torch.nn as nn

from ..config import Config, ModelConfig
from ..data.scalers import LatticeScaler
from .cdvae import CDVAE
from .dpcdvae import DPCDVAE

__all__ = ["MODEL_KINDS", "build_model", "model_class"]

#: ``model.model`` -> class. ``cdvae_fourier`` is the CDVAE baseline with Fourier features of the distances.
MODEL_KINDS: dict[str, type] = {
    "dpcdvae": DPCDVAE,
    "cdvae": CDVAE,
    "cdvae_fourier": CDVAE,
}


def model_class(kind: str) -> type:
    """The class of a model kind (``"dpcdvae"``, ``"cdvae"``, ``"cdvae_fourier"``)."""
    try:
        return MODEL_KINDS[kind]
    except KeyError:
        raise ValueError(f"unknown model {kind!r}; known: {sorted(MODEL_KINDS)}") from None


def build_model(cfg: Config | ModelConfig, lattice_scaler: Optional[LatticeScaler] = None) -> nn.Module:
    """Build the model named by ``cfg.model`` (:data:`MODEL_KINDS`), untrained, from a :class:`Config` or its
    :class:`ModelConfig`; ``lattice_scaler`` maps the lattice head's outputs to A / degrees."""
    mcfg = cfg.model if isinstance(cfg, Config) else cfg
    return model_class(mcfg.model)(mcfg, lattice_scaler)
