"""A results table beside the paper's as bar charts: one panel per metric, the paper's rows grey (its DP-CDVAE row
blue), ours red (Tables I, II, III)."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ..eval.reference import METRIC_INFO
from ._style import _OURS_COLOR, _PAPER_COLOR, _PAPER_MAIN_COLOR, finish

__all__ = ["plot_paper_vs_ours"]


def _metric_info(header: str) -> dict:
    """METRIC_INFO entry of a table column given as a metric key or a unit-labelled header ("COV-R (%)")."""
    if header in METRIC_INFO:
        return METRIC_INFO[header]
    for k, v in METRIC_INFO.items():
        label = f"{v['label']} ({v['unit']})" if v["unit"] else v["label"]
        if header in (label, v["label"]) or header.startswith(v["label"] + " ("):
            return v
    aliases = {"<delta_rms>": "delta_rms", "dV_rms (A^3/atom)": "dV_rms", "dE_rms (meV/atom)": "dE_rms",
               "Match rate (%)": "match_rate"}
    return METRIC_INFO.get(aliases.get(header, ""), {})


def plot_paper_vs_ours(df, metrics: Optional[Sequence[str]] = None, title: Optional[str] = None,
                       ours_marker: str = "ours", units: Optional[dict] = None):
    """Bar charts, one panel per metric: every row of ``df`` (a :func:`dpcdvae.eval.tables.compare_table` or
    ``ground_state.table3`` frame; rows = models) as a bar, the paper's rows grey (the DP-CDVAE row blue), ours red.
    Rows whose label starts with ``delta`` are skipped; non-numeric cells (``"unavailable: ..."``) are shown as
    "n/a". ``metrics``: columns to plot (default: all numeric-like columns except ``source``/``n``)."""
    import matplotlib.pyplot as plt

    rows = [r for r in df.index if not str(r).lower().startswith("delta")]
    cols = [c for c in (metrics or df.columns) if str(c) not in ("source", "n")]
    ncols = min(4, len(cols))
    nrows = int(np.ceil(len(cols) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(max(3.3 * ncols, 6.0) + 1.2, (0.3 * len(rows) + 1.3) * nrows + 0.5),
                             squeeze=False)
    flat = axes.ravel()
    for ax in flat[len(cols):]:
        ax.set_visible(False)
    for n_ax, (ax, c) in enumerate(zip(flat, cols)):
        vals, colors, labels = [], [], []
        for r in rows:
            v = df.loc[r, c]
            try:
                v = float(v)
            except (TypeError, ValueError):
                v = np.nan
            label = str(r)
            src = str(df.loc[r, "source"]) if "source" in df.columns else ""
            is_ours = ours_marker in label.lower() or "this run" in src or "ours" in src.lower()
            vals.append(v)
            labels.append(label)
            colors.append(_OURS_COLOR if is_ours else (_PAPER_MAIN_COLOR if "DP-CDVAE" == label.split(" (")[0]
                                                        else _PAPER_COLOR))
        y = np.arange(len(rows))[::-1]
        finite = np.isfinite(vals)
        ax.barh(y[finite], np.asarray(vals)[finite], color=np.asarray(colors)[finite], height=0.7)
        span = np.nanmax(np.abs(vals)) if finite.any() else 1.0
        for yy, v, ok in zip(y, vals, finite):
            ax.text(v if ok else 0.0, yy, f" {v:.4g}" if ok else " n/a", va="center", fontsize=7)
        ax.set_yticks(y)
        ax.set_yticklabels(labels if n_ax % ncols == 0 else [""] * len(labels), fontsize=7)
        unit = (units or {}).get(c)
        info = _metric_info(str(c))
        arrow = {"up": "  (higher is better)", "down": "  (lower is better)"}.get(info.get("better", ""), "")
        extra = " (dimensionless)" if info and not info.get("unit") and not unit else ""
        ax.set_xlabel(f"{c}" + (f" ({unit})" if unit else "") + extra + arrow, fontsize=8)
        for lab, col in zip(ax.get_yticklabels(), colors):
            if col == _OURS_COLOR:
                lab.set_color(_OURS_COLOR)
                lab.set_fontweight("bold")
        ax.set_xlim(0, span * 1.3 if span > 0 else 1.0)
        ax.tick_params(axis="x", labelsize=7)
        ax.grid(axis="x", alpha=0.3)
    from matplotlib.patches import Patch

    fig.legend(handles=[Patch(color=_PAPER_COLOR, label="paper (other models)"),
                        Patch(color=_PAPER_MAIN_COLOR, label="paper (DP-CDVAE)"),
                        Patch(color=_OURS_COLOR, label="ours (this run)")],
               loc="lower center", ncol=3, fontsize=7, frameon=False)
    return finish(fig, title, rect=(0, 0.35 / fig.get_figheight(), 1, 1))
