"""Annealed Langevin dynamics: the coordinate sampler of the CDVAE baseline (Xie et al. 2022; Song & Ermon 2019).

CDVAE perturbs *Cartesian* positions with Gaussian noise of scale ``sigma`` (Angstrom), trains the decoder to
predict the score of the perturbed positions, and samples by Langevin dynamics at a decreasing geometric
sequence of noise levels. The sampler below is generic: the state ``x`` is whatever the score refers to
(Cartesian positions for CDVAE); the conversion back to fractional coordinates and the periodic wrap are the
caller's ``post_step`` hook.

Noise levels: ``sigmas[i] = sigma_begin * (sigma_end / sigma_begin) ** (i / (L - 1))``, ``i = 0..L-1`` (10 -> 0.01
over L = 50 levels). At level ``i`` the step size is ``h_i = step_lr * (sigmas[i] / sigmas[-1])**2`` and each of
``steps_per_level`` iterations does::

    x <- x + h_i * score_fn(x, i) + sqrt(2 h_i) * z,    z ~ N(0, I)

Training (denoising score matching, as CDVAE): ``x_noisy = x0 + sigma * noise``; the score of the perturbation
kernel is ``(x0 - x_noisy) / sigma^2 = -noise / sigma`` (:meth:`AnnealedLangevin.score_target`). The loss
``0.5 * sigma^2 * |s_theta(x_noisy, sigma) - target|^2`` (:meth:`AnnealedLangevin.score_loss`) weights each level
by ``sigma^2`` so that every level contributes O(1) (``sigma * target = -noise`` has unit variance). On a periodic
cell the displacement ``x0 - x_noisy`` should be the minimum-image one (CDVAE computes it in fractional
coordinates and converts it to Cartesian); :meth:`score_target_from_displacement` takes such a displacement.
"""
from __future__ import annotations

import math
from typing import Callable, Optional, Union

import torch

from .samplers import LangevinSampler

__all__ = ["AnnealedLangevin"]

TimeLike = Union[int, torch.Tensor]
_STEP = LangevinSampler()  # x <- x + h_i score + sqrt(2 h_i) z


class AnnealedLangevin:
    """CDVAE's annealed Langevin sampler and its score-matching helpers.

    Parameters
    ----------
    sigma_begin, sigma_end: largest and smallest noise scale (Angstrom for Cartesian positions).
    num_levels: number of noise levels ``L`` (geometric sequence, ``sigmas[0] = sigma_begin``).
    steps_per_level: Langevin iterations at each level (CDVAE: 100).
    step_lr: base step size ``epsilon``; level ``i`` uses ``step_lr * (sigmas[i] / sigmas[-1])**2``.
    min_sigma: levels with ``sigma < min_sigma`` are skipped when sampling (CDVAE's option; default 0: none).

    Note: with the CDVAE defaults ``step_lr / sigma_end^2 = 1``, so for the score of a point mass blurred with
    ``sigma`` (``(x0 - x) / sigma^2``) each iteration lands exactly on ``x0 + sqrt(2 h) z``: the final samples
    keep a Gaussian jitter of standard deviation ``sqrt(2) * sigma_end`` (0.014 A per Cartesian component).
    """

    def __init__(self, sigma_begin: float = 10.0, sigma_end: float = 0.01, num_levels: int = 50,
                 steps_per_level: int = 100, step_lr: float = 1e-4, min_sigma: float = 0.0):
        if not (sigma_begin > 0 and sigma_end > 0 and num_levels >= 1):
            raise ValueError("sigma_begin, sigma_end must be > 0 and num_levels >= 1")
        self.sigma_begin, self.sigma_end = float(sigma_begin), float(sigma_end)
        self.num_levels, self.steps_per_level = int(num_levels), int(steps_per_level)
        self.step_lr, self.min_sigma = float(step_lr), float(min_sigma)
        if self.num_levels == 1:
            self.sigmas = torch.tensor([self.sigma_begin], dtype=torch.float64)
        else:
            self.sigmas = torch.exp(torch.linspace(math.log(self.sigma_begin), math.log(self.sigma_end),
                                                   self.num_levels, dtype=torch.float64))

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(sigma_begin={self.sigma_begin}, sigma_end={self.sigma_end}, "
                f"num_levels={self.num_levels}, steps_per_level={self.steps_per_level}, step_lr={self.step_lr})")

    def step_size(self, level: int) -> float:
        """``h_i = step_lr * (sigmas[i] / sigmas[-1])**2`` for level ``i``."""
        return self.step_lr * float(self.sigmas[level] / self.sigmas[-1]) ** 2

    def _sigma(self, sigma_index: TimeLike, x: torch.Tensor) -> torch.Tensor:
        idx = torch.as_tensor(sigma_index, dtype=torch.long, device="cpu")
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= self.num_levels):
            raise ValueError(f"sigma_index must lie in 0..{self.num_levels - 1}")
        s = self.sigmas[idx]
        while s.ndim < x.ndim:
            s = s.unsqueeze(-1)
        return s.to(device=x.device, dtype=x.dtype)

    # ------------------------------------------------------------------ training helpers
    def add_noise(self, x0: torch.Tensor, sigma_index: TimeLike, noise: torch.Tensor) -> torch.Tensor:
        """``x0 + sigma * noise``; ``sigma_index`` an int or long tensor ``[]``/``[N]`` (per row, e.g.
        ``level_per_crystal[batch]``). ``x0``, ``noise``: ``[N, ...]`` (Angstrom for Cartesian positions)."""
        return x0 + self._sigma(sigma_index, x0) * noise

    def score_target(self, noise: torch.Tensor, sigma_index: TimeLike) -> torch.Tensor:
        """Denoising score-matching target ``-noise / sigma`` (units 1/Angstrom), shape of ``noise``."""
        return -noise / self._sigma(sigma_index, noise)

    def score_target_from_displacement(self, displacement: torch.Tensor, sigma_index: TimeLike) -> torch.Tensor:
        """Target ``(x0 - x_noisy) / sigma^2`` from a (minimum-image) displacement ``x0 - x_noisy``."""
        return displacement / self._sigma(sigma_index, displacement) ** 2

    def score_loss(self, pred_score: torch.Tensor, target: torch.Tensor, sigma_index: TimeLike,
                   reduction: str = "mean") -> torch.Tensor:
        """``0.5 * sigma^2 * |pred - target|^2`` summed over the last dimension, per row; ``'mean'``/``'sum'``/
        ``'none'`` over rows. The ``sigma^2`` weight makes every noise level contribute O(1)."""
        per = 0.5 * ((pred_score - target) ** 2).sum(-1)
        per = per * self._sigma(sigma_index, per) ** 2
        if reduction == "mean":
            return per.mean()
        if reduction == "sum":
            return per.sum()
        if reduction == "none":
            return per
        raise ValueError(f"unknown reduction {reduction!r}")

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample(self, x_init: torch.Tensor, score_fn: Callable[[torch.Tensor, int], torch.Tensor],
               generator: Optional[torch.Generator] = None,
               post_step: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
               return_trajectory_every: Optional[int] = None):
        """Annealed Langevin dynamics from ``x_init`` ``[N, ...]``.

        ``score_fn(x, level) -> score`` (same shape as ``x``; 1/Angstrom) at noise level ``sigmas[level]``;
        ``post_step(x) -> x`` runs after every iteration (CDVAE: Cartesian -> fractional, wrap, -> Cartesian).
        Returns the final ``x``, or ``(x, [x snapshots])`` every ``k`` iterations when
        ``return_trajectory_every = k`` (detached CPU copies, the first one is ``x_init``).
        """
        x = x_init
        traj = [x.detach().cpu().clone()] if return_trajectory_every else None
        it = 0
        for level in range(self.num_levels):
            if float(self.sigmas[level]) < self.min_sigma:
                continue
            for _ in range(self.steps_per_level):
                z = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
                x = _STEP.step(self, score_fn(x, level), level, x, z).prev_sample
                if post_step is not None:
                    x = post_step(x)
                it += 1
                if traj is not None and it % return_trajectory_every == 0:
                    traj.append(x.detach().cpu().clone())
        return (x, traj) if traj is not None else x
