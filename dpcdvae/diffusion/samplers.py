"""Sampler objects: one class per reverse-process algorithm, and the registry that is the only source of their names.

The protocol follows diffusers' schedulers: a sampler lists the steps it calls the network at
(:meth:`Sampler.timesteps`) and moves the state from step ``t`` to the next listed step ``t_prev`` with
:meth:`Sampler.step`, which returns a :class:`StepOutput` (the new state and the clean-sample estimate). The noise
tables live in the :class:`~dpcdvae.diffusion.ddpm.DDPMScheduler` passed to every call and are read through its
public :meth:`~dpcdvae.diffusion.ddpm.DDPMScheduler.coef`; the formulas of each step are written out in
:mod:`dpcdvae.diffusion.ddpm`'s docstring.

A name becomes an object once, at the edge (:func:`get_sampler`, e.g. ``get_sampler("ddim", eta=0.5)``, or
:func:`resolve_sampler` for "a name or an object"); from there the object is passed down. Options belong to the
object (DDIM's ``eta``), not to the functions in between.

=================  ============  ============  ==============================================================
name               alias         family        algorithm
=================  ============  ============  ==============================================================
``eq7``                          ``ddpm``      paper Eq. 7 (DP-CDVAE's sampler, Table I), all T steps
``eq6``                          ``ddpm``      paper Eq. 6 (standard DDPM ancestral step, Table S1), all T steps
``strided_eq7``                  ``ddpm``      Eq. 7 on an evenly spaced sub-sequence of steps (ours: few steps)
``ddim``           ``strided``   ``ddpm``      DDIM (Song et al. 2021) on a sub-sequence of steps (ours); option
                                               ``eta`` (0 = deterministic)
``langevin``                     ``langevin``  CDVAE's annealed Langevin dynamics (:class:`~.langevin.AnnealedLangevin`)
=================  ============  ============  ==============================================================

An alias is another name of the same class: ``get_sampler("strided")`` is a :class:`DDIMSampler` and steps exactly
as ``get_sampler("ddim")`` (``strided`` is DDIM's older name, kept for the command line and earlier runs). The
object remembers the name it was asked for (:attr:`Sampler.label`), which run metadata record.

A model runs the samplers of one family (``model.supported_samplers``) and rejects the others with a clear error.

Adding a sampler: one subclass of :class:`Sampler` decorated with :func:`register_sampler`. The CLI's ``--sampler``
choices, the models' checks and the notebooks read :data:`SAMPLERS`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Optional, Union

import torch

__all__ = ["StepOutput", "Sampler", "SAMPLERS", "register_sampler", "get_sampler", "resolve_sampler",
           "sampler_names", "Eq7Sampler", "Eq6Sampler", "StridedEq7Sampler", "DDIMSampler", "LangevinSampler"]


@dataclass
class StepOutput:
    """One reverse step: ``prev_sample`` (the unwrapped state at the next step, ``[N, ...]``) and
    ``pred_original_sample`` (the clean-sample estimate ``x0_hat`` the step used; ``None`` where the algorithm has
    none, as Eq. 6)."""
    prev_sample: torch.Tensor
    pred_original_sample: Optional[torch.Tensor] = None


#: name -> sampler class; filled by :func:`register_sampler`. The only list of sampler names in the package: each
#: class under its ``name`` and under each of its ``aliases`` (the same class object).
SAMPLERS: dict[str, type["Sampler"]] = {}


def register_sampler(cls: type["Sampler"]) -> type["Sampler"]:
    """Class decorator: add a :class:`Sampler` subclass to :data:`SAMPLERS` under its ``name`` and its
    ``aliases``."""
    if not getattr(cls, "name", None):
        raise ValueError(f"{cls.__name__} has no name")
    for key in (cls.name, *cls.aliases):
        if key in SAMPLERS and SAMPLERS[key] is not cls:
            raise ValueError(f"a sampler named {key!r} is already registered ({SAMPLERS[key].__name__})")
    for key in (cls.name, *cls.aliases):
        SAMPLERS[key] = cls
    return cls


def sampler_names(family: Optional[str] = None, aliases: bool = True) -> tuple[str, ...]:
    """Registered sampler names (in registration order, an alias right after its class's name), optionally only
    those of one ``family``; ``aliases=False`` leaves the aliases out (one name per class)."""
    return tuple(n for n, c in SAMPLERS.items()
                 if (family is None or c.family == family) and (aliases or n == c.name))


def sampler_aliases() -> dict[str, str]:
    """``{alias: canonical name}`` of the registered aliases (e.g. ``{"strided": "ddim"}``)."""
    return {n: c.name for n, c in SAMPLERS.items() if n != c.name}


def get_sampler(name: str, **options) -> "Sampler":
    """A new instance of the sampler registered as ``name`` (its canonical name or an alias); ``options``: the
    sampler's own options (e.g. ``eta`` for DDIM). The instance's :attr:`Sampler.label` is ``name``."""
    try:
        cls = SAMPLERS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown sampler {name!r}; choose one of {sampler_names()}") from None
    smp = cls(**options)
    smp._label = name
    return smp


def resolve_sampler(sampler: Union[str, "Sampler"], **options) -> "Sampler":
    """The one place where "a name or an object" becomes an object: a :class:`Sampler` is returned as it is (no
    ``options`` then), a name goes through :func:`get_sampler` with ``options``."""
    if isinstance(sampler, Sampler):
        if options:
            raise TypeError(f"options {sorted(options)} given with a sampler object; set them on the object")
        return sampler
    return get_sampler(sampler, **options)


class Sampler:
    """Base class of the reverse-process algorithms.

    Class attributes: ``name`` (registry key), ``aliases`` (further registry keys of the same class),
    ``family`` (``"ddpm"``: steps of a :class:`~dpcdvae.diffusion.ddpm.DDPMScheduler`, run by DP-CDVAE;
    ``"langevin"``: CDVAE's score-based sampler), ``strided`` (takes a number of network calls below T; decides
    :meth:`timesteps`), ``description`` (one line). A sampler with options takes them in ``__init__`` (DDIM's
    ``eta``); the base class has none.
    """
    name: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()
    family: ClassVar[str] = "ddpm"
    strided: ClassVar[bool] = False
    description: ClassVar[str] = ""

    @property
    def label(self) -> str:
        """The name this object was asked for (:func:`get_sampler`): an alias stays the alias (``strided``), which
        run metadata record; the canonical ``name`` for an object built directly."""
        return getattr(self, "_label", None) or self.name

    def options(self) -> dict:
        """The sampler's options (``get_sampler(label, **options())`` builds an equal sampler); none here."""
        return {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.options().items())})"

    def timesteps(self, scheduler, steps=None, strict: bool = True) -> list[int]:
        """Descending steps ``t`` at which a DDPM sampler (``family == "ddpm"``; ``scheduler`` a
        :class:`~dpcdvae.diffusion.ddpm.DDPMScheduler`) calls the network. Non-strided samplers run all ``T`` steps
        (``steps`` must be ``None``, ``T`` or the full sequence ``T..1``; with ``strict=False`` any ``steps`` is
        ignored, the models' rule: ``steps`` is for the strided samplers); strided ones ``steps`` evenly spaced
        steps (:meth:`~dpcdvae.diffusion.ddpm.DDPMScheduler.make_timesteps`), or, when ``steps`` is a sequence of
        integers, exactly those steps (duplicates dropped, sorted descending; each in ``1..T``)."""
        T = scheduler.num_train_timesteps
        explicit = steps is not None and not isinstance(steps, (int, float)) and not hasattr(steps, "__index__")
        if self.strided:
            if explicit:
                ts = sorted({int(v) for v in steps}, reverse=True)
                if not ts or ts[-1] < 1 or ts[0] > T:
                    raise ValueError(f"explicit timesteps must be a non-empty subset of 1..{T}")
                return ts
            return scheduler.make_timesteps(steps)
        full = list(range(T, 0, -1))
        if strict and steps is not None and (sorted({int(v) for v in steps}, reverse=True) != full if explicit
                                             else int(steps) != T):
            raise ValueError(f"sampler {self.label!r} needs all {T} steps; use a strided sampler "
                             f"({', '.join(n for n in sampler_names(self.family) if SAMPLERS[n].strided)}) for fewer")
        return full

    def step(self, scheduler, eps_pred: torch.Tensor, t: torch.Tensor, x_t: torch.Tensor, noise: torch.Tensor,
             t_prev: Optional[torch.Tensor] = None) -> StepOutput:
        """Move ``x_t`` (unwrapped, ``[N, ...]``) from step ``t`` (long tensor, per row or scalar, in ``1..T``) to
        ``t_prev`` (the next step of :meth:`timesteps`, ``0`` after the last; ``None``: ``t - 1``) given the
        network's ``eps_pred`` for ``pi(x_t)`` and the fresh noise ``noise`` (``eps'``). Every sampler takes
        ``t_prev``, so a loop never asks which kind it runs; the one-step samplers check that it is ``t - 1``."""
        raise NotImplementedError

    @staticmethod
    def _x0_hat(scheduler, eps_pred, t, x_t):
        abar = scheduler.coef("abar", t, x_t)
        return (scheduler.wrap(x_t) - (1.0 - abar).sqrt() * eps_pred) / abar.sqrt()


class _OneStep(Sampler):
    """Samplers that step ``t -> t - 1`` only."""

    def _check_prev(self, scheduler, t, t_prev) -> None:
        if t_prev is not None and bool((scheduler.as_timesteps(t_prev) != t - 1).any()):
            raise ValueError(f"sampler {self.label!r} only steps t -> t - 1; use a strided sampler for strides")


@register_sampler
class Eq7Sampler(_OneStep):
    """Paper Eq. 7: ``x_{t-1} = (pi(x_t) - sqrt(1 - abar_t) eps) / sqrt(abar_t) + sigma_t eps'``."""
    name = "eq7"
    description = "paper Eq. 7 (DP-CDVAE, Table I): jump to x0_hat of the wrapped state, add sigma_t noise"

    def step(self, scheduler, eps_pred, t, x_t, noise, t_prev=None) -> StepOutput:
        self._check_prev(scheduler, t, t_prev)
        sigma = scheduler.coef("posterior_var", t, x_t).sqrt()
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
        abar = scheduler.coef("abar", t, x_t)
        alpha = scheduler.coef("alpha", t, x_t)
        beta = scheduler.coef("beta", t, x_t)
        sigma = scheduler.coef("posterior_var", t, x_t).sqrt()
        mean = (x_t - beta / (1.0 - abar).sqrt() * eps_pred) / alpha.sqrt()
        return StepOutput(mean + sigma * noise, None)


class _Strided(Sampler):
    strided = True

    @staticmethod
    def _prev(scheduler, t, t_prev):
        tp = t - 1 if t_prev is None else scheduler.as_timesteps(t_prev)
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
        # posterior std of step t'+1 (the "posterior_var" entry of t = 0 is 0: no noise into t' = 0)
        sigma = scheduler.coef("posterior_var", (tp + 1) * (tp > 0), x_t).sqrt()
        return StepOutput(x0_hat + sigma * noise, x0_hat)


@register_sampler
class DDIMSampler(_Strided):
    """DDIM on a sub-sequence: ``x_{t'} = sqrt(abar') x0_hat + sqrt(1 - abar' - s^2) eps + s eps'`` with
    ``s = eta sqrt((1 - abar') / (1 - abar_t)) sqrt(1 - abar_t / abar')`` (``eta = 0``: deterministic; ``eta = 1``
    with every step: the DDPM posterior step). Registered as ``ddim``, alias ``strided`` (its older name)."""
    name = "ddim"
    aliases = ("strided",)
    description = "DDIM on a sub-sequence of steps (ours; option eta, 0 = deterministic)"

    def __init__(self, eta: float = 0.0):
        self.eta = float(eta)

    def options(self) -> dict:
        return {"eta": self.eta}

    def step(self, scheduler, eps_pred, t, x_t, noise, t_prev=None) -> StepOutput:
        tp = self._prev(scheduler, t, t_prev)
        abar = scheduler.coef("abar", t, x_t)
        x0_hat = self._x0_hat(scheduler, eps_pred, t, x_t)
        abar_prev = scheduler.coef("abar", tp, x_t)
        s2 = (self.eta ** 2) * (1.0 - abar_prev) / (1.0 - abar) * (1.0 - abar / abar_prev)
        direction = (1.0 - abar_prev - s2).clamp(min=0.0).sqrt() * eps_pred
        return StepOutput(abar_prev.sqrt() * x0_hat + direction + s2.sqrt() * noise, x0_hat)


@register_sampler
class LangevinSampler(Sampler):
    """CDVAE's annealed Langevin dynamics. Its "scheduler" is an
    :class:`~dpcdvae.diffusion.langevin.AnnealedLangevin`; a step at noise level ``t`` (an int) is
    ``x <- x + h_t score + sqrt(2 h_t) eps'`` (``eps_pred`` is the score, 1/Angstrom). The levels and the
    iterations per level (``steps``) are run by :meth:`~dpcdvae.diffusion.langevin.AnnealedLangevin.sample`, which
    calls :meth:`step` directly (``t_prev`` is not used: the levels are not diffusion steps)."""
    name = "langevin"
    family = "langevin"
    description = "CDVAE's annealed Langevin dynamics (steps = iterations per noise level)"

    def step(self, scheduler, eps_pred, t, x_t, noise, t_prev=None) -> StepOutput:
        h = scheduler.step_size(int(t))
        return StepOutput(x_t + h * eps_pred + math.sqrt(2.0 * h) * noise, None)
