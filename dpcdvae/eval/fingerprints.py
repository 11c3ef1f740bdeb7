"""Structure and composition fingerprints for COV (Table II), plus the parallel / caching machinery of the metrics.

Fingerprints (CDVAE's definitions)
----------------------------------
* structure: the mean over sites of matminer's ``CrystalNNFingerprint.from_preset("ops")`` site features
  (61 dimensionless order-parameter / coordination features). Computing it is the slow part of Table II
  (about 0.1 s per 9-atom Carbon-24 crystal on one core with matminer's per-site path), so it runs in worker
  processes and the result is cached on disk. ``method="fast"`` tessellates each structure once instead of once
  per site and gives the same numbers (faster; see :func:`crystalnn_fingerprint`); the
  default ``method="vector"`` adds numpy order parameters (:mod:`dpcdvae.eval.order_params`) and, through
  :mod:`dpcdvae.structures.crystalnn`, numpy Voronoi cell information and CrystalNN weights: the same numbers (max difference
  3e-16 on 100 + 100 test crystals), several times faster than ``"fast"`` (``benchmarks/bench_fingerprints.py``,
  BENCHMARKS.md); ``method="matminer"`` keeps the original path.
* composition: matminer's ``ElementProperty.from_preset("magpie", impute_nan=False)`` (132 features: 22 Magpie
  element properties x 6 statistics over the fractional composition, in their native units). ``impute_nan=False``
  keeps missing element data as NaN, as the matminer version CDVAE used did; :class:`CompScaler` then maps NaN to 0
  after standardising, as CDVAE's scaler does. Computed once per distinct reduced composition.

A crystal whose fingerprint cannot be computed (CrystalNN raises, a non-finite or degenerate cell with volume
< 0.1 A^3 which is not attempted, an element without data, a ``None`` structure) gets a row of NaN and an error
string; the COV code counts such a crystal as neither covering nor covered (CDVAE drops generated crystals whose
fingerprint fails but keeps them in the COV-P denominator: the same numbers).

Caching and resuming
--------------------
Structure fingerprints are cached under ``$DPCDVAE_CACHE/fingerprints/`` (default ``~/.cache/dpcdvae/fingerprints``)
in ``<hash>.npz``, the hash taken over the structures' lattices, species and fractional coordinates (rounded to
1e-6), the featurizer, the fingerprint method, :data:`FP_CODE_VERSION` and the library versions. While a set is being computed each finished chunk is written to
``<hash>.parts/``; an interrupted run picks the finished chunks up again. Delete the folder to clear the cache.
"""
from __future__ import annotations

import functools
import hashlib
import os
import warnings
from concurrent.futures import as_completed
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from ..utils.fileio import atomic_open
from ..utils.pool import process_pool
from ..utils.progress import progress_bar
from ..structures.crystalnn import _voronoi_classes, fast_crystalnn  # noqa: F401 (fast_crystalnn re-exported)
from ..structures.validity import MIN_VOLUME, composition_key, degenerate_reason  # noqa: F401 (re-exported)

# local: heavy -- pymatgen and matminer (~6 s) are imported where used: the pool workers build their featurizers
# on first use, and the workflows import this module (through reconstruction and generation)

N_STRUCT_FEATURES = 61
N_COMP_FEATURES = 132

# ----------------------------------------------------------------------------------------------------------------
# compact, picklable structure representation (sent to worker processes)
# ----------------------------------------------------------------------------------------------------------------
Packed = tuple  # (lattice matrix [3,3] float64, atomic numbers [n] int64, frac coords [n,3] float64)


def pack(structure) -> Packed | None:
    """``Structure`` -> ``(matrix [3,3] A, Z [n], frac [n,3])`` for cheap pickling; ``None`` if it cannot be packed
    (``None`` input, disordered sites)."""
    if structure is None:
        return None
    try:
        if not structure.is_ordered:
            return None
        z = np.array([site.specie.Z for site in structure], dtype=np.int64)
        return (np.array(structure.lattice.matrix, dtype=np.float64), z,
                np.array(structure.frac_coords, dtype=np.float64).reshape(-1, 3))
    except Exception:
        return None


def unpack(packed: Packed | None):
    """Inverse of :func:`pack` (``None`` stays ``None``)."""
    if packed is None:
        return None
    from pymatgen.core import Lattice, Structure

    matrix, z, frac = packed
    return Structure(Lattice(matrix), [int(x) for x in z], frac, coords_are_cartesian=False)


def structures_hash(structures: Sequence, tag: str = "") -> str:
    """A content hash (hex, 20 characters) of a list of structures (lattice, Z, frac rounded to 1e-6) and ``tag``."""
    h = hashlib.sha256(tag.encode())
    h.update(str(len(structures)).encode())
    for s in structures:
        p = pack(s)
        if p is None:
            h.update(b"|none|")
            continue
        m, z, f = p
        h.update(np.round(m, 6).astype(np.float64).tobytes())
        h.update(z.astype(np.int64).tobytes())
        h.update(np.round(f, 6).astype(np.float64).tobytes())
        h.update(b"|")
    return h.hexdigest()[:20]


def cache_root() -> Path:
    """``$DPCDVAE_CACHE/fingerprints`` if the variable is set, else ``~/.cache/dpcdvae/fingerprints``."""
    base = os.environ.get("DPCDVAE_CACHE")
    root = Path(base).expanduser() if base else Path("~/.cache/dpcdvae").expanduser()
    return root / "fingerprints"


# ----------------------------------------------------------------------------------------------------------------
# parallel map over chunks (ProcessPoolExecutor) with a tqdm bar
# ----------------------------------------------------------------------------------------------------------------
def _run_chunk(func: Callable, items: list) -> list:
    return [func(x) for x in items]


def _chunks(n: int, chunk_size: int) -> list[tuple[int, int]]:
    chunk_size = max(1, int(chunk_size))
    return [(i, min(i + chunk_size, n)) for i in range(0, n, chunk_size)]


def parallel_map(func: Callable[[Any], Any], items: Sequence, n_workers: int = 2, chunk_size: int = 16,
                 desc: str | None = None, progress: bool = True,
                 done: dict[int, list] | None = None,
                 on_chunk: Callable[[int, list], None] | None = None) -> list:
    """``[func(x) for x in items]`` computed in ``n_workers`` processes, chunk by chunk, with a tqdm bar.

    ``func`` must be a picklable module-level function and should catch its own exceptions (one raising item
    aborts the map). ``done`` maps chunk index -> results already known (resuming); ``on_chunk(index, results)``
    is called in this process as each new chunk finishes (e.g. to write it to disk). ``n_workers <= 1`` runs in
    this process. Chunk ``k`` covers ``items[k*chunk_size:(k+1)*chunk_size]``.
    """
    items = list(items)
    bounds = _chunks(len(items), chunk_size)
    results: list = [None] * len(items)
    done = dict(done or {})
    todo = []
    for k, (a, b) in enumerate(bounds):
        if k in done and len(done[k]) == b - a:
            results[a:b] = done[k]
        else:
            todo.append(k)
    n_todo = sum(bounds[k][1] - bounds[k][0] for k in todo)
    bar = progress_bar(total=len(items), initial=len(items) - n_todo, desc=desc, disable=not progress or not items,
               dynamic_ncols=True, leave=False)
    try:
        if n_workers <= 1 or len(todo) <= 1:
            for k in todo:
                a, b = bounds[k]
                out = _run_chunk(func, items[a:b])
                results[a:b] = out
                if on_chunk is not None:
                    on_chunk(k, out)
                bar.update(b - a)
        else:
            with process_pool(n_workers) as pool:  # fork on Linux, spawn elsewhere (dpcdvae.utils.pool)
                futures = {pool.submit(_run_chunk, func, items[bounds[k][0]:bounds[k][1]]): k for k in todo}
                for fut in as_completed(futures):
                    k = futures[fut]
                    a, b = bounds[k]
                    out = fut.result()
                    results[a:b] = out
                    if on_chunk is not None:
                        on_chunk(k, out)
                    bar.update(b - a)
    finally:
        bar.close()
    return results


# ----------------------------------------------------------------------------------------------------------------
# structure fingerprint (CrystalNN 'ops', mean over sites)
# ----------------------------------------------------------------------------------------------------------------
_CNN_FP = None
_CNN_FP_FAST = None
FP_METHODS = ("fast", "matminer", "vector")
#: the method of :func:`crystalnn_fingerprint` / :func:`structure_fingerprints` when none is given
DEFAULT_FP_METHOD = "vector"


def _crystalnn_featurizer():
    """matminer's ``CrystalNNFingerprint.from_preset("ops")`` (one per process), the reference path."""
    global _CNN_FP
    if _CNN_FP is None:
        from matminer.featurizers.site.fingerprint import CrystalNNFingerprint

        _CNN_FP = CrystalNNFingerprint.from_preset("ops")
    return _CNN_FP



def _fast_featurizer():
    """A second ``CrystalNNFingerprint.from_preset("ops")`` (one per process) whose ``cnn`` is a
    :class:`_FastCrystalNN` with the same settings; its order-parameter objects are matminer's own."""
    global _CNN_FP_FAST
    if _CNN_FP_FAST is None:
        from matminer.featurizers.site.fingerprint import CrystalNNFingerprint

        fp = CrystalNNFingerprint.from_preset("ops")
        fast_cls = _voronoi_classes()[2]
        cnn = fast_cls()
        for k, v in vars(fp.cnn).items():  # same CrystalNN settings as matminer's instance
            setattr(cnn, k, v)
        fp.cnn = cnn
        _CNN_FP_FAST = fp
    return _CNN_FP_FAST


def _wrapped(structure):
    """``structure`` itself when all fractional coordinates lie in [0, 1), else a copy with them wrapped there.

    pymatgen's all-site tessellation wraps the home-cell sites but takes the neighbours around the unwrapped ones,
    so the fast path works on a wrapped cell. The fingerprint is translation invariant; wrapping changes the
    Cartesian coordinates by lattice vectors only (floating-point noise ~1e-15 A in the relative vectors)."""
    f = np.asarray(structure.frac_coords, dtype=np.float64)
    if np.all((f >= 0.0) & (f < 1.0)):
        return structure
    from pymatgen.core import Structure

    g = np.mod(f, 1.0)
    g[g >= 1.0] = 0.0  # np.mod(-1e-17, 1) == 1.0
    return Structure(structure.lattice, structure.species, g, coords_are_cartesian=False)


def crystalnn_fingerprint(structure, method: str = DEFAULT_FP_METHOD) -> np.ndarray:
    """Mean over sites of the CrystalNN 'ops' site fingerprint: ``float64 [61]`` (dimensionless).

    ``method="matminer"`` calls matminer's ``CrystalNNFingerprint.featurize`` site by site (one Voronoi tessellation
    per site, the reference). ``method="fast"`` tessellates once per structure and feeds each site's polyhedron to
    the same CrystalNN / matminer code (see the comment block above :func:`_voronoi_classes` for why the result is
    the same polyhedra and when it falls back to the per-site call); it agrees with the reference to floating-point
    noise (max abs difference <= 1e-8 is tested). ``method="vector"`` (default, :data:`DEFAULT_FP_METHOD`) takes the
    same CrystalNN data as ``"fast"`` and evaluates the order parameters with numpy
    (:mod:`dpcdvae.eval.order_params`; an order parameter whose geometry sits at one of its branch thresholds is
    computed by matminer's object, counted in ``order_params.COUNTERS``); it equals ``"fast"`` to max abs
    difference <= 1e-8 (``tests/eval/test_order_params.py``). Raises ``ValueError`` for a degenerate structure (see
    :func:`degenerate_reason`) or an unknown ``method``, and whatever matminer raises.
    """
    if method not in FP_METHODS:
        raise ValueError(f"unknown fingerprint method {method!r} (expected one of {FP_METHODS})")
    reason = degenerate_reason(structure)
    if reason is not None:
        raise ValueError(reason)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if method == "matminer":
            fp = _crystalnn_featurizer()
            sites = [fp.featurize(structure, i) for i in range(len(structure))]
        else:
            fp = _fast_featurizer()
            work = _wrapped(structure)
            if method == "vector":
                from . import order_params

                site_fn = functools.partial(order_params.site_fingerprint, fp)
            else:
                site_fn = fp.featurize
            try:
                fp.cnn.prepare(work)
                sites = [site_fn(work, i) for i in range(len(work))]
            finally:
                fp.cnn.release()
    out = np.asarray(sites, dtype=np.float64).mean(axis=0)
    if out.shape != (N_STRUCT_FEATURES,):
        raise ValueError(f"unexpected fingerprint shape {out.shape}")
    return out


def _struct_fp_worker(packed: Packed | None, method: str = DEFAULT_FP_METHOD) -> tuple[np.ndarray, str | None]:
    """Worker: packed structure -> (fingerprint or NaN row, error or None). Never raises.

    ``method`` is passed to :func:`crystalnn_fingerprint` (bind it with ``functools.partial`` for
    :func:`parallel_map`)."""
    try:
        if packed is None:
            raise ValueError("no structure")
        return crystalnn_fingerprint(unpack(packed), method=method), None
    except Exception as exc:
        return np.full(N_STRUCT_FEATURES, np.nan), f"{type(exc).__name__}: {exc}"[:300]


def _versions_tag() -> str:
    parts = []
    for pkg in ("matminer", "pymatgen"):
        try:
            parts.append(f"{pkg}={version(pkg)}")
        except PackageNotFoundError:  # pragma: no cover
            parts.append(f"{pkg}=?")
    return ";".join(parts)


#: bump when this module's fingerprint code changes its numbers: cached fingerprints are then recomputed
FP_CODE_VERSION = 1


def struct_fp_cache_tag(chunk_size: int, method: str = DEFAULT_FP_METHOD) -> str:
    """The tag hashed with the structures into the cache key of :func:`structure_fingerprints`: featurizer,
    fingerprint ``method``, :data:`FP_CODE_VERSION`, matminer / pymatgen versions and chunk size (a cache written by
    another method or code version, e.g. before the fast path existed, is not picked up)."""
    return f"crystalnn-ops-mean;method={method};code=v{FP_CODE_VERSION};{_versions_tag()};chunk={chunk_size}"


def structure_fingerprints(structures: Sequence, n_workers: int = 2, chunk_size: int = 16,
                           cache: bool = True, cache_dir: str | os.PathLike | None = None,
                           progress: bool = True, desc: str = "CrystalNN fingerprints",
                           method: str = DEFAULT_FP_METHOD) -> tuple[np.ndarray, list[str | None]]:
    """CrystalNN 'ops' fingerprints of many structures: ``(fps float64 [N, 61], errors)``.

    ``errors[i]`` is ``None`` when fingerprint ``i`` was computed, else the reason (row ``i`` is then NaN).
    Runs in ``n_workers`` processes; with ``cache=True`` results (and finished chunks, for resuming) are stored
    under ``cache_dir`` (default :func:`cache_root`), keyed by :func:`structures_hash` with
    :func:`struct_fp_cache_tag` (which includes ``method``, see :func:`crystalnn_fingerprint`).
    """
    if method not in FP_METHODS:
        raise ValueError(f"unknown fingerprint method {method!r} (expected one of {FP_METHODS})")
    structures = list(structures)
    n = len(structures)
    if n == 0:
        return np.zeros((0, N_STRUCT_FEATURES)), []
    packed = [pack(s) for s in structures]
    final = parts = None
    done: dict[int, list] = {}
    if cache:
        root = Path(cache_dir) if cache_dir is not None else cache_root()
        key = structures_hash(structures, tag=struct_fp_cache_tag(chunk_size, method))
        final = root / f"{key}.npz"
        parts = root / f"{key}.parts"
        if final.exists():
            try:
                with np.load(final, allow_pickle=False) as z:
                    fps, errs = z["fps"], z["errors"]
                if fps.shape == (n, N_STRUCT_FEATURES):
                    return fps.astype(np.float64), [None if e == "" else str(e) for e in errs]
            except Exception:
                pass  # corrupt cache file: recompute
        parts.mkdir(parents=True, exist_ok=True)
        for f in parts.glob("chunk_*.npz"):
            try:
                k = int(f.stem.split("_")[1])
                with np.load(f, allow_pickle=False) as z:
                    done[k] = list(zip(z["fps"], [None if e == "" else str(e) for e in z["errors"]]))
            except Exception:
                continue

    def _save_chunk(k: int, out: list) -> None:
        if parts is None:
            return
        with atomic_open(parts / f"chunk_{k:06d}.npz", "wb") as fh:
            np.savez(fh, fps=np.stack([o[0] for o in out]), errors=np.array([o[1] or "" for o in out]))

    results = parallel_map(functools.partial(_struct_fp_worker, method=method), packed, n_workers=n_workers, chunk_size=chunk_size, desc=desc,
                           progress=progress, done=done, on_chunk=_save_chunk if cache else None)
    fps = np.stack([r[0] for r in results]).astype(np.float64)
    errors = [r[1] for r in results]
    if cache and final is not None:
        with atomic_open(final, "wb") as fh:
            np.savez(fh, fps=fps, errors=np.array([e or "" for e in errors]))
        for f in parts.glob("*.npz"):
            f.unlink(missing_ok=True)
        try:
            parts.rmdir()
        except OSError:
            pass
    return fps, errors


# ----------------------------------------------------------------------------------------------------------------
# composition fingerprint (Magpie ElementProperty, 132 features)
# ----------------------------------------------------------------------------------------------------------------
_MAGPIE = None


def _magpie_featurizer():
    global _MAGPIE
    if _MAGPIE is None:
        from matminer.featurizers.composition.composite import ElementProperty

        _MAGPIE = ElementProperty.from_preset("magpie", impute_nan=False)
    return _MAGPIE


def magpie_fingerprint(composition) -> np.ndarray:
    """Magpie ``ElementProperty`` features of a composition (``Composition``, formula, ``Structure`` or a key from
    :func:`composition_key`): ``float64 [132]``, native units per feature, NaN where element data is missing."""
    from pymatgen.core import Composition, Structure

    if isinstance(composition, Structure):
        composition = composition.composition
    elif isinstance(composition, tuple):
        composition = Composition(dict(composition))
    else:
        composition = Composition(composition)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = np.asarray(_magpie_featurizer().featurize(composition), dtype=np.float64)
    if out.shape != (N_COMP_FEATURES,):
        raise ValueError(f"unexpected fingerprint shape {out.shape}")
    return out


def composition_fingerprints(structures: Sequence, progress: bool = False, desc: str = "Magpie fingerprints"
                             ) -> tuple[np.ndarray, list[str | None]]:
    """Magpie fingerprints ``(fps float64 [N, 132], errors)``, computed once per distinct reduced composition.

    ``errors[i]`` is ``None`` on success; a failed row (``None`` structure, unknown element) is all NaN. A
    successful row may still hold NaN features (missing element data): :class:`CompScaler` maps those to 0.
    """
    keys = [composition_key(s) if s is not None else None for s in structures]
    cache: dict = {}
    for k in progress_bar(sorted({k for k in keys if k is not None}, key=str), desc=desc, disable=not progress,
                  leave=False):
        try:
            cache[k] = (magpie_fingerprint(k), None)
        except Exception as exc:
            cache[k] = (np.full(N_COMP_FEATURES, np.nan), f"{type(exc).__name__}: {exc}"[:300])
    fps = np.full((len(keys), N_COMP_FEATURES), np.nan)
    errors: list[str | None] = []
    for i, k in enumerate(keys):
        if k is None:
            errors.append("no composition")
            continue
        fps[i], err = cache[k]
        errors.append(err)
    return fps, errors


class CompScaler:
    """Standardiser of composition fingerprints: ``(x - mean) / std``, NaN -> 0 afterwards (CDVAE's convention).

    CDVAE ships fixed means/stds; this project recomputes them with :meth:`fit` on a split of the dataset and records
    which one in ``fitted_on`` (reported as ``comp_scaler`` in ``metrics.json``). Features that are constant (or
    all NaN) in the fitting set get ``std = 1``; all-NaN features get ``mean = 0``.

    The choice matters for COV: a scaler fitted within one dataset gives features that are nearly constant there
    (e.g. the mode of the magnetic moment in Perov-5, std ~1e-6) a huge weight, so a rare composition lands far from
    everything. Measured on Perov-5 (validation split as "generated" vs test, d_c = 4): COV-R/COV-P = 90.5/91.2 %
    with the test-fitted scaler (90.3 % with a train-fitted one) against 98.6/98.5 % with CDVAE's constants.
    Carbon-24 is unaffected (one composition). Compare COV with the paper only under the same scaler.
    """

    def __init__(self, mean: np.ndarray | None = None, std: np.ndarray | None = None, fitted_on: str = "unfitted"):
        self.mean = None if mean is None else np.asarray(mean, dtype=np.float64)
        self.std = None if std is None else np.asarray(std, dtype=np.float64)
        self.fitted_on = fitted_on

    def fit(self, X: np.ndarray, fitted_on: str = "unknown", ok: Iterable[bool] | None = None) -> "CompScaler":
        X = np.asarray(X, dtype=np.float64)
        if ok is not None:
            X = X[np.asarray(list(ok), dtype=bool)]
        if X.ndim != 2 or len(X) == 0:
            raise ValueError("CompScaler.fit needs a non-empty 2-D array of fingerprints")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(X, axis=0)
            std = np.nanstd(X, axis=0)
        self.mean = np.where(np.isfinite(mean), mean, 0.0)
        self.std = np.where(np.isfinite(std) & (std > 0), std, 1.0)
        self.fitted_on = fitted_on
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        if self.mean is None or self.std is None:
            raise RuntimeError("CompScaler is not fitted")
        Y = (np.asarray(X, dtype=np.float64) - self.mean) / self.std
        return np.where(np.isnan(Y), 0.0, Y)

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist(), "fitted_on": self.fitted_on}

    @classmethod
    def from_dict(cls, d: dict) -> "CompScaler":
        return cls(np.array(d["mean"]), np.array(d["std"]), d.get("fitted_on", "unknown"))
