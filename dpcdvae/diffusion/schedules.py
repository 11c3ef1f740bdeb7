"""Noise (beta) schedules for the DDPM on fractional coordinates.

All schedules return ``betas`` as a float64 tensor of shape ``[T]``. Index convention (shared with
:class:`dpcdvae.diffusion.ddpm.DDPMScheduler`): the diffusion step ``t`` runs over the integers ``1..T`` and
``beta_t = betas[t - 1]``; ``alpha_t = 1 - beta_t`` and ``abar_t = prod_{i <= t} alpha_i`` (``abar_0 = 1``).

Schedules
---------
``sigmoid``
    The DP-CDVAE published code: ``beta_i = 1e-10 + 0.01 * logistic(x_i)`` with ``x = linspace(-10, 6, T)``
    (the same end points for every ``T``). For ``T = 1000``, ``sqrt(abar_T) ~= 0.152``: the forward process
    does *not* reach pure noise (the signal keeps about 15 % of its amplitude at the last step).
``linear``
    Ho et al. (2020): ``linspace(1e-4, 0.02, T)`` (end points kept for every ``T``).
``cosine``
    Nichol & Dhariwal (2021): ``abar(t) = f(t) / f(0)``, ``f(t) = cos^2(((t / T) + s) / (1 + s) * pi / 2)``,
    ``s = 0.008``; ``beta_t = min(1 - abar(t) / abar(t - 1), 0.999)``.
"""
from __future__ import annotations

import math

import torch

__all__ = ["make_betas", "sigmoid_betas", "linear_betas", "cosine_betas", "BETA_SCHEDULES"]


def sigmoid_betas(T: int = 1000, start: float = -10.0, end: float = 6.0, beta_min: float = 1e-10,
                  beta_scale: float = 0.01) -> torch.Tensor:
    """The published code's sigmoid schedule: ``beta_i = beta_min + beta_scale * logistic(x_i)``,
    ``x = linspace(start, end, T)``. Returns float64 ``[T]``."""
    x = torch.linspace(start, end, T, dtype=torch.float64)
    return beta_min + beta_scale * torch.sigmoid(x)


def linear_betas(T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """Linear schedule of Ho et al. (2020), ``beta`` from ``beta_start`` to ``beta_end``. float64 ``[T]``."""
    return torch.linspace(beta_start, beta_end, T, dtype=torch.float64)


def cosine_betas(T: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Cosine schedule of Nichol & Dhariwal (2021), betas clipped at ``max_beta``. float64 ``[T]``."""
    steps = torch.arange(T + 1, dtype=torch.float64) / T
    f = torch.cos((steps + s) / (1.0 + s) * math.pi / 2.0) ** 2
    abar = f / f[0]
    betas = 1.0 - abar[1:] / abar[:-1]
    return betas.clamp(min=0.0, max=max_beta)


BETA_SCHEDULES = {"sigmoid": sigmoid_betas, "linear": linear_betas, "cosine": cosine_betas}


def make_betas(kind: str, T: int = 1000) -> torch.Tensor:
    """Betas of schedule ``kind`` (``'sigmoid'``, ``'linear'`` or ``'cosine'``) for ``T`` steps.

    Returns a float64 tensor ``[T]`` with ``beta_t = betas[t - 1]`` for ``t = 1..T``.
    """
    if T < 1:
        raise ValueError(f"T must be >= 1, got {T}")
    try:
        fn = BETA_SCHEDULES[kind]
    except KeyError:
        raise ValueError(f"unknown beta schedule {kind!r}; choose one of {sorted(BETA_SCHEDULES)}") from None
    betas = fn(T)
    if not bool(((betas > 0) & (betas < 1)).all()):
        raise ValueError(f"schedule {kind!r} produced betas outside (0, 1)")
    return betas
