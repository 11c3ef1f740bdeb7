"""CrystalNN neighbour lists from one Voronoi tessellation per structure (pymatgen's ``CrystalNN``, same answers).

Low-level: used by the preprocessing (CDVAE's CrystalNN graph, :func:`dpcdvae.structures.graph.crystalnn_edges`) and by the
Table II structure fingerprints (:mod:`dpcdvae.eval.fingerprints`). pymatgen is imported on first use.
"""
from __future__ import annotations

import functools
import math
import os
import types
import warnings
from collections import Counter
from typing import Any

import numpy as np

# local: heavy -- pymatgen is imported on first use (graph.py imports this module, and the models import graph.py)

__all__ = ["fast_crystalnn", "voronoi_cell_arrays", "cell_info_dicts", "counters", "reset_counters", "IMPLS",
           "DEFAULT_IMPL"]

# --- fast path: one Voronoi tessellation per structure instead of one per site --------------------------------------
#
# matminer's featurizer calls ``CrystalNN.get_nn_data(structure, i)`` for every site i; that builds a fresh
# ``VoronoiNN(weight="solid_angle", targets=None, cutoff=7)`` and calls ``get_nn_info(structure, i)``, which gathers
# every atom within 7 A of site i and runs a Voronoi tessellation (qhull) of those points for that single site. The
# fast path tessellates once per structure (``VoronoiNN.get_all_voronoi_polyhedra``: all sites of the cell plus all
# their neighbours within 7 A) and hands each site's polyhedron to CrystalNN's unchanged weighting code.
#
# Why the result is the same: the single-site tessellation uses the points P_i within r_c = 7 A of site i; the
# all-site one uses a superset Q of P_i. Let R_i be the largest distance from site i to a vertex of its cell in the
# all-site tessellation. A point farther than r_c from site i is farther than r_c - R_i >= R_i from every point of
# the ball of radius R_i around site i, so it cannot cut the cell there; since the cell is convex and lies inside
# that ball, the cells computed from P_i and from Q are the same polyhedron (same neighbours, same faces) whenever
# R_i < r_c / 2. That condition is checked for every site (``_RecordingVoronoiNN`` records R_i); a site that fails
# it, or a structure for which the all-site tessellation raises or that is not eligible (1 site, fractional
# coordinates outside [0, 1) which pymatgen's all-site path re-wraps, two atoms closer than 0.5 A, oxidation-state
# targets), is computed by the original single-site call. What remains is floating-point noise in the qhull vertex
# coordinates (~1e-15 relative), far below the 1e-3 rounding that CrystalNN applies to the weights and the 1e-8
# tolerance of the equality test (``tests/eval/test_fast_fingerprint.py``).
#
# The same argument holds for any tessellation cutoff r_t <= r_c: the cell of site i computed from a point set that
# contains every point within r_t of site i does not depend on the points farther away once R_i < r_t / 2. The
# all-site tessellation therefore uses r_t = 5 A (``$DPCDVAE_FP_TESS_CUTOFF``), fewer points than 7 A,
# checks R_i < r_t / 2 per site (true for every site of the first 30 Carbon-24 / Perov-5 rows) and retries with
# r_t = r_c when the small tessellation raises. Speed: BENCHMARKS.md (``benchmarks/bench_fingerprints.py``).
#
# How it is injected: ``CrystalNN.get_nn_data`` looks the name ``VoronoiNN`` up in its module globals when called.
# :class:`_FastCrystalNN` runs pymatgen's own ``get_nn_data`` code object with a globals mapping in which that name
# is a factory of :class:`_CachedVoronoiNN` bound to the instance; nothing global is patched. ``_CachedVoronoiNN``
# answers ``get_nn_info(structure, i)`` from the per-structure cache (fresh copies of the polyhedron dicts, because
# pymatgen's extraction mutates them) only when ``structure`` is the very object the cache was built for and the
# cutoff / targets / weight are the ones it was built with; anything else goes to the ordinary ``VoronoiNN``.
# The order parameters are then computed by matminer's own ``featurize`` exactly as before.

_FAST_MIN_PAIR_DIST = 0.5  # A: structures with closer atoms (overlapping / duplicated atoms) use the per-site path
_FAST_CLASSES = None
_FAST_TESS_CUTOFF = float(os.environ.get("DPCDVAE_FP_TESS_CUTOFF", "5.0"))

# --- vectorised cell info and CrystalNN weights (``impl="vector"``, the default) -----------------------------------
#
# What the fast path above still spent its time on (Carbon-24, one core): pymatgen's ``VoronoiNN._extract_cell_info``
# loops, for every site of the cell, over *every* ridge of the tessellation and, for each face of the site, calls
# ``solid_angle`` and ``vol_tetra`` per fan triangle (numpy calls on 3-vectors); then ``CrystalNN.get_nn_data`` walks
# the neighbours of each site in Python (``_get_original_site`` loops over the structure for home-cell neighbours);
# and ``get_all_voronoi_polyhedra`` builds a ``PeriodicNeighbor`` object for each of the ~1000 tessellated points.
# ``impl="vector"`` keeps pymatgen's tessellation -- the same points in the same order, so the same qhull output --
# but makes it from arrays (:func:`_tessellation`, site objects only for the points looked at), and computes, for
# all faces of all sites at once (:func:`voronoi_cell_arrays`):
#
# * the solid angle of each face about its site: the sum over the fan triangles (v0, v_t, v_t+1) of
#   2 * atan2-like(|d0 . (d_t x d_t+1)|, r0 r_t r_t+1 + r_t+1 d0.d_t + r_t d0.d_t+1 + r0 d_t.d_t+1) (Van Oosterom &
#   Strackee), with pymatgen's branch (an angle <= 0 gets + pi) and pymatgen's order of operations: dot products as
#   (x0*y0 + x1*y1) + x2*y2 (what ``np.dot`` of 3-vectors gives with the bundled OpenBLAS), cross products as in
#   ``np.cross``, the fan sums accumulated left to right (``np.cumsum``). The face's volume (fan of tetrahedra with
#   the site), distance (half the site-neighbour distance), area (3 V / d) and normal likewise;
# * CrystalNN's weights of every neighbour of every site (:func:`_crystalnn_weight_arrays`): solid angle over the
#   largest one, times solid angle / area (porous adjustment), times the electronegativity factor, the two stable
#   sorts, the renormalisation, the smooth distance cutoff (``math.cos`` per neighbour in the band, as pymatgen),
#   the rounding to 3 decimals (``np.round``, which is what ``round`` does to the ``np.float64`` weights) --
#   then each ``get_nn_data(structure, n)`` only assembles site n's ``NNData`` (fresh dicts, CN -> weight by
#   pymatgen's own ``_semicircle_integral``).
#
# On this build every one of these numbers is bit-for-bit pymatgen's (tested: the comparisons in
# ``tests/structures/test_crystalnn_vector.py`` are exact), so the neighbour order among equal weights is pymatgen's too; with
# another BLAS (an FMA in ``ddot``) they could differ by an ulp, which only matters at CrystalNN's discontinuities.
# There the answer goes through pymatgen's code explicitly and is counted in :data:`COUNTERS` (never silently):
#
# * a fan triangle with |d0 . (d_t x d_t+1)| <= TRIPLE_GUARD * r0 r_t r_t+1 and a positive denominator: pymatgen's
#   ``arctan(tp / de) > 0`` test flips there (an exactly flat triangle adds 2 pi, a nearly flat one ~0). These occur
#   (zero-area faces between cospherical atoms: 32 of the 4424 faces of the first 60 Perov-5 test crystals); that
#   face's solid angle is pymatgen's ``solid_angle`` on the same centre and vertices, as its extraction calls it.
#   (The other branch, ``de == 0``, is continuous: both sides give pi.)
# * a weight within ROUND_GUARD (in units of 1e-3) of a rounding boundary k + 1/2 (the 3-decimal rounding, and with
#   it the "weight > 0" cut, could go either way), a face with a solid angle <= 0, a site whose largest weight is 0:
#   that site's ``get_nn_data`` runs pymatgen's code on the cached (vectorised) cell info. The smooth distance
#   cutoff and the sorts are continuous / order-only and need no guard.
#
# ``impl="cells"`` uses the array tessellation and the vectorised cell info with pymatgen's ``get_nn_data``;
# ``impl="pymatgen"`` is the fast path as it was before (pymatgen's ``get_all_voronoi_polyhedra`` and
# ``_extract_cell_info``). ``$DPCDVAE_CRYSTALNN_IMPL`` sets the default. Speed of each: BENCHMARKS.md
# (``benchmarks/bench_fingerprints.py``).

#: implementations of :func:`fast_crystalnn`'s one-tessellation path (see the comment above)
IMPLS = ("vector", "cells", "pymatgen")
DEFAULT_IMPL = os.environ.get("DPCDVAE_CRYSTALNN_IMPL", "vector")
if DEFAULT_IMPL not in IMPLS:  # pragma: no cover - a mistyped environment variable
    raise ValueError(f"$DPCDVAE_CRYSTALNN_IMPL={DEFAULT_IMPL!r}: expected one of {IMPLS}")

#: a fan triangle whose |triple product| is below this fraction of r0 r_t r_t+1 (with a positive denominator) sits at
#: pymatgen's solid-angle branch (``arctan > 0``); round-off in the triple product is ~1e-16 of that scale
TRIPLE_GUARD = 1e-12
#: a CrystalNN weight w with |frac(1000 w) - 1/2| below this sits at a 3-decimal rounding boundary; the weights here
#: equal pymatgen's to a few ulp at most (~1e-13 in 1000 w), so the guard is wide by ~1e5
ROUND_GUARD = 1e-8

#: counts since the last :func:`reset_counters`: structures prepared by the vector code, faces whose solid angle it
#: computed / that pymatgen's ``solid_angle`` computed (fan triangle at the arctan branch), ``get_nn_data`` calls it
#: answered / that ran pymatgen's code on a cached cell, and the reasons (reason -> count)
COUNTERS: dict[str, Any] = {"structures": 0, "faces_vector": 0, "faces_pymatgen": 0, "nn_vector": 0,
                            "nn_pymatgen": 0, "reasons": Counter()}


def reset_counters() -> None:
    """Zero :data:`COUNTERS`."""
    COUNTERS.update(structures=0, faces_vector=0, faces_pymatgen=0, nn_vector=0, nn_pymatgen=0, reasons=Counter())


def counters() -> dict:
    """A copy of :data:`COUNTERS` (``reasons`` as a plain dict)."""
    out = dict(COUNTERS)
    out["reasons"] = dict(COUNTERS["reasons"])
    return out


def _count(key: str, reason: str | None = None, n: int = 1) -> None:
    COUNTERS[key] += n
    if reason is not None:
        COUNTERS["reasons"][reason] += n


def _dot3(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Dot products over the last axis (length 3) as (a0*b0 + a1*b1) + a2*b2 (``np.dot`` of two 3-vectors)."""
    return (a[..., 0] * b[..., 0] + a[..., 1] * b[..., 1]) + a[..., 2] * b[..., 2]


def _cross3(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cross products over the last axis with ``np.cross``'s operations (a1*b2 - a2*b1, ...)."""
    a0, a1, a2 = a[..., 0], a[..., 1], a[..., 2]
    b0, b1, b2 = b[..., 0], b[..., 1], b[..., 2]
    return np.stack([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0], axis=-1)


def voronoi_cell_arrays(points, vertices, ridge_points, ridge_vertices, centres,
                        solid_angle_fn=None) -> dict[str, Any]:
    """Face statistics of the Voronoi cells of ``centres`` in one tessellation, for all faces at once.

    ``points [P, 3]`` (A): the tessellated points (``Voronoi.points``); ``vertices [V, 3]`` (A), ``ridge_points
    [R, 2]`` and ``ridge_vertices`` (R lists of vertex indices, in qhull's cyclic order): the tessellation's;
    ``centres [C]``: the point indices whose cells are wanted. One row per (centre, face), grouped by centre in the
    order of ``centres`` and, within a centre, in ridge order (the order of pymatgen's ``_extract_cell_info`` dict).
    Returns a dict of arrays: ``centre_pos [F]`` (index into ``centres``), ``start [C + 1]`` (the rows of centre c are
    ``start[c]:start[c+1]``), ``ridge [F]``, ``other [F]`` (the point across the face), ``solid_angle [F]`` (sr),
    ``volume [F]`` (A^3, the pyramid of the face with the centre), ``face_dist [F]`` (A), ``area [F]`` (A^2),
    ``normal [F, 3]`` (unit vector centre -> other), ``n_verts [F]``, ``flat_face [F]`` (a fan triangle at pymatgen's
    solid-angle branch, see :data:`TRIPLE_GUARD`), ``flat_centre [C]``, ``radius [C]`` (A, largest centre-vertex
    distance of the cell; inf when the cell has fewer than 4 distinct vertices) and ``vert_index [F, M]`` / ``vert_mask
    [F, M]`` (the padded vertex lists). Each statistic equals pymatgen's ``VoronoiNN._extract_cell_info`` for the same
    tessellation (see the comment above). ``solid_angle_fn(centre [3], [vertex [3], ...])`` (pymatgen's
    ``solid_angle``), when given, computes the solid angle of each ``flat_face`` instead (pymatgen's answer at its
    branch, see :data:`TRIPLE_GUARD`). Raises ``RuntimeError`` for a face with an infinite vertex and ``ValueError``
    for a centre without faces, as pymatgen does.
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    vertices = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
    rp = np.asarray(ridge_points, dtype=np.int64).reshape(-1, 2)
    centres = np.asarray(centres, dtype=np.int64).reshape(-1)
    nc = len(centres)
    pos = np.full(len(points), -1, dtype=np.int64)
    pos[centres] = np.arange(nc)
    # one row per (centre, face): each ridge counts for each of its two points that is a centre
    e0 = np.nonzero(pos[rp[:, 0]] >= 0)[0]
    e1 = np.nonzero(pos[rp[:, 1]] >= 0)[0]
    ridge = np.concatenate([e0, e1])
    cpos = np.concatenate([pos[rp[e0, 0]], pos[rp[e1, 1]]])
    other = np.concatenate([rp[e0, 1], rp[e1, 0]])
    order = np.lexsort((ridge, cpos))
    ridge, cpos, other = ridge[order], cpos[order], other[order]
    counts = np.bincount(cpos, minlength=nc)
    if nc and counts.min() == 0:
        raise ValueError("No Voronoi neighbors found for site - try increasing cutoff")
    start = np.zeros(nc + 1, dtype=np.int64)
    np.cumsum(counts, out=start[1:])

    vlists = [ridge_vertices[r] for r in ridge.tolist()]
    m = np.fromiter(map(len, vlists), dtype=np.int64, count=len(vlists))
    flat = np.fromiter((v for vl in vlists for v in vl), dtype=np.int64, count=int(m.sum()))
    if flat.size and flat.min() < 0:
        raise RuntimeError("This structure is pathological, infinite vertex in the Voronoi construction")
    nf = len(vlists)
    mmax = max(int(m.max()) if nf else 0, 3)
    vmask = np.arange(mmax)[None, :] < m[:, None]
    vidx = np.zeros((nf, mmax), dtype=np.int64)
    vidx[vmask] = flat  # row-major: each row's prefix gets that face's list

    centre_xyz = points[centres][cpos]  # [F, 3]
    p = vertices[vidx]  # [F, M, 3]
    disp = p - centre_xyz[:, None, :]
    r = np.sqrt(_dot3(disp, disp))  # [F, M]
    tri = np.arange(mmax - 2)[None, :] + 2 < m[:, None]  # fan triangle (0, t, t+1) exists, t = 1..m-2
    d0, di, dj = disp[:, :1, :], disp[:, 1:-1, :], disp[:, 2:, :]
    r0, ri, rj = r[:, :1], r[:, 1:-1], r[:, 2:]
    tp = np.abs(_dot3(d0, _cross3(di, dj)))
    de = ((r0 * ri * rj + rj * _dot3(d0, di)) + ri * _dot3(d0, dj)) + r0 * _dot3(di, dj)
    with np.errstate(divide="ignore", invalid="ignore"):
        ang = np.where(de == 0, np.where(tp > 0, 0.5 * math.pi, -0.5 * math.pi),
                       np.arctan(tp / np.where(de == 0, 1.0, de)))
    contrib = np.where(tri, np.where(ang > 0, ang, ang + math.pi) * 2, 0.0)
    solid = np.cumsum(contrib, axis=1)[:, -1] if nf else np.zeros(0)
    flat_face = np.any(tri & (de > 0) & (tp <= TRIPLE_GUARD * (r0 * ri * rj)), axis=1)
    if solid_angle_fn is not None:
        for e in np.nonzero(flat_face)[0].tolist():
            solid[e] = solid_angle_fn(points[centres[cpos[e]]], [vertices[v] for v in vlists[e]])

    pk = p[:, 2:, :]
    tet = np.abs(_dot3(centre_xyz[:, None, :] - pk, _cross3(p[:, :1, :] - pk, p[:, 1:-1, :] - pk))) / 6
    volume = np.cumsum(np.where(tri, tet, 0.0), axis=1)[:, -1] if nf else np.zeros(0)
    sep = centre_xyz - points[other]
    face_dist = np.sqrt(_dot3(sep, sep)) / 2
    area = 3 * volume / face_dist
    normal = points[other] - centre_xyz
    normal = normal / np.sqrt(_dot3(normal, normal))[:, None]

    radius = np.full(nc, np.inf)
    flat_centre = np.zeros(nc, dtype=bool)
    if nf:
        rmax = np.where(vmask, r, -np.inf).max(axis=1)
        radius = np.maximum.reduceat(rmax, start[:-1])
        flat_centre = np.logical_or.reduceat(flat_face, start[:-1])
        pairs = np.unique(np.stack([np.repeat(cpos, m), flat]), axis=1)  # distinct (centre, vertex)
        n_distinct = np.bincount(pairs[0], minlength=nc)
        radius = np.where(n_distinct < 4, np.inf, radius)
    return {"points": points, "centres": centres, "centre_pos": cpos, "start": start, "ridge": ridge, "other": other,
            "solid_angle": solid, "volume": volume, "face_dist": face_dist, "area": area, "normal": normal,
            "n_verts": m, "vert_index": vidx, "vert_mask": vmask, "flat_face": flat_face, "flat_centre": flat_centre,
            "radius": radius}


def cell_info_dicts(cells: dict, k: int, sites, ridge_vertices, adjacency: bool = True) -> dict:
    """pymatgen's ``_extract_cell_info`` result for centre ``k`` (position in ``cells["centres"]``) from
    :func:`voronoi_cell_arrays`' arrays: ``{other point index: {"site", "normal", "solid_angle", "volume",
    "face_dist", "area", "n_verts", "verts", "adj_neighbors"}}`` in pymatgen's order (fresh dicts; ``sites`` are the
    tessellated sites, ``ridge_vertices`` the tessellation's). ``adj_neighbors`` (faces sharing exactly two vertices,
    in the order pymatgen's pair loop appends them) is left out with ``adjacency=False``."""
    a, b = int(cells["start"][k]), int(cells["start"][k + 1])
    others = cells["other"][a:b].tolist()
    ridges = cells["ridge"][a:b].tolist()
    out = {}
    for j, (o, rid) in enumerate(zip(others, ridges)):
        e = a + j
        out[o] = {"site": sites[o], "normal": cells["normal"][e].copy(), "solid_angle": cells["solid_angle"][e],
                  "volume": cells["volume"][e], "face_dist": cells["face_dist"][e], "area": cells["area"][e],
                  "n_verts": int(cells["n_verts"][e]), "verts": ridge_vertices[rid]}
    if adjacency:
        vidx, vmask = cells["vert_index"][a:b], cells["vert_mask"][a:b]
        rows = np.nonzero(vmask)[0]
        uniq, col = np.unique(vidx[vmask], return_inverse=True)
        inc = np.zeros((b - a, len(uniq)), dtype=np.int64)
        inc[rows, col.reshape(-1)] = 1  # set semantics: a vertex listed twice counts once
        shared = inc @ inc.T
        keys = np.asarray(others, dtype=np.int64)
        # pymatgen: for a in faces, for b in faces with key(b) <= key(a): if |verts(a) & verts(b)| == 2, append
        # b to a's list and a to b's (in this order), in the dict order of a, then of b
        adj = {o: [] for o in others}
        for ia, ib in zip(*np.nonzero((shared == 2) & (keys[None, :] <= keys[:, None]))):
            adj[others[ia]].append(others[ib])
            adj[others[ib]].append(others[ia])
        for o in others:
            out[o]["adj_neighbors"] = adj[o]
    return out


# --- pymatgen's all-site tessellation, without a site object per tessellated point ------------------------------
#
# ``VoronoiNN.get_all_voronoi_polyhedra`` tessellates the home-cell sites (wrapped to [0, 1)) plus every neighbour
# within the cutoff from ``Structure.get_all_neighbors``, which builds one ``PeriodicNeighbor`` object per (site,
# neighbour) pair -- about a third of the fingerprint time once the cell info is vectorised. :func:`_tessellation`
# makes the same point set from ``Structure.get_neighbor_list`` (the arrays ``get_all_neighbors`` is built on): the
# same rows (index, image) deduplicated by the same ``np.unique`` (so the same order and the same first occurrences),
# the same fractional coordinates (frac + image; np.mod(frac, 1) for the home cell) and Cartesian coordinates equal
# to ``Lattice.get_cartesian_coords`` of each row (checked, see :func:`_cartesian_rows`), hence the same qhull input
# and output; the site objects (``PeriodicSite`` for the home cell, ``PeriodicNeighbor`` with pymatgen's index,
# image, distance and label otherwise) are made only for the points that are looked at (:class:`_LazySites`).

_CART_EXPLICIT_OK: bool | None = None


def _cart_explicit(frac: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    return (frac[:, 0:1] * matrix[0] + frac[:, 1:2] * matrix[1]) + frac[:, 2:3] * matrix[2]


def _cartesian_rows(frac: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``np.dot(row, matrix)`` (``Lattice.get_cartesian_coords`` of one site) for every row, bit for bit.

    ``np.dot`` of a 3-vector and a 3x3 matrix (BLAS ``dgemv``) rounds like (f0 m0 + f1 m1) + f2 m2 with the bundled
    OpenBLAS, while a batched product (``dgemm``) uses fused multiply-adds and differs in the last bit; the explicit
    form is used when it reproduces ``np.dot`` on 256 random rows (once per process) and on the first rows here,
    else ``np.dot`` row by row."""
    global _CART_EXPLICIT_OK
    frac = np.ascontiguousarray(frac, dtype=np.float64).reshape(-1, 3)
    matrix = np.ascontiguousarray(matrix, dtype=np.float64)
    if _CART_EXPLICIT_OK is None:
        rng = np.random.default_rng(20261207)
        mt, ft = rng.normal(size=(3, 3)) * 4.0, rng.normal(size=(256, 3)) * 3.0
        _CART_EXPLICIT_OK = bool(np.array_equal(_cart_explicit(ft, mt), np.array([np.dot(r, mt) for r in ft])))
    if _CART_EXPLICIT_OK:
        out = _cart_explicit(frac, matrix)
        if all(np.array_equal(out[i], np.dot(frac[i], matrix)) for i in range(min(4, len(frac)))):
            return out
    return np.array([np.dot(r, matrix) for r in frac], dtype=np.float64).reshape(-1, 3)


class _LazySites:
    """The tessellated sites of :func:`_tessellation`, made on first access: ``sites[p]`` is what pymatgen's
    ``get_all_voronoi_polyhedra`` holds at position p (a ``PeriodicSite`` wrapped into the cell for a home-cell
    point, a ``PeriodicNeighbor`` otherwise)."""

    def __init__(self, structure, n_home: int, first: np.ndarray, pairs: tuple):
        self._structure = structure
        self._n = n_home
        self._first = first
        self._pairs = pairs  # (points_indices, images, distances, frac + image) in get_all_neighbors' order
        self._made: dict = {}

    def __len__(self) -> int:
        return len(self._first)

    def __getitem__(self, p):
        p = int(p)
        site = self._made.get(p)
        if site is None:
            j = int(self._first[p])
            if j < self._n:
                site = self._structure[j].to_unit_cell()
            else:
                from pymatgen.core.structure import PeriodicNeighbor

                pi, images, dists, fcoords = self._pairs
                j -= self._n
                psite = self._structure[int(pi[j])]
                site = PeriodicNeighbor(species=psite.species, coords=fcoords[j], lattice=self._structure.lattice,
                                        properties=psite.properties, nn_distance=dists[j], index=pi[j],
                                        image=tuple(images[j]), label=psite.label)
            self._made[p] = site
        return site


def _tessellation(structure, cutoff: float):
    """pymatgen's all-site tessellation of ``structure`` (as ``VoronoiNN(cutoff=cutoff).get_all_voronoi_polyhedra``
    makes it) without its per-point site objects: ``(sites, voro, roots, point_site)`` with ``sites`` a
    :class:`_LazySites`, ``voro`` the ``scipy.spatial.Voronoi`` of the same points in the same order, ``roots [n]``
    the point index of each home-cell site and ``point_site [P]`` the structure index of each point. Needs a periodic
    structure without coincident atoms (``prepare`` checks); raises what qhull raises."""
    from scipy.spatial import Voronoi

    n = len(structure)
    tol = 1e-8  # get_all_neighbors' numerical_tol
    ci, pi, images, dists = structure.get_neighbor_list(cutoff, numerical_tol=tol)
    if len(ci) and float(np.min(dists)) <= tol:
        raise RuntimeError("coincident sites: get_all_neighbors would drop pairs")
    order = np.argsort(ci, kind="stable")  # get_all_neighbors: the neighbours of site 0, then of site 1, ...
    pi, images, dists = pi[order], images[order], dists[order]
    frac = np.asarray(structure.frac_coords, dtype=np.float64)
    rows = np.concatenate([np.column_stack([np.arange(n), np.zeros((n, 3))]),
                           np.column_stack([pi, images])]).astype(np.int64)
    uniq, first = np.unique(rows, axis=0, return_index=True)
    roots = np.nonzero(np.abs(uniq[:, 1:]).max(axis=1) == 0)[0]
    fcoords = frac[pi] + images  # get_all_neighbors' fractional coordinates of the neighbours
    home = first < n
    pfrac = np.empty((len(uniq), 3))
    pfrac[home] = np.mod(frac[first[home]], 1)  # to_unit_cell
    pfrac[~home] = fcoords[first[~home] - n]
    points = _cartesian_rows(pfrac, structure.lattice.matrix)
    voro = Voronoi(points)
    sites = _LazySites(structure, n, first, (pi, images, dists, fcoords))
    return sites, voro, roots, uniq[:, 0].copy()


_SPECIE_CACHE: dict = {}


def _specie_props(site) -> tuple[float, float, float, bool]:
    """(Pauling electronegativity X, ``_get_radius``, ``_get_default_radius``) of a site's species (pymatgen's
    functions, cached per species), and whether ``_get_radius`` warned (no oxidation state)."""
    sp = site.specie
    props = _SPECIE_CACHE.get(sp)
    if props is None:
        from pymatgen.analysis.local_env import CrystalNN

        g = CrystalNN.get_nn_data.__globals__  # the module CrystalNN's code lives in (and takes the radii from)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            r = g["_get_radius"](site)
        try:
            rd = g["_get_default_radius"](site)
        except Exception:  # no radius at all: pymatgen raises when it needs it (the site then goes to pymatgen)
            rd = float("nan")
        props = _SPECIE_CACHE[sp] = (sp.X, r, rd, bool(caught))
    return props


def _crystalnn_weight_arrays(cnn, structure, cells: dict, point_site: np.ndarray) -> dict[str, Any]:
    """CrystalNN's per-neighbour weights of every cached centre, all faces at once (``cnn``'s settings; targets None;
    ``point_site [P]``: the structure index of each tessellated point).

    Returns ``order [F]`` (face rows of :func:`voronoi_cell_arrays` in each centre's final CrystalNN order),
    ``weight [F]`` (rounded to 3 decimals, in that order), ``status [C]`` (``None``: the vector answer stands,
    ``"empty"``: pymatgen returns the CN-0 ``NNData``, else the reason the site goes to pymatgen's code), ``warn
    [C]`` and ``warn_ox [C]`` (pymatgen would warn that it fell back to default radii / found no oxidation state)."""
    start, cpos, other = cells["start"], cells["centre_pos"], cells["other"]
    nc = len(start) - 1
    sa, area = cells["solid_angle"], cells["area"]
    nb = np.asarray(point_site, dtype=np.int64)[other]  # structure index of the site across each face
    # per-species tables (species of the structure's sites)
    species_id: dict = {}
    site_spec = np.empty(len(structure), dtype=np.int64)
    reps = []
    for i, site in enumerate(structure):
        j = species_id.get(site.specie)
        if j is None:
            j = species_id[site.specie] = len(reps)
            reps.append(site)
        site_spec[i] = j
    props = [_specie_props(s) for s in reps]
    s_c, s_n = site_spec[cpos], site_spec[nb]
    status: list = [None] * nc

    keep = sa > 0
    if not keep.all():  # pymatgen drops such faces; leave it to pymatgen's code
        for k in np.unique(cpos[~keep]).tolist():
            status[k] = "solid angle <= 0"
    smax = np.maximum.reduceat(sa, start[:-1])
    w = sa / smax[cpos]
    if cnn.porous_adjustment:
        w = w * (sa / area)
    if cnn.x_diff_weight > 0:
        ns = len(reps)
        cw = np.ones((ns, ns))
        for i in range(ns):
            for j in range(ns):
                x1, x2 = props[i][0], props[j][0]
                if not (math.isnan(x1) or math.isnan(x2)):
                    cw[i, j] = 1 + cnn.x_diff_weight * math.sqrt(abs(x1 - x2) / 3.3)
        w = w * cw[s_c, s_n]
    o1 = np.lexsort((-w, cpos))  # stable: equal weights keep the face order (pymatgen's sorted(reverse=True))
    w1 = w[o1]
    top = w1[start[:-1]]
    w1 = w1 / np.where(top == 0, 1.0, top)[cpos]  # cpos[o1] == cpos: rows stay grouped by centre
    for k in np.nonzero(top == 0)[0].tolist():
        status[k] = status[k] or "zero weight"
    warn = np.zeros(nc, dtype=bool)
    warn_ox = np.zeros(nc, dtype=bool)
    if cnn.distance_cutoffs:
        ns = len(reps)
        lo_t, hi_t, dflt = np.empty((ns, ns)), np.empty((ns, ns)), np.zeros((ns, ns), dtype=bool)
        for i in range(ns):
            for j in range(ns):
                r1, r2 = props[i][1], props[j][1]
                if r1 > 0 and r2 > 0:
                    diameter = r1 + r2
                else:
                    diameter = props[i][2] + props[j][2]
                    dflt[i, j] = True
                lo_t[i, j] = diameter + cnn.distance_cutoffs[0]
                hi_t[i, j] = diameter + cnn.distance_cutoffs[1]
        sc1, sn1 = s_c[o1], s_n[o1]
        centre_xyz = np.asarray(structure.cart_coords, dtype=np.float64)[cpos[o1]]
        sep = centre_xyz - cells["points"][other[o1]]
        dist = np.sqrt(_dot3(sep, sep))
        lo, hi = lo_t[sc1, sn1], hi_t[sc1, sn1]
        dw = np.where(dist <= lo, 1.0, 0.0)
        for e in np.nonzero((dist > lo) & (dist < hi))[0].tolist():
            d, cl, ch = dist[e], float(lo[e]), float(hi[e])
            dw[e] = (math.cos((d - cl) / (ch - cl) * math.pi) + 1) * 0.5
        w1 = w1 * dw
        warn = np.logical_or.reduceat(dflt[sc1, sn1], start[:-1])
        oxw = np.array([p[3] for p in props], dtype=bool)
        warn_ox = np.logical_or.reduceat(oxw[sc1] | oxw[sn1], start[:-1])
        if np.isnan(lo).any():
            for k in np.unique(cpos[np.isnan(lo)]).tolist():
                status[k] = status[k] or "no radius"
    o2 = np.lexsort((-w1, cpos))  # the second stable sort, on top of the first one's order
    order = o1[o2]
    wf = w1[o2]
    for k in np.nonzero(wf[start[:-1]] == 0)[0].tolist():
        status[k] = status[k] or "empty"
    y = wf * 1000.0
    near = np.abs((y - np.floor(y)) - 0.5) < ROUND_GUARD
    if near.any():
        for k in np.unique(cpos[near]).tolist():
            if status[k] in (None, "empty"):
                status[k] = "weight at a 3-decimal rounding boundary"
    return {"order": order, "weight": np.round(wf, 3), "status": status, "warn": warn, "warn_ox": warn_ox}



def _voronoi_classes():
    """Build (once) the ``VoronoiNN`` / ``CrystalNN`` subclasses of the fast path (pymatgen imported lazily)."""
    global _FAST_CLASSES
    if _FAST_CLASSES is not None:
        return _FAST_CLASSES
    from pymatgen.analysis.local_env import CrystalNN, VoronoiNN

    class _RecordingVoronoiNN(VoronoiNN):
        """``VoronoiNN`` that also records, for every cell it extracts (in call order, which for
        ``get_all_voronoi_polyhedra`` is site order), the largest centre-to-vertex distance of the Voronoi cell
        (``self.cell_radius``); needs ``compute_adj_neighbors=True`` (the default) so that pymatgen keeps each
        face's vertex indices."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.cell_radius: list[float] = []

        def _extract_cell_info(self, site_idx, sites, targets, voro, compute_adj_neighbors=False):
            info = super()._extract_cell_info(site_idx, sites, targets, voro, compute_adj_neighbors)
            center = np.asarray(sites[site_idx].coords, dtype=np.float64)
            verts = sorted({int(v) for face in info.values() for v in face.get("verts", ())})
            if len(verts) < 4:
                self.cell_radius.append(float("inf"))  # cannot verify: per-site fallback
            else:
                d = np.linalg.norm(np.asarray(voro.vertices)[verts] - center, axis=1)
                self.cell_radius.append(float(d.max()))
            return info

    class _CapturingVoronoiNN(VoronoiNN):
        """``VoronoiNN`` whose ``get_all_voronoi_polyhedra`` only tessellates: it records the tessellated sites, the
        targets, the ``scipy.spatial.Voronoi`` object and the home-cell site indices (``self.captured``,
        ``self.roots``) instead of extracting each cell. pymatgen's tessellation as it is, for checking
        :func:`_tessellation` and :func:`voronoi_cell_arrays` against it (``tests/structures/test_crystalnn_vector.py``)."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.captured = None
            self.roots: list[int] = []

        def _extract_cell_info(self, site_idx, sites, targets, voro, compute_adj_neighbors=False):
            self.captured = (sites, targets, voro)
            self.roots.append(int(site_idx))
            return None

    class _CachedVoronoiNN(VoronoiNN):
        """``VoronoiNN`` answering ``get_nn_info`` from its owner's per-structure polyhedra cache when it applies."""

        def __init__(self, *args, owner=None, **kwargs):
            super().__init__(*args, **kwargs)
            self._owner = owner

        def get_nn_info(self, structure, n):
            polys = None
            if self._owner is not None and self.targets is None and self.tol == 0 and self.weight == "solid_angle":
                polys = self._owner._cached_polys(structure, n, self.cutoff)
            if polys is not None:
                self._owner.cache_hits += 1
                return self._extract_nn_info(structure, polys)
            if self._owner is not None:
                self._owner.cache_misses += 1
            return super().get_nn_info(structure, n)

    _impl = CrystalNN.get_nn_data
    _injectable = "VoronoiNN" in getattr(getattr(_impl, "__code__", None), "co_names", ())

    def _settings(cnn) -> tuple:
        return (cnn.cation_anion, cnn.distance_cutoffs, cnn.x_diff_weight, cnn.porous_adjustment, cnn.search_cutoff)

    class _FastCrystalNN(CrystalNN):
        """``CrystalNN`` whose ``get_nn_data`` takes the Voronoi polyhedra from :meth:`prepare`'s cache.

        ``prepare(structure)`` tessellates once and keeps the cells of the sites that pass the R_i < r_c / 2 check;
        ``release()`` drops them. ``cache_hits`` / ``cache_misses`` count the sites whose ``get_nn_data`` was served
        from the one tessellation / by pymatgen's per-site tessellation. ``impl``
        (:data:`IMPLS`, default :data:`DEFAULT_IMPL`): ``"vector"`` computes the cells and the CrystalNN weights
        with numpy (see the comment above :data:`IMPLS`), ``"cells"`` only the cells, ``"pymatgen"`` neither.
        """

        injectable = _injectable

        def __init__(self, *args, impl: str | None = None, **kwargs):
            super().__init__(*args, **kwargs)
            self.impl = DEFAULT_IMPL if impl is None else impl
            self._poly_cache = None
            self.cache_hits = 0
            self.cache_misses = 0
            self.fallback_reasons: list[str] = []
            if _injectable:
                g = dict(_impl.__globals__)
                g["VoronoiNN"] = functools.partial(_CachedVoronoiNN, owner=self)
                self._nn_data_impl = types.FunctionType(_impl.__code__, g, _impl.__name__, _impl.__defaults__,
                                                        _impl.__closure__)
            else:  # pragma: no cover - a pymatgen whose get_nn_data no longer looks VoronoiNN up by name
                self._nn_data_impl = _impl

        # -- the per-structure cache --------------------------------------------------------------------------------
        def _cached_polys(self, structure, n, cutoff):
            """Fresh ``_extract_cell_info``-style polyhedra of site ``n`` from the cache, or ``None`` when the cache
            does not apply (another structure object, another cutoff, a site that was not cached)."""
            cache = self._poly_cache
            if cache is None or cache["structure"] is not structure or cutoff != cache["cutoff"]:
                return None
            if n in cache["polys"]:  # pymatgen's own dicts (impl="pymatgen")
                return {k: dict(v) for k, v in cache["polys"][n].items()}
            if n in cache["vector_sites"]:
                return cell_info_dicts(cache["cells"], n, cache["sites"], cache["ridge_vertices"])
            return None

        def get_nn_data(self, structure, n, length=None):
            cache = self._poly_cache
            if (cache is not None and cache["weights"] is not None and cache["structure"] is structure
                    and n in cache["vector_sites"]):
                status = cache["weights"]["status"][n]
                if status is None or status == "empty":
                    if _settings(self) == cache["settings"]:
                        self.cache_hits += 1  # served from the one tessellation, as through _CachedVoronoiNN
                        _count("nn_vector")
                        return self._vector_nn_data(cache, structure, n, length, status == "empty")
                    status = "CrystalNN settings changed since prepare"
                _count("nn_pymatgen", f"nn data: {status}")
            return self._nn_data_impl(self, structure, n, length)

        def _vector_nn_data(self, cache, structure, n, length, empty: bool):
            """Site ``n``'s ``NNData`` from the weight arrays (what pymatgen's ``get_nn_data`` returns)."""
            length = length or self.fingerprint_length
            if empty:
                return self.transform_to_length(self.NNData([], {0: 1.0}, {0: []}), length)
            cells, wts, sites = cache["cells"], cache["weights"], cache["sites"]
            if cache["distance_cutoffs"] and wts["warn_ox"][n]:
                warnings.warn("No oxidation states specified on sites! For better results, set the site oxidation "
                              "states in the structure.", stacklevel=2)
            if cache["distance_cutoffs"] and wts["warn"][n]:
                warnings.warn("CrystalNN: cannot locate an appropriate radius, covalent or atomic radii will be used, "
                              "this can lead to non-optimal results.", stacklevel=2)
            a, b = int(cells["start"][n]), int(cells["start"][n + 1])
            rows = wts["order"][a:b]
            weights = wts["weight"][a:b]
            n_pos = int(np.count_nonzero(weights > 0))  # the positive weights are a prefix (sorted, rounded)
            nn = []
            for e, wt in zip(rows[:n_pos].tolist(), weights[:n_pos]):
                o = int(cells["other"][e])
                site = sites[o]
                k = cache["home"].get(o)
                if k is None:  # a neighbour from get_all_neighbors: a PeriodicNeighbor with its index and image
                    image, index = site.image, site.index
                else:  # a home-cell site: pymatgen's _get_image / _get_original_site give this
                    image = tuple(np.around(np.subtract(site.frac_coords, structure[k].frac_coords)).astype(int))
                    index = k
                nn.append({"site": site, "image": image, "weight": wt, "site_index": index})
            dist_bins: list = []
            for entry in nn:
                if not dist_bins or dist_bins[-1] != entry["weight"]:
                    dist_bins.append(entry["weight"])
            dist_bins.append(0)
            cn_weights, cn_nninfo = {}, {}
            for idx, val in enumerate(dist_bins):
                if val != 0:
                    cn = sum(1 for entry in nn if entry["weight"] >= val)
                    cn_nninfo[cn] = nn[:cn]
                    cn_weights[cn] = self._semicircle_integral(dist_bins, idx)
            cn0_weight = 1 - sum(cn_weights.values())
            if cn0_weight > 0:
                cn_nninfo[0] = []
                cn_weights[0] = cn0_weight
            return self.transform_to_length(self.NNData(nn, cn_weights, cn_nninfo), length)

        # -- prepare / release --------------------------------------------------------------------------------------
        def prepare(self, structure) -> int:
            """Tessellate ``structure`` once; returns how many sites will be served from the cache."""
            self._poly_cache = None
            if self.impl not in IMPLS:
                raise ValueError(f"unknown CrystalNN implementation {self.impl!r} (expected one of {IMPLS})")
            reason = None
            if not _injectable:
                reason = "pymatgen CrystalNN.get_nn_data cannot be injected"
            elif self.cation_anion:
                reason = "cation_anion targets"
            elif len(structure) < 2:
                reason = "single site"
            else:
                f = np.asarray(structure.frac_coords, dtype=np.float64)
                if not np.all((f >= 0.0) & (f < 1.0)):
                    reason = "fractional coordinates outside [0, 1)"
                else:
                    dm = np.asarray(structure.distance_matrix, dtype=np.float64)
                    off = dm[~np.eye(len(structure), dtype=bool)]
                    close = structure.get_neighbor_list(_FAST_MIN_PAIR_DIST)[0]
                    if (off.size and off.min() < _FAST_MIN_PAIR_DIST) or len(close) > 0:
                        reason = f"atoms closer than {_FAST_MIN_PAIR_DIST} A"
            if reason is None:
                try:
                    if self.impl == "pymatgen" or not structure.is_ordered or not all(structure.lattice.pbc):
                        return self._prepare_pymatgen(structure)
                    return self._prepare_vector(structure)
                except Exception as exc:  # qhull errors, pathological cells: per-site path for every site
                    self._poly_cache = None
                    reason = f"all-site tessellation failed: {type(exc).__name__}: {exc}"[:200]
            self.fallback_reasons.append(reason)
            return 0

        def _limit_check(self, structure, radii, cutoff) -> list[int]:
            limit = 0.5 * float(cutoff) - 1e-6
            ok = [i for i, r in enumerate(radii) if r < limit]
            if len(ok) < len(structure):
                self.fallback_reasons.append(f"{len(structure) - len(ok)} site(s) with cell radius >= cutoff/2")
            return ok

        def _prepare_pymatgen(self, structure) -> int:
            try:  # a small tessellation first (r_t = 5 A); the full search cutoff if qhull / pymatgen objects to it
                vnn = _RecordingVoronoiNN(weight="solid_angle", targets=None,
                                          cutoff=min(float(self.search_cutoff), _FAST_TESS_CUTOFF))
                all_polys = vnn.get_all_voronoi_polyhedra(structure)
            except Exception:
                vnn = _RecordingVoronoiNN(weight="solid_angle", targets=None, cutoff=float(self.search_cutoff))
                all_polys = vnn.get_all_voronoi_polyhedra(structure)
            radii = vnn.cell_radius
            if len(all_polys) != len(structure) or len(radii) != len(structure):
                raise RuntimeError("polyhedra count differs from the number of sites")
            polys = {i: all_polys[i] for i in self._limit_check(structure, radii, vnn.cutoff)}
            self._poly_cache = {"structure": structure, "cutoff": self.search_cutoff, "polys": polys,
                                "vector_sites": frozenset(), "weights": None}
            return len(polys)

        def _prepare_vector(self, structure) -> int:
            solid_angle = CrystalNN.get_nn_data.__globals__["solid_angle"]

            def tessellate(cutoff):
                sites, voro, roots, point_site = _tessellation(structure, cutoff)
                # faces at pymatgen's solid-angle branch get pymatgen's solid_angle (as its extraction calls it: the
                # site's coordinates, which are voro.points' rows, and the face's vertices)
                cells = voronoi_cell_arrays(voro.points, voro.vertices, voro.ridge_points, voro.ridge_vertices,
                                            roots, solid_angle_fn=solid_angle)
                return cutoff, sites, voro, roots, point_site, cells

            try:  # a small tessellation first (r_t = 5 A); the full search cutoff if qhull / the extraction objects
                cutoff, sites, voro, roots, point_site, cells = tessellate(
                    min(float(self.search_cutoff), _FAST_TESS_CUTOFF))
            except Exception:
                cutoff, sites, voro, roots, point_site, cells = tessellate(float(self.search_cutoff))
            if len(roots) != len(structure) or len(cells["radius"]) != len(structure):
                raise RuntimeError("polyhedra count differs from the number of sites")
            ok = self._limit_check(structure, cells["radius"].tolist(), cutoff)
            n_flat = int(np.count_nonzero(cells["flat_face"]))
            if n_flat:
                _count("faces_pymatgen", "solid angle: fan triangle at the arctan branch", n=n_flat)
            _count("faces_vector", n=len(cells["other"]) - n_flat)
            _count("structures")
            cache = {"structure": structure, "cutoff": self.search_cutoff, "polys": {},
                     "vector_sites": frozenset(ok), "cells": cells, "sites": sites,
                     "ridge_vertices": voro.ridge_vertices, "weights": None,
                     "home": {int(p): k for k, p in enumerate(roots.tolist())}}
            if self.impl == "vector":
                cache["weights"] = _crystalnn_weight_arrays(self, structure, cells, point_site)
                cache["settings"] = _settings(self)
                cache["distance_cutoffs"] = self.distance_cutoffs
            self._poly_cache = cache
            return len(ok)

        def release(self) -> None:
            self._poly_cache = None

    _FAST_CLASSES = (_RecordingVoronoiNN, _CachedVoronoiNN, _FastCrystalNN, _CapturingVoronoiNN)
    return _FAST_CLASSES


def fast_crystalnn(impl: str | None = None, **kwargs):
    """A pymatgen ``CrystalNN(**kwargs)`` that answers per-site queries from one Voronoi tessellation per structure.

    Call ``cnn.prepare(structure)`` before querying the sites of ``structure`` (the same object) and
    ``cnn.release()`` afterwards; without ``prepare`` it behaves exactly like ``CrystalNN``. The neighbour lists are
    the per-site ones (same polyhedra, see the comment above :func:`_voronoi_classes`); ``cache_hits`` /
    ``cache_misses`` count how the cells were served, :data:`COUNTERS` how the vectorised code answered. ``impl``:
    one of :data:`IMPLS` (default :data:`DEFAULT_IMPL`, read when the object is made). Used for the Table II
    fingerprints and for CDVAE's CrystalNN graph (:func:`dpcdvae.structures.graph.crystalnn_edges`).
    """
    return _voronoi_classes()[2](impl=impl, **kwargs)
