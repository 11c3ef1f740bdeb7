"""Periodic neighbour graphs and triplets, in pure torch (CPU or CUDA).

Edge convention (docs/ARCHITECTURE.md): ``edge_index[0] = j`` (source, neighbour), ``edge_index[1] = i``
(target, centre); ``offsets[e]`` is the integer cell image of the source, and
``vec[e] = cart[j] + offsets[e] @ lattice - cart[i]`` points from i to the image of j (Angstrom).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch

from .crystal import frac_to_cart

__all__ = ["PeriodicGraph", "radius_graph_pbc", "graph_from_edges", "build_triplets", "crystalnn_edges",
           "edge_vectors"]


@dataclass
class PeriodicGraph:
    """A batched periodic graph.

    Attributes:
        edge_index: ``[2, E]`` long, ``[0]`` = source j, ``[1]`` = target i.
        offsets: ``[E, 3]`` float, integer cell image of the source atom.
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
    shift = torch.einsum("ei,eij->ej", offsets.to(cart.dtype), lattice[batch[i]])
    return cart[j] + shift - cart[i]


def _image_ranges(lattice: torch.Tensor, cutoff: float) -> torch.Tensor:
    """Number of cell images needed per direction so that every neighbour within ``cutoff`` is found.

    Uses the interplanar spacings d_k = V / |a_l x a_m|: with fractional differences wrapped into [-0.5, 0.5],
    images -n..n along axis k cover distances up to (n + 0.5) d_k.
    """
    a, b, c = lattice.unbind(-2)
    vol = torch.linalg.det(lattice).abs()
    cross = torch.stack([torch.linalg.cross(b, c), torch.linalg.cross(c, a), torch.linalg.cross(a, b)], dim=-2)
    spacing = vol[:, None] / cross.norm(dim=-1)  # [B,3]
    return torch.ceil(cutoff / spacing + 0.5).long().clamp(min=1)  # [B,3]


def radius_graph_pbc(frac: torch.Tensor, lattice: torch.Tensor, batch: torch.Tensor, cutoff: float,
                     max_neighbors: Optional[int] = None, triplets: bool = True,
                     num_atoms: Optional[torch.Tensor] = None) -> PeriodicGraph:
    """All edges within ``cutoff`` (Angstrom) including periodic images, for a batch of crystals.

    Args:
        frac: ``[N, 3]`` fractional coordinates (any real values; they are used modulo 1 for the search and the
            returned vectors use the coordinates as given, so they are exact for wrapped or unwrapped input).
        lattice: ``[B, 3, 3]`` lattice matrices (rows = vectors, Angstrom).
        batch: ``[N]`` crystal index of every atom; atoms of one crystal must be contiguous.
        cutoff: radius in Angstrom (edges with ``dist <= cutoff``).
        max_neighbors: keep only the nearest ``max_neighbors`` sources per target atom (ties broken by index).
        triplets: also build triplet indices (for DimeNet++/GemNet-T).
    Returns:
        a :class:`PeriodicGraph` whose edges are sorted by target atom.
    """
    device, dtype = frac.device, frac.dtype
    B = lattice.shape[0]
    if num_atoms is None:
        num_atoms = torch.bincount(batch, minlength=B)
    N = frac.shape[0]
    if N == 0:
        empty = torch.zeros(2, 0, dtype=torch.long, device=device)
        z = torch.zeros(0, 3, dtype=dtype, device=device)
        return PeriodicGraph(empty, z, z, torch.zeros(0, dtype=dtype, device=device),
                             torch.zeros(0, dtype=torch.long, device=device),
                             torch.zeros(0, dtype=torch.long, device=device))
    nmax = int(num_atoms.max())
    ptr = torch.zeros(B + 1, dtype=torch.long, device=device)
    ptr[1:] = torch.cumsum(num_atoms, 0)
    local = torch.arange(N, device=device) - ptr[batch]

    # padded [B, nmax, 3] fractional coordinates and mask
    fpad = torch.zeros(B, nmax, 3, dtype=dtype, device=device)
    fpad[batch, local] = frac
    mask = torch.zeros(B, nmax, dtype=torch.bool, device=device)
    mask[batch, local] = True

    # pair differences j - i, wrapped to [-0.5, 0.5)
    diff = fpad[:, None, :, :] - fpad[:, :, None, :]  # [B, i, j, 3]
    shift0 = torch.round(diff)
    diff = diff - shift0
    cdiff = (diff.reshape(B, nmax * nmax, 3) @ lattice)  # [B, P, 3]

    rng = _image_ranges(lattice.detach(), cutoff)  # [B,3]
    r = rng.max(dim=0).values.tolist()
    ax = [torch.arange(-k, k + 1, device=device, dtype=dtype) for k in r]
    images = torch.cartesian_prod(*ax)  # [K,3]
    img_ok = (images.abs()[None] <= rng[:, None, :].to(dtype)).all(-1)  # [B,K]
    cimg = images[None] @ lattice  # [B,K,3]

    d2 = (cdiff.pow(2).sum(-1, keepdim=True) + 2 * cdiff @ cimg.transpose(1, 2)
          + cimg.pow(2).sum(-1)[:, None, :])  # [B,P,K]
    d2 = d2.reshape(B, nmax, nmax, -1)
    keep = d2 <= cutoff * cutoff + 1e-8
    keep &= (mask[:, :, None] & mask[:, None, :])[..., None]
    keep &= img_ok[:, None, None, :]
    # no self-loop at zero image: (i == j) and total shift zero. diff=0 -> shift0=0, zero image index
    zero_k = int(((images == 0).all(-1)).nonzero()[0])
    eye = torch.eye(nmax, dtype=torch.bool, device=device)
    keep[:, eye, zero_k] = False

    bb, ii, jj, kk = keep.nonzero(as_tuple=True)
    src = ptr[bb] + jj
    dst = ptr[bb] + ii
    offsets = images[kk] - shift0[bb, ii, jj]
    # diff was taken on the coordinates as given, so offsets are relative to them (wrapped or not)

    edge_index = torch.stack([src, dst])
    cart = frac_to_cart(frac, lattice, batch)
    vec = edge_vectors(cart, lattice, batch, edge_index, offsets)
    dist = vec.norm(dim=-1)

    # sort by target then distance (nonzero already yields target-major order within each crystal)
    if max_neighbors is not None:
        order = torch.argsort(dist.detach(), stable=True)
        order = order[torch.argsort(dst[order], stable=True)]
        edge_index, offsets, vec, dist = edge_index[:, order], offsets[order], vec[order], dist[order]
        dst_s = edge_index[1]
        counts = torch.bincount(dst_s, minlength=N)
        start = torch.cumsum(counts, 0) - counts
        rank = torch.arange(dst_s.numel(), device=device) - start[dst_s]
        sel = rank < max_neighbors
        edge_index, offsets, vec, dist = edge_index[:, sel], offsets[sel], vec[sel], dist[sel]

    g = PeriodicGraph(edge_index, offsets, vec, dist)
    if triplets:
        g.idx_kj, g.idx_ji = build_triplets(edge_index, offsets, N)
    return g


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


def build_triplets(edge_index: torch.Tensor, offsets: torch.Tensor, num_nodes: int
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Triplets k->j->i as pairs of edge indices ``(idx_kj, idx_ji)``.

    Edge kj has target j; edge ji has source j. The pair is dropped when kj is the exact reverse of ji
    (k == i and offset_kj == -offset_ji), i.e. the same physical bond walked back; k == i with another image is kept.
    """
    device = edge_index.device
    src, dst = edge_index
    E = src.numel()
    if E == 0:
        z = torch.zeros(0, dtype=torch.long, device=device)
        return z, z
    # incoming edges grouped by target (CSR)
    order = torch.argsort(dst, stable=True)
    counts = torch.bincount(dst, minlength=num_nodes)
    start = torch.cumsum(counts, 0) - counts
    # for each edge ji (source j): all edges kj with target j
    n_per = counts[src]  # [E]
    idx_ji = torch.repeat_interleave(torch.arange(E, device=device), n_per)
    base = torch.repeat_interleave(start[src], n_per)
    cum = torch.cumsum(n_per, 0) - n_per
    within = torch.arange(idx_ji.numel(), device=device) - torch.repeat_interleave(cum, n_per)
    idx_kj = order[base + within]
    # drop the reverse edge
    rev = (src[idx_kj] == dst[idx_ji]) & (offsets[idx_kj] == -offsets[idx_ji]).all(-1)
    keep = ~rev
    return idx_kj[keep], idx_ji[keep]


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
