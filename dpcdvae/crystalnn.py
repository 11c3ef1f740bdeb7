"""CrystalNN neighbour lists from one Voronoi tessellation per structure (pymatgen's ``CrystalNN``, same answers).

Low-level: used by the preprocessing (CDVAE's CrystalNN graph, :func:`dpcdvae.graph.crystalnn_edges`) and by the
Table II structure fingerprints (:mod:`dpcdvae.eval.fingerprints`). pymatgen is imported on first use.
"""
from __future__ import annotations

import functools
import os
import types

import numpy as np

# local: heavy -- pymatgen is imported on first use (graph.py imports this module, and the models import graph.py)

__all__ = ["fast_crystalnn"]

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
# tolerance of the equality test (``tests/test_fast_fingerprint.py``).
#
# The same argument holds for any tessellation cutoff r_t <= r_c: the cell of site i computed from a point set that
# contains every point within r_t of site i does not depend on the points farther away once R_i < r_t / 2. The
# all-site tessellation therefore uses r_t = 5 A (``$DPCDVAE_FP_TESS_CUTOFF``), about 2.7x fewer points than 7 A,
# checks R_i < r_t / 2 per site (true for every site of the first 30 Carbon-24 / Perov-5 rows) and retries with
# r_t = r_c when the small tessellation raises. Measured on Carbon-24 (one core): 1.8x faster overall; what remains
# is mostly matminer's order parameters (``LocalStructOrderParams.get_order_parameters``), which are unchanged.
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

    class _CachedVoronoiNN(VoronoiNN):
        """``VoronoiNN`` answering ``get_nn_info`` from its owner's per-structure polyhedra cache when it applies."""

        def __init__(self, *args, owner=None, **kwargs):
            super().__init__(*args, **kwargs)
            self._owner = owner

        def get_nn_info(self, structure, n):
            cache = None if self._owner is None else self._owner._poly_cache
            if (cache is not None and cache["structure"] is structure and n in cache["polys"]
                    and self.targets is None and self.cutoff == cache["cutoff"] and self.tol == 0
                    and self.weight == "solid_angle"):
                polys = {k: dict(v) for k, v in cache["polys"][n].items()}
                self._owner.cache_hits += 1
                return self._extract_nn_info(structure, polys)
            if self._owner is not None:
                self._owner.cache_misses += 1
            return super().get_nn_info(structure, n)

    _impl = CrystalNN.get_nn_data
    _injectable = "VoronoiNN" in getattr(getattr(_impl, "__code__", None), "co_names", ())

    class _FastCrystalNN(CrystalNN):
        """``CrystalNN`` whose ``get_nn_data`` takes the Voronoi polyhedra from :meth:`prepare`'s cache.

        ``prepare(structure)`` tessellates once and keeps the polyhedra of the sites that pass the R_i < r_c / 2
        check; ``release()`` drops them. ``cache_hits`` / ``cache_misses`` count how ``get_nn_data`` was served.
        """

        injectable = _injectable

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
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

        def get_nn_data(self, structure, n, length=None):
            return self._nn_data_impl(self, structure, n, length)

        def prepare(self, structure) -> int:
            """Tessellate ``structure`` once; returns how many sites will be served from the cache."""
            self._poly_cache = None
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
                    try:  # a small tessellation first; the full search cutoff if qhull / pymatgen objects to it
                        vnn = _RecordingVoronoiNN(weight="solid_angle", targets=None,
                                                  cutoff=min(float(self.search_cutoff), _FAST_TESS_CUTOFF))
                        all_polys = vnn.get_all_voronoi_polyhedra(structure)
                    except Exception:
                        vnn = _RecordingVoronoiNN(weight="solid_angle", targets=None, cutoff=float(self.search_cutoff))
                        all_polys = vnn.get_all_voronoi_polyhedra(structure)
                    radii = vnn.cell_radius
                    if len(all_polys) != len(structure) or len(radii) != len(structure):
                        raise RuntimeError("polyhedra count differs from the number of sites")
                    limit = 0.5 * float(vnn.cutoff) - 1e-6
                    polys = {i: p for i, (p, r) in enumerate(zip(all_polys, radii)) if r < limit}
                    if len(polys) < len(structure):
                        self.fallback_reasons.append(f"{len(structure) - len(polys)} site(s) with cell radius "
                                                     f">= cutoff/2")
                    self._poly_cache = {"structure": structure, "cutoff": self.search_cutoff, "polys": polys}
                    return len(polys)
                except Exception as exc:  # qhull errors, pathological cells: per-site path for every site
                    reason = f"all-site tessellation failed: {type(exc).__name__}: {exc}"[:200]
            self.fallback_reasons.append(reason)
            return 0

        def release(self) -> None:
            self._poly_cache = None

    _FAST_CLASSES = (_RecordingVoronoiNN, _CachedVoronoiNN, _FastCrystalNN)
    return _FAST_CLASSES


def fast_crystalnn(**kwargs):
    """A pymatgen ``CrystalNN(**kwargs)`` that answers per-site queries from one Voronoi tessellation per structure.

    Call ``cnn.prepare(structure)`` before querying the sites of ``structure`` (the same object) and
    ``cnn.release()`` afterwards; without ``prepare`` it behaves exactly like ``CrystalNN``. The neighbour lists are
    the per-site ones (same polyhedra, see the comment above :func:`_voronoi_classes`); ``cache_hits`` /
    ``cache_misses`` count how the queries were served. Used for the Table II fingerprints and for CDVAE's CrystalNN
    graph (:func:`dpcdvae.graph.crystalnn_edges`).
    """
    return _voronoi_classes()[2](**kwargs)
