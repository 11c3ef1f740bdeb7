"""Coordinate-target helpers of DP-CDVAE: the coordinate loss of Eq. 10 (``model.coord_loss``), the noise
target relative to the wrapped input (``model.eps_target``), the Eq. 7-consistency training examples
(``model.eq7_consistency_*``) and the check of those options when the model is built.

Used by :class:`~dpcdvae.models.dpcdvae.DPCDVAE`; the names stay importable from :mod:`dpcdvae.models.dpcdvae`.
Shapes: ``N`` atoms, ``B`` crystals; fractional coordinates and noise are unitless.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from ..config import ModelConfig
from ..diffusion.ddpm import DDPMScheduler
from ..structures.crystal import wrap

__all__ = ["COORD_LOSSES", "EPS_TARGETS", "coord_loss", "wrapped_eps_target", "check_coord_options",
           "eq7_consistency_inputs"]


def _segment_mean(x: torch.Tensor, batch: torch.Tensor, num_graphs: int) -> torch.Tensor:
    out = torch.zeros(num_graphs, x.shape[-1], dtype=x.dtype, device=x.device).index_add_(0, batch, x)
    cnt = torch.bincount(batch, minlength=num_graphs).clamp(min=1).to(x.dtype)
    return out / cnt[:, None]


COORD_LOSSES = ("mean", "code")


def coord_loss(eps_pred: torch.Tensor, eps: torch.Tensor, atom_batch: torch.Tensor, num_graphs: int,
               reduction: str = "mean") -> torch.Tensor:
    """The coordinate loss of Eq. 10, a scalar, from the predicted and true noise ``[N, 3]`` (fractional, unitless).

    ``reduction``:
      * ``"mean"`` (ours): the mean of the squared error over the ``N x 3`` entries; every atom weighs the same,
        so a crystal weighs in proportion to its atom count.
      * ``"code"`` (the published code): the squared error summed over x, y, z, averaged over the atoms of each
        crystal, then over the crystals; every crystal weighs the same, and the scale is 3x that of ``"mean"``
        when all crystals have the same atom count.
    Crystals without atoms do not count (``"code"``).
    """
    if reduction == "mean":
        return F.mse_loss(eps_pred, eps)
    if reduction == "code":
        per_atom = ((eps_pred - eps) ** 2).sum(-1, keepdim=True)
        counts = torch.bincount(atom_batch, minlength=num_graphs)
        per_crystal = _segment_mean(per_atom, atom_batch, num_graphs)[:, 0]
        return per_crystal[counts > 0].mean()
    raise ValueError(f"model.coord_loss must be one of {COORD_LOSSES}, got {reduction!r}")


EPS_TARGETS = ("unwrapped", "wrapped")


def wrapped_eps_target(scheduler: DDPMScheduler, eps: torch.Tensor, x_t: torch.Tensor, frac_t: torch.Tensor,
                       t_atoms: torch.Tensor) -> torch.Tensor:
    """The noise relative to the wrapped input (ours): ``eps_w = eps + m (1 - sqrt(abar_t)) / sqrt(1 - abar_t)``.

    ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps`` (Eq. 2, unwrapped) and ``frac_t = pi(x_t) = x_t + m`` with an
    integer ``m`` per entry. ``eps_w = (pi(x_t) - sqrt(abar_t) (x0 + m)) / sqrt(1 - abar_t)``, so Eq. 7's estimate
    ``(pi(x_t) - sqrt(1 - abar_t) eps_w) / sqrt(abar_t)`` is exactly ``x0 + m``, i.e. ``x0`` modulo 1. With the
    unwrapped ``eps`` (the paper's target) it is ``x0 + m / sqrt(abar_t)``: every atom whose noisy position crossed
    the cell boundary is put ``m (1 / sqrt(abar_t) - 1)`` off its image (0.004 at t = 350, 0.04 at t = 500, 0.17 at
    t = 600 for the sigmoid schedule), a displacement a network that fits the paper's target well reproduces at every
    Eq. 7 call.

    Args:
        eps: [N, 3] the noise drawn in Eq. 2. x_t: [N, 3] the unwrapped noisy coordinates. frac_t: [N, 3] their wrap.
        t_atoms: [N] step of each atom (1..T).
    Returns eps_w [N, 3] (``eps`` itself where no wrap happened).
    """
    m = torch.round(frac_t - x_t)
    abar = scheduler.alpha_bar(t_atoms.cpu()).to(eps)[:, None]
    return eps + m * (1.0 - abar.sqrt()) / (1.0 - abar).sqrt()


def check_coord_options(cfg: ModelConfig) -> None:
    """A ``ValueError`` naming the key when ``model.coord_loss`` / ``model.eps_frame`` / ``model.eq7_consistency_*``
    hold a value the model cannot use (checked when the model is built, before any training step)."""
    if getattr(cfg, "coord_loss", "mean") not in COORD_LOSSES:
        raise ValueError(f"model.coord_loss must be one of {COORD_LOSSES}, got {cfg.coord_loss!r}")
    if getattr(cfg, "eps_frame", "fractional") not in ("fractional", "code"):
        raise ValueError(f"model.eps_frame must be 'fractional' or 'code', got {cfg.eps_frame!r}")
    if getattr(cfg, "eps_target", "unwrapped") not in EPS_TARGETS:
        raise ValueError(f"model.eps_target must be one of {EPS_TARGETS}, got {cfg.eps_target!r}")
    prob = getattr(cfg, "eq7_consistency_prob", 0.0)
    try:
        prob = float(prob)
        lo, hi = (int(v) for v in getattr(cfg, "eq7_consistency_t", (1, cfg.timesteps)))
        c_lo, c_hi = (float(v) for v in getattr(cfg, "eq7_consistency_noise", (1.0, 1.0)))
    except (TypeError, ValueError):
        raise ValueError("model.eq7_consistency_prob must be a number, model.eq7_consistency_t two integers and "
                         "model.eq7_consistency_noise two numbers, e.g. [300, 650] and [1.0, 2.0]") from None
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"model.eq7_consistency_prob must lie in [0, 1], got {prob}")
    if prob > 0.0 and not 1 <= lo <= hi <= cfg.timesteps:
        raise ValueError(f"model.eq7_consistency_t must be [lo, hi] with 1 <= lo <= hi <= {cfg.timesteps}, "
                         f"got {list(cfg.eq7_consistency_t)}")
    if not 0.0 <= c_lo <= c_hi:
        raise ValueError(f"model.eq7_consistency_noise must be [lo, hi] with 0 <= lo <= hi, "
                         f"got {list(cfg.eq7_consistency_noise)}")


def eq7_consistency_inputs(scheduler: DDPMScheduler, x0: torch.Tensor, frac_t: torch.Tensor, eps: torch.Tensor,
                           t: torch.Tensor, atom_batch: torch.Tensor, prob: float, t_range: Sequence[int],
                           noise_range: Sequence[float], generator=None, post=None):
    """Eq. 7-consistency augmentation (ours, not in the paper): training examples from the regime Eq. 7 samples in.

    Eq. 7 calls the network at step ``t`` on ``pi(x0_hat + sigma_{t+1} eps')``, an almost clean crystal, while
    Eq. 2 trains it on ``sqrt(abar_t) x0 + sqrt(1 - abar_t) eps``, 7-10x noisier (``sqrt(1 - abar_t) / sigma_t``).
    For each crystal, with probability ``prob``, this draws ``t ~ U{t_range[0]..t_range[1]}``, ``c ~
    U[noise_range]`` and replaces the input by ``r = pi(x0 + c sigma_t eps')`` and the target noise by

        eps* = (r - sqrt(abar_t) x0') / sqrt(1 - abar_t),   x0' = r - c sigma_t eps'   (the image of x0 near r)

    so that Eq. 7's clean-sample estimate ``(r - sqrt(1 - abar_t) eps*) / sqrt(abar_t)`` is exactly ``x0'``,
    i.e. ``x0`` modulo 1: the true crystal becomes a fixed point of the Eq. 7 map the network is trained for.

    Args:
        scheduler: the model's :class:`DDPMScheduler` (``abar_t``, ``sigma_t``).
        x0: [N, 3] clean fractional coordinates (recentred when the model recentres).
        frac_t, eps, t: the ordinary training example: wrapped input [N, 3], target noise [N, 3], step per crystal
            [B] (long, 1..T). Entries of crystals not drawn are returned unchanged.
        atom_batch: [N] crystal index of each atom.
        prob: per-crystal probability in [0, 1].
        t_range: ``(lo, hi)``, inclusive, within 1..T. noise_range: ``(c_lo, c_hi)``, c >= 0.
        post: applied to the noise ``eps'`` before use (e.g. remove the per-crystal mean, as the sampler does).
    Returns new ``(frac_t, eps, t)``.
    """
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"model.eq7_consistency_prob must lie in [0, 1], got {prob}")
    lo, hi = (int(v) for v in t_range)
    T = scheduler.num_train_timesteps
    if not 1 <= lo <= hi <= T:
        raise ValueError(f"model.eq7_consistency_t must be [lo, hi] with 1 <= lo <= hi <= {T}, got {list(t_range)}")
    c_lo, c_hi = (float(v) for v in noise_range)
    if not 0.0 <= c_lo <= c_hi:
        raise ValueError(f"model.eq7_consistency_noise must be [lo, hi] with 0 <= lo <= hi, got {list(noise_range)}")
    B, dev = t.shape[0], t.device
    pick = torch.rand(B, device=dev, generator=generator) < prob
    if not bool(pick.any()):
        return frac_t, eps, t
    t_new = torch.where(pick, torch.randint(lo, hi + 1, (B,), device=dev, generator=generator), t)
    c = c_lo + (c_hi - c_lo) * torch.rand(B, device=dev, generator=generator, dtype=x0.dtype)
    noise = torch.randn(x0.shape, device=dev, dtype=x0.dtype, generator=generator)
    if post is not None:
        noise = post(noise)
    ta = t_new[atom_batch]
    abar = scheduler.alpha_bar(ta.cpu()).to(x0)[:, None]
    sigma = scheduler.posterior_std(ta.cpu()).to(x0)[:, None]
    d = c[atom_batch][:, None] * sigma * noise
    r = wrap(x0 + d)
    target = (r - abar.sqrt() * (r - d)) / (1.0 - abar).sqrt()
    sel = pick[atom_batch][:, None]
    return torch.where(sel, r, frac_t), torch.where(sel, target, eps), t_new
