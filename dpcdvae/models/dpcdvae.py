"""The DP-CDVAE model: a plain ``nn.Module`` (no Lightning inside).

Encoder (DimeNet++ [+ N_a] [+ GINE]) -> mu, logvar -> z (Eq. 8) -> heads for N_a, lattice, composition A_z;
GemNet-T denoiser predicts the fractional noise eps_theta and atom-type logits A_theta from the perturbed, wrapped
coordinates (Eqs. 2-3, 9), trained with Eqs. 10, 11 and S1. Sampling (reconstruction / generation) runs the reverse
process with any scheduler variant (Eq. 7 default, Eq. 6, strided few-step) without retraining.

Shapes: ``N`` atoms, ``B`` crystals. Units: Angstrom, degrees; fractional coordinates are unitless.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import ModelConfig
from ..structures.crystal import MAX_ATOMIC_NUM, batch_from_num_atoms, lattice_params_to_matrix, tensors_to_structures, wrap
from ..data.scalers import LatticeScaler
from ..diffusion.ddpm import DDPMScheduler, sample_loop
from ..diffusion.samplers import Sampler, resolve_sampler, sampler_names
from ..utils.errors import SamplerError
from ..nets.encoder import CrystalEncoder
from ..nets.gemnet import GemNetTDenoiser
from .output import SampleOutput, concat_outputs
# The atom-type and coordinate-target helpers live in .types and .coords; re-exported here because tests,
# experiments and benchmarks import them from dpcdvae.models.dpcdvae (and tests patch swap_two_types here).
from .types import INITIAL_TYPES, assign_multiset, initial_type_counts, padded_layout, swap_two_types  # noqa: F401
from .coords import (COORD_LOSSES, EPS_TARGETS, _segment_mean, check_coord_options, coord_loss,  # noqa: F401
                     eq7_consistency_inputs, wrapped_eps_target)

__all__ = ["DPCDVAE", "initial_type_counts", "INITIAL_TYPES", "gemnet_kwargs", "coord_loss", "COORD_LOSSES",
           "eq7_consistency_inputs", "wrapped_eps_target", "EPS_TARGETS"]


def _mlp(d_in: int, hidden: int, d_out: int) -> nn.Sequential:
    """Linear-ReLU-Linear head (every VAE head of the paper configuration)."""
    return nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, d_out))


def _min_spacing(lattice: torch.Tensor) -> torch.Tensor:
    """Smallest interplanar spacing V / |a_i x a_j| of each cell (Angstrom), ``[B]``; 0 for degenerate cells."""
    a, b, c = lattice.unbind(-2)
    vol = torch.linalg.det(lattice).abs()
    cross = torch.stack([torch.linalg.cross(b, c), torch.linalg.cross(c, a), torch.linalg.cross(a, b)], dim=-2)
    return (vol[:, None] / cross.norm(dim=-1).clamp(min=1e-12)).min(dim=-1).values


MIN_SPACING = 0.5  # A: thinner cells would need thousands of periodic images in the 7 A neighbour search


def _recenter(x: torch.Tensor, batch: torch.Tensor, num_graphs: int) -> torch.Tensor:
    """Remove the per-crystal mean (the published code's non-periodic recentring of coordinates / noise)."""
    return x - _segment_mean(x, batch, num_graphs)[batch]


def gemnet_kwargs(cfg: ModelConfig) -> dict:
    """Keyword arguments of the GemNet-T decoder (DP-CDVAE's and the CDVAE baselines') from a model config,
    without ``T`` (the number of diffusion steps or of noise levels, which differs between the models)."""
    dec = cfg.decoder
    return dict(latent_dim=cfg.latent_dim, num_blocks=dec.num_blocks, emb_size_atom=dec.emb_size_atom,
                emb_size_edge=dec.emb_size_edge, emb_size_trip=dec.emb_size_trip, emb_size_rbf=dec.emb_size_rbf,
                emb_size_cbf=dec.emb_size_cbf, emb_size_bil_trip=dec.emb_size_bil_trip,
                num_spherical=dec.num_spherical, num_radial=dec.num_radial, cutoff=dec.cutoff,
                max_neighbors=dec.max_neighbors, type_emb_dim=dec.type_emb_dim, time_emb_dim=dec.time_emb_dim,
                fourier=(dec.fourier_min, dec.fourier_max), project_input=dec.project_input,
                time_mode=cfg.time_embedding, checkpoint_blocks=dec.checkpoint_blocks,
                eps_frame=getattr(cfg, "eps_frame", "fractional"))


#: upper bound on logvar in the reparameterisation draw (see DPCDVAE.reparameterize)
LOGVAR_MAX = 10.0


class DPCDVAE(nn.Module):
    """DP-CDVAE (Pakornchote et al. 2023). Build with ``DPCDVAE(cfg.model, lattice_scaler)``.

    The lattice scaler (fitted on the training split) lives inside the module's state dict (extra state), so a
    checkpoint holds everything needed to sample.
    """

    #: the family of samplers this model runs (:data:`dpcdvae.diffusion.samplers.SAMPLERS`) and its default
    sampler_family: str = "ddpm"
    default_sampler: str = "eq7"

    @property
    def supported_samplers(self) -> tuple[str, ...]:
        """Names of the registered samplers this model runs (every sampler of its family)."""
        return sampler_names(self.sampler_family)

    @classmethod
    def check_sampler(cls, sampler: Union[str, Sampler, None] = None) -> str:
        """The name of ``sampler`` (the model's default when ``None``; an object's :attr:`~Sampler.label`) if this
        model runs it, else a :class:`SamplerError` naming the ones it does. Builds no sampler object."""
        if isinstance(sampler, Sampler):
            name, ok = sampler.label, sampler.family == cls.sampler_family
        else:
            name = cls.default_sampler if sampler is None else sampler
            ok = name in sampler_names(cls.sampler_family)
        if not ok:
            raise SamplerError(f"sampler {name!r}: a {cls.__name__} model samples with "
                               f"{', '.join(sampler_names(cls.sampler_family))}")
        return name

    @classmethod
    def resolve_sampler(cls, sampler: Union[str, Sampler, None] = None) -> Sampler:
        """The sampler object to run: ``sampler`` itself when it is one, else the object its name (the model's
        default when ``None``) stands for, built here once (:func:`~dpcdvae.diffusion.samplers.resolve_sampler`);
        a :class:`SamplerError` when this model does not run it (:meth:`check_sampler`). The public sampling
        methods call it once and pass the object down."""
        name = cls.check_sampler(sampler)  # refuses a name or an object of the other family
        return resolve_sampler(sampler if isinstance(sampler, Sampler) else name)

    def __init__(self, cfg: ModelConfig, lattice_scaler: Optional[LatticeScaler] = None):
        super().__init__()
        if cfg.model != "dpcdvae":
            raise ValueError(f"DPCDVAE got model={cfg.model!r}; use build_model() for the CDVAE baselines")
        self.cfg = cfg
        check_coord_options(cfg)
        enc = cfg.encoder
        self.encoder = CrystalEncoder(
            variant=cfg.variant, latent_dim=cfg.latent_dim, na_encoder=enc.na_encoder, max_atoms=cfg.max_atoms,
            graph=enc.graph, cutoff=enc.cutoff, max_neighbors=enc.max_neighbors,
            output_initializer=enc.output_init,
            dimenet_kwargs=dict(hidden_channels=enc.hidden_channels, num_blocks=enc.num_blocks,
                                int_emb_size=enc.int_emb_size, basis_emb_size=enc.basis_emb_size,
                                out_emb_channels=enc.out_emb_channels, num_spherical=enc.num_spherical,
                                num_radial=enc.num_radial, envelope_exponent=enc.envelope_exponent,
                                num_before_skip=enc.num_before_skip, num_after_skip=enc.num_after_skip,
                                num_output_layers=enc.num_output_layers,
                                checkpoint_blocks=enc.checkpoint_blocks))
        L, H = cfg.latent_dim, cfg.head_hidden
        self.fc_mu = nn.Linear(L, L)
        self.fc_var = nn.Linear(L, L)
        self.fc_num_atoms = _mlp(L, H, cfg.max_atoms + 1)
        self.fc_lattice = _mlp(L, H, 6)
        self.fc_composition = _mlp(L, H, MAX_ATOMIC_NUM)
        self.decoder = GemNetTDenoiser(**gemnet_kwargs(cfg), T=cfg.timesteps)
        self.scheduler = DDPMScheduler(num_train_timesteps=cfg.timesteps, beta_schedule=cfg.beta_schedule)
        sig = torch.exp(torch.linspace(torch.log(torch.tensor(cfg.type_sigma_begin)),
                                       torch.log(torch.tensor(cfg.type_sigma_end)), cfg.type_sigma_levels))
        self.register_buffer("type_sigmas", sig.float())
        self.lattice_scaler = lattice_scaler or LatticeScaler(cfg.lattice_scaler)

    # ------------------------------------------------------------------------------------------------ state
    def get_extra_state(self) -> Any:
        return {"lattice_scaler": self.lattice_scaler.state_dict() if self.lattice_scaler.fitted else None}

    def set_extra_state(self, state: Any) -> None:
        if state and state.get("lattice_scaler") is not None:
            self.lattice_scaler = LatticeScaler.from_state_dict(state["lattice_scaler"])

    @property
    def label(self) -> str:
        """The model's name in tables and figures (``"DP-CDVAE"``, ``"CDVAE"``, ``"CDVAE+Fourier"``)."""
        return "DP-CDVAE"

    @property
    def data_graph(self) -> str:
        """The graph the model's data needs: ``"crystalnn"`` (CDVAE's CrystalNN bonds, precomputed when the data is
        loaded) or ``"none"`` (the encoder builds its radius graph on the fly). Pass it as ``load_split(...,
        graph=model.data_graph)``."""
        return "crystalnn" if self.cfg.encoder.graph == "crystalnn" else "none"

    @property
    def device(self) -> torch.device:
        return self.fc_mu.weight.device

    # ------------------------------------------------------------------------------------------------ VAE
    def encode(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch -> (mu [B,L], logvar [B,L])."""
        h = self.encoder.forward_batch(batch)
        return self.fc_mu(h), self.fc_var(h)

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, generator=None) -> torch.Tensor:
        """Eq. 8 with the standard deviation exp(logvar / 2) (the paper prints exp(logvar); the code uses /2).

        ``logvar`` is bounded above by :data:`LOGVAR_MAX` (10, a standard deviation of 148) for the draw only: the
        untrained DimeNet++ encoder of the ``paper`` presets gives ``logvar`` up to ~49 on real crystals, and
        ``z ~ 1e10`` then made the first training losses ~1e20 and the composition head non-finite at batch 256. A
        trained model, and the ``compact`` preset from its first step (``logvar`` < 1 at init), never reach the
        bound, so their draws are unchanged. The KL term keeps the unbounded ``logvar`` and pushes it down."""
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + torch.exp(0.5 * logvar.clamp(max=LOGVAR_MAX)) * eps

    def decode_stats(self, z: torch.Tensor, num_atoms: Optional[torch.Tensor] = None):
        """z -> (N_a logits [B, max_atoms+1], N_a used [B], lengths [B,3] A, angles [B,3] deg,
        scaled lattice prediction [B,6], composition logits [B,100])."""
        na_logits = self.fc_num_atoms(z)
        if num_atoms is None:
            num_atoms = na_logits.argmax(-1)
        lat_scaled = self.fc_lattice(z)
        lengths, angles = self.lattice_scaler.inverse_transform(lat_scaled, num_atoms.clamp(min=1))
        comp_logits = self.fc_composition(z)
        return na_logits, num_atoms, lengths, angles, lat_scaled, comp_logits

    # ------------------------------------------------------------------------------------------------ training
    def forward(self, batch, epoch: int = 0, generator=None) -> dict:
        """Training losses for a batch (Eq. S1). Returns a dict with ``loss`` and each weighted term's raw value.

        The pieces are methods so that the CDVAE baselines (:mod:`dpcdvae.models.cdvae`) replace only the coordinate term.
        """
        cfg = self.cfg
        v = self._vae_terms(batch, generator)
        types_t, sig = self._perturb_types(batch, v["comp_logits"], generator)
        lattice, ok = self._denoiser_lattice(batch, v["lengths_pred"], v["angles_pred"], epoch)
        loss_coord, type_logits = self._coord_terms(batch, v["z"], types_t, lattice, generator)
        loss_type = self._type_loss(type_logits, batch.atom_types, sig)

        w_coord = cfg.w_coord * (cfg.coord_boost_factor if epoch >= cfg.coord_boost_epoch else 1.0)
        loss = (w_coord * loss_coord + cfg.w_type * loss_type + cfg.w_kld * v["kld"]
                + cfg.w_lattice * v["lattice"] + cfg.w_composition * v["composition"]
                + cfg.w_num_atoms * v["num_atoms"])
        with torch.no_grad():
            na_acc = (v["na_logits"].argmax(-1) == batch.num_atoms).float().mean()
            type_acc = (type_logits.argmax(-1) == batch.atom_types - 1).float().mean()
        return {"loss": loss, "coord": loss_coord, "type": loss_type, "kld": v["kld"], "lattice": v["lattice"],
                "composition": v["composition"], "num_atoms": v["num_atoms"], "num_atoms_acc": na_acc,
                "type_acc": type_acc, "lattice_fallback": 1.0 - ok.float().mean(),
                "val_loss": loss_coord + 0.1 * loss_type}

    def _vae_terms(self, batch, generator=None) -> dict:
        """Encoder -> z (Eq. 8) -> heads, and the N_a (CE), lattice (MSE, scaled), composition (CE) and KL losses."""
        num_atoms = batch.num_atoms
        mu, logvar = self.encode(batch)
        z = self.reparameterize(mu, logvar, generator)
        na_logits, _, lengths_pred, angles_pred, lat_scaled, comp_logits = self.decode_stats(z, num_atoms)
        lat_target = self.lattice_scaler.transform(batch.lengths, batch.angles, num_atoms).to(lat_scaled)
        return {"z": z, "na_logits": na_logits, "lengths_pred": lengths_pred, "angles_pred": angles_pred,
                "comp_logits": comp_logits,
                "num_atoms": F.cross_entropy(na_logits, num_atoms),
                "lattice": F.mse_loss(lat_scaled, lat_target),
                "composition": F.cross_entropy(comp_logits[batch.batch], batch.atom_types - 1),
                "kld": torch.mean(-0.5 * torch.sum(1 + logvar - mu ** 2 - logvar.exp(), dim=1))}

    def _perturb_types(self, batch, comp_logits: torch.Tensor, generator=None):
        """Eq. 9 as implemented: Z_t ~ Multinomial(onehot(Z) + sigma'_s softmax(A_z)), s drawn per crystal.
        Returns (Z_t [N], sigma' per atom [N])."""
        atom_batch = batch.batch
        s = torch.randint(0, self.cfg.type_sigma_levels, (batch.num_graphs,), device=comp_logits.device,
                          generator=generator)
        sig = self.type_sigmas[s][atom_batch]
        comp_probs = F.softmax(comp_logits.detach(), dim=-1)[atom_batch]
        probs = F.one_hot(batch.atom_types - 1, MAX_ATOMIC_NUM).to(comp_probs) + sig[:, None] * comp_probs
        types_t = torch.multinomial(probs, 1, generator=generator).squeeze(-1) + 1
        swap = getattr(self.cfg, "type_swap_prob", 0.0)
        if swap > 0.0 and self.training:
            types_t = swap_two_types(types_t, batch.atom_types, atom_batch, batch.num_graphs, swap, generator)
        return types_t, sig

    def _denoiser_lattice(self, batch, lengths_pred, angles_pred, epoch: int):
        """The lattice fed to the denoiser: the true one while teacher forcing, else the predicted one.

        An early, untrained lattice head can predict degenerate cells (zero volume, needle-thin): those crystals fall
        back to the true lattice for this step (reported as ``lattice_fallback``). Returns (lattice, ok [B])."""
        lattice = lattice_params_to_matrix(batch.lengths, batch.angles)
        ok = torch.ones(batch.num_graphs, dtype=torch.bool, device=lattice.device)
        if epoch >= self.cfg.teacher_forcing_epochs:
            pred = lattice_params_to_matrix(lengths_pred, angles_pred)
            ok = torch.isfinite(pred).all(-1).all(-1) & (_min_spacing(pred.detach()) >= MIN_SPACING)
            lattice = torch.where(ok[:, None, None], pred, lattice)
        return lattice, ok

    def _coord_terms(self, batch, z, types_t, lattice, generator=None):
        """DDPM on fractional coordinates (Eqs. 2, 3, 10): returns (coordinate loss, type logits [N,100]).

        ``cfg.eps_target="wrapped"`` trains on the noise relative to the wrapped input (:func:`wrapped_eps_target`).
        With ``cfg.eq7_consistency_prob > 0`` a random share of the crystals is replaced by Eq. 7-consistency
        examples (:func:`eq7_consistency_inputs`); the loss is reduced by :func:`coord_loss`."""
        cfg = self.cfg
        B, atom_batch = batch.num_graphs, batch.batch
        t = torch.randint(1, cfg.timesteps + 1, (B,), device=z.device, generator=generator)
        x0 = batch.frac_coords
        eps = torch.randn(x0.shape, device=z.device, dtype=x0.dtype, generator=generator)
        if cfg.recenter:
            x0 = _recenter(x0, atom_batch, B)
            eps = _recenter(eps, atom_batch, B)
        x_t = self.scheduler.add_noise(x0, t[atom_batch], eps)
        frac_t = wrap(x_t)
        if getattr(cfg, "eps_target", "unwrapped") == "wrapped":
            eps = wrapped_eps_target(self.scheduler, eps, x_t, frac_t, t[atom_batch])
        prob = getattr(cfg, "eq7_consistency_prob", 0.0)
        if prob > 0.0 and self.training:
            frac_t, eps, t = eq7_consistency_inputs(
                self.scheduler, x0, frac_t, eps, t, atom_batch, prob, cfg.eq7_consistency_t,
                cfg.eq7_consistency_noise, generator=generator,
                post=(lambda v: _recenter(v, atom_batch, B)) if cfg.recenter else None)
        eps_pred, type_logits = self.decoder(frac_t, types_t, z, t, lattice, atom_batch, batch.num_atoms)
        return coord_loss(eps_pred, eps, atom_batch, B, getattr(cfg, "coord_loss", "mean")), type_logits

    def _type_loss(self, type_logits, atom_types, sig):
        """Type loss: ``per_atom`` CE / sigma' per atom (paper intent), ``code`` the published code's broadcast
        form mean(1/sigma') x mean(CE), or ``ce`` the plain per-atom CE (all noise levels weighted alike)."""
        ce = F.cross_entropy(type_logits, atom_types - 1, reduction="none")
        if self.cfg.type_loss == "per_atom":
            return (ce / sig).mean()
        if self.cfg.type_loss == "code":
            # the published code's broadcast bug: an N x N matrix whose mean is mean(1/sigma') * mean(CE)
            return (1.0 / sig).mean() * ce.mean()
        if self.cfg.type_loss == "ce":
            # every noise level weighted alike (the published code's weighting up to its constant factor)
            return ce.mean()
        raise ValueError(f"unknown type_loss {self.cfg.type_loss!r}")

    # ------------------------------------------------------------------------------------------------ sampling
    def _initial_types(self, comp_probs: torch.Tensor, num_atoms: torch.Tensor, generator=None) -> torch.Tensor:
        """Initial Z_T from the composition head (``cfg.initial_types``); see :func:`initial_type_counts`."""
        method = getattr(self.cfg, "initial_types", "round_residual")
        out = []
        for p, n in zip(comp_probs, num_atoms.tolist()):
            if n <= 0:
                continue
            counts = initial_type_counts(p, n, method=method, generator=generator)
            types = torch.repeat_interleave(torch.arange(p.numel(), device=p.device), counts) + 1
            # the order of the atoms carries no meaning (random initial positions); shuffle as the published code
            out.append(types[torch.randperm(n, generator=generator, device=p.device)])
        if not out:
            return torch.zeros(0, dtype=torch.long, device=comp_probs.device)
        return torch.cat(out)

    def _decode_for_sampling(self, z: torch.Tensor, num_atoms=None, generator=None, atom_types=None,
                             lengths=None, angles=None):
        """Heads -> what the reverse process starts from: (N_a [B] (>= 0), lengths, angles, lattice [B,3,3] for the
        network, flags [B] (why a crystal is degenerate, "" if fine), batch vector, initial types Z_T).
        ``lengths`` / ``angles`` ([B, 3], A / degrees, both or neither) replace the lattice head's prediction.

        Degenerate crystals (N_a = 0, volume < 0.1 A^3, interplanar spacing < MIN_SPACING) are flagged, and their
        lattice is replaced by a 10 A cube for the network calls only, so they never crash the batch."""
        B, dev = z.shape[0], z.device
        if (lengths is None) != (angles is None):
            raise ValueError("give both lengths and angles to force the lattice, or neither")
        na_given = None if num_atoms is None else torch.as_tensor(num_atoms, device=dev).long()
        if lengths is None:
            _, na, lengths, angles, _, comp_logits = self.decode_stats(z, na_given)
        else:  # the lattice head (and its scaler) is not needed
            na = self.fc_num_atoms(z).argmax(-1) if na_given is None else na_given
            comp_logits = self.fc_composition(z)
            lengths = torch.as_tensor(lengths, device=dev, dtype=z.dtype).reshape(B, 3)
            angles = torch.as_tensor(angles, device=dev, dtype=z.dtype).reshape(B, 3)
        flags = ["N_a = 0" if n <= 0 else "" for n in na.tolist()]
        na_run = na.clamp(min=0)
        lattice = lattice_params_to_matrix(lengths, angles)
        vol = torch.linalg.det(lattice)
        spacing = _min_spacing(lattice)
        for b in range(B):
            if not flags[b] and (not torch.isfinite(vol[b]) or vol[b] < 0.1):
                flags[b] = f"volume {float(vol[b]):.3g} A^3 < 0.1"
            elif not flags[b] and not spacing[b] >= MIN_SPACING:
                flags[b] = f"degenerate lattice (interplanar spacing {float(spacing[b]):.3g} A)"
        bad = ~(torch.isfinite(vol) & (vol >= 0.1) & (spacing >= MIN_SPACING))
        if bad.any():
            lattice = torch.where(bad[:, None, None], 10.0 * torch.eye(3, device=dev, dtype=lattice.dtype), lattice)
        atom_batch = batch_from_num_atoms(na_run)
        if atom_types is not None:
            types = torch.as_tensor(atom_types, device=dev).long()
            if types.numel() != int(na_run.sum()):
                raise ValueError(f"atom_types holds {types.numel()} atoms; num_atoms sums to {int(na_run.sum())}")
        else:
            types = self._initial_types(F.softmax(comp_logits, dim=-1), na_run, generator)
        return na_run, lengths, angles, lattice, flags, atom_batch, types

    @torch.no_grad()
    def sample_from_latent(self, z: torch.Tensor, sampler: Union[str, Sampler, None] = None,
                           steps: Optional[int] = None,
                           generator: Optional[torch.Generator] = None, num_atoms: Optional[torch.Tensor] = None,
                           trajectory_every: Optional[int] = None, ids: Optional[Sequence[str]] = None,
                           progress: bool = False,
                           atom_types: Optional[torch.Tensor] = None, lengths: Optional[torch.Tensor] = None,
                           angles: Optional[torch.Tensor] = None, forced_types: str = "fixed") -> SampleOutput:
        """Decode latents ``z [B, L]`` into crystals by running the reverse diffusion.

        Args:
            sampler: a name, ``"eq7"`` (paper; the default, ``None``), ``"eq6"`` (standard DDPM, Table S1),
                ``"strided_eq7"`` (Eq. 7 on a sub-sequence of steps: the few-step sampler) or ``"ddim"`` (alias
                ``"strided"``: DDIM on a sub-sequence), or a sampler object with its options, e.g.
                ``get_sampler("ddim", eta=0.5)``; see :mod:`dpcdvae.diffusion.samplers`.
            steps: number of network calls for the strided samplers (<= T), or an explicit sequence of steps to
                call the network at (e.g. a stability probe); ignored by eq6/eq7 (always T).
            num_atoms: force N_a per crystal instead of the N_a head's argmax.
            trajectory_every: record r_t (unwrapped) and pi(r_t) every k steps.
            atom_types: force the atom types (atomic numbers, flat ``[sum N_a]`` in crystal order; needs
                ``num_atoms``): Z_T is these types and they stay fixed during the reverse process (structure
                prediction from a composition, :meth:`predict_structure`).
            forced_types: with ``atom_types``: ``"fixed"`` (they stay on the atoms they start on) or ``"assign"``
                (at every step the type head re-assigns each crystal's multiset of forced types to its atoms,
                :func:`assign_multiset`; the composition stays exact).
            lengths, angles: force the lattice (``[B, 3]``, Angstrom and degrees) instead of the lattice head's
                prediction; only the coordinates (and types) are then denoised.
        """
        smp = self.resolve_sampler(sampler)
        cfg = self.cfg
        B = z.shape[0]
        dev = z.device
        if atom_types is not None and num_atoms is None:
            raise ValueError("atom_types needs num_atoms")
        na_run, lengths, angles, lattice, flags, atom_batch, types = self._decode_for_sampling(
            z, num_atoms, generator, atom_types=atom_types, lengths=lengths, angles=angles)
        N = int(na_run.sum())
        x = torch.randn(N, 3, device=dev, generator=generator, dtype=z.dtype)
        if cfg.recenter:
            x = _recenter(x, atom_batch, B)

        state = {"types": types}
        if forced_types not in ("fixed", "assign"):
            raise ValueError(f"forced_types must be 'fixed' or 'assign', got {forced_types!r}")
        type_update = forced_types if atom_types is not None else getattr(cfg, "type_update", "argmax")
        if atom_types is None and type_update not in ("argmax", "fixed"):
            raise ValueError(f"model.type_update must be 'argmax' or 'fixed', got {type_update!r}")

        layout = padded_layout(atom_batch, B) if type_update == "assign" else None

        def eps_fn(x_wrapped: torch.Tensor, t_atoms: torch.Tensor) -> torch.Tensor:
            t = torch.full((B,), int(t_atoms[0]), device=dev, dtype=torch.long)
            eps_pred, logits = self.decoder(x_wrapped, state["types"], z, t, lattice, atom_batch, na_run)
            if type_update == "argmax":
                state["types"] = logits.argmax(-1) + 1  # types reset to argmax(A_theta) every step (paper)
            elif type_update == "assign":
                state["types"] = assign_multiset(logits, state["types"], atom_batch, B, layout=layout)
            if progress_bar is not None:
                progress_bar.update(1)
            return eps_pred

        post = (lambda v: _recenter(v, atom_batch, B)) if cfg.recenter else None
        timesteps = smp.timesteps(self.scheduler, steps, strict=False)  # eq6/eq7 ignore steps: always T
        n_calls = len(timesteps)
        progress_bar = None
        if progress and N > 0:
            from ..utils.progress import progress_bar as tqdm
            progress_bar = tqdm(total=n_calls, desc=f"sampling ({smp.label})", unit="network call", leave=False)
        traj = None
        if N > 0:
            res = sample_loop(self.scheduler, x, eps_fn, sampler=smp, steps=timesteps, generator=generator,
                              return_trajectory_every=trajectory_every, post_step=post)
            frac, traj = res if trajectory_every else (res, None)
        else:
            frac = wrap(x)
        if progress_bar is not None:
            progress_bar.close()
        if traj is not None:
            traj = {"t": traj.timesteps, "unwrapped": torch.stack(traj.x), "wrapped": torch.stack(traj.x_wrapped)}
        return self._sample_output(frac, state["types"], lengths, angles, na_run, flags, ids, traj,
                                   meta={"sampler": smp.label, "steps": n_calls})

    @staticmethod
    def _sample_output(frac, types, lengths, angles, na_run, flags: list, ids, traj: Optional[dict],
                       meta: dict) -> "SampleOutput":
        """Shared end of every sampler: build the Structures, flag the ones that cannot be built, move tensors to
        the CPU and complete the trajectory dict with the cell (``traj`` may be ``None``)."""
        structures = tensors_to_structures(frac, types, lengths, angles, na_run)
        for b, s in enumerate(structures):
            if s is None and not flags[b]:
                flags[b] = "could not build a structure"
        if traj is not None:
            traj.update({"num_atoms": na_run.cpu(), "lengths": lengths.cpu(), "angles": angles.cpu()})
        return SampleOutput(structures=[None if f else s for s, f in zip(structures, flags)],
                            frac_coords=frac.cpu(), atom_types=types.cpu(), lengths=lengths.cpu(),
                            angles=angles.cpu(), num_atoms=na_run.cpu(), flags=flags,
                            ids=list(ids) if ids is not None else [f"gen-{i}" for i in range(len(flags))],
                            trajectory=traj, meta=meta)

    @torch.no_grad()
    def reconstruct(self, batch, sampler: Union[str, Sampler, None] = None, steps: Optional[int] = None, seed: Optional[int] = None,
                    use_mean: bool = False, trajectory_every: Optional[int] = None, progress: bool = False
                    ) -> SampleOutput:
        """Reconstruct the crystals of a batch: z from the encoder posterior (sampled, as the published code;
        ``use_mean=True`` takes mu), N_a, lattice and types predicted, coordinates denoised."""
        gen = _generator(seed, self.device)
        batch = batch.to(self.device)
        mu, logvar = self.encode(batch)
        z = mu if use_mean else self.reparameterize(mu, logvar, gen)
        ids = getattr(batch, "material_id", None)
        if ids is None:
            ids = [f"recon-{i}" for i in range(batch.num_graphs)]
        return self.sample_from_latent(z, sampler=sampler, steps=steps, generator=gen, ids=ids,
                                       trajectory_every=trajectory_every, progress=progress)

    def predict_structure(self, composition, n: int = 20, num_atoms: Optional[int] = None, latent: str = "search",
                          sampler: Union[str, Sampler, None] = None, steps: Optional[int] = None,
                          seed: Optional[int] = 0, **kwargs) -> SampleOutput:
        """Structure prediction from a composition: ``n`` candidates with exactly ``composition`` (e.g. ``"SrTiO3"``;
        N_a and atom types forced, lattice and coordinates from the model). ``latent``: ``"search"`` (z moved so
        that the N_a and composition heads agree with the request) or ``"prior"`` (z ~ N(0, I)); see
        :mod:`dpcdvae.models.csp`."""
        from .csp import predict_structure

        return predict_structure(self, composition, n=n, num_atoms=num_atoms, latent=latent, sampler=sampler,
                                 steps=steps, seed=seed, **kwargs)

    @torch.no_grad()
    def generate(self, n: int, sampler: Union[str, Sampler, None] = None, steps: Optional[int] = None, seed: Optional[int] = None,
                 num_atoms: Optional[Sequence[int]] = None, batch_size: int = 512,
                 trajectory_every: Optional[int] = None, progress: bool = False) -> SampleOutput:
        """Generate ``n`` crystals from z ~ N(0, I). Batched internally (``batch_size`` crystals per pass).
        ``sampler``: a name or a sampler object (:meth:`sample_from_latent`), resolved once for all batches."""
        sampler = self.resolve_sampler(sampler)
        gen = _generator(seed, self.device)
        outs = []
        for start in range(0, n, batch_size):
            m = min(batch_size, n - start)
            z = torch.randn(m, self.cfg.latent_dim, generator=gen, device=self.device)
            na = None if num_atoms is None else torch.as_tensor(list(num_atoms)[start:start + m])
            out = self.sample_from_latent(z, sampler=sampler, steps=steps, generator=gen, num_atoms=na,
                                          ids=[f"gen-{start + i}" for i in range(m)],
                                          trajectory_every=trajectory_every, progress=progress)
            outs.append(out)
        return concat_outputs(outs)


def _generator(seed: Optional[int], device) -> Optional[torch.Generator]:
    if seed is None:
        return None
    g = torch.Generator(device=device)
    g.manual_seed(int(seed))
    return g
