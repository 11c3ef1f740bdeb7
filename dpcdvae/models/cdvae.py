"""The CDVAE baselines (Xie et al., ICLR 2022) in the DP-CDVAE code base: ``cdvae`` and ``cdvae_fourier``.

:class:`CDVAE` subclasses :class:`dpcdvae.models.DPCDVAE` and shares everything except the coordinate diffusion:
encoder, ``fc_mu``/``fc_var``, the N_a / lattice / composition heads, the atom-type perturbation and loss (Eq. 9
as in DP-CDVAE), the lattice scaler (extra state), the GemNet-T denoiser (same blocks, same config), the
reconstruction / generation API and :class:`dpcdvae.models.SampleOutput`. What changes:

**Noise** (CDVAE's noise-conditional score matching on *Cartesian* displacements): per crystal a level
``i ~ U{0..L-1}`` of the geometric sequence ``sigma_i`` (``cdvae_sigma_begin`` 10 A -> ``cdvae_sigma_end`` 0.01 A,
``L = cdvae_num_levels`` = 50; :class:`dpcdvae.diffusion.AnnealedLangevin`); ``x~ = x0 + sigma_i * noise`` in
Cartesian coordinates with the *true* lattice, then back to fractional and wrapped. No recentring
(``cfg.recenter`` is ignored: it belongs to the fractional DDPM).

**Target**: the score of the perturbation kernel, with the periodic minimum image,
``s*(x~) = d / sigma^2`` with ``d = (x0 - x~)_min-image`` the Cartesian vector from the noisy atom to the nearest
periodic image of its clean position (:func:`min_image_displacement`, exact search over the 27 neighbouring
images of the rounded fractional difference). It points from the noisy position back towards the clean one.

**Network output**: the GemNet-T direct-force vector ``F`` (Cartesian, Angstrom frame) is read as ``sigma * score``
(CDVAE's parametrisation ``s_theta(x, sigma) = F(x, sigma) / sigma``), so ``F`` is trained towards
``d / sigma`` which has unit scale at every level. :class:`GemNetTDenoiser` returns only the fractional
``eps_frac = F @ inv(L)``; we convert back with ``F = eps_frac @ L`` using the same lattice ``L`` that was fed to
the network (exact up to float round-off; see :meth:`CDVAEDenoiser.forward_cartesian`).

**Loss**: ``0.5 * sigma^2 * |s_theta - s*|^2 = 0.5 * |F - d / sigma|^2`` summed over x, y, z, averaged over the
atoms of each crystal, then over crystals (CDVAE). The ``sigma^2`` weight makes every level contribute O(1).
It is the ``coord`` entry of the output dict, weighted by ``cfg.w_coord`` (and the coordinate boost) exactly as
DP-CDVAE's coordinate loss; ``val_loss = coord + 0.1 * type`` as for DP-CDVAE.

**Noise-level conditioning**: the decoder's time embedding embeds the level as an integer step
``t = L - i`` in ``1..L`` (``t = L`` is the noisiest level, as ``t = T`` in the DDPM; ``TimeEmbedding`` with
``T = L``). Node input: ``cdvae``: ``[type embedding | z | sigma-level embedding]``, no Fourier features (CDVAE had
none); ``cdvae_fourier``: ``[type | z | sigma level | Fourier(wrapped perturbed frac coords)]`` as DP-CDVAE (S3).
Note: CDVAE's published decoder took no explicit sigma input (its only noise conditioning is the ``1 / sigma``
output scaling, which we keep); the level embedding is added here on purpose so that both baselines see the same
inputs as DP-CDVAE's denoiser apart from the diffusion itself.

**Sampling** (annealed Langevin, CDVAE): N_a, lattice and initial types as DP-CDVAE (argmax N_a, lattice head,
composition rounding); initial fractional coordinates uniform in ``[0, 1)^3``; for each level ``sigma_i`` (10 ->
0.01) ``steps_per_level`` iterations (100 by default; the ``steps`` argument sets it, e.g. 2-10 for quick looks:
fewer iterations per level mean a less equilibrated chain at every level, the step size is unchanged) of
``x <- x + h_i * s_theta(x, sigma_i) + sqrt(2 h_i) z`` on Cartesian positions, ``h_i = step_lr * (sigma_i /
sigma_L)^2`` with ``step_lr = 1e-4``, each followed by Cartesian -> fractional -> wrap -> Cartesian (the
``post_step`` of :meth:`AnnealedLangevin.sample`); atom types are reset to the argmax of the predicted logits at
every step. ``langevin`` is the only sampler of these models and their default (``sampler=None``, as the
``dpcdvae sample`` / ``reconstruct`` default, picks it); ``steps`` is the number of iterations per level (``5000``
network calls at the defaults, ``50 * steps`` otherwise). DP-CDVAE's DDPM samplers (``eq7``, ``eq6``,
``strided_eq7``, ``ddim`` and its alias ``strided``; :func:`dpcdvae.diffusion.samplers.sampler_names` lists them)
are not stand-ins for ``langevin``: :meth:`CDVAE.check_sampler` refuses them, names or objects, with a
:class:`~dpcdvae.utils.errors.SamplerError` (on the command line a ``UserError`` naming ``--sampler``); only a study over
several model kinds (:func:`dpcdvae.workflows.sampler_for`, Table III) replaces them by ``langevin``, and says so.
"""
from __future__ import annotations

import dataclasses
import itertools
from typing import Callable, Optional, Sequence

import torch
import torch.nn as nn

from ..config import ModelConfig
from ..structures.crystal import cart_to_frac, frac_to_cart, lattice_params_to_matrix, wrap
from ..data.scalers import LatticeScaler
from ..diffusion.langevin import AnnealedLangevin
from .dpcdvae import DPCDVAE, gemnet_kwargs
from .output import SampleOutput
from ..nets.gemnet import GemNetTDenoiser

__all__ = ["CDVAE", "CDVAEDenoiser", "min_image_displacement", "langevin_sample_frac", "CDVAE_MODELS",
           "LANGEVIN_STEPS_PER_LEVEL", "LANGEVIN_STEP_LR"]

CDVAE_MODELS = ("cdvae", "cdvae_fourier")
LANGEVIN_STEPS_PER_LEVEL = 100  # CDVAE's n_step_each
LANGEVIN_STEP_LR = 1e-4  # CDVAE's step_lr
_IMAGES = torch.tensor(list(itertools.product((-1.0, 0.0, 1.0), repeat=3)))  # [27, 3]


def min_image_displacement(frac_from: torch.Tensor, frac_to: torch.Tensor, lattice: torch.Tensor,
                           batch: torch.Tensor) -> torch.Tensor:
    """Cartesian vector ``[N, 3]`` from each atom at ``frac_from`` to the nearest periodic image of ``frac_to``.

    The fractional difference is rounded to ``[-0.5, 0.5]`` and then the 27 neighbouring images are searched in
    Cartesian space, which is exact for any cell that is not extremely skewed (Niggli-reduced cells are fine).
    ``lattice [B, 3, 3]`` rows = lattice vectors, ``batch [N]`` crystal index of every atom.
    """
    df = frac_to - frac_from
    df = df - torch.round(df)
    images = _IMAGES.to(device=df.device, dtype=df.dtype)
    cand = torch.einsum("nki,nij->nkj", df[:, None, :] + images[None], lattice[batch])  # [N, 27, 3]
    best = cand.norm(dim=-1).argmin(dim=1)
    return cand[torch.arange(df.shape[0], device=df.device), best]


class _NoFeatures(nn.Module):
    """Stands in for :class:`FourierFeatures` in the plain ``cdvae`` decoder: ``[N, width]`` zeros (width 0 when the
    input projection was rebuilt without the Fourier columns)."""

    def __init__(self, width: int = 0):
        super().__init__()
        self.out_dim = int(width)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        return r.new_zeros(r.shape[0], self.out_dim)

    def extra_repr(self) -> str:
        return f"out_dim={self.out_dim} (no Fourier features: CDVAE)"


class CDVAEDenoiser(GemNetTDenoiser):
    """:class:`GemNetTDenoiser` with optional Fourier features and a Cartesian output.

    ``fourier_features=False`` (plain CDVAE): with ``project_input=True`` the Fourier module is removed and the
    input projection is rebuilt on ``[type | z | time]`` only (the exact CDVAE input width, no dead weights);
    with ``project_input=False`` the atom width through every block is the full input width, so the Fourier
    columns are kept but fed zeros (equivalent to no Fourier features; 36 x width unused weights).
    ``GemNetTDenoiser`` has no switch for this; a ``fourier=None`` option there would make this wrapper
    unnecessary. The scale factors are fitted (``fit_scales``) after the input change, not before.
    """

    def __init__(self, *, fourier_features: bool = True, fit_scales: bool = True, **kwargs):
        super().__init__(fit_scales=False, **kwargs)
        self.fourier_features = bool(fourier_features)
        if not self.fourier_features:
            width = self.fourier.out_dim
            if self.project_input:
                self.fourier = _NoFeatures(0)
                self.input_dim -= width
                self.input_proj = nn.Sequential(nn.Linear(self.input_dim, self.emb_size_atom))
            else:
                self.fourier = _NoFeatures(width)
        if fit_scales:  # after the input change, on the parent's fixed synthetic batch (t drawn in 1..L)
            self.fit_scale_factors(*self._synthetic_batch())

    def forward_cartesian(self, frac_t, atom_types, z, t, lattice, batch, num_atoms=None, graph=None):
        """As :meth:`forward` but returns the Cartesian direct-force vector ``F [N, 3]`` (Angstrom frame):
        ``F = eps_frac @ L`` undoes the network's ``eps_frac = F @ inv(L)`` with the same ``lattice``."""
        eps_frac, logits = self.forward(frac_t, atom_types, z, t, lattice, batch, num_atoms, graph)
        if self.eps_frame == "code":  # the network's output is already the Cartesian vector
            return eps_frac, logits
        force = torch.bmm(eps_frac.unsqueeze(1), lattice.to(eps_frac.dtype).index_select(0, batch)).squeeze(1)
        return force, logits


def langevin_sample_frac(langevin: AnnealedLangevin, frac_init: torch.Tensor, lattice: torch.Tensor,
                         batch: torch.Tensor, score_fn: Callable[[torch.Tensor, int], torch.Tensor],
                         generator: Optional[torch.Generator] = None, trajectory_every: Optional[int] = None):
    """Annealed Langevin on Cartesian positions of periodic crystals, wrapped after every step.

    ``score_fn(frac_wrapped [N,3], level) -> score [N,3]`` (Cartesian, 1/Angstrom) at ``langevin.sigmas[level]``.
    Returns the final wrapped fractional coordinates ``[N, 3]``, or ``(frac, frames)`` with ``frames`` the
    wrapped fractional coordinates every ``trajectory_every`` iterations (first = the initial state).
    """
    def to_frac(x_cart):
        return wrap(cart_to_frac(x_cart, lattice, batch))

    def post(x_cart):
        return frac_to_cart(to_frac(x_cart), lattice, batch)

    x0 = frac_to_cart(wrap(frac_init), lattice, batch)
    res = langevin.sample(x0, lambda x, level: score_fn(to_frac(x), level), generator=generator,
                          post_step=post, return_trajectory_every=trajectory_every)
    if trajectory_every:
        x, frames = res
        lat_cpu, batch_cpu = lattice.detach().cpu(), batch.detach().cpu()
        frames = [wrap(cart_to_frac(f.to(lat_cpu.dtype), lat_cpu, batch_cpu)) for f in frames]
        return to_frac(x), frames
    return to_frac(res)


class CDVAE(DPCDVAE):
    """CDVAE baseline (``cfg.model == "cdvae"``) or CDVAE + Fourier features (``"cdvae_fourier"``).

    Same public interface as :class:`DPCDVAE`: ``forward(batch, epoch, generator)`` (same loss keys),
    ``encode``, ``decode_stats``, ``sample_from_latent``, ``reconstruct``, ``generate`` (the last two inherited:
    they call this class's ``sample_from_latent``, so they sample with annealed Langevin and ``steps`` is the number
    of iterations per level); the lattice scaler lives in the state dict (extra state). See the module docstring
    for the diffusion part.
    """

    sampler_family: str = "langevin"
    default_sampler: str = "langevin"

    @property
    def label(self) -> str:
        return "CDVAE+Fourier" if self.cfg.model == "cdvae_fourier" else "CDVAE"

    def __init__(self, cfg: ModelConfig, lattice_scaler: Optional[LatticeScaler] = None):
        if cfg.model not in CDVAE_MODELS:
            raise ValueError(f"CDVAE got model={cfg.model!r}; expected one of {CDVAE_MODELS}")
        # DPCDVAE builds encoder, heads, type sigmas and a GemNet-T; its denoiser is replaced below
        super().__init__(dataclasses.replace(cfg, model="dpcdvae"), lattice_scaler)
        self.cfg = cfg
        self.scheduler = None  # no DDPM here
        self.decoder = CDVAEDenoiser(fourier_features=cfg.model == "cdvae_fourier", **gemnet_kwargs(cfg),
                                     T=cfg.cdvae_num_levels)
        self.langevin = AnnealedLangevin(cfg.cdvae_sigma_begin, cfg.cdvae_sigma_end, cfg.cdvae_num_levels,
                                         steps_per_level=LANGEVIN_STEPS_PER_LEVEL, step_lr=LANGEVIN_STEP_LR)
        self.register_buffer("coord_sigmas", self.langevin.sigmas.float(), persistent=False)

    # ------------------------------------------------------------------------------------------------ helpers
    @property
    def num_levels(self) -> int:
        return self.cfg.cdvae_num_levels

    def level_to_step(self, level: torch.Tensor) -> torch.Tensor:
        """Noise level index ``i`` (0 = sigma_begin) -> the integer step fed to the time embedding, ``L - i``."""
        return self.num_levels - level

    def perturb(self, frac0: torch.Tensor, lattice: torch.Tensor, batch: torch.Tensor, level_atoms: torch.Tensor,
                generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Cartesian Gaussian noise of scale ``sigmas[level]`` added to the atoms, back to wrapped fractional."""
        noise = torch.randn(frac0.shape, device=frac0.device, dtype=frac0.dtype, generator=generator)
        cart = self.langevin.add_noise(frac_to_cart(frac0, lattice, batch), level_atoms, noise)
        return wrap(cart_to_frac(cart, lattice, batch))

    def score_target(self, frac_noisy: torch.Tensor, frac_clean: torch.Tensor, lattice: torch.Tensor,
                     batch: torch.Tensor, level_atoms: torch.Tensor) -> torch.Tensor:
        """Denoising score-matching target ``(x0 - x~)_min-image / sigma^2`` (Cartesian, 1/Angstrom)."""
        d = min_image_displacement(frac_noisy, frac_clean, lattice, batch)
        return self.langevin.score_target_from_displacement(d, level_atoms)

    def predict_score(self, frac: torch.Tensor, types: torch.Tensor, z: torch.Tensor, level: torch.Tensor,
                      lattice: torch.Tensor, batch: torch.Tensor, num_atoms: Optional[torch.Tensor] = None):
        """``(score [N,3] 1/Angstrom, sigma*score = F [N,3], type logits [N,100])`` at per-crystal ``level [B]``."""
        force, logits = self.decoder.forward_cartesian(frac, types, z, self.level_to_step(level), lattice, batch,
                                                       num_atoms)
        sig = self.coord_sigmas.to(force.dtype)[level][batch]
        return force / sig[:, None], force, logits

    # ------------------------------------------------------------------------------------------------ training
    def _coord_terms(self, batch, z, types_t, lattice, generator=None):
        """CDVAE's score matching on Cartesian displacements at a geometric noise level drawn per crystal:
        returns (coordinate loss, type logits). Everything else of the loss is shared with DP-CDVAE."""
        B, atom_batch, num_atoms = batch.num_graphs, batch.batch, batch.num_atoms
        dev = z.device
        level = torch.randint(0, self.num_levels, (B,), device=dev, generator=generator)
        level_atoms = level[atom_batch]
        lattice_true = lattice_params_to_matrix(batch.lengths, batch.angles)
        frac0 = batch.frac_coords
        frac_t = self.perturb(frac0, lattice_true, atom_batch, level_atoms, generator)
        _, force, type_logits = self.predict_score(frac_t, types_t, z, level, lattice, atom_batch, num_atoms)
        # 0.5 * sigma^2 |F/sigma - d/sigma^2|^2 = 0.5 |F - d/sigma|^2, per atom; mean per crystal, then over crystals
        sig_atoms = self.coord_sigmas.to(force.dtype)[level_atoms]
        d = min_image_displacement(frac_t, frac0, lattice_true, atom_batch)
        per_atom = 0.5 * ((force - d / sig_atoms[:, None]) ** 2).sum(-1)
        per_crystal = torch.zeros(B, dtype=per_atom.dtype, device=dev).index_add_(0, atom_batch, per_atom)
        return (per_crystal / num_atoms.clamp(min=1).to(per_atom.dtype)).mean(), type_logits

    # ------------------------------------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample_from_latent(self, z: torch.Tensor, sampler=None, steps: Optional[int] = None,
                           generator: Optional[torch.Generator] = None, num_atoms: Optional[torch.Tensor] = None,
                           trajectory_every: Optional[int] = None, ids: Optional[Sequence[str]] = None,
                           progress: bool = False, step_lr: float = LANGEVIN_STEP_LR,
                           min_sigma: float = 0.0) -> SampleOutput:
        """Decode latents ``z [B, L]`` into crystals with CDVAE's annealed Langevin dynamics.

        Args:
            sampler: ``"langevin"`` (or ``None``, or a :class:`~dpcdvae.diffusion.samplers.LangevinSampler`); the
                DDPM samplers of DP-CDVAE are refused (:class:`SamplerError`).
            steps: Langevin iterations per noise level (default 100, CDVAE); network calls = levels x steps.
            num_atoms: force N_a per crystal instead of the N_a head's argmax.
            trajectory_every: record the wrapped fractional coordinates every k iterations (``t`` = iterations
                left, first frame = the uniform initial state, last = the final sample; ``level`` and ``sigma``
                of each frame; ``unwrapped`` equals ``wrapped``: the Langevin state is wrapped every step).
            step_lr, min_sigma: CDVAE's Langevin options.
        """
        sampler = self.check_sampler(sampler)
        spl = int(steps) if steps is not None else LANGEVIN_STEPS_PER_LEVEL
        if spl < 1:
            raise ValueError(f"steps (Langevin iterations per level) must be >= 1, got {steps}")
        lang = AnnealedLangevin(self.cfg.cdvae_sigma_begin, self.cfg.cdvae_sigma_end, self.num_levels,
                                steps_per_level=spl, step_lr=step_lr, min_sigma=min_sigma)
        B = z.shape[0]
        dev = z.device
        na_run, lengths, angles, lattice, flags, atom_batch, types = self._decode_for_sampling(z, num_atoms, generator)
        N = int(na_run.sum())
        frac_init = torch.rand(N, 3, device=dev, generator=generator, dtype=z.dtype)
        n_active = sum(1 for s_ in lang.sigmas.tolist() if s_ >= min_sigma)
        n_calls = n_active * spl
        state = {"types": types}
        bar = None
        if progress and N > 0:
            from ..utils.progress import progress_bar as tqdm
            bar = tqdm(total=n_calls, desc="sampling (langevin)", leave=False)

        def score_fn(frac_w: torch.Tensor, level: int) -> torch.Tensor:
            lv = torch.full((B,), int(level), device=dev, dtype=torch.long)
            score, _, logits = self.predict_score(frac_w, state["types"], z, lv, lattice, atom_batch, na_run)
            state["types"] = logits.argmax(-1) + 1  # CDVAE: types = argmax of the predicted logits every step
            if bar is not None:
                bar.update(1)
            return score

        traj = None
        if N > 0:
            res = langevin_sample_frac(lang, frac_init, lattice, atom_batch, score_fn, generator, trajectory_every)
            frac, frames = res if trajectory_every else (res, None)
        else:
            frac, frames = wrap(frac_init), None
        if bar is not None:
            bar.close()
        if frames is not None:
            its = [k * trajectory_every for k in range(len(frames))]
            if its[-1] != n_calls:
                frames.append(frac.detach().cpu().clone())
                its.append(n_calls)
            active = [i for i, s_ in enumerate(lang.sigmas.tolist()) if s_ >= min_sigma]
            lv = [active[min(max(it - 1, 0) // spl, len(active) - 1)] for it in its]
            wrapped = torch.stack(frames)
            traj = {"t": torch.tensor([n_calls - it for it in its]), "level": torch.tensor(lv),
                    "sigma": lang.sigmas[lv].float(), "unwrapped": wrapped, "wrapped": wrapped.clone()}
        return self._sample_output(frac, state["types"], lengths, angles, na_run, flags, ids, traj,
                                   meta={"sampler": sampler, "steps": n_calls,
                                         "steps_per_level": spl, "step_lr": step_lr, "model": self.cfg.model})
