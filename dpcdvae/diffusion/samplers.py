"""Sampler objects: one class per reverse-process algorithm, and the registry that is the only source of their names.

The protocol follows diffusers' schedulers: a sampler lists the steps it calls the network at
(:meth:`Sampler.timesteps`) and moves the state one step with :meth:`Sampler.step`, which returns a
:class:`StepOutput` (the new state and the clean-sample estimate). The noise tables live in the
:class:`~dpcdvae.diffusion.ddpm.DDPMScheduler` passed to every call; the formulas of each step are written out in
:mod:`dpcdvae.diffusion.ddpm`'s docstring.

=================  ======================  =========================================================================
name               family                  algorithm
=================  ======================  =========================================================================
``eq7``            ``ddpm``                paper Eq. 7 (DP-CDVAE's sampler, Table I), all T steps
``eq6``            ``ddpm``                paper Eq. 6 (standard DDPM ancestral step, Table S1), all T steps
``strided_eq7``    ``ddpm``                Eq. 7 on an evenly spaced sub-sequence of steps (ours: few-step sampling)
``strided``        ``ddpm``                DDIM (Song et al. 2021) on a sub-sequence of steps (ours)
``langevin``       ``langevin``            CDVAE's annealed Langevin dynamics (:class:`~.langevin.AnnealedLangevin`)
=================  ======================  =========================================================================

A model runs the samplers of one family (``model.supported_samplers``) and rejects the others with a clear error.

Adding a sampler: one subclass of :class:`Sampler` decorated with :func:`register_sampler`. The CLI's ``--sampler``
choices, the models' checks and the notebooks read :data:`SAMPLERS`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Optional

import torch

__all__ = ["StepOutput", "Sampler", "SAMPLERS", "register_sampler", "get_sampler", "sampler_names",
           "Eq7Sampler", "Eq6Sampler", "StridedEq7Sampler", "DDIMSampler", "LangevinSampler"]


@dataclass
class StepOutput:
    """One reverse step: ``prev_sample`` (the unwrapped state at the next step, ``[N, ...]``) and
    ``pred_original_sample`` (the clean-sample estimate ``x0_hat`` the step used; ``None`` where the algorithm has
    none, as Eq. 6)."""
    prev_sample: torch.Tensor
    pred_original_sample: Optional[torch.Tensor] = None


#: name -> sampler class; filled by :func:`register_sampler`. The only list of sampler names in the package.
SAMPLERS: dict[str, type["Sampler"]] = {}


def register_sampler(cls: type["Sampler"]) -> type["Sampler"]:
    """Class decorator: add a :class:`Sampler` subclass to :data:`SAMPLERS` under its ``name``."""
    if not getattr(cls, "name", None):
        raise ValueError(f"{cls.__name__} has no name")
    if cls.name in SAMPLERS and SAMPLERS[cls.name] is not cls:
        raise ValueError(f"a sampler named {cls.name!r} is already registered ({SAMPLERS[cls.name].__name__})")
    SAMPLERS[cls.name] = cls
    return cls


def sampler_names(family: Optional[str] = None) -> tuple[str, ...]:
    """Registered sampler names (in registration order), optionally only those of one ``family``."""
    return tuple(n for n, c in SAMPLERS.items() if family is None or c.family == family)


def get_sampler(name: str, **kwargs) -> "Sampler":
    """An instance of the sampler registered as ``name`` (``kwargs``: its options, e.g. ``eta`` for DDIM)."""
    try:
        cls = SAMPLERS[name]
    except KeyError:
        raise ValueError(f"unknown sampler {name!r}; choose one of {sampler_names()}") from None
    return cls(**kwargs)


class Sampler:
    """Base class of the reverse-process algorithms.

    Class attributes: ``name`` (registry key), ``family`` (``"ddpm"``: steps of a
    :class:`~dpcdvae.diffusion.ddpm.DDPMScheduler`, run by DP-CDVAE; ``"langevin"``: CDVAE's score-based
    sampler), ``strided`` (takes a number of network calls below T), ``description`` (one line).
    """
    name: ClassVar[str] = ""
    family: ClassVar[str] = "ddpm"
    strided: ClassVar[bool] = False
    description: ClassVar[str] = ""

    def __init__(self, eta: float = 0.0):
        self.eta = float(eta)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def timesteps(self, scheduler, steps: Optional[int] = None) -> list[int]:
        """Descending steps ``t`` at which a DDPM sampler (``family == "ddpm"``; ``scheduler`` a
        :class:`~dpcdvae.diffusion.ddpm.DDPMScheduler`) calls the network. Non-strided samplers run all ``T`` steps
        (``steps`` must be ``None`` or ``T``); strided ones ``steps`` evenly spaced steps
        (:meth:`~dpcdvae.diffusion.ddpm.DDPMScheduler.make_timesteps`), or, when ``steps`` is a sequence of
        integers, exactly those steps (duplicates dropped, sorted descending; each in ``1..T``)."""
        T = scheduler.num_train_timesteps
        if self.strided:
            if steps is not None and not isinstance(steps, (int, float)) and not hasattr(steps, "__index__"):
                ts = sorted({int(v) for v in steps}, reverse=True)
                if not ts or ts[-1] < 1 or ts[0] > T:
                    raise ValueError(f"explicit timesteps must be a non-empty subset of 1..{T}")
                return ts
            return scheduler.make_timesteps(steps)
        if steps is not None and int(steps) != T:
            raise ValueError(f"variant {self.name!r} needs all {T} steps; use variant='strided' for fewer")
        return list(range(T, 0, -1))

    def step(self, scheduler, eps_pred: torch.Tensor, t: torch.Tensor, x_t: torch.Tensor, noise: torch.Tensor,
             t_prev: Optional[torch.Tensor] = None) -> StepOutput:
        """Move ``x_t`` (unwrapped, ``[N, ...]``) from step ``t`` (long tensor, per row or scalar, in ``1..T``) to
        ``t_prev`` given the network's ``eps_pred`` for ``pi(x_t)`` and the fresh noise ``noise`` (``eps'``)."""
        raise NotImplementedError

    @staticmethod
    def _x0_hat(scheduler, eps_pred, t, x_t):
        abar = scheduler._coef(scheduler._abar, t, x_t)
        return (scheduler.wrap(x_t) - (1.0 - abar).sqrt() * eps_pred) / abar.sqrt()


class _OneStep(Sampler):
    """Samplers that step ``t -> t - 1`` only."""

    def _check_prev(self, scheduler, t, t_prev) -> None:
        if t_prev is not None and bool((scheduler._as_long(t_prev) != t - 1).any()):
            raise ValueError(f"variant {self.name!r} only steps t -> t - 1; use variant='strided' for strides")


@register_sampler
class Eq7Sampler(_OneStep):
    """Paper Eq. 7: ``x_{t-1} = (pi(x_t) - sqrt(1 - abar_t) eps) / sqrt(abar_t) + sigma_t eps'``."""
    name = "eq7"
    description = "paper Eq. 7 (DP-CDVAE, Table I): jump to x0_hat of the wrapped state, add sigma_t noise"

    def step(self, scheduler, eps_pred, t, x_t, noise, t_prev=None) -> StepOutput:
        self._check_prev(scheduler, t, t_prev)
        sigma = scheduler._coef(scheduler._posterior_var, t, x_t).sqrt()
        x0_hat = self._x0_hat(scheduler, eps_pred, t, x_t)
        return StepOutput(x0_hat + sigma * noise, x0_hat)


@register_sampler
class Eq6Sampler(_OneStep):
    """Paper Eq. 6 (standard DDPM): ``x_{t-1} = (x_t - beta_t / sqrt(1 - abar_t) eps) / sqrt(alpha_t) +
    sigma_t eps'`` on the unwrapped state."""
    name = "eq6"
    description = "paper Eq. 6 (standard DDPM ancestral step, Table S1)"

    def step(self, scheduler, eps_pred, t, x_t, noise, t_prev=None) -> StepOutput:
        self._check_prev(scheduler, t, t_prev)
        abar = scheduler._coef(scheduler._abar, t, x_t)
        alpha = scheduler._coef(scheduler._alpha, t, x_t)
        beta = scheduler._coef(scheduler._beta, t, x_t)
        sigma = scheduler._coef(scheduler._posterior_var, t, x_t).sqrt()
        mean = (x_t - beta / (1.0 - abar).sqrt() * eps_pred) / alpha.sqrt()
        return StepOutput(mean + sigma * noise, None)


class _Strided(Sampler):
    strided = True

    @staticmethod
    def _prev(scheduler, t, t_prev):
        tp = t - 1 if t_prev is None else scheduler._as_long(t_prev)
        if bool((tp >= t).any()) or bool((tp < 0).any()):
            raise ValueError("t_prev must satisfy 0 <= t_prev < t")
        return tp


@register_sampler
class StridedEq7Sampler(_Strided):
    """Eq. 7 on a sub-sequence ``t -> t'``: ``x_{t'} = x0_hat(pi(x_t), t) + sigma_{t'+1} eps'`` (none into 0)."""
    name = "strided_eq7"
    description = "Eq. 7 on a sub-sequence of steps (ours: few-step sampling)"

    def step(self, scheduler, eps_pred, t, x_t, noise, t_prev=None) -> StepOutput:
        tp = self._prev(scheduler, t, t_prev)
        x0_hat = self._x0_hat(scheduler, eps_pred, t, x_t)
        # posterior std of step t'+1 (_posterior_var is indexed by t, entry 0 = t 0 = no noise)
        sigma = scheduler._coef(scheduler._posterior_var, (tp + 1) * (tp > 0), x_t).sqrt()
        return StepOutput(x0_hat + sigma * noise, x0_hat)


@register_sampler
class DDIMSampler(_Strided):
    """DDIM on a sub-sequence: ``x_{t'} = sqrt(abar') x0_hat + sqrt(1 - abar' - s^2) eps + s eps'`` with
    ``s = eta sqrt((1 - abar') / (1 - abar_t)) sqrt(1 - abar_t / abar')`` (``eta = 0``: deterministic)."""
    name = "strided"
    description = "DDIM on a sub-sequence of steps (ours; eta = 0 deterministic)"

    def step(self, scheduler, eps_pred, t, x_t, noise, t_prev=None) -> StepOutput:
        tp = self._prev(scheduler, t, t_prev)
        abar = scheduler._coef(scheduler._abar, t, x_t)
        x0_hat = self._x0_hat(scheduler, eps_pred, t, x_t)
        abar_prev = scheduler._coef(scheduler._abar, tp, x_t)
        s2 = (self.eta ** 2) * (1.0 - abar_prev) / (1.0 - abar) * (1.0 - abar / abar_prev)
        direction = (1.0 - abar_prev - s2).clamp(min=0.0).sqrt() * eps_pred
        return StepOutput(abar_prev.sqrt() * x0_hat + direction + s2.sqrt() * noise, x0_hat)


@register_sampler
class LangevinSampler(Sampler):
    """CDVAE's annealed Langevin dynamics. Its "scheduler" is an
    :class:`~dpcdvae.diffusion.langevin.AnnealedLangevin`; a step at noise level ``t`` (an int) is
    ``x <- x + h_t score + sqrt(2 h_t) eps'`` (``eps_pred`` is the score, 1/Angstrom). The levels and the
    iterations per level (``steps``) are run by :meth:`~dpcdvae.diffusion.langevin.AnnealedLangevin.sample`."""
    name = "langevin"
    family = "langevin"
    description = "CDVAE's annealed Langevin dynamics (steps = iterations per noise level)"

    def step(self, scheduler, eps_pred, t, x_t, noise, t_prev=None) -> StepOutput:
        h = scheduler.step_size(int(t))
        return StepOutput(x_t + h * eps_pred + math.sqrt(2.0 * h) * noise, None)
