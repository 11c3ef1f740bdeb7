"""Crystal structure prediction from a composition (CSP mode): the composition is given, the model supplies the
lattice and the coordinates.

A DP-CDVAE decodes a latent ``z`` into N_a, a lattice, a composition and, through the reverse diffusion, the
coordinates. In CSP mode N_a and the atom types are forced to the request (the types stay fixed during the
reverse process) and ``z`` is chosen in one of two ways:

* ``latent="prior"``: z ~ N(0, I), as in generation. The lattice head then speaks for whatever crystal z encodes,
  which may not be one of the requested composition.
* ``latent="search"``: start from prior draws and move z by gradient ascent on
  ``log p(N_a | z) + N_a * sum_e f_e log p(e | z) - |z|^2 / 2`` (the N_a head, the composition head at the requested
  element fractions ``f_e``, and the prior), so that the heads *agree* with the request before decoding: the
  lattice then belongs to a latent that encodes this composition. Only the small MLP heads are evaluated
  (milliseconds), not the diffusion decoder.

N_a: ``num_atoms`` when given (a multiple of the formula's atom count, at most ``max_atoms``), else the multiple
of the reduced formula that the N_a head finds most probable for each z.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from .crystal import MAX_ATOMIC_NUM

__all__ = ["LATENT_MODES", "parse_composition", "allowed_num_atoms", "search_latent", "predict_structure"]

LATENT_MODES = ("prior", "search")


def parse_composition(composition) -> dict[int, int]:
    """``"SrTiO3"``, ``"Sr2Ti2O6"``, a pymatgen ``Composition`` or ``{"Sr": 1, ...}`` -> ``{Z: count}`` of the
    *reduced* formula (atomic numbers). ``ValueError`` for unknown elements, fractional amounts or an empty
    formula."""
    from pymatgen.core import Composition, Element

    try:
        comp = Composition(composition)
    except Exception as exc:
        raise ValueError(f"composition {composition!r}: not a chemical formula ({exc})") from None
    if len(comp) == 0:
        raise ValueError(f"composition {composition!r}: no elements")
    red, _ = comp.get_reduced_composition_and_factor()
    out: dict[int, int] = {}
    for el, amt in red.items():
        if abs(amt - round(amt)) > 1e-6:
            raise ValueError(f"composition {composition!r}: {el} has a fractional amount ({amt:g}); "
                             f"crystals need whole atoms")
        if not isinstance(el, Element):  # pymatgen reads unknown symbols ("Xx") as dummy species
            raise ValueError(f"composition {composition!r}: {el} is not an element")
        out[int(el.Z)] = int(round(amt))
    return out


def allowed_num_atoms(counts: dict[int, int], max_atoms: int, num_atoms: Optional[int] = None) -> list[int]:
    """Atom counts per cell compatible with the reduced formula ``counts``: its multiples up to ``max_atoms``, or
    ``[num_atoms]`` when given (checked). ``ValueError`` says why none is possible."""
    n_f = sum(counts.values())
    if num_atoms is not None:
        if num_atoms < 1 or num_atoms % n_f:
            raise ValueError(f"num_atoms {num_atoms}: must be a positive multiple of the formula's {n_f} atoms")
        if num_atoms > max_atoms:
            raise ValueError(f"num_atoms {num_atoms}: the model builds cells of at most {max_atoms} atoms")
        return [int(num_atoms)]
    allowed = list(range(n_f, max_atoms + 1, n_f))
    if not allowed:
        raise ValueError(f"the reduced formula has {n_f} atoms; the model builds cells of at most {max_atoms}")
    return allowed


def _na_choice(na_logits: torch.Tensor, allowed: Sequence[int]) -> torch.Tensor:
    """Per z, the allowed N_a with the highest N_a-head logit."""
    idx = torch.as_tensor(list(allowed), device=na_logits.device)
    return idx[na_logits[:, idx].argmax(-1)]


def _objective(model, z: torch.Tensor, na: torch.Tensor, frac: torch.Tensor) -> torch.Tensor:
    """Per z: log p(N_a = na | z) + na * sum_e frac_e log p(e | z) - |z|^2 / 2."""
    na_lp = torch.log_softmax(model.fc_num_atoms(z), -1).gather(1, na[:, None]).squeeze(1)
    comp_lp = torch.log_softmax(model.fc_composition(z), -1)
    return na_lp + na.to(z.dtype) * (comp_lp * frac[None, :]).sum(-1) - 0.5 * (z * z).sum(-1)


def search_latent(model, z0: torch.Tensor, counts: dict[int, int], allowed: Sequence[int], steps: int = 100,
                  lr: float = 0.05) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Move each latent of ``z0 [n, L]`` uphill on :func:`_objective` with Adam (``steps`` steps, rate ``lr``).

    N_a is chosen from ``allowed`` by the head at the start and held. Returns ``(z, N_a [n], info)`` with
    ``info = {"objective_start": [n], "objective_end": [n], "comp_ce_start": [n], "comp_ce_end": [n]}``
    (``comp_ce``: the composition head's cross-entropy against the requested fractions, ``-sum_e f_e log p(e | z)``
    in nats per atom; its floor is the entropy of the fractions, reached when the head predicts exactly them)."""
    frac = torch.zeros(MAX_ATOMIC_NUM, device=z0.device, dtype=z0.dtype)
    n_f = sum(counts.values())
    for zz, c in counts.items():
        frac[zz - 1] = c / n_f

    def comp_ce(z):
        return -(torch.log_softmax(model.fc_composition(z), -1) * frac[None, :]).sum(-1)

    with torch.no_grad():
        na = _na_choice(model.fc_num_atoms(z0), allowed)
        start, p0 = _objective(model, z0, na, frac), comp_ce(z0)
    z = z0.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)
    with torch.enable_grad():
        for _ in range(int(steps)):
            opt.zero_grad()
            (-_objective(model, z, na, frac).sum()).backward()
            opt.step()
    z = z.detach()
    with torch.no_grad():
        end, p1 = _objective(model, z, na, frac), comp_ce(z)
    return z, na, {"objective_start": start.tolist(), "objective_end": end.tolist(),
                   "comp_ce_start": p0.tolist(), "comp_ce_end": p1.tolist()}


def _forced_types(counts: dict[int, int], na: torch.Tensor, generator=None) -> torch.Tensor:
    """Flat atom types for crystals of ``na[b]`` atoms, each exactly ``counts`` x (na[b] / formula atoms),
    shuffled per crystal (the order carries no meaning)."""
    n_f = sum(counts.values())
    out = []
    for n in na.tolist():
        k = n // n_f
        types = torch.tensor([zz for zz, c in counts.items() for _ in range(c * k)], dtype=torch.long)
        out.append(types[torch.randperm(len(types), generator=generator)])
    return torch.cat(out)


def predict_structure(model, composition, n: int = 20, num_atoms: Optional[int] = None, latent: str = "search",
                      sampler: str = "eq7", steps: Optional[int] = None, seed: Optional[int] = 0,
                      batch_size: int = 256, search_steps: int = 100, search_lr: float = 0.05,
                      progress: bool = False):
    """``n`` candidate crystals of exactly ``composition`` (N_a and types forced; lattice and coordinates from the
    model). See the module docstring for ``latent`` (``"search"``, default, or ``"prior"``).

    Returns a :class:`~dpcdvae.model.SampleOutput` (ids ``csp-<i>``) whose ``meta["csp"]`` records the request,
    the latent mode, N_a per candidate and, for ``"search"``, the objective before and after the search."""
    from .model import concat_outputs

    if getattr(model.cfg, "model", "dpcdvae") != "dpcdvae":
        raise ValueError(f"CSP mode needs a DP-CDVAE model; this checkpoint is a {model.cfg.model} model")
    if latent not in LATENT_MODES:
        raise ValueError(f"latent must be one of {LATENT_MODES}, got {latent!r}")
    if n < 1:
        raise ValueError(f"n = {n}: at least one candidate")
    counts = parse_composition(composition)
    if max(counts) > MAX_ATOMIC_NUM:
        raise ValueError(f"composition {composition!r}: the model knows elements Z <= {MAX_ATOMIC_NUM}")
    allowed = allowed_num_atoms(counts, int(model.cfg.max_atoms), num_atoms)
    dev = model.device
    gen = torch.Generator(device=dev)
    gen.manual_seed(0 if seed is None else int(seed))
    cpu_gen = torch.Generator().manual_seed(0 if seed is None else int(seed))
    outs, info_all = [], {"objective_start": [], "objective_end": [], "comp_ce_start": [], "comp_ce_end": []}
    for start in range(0, n, batch_size):
        m = min(batch_size, n - start)
        z = torch.randn(m, model.cfg.latent_dim, generator=gen, device=dev)
        if latent == "search":
            z, na, info = search_latent(model, z, counts, allowed, steps=search_steps, lr=search_lr)
            for k in info_all:
                info_all[k] += info[k]
        else:
            with torch.no_grad():
                na = _na_choice(model.fc_num_atoms(z), allowed)
        types = _forced_types(counts, na.cpu(), cpu_gen).to(dev)
        outs.append(model.sample_from_latent(z, sampler=sampler, steps=steps, generator=gen, num_atoms=na,
                                             atom_types=types, ids=[f"csp-{start + i}" for i in range(m)],
                                             progress=progress))
    out = concat_outputs(outs)
    from pymatgen.core import Composition, Element

    formula = Composition({Element.from_Z(zz).symbol: c for zz, c in counts.items()}).reduced_formula
    out.meta = {**out.meta, "csp": {"composition": formula, "latent": latent, "allowed_num_atoms": allowed,
                                    "num_atoms": [int(x) for x in out.num_atoms.tolist()],
                                    **({"search_steps": search_steps, "search_lr": search_lr, **info_all}
                                       if latent == "search" else {})}}
    return out
