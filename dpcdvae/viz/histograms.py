"""Overlaid histograms, one panel per quantity (generated vs test crystals, dataset overviews)."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ._style import finish

__all__ = ["plot_histograms"]


def plot_histograms(panels: Sequence[dict], title: Optional[str] = None):
    """Overlaid histograms, one panel each: ``{"title", "xlabel" (with unit), "series": {label: values},
    "bins" (optional), "discrete" (optional bool: integer-valued, one bin per value), "note" (optional)}``.
    Densities are normalised per series so samples of different size compare."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.2), squeeze=False)
    for ax, p in zip(axes[0], panels):
        series = {k: np.asarray(v, dtype=float)[np.isfinite(np.asarray(v, dtype=float))]
                  for k, v in p["series"].items()}
        if not any(len(v) for v in series.values()):
            ax.text(0.5, 0.5, p.get("empty", "no values to show"), transform=ax.transAxes, ha="center",
                    va="center", fontsize=9, color="0.3")
            ax.set_xlabel(p["xlabel"])
            ax.set_title(p.get("title", ""), fontsize=9)
            ax.set_yticks([])
            continue
        allv = np.concatenate([v for v in series.values() if len(v)])
        if p.get("discrete"):
            bins = np.arange(np.floor(allv.min()) - 0.5, np.ceil(allv.max()) + 1.5, 1.0)
        else:
            bins = p.get("bins") or np.histogram_bin_edges(allv, bins=30)
        for k, (lab, v) in enumerate(series.items()):
            if len(v):
                ax.hist(v, bins=bins, density=True, alpha=0.3, color=f"C{k}")
                ax.hist(v, bins=bins, density=True, histtype="step", lw=1.6, color=f"C{k}",
                        ls=("-", "--", ":", "-.")[k % 4], label=f"{lab} (n={len(v)})")
        ax.set_xlabel(p["xlabel"])
        ax.set_ylabel("probability density")
        ax.set_title(p.get("title", ""), fontsize=9)
        if p.get("note"):
            ax.text(0.02, 0.97, p["note"], transform=ax.transAxes, va="top", fontsize=7)
        ax.legend(fontsize=7, loc="upper right")
        ax.grid(alpha=0.3)
    return finish(fig, title)
