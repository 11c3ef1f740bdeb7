"""Crystal structure prediction from a composition (CSP mode): the composition is given, the model supplies the
lattice and the coordinates.

A DP-CDVAE decodes a latent ``z`` into N_a, a lattice, a composition and, through the reverse diffusion, the
coordinates. In CSP mode N_a and the composition are forced to the request (by default the type head re-assigns
the requested types to the atoms at every step of the reverse process, ``forced_types="assign"``; ``"fixed"`` keeps
them on the random sites they start on) and ``z`` is chosen in one of two ways:

* ``latent="prior"``: z ~ N(0, I), as in generation. The lattice head then speaks for whatever crystal z encodes,
  which may not be one of the requested composition.
* ``latent="search"``: start from prior draws and move z by gradient ascent on
  ``log p(N_a | z) + N_a * sum_e f_e log p(e | z) - |z|^2 / 2`` (the N_a head, the composition head at the requested
  element fractions ``f_e``, and the prior), so that the heads *agree* with the request before decoding: the
  lattice then belongs to a latent that encodes this composition. Only the small MLP heads are evaluated
  (milliseconds), not the diffusion decoder.

N_a: ``num_atoms`` when given (a multiple of the formula's atom count, at most ``max_atoms``), else the multiple
of the reduced formula that the N_a head finds most probable for each z.

Requests outside what the model was trained on are refused before any sampling (:mod:`dpcdvae.models.scope`, one
line: :class:`~dpcdvae.models.scope.OutOfScopeError`): an element that never occurs in its training crystals
(``Og2``, ``NaCl`` on Perov-5) or a formula with more atoms than ``max_atoms`` (``Na100Cl100``: 200 > 20). A
request whose cell sizes never occur in training (NaCl cells on Perov-5, all of whose cells hold 5 atoms) is sampled
with one warning line.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from ..structures.crystal import MAX_ATOMIC_NUM
from .scope import cell_size_warning, check_composition, model_scope

# local: heavy -- pymatgen is imported inside the two composition parsers; the sampling path imports this module

__all__ = ["LATENT_MODES", "parse_composition", "allowed_num_atoms", "search_latent", "predict_structure",
           "predict_structures"]

LATENT_MODES = ("prior", "search")


def parse_composition(composition) -> dict[int, int]:
    """``"SrTiO3"``, ``"Sr2Ti2O6"``, a pymatgen ``Composition`` or ``{"Sr": 1, ...}`` -> ``{Z: count}`` of the
    *reduced* formula (atomic numbers). ``ValueError`` for unknown elements, fractional amounts or an empty
    formula."""
    import warnings

    from pymatgen.core import Composition, Element

    try:
        comp = Composition(composition)
    except Exception as exc:
        raise ValueError(f"composition {composition!r}: not a chemical formula ({exc})") from None
    if len(comp) == 0:
        raise ValueError(f"composition {composition!r}: no elements")
    with warnings.catch_warnings():  # pymatgen warns about elements without electronegativity (Og, ...)
        warnings.simplefilter("ignore", UserWarning)
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


def _allowed_mask(allowed: Sequence[Sequence[int]], n_classes: int, device) -> torch.Tensor:
    """``[B, n_classes]`` bool: which N_a each row may take."""
    mask = torch.zeros(len(allowed), n_classes, dtype=torch.bool, device=device)
    for b, a in enumerate(allowed):
        mask[b, list(a)] = True
    return mask


def _na_choice(na_logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per z, the allowed N_a with the highest N_a-head logit."""
    return na_logits.masked_fill(~mask, float("-inf")).argmax(-1)


def _fractions(counts: Sequence[dict[int, int]], device, dtype) -> torch.Tensor:
    """``[B, MAX_ATOMIC_NUM]`` element fractions of each requested reduced formula."""
    frac = torch.zeros(len(counts), MAX_ATOMIC_NUM, device=device, dtype=dtype)
    for b, c in enumerate(counts):
        n_f = sum(c.values())
        for zz, k in c.items():
            frac[b, zz - 1] = k / n_f
    return frac


def _objective(model, z: torch.Tensor, na: torch.Tensor, frac: torch.Tensor) -> torch.Tensor:
    """Per z: log p(N_a = na | z) + na * sum_e frac_e log p(e | z) - |z|^2 / 2."""
    na_lp = torch.log_softmax(model.fc_num_atoms(z), -1).gather(1, na[:, None]).squeeze(1)
    comp_lp = torch.log_softmax(model.fc_composition(z), -1)
    return na_lp + na.to(z.dtype) * (comp_lp * frac).sum(-1) - 0.5 * (z * z).sum(-1)


def _comp_ce(model, z: torch.Tensor, frac: torch.Tensor) -> torch.Tensor:
    return -(torch.log_softmax(model.fc_composition(z), -1) * frac).sum(-1)


def search_latent(model, z0: torch.Tensor, counts: Sequence[dict[int, int]], allowed: Sequence[Sequence[int]],
                  steps: int = 100, lr: float = 0.05) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Move each latent of ``z0 [B, L]`` uphill on ``log p(N_a | z) + N_a sum_e f_e log p(e | z) - |z|^2 / 2`` with
    Adam (``steps`` steps, rate ``lr``); row ``b`` asks for the reduced formula ``counts[b]`` with an N_a from
    ``allowed[b]``, chosen by the head at the start and then held.

    Returns ``(z, N_a [B], info)`` with ``info = {"objective_start", "objective_end", "comp_ce_start",
    "comp_ce_end"}`` (lists of B; ``comp_ce``: the composition head's cross-entropy against the requested fractions,
    ``-sum_e f_e log p(e | z)`` in nats per atom, whose floor is the entropy of the fractions)."""
    frac = _fractions(counts, z0.device, z0.dtype)
    with torch.no_grad():
        logits = model.fc_num_atoms(z0)
        na = _na_choice(logits, _allowed_mask(allowed, logits.shape[-1], z0.device))
        start, ce0 = _objective(model, z0, na, frac), _comp_ce(model, z0, frac)
    z = z0.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)
    with torch.enable_grad():
        for _ in range(int(steps)):
            opt.zero_grad()
            (-_objective(model, z, na, frac).sum()).backward()
            opt.step()
    z = z.detach()
    with torch.no_grad():
        end, ce1 = _objective(model, z, na, frac), _comp_ce(model, z, frac)
    return z, na, {"objective_start": start.tolist(), "objective_end": end.tolist(),
                   "comp_ce_start": ce0.tolist(), "comp_ce_end": ce1.tolist()}


def _forced_types(counts: Sequence[dict[int, int]], na: torch.Tensor, generator=None) -> torch.Tensor:
    """Flat atom types: crystal ``b`` has ``na[b]`` atoms, exactly ``counts[b]`` x (na[b] / formula atoms),
    shuffled (the order carries no meaning)."""
    out = []
    for c, n in zip(counts, na.tolist()):
        k = n // sum(c.values())
        types = torch.tensor([zz for zz, m in c.items() for _ in range(m * k)], dtype=torch.long)
        out.append(types[torch.randperm(len(types), generator=generator)])
    return torch.cat(out)


def _check_model(model) -> None:
    if getattr(model.cfg, "model", "dpcdvae") != "dpcdvae":
        raise ValueError(f"CSP mode needs a DP-CDVAE model; this checkpoint is a {model.cfg.model} model")


def predict_structures(model, compositions: Sequence, num_atoms: Optional[Sequence[Optional[int]]] = None,
                       latent: str = "search", sampler="eq7", steps: Optional[int] = None,
                       seed: Optional[int] = 0, batch_size: int = 256, search_steps: int = 100,
                       search_lr: float = 0.05, ids: Optional[Sequence[str]] = None, progress: bool = False,
                       forced_types: str = "assign"):
    """One candidate per entry of ``compositions`` (each with its own ``num_atoms`` or None), batched: the
    benchmark's form of :func:`predict_structure`. Returns a ``SampleOutput`` with ``meta["csp"]`` per candidate
    (``composition``, ``num_atoms`` and, for ``"search"``, ``comp_ce_start`` / ``comp_ce_end``).
    ``forced_types``: ``"assign"`` (default: the type head re-assigns the requested types to sites at every step;
    the composition stays exact) or ``"fixed"`` (they stay on the random sites they start on; 41.66 vs 48.22 % on the
    Perov-5 test split with the 2026-12-06 ``perov_5``, RESULTS.md). ``sampler``: a name or a sampler object
    (:meth:`~dpcdvae.models.DPCDVAE.sample_from_latent`), resolved once for all batches."""
    from pymatgen.core import Composition, Element

    _check_model(model)
    sampler = model.resolve_sampler(sampler)
    if latent not in LATENT_MODES:
        raise ValueError(f"latent must be one of {LATENT_MODES}, got {latent!r}")
    if not len(compositions):
        raise ValueError("no compositions given")
    num_atoms = list(num_atoms) if num_atoms is not None else [None] * len(compositions)
    counts = [parse_composition(c) for c in compositions]
    scope = model_scope(model)
    for comp, n in dict.fromkeys(zip(map(str, compositions), num_atoms)):
        check_composition(scope, comp, n)
    for comp, c in zip(compositions, counts):
        if max(c) > MAX_ATOMIC_NUM:
            raise ValueError(f"composition {comp!r}: the model knows elements Z <= {MAX_ATOMIC_NUM}")
    allowed = [allowed_num_atoms(c, int(model.cfg.max_atoms), n) for c, n in zip(counts, num_atoms)]
    dev = model.device
    gen = torch.Generator(device=dev)
    gen.manual_seed(0 if seed is None else int(seed))
    cpu_gen = torch.Generator().manual_seed(0 if seed is None else int(seed))
    outs, info_all = [], {"objective_start": [], "objective_end": [], "comp_ce_start": [], "comp_ce_end": []}
    for start in range(0, len(counts), batch_size):
        c_b, a_b = counts[start:start + batch_size], allowed[start:start + batch_size]
        z = torch.randn(len(c_b), model.cfg.latent_dim, generator=gen, device=dev)
        if latent == "search":
            z, na, info = search_latent(model, z, c_b, a_b, steps=search_steps, lr=search_lr)
            for k in info_all:
                info_all[k] += info[k]
        else:
            with torch.no_grad():
                logits = model.fc_num_atoms(z)
                na = _na_choice(logits, _allowed_mask(a_b, logits.shape[-1], dev))
        types = _forced_types(c_b, na.cpu(), cpu_gen).to(dev)
        names = (list(ids[start:start + len(c_b)]) if ids is not None
                 else [f"csp-{start + i}" for i in range(len(c_b))])
        outs.append(model.sample_from_latent(z, sampler=sampler, steps=steps, generator=gen, num_atoms=na,
                                             atom_types=types, ids=names, progress=progress,
                                             forced_types=forced_types))
    out = outs[0].concat(outs)
    formulas = [Composition({Element.from_Z(zz).symbol: k for zz, k in c.items()}).reduced_formula for c in counts]
    out.meta = {**out.meta, "csp": {"latent": latent, "composition": formulas,
                                    "num_atoms": [int(x) for x in out.num_atoms.tolist()],
                                    **({"search_steps": search_steps, "search_lr": search_lr, **info_all}
                                       if latent == "search" else {})}}
    return out


def predict_structure(model, composition, n: int = 20, num_atoms: Optional[int] = None, latent: str = "search",
                      sampler="eq7", steps: Optional[int] = None, seed: Optional[int] = 0,
                      batch_size: int = 256, search_steps: int = 100, search_lr: float = 0.05,
                      progress: bool = False, forced_types: str = "assign"):
    """``n`` candidate crystals of exactly ``composition`` (N_a and types forced; lattice and coordinates from the
    model). See the module docstring for ``latent`` (``"search"``, default, or ``"prior"``).

    Returns a :class:`~dpcdvae.models.SampleOutput` (ids ``csp-<i>``) whose ``meta["csp"]`` records the request
    (``composition`` as one reduced formula), the latent mode, N_a per candidate, the N_a the request allows and,
    for ``"search"``, the composition cross-entropy before and after the search. ``forced_types``: see
    :func:`predict_structures`."""
    import sys

    _check_model(model)
    if n < 1:
        raise ValueError(f"n = {n}: at least one candidate")
    counts = parse_composition(composition)
    scope = model_scope(model)
    check_composition(scope, composition, num_atoms)
    allowed = allowed_num_atoms(counts, int(model.cfg.max_atoms), num_atoms)
    warning = cell_size_warning(scope, allowed)
    if warning:
        print(f"[dpcdvae] {warning}", file=sys.stderr, flush=True)
    out = predict_structures(model, [composition] * n, [num_atoms] * n, latent=latent, sampler=sampler,
                             steps=steps, seed=seed, batch_size=batch_size, search_steps=search_steps,
                             search_lr=search_lr, progress=progress, forced_types=forced_types)
    out.meta["csp"].update(composition=out.meta["csp"]["composition"][0], allowed_num_atoms=allowed,
                           model_scope=scope, **({"warning": warning} if warning else {}))
    return out
