"""Relaxation and the ground state (Table III): Fig. S2 (Delta E histograms beside the paper's DFT marks) and
generated vs relaxed volume and enthalpy."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from ..eval.ground_state import delta_e_bins
from ._style import _OURS_COLOR, _PAPER_MAIN_COLOR, finish

__all__ = ["MIN_N_FOR_MODE", "plot_delta_e_vs_paper", "plot_relaxation_scatter"]

#: Fewest values whose histogram gets a "mode" annotation (Fig. S2): below it the tallest bin is noise.
MIN_N_FOR_MODE = 30


def plot_delta_e_vs_paper(delta_e: dict, paper: Optional[dict] = None, bin_mev: float = 64.0,
                          path: Optional[str | Path] = None, energy: str = "enthalpy", title: Optional[str] = None):
    """Fig. S2 (the package's one plotter of it): per model, the histogram of ``Delta E = E_gen - E_relaxed``
    (meV/atom, ``bin_mev`` bins anchored at 0, :func:`dpcdvae.eval.ground_state.delta_e_bins`) of our relaxations,
    its mode bin (only with at least :data:`MIN_N_FOR_MODE` = 30 values; fewer are marked "no mode drawn") and
    RMS annotated; with ``paper``, the paper's DFT mode bin (shaded) and DFT ``Delta E_rms``
    (dashed) for the same model. ``delta_e``: ``{model: values in meV/atom}``; ``paper``: ``{model: {"mode": (lo,
    hi), "dE_rms": value}}`` (missing models: no paper marks). ``energy``: ``"enthalpy"`` (H = E + pV, the
    default) or ``"energy"``, for the axis label. Saved to ``path`` when given (and then closed); returns the
    Figure."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    paper = paper or {}
    letter_e = "H" if str(energy).lower() in ("enthalpy", "h") else "E"
    models = list(delta_e)
    k = max(1, len(models))
    fig, axes = plt.subplots(1, k, figsize=(4.6 * k, 3.5), squeeze=False)
    for ax, m, letter in zip(axes[0], models, "abcdefghijklmnopqrstuvwxyz"):
        v = np.asarray([x for x in delta_e[m] if x is not None], dtype=float)
        v = v[np.isfinite(v)]
        counts, edges = delta_e_bins(v, bin_mev)
        if len(counts):
            ax.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color=_OURS_COLOR, alpha=0.75,
                   edgecolor="k", lw=0.4, label=f"ours (n={len(v)}), rms {np.sqrt(np.mean(v ** 2)):.0f} meV/atom")
            if len(v) >= MIN_N_FOR_MODE:
                i = int(np.argmax(counts))
                ax.annotate(f"mode: {edges[i]:.0f} - {edges[i + 1]:.0f} meV/atom", xy=(0.97, 0.95),
                            xycoords="axes fraction", ha="right", va="top", fontsize=7)
            else:  # a histogram of a handful of values has no meaningful mode
                ax.annotate(f"n = {len(v)} < {MIN_N_FOR_MODE}: no mode drawn", xy=(0.97, 0.95),
                            xycoords="axes fraction", ha="right", va="top", fontsize=7)
        else:
            ax.text(0.5, 0.5, "no relaxed structures", transform=ax.transAxes, ha="center")
        p = paper.get(m)
        if p:
            if p.get("mode"):
                ax.axvspan(*p["mode"], color=_PAPER_MAIN_COLOR, alpha=0.2,
                           label=f"paper DFT mode {p['mode'][0]:g}-{p['mode'][1]:g} meV/atom")
            if p.get("dE_rms") is not None:
                ax.axvline(p["dE_rms"], color=_PAPER_MAIN_COLOR, ls="--", lw=1.2,
                           label=f"paper DFT rms {p['dE_rms']:g} meV/atom")
        unit = "; $H = E + pV$" if letter_e == "H" else ""
        ax.set_xlabel(rf"$\Delta {letter_e} = {letter_e}_{{gen}} - {letter_e}_{{relaxed}}$ (meV/atom{unit})")
        ax.set_ylabel("count")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f"({letter}) {m}", fontsize=9)
        if len(counts) or p:
            ax.legend(fontsize=6.5, loc="center right")
        ax.grid(alpha=0.3)
    finish(fig, title)
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=150)
        plt.close(fig)
    return fig


def plot_relaxation_scatter(rows: dict):
    """Generated vs relaxed volume per atom (A^3/atom) and energy per atom (eV/atom), one colour per model.
    ``rows``: ``{model: list of RelaxResult}`` (``ok`` ones are drawn)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9.4, 3.8))
    for k, (m, res) in enumerate(rows.items()):
        ok = [r for r in res if getattr(r, "ok", False)]
        if not ok:
            continue
        v0 = [r.initial_volume_per_atom for r in ok]
        v1 = [r.relaxed_volume_per_atom for r in ok]
        e0 = [r.initial_enthalpy_per_atom for r in ok]
        e1 = [r.relaxed_enthalpy_per_atom for r in ok]
        axes[0].scatter(v1, v0, s=16, color=f"C{k}", label=m)
        axes[1].scatter(e1, e0, s=16, color=f"C{k}", label=m)
    for ax, (xl, yl) in zip(axes, ((r"relaxed volume (A$^3$/atom)", r"generated volume (A$^3$/atom)"),
                                   ("relaxed enthalpy H = E + pV (eV/atom)", "generated enthalpy (eV/atom)"))):
        lims = np.array([ax.get_xlim(), ax.get_ylim()])
        lo, hi = lims.min(), lims.max()
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="y = x")
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return finish(fig)
