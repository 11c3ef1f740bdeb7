"""The latent space (notebook 07; the numbers come from :mod:`dpcdvae.workflows.latent`): 2-D maps coloured by a
quantity, the crystals decoded along a path and what the heads predict along it."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ._style import finish
from .structures import element_color, plot_structures

__all__ = ["plot_latent_map", "plot_latent_panels", "plot_path_structures", "plot_path_heads"]


def _category_colors(cats: Sequence[str], max_categories: int = 9) -> tuple[dict, list]:
    """Colours of the ``max_categories`` most frequent categories (element colours for element symbols, else the
    tab10 cycle); the rest are grey and labelled "other"."""
    from collections import Counter

    from pymatgen.core.periodic_table import Element

    order = [c for c, _ in Counter(cats).most_common()]
    shown = order[:max_categories]
    colors = {}
    for k, c in enumerate(shown):
        colors[c] = element_color(c) if isinstance(c, str) and Element.is_valid_symbol(c) else f"C{k % 10}"
    return colors, shown


def plot_latent_map(xy, values, kind: str = "auto", label: str = "", ax=None, path_xy=None,
                    axis_labels: Sequence[str] = ("latent axis 1", "latent axis 2"), title: Optional[str] = None,
                    highlight: Optional[int] = None, max_categories: int = 9):
    """One 2-D map of the latent space: points ``xy [n, 2]`` coloured by ``values [n]``, the quantity named
    ``label`` with its unit (e.g. ``"heat_ref (eV/atom)"``). ``kind``: ``"continuous"`` (a colour bar; NaN drawn
    grey), ``"categorical"`` (a legend: the most frequent ``max_categories`` values, the rest grey as "other"), or
    ``"auto"`` (categorical for strings and for integers with <= 12 distinct values). ``path_xy [m, 2]``: a path
    drawn on top, its points numbered 0..m-1, start marked A and end B; ``highlight``: one path point drawn larger.
    The axes are the projection's (dimensionless latent units). Returns the figure (``ax``'s when given)."""
    import matplotlib.pyplot as plt

    xy = np.asarray(xy, dtype=float)
    vals = list(values)
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.2, 4.2))
    else:
        fig = ax.figure
    if kind == "auto":
        is_int = all(isinstance(v, (int, np.integer)) for v in vals)
        kind = "categorical" if (vals and isinstance(vals[0], str)) or (is_int and len(set(vals)) <= 12) \
            else "continuous"
    if kind == "categorical":
        cats = [str(v) for v in vals]
        colors, shown = _category_colors(cats, max_categories)
        rest = np.array([c not in colors for c in cats])
        if rest.any():
            ax.scatter(xy[rest, 0], xy[rest, 1], s=12, color="0.8", label="other", edgecolors="none")
        for c in shown:
            m = np.array([x == c for x in cats])
            ax.scatter(xy[m, 0], xy[m, 1], s=16, color=colors[c], edgecolors="0.3", linewidths=0.3,
                       label=f"{c} ({int(m.sum())})")
        ax.legend(title=label, fontsize=6, title_fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0),
                  frameon=False)
    else:
        v = np.asarray(vals, dtype=float)
        ok = np.isfinite(v)
        if (~ok).any():
            ax.scatter(xy[~ok, 0], xy[~ok, 1], s=10, color="0.8", edgecolors="none", label="no value")
        if ok.any():
            sc = ax.scatter(xy[ok, 0], xy[ok, 1], c=v[ok], s=14, cmap="viridis", edgecolors="none")
            fig.colorbar(sc, ax=ax, label=label, fraction=0.05, pad=0.02)
        else:
            ax.text(0.5, 0.95, f"{label}: no values", transform=ax.transAxes, ha="center", fontsize=8)
    if path_xy is not None:
        p = np.asarray(path_xy, dtype=float)
        ax.plot(p[:, 0], p[:, 1], "-", color="k", lw=1.2, zorder=5)
        ax.scatter(p[:, 0], p[:, 1], s=22, facecolor="white", edgecolor="k", zorder=6)
        for k, (x, y) in enumerate(p):
            ax.annotate(str(k), (x, y), textcoords="offset points", xytext=(3, 3), fontsize=6, zorder=7)
        for k, name in ((0, "A"), (len(p) - 1, "B")):
            ax.scatter(p[k, 0], p[k, 1], s=90, marker="*", color="crimson", edgecolor="k", zorder=8)
            ax.annotate(name, (p[k, 0], p[k, 1]), textcoords="offset points", xytext=(-10, 5), fontsize=9,
                        fontweight="bold", color="crimson", zorder=8)
        if highlight is not None:
            ax.scatter(p[highlight, 0], p[highlight, 1], s=160, facecolor="none", edgecolor="crimson", lw=2,
                       zorder=9)
    ax.set_xlabel(axis_labels[0], fontsize=8)
    ax.set_ylabel(axis_labels[1], fontsize=8)
    ax.tick_params(labelsize=7)
    if title:
        ax.set_title(title, fontsize=9)
    return fig


def plot_latent_panels(proj, enc: dict, path_xy=None, quantities: Sequence[str] = ("property", "num_atoms",
                                                                                      "main_element"),
                       suptitle: Optional[str] = None):
    """The latent map of an encoded split, one panel per quantity: ``"property"`` (the dataset's property column
    with its unit), ``"num_atoms"`` (N_a, atoms per cell), ``"main_element"`` (the element with most atoms) or
    ``"formula"``. ``proj``: a projection (``xy``, ``axis_labels()``: :func:`dpcdvae.workflows.latent.project_2d`); ``enc``:
    :func:`dpcdvae.workflows.latent.encode_split`'s dict; ``path_xy``: a path drawn on every panel. SYNTHETIC data is said so
    in the title. Returns the figure."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(quantities), figsize=(5.6 * len(quantities), 4.3), squeeze=False)
    labels = proj.axis_labels() if hasattr(proj, "axis_labels") else ("latent axis 1", "latent axis 2")
    for ax, q in zip(axes[0], quantities):
        if q == "property":
            vals, kind = enc["y"], "continuous"
            label = f"{enc.get('prop') or 'property'} ({enc.get('prop_units', 'unknown')})"
        elif q == "num_atoms":
            vals, kind, label = [int(v) for v in enc["num_atoms"]], "auto", "N_a (atoms per cell)"
        elif q in ("main_element", "formula"):
            vals, kind = enc[q], "categorical"
            label = "most common element" if q == "main_element" else "reduced formula"
        else:
            raise ValueError(f"unknown quantity {q!r}: property, num_atoms, main_element or formula")
        plot_latent_map(proj.xy, vals, kind=kind, label=label, ax=ax, path_xy=path_xy, axis_labels=labels,
                        title=f"coloured by {label}")
    head = suptitle or f"latent space of {len(enc['z'])} {enc['dataset']} {enc['split']} crystals ({proj.method})"
    if enc.get("synthetic"):
        head += " - SYNTHETIC demo crystals"
    return finish(fig, head)


def plot_path_structures(dec, ncols: Optional[int] = None, suptitle: Optional[str] = None):
    """The crystals decoded along a path (``dec``: :func:`dpcdvae.workflows.latent.decode_path`'s result), one panel per
    point, titled with its index, path parameter s and formula; invalid ones marked INVALID with the reason.
    Returns the figure."""
    t = dec.table
    titles = [f"{i}: s = {float(t['s'].iloc[i]):.2f}\n{t['formula'].iloc[i]} (N_a {int(t['N_a'].iloc[i])})"
              for i in range(len(t))]
    invalid = [None if v else (r or "invalid") for v, r in zip(t["valid"], t["invalid because"])]
    n = len(t)
    head = f"decoded along the path: {int(t['valid'].sum())}/{n} valid"
    return plot_structures(dec.out.structures, titles=titles, invalid=invalid, ncols=ncols or min(n, 5),
                           suptitle=f"{suptitle}: {head}" if suptitle else head)


def plot_path_heads(dec, n_elements: int = 4):
    """What the heads predict from z along a path (``dec``: :func:`dpcdvae.workflows.latent.decode_path`), against the path
    parameter s (0 = crystal A, 1 = crystal B): N_a (the head's argmax, its probability on the right axis), the
    lattice lengths a, b, c (A), the angles (deg), and the composition head's predicted fractions of the elements
    that are most likely anywhere on the path. Points decoded into invalid crystals are marked with a red x.
    Returns the figure."""
    import matplotlib.pyplot as plt

    from pymatgen.core import Element

    t, h = dec.table, dec.heads
    s = np.asarray(dec.s, dtype=float)
    bad = ~np.asarray(t["valid"], dtype=bool)
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.4))
    ax = axes[0]
    ax.step(s, t["N_a"], where="mid", color="k", label="N_a (argmax)")
    ax.scatter(s[bad], np.asarray(t["N_a"])[bad], marker="x", color="crimson", s=40, zorder=5, label="invalid")
    ax.set_ylabel("N_a (atoms per cell)")
    ax.yaxis.get_major_locator().set_params(integer=True)
    tw = ax.twinx()
    tw.plot(s, t["p(N_a)"], "o--", color="C0", ms=3, lw=0.8)
    tw.set_ylim(0, 1.05)
    tw.set_ylabel("p(N_a) of the head", color="C0")
    ax.legend(fontsize=7, loc="lower left")
    for k, c in enumerate("abc"):
        axes[1].plot(s, h["lengths"][:, k], "o-", ms=3, label=c)
        axes[2].plot(s, h["angles"][:, k], "o-", ms=3, label="alpha beta gamma".split()[k])
    axes[1].set_ylabel("lattice length (A)")
    axes[2].set_ylabel("lattice angle (deg)")
    lo, hi = float(np.min(h["angles"])), float(np.max(h["angles"]))
    if hi - lo < 2.0:  # nearly constant (cubic cells): show +-1 deg, not the noise of the last digits
        axes[2].set_ylim((lo + hi) / 2 - 1.0, (lo + hi) / 2 + 1.0)
    axes[2].ticklabel_format(axis="y", useOffset=False)
    cp = h["comp_probs"]
    top = list(dict.fromkeys(int(i) for i in np.argsort(-cp.max(0))[:n_elements]))
    for i in top:
        sym = Element.from_Z(i + 1).symbol
        axes[3].plot(s, cp[:, i], "o-", ms=3, color=element_color(sym), mec="k", mew=0.4, label=sym)
    axes[3].set_ylabel("composition head: fraction")
    for a in axes[1:]:
        a.scatter(s[bad], np.full(bad.sum(), a.get_ylim()[0]), marker="x", color="crimson", s=30, clip_on=False)
        a.legend(fontsize=7)
    for a in axes:
        a.set_xlabel("path parameter s (A = 0, B = 1)")
        a.grid(alpha=0.3)
    return finish(fig, "what the heads predict from z along the path")
