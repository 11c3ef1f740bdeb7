"""DDPM scheduler on (optionally periodic) coordinates: forward noising, Eq. 6 / Eq. 7 reverse steps, a strided
DDIM-style few-step sampler, and a model-agnostic sampling loop.

The scheduler knows nothing about crystals. The only periodic ingredient is the wrap ``pi(x) = x - floor(x)``
(paper Eq. 3), which can be switched off or replaced by any callable.

Index convention
----------------
Diffusion steps are the integers ``t = 1..T`` (``T = num_train_timesteps``), as in the paper:

* ``beta_t = betas[t - 1]``, ``alpha_t = 1 - beta_t``, ``abar_t = prod_{i <= t} alpha_i = alphas_cumprod[t - 1]``;
* ``t = 0`` is the clean data, ``abar_0 = 1`` (used by the reverse step into ``t - 1 = 0``);
* ``sigma_t^2 = (1 - abar_{t-1}) / (1 - abar_t) * beta_t`` so ``sigma_1 = 0``: the last reverse step adds no noise.

The published DP-CDVAE code uses 0-based arrays with training steps ``k = 1..T-1`` and sampling ``k = T-1..1``;
its array index ``k`` is our ``t = k + 1`` (so its largest step, ``k = 999``, is our ``t = 1000`` with
``sqrt(abar_1000) ~= 0.152`` for the sigmoid schedule). We train on ``t ~ U{1..T}`` and sample over ``t = T..1``;
the code's extra step ``t = 1`` of ours (its ``k = 0``) has ``beta_1 ~= 4.5e-7`` and is numerically immaterial.

Shapes and dtypes
-----------------
Coordinates ``x`` are tensors of any shape ``[N, ...]`` (``[N_atoms, 3]`` fractional coordinates for crystals).
``t`` is an ``int`` or a long tensor broadcastable *per row*: shape ``[]``, ``[1]`` or ``[N]`` (a per-crystal ``t``
must be expanded to atoms by the caller, e.g. ``t_crystal[batch]``). Schedule tables are float64; coefficients
are gathered in float64 and then cast to the dtype and device of ``x``.

The reverse steps (the sampler objects of :mod:`dpcdvae.diffusion.samplers`)
---------------------------------------------------------------------------
``'eq6'`` (paper Eq. 6, standard DDPM ancestral step, used for the paper's Table S1)::

    x_{t-1} = (x_t - beta_t / sqrt(1 - abar_t) * eps) / sqrt(alpha_t) + sigma_t * eps'

  applied to ``x_t`` exactly as passed (no wrap: the sampling loop carries the *unwrapped* state; the network
  still sees ``pi(x_t)``).

``'eq7'`` (paper Eq. 7, the modified step of DP-CDVAE, hard-coded in the published code, used for Table I)::

    x_{t-1} = (pi(x_t) - sqrt(1 - abar_t) * eps) / sqrt(abar_t) + sigma_t * eps'

  This is literally Eq. 6 with the periodic wrap imposed on ``x_t`` and both ``alpha_t`` of Eq. 6's first term
  replaced by ``abar_t`` (``(1 - abar_t) / sqrt(1 - abar_t) = sqrt(1 - abar_t)``), as the paper's text says; the
  printed Eq. 7 and the published code agree. Note what it means: the first term is the usual estimate of the
  clean sample, ``x0_hat = (pi(x_t) - sqrt(1 - abar_t) eps) / sqrt(abar_t)``, so every Eq. 7 step jumps to the
  current ``x0`` estimate and adds a small noise ``sigma_t eps'`` (``sigma_t <= sqrt(beta_t) <= 0.1``).

  Why the wrap is consistent: ``pi(x_t) = x_t + k`` for an integer vector ``k``. If the network predicted the
  *unwrapped* noise ``eps`` (the one with ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps``), Eq. 7 would give
  ``x0 + k / sqrt(abar_t)``, which is not ``x0`` modulo 1. Eq. 7 recovers ``x0`` modulo 1 when the prediction is
  the noise *relative to the wrapped point*, ``eps_w = (pi(x_t) - sqrt(abar_t) x0') / sqrt(1 - abar_t)`` for some
  periodic image ``x0'`` of ``x0``; a network that only ever sees ``pi(x_t)`` can only learn a function of
  ``pi(x_t)``, so this is the quantity it is (implicitly) asked to approximate.

``'ddim'``, alias ``'strided'`` (our extension: DDIM of Song et al. 2021 on a sub-sequence of steps; the sampler
option ``eta``, ``get_sampler("ddim", eta=...)``, 0 = deterministic)::

    x0_hat = (pi(x_t) - sqrt(1 - abar_t) eps) / sqrt(abar_t)                        (same estimate as Eq. 7)
    s      = eta * sqrt((1 - abar_prev) / (1 - abar_t)) * sqrt(1 - abar_t / abar_prev)
    x_prev = sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev - s^2) eps + s eps'

  The wrap is treated exactly as in Eq. 7: the state is wrapped before the update, so the step is a function
  of the point on the torus that the network saw. With every step and ``eta = 1`` it equals the DDPM posterior
  step (Eq. 6) applied to ``pi(x_t)``; Eq. 7 itself is the special case ``abar_prev := 1`` with noise ``sigma_t``.

``'strided_eq7'`` (our extension: Eq. 7 on a sub-sequence of steps ``t -> t'``)::

    x_{t'} = x0_hat(pi(x_t), t) + sigma_{t'+1} * eps'

  Eq. 7 jumps to the clean-sample estimate at every step and perturbs it by the small ``sigma_t``; the network at
  step ``t - 1`` therefore sees ``x0_hat + sigma_t eps'``. The strided version keeps exactly that: the network
  called at ``t'`` sees the estimate perturbed by the noise Eq. 7 would have added on its way into ``t'``
  (``sigma_{t'+1}``; none into ``t' = 0``). With every step it *is* Eq. 7, step for step and noise for noise.
  DDIM instead re-noises the estimate to the training marginal ``sqrt(abar') x0_hat + sqrt(1 - abar') eps``, the
  regime of Eq. 6 (the paper's weaker Table S1); see BENCHMARKS.md / RESULTS.md for the measured difference.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Union

import torch

from ..structures.crystal import wrap as periodic_wrap  # pi(x) = x - floor(x) (Eq. 3): the package's one wrap
from .samplers import SAMPLERS, Sampler, resolve_sampler, sampler_names
from .schedules import make_betas

__all__ = ["periodic_wrap", "DDPMScheduler", "Trajectory", "sample_loop", "VARIANTS", "STRIDED_VARIANTS"]

#: The built-in DDPM samplers' names, aliases included (the registry, :mod:`dpcdvae.diffusion.samplers`, may hold
#: more) and the strided ones.
VARIANTS = sampler_names("ddpm")
STRIDED_VARIANTS = tuple(n for n in VARIANTS if SAMPLERS[n].strided)
TimeLike = Union[int, torch.Tensor]


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


class DDPMScheduler:
    """DDPM noise schedule in the style of diffusers' schedulers; the reverse steps (Eq. 6, Eq. 7, strided Eq. 7,
    DDIM) are the sampler objects of :mod:`dpcdvae.diffusion.samplers`, which read the tables through :meth:`coef`.

    Parameters
    ----------
    num_train_timesteps:
        ``T``; steps are the integers ``1..T`` (see the module docstring for the index convention).
    beta_schedule:
        ``'sigmoid'`` (published DP-CDVAE code), ``'linear'`` or ``'cosine'``; or a 1-D tensor of betas ``[T]``.
    wrap:
        ``True`` for the periodic wrap ``pi(x) = x - floor(x)``, ``False``/``None`` for none (plain Euclidean
        DDPM), or any callable ``x -> x``.

    Attributes
    ----------
    betas, alphas, alphas_cumprod:
        float64 tensors ``[T]``; entry ``t - 1`` belongs to step ``t``.
    """

    def __init__(self, num_train_timesteps: int = 1000, beta_schedule: Union[str, torch.Tensor] = "sigmoid",
                 wrap: Union[bool, Callable[[torch.Tensor], torch.Tensor], None] = True):
        if isinstance(beta_schedule, torch.Tensor):
            betas = beta_schedule.detach().to(torch.float64).cpu().reshape(-1)
            if betas.numel() != num_train_timesteps:
                raise ValueError(f"{betas.numel()} betas given for num_train_timesteps={num_train_timesteps}")
            self.beta_schedule = "custom"
        else:
            betas = make_betas(beta_schedule, num_train_timesteps)
            self.beta_schedule = beta_schedule
        self.num_train_timesteps = int(num_train_timesteps)
        T = self.num_train_timesteps
        self.betas = betas
        self.alphas = 1.0 - betas
        self.alphas_cumprod = torch.cumprod(self.alphas, dim=0)
        # tables indexed directly by t = 0..T (entry 0: the clean data)
        one = torch.ones(1, dtype=torch.float64)
        self._abar = torch.cat([one, self.alphas_cumprod])
        self._beta = torch.cat([torch.zeros(1, dtype=torch.float64), betas])
        self._alpha = torch.cat([one, self.alphas])
        post_var = torch.zeros(T + 1, dtype=torch.float64)
        post_var[1:] = (1.0 - self._abar[:-1]) / (1.0 - self._abar[1:]) * betas
        self._posterior_var = post_var

        if wrap is True:
            self._wrap: Callable[[torch.Tensor], torch.Tensor] = periodic_wrap
        elif wrap is False or wrap is None:
            self._wrap = _identity
        elif callable(wrap):
            self._wrap = wrap
        else:
            raise TypeError(f"wrap must be a bool or a callable, got {type(wrap).__name__}")
        self.wraps = wrap is not False and wrap is not None

    def __len__(self) -> int:
        return self.num_train_timesteps

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(num_train_timesteps={self.num_train_timesteps}, "
                f"beta_schedule={self.beta_schedule!r}, wrap={self.wraps})")

    # ------------------------------------------------------------------ helpers
    def wrap(self, x: torch.Tensor) -> torch.Tensor:
        """The configured wrap (``pi(x) = x - floor(x)`` by default, Eq. 3)."""
        return self._wrap(x)

    def _check_t(self, t: torch.Tensor, lo: int) -> None:
        if t.numel() and (int(t.min()) < lo or int(t.max()) > self.num_train_timesteps):
            raise ValueError(f"timesteps must lie in {lo}..{self.num_train_timesteps}, got "
                             f"{int(t.min())}..{int(t.max())}")

    @staticmethod
    def _as_long(t: TimeLike) -> torch.Tensor:
        if isinstance(t, torch.Tensor):
            if t.is_floating_point():
                raise TypeError("timesteps must be integers (a long tensor or an int), got a float tensor")
            return t.to(device="cpu", dtype=torch.long)
        return torch.as_tensor(t, dtype=torch.long)

    def as_timesteps(self, t: TimeLike, min_t: int = 0) -> torch.Tensor:
        """``t`` (an int, a sequence of ints or an integer tensor) as a CPU long tensor of the same shape, checked
        to lie in ``min_t..T`` (a float tensor is a TypeError, a step out of range a ValueError)."""
        tt = self._as_long(t)
        self._check_t(tt, min_t)
        return tt

    #: the tables of :meth:`coef`: name -> attribute holding it, indexed by ``t = 0..T``
    COEFS = {"abar": "_abar", "alpha": "_alpha", "beta": "_beta", "posterior_var": "_posterior_var"}

    def coef(self, name: str, t: TimeLike, like: torch.Tensor) -> torch.Tensor:
        """The schedule's entry ``name`` at step ``t``, shaped to broadcast per row against ``like`` and cast to
        ``like``'s dtype and device (gathered in float64 first): a ``t`` of shape ``[]`` gives ``like.ndim`` ones
        (``[1, 1]`` for ``like`` ``[N, 3]``), a ``t`` of shape ``[N]`` gives ``[N, 1, ..., 1]``.

        ``t``: int or long tensor in ``0..T`` (not range-checked here: the caller's step list is; see
        :meth:`as_timesteps`). All entries are dimensionless (they scale coordinates in whatever unit they have):

        * ``"abar"``: ``abar_t = prod_{i <= t} alpha_i`` (:meth:`alpha_bar`); ``abar_0 = 1``;
        * ``"alpha"``: ``alpha_t = 1 - beta_t``; ``alpha_0 = 1``;
        * ``"beta"``: ``beta_t`` (``betas[t - 1]``); ``beta_0 = 0``;
        * ``"posterior_var"``: ``sigma_t^2 = (1 - abar_{t-1}) / (1 - abar_t) * beta_t`` (the square of
          :meth:`posterior_std`; a variance in the squared unit of the coordinates); ``sigma_0^2 = 0``.
        """
        try:
            table = getattr(self, self.COEFS[name])
        except KeyError:
            raise ValueError(f"unknown coefficient {name!r}; choose one of {tuple(self.COEFS)}") from None
        c = table[self._as_long(t)]
        while c.ndim < like.ndim:
            c = c.unsqueeze(-1)
        return c.to(device=like.device, dtype=like.dtype)

    def alpha_bar(self, t: TimeLike) -> torch.Tensor:
        """``abar_t`` (float64) for ``t`` in ``0..T`` (``abar_0 = 1``); same shape as ``t``."""
        t = self._as_long(t)
        self._check_t(t, 0)
        return self._abar[t]

    def posterior_std(self, t: TimeLike) -> torch.Tensor:
        """``sigma_t = sqrt((1 - abar_{t-1}) / (1 - abar_t) * beta_t)`` (float64) for ``t`` in ``1..T``."""
        t = self._as_long(t)
        self._check_t(t, 1)
        return self._posterior_var[t].sqrt()

    # ------------------------------------------------------------------ forward process
    def add_noise(self, x0: torch.Tensor, t: TimeLike, eps: torch.Tensor) -> torch.Tensor:
        """Eq. 2: ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps`` (unwrapped; apply :meth:`wrap` for Eq. 3).

        ``x0``, ``eps``: ``[N, ...]`` (fractional units for crystals); ``t``: int or long tensor ``[]``/``[N]`` in
        ``0..T`` (per row: expand a per-crystal ``t`` to atoms with ``t[batch]``). Returns ``x_t`` like ``x0``.
        """
        tt = self._as_long(t)
        self._check_t(tt, 0)
        abar = self.coef("abar", tt, x0)
        return abar.sqrt() * x0 + (1.0 - abar).sqrt() * eps

    def predict_x0(self, eps_pred: torch.Tensor, t: TimeLike, x_t: torch.Tensor) -> torch.Tensor:
        """Clean-sample estimate ``x0_hat = (pi(x_t) - sqrt(1 - abar_t) eps) / sqrt(abar_t)`` (the wrap as in Eq. 7)."""
        tt = self._as_long(t)
        self._check_t(tt, 1)
        abar = self.coef("abar", tt, x_t)
        return (self.wrap(x_t) - (1.0 - abar).sqrt() * eps_pred) / abar.sqrt()

    # ------------------------------------------------------------------ inference timesteps
    def make_timesteps(self, num_inference_steps: Optional[int] = None) -> list[int]:
        """Descending steps ``t`` to call the network at, evenly spaced ("trailing": always starts at ``T``).

        ``t_k = floor(k T / n + 1/2)`` for ``k = n..1``; ``n = T`` gives ``T, T-1, ..., 1``.
        """
        T = self.num_train_timesteps
        n = T if num_inference_steps is None else int(num_inference_steps)
        if not 1 <= n <= T:
            raise ValueError(f"num_inference_steps must lie in 1..{T}, got {n}")
        return [(2 * k * T + n) // (2 * n) for k in range(n, 0, -1)]


@dataclass
class Trajectory:
    """Recorded states of a reverse run: ``timesteps[i]`` is the step of ``x[i]`` (unwrapped ``x_t``) and
    ``x_wrapped[i]`` (``pi(x_t)``); the first entry is ``x_T``, the last ``x_0``. Tensors are detached CPU copies."""
    timesteps: list[int] = field(default_factory=list)
    x: list[torch.Tensor] = field(default_factory=list)
    x_wrapped: list[torch.Tensor] = field(default_factory=list)

    def append(self, t: int, x: torch.Tensor, x_wrapped: torch.Tensor) -> None:
        self.timesteps.append(int(t))
        self.x.append(x.detach().cpu().clone())
        self.x_wrapped.append(x_wrapped.detach().cpu().clone())

    def __len__(self) -> int:
        return len(self.timesteps)


@torch.no_grad()
def sample_loop(scheduler: DDPMScheduler, x_T: torch.Tensor,
                eps_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], sampler: Union[Sampler, str] = "eq7",
                steps=None, generator: Optional[torch.Generator] = None,
                return_trajectory_every: Optional[int] = None,
                post_step: Optional[Callable[[torch.Tensor], torch.Tensor]] = None):
    """Run the reverse process from ``x_T`` to ``x_0``, independent of any model.

    Parameters
    ----------
    scheduler: a :class:`DDPMScheduler` (its wrap is used for the network input and the result).
    x_T: ``[N, ...]`` initial state (e.g. ``randn`` with per-crystal mean removed).
    eps_fn: ``eps_fn(x_t_wrapped, t) -> eps_pred``; ``x_t_wrapped = pi(x_t)`` ``[N, ...]`` and ``t`` a long tensor
        ``[N]`` (all entries equal). May keep state in a closure (e.g. the atom types updated each step).
    sampler: a DDPM :class:`~dpcdvae.diffusion.samplers.Sampler` object (e.g. ``get_sampler("ddim", eta=0.5)``;
        its options live on it). A name (``'eq7'``, the paper's and the default, ``'eq6'``, ``'strided_eq7'``,
        ``'ddim'``/``'strided'``) is still accepted and resolved once here (no options then).
    steps: number of network calls; ``None`` = ``T``. ``'eq6'``/``'eq7'`` need every step (``None`` or ``T``);
        the strided samplers take any ``1..T`` (evenly spaced steps from :meth:`DDPMScheduler.make_timesteps`)
        or an explicit sequence of steps (:meth:`Sampler.timesteps`).
    generator: ``torch.Generator`` for the noise ``eps'`` (reproducible runs).
    return_trajectory_every: record every ``k``-th state (plus ``x_T`` and ``x_0``) and return it.
    post_step: ``x -> x`` applied to the unwrapped state after every step (e.g. remove the per-crystal mean).

    Returns ``x_0`` wrapped (``pi(x_0)``; unchanged if the scheduler does not wrap), or ``(x_0, Trajectory)``
    when ``return_trajectory_every`` is given. The scheduler's state is not changed.
    """
    sampler = resolve_sampler(sampler)
    if sampler.family != "ddpm":
        raise ValueError(f"sampler {sampler.label!r} is not a DDPM sampler; choose one of {sampler_names('ddpm')}")
    timesteps = sampler.timesteps(scheduler, steps)
    every = None if return_trajectory_every is None else int(return_trajectory_every)
    if every is not None and every < 1:
        raise ValueError("return_trajectory_every must be >= 1")

    x = x_T
    traj = Trajectory() if every is not None else None
    if traj is not None:
        traj.append(timesteps[0], x, scheduler.wrap(x))
    n = x.shape[0]
    for i, t in enumerate(timesteps):
        t_prev = timesteps[i + 1] if i + 1 < len(timesteps) else 0
        t_vec = torch.full((n,), t, dtype=torch.long, device=x.device)
        eps = eps_fn(scheduler.wrap(x), t_vec)
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        x = sampler.step(scheduler, eps, scheduler.as_timesteps(t, 1), x, noise,
                         t_prev=scheduler.as_timesteps(t_prev)).prev_sample
        if post_step is not None:
            x = post_step(x)
        if traj is not None and ((i + 1) % every == 0 or t_prev == 0):
            traj.append(t_prev, x, scheduler.wrap(x))
    x0 = scheduler.wrap(x)
    return (x0, traj) if traj is not None else x0
