"""Atom-type helpers of DP-CDVAE: the perturbed-type swap of training (``model.type_swap_prob``), the initial
element counts of the reverse process from the composition head (``model.initial_types``), and the greedy
re-assignment of a crystal's multiset of types to its atoms (``forced_types="assign"``).

Used by :class:`~dpcdvae.models.dpcdvae.DPCDVAE`; the names stay importable from :mod:`dpcdvae.models.dpcdvae`.
Shapes: ``N`` atoms, ``B`` crystals; atomic number Z at index Z - 1 of a type-logit row.
"""
from __future__ import annotations

from typing import Optional

import torch

__all__ = ["INITIAL_TYPES", "swap_two_types", "padded_layout", "assign_multiset", "initial_type_counts"]


INITIAL_TYPES = ("round_residual", "largest_remainder")


def swap_two_types(types: torch.Tensor, true_types: torch.Tensor, atom_batch: torch.Tensor, num_graphs: int,
                   prob: float, generator=None) -> torch.Tensor:
    """Exchange the entries of ``types`` at two atoms of different true element, in a random share of crystals.

    For each crystal, with probability ``prob``, an atom i is drawn uniformly, then an atom j uniformly among the
    atoms whose element in ``true_types`` differs from i's; ``types[i]`` and ``types[j]`` are exchanged. Crystals
    of a single element are left as they are (no such j). The multiset of ``types`` within every crystal is
    preserved. ``atom_batch`` must be sorted (atoms of crystal 0 first, as every batch of the package is).

    Args:
        types: [N] atom types to permute (atomic numbers), e.g. the perturbed Z_t.
        true_types: [N] the true atomic numbers, which decide which pairs count as different.
        atom_batch: [N] crystal index of each atom, sorted.
        num_graphs: number of crystals B.
        prob: per-crystal probability of a swap, in [0, 1].
    Returns a new [N] tensor (``types`` itself is not modified).
    """
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"type_swap_prob must lie in [0, 1], got {prob}")
    out = types.clone()
    if prob == 0.0 or types.numel() == 0:
        return out
    dev = types.device
    counts = torch.bincount(atom_batch, minlength=num_graphs)
    ends = torch.cumsum(counts, 0) - 1
    has = counts > 0
    base = atom_batch.to(torch.float64) * 2.0
    # i: the atom with the largest random score within its crystal
    order = torch.argsort(base + torch.rand(types.shape, device=dev, generator=generator, dtype=torch.float64))
    i = order[ends.clamp(min=0)]
    ti = true_types[i]
    # j: the largest random score among atoms of another element (those get +1, so they win whenever one exists)
    other = (true_types != ti[atom_batch]).to(torch.float64)
    order = torch.argsort(base + other + torch.rand(types.shape, device=dev, generator=generator,
                                                    dtype=torch.float64))
    j = order[ends.clamp(min=0)]
    flag = torch.rand(num_graphs, device=dev, generator=generator) < prob
    do = flag & has & (true_types[j] != ti)
    i, j = i[do], j[do]
    out[i], out[j] = types[j], types[i]
    return out


def padded_layout(atom_batch: torch.Tensor, num_graphs: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The atoms of a sorted batch laid out per crystal: ``(idx [B, A], valid [B, A])`` with ``A`` the largest
    crystal; ``idx[b, k]`` is the flat index of crystal b's k-th atom where ``valid[b, k]`` (padding: index 0,
    ``valid`` False). ``atom_batch`` [N] must be sorted. Constant along a sampling trajectory: build it once."""
    dev = atom_batch.device
    counts = torch.bincount(atom_batch, minlength=num_graphs)
    A = int(counts.max()) if atom_batch.numel() else 0
    ptr = torch.cumsum(counts, 0) - counts
    pos = torch.arange(atom_batch.numel(), device=dev) - ptr[atom_batch]
    idx = torch.zeros(num_graphs, A, dtype=torch.long, device=dev)
    valid = torch.zeros(num_graphs, A, dtype=torch.bool, device=dev)
    idx[atom_batch, pos] = torch.arange(atom_batch.numel(), device=dev)
    valid[atom_batch, pos] = True
    return idx, valid


def assign_multiset(logits: torch.Tensor, types: torch.Tensor, atom_batch: torch.Tensor,
                    num_graphs: int, layout: Optional[tuple[torch.Tensor, torch.Tensor]] = None) -> torch.Tensor:
    """Re-assign each crystal's multiset of ``types`` to its atoms, following the type head.

    Greedy maximum-likelihood assignment: repeatedly, within every crystal, the (atom, remaining type) pair with
    the highest log-probability ``log_softmax(logits)[atom, type - 1]`` is fixed, until every atom has a type. The
    composition of every crystal is exactly that of ``types``; only which atom carries which element changes
    (structure prediction from a composition with the type head consulted, ``forced_types="assign"``).

    Args:
        logits: [N, 100] type logits (atomic number Z at index Z - 1).
        types: [N] the current atomic numbers: their per-crystal multiset is kept.
        atom_batch: [N] crystal index of each atom, sorted.
        num_graphs: number of crystals B.
        layout: :func:`padded_layout` of ``atom_batch`` when the caller already has it (a sampling loop builds it
            once per trajectory); built here otherwise.
    Returns the new [N] atomic numbers.
    """
    if types.numel() == 0:
        return types.clone()
    dev = types.device
    idx, valid = padded_layout(atom_batch, num_graphs) if layout is None else layout
    A = idx.shape[1]
    slot_type = types[idx] - 1  # [B, A]: the types to hand out (padding ignored through `valid`)
    # log p(atom, type) only for the types present: logit - logsumexp over the 100 classes (float64)
    lg = logits.double()
    lse = torch.logsumexp(lg, dim=-1)  # [N]
    per_atom = lg[idx]  # [B, A(atom), 100]
    cost = torch.gather(per_atom, 2, slot_type[:, None, :].expand(num_graphs, A, A)) - lse[idx][:, :, None]
    neg = torch.tensor(float("-inf"), dtype=cost.dtype, device=dev)
    cost = torch.where(valid[:, :, None] & valid[:, None, :], cost, neg)
    assigned = torch.zeros(num_graphs, A, dtype=torch.long, device=dev)
    rows = torch.arange(num_graphs, device=dev)
    for _ in range(A):
        val, arg = cost.view(num_graphs, -1).max(1)
        ok = val > neg
        if not bool(ok.any()):
            break
        i, j = arg // A, arg % A
        b, i, j = rows[ok], i[ok], j[ok]
        assigned[b, i] = j
        cost[b, i, :] = neg
        cost[b, :, j] = neg
    new = torch.gather(slot_type, 1, assigned) + 1
    out = types.clone()
    out[idx[valid]] = new[valid]
    return out


def initial_type_counts(p: torch.Tensor, n: int, method: str = "round_residual",
                        generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """How many atoms of each element the reverse process starts from, given the composition head's probabilities.

    Args:
        p: ``[E]`` probabilities over elements (index ``e`` = atomic number ``e + 1``), summing to 1.
        n: number of atoms N_a (>= 0).
        method: ``"round_residual"`` (the published code): ``round(p * n)`` per element; if that overshoots ``n``,
            the rounded multiset is shuffled and truncated to ``n`` atoms; if it falls short, the missing atoms are
            drawn from the residual probabilities ``max(p - counts / n, 0)`` (renormalised; ``p`` itself when all
            residuals are 0). ``"largest_remainder"`` (Hamilton's method, deterministic): ``floor(p * n)`` and the
            remaining atoms to the elements with the largest fractional parts (ties by the larger ``p``, then by the
            lower atomic number).

    Returns:
        ``[E]`` non-negative integer counts summing to exactly ``n``. When ``p * n`` lies within 0.5 of integer
        counts that sum to ``n`` (a confident head with some leakage), both methods return those counts exactly.
    """
    if method not in INITIAL_TYPES:
        raise ValueError(f"unknown initial_types method {method!r}; expected one of {INITIAL_TYPES}")
    n = int(n)
    p = p.detach().double().clamp(min=0)
    E = p.numel()
    if n <= 0:
        return torch.zeros(E, dtype=torch.long, device=p.device)
    p = p / p.sum().clamp(min=1e-300)
    target = p * n
    if method == "largest_remainder":
        counts = torch.floor(target).long()
        rem = n - int(counts.sum())
        if rem > 0:
            frac = target - counts.to(target)
            # sort by fractional part, then by p, then by index (stable lexicographic key)
            order = sorted(range(E), key=lambda e: (-float(frac[e]), -float(p[e]), e))
            for e in order[:rem]:
                counts[e] += 1
        return counts
    counts = torch.round(target).long()
    total = int(counts.sum())
    if total > n:  # overshoot: shuffle the rounded multiset and keep n atoms
        atoms = torch.repeat_interleave(torch.arange(E, device=p.device), counts)
        keep = atoms[torch.randperm(total, generator=generator, device=p.device)[:n]]
        return torch.bincount(keep, minlength=E)
    if total < n:  # shortfall: draw from the residual probabilities
        resid = (p - counts.to(p) / n).clamp(min=0)
        w = resid if float(resid.sum()) > 0 else p
        extra = torch.multinomial(w.float(), n - total, replacement=True, generator=generator)
        counts = counts + torch.bincount(extra, minlength=E)
    return counts
