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
(``repeat_interleave``) of the previous one; the last level *is* the edge list (only the self-loop is dropped),
so the work is proportional to the number of edges whatever the cell shape, and each crystal uses exactly the
images it needs. Edges come out grouped by target atom, then by source, then by image.

``max_neighbors`` first searches every crystal with a smaller radius that holds about twice ``max_neighbors``
neighbours at the crystal's density (an atom with at least ``max_neighbors`` neighbours within that radius has all its
``max_neighbors`` nearest ones among them), then searches the full ``cutoff`` again only for the atoms that came up
short, and selects the nearest per atom with one ``topk`` over a ``[N, max_degree]`` table.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Optional

import torch

from .crystal import frac_to_cart

__all__ = ["PeriodicGraph", "radius_graph_pbc", "graph_from_edges", "build_triplets", "crystalnn_edges",
           "edge_vectors"]

# cells thinner than cutoff / _MAX_IMAGES along some axis (or with non-finite numbers) get no edges and a warning
_MAX_IMAGES = 256
# the first, reduced search radius is _ALPHA x the radius of a sphere holding max_neighbors atoms at the crystal's
# density: it holds ~ _ALPHA^3 * max_neighbors neighbours on average
_ALPHA = 1.2


@dataclass
class PeriodicGraph:
    """A batched periodic graph.

    Attributes:
        edge_index: ``[2, E]`` long, ``[0]`` = source j, ``[1]`` = target i.
        offsets: ``[E, 3]`` float (integer-valued), cell image of the source atom.
        vec: ``[E, 3]`` Angstrom, from atom i to the image of atom j (differentiable w.r.t. positions/lattice).
        dist: ``[E]`` Angstrom.
        idx_kj, idx_ji: ``[T]`` long, edge indices of the triplets k->j->i (None if not built).
    """

    edge_index: torch.Tensor
    offsets: torch.Tensor
    vec: torch.Tensor
    dist: torch.Tensor
    idx_kj: Optional[torch.Tensor] = None
    idx_ji: Optional[torch.Tensor] = None

    @property
    def num_edges(self) -> int:
        return int(self.edge_index.shape[1])


def edge_vectors(cart: torch.Tensor, lattice: torch.Tensor, batch: torch.Tensor, edge_index: torch.Tensor,
                 offsets: torch.Tensor) -> torch.Tensor:
    """``vec[e] = cart[j] + offsets[e] @ lattice[batch[i]] - cart[i]`` (Angstrom)."""
    j, i = edge_index
    shift = torch.bmm(offsets.to(cart.dtype).unsqueeze(1), lattice[batch[i]]).squeeze(1)
    return cart[j] + shift - cart[i]


def _image_ranges(lattice: torch.Tensor, cutoff: float) -> torch.Tensor:
    """Number of cell images needed per direction so that every neighbour within ``cutoff`` is found.

    Uses the interplanar spacings d_k = V / |a_l x a_m|: with fractional differences wrapped into [-0.5, 0.5],
    images -n..n along axis k cover distances up to (n + 0.5) d_k. (Kept for callers that want an image box; the
    radius search itself does not use it.)
    """
    a, b, c = lattice.unbind(-2)
    vol = torch.linalg.det(lattice).abs()
    cross = torch.stack([torch.linalg.cross(b, c), torch.linalg.cross(c, a), torch.linalg.cross(a, b)], dim=-2)
    spacing = vol[:, None] / cross.norm(dim=-1)  # [B,3]
    return torch.ceil(cutoff / spacing + 0.5).long().clamp(min=1)  # [B,3]


def _expand(counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Ragged expansion: ``counts [M] >= 0`` -> (parent ``[T]``, local ``[T]`` in ``0..counts[parent]-1``)."""
    total = int(counts.sum())
    device = counts.device
    parent = torch.repeat_interleave(torch.arange(counts.numel(), device=device), counts, output_size=total)
    start = torch.cumsum(counts, 0) - counts
    local = torch.arange(total, device=device) - start[parent]
    return parent, local


def _metric_factor(lattice: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Upper Cholesky factor entries ``[B, 6]`` = (U00, U01, U02, U11, U12, U22) of ``L L^T``, and a ``[B]`` mask of
    crystals whose lattice is usable (finite, not flat)."""
    lat = lattice.detach().to(torch.float64)
    gram = lat @ lat.transpose(-1, -2)
    U, info = torch.linalg.cholesky_ex(gram, upper=True)
    ok = (info == 0) & torch.isfinite(U).flatten(1).all(-1)
    U = torch.where(ok[:, None, None], U, torch.eye(3, dtype=U.dtype, device=U.device))
    flat = torch.stack([U[:, 0, 0], U[:, 0, 1], U[:, 0, 2], U[:, 1, 1], U[:, 1, 2], U[:, 2, 2]], dim=-1)
    return flat.to(dtype), ok


def _enumerate(frac: torch.Tensor, ptr: torch.Tensor, targets: torch.Tensor, tbatch: torch.Tensor,
               tnum: torch.Tensor, r_target: torch.Tensor, ufac: torch.Tensor):
    """All (target i, source j, image n) with ``|(f_j - f_i + n) L| <= r`` for the given target atoms.

    Args:
        frac: ``[N,3]`` fractional coordinates (as given, not wrapped).
        ptr: ``[B+1]`` first atom of each crystal.
        targets, tbatch, tnum, r_target: ``[M]`` target atoms, their crystal, its atom count, the search radius.
        ufac: ``[B,6]`` metric factors (see :func:`_metric_factor`).
    Returns:
        tgt ``[E]``, src ``[E]``, img ``[E,3]`` (long), d2 ``[E]`` squared distance (inf for the self-loop), in
        target-major, then source, then (n2, n1, n0) lexicographic order.
    """
    # level 0: pairs (i, j) of the same crystal, target-major
    pt, jl = _expand(tnum)
    i = targets[pt]
    j = ptr[tbatch][pt] + jl
    d = frac[j] - frac[i]  # [P,3]
    u = ufac[tbatch[pt]]  # [P,6]
    r = r_target[pt]
    r2 = r * r
    # level 1: n2
    h = r / u[:, 5]
    lo = torch.ceil(-h - d[:, 2])
    cnt = (torch.floor(h - d[:, 2]) - lo + 1).clamp_(min=0).long()
    p1, l1 = _expand(cnt)
    n2 = lo[p1] + l1
    x2 = d[p1, 2] + n2
    u1 = u[p1]
    t = u1[:, 5] * x2
    rem = (r2[p1] - t * t).clamp_(min=0)
    # level 2: n1 given n2
    s = rem.sqrt()
    a = u1[:, 4] * x2
    c1 = d[p1, 1]
    lo = torch.ceil((-s - a) / u1[:, 3] - c1)
    cnt = (torch.floor((s - a) / u1[:, 3] - c1) - lo + 1).clamp_(min=0).long()
    p2, l2 = _expand(cnt)
    n1 = lo[p2] + l2
    pp2 = p1[p2]
    x1 = d[pp2, 1] + n1
    u2 = u1[p2]
    t = u2[:, 3] * x1 + a[p2]
    rem = (rem[p2] - t * t).clamp_(min=0)
    # level 3: n0 given (n2, n1)
    s = rem.sqrt()
    a = u2[:, 1] * x1 + u2[:, 2] * x2[p2]
    c0 = d[pp2, 0]
    lo = torch.ceil((-s - a) / u2[:, 0] - c0)
    cnt = (torch.floor((s - a) / u2[:, 0] - c0) - lo + 1).clamp_(min=0).long()
    p3, l3 = _expand(cnt)
    n0 = lo[p3] + l3
    pp3 = pp2[p3]
    t = u2[p3, 0] * (d[pp3, 0] + n0) + a[p3]
    d2 = (r2[pp3] - rem[p3]) + t * t
    img = torch.stack([n0, n1[p3], n2[p2][p3]], dim=-1).long()
    tgt, src = i[pp3], j[pp3]
    # the self-loop (i == j, n == 0) is the only entry with exactly zero length built from exact zeros
    self_loop = (tgt == src) & (img == 0).all(-1)
    d2 = d2.masked_fill(self_loop, float("inf"))
    return tgt, src, img, d2


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
        lattice: ``[B, 3, 3]`` lattice matrices (rows = vectors, Angstrom).
        batch: ``[N]`` crystal index of every atom; atoms of one crystal must be contiguous and crystals in order.
        cutoff: radius in Angstrom (edges with ``dist <= cutoff``).
        max_neighbors: keep only the nearest ``max_neighbors`` sources (images counted separately) per target atom;
            exact ties at the boundary are broken arbitrarily (deterministically).
        triplets: also build triplet indices (for DimeNet++/GemNet-T).
        num_atoms: ``[B]`` atoms per crystal (computed from ``batch`` when omitted).
    Returns:
        a :class:`PeriodicGraph` whose edges are sorted by target atom, then source atom, then image.
        Crystals with a non-finite or (nearly) flat lattice get no edges (with a warning).

    The search works in the dtype of ``frac``; ``vec`` and ``dist`` are recomputed from ``frac`` and ``lattice`` on the
    kept edges, so they carry gradients to both.
    """
    device, dtype = frac.device, frac.dtype
    B = lattice.shape[0]
    N = frac.shape[0]
    if N == 0:
        return _empty_graph(device, dtype, triplets)
    if num_atoms is None:
        num_atoms = torch.bincount(batch, minlength=B)
    num_atoms = num_atoms.to(device=device, dtype=torch.long)
    ptr = torch.zeros(B + 1, dtype=torch.long, device=device)
    ptr[1:] = torch.cumsum(num_atoms, 0)

    fr = frac.detach()
    ufac, ok = _metric_factor(lattice, dtype)
    # guard: crystals whose search would need absurd numbers of images (flat / NaN cells) are skipped
    spacing_min = torch.minimum(torch.minimum(ufac[:, 0], ufac[:, 3]), ufac[:, 5])  # Gram-Schmidt lengths bound the image counts
    ok = ok & (spacing_min * _MAX_IMAGES > cutoff)
    bad_atoms = ~torch.isfinite(fr).all(-1)
    if bool(bad_atoms.any()):
        ok[batch[bad_atoms]] = False
    n_bad = int((~ok).sum())
    if n_bad:
        warnings.warn(f"radius_graph_pbc: {n_bad} crystal(s) with a non-finite or flat lattice (or non-finite "
                      f"coordinates) get no edges", RuntimeWarning, stacklevel=2)
        fr = torch.nan_to_num(fr, nan=0.0, posinf=0.0, neginf=0.0)
    r_crystal = torch.full((B,), float(cutoff), dtype=dtype, device=device)
    r_crystal = torch.where(ok, r_crystal, torch.full_like(r_crystal, -1.0))  # negative radius: no candidates

    atoms = torch.arange(N, device=device)
    tnum = num_atoms[batch]
    if max_neighbors is None:
        tgt, src, img, d2 = _enumerate(fr, ptr, atoms, batch, tnum, r_crystal[batch], ufac)
        keep = torch.isfinite(d2)
        tgt, src, img = tgt[keep], src[keep], img[keep]
    else:
        tgt, src, img = _nearest(fr, ptr, batch, num_atoms, tnum, r_crystal, ufac, lattice, int(max_neighbors),
                                 float(cutoff), N)

    edge_index = torch.stack([src, tgt])
    cart = frac_to_cart(frac, lattice, batch)
    vec = edge_vectors(cart, lattice, batch, edge_index, img)
    dist = vec.norm(dim=-1)
    g = PeriodicGraph(edge_index, img.to(dtype), vec, dist)
    if triplets:
        g.idx_kj, g.idx_ji = _triplets_sorted(src, tgt, img, N, ptr, batch)
    return g


def _nearest(fr, ptr, batch, num_atoms, tnum, r_crystal, ufac, lattice, k, cutoff, N):
    """Edges to the ``k`` nearest sources of every atom within ``cutoff``, sorted by (target, source, image)."""
    device, dtype = fr.device, fr.dtype
    atoms = torch.arange(N, device=device)
    if k <= 0:
        z = torch.zeros(0, dtype=torch.long, device=device)
        return z, z, torch.zeros(0, 3, dtype=torch.long, device=device)
    # pass 1: reduced radius from the density (volume per atom)
    vol = torch.linalg.det(lattice.detach().to(torch.float64)).abs().to(dtype)
    per_atom = vol / num_atoms.clamp(min=1).to(dtype)
    r_small = _ALPHA * (3.0 * k * per_atom / (4.0 * math.pi)).pow(1.0 / 3.0)
    r1 = torch.where(r_crystal > 0, torch.minimum(r_small, r_crystal), r_crystal)
    reduced = r1 < r_crystal  # [B]
    tgt, src, img, d2 = _enumerate(fr, ptr, atoms, batch, tnum, r1[batch], ufac)
    # every atom of a searchable crystal (radius >= 0) has its self-loop listed once (as d2 = inf): not a neighbour
    real_deg = torch.bincount(tgt, minlength=N) - (r1[batch] >= 0).long()
    short = reduced[batch] & (real_deg < k)
    parts = [(tgt, src, img, d2)]
    if bool(short.any()):
        t2 = short.nonzero().flatten()
        parts.append(_enumerate(fr, ptr, t2, batch[t2], tnum[t2], r_crystal[batch[t2]], ufac))
    # table [N, max_degree] of squared distances; a short atom's row is overwritten by its pass-2 list
    degs = [torch.bincount(p[0], minlength=N) for p in parts]
    width = int(torch.stack(degs).max()) if N else 0
    width = max(width, 1)
    table = torch.full((N, width), float("inf"), dtype=dtype, device=device)
    ids = torch.zeros((N, width), dtype=torch.long, device=device)
    base = 0
    for (t, _, _, dd), dg in zip(parts, degs):
        start = torch.cumsum(dg, 0) - dg
        slot = torch.arange(t.numel(), device=device) - start[t]
        table[t, slot] = dd
        ids[t, slot] = torch.arange(base, base + t.numel(), device=device)
        base += t.numel()
    kk = min(k, width)
    val, col = torch.topk(table, kk, dim=1, largest=False, sorted=False)
    col, order = torch.sort(col, dim=1)  # back to (source, image) order within each row
    val = torch.gather(val, 1, order)
    chosen = torch.gather(ids, 1, col)
    sel = chosen[torch.isfinite(val)]
    if len(parts) == 1:
        tgt, src, img = tgt[sel], src[sel], img[sel]
    else:
        tgt = torch.cat([p[0] for p in parts])[sel]
        src = torch.cat([p[1] for p in parts])[sel]
        img = torch.cat([p[2] for p in parts])[sel]
    return tgt, src, img


def graph_from_edges(frac: torch.Tensor, lattice: torch.Tensor, batch: torch.Tensor, edge_index: torch.Tensor,
                     offsets: torch.Tensor, triplets: bool = True) -> PeriodicGraph:
    """Build a :class:`PeriodicGraph` from given edges (e.g. the CrystalNN graph stored in the dataset)."""
    cart = frac_to_cart(frac, lattice, batch)
    offsets = offsets.to(frac.dtype)
    vec = edge_vectors(cart, lattice, batch, edge_index, offsets)
    g = PeriodicGraph(edge_index, offsets, vec, vec.norm(dim=-1))
    if triplets:
        g.idx_kj, g.idx_ji = build_triplets(edge_index, offsets, frac.shape[0])
    return g


def _edge_keys(src, dst, img, num_nodes):
    """Integer keys ordering edges by (target, source, image n2, n1, n0), and the keys of their reverse edges."""
    img = img.long()
    R = int(img.abs().max()) + 1 if img.numel() else 1
    w = 2 * R + 1
    if num_nodes * num_nodes * w ** 3 >= 2 ** 62:
        raise ValueError("build_triplets: graph too large for 64-bit edge keys")
    enc = ((img[:, 2] + R) * w + (img[:, 1] + R)) * w + (img[:, 0] + R)
    renc = ((R - img[:, 2]) * w + (R - img[:, 1])) * w + (R - img[:, 0])
    key = (dst * num_nodes + src) * (w ** 3) + enc
    rkey = (src * num_nodes + dst) * (w ** 3) + renc
    return key, rkey


def _triplets_sorted(src, dst, img, num_nodes, ptr=None, batch=None, keys_sorted=True):
    """Triplets for edges sorted by target (and, with ``keys_sorted``, by source then image within a target)."""
    device = src.device
    E = src.numel()
    if E == 0:
        z = torch.zeros(0, dtype=torch.long, device=device)
        return z, z.clone()
    # position of the exact reverse edge of each edge (or -1)
    key, rkey = _edge_keys(src, dst, img, num_nodes)
    if keys_sorted:
        pos = torch.searchsorted(key, rkey).clamp_(max=E - 1)
        has = key[pos] == rkey
    else:
        skey, perm = torch.sort(key)
        p = torch.searchsorted(skey, rkey).clamp_(max=E - 1)
        has = skey[p] == rkey
        pos = perm[p]
    deg = torch.bincount(dst, minlength=num_nodes)
    estart = torch.cumsum(deg, 0) - deg  # first incoming edge of each node
    cnt = deg[src] - has.long()  # edges k->j into the source j of edge j->i, minus its reverse
    idx_ji, local = _expand(cnt)
    idx_kj = estart[src][idx_ji] + local
    # skip the reverse edge: shift indices at or past it by one
    rev = torch.where(has, pos, torch.full_like(pos, E))
    idx_kj += (idx_kj >= rev[idx_ji]).long()
    return idx_kj, idx_ji


def build_triplets(edge_index: torch.Tensor, offsets: torch.Tensor, num_nodes: int
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Triplets k->j->i as pairs of edge indices ``(idx_kj, idx_ji)``.

    Edge kj has target j; edge ji has source j. The pair is dropped when kj is the exact reverse of ji
    (k == i and offset_kj == -offset_ji), i.e. the same physical bond walked back; k == i with another image is kept.
    Edges may come in any order; duplicate edges (same j, i and offset twice) are not expected.
    """
    device = edge_index.device
    src, dst = edge_index[0].long(), edge_index[1].long()
    E = src.numel()
    if E == 0:
        z = torch.zeros(0, dtype=torch.long, device=device)
        return z, z.clone()
    img = torch.round(offsets).long() if offsets.is_floating_point() else offsets.long()
    is_sorted = bool((dst[1:] >= dst[:-1]).all()) if E > 1 else True
    if is_sorted:
        return _triplets_sorted(src, dst, img, num_nodes, keys_sorted=False)
    order = torch.argsort(dst, stable=True)
    kj, ji = _triplets_sorted(src[order], dst[order], img[order], num_nodes, keys_sorted=False)
    return order[kj], order[ji]


def crystalnn_edges(structure, max_neighbors: Optional[int] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The CrystalNN bonding graph of a pymatgen ``Structure`` (the encoder graph of the paper configuration).

    Returns ``edge_index [2, E]`` (long; [0] = source neighbour j, [1] = target centre i) and integer
    ``offsets [E, 3]`` (long, image of j). Both directions of each bond are included, as CrystalNN is applied
    to every site.
    """
    from pymatgen.analysis.local_env import CrystalNN

    cnn = CrystalNN(distance_cutoffs=None, x_diff_weight=-1, porous_adjustment=False)
    src, dst, off = [], [], []
    for i, nn_info in enumerate(cnn.get_all_nn_info(structure)):
        for nb in nn_info:
            src.append(nb["site_index"])
            dst.append(i)
            off.append(tuple(int(round(x)) for x in nb["image"]))
    edge_index = torch.tensor([src, dst], dtype=torch.long).reshape(2, -1)
    offsets = torch.tensor(off, dtype=torch.long).reshape(-1, 3)
    return edge_index, offsets
