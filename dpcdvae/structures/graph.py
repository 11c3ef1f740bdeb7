"""Periodic neighbour graphs and triplets, in pure torch (CPU or CUDA).

Edge convention (docs/ARCHITECTURE.md): ``edge_index[0] = j`` (source, neighbour), ``edge_index[1] = i``
(target, centre); ``offsets[e]`` is the integer cell image of the source, and
``vec[e] = cart[j] + offsets[e] @ lattice - cart[i]`` points from i to the image of j (Angstrom).

How the radius search works (no image box, no ``[B, n, n, K]`` tensor)
-----------------------------------------------------------------------
For a pair (i, j) with fractional difference ``d = f_j - f_i`` the image ``n`` is a neighbour when
``|(d + n) @ L| <= r``. With the metric ``G = L L^T = U^T U`` (``U`` upper triangular, a Cholesky factor) the
squared length is ``sum_k (sum_{l >= k} U_kl x_l)^2`` with ``x = d + n``, so the admissible ``n`` can be enumerated
exactly, one axis at a time (Fincke-Pohst): first the interval of ``n_2``, then for each ``n_2`` the interval of
``n_1``, then for each ``(n_2, n_1)`` the interval of ``n_0``. Every level is a ragged expansion
(``repeat_interleave``) of the previous one; the last level *is* the edge list (only the self-loop is skipped),
so the work is proportional to the number of edges whatever the cell shape, and each crystal uses exactly the
images it needs.

Only the pairs ``i <= j`` are searched: IEEE arithmetic is symmetric under ``d -> -d``, so the pair (j, i) would get
exactly the mirrored intervals, and its edges are the edges of (i, j) with source and target swapped and the image
negated. Every edge therefore knows its exact reverse edge for free, which the triplet builder needs.

``max_neighbors`` first searches every crystal with a smaller radius that holds about 2.2 x ``max_neighbors``
neighbours on average at the crystal's density (an atom with at least ``max_neighbors`` neighbours within that radius
has all its ``max_neighbors`` nearest ones among them), then searches the full ``cutoff`` again only for the atoms
that came up short, and selects the nearest per atom with one ``topk`` over a ``[N, max_degree]`` table.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Optional

import torch

from .crystalnn import fast_crystalnn

# local: heavy -- pymatgen is imported inside crystalnn_edges (the models import this module for the graphs alone)


__all__ = ["PeriodicGraph", "radius_graph_pbc", "graph_from_edges", "build_triplets", "crystalnn_edges",
           "edge_vectors"]

# cells thinner than cutoff / _MAX_IMAGES along some axis (or with non-finite numbers) get no edges and a warning
_MAX_IMAGES = 256
# distances up to cutoff + _TOL (Angstrom) count as within the cutoff (pymatgen's numerical_tol)
_TOL = 1e-8
# the first, reduced search radius is _ALPHA x the radius of a sphere holding max_neighbors atoms at the crystal's
# density: it holds ~ _ALPHA^3 * max_neighbors neighbours on average
_ALPHA = 1.3


@dataclass
class PeriodicGraph:
    """A batched periodic graph.

    Attributes:
        edge_index: ``[2, E]`` long, ``[0]`` = source j, ``[1]`` = target i.
        offsets: ``[E, 3]`` float (integer-valued), cell image of the source atom.
        vec: ``[E, 3]`` Angstrom, from atom i to the image of atom j (differentiable w.r.t. positions/lattice).
        dist: ``[E]`` Angstrom.
        idx_kj, idx_ji: ``[T]`` long, edge indices of the triplets k->j->i (None if not built).
        rev: ``[E]`` long, index of the exact reverse of every edge (j and i swapped, offset negated), -1 where it is
            not in the graph (``max_neighbors`` graphs need not be symmetric); set by :func:`radius_graph_pbc` when
            it builds triplets, else None. (GemNet's ``id_swap``.)
    """

    edge_index: torch.Tensor
    offsets: torch.Tensor
    vec: torch.Tensor
    dist: torch.Tensor
    idx_kj: Optional[torch.Tensor] = None
    idx_ji: Optional[torch.Tensor] = None
    rev: Optional[torch.Tensor] = None

    @property
    def num_edges(self) -> int:
        return int(self.edge_index.shape[1])


def edge_vectors(cart: torch.Tensor, lattice: torch.Tensor, batch: torch.Tensor, edge_index: torch.Tensor,
                 offsets: torch.Tensor) -> torch.Tensor:
    """``vec[e] = cart[j] + offsets[e] @ lattice[batch[i]] - cart[i]`` (Angstrom), differentiable in cart/lattice."""
    j, i = edge_index[0], edge_index[1]
    lat = lattice.reshape(-1, 9).index_select(0, batch.index_select(0, i))  # [E, 9]: rows a, b, c
    off = offsets.to(cart.dtype)
    shift = off[:, 0:1] * lat[:, 0:3] + off[:, 1:2] * lat[:, 3:6] + off[:, 2:3] * lat[:, 6:9]
    return cart.index_select(0, j) - cart.index_select(0, i) + shift


def _frac_to_cart(frac: torch.Tensor, lattice: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
    lat = lattice.reshape(-1, 9).index_select(0, batch)
    return frac[:, 0:1] * lat[:, 0:3] + frac[:, 1:2] * lat[:, 3:6] + frac[:, 2:3] * lat[:, 6:9]


def _expand(counts: torch.Tensor, local: bool = True):
    """Ragged expansion of ``counts [M] >= 0``.

    Returns (parent ``[T]``, local ``[T]`` in ``0..counts[parent]-1`` (or None), exclusive start ``[M+1]`` (the last
    entry is ``T``), ``T``). Uses the one-argument ``repeat_interleave``, much faster on CPU than repeating a tensor.
    """
    total = int(counts.sum())
    device = counts.device
    parent = torch.repeat_interleave(counts, output_size=total)
    start = torch.zeros(counts.numel() + 1, dtype=torch.long, device=device)
    torch.cumsum(counts, 0, out=start[1:])
    loc = None
    if local:
        loc = torch.arange(total, device=device)
        loc.sub_(start.index_select(0, parent))
    return parent, loc, start, total


def _metric_factor(lattice: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Upper Cholesky factor of the metric ``L L^T`` as rows ``[6, B]`` = (U00, U01, U02, U11, U12, U22), the cell
    volumes ``[B]`` (A^3) and a ``[B]`` mask of crystals whose lattice is usable (finite, not flat).

    Written out for 3x3 (a handful of elementwise ops on ``[B]`` vectors, in float64)."""
    lat = lattice.detach().to(torch.float64).reshape(-1, 9)
    a, b, c = lat[:, 0:3], lat[:, 3:6], lat[:, 6:9]
    u00 = a.norm(dim=-1)
    u01 = (a * b).sum(-1) / u00
    u02 = (a * c).sum(-1) / u00
    u11 = ((b * b).sum(-1) - u01 * u01).clamp(min=0).sqrt()
    u12 = ((b * c).sum(-1) - u01 * u02) / u11
    u22 = ((c * c).sum(-1) - u02 * u02 - u12 * u12).clamp(min=0).sqrt()
    flat = torch.stack([u00, u01, u02, u11, u12, u22], dim=0)
    ok = torch.isfinite(flat).all(0) & (u00 > 0) & (u11 > 0) & (u22 > 0)
    flat = torch.where(ok[None], flat, torch.ones_like(flat))
    vol = (u00 * u11 * u22).to(dtype)
    return flat.to(dtype).contiguous(), vol, ok


class _Enum:
    """The result of one radius search (see :func:`_enumerate`). Edges are stored implicitly, as (level-2 entry
    ``p3[e]``, position ``l3[e]``) and are materialised only for the edges that are kept. Per level-2 entry:
    ``lo0`` (first n0), ``n1``, ``n2``, ``i2``/``j2`` (the pair's atoms), ``pp2`` (the pair). Per pair: ``pi``, ``pj``,
    ``epair [P+1]`` (first edge). Per target: ``etgt [M+1]`` (first edge)."""

    __slots__ = ("p3", "l3", "E", "d2", "etgt", "epair", "lo0", "n1", "n2", "i2", "j2", "pp2", "pi", "pj", "P")


def _enumerate(fcols, ptr, targets, tbatch, tnum, r_target, ufac, half, want_d2=True) -> _Enum:
    """All (target i, source j, image n) with ``0 < |(f_j - f_i + n) L| <= r`` for the given target atoms.

    Args:
        fcols: three ``[N]`` fractional coordinate columns (as given, not wrapped).
        ptr: ``[B+1]`` first atom of each crystal.
        targets, tbatch, tnum, r_target: ``[M]`` target atoms, their crystal, its atom count, the search radius
            (negative: no edges).
        ufac: ``[6, B]`` metric factors (see :func:`_metric_factor`).
        half: search only the sources ``j >= i`` of each target (the edges of ``j < i`` are the mirrors of those of
            the pair (j, i)); needs the same radius for all atoms of a crystal to be complete.
        want_d2: also compute the squared lengths (``.d2``).
    Edges come in target-major, then source, then (n2, n1, n0) order.
    """
    device = fcols[0].device
    isel = torch.Tensor.index_select
    out = _Enum()
    # level 0: ordered pairs (i, j) of the same crystal, target-major
    tl = targets - isel(ptr, 0, tbatch)  # local index of the target atom in its crystal
    if half:
        pt, jl, pstart, P = _expand(tnum - tl)
        i = isel(targets, 0, pt)
        j = i + jl
        self_pair = pstart[:-1]
    else:
        pt, jl, pstart, P = _expand(tnum)
        i = isel(targets, 0, pt)
        j = isel(ptr, 0, isel(tbatch, 0, pt)).add_(jl)
        self_pair = pstart[:-1] + tl
    tb = isel(tbatch, 0, pt)
    d0 = isel(fcols[0], 0, j).sub_(isel(fcols[0], 0, i))
    d1 = isel(fcols[1], 0, j).sub_(isel(fcols[1], 0, i))
    dz = isel(fcols[2], 0, j).sub_(isel(fcols[2], 0, i))
    r = isel(r_target, 0, pt)
    # level 1: n2 in [ceil(-r/U22 - d2), floor(r/U22 - d2)]
    h = r / isel(ufac[5], 0, tb)
    lo2 = torch.ceil(-h - dz)
    c2 = torch.floor_(h.sub_(dz)).sub_(lo2).add_(1).clamp_(min=0).long()
    p1, l1, s1, _ = _expand(c2)
    b1 = isel(tb, 0, p1)
    n2 = isel(lo2, 0, p1).add_(l1)
    x2 = isel(dz, 0, p1).add_(n2)
    t = isel(ufac[5], 0, b1).mul_(x2)
    rem = isel(r, 0, p1).square_().sub_(t.square_()).clamp_(min=0)
    # level 2: n1 given n2: |U11 x1 + U12 x2| <= sqrt(rem); x1 in [-z - w, -z + w]
    inv = isel(ufac[3], 0, b1).reciprocal_()
    w = rem.sqrt().mul_(inv)
    a = isel(ufac[4], 0, b1).mul_(x2)
    z = a.mul(inv).add_(isel(d1, 0, p1))
    lo1 = torch.floor(z + w).neg_()
    cnt1 = torch.ceil_(z.sub_(w)).neg_().sub_(lo1).add_(1).clamp_(min=0).long()
    p2, l2, s2, _ = _expand(cnt1)
    pp2 = isel(p1, 0, p2)
    b2 = isel(b1, 0, p2)
    n1 = isel(lo1, 0, p2).add_(l2)
    x1 = isel(d1, 0, pp2).add_(n1)
    t = isel(ufac[3], 0, b2).mul_(x1).add_(isel(a, 0, p2))
    rem = isel(rem, 0, p2).sub_(t.square_()).clamp_(min=0)
    # level 3: n0 given (n2, n1): |U00 x0 + U01 x1 + U02 x2| <= sqrt(rem)
    u00 = isel(ufac[0], 0, b2)
    inv = u00.reciprocal()
    w = rem.sqrt().mul_(inv)
    x2_2 = isel(x2, 0, p2)
    a = isel(ufac[1], 0, b2).mul_(x1).add_(isel(ufac[2], 0, b2).mul_(x2_2))
    c0 = isel(d0, 0, pp2)
    z = a.mul(inv).add_(c0)
    lo0 = torch.floor(z + w).neg_()
    cnt0 = torch.ceil_(z.sub_(w)).neg_().sub_(lo0).add_(1).clamp_(min=0).long()
    # the self-loop (i == j, n = 0): one level-2 entry per target with r >= 0; skip its n0 = 0
    has_self = (r_target >= 0).nonzero().flatten()
    skip = None
    if has_self.numel():
        psf = isel(self_pair, 0, has_self)  # the (i, i) pair
        q1 = isel(s1, 0, psf).sub_(isel(lo2, 0, psf).long())  # its n2 = 0 entry
        q2 = isel(s2, 0, q1).sub_(isel(lo1, 0, q1).long())  # its (n2, n1) = (0, 0) entry
        cnt0.index_add_(0, q2, torch.full_like(q2, -1))
        skip = torch.full(lo0.shape, 2 ** 62, dtype=torch.long, device=device)
        skip.index_copy_(0, q2, isel(lo0, 0, q2).neg_().long())
    p3, l3, s3, E = _expand(cnt0)
    if skip is not None:
        l3 += l3 >= isel(skip, 0, p3)
    out.p3, out.l3, out.E, out.lo0, out.P = p3, l3, E, lo0, P
    out.d2 = None
    if want_d2:
        # |v|^2 = (r^2 - rem) + (U00 (c0 + lo0 + l3) + a)^2
        q = isel(r, 0, pp2).square_().sub_(rem)
        A = c0.add_(lo0).mul_(u00).add_(a)
        out.d2 = isel(u00, 0, p3).mul_(l3).add_(isel(A, 0, p3)).square_().add_(isel(q, 0, p3))
    # first edge of each pair and of each target, through the exclusive starts of the three levels
    out.epair = isel(s3, 0, isel(s2, 0, s1))  # [P+1]
    out.etgt = isel(out.epair, 0, pstart)  # [M+1]
    out.n1, out.n2 = n1, isel(n2, 0, p2)
    out.pi, out.pj, out.pp2 = i, j, pp2
    out.i2, out.j2 = isel(i, 0, pp2), isel(j, 0, pp2)
    return out


def _forward(en: _Enum, e: Optional[torch.Tensor], dtype):
    """(i, j, image of j seen from i (float [K,3])) of the searched edges ``e`` (all when None)."""
    isel = torch.Tensor.index_select
    p3 = en.p3 if e is None else isel(en.p3, 0, e)
    l3 = en.l3 if e is None else isel(en.l3, 0, e)
    n0 = isel(en.lo0, 0, p3).add_(l3)
    img = torch.stack([n0, isel(en.n1, 0, p3), isel(en.n2, 0, p3)], dim=-1).to(dtype)
    return isel(en.i2, 0, p3), isel(en.j2, 0, p3), img, p3


def _half_positions(en: _Enum, N: int, ptr, batch, num_atoms):
    """Where the edges of a half search go in a target-grouped layout, relative to each target's row start.

    Target t's row holds first its forward edges (t = i, in search order), then the mirrored edges (t = j) of the
    pairs (i', t), i' < t, in order of i'. Returns ``slot_f [E]`` and ``slot_m [E]`` (slot of the mirrored edge in
    row j; meaningless for self pairs (i, i), whose mirrors are edges of the same pair), the degree of every target
    ``[N]`` and the per-edge self-pair flag ``[E]``.
    """
    isel = torch.Tensor.index_select
    device = en.p3.device
    pi, pj, epair = en.pi, en.pj, en.epair
    fdeg = en.etgt[1:] - en.etgt[:-1]
    selfp = pi == pj
    mcnt = (epair[1:] - epair[:-1]).masked_fill_(selfp, 0)  # mirrored edges per pair
    mdeg = torch.zeros(N, dtype=torch.long, device=device).index_add_(0, pj, mcnt)
    # mpre[p] = sum of mcnt(i', j) over i' < i: exclusive prefix along the columns of each crystal's n x n matrix of
    # pairs, laid out transposed (row j, column i) so that a column of the original is contiguous
    nsq = num_atoms * num_atoms
    qstart = torch.cumsum(nsq, 0).sub_(nsq)
    bi = isel(batch, 0, pi)
    base = isel(ptr, 0, bi)
    rowq = isel(qstart, 0, bi).add_((pj - base).mul_(isel(num_atoms, 0, bi)))  # start of row j (transposed)
    tpos = rowq + (pi - base)
    tarr = torch.zeros(int(nsq.sum()), dtype=torch.long, device=device).index_copy_(0, tpos, mcnt)
    cs = torch.cumsum(tarr, 0).sub_(tarr)  # exclusive prefix sums
    mpre = isel(cs, 0, tpos).sub_(isel(cs, 0, rowq))
    hf = en.etgt[:-1].neg()  # slot_f = e - etgt[i]
    hm = isel(fdeg, 0, pj).add_(mpre).sub_(epair[:-1])  # slot_m = e + fdeg[j] + mpre[p] - epair[p]
    ar = torch.arange(en.E, device=device)
    p3 = en.p3
    slot_f = isel(isel(hf, 0, en.i2), 0, p3).add_(ar)
    slot_m = isel(isel(hm, 0, en.pp2), 0, p3).add_(ar)
    self_e = isel(isel(selfp, 0, en.pp2), 0, p3)
    return slot_f, slot_m, fdeg + mdeg, self_e


def _self_rev(en: _Enum, e: torch.Tensor):
    """For edges ``e`` of self pairs (i, i): the index of the reverse edge (same pair, negated image)."""
    pp = en.pp2.index_select(0, en.p3.index_select(0, e))
    return en.epair.index_select(0, pp).add_(en.epair.index_select(0, pp + 1)).sub_(1).sub_(e)


def _empty_graph(device, dtype, triplets):
    empty = torch.zeros(2, 0, dtype=torch.long, device=device)
    z = torch.zeros(0, 3, dtype=dtype, device=device)
    zl = torch.zeros(0, dtype=torch.long, device=device)
    return PeriodicGraph(empty, z, z, torch.zeros(0, dtype=dtype, device=device),
                         zl if triplets else None, zl.clone() if triplets else None)


def radius_graph_pbc(frac: torch.Tensor, lattice: torch.Tensor, batch: torch.Tensor, cutoff: float,
                     max_neighbors: Optional[int] = None, triplets: bool = True,
                     num_atoms: Optional[torch.Tensor] = None) -> PeriodicGraph:
    """All edges within ``cutoff`` (Angstrom) including periodic images, for a batch of crystals.

    Args:
        frac: ``[N, 3]`` fractional coordinates (any real values: wrapped or not, the graph is the same physical
            graph; offsets are relative to the coordinates as given, so ``vec`` is exact either way).
        lattice: ``[B, 3, 3]`` lattice matrices (rows = vectors, Angstrom), same dtype as ``frac``.
        batch: ``[N]`` crystal index of every atom; atoms of one crystal must be contiguous and crystals in order.
        cutoff: radius in Angstrom (edges with ``0 < dist <= cutoff + 1e-8``, as pymatgen; the self-loop j == i,
            offset 0, never).
        max_neighbors: keep only the nearest ``max_neighbors`` sources (images counted separately) per target atom;
            exact ties at the boundary are broken arbitrarily (deterministically).
        triplets: also build triplet indices (for DimeNet++/GemNet-T).
        num_atoms: ``[B]`` atoms per crystal (computed from ``batch`` when omitted).
    Returns:
        a :class:`PeriodicGraph` whose edges are grouped by target atom (ascending). Crystals with a non-finite or
        (nearly) flat lattice, or non-finite coordinates, get no edges (with a warning).

    The search runs in the dtype of ``frac`` without gradients; ``vec`` and ``dist`` are then computed from ``frac``
    and ``lattice`` on the kept edges, so they carry gradients to both. Works on any device (no host copies of
    per-edge data; a few scalars are read back to size the outputs).

    The search's multi-megabyte temporaries come from memory already mapped instead of fresh pages (a page fault
    each) once the process's allocator is tuned: the entry points (the command line, training, the notebooks, the
    relaxation) call :func:`dpcdvae.utils.alloc.tune_allocator` (``DPCDVAE_TUNE_MALLOC=0`` turns it off); a script
    of your own calls it once.
    """
    device, dtype = frac.device, frac.dtype
    B = lattice.shape[0]
    N = frac.shape[0]
    if N == 0:
        return _empty_graph(device, dtype, triplets)
    if num_atoms is None:
        num_atoms = torch.bincount(batch, minlength=B)
    num_atoms = num_atoms.to(device=device, dtype=torch.long)
    batch = batch.long()
    ptr = torch.zeros(B + 1, dtype=torch.long, device=device)
    torch.cumsum(num_atoms, 0, out=ptr[1:])

    fr = frac.detach()
    ufac, vol, ok = _metric_factor(lattice, dtype)
    # guard: crystals whose search would need absurd numbers of images (flat / NaN cells) are skipped; the
    # Gram-Schmidt lengths U00, U11, U22 bound the number of images per level
    gs_min = torch.minimum(torch.minimum(ufac[0], ufac[3]), ufac[5])
    ok = ok & (gs_min * _MAX_IMAGES > cutoff)
    finite = torch.isfinite(fr).all(-1)
    if not bool(finite.all()):
        ok = ok.clone()
        ok[batch[~finite]] = False
        fr = torch.nan_to_num(fr, nan=0.0, posinf=0.0, neginf=0.0)
    n_bad = int((~ok).sum())
    if n_bad:
        warnings.warn(f"radius_graph_pbc: {n_bad} crystal(s) with a non-finite or flat lattice (or non-finite "
                      f"coordinates) get no edges", RuntimeWarning, stacklevel=2)
    # like pymatgen, a neighbour at exactly the cutoff (up to 1e-8 A) is in
    r_crystal = torch.where(ok, torch.full((B,), float(cutoff) + _TOL, dtype=dtype, device=device),
                            torch.full((B,), -1.0, dtype=dtype, device=device))  # negative radius: no edges
    fcols = [c.contiguous() for c in fr.unbind(-1)]
    tnum = num_atoms.index_select(0, batch)

    if max_neighbors is None:
        tgt, src, img, rev, deg = _all_edges(fcols, ptr, batch, num_atoms, tnum, r_crystal, ufac, N, triplets,
                                             dtype)
    else:
        tgt, src, img, rev, deg = _nearest(fcols, ptr, batch, num_atoms, tnum, r_crystal, ufac, vol,
                                           int(max_neighbors), N, triplets, dtype)

    edge_index = torch.stack([src, tgt])
    cart = _frac_to_cart(frac, lattice, batch)
    vec = edge_vectors(cart, lattice, batch, edge_index, img)
    dist = vec.norm(dim=-1)
    g = PeriodicGraph(edge_index, img, vec, dist)
    if triplets:
        g.idx_kj, g.idx_ji = _triplets_from_rev(src, rev, deg)
        g.rev = rev
    return g


def _all_edges(fcols, ptr, batch, num_atoms, tnum, r_crystal, ufac, N, want_rev, dtype):
    """Every edge within the crystal's radius, grouped by target; reverse-edge index; degrees."""
    device = fcols[0].device
    isel = torch.Tensor.index_select
    atoms = torch.arange(N, device=device)
    en = _enumerate(fcols, ptr, atoms, batch, tnum, isel(r_crystal, 0, batch), ufac, half=True, want_d2=False)
    E = en.E
    slot_f, slot_m, deg, self_e = _half_positions(en, N, ptr, batch, num_atoms)
    rowstart = torch.cumsum(deg, 0).sub_(deg)
    Etot = int(deg.sum())
    i, j, img, _ = _forward(en, None, dtype)
    pos_f = slot_f.add_(isel(rowstart, 0, i))
    # mirrors of self-pair edges go to a dump area after the Etot real edges
    pos_m = torch.where(self_e, torch.arange(Etot, Etot + E, device=device), slot_m.add_(isel(rowstart, 0, j)))
    size = Etot + E
    tgt = torch.empty(size, dtype=torch.long, device=device)
    src = torch.empty(size, dtype=torch.long, device=device)
    im = torch.empty(size, 3, dtype=dtype, device=device)
    tgt.index_copy_(0, pos_f, i).index_copy_(0, pos_m, j)
    src.index_copy_(0, pos_f, j).index_copy_(0, pos_m, i)
    im.index_copy_(0, pos_f, img).index_copy_(0, pos_m, img.neg())
    rev = None
    if want_rev:
        rev = torch.empty(size, dtype=torch.long, device=device)
        rev.index_copy_(0, pos_m, pos_f)
        rf = pos_m.clone()
        se = self_e.nonzero().flatten()
        if se.numel():
            rf.index_copy_(0, se, isel(pos_f, 0, _self_rev(en, se)))
        rev.index_copy_(0, pos_f, rf)
        rev = rev[:Etot]
    return tgt[:Etot], src[:Etot], im[:Etot], rev, deg


def _nearest(fcols, ptr, batch, num_atoms, tnum, r_crystal, ufac, vol, k, N, want_rev, dtype):
    """Edges to the ``k`` nearest sources of every atom within the crystal's radius, grouped by target; the index of
    each edge's reverse among them (-1 if not kept) when ``want_rev``; the degree of every atom."""
    device = fcols[0].device
    isel = torch.Tensor.index_select
    if k <= 0:
        z = torch.zeros(0, dtype=torch.long, device=device)
        return (z, z.clone(), torch.zeros(0, 3, dtype=dtype, device=device), z.clone(),
                torch.zeros(N, dtype=torch.long, device=device))
    # pass 1: reduced radius from the density (volume per atom), the same for all atoms of a crystal
    per_atom = vol / num_atoms.clamp(min=1).to(dtype)
    r_small = (3.0 * k * per_atom / (4.0 * math.pi)).pow(1.0 / 3.0).mul_(_ALPHA)
    r1 = torch.where(r_crystal > 0, torch.minimum(r_small, r_crystal), r_crystal)
    reduced = r1 < r_crystal  # [B]
    atoms = torch.arange(N, device=device)
    en = _enumerate(fcols, ptr, atoms, batch, tnum, isel(r1, 0, batch), ufac, half=True, want_d2=True)
    E = en.E
    slot_f, slot_m, deg1, self_e = _half_positions(en, N, ptr, batch, num_atoms)
    short = isel(reduced, 0, batch) & (deg1 < k)
    short_idx = short.nonzero().flatten()
    two = short_idx.numel() > 0
    if two:
        # pass 2: full radius (all sources) for the atoms that came up short
        tb2 = isel(batch, 0, short_idx)
        en2 = _enumerate(fcols, ptr, short_idx, tb2, isel(tnum, 0, short_idx), isel(r_crystal, 0, tb2), ufac,
                         half=False, want_d2=True)
        deg2 = en2.etgt[1:] - en2.etgt[:-1]
        width = max(int(deg1.max()), int(deg2.max()), 1)
    else:
        width = max(int(deg1.max()), 1)
    # table [N, width] of squared distances and edge codes (forward e, mirrored E + e, pass-2 2E + e), one row per
    # target; a dump area after it takes the mirrors of self-pair edges
    NW = N * width
    i2e = isel(en.i2, 0, en.p3)
    j2e = isel(en.j2, 0, en.p3)
    pos_f = slot_f.add_(i2e * width)
    pos_m = torch.where(self_e, torch.arange(NW, NW + E, device=device), slot_m.add_(j2e * width))
    table = torch.full((NW + E,), float("inf"), dtype=dtype, device=device)
    codes = torch.empty(NW + E, dtype=torch.long, device=device)
    table.index_copy_(0, pos_f, en.d2).index_copy_(0, pos_m, en.d2)
    ar = torch.arange(E, device=device)
    codes.index_copy_(0, pos_f, ar).index_copy_(0, pos_m, ar + E)
    if two:
        E2 = en2.E
        # pass-2 rows are at least as long as pass-1 rows: they overwrite them completely
        row2 = torch.repeat_interleave(deg2, output_size=E2)  # index into short_idx per edge
        pos2 = torch.arange(E2, device=device).add_(isel(short_idx * width - en2.etgt[:-1], 0, row2))
        table.index_copy_(0, pos2, en2.d2)
        codes.index_copy_(0, pos2, torch.arange(2 * E, 2 * E + E2, device=device))
    val, col = torch.topk(table[:NW].view(N, width), min(k, width), dim=1, largest=False, sorted=False)
    sel = torch.gather(codes[:NW].view(N, width), 1, col)
    valid = torch.isfinite(val)
    if bool(valid.all()):
        sel = sel.flatten()
        deg = torch.full((N,), val.shape[1], dtype=torch.long, device=device)
    else:
        sel = sel[valid]
        deg = valid.sum(1)
    K = sel.numel()
    if two:
        from1 = (sel < 2 * E).nonzero().flatten()
        from2 = (sel >= 2 * E).nonzero().flatten()
        c1 = isel(sel, 0, from1)
    else:
        c1 = sel
    mir = (c1 >= E).long()
    e = c1 - mir * E
    i, j, img, p3 = _forward(en, e, dtype)
    dji = (j - i).mul_(mir)
    t1 = i + dji  # j for mirrored edges
    s1 = j - dji
    img.mul_((1 - 2 * mir).to(dtype)[:, None])
    rev = None
    if want_rev:
        # reverse codes: forward <-> mirrored, except self pairs whose reverse is another forward edge
        rcode = c1 + E - 2 * E * mir
        se = isel(self_e, 0, e).nonzero().flatten()
        if se.numel():
            rcode.index_copy_(0, se, _self_rev(en, isel(e, 0, se)))
        newidx = torch.full((2 * E + 1,), -1, dtype=torch.long, device=device)  # last: sentinel for pass 2
        if two:
            newidx.index_copy_(0, c1, from1)
            rev1 = isel(newidx, 0, rcode)
        else:
            newidx.index_copy_(0, c1, torch.arange(K, device=device))
            rev1 = isel(newidx, 0, rcode)
    if not two:
        return t1, s1, img, (rev1 if want_rev else None), deg
    t2, s2, i2m, _ = _forward(en2, isel(sel, 0, from2).sub_(2 * E), dtype)
    tgt = torch.empty(K, dtype=torch.long, device=device).index_copy_(0, from1, t1).index_copy_(0, from2, t2)
    src = torch.empty(K, dtype=torch.long, device=device).index_copy_(0, from1, s1).index_copy_(0, from2, s2)
    img_all = torch.empty(K, 3, dtype=dtype, device=device).index_copy_(0, from1, img).index_copy_(0, from2, i2m)
    if want_rev:
        rev = torch.full((K,), -1, dtype=torch.long, device=device).index_copy_(0, from1, rev1)
        # edges touching a short atom: their reverse is found by key (the mirror rule needs one radius)
        touch = (isel(short, 0, tgt) | isel(short, 0, src)).nonzero().flatten()
        rev.index_copy_(0, touch, _reverse_by_key(isel(src, 0, touch), isel(tgt, 0, touch),
                                                  isel(img_all, 0, touch), N, index=touch))
    return tgt, src, img_all, rev, deg


def _reverse_by_key(src, dst, img, num_nodes, index=None):
    """For every edge, the position of its exact reverse (same pair swapped, negated image) or -1; edges unique.

    With ``index`` the positions are mapped through it (the edges given are a subset of a larger list)."""
    E = src.numel()
    device = src.device
    if E == 0:
        return torch.zeros(0, dtype=torch.long, device=device)
    img = torch.round(img).long() if img.is_floating_point() else img.long()
    R = int(img.abs().max()) + 1
    w = 2 * R + 1
    if num_nodes * num_nodes * w ** 3 >= 2 ** 62:
        raise ValueError("graph too large for 64-bit edge keys")
    src, dst = src.long(), dst.long()
    enc = ((img[:, 2] + R) * w + (img[:, 1] + R)) * w + (img[:, 0] + R)
    renc = ((R - img[:, 2]) * w + (R - img[:, 1])) * w + (R - img[:, 0])
    key = (dst * num_nodes + src) * (w ** 3) + enc
    rkey = (src * num_nodes + dst) * (w ** 3) + renc
    skey, perm = torch.sort(key)
    pos = torch.searchsorted(skey, rkey).clamp_(max=E - 1)
    found = skey.index_select(0, pos) == rkey
    out = perm.index_select(0, pos)
    if index is not None:
        out = index.index_select(0, out)
    return torch.where(found, out, torch.full_like(out, -1))


def _triplets_from_rev(src, rev, deg):
    """Triplets for edges grouped by target (``deg [N]`` edges per target, in target order), given the index of
    each edge's reverse (-1 if none).

    For edge e = j->i the triplets are all edges into j (one contiguous block) except the reverse of e. Every such
    block is split into two runs around the reverse; ``idx_ji`` is one ragged expansion over edges and ``idx_kj``
    (run base + position in the run, a piecewise-linear sequence) is a cumulative sum of ones with a jump at every
    run start: no boolean masks, no per-triplet gathers.
    """
    device = src.device
    E = src.numel()
    if E == 0:
        z = torch.zeros(0, dtype=torch.long, device=device)
        return z, z.clone()
    isel = torch.Tensor.index_select
    estart = torch.cumsum(deg, 0).sub_(deg)
    first = isel(estart, 0, src)  # block of the edges into j
    n = isel(deg, 0, src)
    has = rev >= 0
    cut = torch.where(has, rev, first + n)  # position of the reverse inside the block (or the block end)
    ca = cut - first  # run before the reverse
    cb = n - ca - has.long()  # run after it
    cnt = ca + cb
    T = int(cnt.sum())
    idx_ji = torch.repeat_interleave(cnt, output_size=T)
    # runs (2 per edge) and their first value; value at t is base_r + (t - start_r) inside run r
    counts = torch.stack([ca, cb], dim=1).flatten()
    base = torch.stack([first, cut + 1], dim=1).flatten()
    rstart = torch.cumsum(counts, 0).sub_(counts)
    g = base.sub_(rstart)  # idx_kj[t] = t + g[run(t)]
    dg = torch.diff(g, prepend=g.new_zeros(1))
    dg[0] -= 1  # cumsum of ones starts at 1
    steps = torch.ones(T + 1, dtype=torch.long, device=device)
    steps.index_add_(0, rstart, dg)  # runs starting at T (empty, at the end) land on the spare last entry
    idx_kj = steps.cumsum_(0)[:T]
    return idx_kj, idx_ji


def graph_from_edges(frac: torch.Tensor, lattice: torch.Tensor, batch: torch.Tensor, edge_index: torch.Tensor,
                     offsets: torch.Tensor, triplets: bool = True) -> PeriodicGraph:
    """Build a :class:`PeriodicGraph` from given edges (e.g. the CrystalNN graph stored in the dataset)."""
    cart = _frac_to_cart(frac, lattice, batch.long())
    offsets = offsets.to(frac.dtype)
    vec = edge_vectors(cart, lattice, batch.long(), edge_index, offsets)
    g = PeriodicGraph(edge_index, offsets, vec, vec.norm(dim=-1))
    if triplets:
        g.idx_kj, g.idx_ji = build_triplets(edge_index, offsets, frac.shape[0])
    return g


def build_triplets(edge_index: torch.Tensor, offsets: torch.Tensor, num_nodes: int
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Triplets k->j->i as pairs of edge indices ``(idx_kj, idx_ji)``, for edges in any order.

    Edge kj has target j; edge ji has source j. The pair is dropped when kj is the exact reverse of ji
    (k == i and offset_kj == -offset_ji), i.e. the same physical bond walked back (every copy of it, if an edge list
    holds duplicates, as CDVAE's CrystalNN graphs can); k == i with another image is kept. Fully vectorised.
    (:func:`radius_graph_pbc` builds its own triplets faster, from the reverse edges its search knows.)
    """
    device = edge_index.device
    src, dst = edge_index[0].long(), edge_index[1].long()
    E = src.numel()
    if E == 0:
        z = torch.zeros(0, dtype=torch.long, device=device)
        return z, z.clone()
    off = torch.round(offsets).long() if offsets.is_floating_point() else offsets.long()
    order = torch.argsort(dst, stable=True)  # incoming edges of every node become one block
    deg = torch.bincount(dst, minlength=num_nodes)
    estart = torch.cumsum(deg, 0).sub_(deg)
    idx_ji, local, _, _ = _expand(deg.index_select(0, src))
    idx_kj = order.index_select(0, estart.index_select(0, src).index_select(0, idx_ji).add_(local))
    rev = (src.index_select(0, idx_kj) == dst.index_select(0, idx_ji)) & (
        off.index_select(0, idx_kj) == off.index_select(0, idx_ji).neg_()).all(-1)
    keep = (~rev).nonzero().flatten()
    return idx_kj.index_select(0, keep), idx_ji.index_select(0, keep)


def crystalnn_edges(structure, max_neighbors: Optional[int] = None,
                    fast: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """The CrystalNN bonding graph of a pymatgen ``Structure``, built exactly as CDVAE builds its encoder graph.

    ``CrystalNN(distance_cutoffs=None, x_diff_weight=-1, porous_adjustment=False)`` gives the neighbours of every site;
    pymatgen's ``StructureGraph`` merges them into undirected bonds (a bond found from both ends is kept once); every
    bond then gives both directed edges. Returns ``edge_index [2, E]`` (long; [0] = source neighbour j, [1] = target
    centre i) and integer ``offsets [E, 3]`` (long, cell image of j). ``max_neighbors`` is accepted for API
    compatibility and ignored (CrystalNN decides the coordination). Slow (CrystalNN is pure Python, ~0.1-1 s per
    structure): compute it once per dataset and cache it. ``fast=True`` (default) tessellates once per structure
    instead of once per site (:func:`dpcdvae.eval.fingerprints.fast_crystalnn`: the same neighbour lists, tested);
    ``fast=False`` is pymatgen's own per-site path.
    """
    from pymatgen.analysis.graphs import StructureGraph
    from pymatgen.analysis.local_env import CrystalNN

    settings = dict(distance_cutoffs=None, x_diff_weight=-1, porous_adjustment=False)
    if fast:
        cnn = fast_crystalnn(**settings)
    else:
        cnn = CrystalNN(**settings)
    build = getattr(StructureGraph, "from_local_env_strategy", None) or getattr(StructureGraph,
                                                                                 "with_local_env_strategy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            if fast:
                cnn.prepare(structure)
            sg = build(structure, cnn)
        finally:
            if fast:
                cnn.release()
    # bonds in a canonical order, so that the result does not depend on the order CrystalNN listed neighbours in
    # (the fast and the per-site path give the same set of bonds, listed differently)
    def _canonical(i, j, image):
        n = tuple(int(round(x)) for x in image)
        flipped = (j, i, tuple(-x for x in n))
        return min((i, j, n), flipped)  # a bond i-j-n is the same bond as j-i-(-n)

    bonds = sorted({_canonical(int(i), int(j), im) for i, j, im in sg.graph.edges(data="to_jimage")})
    src, dst, off = [], [], []
    for i, j, n in bonds:
        src += [j, i]
        dst += [i, j]
        off += [n, tuple(-x for x in n)]
    edge_index = torch.tensor([src, dst], dtype=torch.long).reshape(2, -1)
    offsets = torch.tensor(off, dtype=torch.long).reshape(-1, 3)
    return edge_index, offsets
