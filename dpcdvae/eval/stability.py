"""Is a trained denoiser a stable map under the paper's Eq. 7 sampler? A screen any checkpoint can be put through.

Eq. 7 jumps to the clean-sample estimate ``x0_hat(pi(x_t), t)`` at every step and adds only ``sigma_t`` noise, so
the network at step ``t`` sees an almost clean crystal, 7-10x less noisy than Eq. 2 trained it on. A network for
which the true crystal is not (close to) a fixed point of that map loses structure with every extra call. Three
measurements, all on the same crystals, latents and initial noise:

(a) :func:`step_arms`: reconstruction with strided Eq. 7 (``base`` evenly spaced calls) against the same plus every
    step in a band ``(lo, hi]`` (by default ``(350, 450]``, where the shipped models lost most); a stable network
    scores the same (or better) with the extra calls.
(b) :func:`fixed_point_probe`: start from the true crystal (true lattice and types, ``z`` = posterior mean), repeat
    ``x <- x0_hat(pi(x), t) + sigma_t eps'`` at a fixed ``t`` and measure after 1 and ``K`` repeats how far the atoms
    drifted (RMS, Angstrom), whether the result still matches the truth, and its coordination.
(c) generation coverage (``benchmarks/stability_screen.py --gen N``): COV-R / COV-P of ``N`` samples with Eq. 7
    and with strided Eq. 7 (:func:`dpcdvae.eval.generation.generation_metrics`).

``benchmarks/stability_screen.py`` runs all three and prints one JSON line.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

from ..structures.crystal import lattice_params_to_matrix, tensors_to_structures, wrap
from .reconstruction import reconstruction_metrics

__all__ = ["band_timesteps", "select_indices", "step_arms", "fixed_point_probe", "coordination",
           "min_image_rms"]


def band_timesteps(scheduler, base: int = 100, band: Optional[Sequence[int]] = (350, 450)) -> list[int]:
    """Descending steps of strided Eq. 7 with ``base`` evenly spaced calls plus every step ``t`` with
    ``band[0] < t <= band[1]`` (``band=None``: the strided steps alone)."""
    ts = set(scheduler.make_timesteps(base))
    if band is not None:
        lo, hi = (int(v) for v in band)
        T = scheduler.num_train_timesteps
        if not 0 <= lo < hi <= T:
            raise ValueError(f"band must satisfy 0 <= lo < hi <= {T}, got {list(band)}")
        ts |= set(range(lo + 1, hi + 1))
    return sorted(ts, reverse=True)


def select_indices(num_atoms: Sequence[int], n: int, max_atoms: Optional[int] = None) -> list[int]:
    """Indices of the first ``n`` crystals whose atom count is at most ``max_atoms`` (all counts when ``None``)."""
    out = []
    for i, k in enumerate(int(v) for v in num_atoms):
        if max_atoms is None or k <= max_atoms:
            out.append(i)
            if len(out) == n:
                break
    return out


def step_arms(model, batch, targets: Sequence, arms: dict, seed: int = 0, n_workers: int = 1) -> dict:
    """Reconstruct ``batch`` once per arm with ``strided_eq7`` at the arm's steps; the same ``seed`` gives every
    arm the same ``z`` (sampled from the posterior), initial types and ``x_T``.

    Args:
        batch: a collated batch of the crystals (as :meth:`DPCDVAE.reconstruct` takes).
        targets: their pymatgen ``Structure`` s, in batch order.
        arms: ``{name: descending list of steps}`` (e.g. from :func:`band_timesteps`).
    Returns ``{name: {"calls", "match_rate" (%), "delta_rms", "n_matched", "n_valid", "n"}}``.
    """
    out = {}
    for name, steps in arms.items():
        res = model.reconstruct(batch, sampler="strided_eq7", steps=list(steps), seed=seed)
        m = reconstruction_metrics(res.structures, targets, n_workers=n_workers, progress=False)
        out[name] = {"calls": len(steps), "match_rate": round(m["match_rate"], 2),
                     "delta_rms": None if not np.isfinite(m["delta_rms"]) else round(float(m["delta_rms"]), 4),
                     "n_matched": int(m["n_matched"]), "n_valid": int(m["n_valid"]), "n": int(m["n_targets"])}
    return out


def min_image_rms(frac_a: torch.Tensor, frac_b: torch.Tensor, lattice: torch.Tensor, atom_batch: torch.Tensor,
                  num_graphs: int) -> torch.Tensor:
    """Per-crystal RMS (Angstrom) of the displacement between two sets of fractional coordinates ``[N, 3]`` of the
    same atoms in the same cells ``lattice [B, 3, 3]`` (rows are lattice vectors), up to a global translation;
    ``[B]``. Each atom's displacement is reduced to ``[-1/2, 1/2)`` per fractional axis, the crystal's mean
    displacement (its circular mean per axis: a rigid translation, which the structure matcher ignores too) is
    removed, the result reduced to ``[-1/2, 1/2)`` and made Cartesian (exact minimum image for orthogonal cells, an upper bound otherwise)."""
    d = frac_a - frac_b
    # the rigid translation: the circular mean of the displacements (well defined for shifts near 1/2 too)
    ang = 2.0 * torch.pi * d.double()
    sin = torch.zeros(num_graphs, 3, dtype=ang.dtype, device=d.device).index_add_(0, atom_batch, ang.sin())
    cos = torch.zeros(num_graphs, 3, dtype=ang.dtype, device=d.device).index_add_(0, atom_batch, ang.cos())
    shift = (torch.atan2(sin, cos) / (2.0 * torch.pi)).to(d.dtype)
    d = d - shift[atom_batch]
    d = d - torch.round(d)
    cart = torch.bmm(d.unsqueeze(1).to(lattice.dtype), lattice.index_select(0, atom_batch)).squeeze(1)
    sq = torch.zeros(num_graphs, dtype=cart.dtype, device=cart.device).index_add_(0, atom_batch,
                                                                                 (cart ** 2).sum(-1))
    cnt = torch.bincount(atom_batch, minlength=num_graphs).clamp(min=1).to(cart.dtype)
    return (sq / cnt).sqrt()


def coordination(structure, cutoff: float) -> float:
    """Mean number of neighbours within ``cutoff`` (Angstrom, periodic images included) per atom."""
    centres = structure.get_neighbor_list(cutoff)[0]
    return float(np.bincount(centres, minlength=len(structure)).mean())


def _shortest_distance(structure) -> float:
    """Shortest interatomic distance (Angstrom, periodic images included, an atom's own images too)."""
    for r in (3.0, 6.0, 12.0):
        d = structure.get_neighbor_list(r)[3]
        d = d[d > 1e-8]
        if d.size:
            return float(d.min())
    return float("nan")


@torch.no_grad()
def fixed_point_probe(model, batch, targets: Sequence, t: int, repeats: Sequence[int] = (1, 20), seed: int = 0,
                      n_workers: int = 1, coord_factor: float = 1.2) -> dict:
    """Repeat the Eq. 7 map at a fixed step ``t`` starting from the true crystals.

    ``x <- x0_hat(pi(x), t) + sigma_t eps'`` with the true lattice, the true atom types (kept fixed), ``z`` = the
    posterior mean and the per-crystal mean removed after every step (as the sampler does). ``x`` starts at the
    true (recentred) fractional coordinates.

    Returns ``{repeats_k: {"match_rate" (% of crystals the result matches, StructureMatcher as Table I),
    "rms_drift_A" (mean over crystals of the per-crystal minimum-image RMS displacement from the truth, Angstrom),
    "coordination" (mean over crystals of the mean number of neighbours within coord_factor x the true crystal's
    shortest distance), "coordination_truth"}}`` for every ``k`` in ``repeats``.
    """
    from ..models.dpcdvae import _recenter

    if not 1 <= int(t) <= model.scheduler.num_train_timesteps:
        raise ValueError(f"t must lie in 1..{model.scheduler.num_train_timesteps}, got {t}")
    reps = sorted({int(k) for k in repeats})
    if not reps or reps[0] < 1:
        raise ValueError(f"repeats must be positive integers, got {list(repeats)}")
    dev = model.device
    batch = batch.to(dev)
    gen = torch.Generator(device=dev).manual_seed(int(seed))
    B, atom_batch = batch.num_graphs, batch.batch
    mu, _ = model.encode(batch)
    lattice = lattice_params_to_matrix(batch.lengths, batch.angles)
    types = batch.atom_types
    sched = model.scheduler
    recenter = bool(model.cfg.recenter)
    x0 = _recenter(batch.frac_coords, atom_batch, B) if recenter else batch.frac_coords
    x = x0.clone()
    t_vec = torch.full((B,), int(t), dtype=torch.long, device=dev)
    sigma = float(sched.posterior_std(int(t)))
    cut = [coord_factor * _shortest_distance(s) for s in targets]
    coord_truth = float(np.mean([coordination(s, c) for s, c in zip(targets, cut)]))
    out = {}
    for k in range(1, reps[-1] + 1):
        eps, _ = model.decoder(wrap(x), types, mu, t_vec, lattice, atom_batch, batch.num_atoms)
        noise = torch.randn(x.shape, generator=gen, device=dev, dtype=x.dtype)
        x = sched.predict_x0(eps, int(t), x) + sigma * noise
        if recenter:
            x = _recenter(x, atom_batch, B)
        if k in reps:
            frac = wrap(x)
            structs = tensors_to_structures(frac, types, batch.lengths, batch.angles, batch.num_atoms)
            m = reconstruction_metrics(structs, targets, n_workers=n_workers, progress=False)
            rms = min_image_rms(frac, wrap(x0), lattice, atom_batch, B)
            coords = [coordination(s, c) for s, c in zip(structs, cut) if s is not None]
            out[k] = {"match_rate": round(m["match_rate"], 2), "rms_drift_A": round(float(rms.mean()), 4),
                      "coordination": round(float(np.mean(coords)), 3) if coords else None,
                      "coordination_truth": round(coord_truth, 3)}
    return out
