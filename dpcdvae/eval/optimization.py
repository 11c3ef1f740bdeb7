"""Success rates of property optimisation (CDVAE's optimisation task; its protocol, facts from its public evaluation
script): each of ``num_opt`` starting latents is optimised and decoded at several saved steps; a start succeeds at
level p when the best (lowest) property among its valid decoded crystals, predicted by the independent CDVAE
property model, lies at or below the p-th percentile threshold. ``SR5`` / ``SR10`` / ``SR15`` are the shares of
starts that succeed at 5 / 10 / 15 %.

Thresholds: CDVAE's fixed constants (its ``Percentiles``, in the property's units, eV/atom) for the three benchmark
datasets, and, reported beside them, the percentiles of the test split's own property values.
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np

__all__ = ["CDVAE_SR_THRESHOLDS", "SR_LEVELS", "success_rates", "split_thresholds"]

SR_LEVELS = (5, 10, 15)

#: CDVAE's success-rate thresholds (5th, 10th, 15th percentile; eV/atom) per dataset, as its evaluation uses them
CDVAE_SR_THRESHOLDS: Mapping[str, tuple[float, float, float]] = {
    "perov_5": (0.43924842, 0.61202443, 0.7364607),
    "carbon_24": (-154.527093, -154.45865733, -154.44206825),
    "mp_20": (-3.17562208, -2.82196882, -2.52814761),
}


def split_thresholds(values: Sequence[float], direction: str = "min") -> tuple[float, ...]:
    """The 5th / 10th / 15th percentile of ``values`` (``direction="min"``; the 95th / 90th / 85th for ``"max"``),
    NaN dropped."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        raise ValueError("no finite property values to take percentiles of")
    qs = SR_LEVELS if direction == "min" else tuple(100 - p for p in SR_LEVELS)
    return tuple(float(np.percentile(v, q)) for q in qs)


def success_rates(props: np.ndarray, thresholds: Sequence[float], direction: str = "min") -> dict:
    """``props``: ``[num_saved, num_opt]`` predicted property of each decoded crystal (NaN where the crystal is not
    valid). Returns ``{"SR5", "SR10", "SR15"}`` in % over the ``num_opt`` starts (a start without any valid crystal
    fails), plus ``best`` (``[num_opt]``, NaN for such starts)."""
    p = np.asarray(props, dtype=float)
    if p.ndim != 2:
        raise ValueError(f"props must be [num_saved, num_opt], got shape {p.shape}")
    sign = 1.0 if direction == "min" else -1.0
    filled = np.where(np.isfinite(p), sign * p, np.inf)
    best = filled.min(axis=0)
    out = {}
    for level, thr in zip(SR_LEVELS, thresholds):
        out[f"SR{level}"] = float(100.0 * np.mean(best <= sign * thr)) if p.shape[1] else float("nan")
    out["best"] = np.where(np.isfinite(best), sign * best, np.nan)
    return out


def cdvae_thresholds(dataset: str) -> Optional[tuple[float, float, float]]:
    """CDVAE's thresholds for a benchmark dataset (``None`` for others)."""
    return CDVAE_SR_THRESHOLDS.get(dataset)
