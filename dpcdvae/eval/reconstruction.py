"""Reconstruction metrics (the paper's Tables I and S1; CDVAE's definitions).

For each test crystal the reconstruction is compared with the target by pymatgen's
``StructureMatcher(stol=0.5, angle_tol=10, ltol=0.3).get_rms_dist(pred, target)``.

* Only **valid** predictions are matched; an invalid one counts as a miss. Valid follows CDVAE's code
  (``Crystal.valid`` in its ``compute_metrics.py``): structure valid (usable cell: finite, lengths > 0 A, volume
  >= 0.1 A^3; all pairwise periodic distances >= 0.5 A; see :mod:`dpcdvae.eval.generation`) AND composition valid
  (SMACT). ``require_comp_valid=False`` drops the composition condition. (CDVAE additionally marks a crystal
  invalid when its CrystalNN fingerprint fails; that is not computed here for reconstructions.)
* **match rate** = matches / number of targets (a missing prediction is a miss), in %.
* **delta_rms** = mean over matches of pymatgen's RMS displacement, which pymatgen already normalises by
  ``(V/N)^(1/3)`` (dimensionless).
* **lattice errors**: RMS over the compared pairs of the differences of the Niggli-reduced lattice lengths (A) and
  angles (degrees), compared only where prediction and target have the same number of atoms (a CIF written with
  symmetry may hold a conventional cell: then the lattices are not comparable); also the RMS of the volume-per-atom
  difference (A^3/atom) over all usable predictions.
"""
from __future__ import annotations

import time
from collections import Counter
from functools import partial
from typing import Sequence

import numpy as np

from .fingerprints import degenerate_reason, pack, parallel_map, unpack
from .generation import _reason_class, composition_invalid_reason, structure_invalid_reason

# local: heavy -- pymatgen's StructureMatcher is imported in the pool worker (the workflows import this module)

MATCHER_KW = {"stol": 0.5, "angle_tol": 10.0, "ltol": 0.3}


def _match_worker(pair, stol: float, angle_tol: float, ltol: float):
    """Worker: (packed pred, packed target) -> (rms or None, max_dist or None, error or None). Never raises."""
    try:
        from pymatgen.analysis.structure_matcher import StructureMatcher

        pred, target = unpack(pair[0]), unpack(pair[1])
        if pred is None or target is None:
            return None, None, "missing structure"
        m = StructureMatcher(stol=stol, angle_tol=angle_tol, ltol=ltol)
        res = m.get_rms_dist(pred, target)
        if res is None:
            return None, None, None
        return float(res[0]), float(res[1]), None
    except Exception as exc:
        return None, None, f"StructureMatcher failed: {type(exc).__name__}: {exc}"[:300]


def _niggli_params(structure) -> tuple[np.ndarray, np.ndarray] | None:
    try:
        lat = structure.lattice.get_niggli_reduced_lattice()
        return np.array(lat.abc, float), np.array(lat.angles, float)
    except Exception:
        return None


def reconstruction_metrics(preds: Sequence, targets: Sequence, ids: Sequence[str] | None = None,
                           n_workers: int = 2, require_comp_valid: bool = True,
                           stol: float = 0.5, angle_tol: float = 10.0, ltol: float = 0.3,
                           read_errors: Sequence[str | None] | None = None, progress: bool = True,
                           chunk_size: int = 32) -> dict:
    """Match rate and <delta_rms> of reconstructions ``preds[i]`` against ``targets[i]`` (Table I / S1).

    Parameters
    ----------
    preds : ``Structure`` or ``None`` per target (``None``: missing or unreadable -> miss).
    targets : the ground-truth structures (CDVAE-canonical test crystals); must not be empty.
    ids : optional names (material ids) for the per-structure records.
    require_comp_valid : CDVAE also requires SMACT composition validity (default True, as its code does).
    read_errors : optional reason per ``None`` prediction (e.g. from :func:`dpcdvae.eval.io.read_samples_with_errors`).

    Returns a dict with ``match_rate`` (%), ``delta_rms`` (dimensionless, NaN if no match), ``n_targets``,
    ``n_predictions`` (non-None), ``n_valid``, ``n_matched``, ``match_rate_over_valid`` (%),
    ``lattice_length_rmse`` (A), ``lattice_angle_rmse`` (deg), ``volume_per_atom_rmse`` (A^3/atom),
    ``n_lattice_compared``, ``invalid_reasons`` ({reason: count}), matcher settings, ``time_match_s`` and
    ``per_structure`` (one dict per target: id, valid, reason, matched, rms_dist, max_dist, n_atoms, formulae,
    lattice errors).
    """
    preds = list(preds)
    targets = list(targets)
    if len(targets) == 0:
        raise ValueError("reconstruction_metrics: no targets given")
    if len(preds) != len(targets):
        raise ValueError(f"reconstruction_metrics: {len(preds)} predictions for {len(targets)} targets "
                         "(align them first, e.g. dpcdvae.eval.io.align_by_id)")
    if any(t is None for t in targets):
        bad = [i for i, t in enumerate(targets) if t is None][:5]
        raise ValueError(f"reconstruction_metrics: target(s) {bad} are None")
    ids = [str(i) for i in range(len(targets))] if ids is None else [str(x) for x in ids]
    t0 = time.time()

    reasons: list[str | None] = []
    for i, p in enumerate(preds):
        if p is None:
            r = (read_errors[i] if read_errors is not None and read_errors[i] else None) or "no prediction"
        else:
            r = structure_invalid_reason(p)
            if r is None and require_comp_valid:
                c = composition_invalid_reason(p)
                r = None if c is None else f"composition: {c}"
        reasons.append(r)
    valid = np.array([r is None for r in reasons], dtype=bool)

    todo = [i for i in range(len(preds)) if valid[i]]
    pairs = [(pack(preds[i]), pack(targets[i])) for i in todo]
    res = parallel_map(partial(_match_worker, stol=stol, angle_tol=angle_tol, ltol=ltol), pairs,
                       n_workers=n_workers, chunk_size=chunk_size, desc="StructureMatcher (valid pairs)", progress=progress)
    rms = np.full(len(preds), np.nan)
    maxd = np.full(len(preds), np.nan)
    match_err: list[str | None] = [None] * len(preds)
    for i, (r, m, e) in zip(todo, res):
        if r is not None:
            rms[i], maxd[i] = r, m
        match_err[i] = e
    matched = np.isfinite(rms)

    # lattice / volume errors
    dlen, dang, dvol = [], [], []
    per = []
    for i, (p, t) in enumerate(zip(preds, targets)):
        rec = {"material_id": ids[i], "valid": bool(valid[i]), "invalid_reason": reasons[i],
               "matched": bool(matched[i]), "rms_dist": float(rms[i]) if matched[i] else None,
               "max_dist": float(maxd[i]) if matched[i] else None, "match_error": match_err[i],
               "n_atoms_target": len(t), "formula_target": t.composition.reduced_formula,
               "n_atoms_pred": None, "formula_pred": None,
               "d_lengths": None, "d_angles": None, "d_volume_per_atom": None}
        if p is not None and degenerate_reason(p) is None:
            rec["n_atoms_pred"] = len(p)
            rec["formula_pred"] = p.composition.reduced_formula
            dv = p.volume / len(p) - t.volume / len(t)
            rec["d_volume_per_atom"] = float(dv)
            dvol.append(dv)
            if len(p) == len(t):
                a, b = _niggli_params(p), _niggli_params(t)
                if a is not None and b is not None:
                    rec["d_lengths"] = (a[0] - b[0]).tolist()
                    rec["d_angles"] = (a[1] - b[1]).tolist()
                    dlen.append(a[0] - b[0])
                    dang.append(a[1] - b[1])
        per.append(rec)

    def _rms(x):
        return float(np.sqrt(np.mean(np.square(np.asarray(x))))) if len(x) else float("nan")

    counts = Counter(_short_reason(r) for r in reasons if r is not None)
    n = len(targets)
    n_valid = int(valid.sum())
    return {
        "match_rate": 100.0 * float(matched.sum()) / n,
        "delta_rms": float(np.mean(rms[matched])) if matched.any() else float("nan"),
        "n_targets": n,
        "n_predictions": int(sum(p is not None for p in preds)),
        "n_valid": n_valid,
        "n_matched": int(matched.sum()),
        "match_rate_over_valid": 100.0 * float(matched.sum()) / n_valid if n_valid else float("nan"),
        "validity": 100.0 * n_valid / n,
        "lattice_length_rmse": _rms(dlen),
        "lattice_angle_rmse": _rms(dang),
        "volume_per_atom_rmse": _rms(dvol),
        "n_lattice_compared": len(dlen),
        "recon_validity": "structure+composition (CDVAE Crystal.valid)" if require_comp_valid else "structure",
        "matcher_stol": stol, "matcher_angle_tol": angle_tol, "matcher_ltol": ltol,
        "invalid_reasons": dict(sorted(counts.items())),
        "n_match_errors": int(sum(e is not None for e in match_err)),
        "time_match_s": round(time.time() - t0, 3),
        "per_structure": per,
    }


def _short_reason(r: str) -> str:
    if r.startswith("composition:"):
        return "composition: " + _reason_class(r.split(":", 1)[1])
    return _reason_class(r)
