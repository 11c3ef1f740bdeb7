"""Training curves from ``metrics.jsonl`` (notebook 01)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from ._style import finish

__all__ = ["plot_training_curves"]


def _read_metrics(metrics) -> list:
    import json

    if isinstance(metrics, (str, Path)):
        return [json.loads(line) for line in Path(metrics).read_text().splitlines() if line.strip()]
    return list(metrics)


def plot_training_curves(metrics, resume_epoch: Optional[int] = None, title: Optional[str] = None):
    """Training curves from ``metrics.jsonl`` (path or list of dicts, one per epoch): total losses, the
    coordinate (noise-prediction) loss, lattice loss and learning rate versus epoch. Losses are the terms of Eq. S1
    (dimensionless: MSE of eps in fractional units, cross-entropies, MSE of scaled lattice parameters).
    ``resume_epoch`` draws a vertical line where training was resumed from ``last.ckpt``."""
    import matplotlib.pyplot as plt

    rows = _read_metrics(metrics)
    ep = np.array([r["epoch"] for r in rows])

    def col(k):
        return np.array([r.get(k, np.nan) if r.get(k) is not None else np.nan for r in rows], dtype=float)

    panels = [("total loss (Eq. S1)", [("train_loss", "train"), ("val_total_loss", "val")], True),
              (r"coordinate loss $\|\epsilon-\epsilon_\theta\|^2$", [("train_coord", "train"), ("val_coord", "val")], True),
              ("lattice loss (scaled)", [("train_lattice", "train"), ("val_lattice", "val")], True),
              ("learning rate", [("lr", "lr")], True)]
    fig, axes = plt.subplots(1, 4, figsize=(14.0, 3.1))
    for ax, (name, keys, logy) in zip(axes, panels):
        for k, lab in keys:
            y = col(k)
            if np.isfinite(y).any():
                ax.plot(ep, y, marker="o", ms=2.5, lw=1.2, label=lab)
        if logy and np.nanmin(np.r_[[np.inf], *[col(k)[np.isfinite(col(k))] for k, _ in keys]]) > 0:
            import matplotlib.ticker as mticker

            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(mticker.FormatStrFormatter("%.3g"))
            ax.yaxis.set_minor_formatter(mticker.FormatStrFormatter("%.3g"))
            ax.tick_params(axis="y", which="minor", labelsize=6)
        ax.xaxis.set_major_locator(__import__("matplotlib").ticker.MaxNLocator(integer=True))
        if resume_epoch is not None:
            ax.axvline(resume_epoch - 0.5, color="0.3", ls=":", lw=1.0, label="resumed")
        ax.set_xlabel("epoch")
        ax.set_title(name, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("loss (dimensionless)")
    axes[3].set_ylabel("lr")
    return finish(fig, title)
