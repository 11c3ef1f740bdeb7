"""dpcdvae.diffusion: model-agnostic diffusion machinery.

- :func:`make_betas`: sigmoid (published DP-CDVAE code), linear and cosine beta schedules (float64 ``[T]``).
- :class:`DDPMScheduler`: forward noising (Eq. 2), the wrap (Eq. 3), reverse steps Eq. 6, Eq. 7 and a strided
  DDIM-style sampler; steps are the integers ``1..T`` (array index ``t - 1``, ``abar_0 = 1``).
- :func:`sample_loop`: the reverse loop for any ``eps_fn(pi(x_t), t)``, with optional trajectory recording.
- :mod:`.samplers`: one class per reverse-process algorithm (Eq. 7, Eq. 6, strided Eq. 7, DDIM, Langevin) and
  :data:`SAMPLERS`, the registry of their names.
- :class:`AnnealedLangevin`: the CDVAE baseline's annealed Langevin sampler and score-matching helpers.
"""
from .ddpm import VARIANTS, DDPMScheduler, Trajectory, periodic_wrap, sample_loop
from .langevin import AnnealedLangevin
from .samplers import SAMPLERS, Sampler, StepOutput, get_sampler, register_sampler, sampler_names
from .schedules import BETA_SCHEDULES, make_betas

__all__ = ["make_betas", "BETA_SCHEDULES", "DDPMScheduler", "Trajectory", "sample_loop", "periodic_wrap",
           "VARIANTS", "AnnealedLangevin", "SAMPLERS", "Sampler", "StepOutput", "get_sampler",
           "register_sampler", "sampler_names"]
