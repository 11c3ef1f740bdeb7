"""Two reconstruction runs on the same crystals, compared crystal by crystal.

A difference of match rates measured on the same targets (same z, same initial types, another sampler or step
count) is paired: its standard error comes from the crystals matched by one run only, not from two independent
binomials. :func:`paired_difference` gives it; :func:`compare_runs` reads the ``per_structure.csv`` that
``dpcdvae reconstruct --out DIR`` and ``dpcdvae evaluate --task recon`` write, aligns them by material id and adds
the match rates by atom-count band.
"""
from __future__ import annotations

import math
import os
from typing import Sequence

import numpy as np

__all__ = ["paired_difference", "read_per_structure", "compare_runs", "parse_bands"]


def paired_difference(a: Sequence[bool], b: Sequence[bool]) -> dict:
    """Match rates of two runs over the same ``n`` crystals and their paired difference.

    Returns ``n``, ``rate_a`` and ``rate_b`` (%), ``only_a`` / ``only_b`` (crystals matched by one run only),
    ``diff_points`` (``rate_a - rate_b``, percentage points) and ``se_points``, the standard error of that
    difference: the sample standard deviation of the per-crystal differences (each -1, 0 or 1) over ``sqrt(n)``,
    x 100, i.e. ``sqrt((only_a + only_b - (only_a - only_b)^2 / n) / (n - 1) / n)`` (crystals that both runs match or
    both miss add nothing).
    """
    x = np.asarray(a, dtype=bool)
    y = np.asarray(b, dtype=bool)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"paired_difference: two 1-d sequences of the same length needed, got {x.shape} and {y.shape}")
    n = int(x.size)
    if n == 0:
        raise ValueError("paired_difference: no crystals")
    only_a = int((x & ~y).sum())
    only_b = int((~x & y).sum())
    var_sum = only_a + only_b - (only_a - only_b) ** 2 / n  # sum of squared deviations of the differences
    return {"n": n, "rate_a": 100.0 * float(x.mean()), "rate_b": 100.0 * float(y.mean()), "only_a": only_a,
            "only_b": only_b, "diff_points": 100.0 * (only_a - only_b) / n,
            "se_points": 100.0 * math.sqrt(max(var_sum, 0.0) / max(n - 1, 1)) / math.sqrt(n)}


def parse_bands(text: str) -> list[tuple[int, int]]:
    """``"1-8,9-12,13-24"`` -> ``[(1, 8), (9, 12), (13, 24)]`` (inclusive atom-count bands)."""
    out = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        try:
            lo_i, hi_i = int(lo), int(hi if sep else lo)
        except ValueError:
            raise ValueError(f"bad atom-count band {part!r}: write it as LO-HI, e.g. 1-8") from None
        if lo_i > hi_i:
            raise ValueError(f"bad atom-count band {part!r}: LO > HI")
        out.append((lo_i, hi_i))
    if not out:
        raise ValueError("no atom-count bands given")
    return out


def read_per_structure(path: str | os.PathLike):
    """A run's per-crystal table: ``path`` is a ``per_structure.csv`` or a folder holding one (``dpcdvae
    reconstruct --out``, ``dpcdvae evaluate --task recon --out``). Needs the columns ``material_id`` and
    ``matched``; returns a pandas DataFrame indexed by material id (as text)."""
    import pandas as pd

    p = os.fspath(path)
    if os.path.isdir(p):
        p = os.path.join(p, "per_structure.csv")
    if not os.path.isfile(p):
        raise FileNotFoundError(f"{p}: no per_structure.csv (written by `dpcdvae reconstruct --out DIR` and by "
                                f"`dpcdvae evaluate --task recon --samples DIR/samples.extxyz --out ...`)")
    df = pd.read_csv(p, dtype={"material_id": str})
    missing = [c for c in ("material_id", "matched") if c not in df.columns]
    if missing:
        raise ValueError(f"{p}: column(s) {missing} missing")
    if df["material_id"].duplicated().any():
        dup = df.loc[df["material_id"].duplicated(), "material_id"].iloc[0]
        raise ValueError(f"{p}: material id {dup!r} appears twice")
    df["matched"] = df["matched"].astype(str).str.lower().isin(["true", "1"])
    return df.set_index("material_id")


def compare_runs(a: str | os.PathLike, b: str | os.PathLike, bands: Sequence[tuple[int, int]] | None = None) -> dict:
    """Paired comparison of two reconstruction runs (see :func:`paired_difference`) over the crystals both hold,
    plus ``bands``: match rates of each run by target atom count (column ``n_atoms_target``). Raises when the runs
    share no crystal; ``n_only_in_a`` / ``n_only_in_b`` count the crystals left out."""
    da, db = read_per_structure(a), read_per_structure(b)
    common = da.index.intersection(db.index, sort=False)
    if len(common) == 0:
        raise ValueError(f"{a} and {b} share no material id: not runs over the same crystals")
    res = paired_difference(da.loc[common, "matched"].to_numpy(), db.loc[common, "matched"].to_numpy())
    res.update({"a": os.fspath(a), "b": os.fspath(b), "n_only_in_a": int(len(da) - len(common)),
                "n_only_in_b": int(len(db) - len(common))})
    if bands:
        if "n_atoms_target" not in da.columns:
            raise ValueError(f"{a}: no n_atoms_target column for the atom-count bands")
        nat = da.loc[common, "n_atoms_target"].to_numpy()
        ma, mb = da.loc[common, "matched"].to_numpy(), db.loc[common, "matched"].to_numpy()
        rows = []
        for lo, hi in bands:
            sel = (nat >= lo) & (nat <= hi)
            k = int(sel.sum())
            rows.append({"atoms": f"{lo}-{hi}", "n": k,
                         "rate_a": 100.0 * float(ma[sel].mean()) if k else float("nan"),
                         "rate_b": 100.0 * float(mb[sel].mean()) if k else float("nan")})
        res["bands"] = rows
    return res
