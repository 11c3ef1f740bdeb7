"""Pictures of crystals: element colours, the unit cell, a grid of 3D structures, the first crystals of a sampling
run with their validity."""
from __future__ import annotations

import itertools
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ._style import finish

# local: matplotlib (and pyplot) are imported by the functions that draw, so that importing the workflows, which
# use one figure, does not load it

__all__ = ["element_color", "draw_cell", "plot_structures", "plot_samples"]

# a few familiar colours (Jmol-like); other elements get a stable colour from a colormap
_COLORS = {"H": "#ffffff", "C": "#404040", "N": "#3050f8", "O": "#ff0d0d", "F": "#90e050", "S": "#ffff30",
           "Cl": "#1ff01f", "Na": "#ab5cf2", "K": "#8f40d4", "Ca": "#3dff00", "Sr": "#00ff00", "Ba": "#00c900",
           "Ti": "#bfc2c7", "Fe": "#e06633", "Co": "#f090a0", "Ni": "#50d050", "Cu": "#c88033", "Zn": "#7d80b0",
           "Li": "#cc80ff", "Mg": "#8aff00", "Al": "#bfa6a6", "Si": "#f0c8a0", "P": "#ff8000", "La": "#70d4ff"}


def element_color(symbol: str):
    """A colour for an element symbol (Jmol-like for common elements)."""
    if symbol in _COLORS:
        return _COLORS[symbol]
    import matplotlib

    from pymatgen.core import Element

    z = Element(symbol).Z
    return matplotlib.colormaps["tab20"]((z * 7) % 20 / 20)


def draw_cell(ax, lattice: np.ndarray, **kw) -> None:
    """Draw the 12 edges of the unit cell (rows of ``lattice`` = a, b, c in Angstrom) on a 3D axis: thin solid grey
    lines unless ``kw`` (matplotlib line arguments) says otherwise."""
    kw = {"color": "0.4", "lw": 0.8, **kw}
    corners = np.array(list(itertools.product([0, 1], repeat=3)), dtype=float)
    for i, j in itertools.combinations(range(8), 2):
        if np.abs(corners[i] - corners[j]).sum() == 1:
            p = np.stack([corners[i], corners[j]]) @ lattice
            ax.plot(p[:, 0], p[:, 1], p[:, 2], **kw)


def _draw_structure(ax, s, title: Optional[str] = None) -> None:
    lat = s.lattice.matrix
    draw_cell(ax, lat)
    cart = s.cart_coords
    symbols = [site.specie.symbol for site in s]
    for sym in sorted(set(symbols)):
        m = np.array([x == sym for x in symbols])
        ax.scatter(cart[m, 0], cart[m, 1], cart[m, 2], s=60, color=element_color(sym), edgecolors="k",
                   linewidths=0.5, label=sym, depthshade=False)
    ax.set_title(title or s.composition.reduced_formula, fontsize=9)
    ax.set_axis_off()
    ax.legend(fontsize=6, loc="upper right", frameon=False, markerscale=0.6)
    try:
        ax.set_box_aspect(np.ptp(np.vstack([cart, np.array(list(itertools.product([0, 1], repeat=3))) @ lat]),
                                 axis=0).clip(min=1e-3))
    except Exception:  # pragma: no cover - old matplotlib
        pass


def plot_structures(structures: Sequence, path: Optional[str | Path] = None, titles: Optional[Sequence[str]] = None,
                    ncols: int = 4, suptitle: Optional[str] = None,
                    invalid: Optional[Sequence[Optional[str]]] = None):
    """Grid of 3D pictures of pymatgen structures (``None`` entries are shown as 'not built'); saves a PNG if
    ``path`` is given and returns the figure. ``invalid``: per structure, None or the reason it is invalid in the
    paper's sense: the panel's title then says INVALID and why, in red."""
    import matplotlib

    if path is not None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    n = max(1, len(structures))
    ncols = min(ncols, n)
    nrows = int(np.ceil(n / ncols))
    fig = plt.figure(figsize=(3.2 * ncols, 3.2 * nrows))
    for k, s in enumerate(structures):
        ax = fig.add_subplot(nrows, ncols, k + 1, projection="3d")
        if s is None:
            ax.text2D(0.5, 0.5, "not built", ha="center", transform=ax.transAxes)
            ax.set_axis_off()
            continue
        _draw_structure(ax, s, None if titles is None else titles[k])
        why = None if invalid is None else invalid[k]
        if why:
            head = titles[k] if titles is not None else s.composition.reduced_formula
            short = why.split(";")[0].split(": ", 1)[-1].split(" (")[0].split(" with ")[0][:34]
            ax.set_title(f"{head}\nINVALID: {short}", fontsize=8, color="crimson")
    finish(fig, suptitle, title_size=None)
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


def plot_samples(out, n: int = 8, path: Optional[str | Path] = None, suptitle: Optional[str] = None, ncols: int = 4,
                 what: str = "crystals"):
    """The first ``n`` built crystals of a ``SampleOutput`` (generation or reconstruction), each titled with its
    formula; crystals invalid in the paper's sense (atoms closer than 0.5 A, not charge neutral) are marked
    INVALID with the reason. Returns the figure (a PNG at ``path`` if given).

    The figure's title says what is drawn and what the validity counts over, both from ``out``: e.g. ``"8 of 32
    generated crystals shown; 28/32 valid (structure + composition)"`` (``what`` names the crystals; "(the first 8
    built)" is added when a crystal that could not be built was skipped), after ``suptitle`` when given."""
    built = [i for i, ok in enumerate(out.decoded_mask) if ok]
    keep = built[:n]
    validity = out.validity()
    n_valid = sum(v["valid"] for v in validity)
    shown = f"{len(keep)} of {len(out)} {what} shown"
    if keep != list(range(len(keep))):  # a crystal before the last one drawn was not built
        shown += f" (the first {len(keep)} built)"
    head = f"{shown}; {n_valid}/{len(out)} valid (structure + composition)"
    return plot_structures([out.structures[i] for i in keep], path, ncols=ncols,
                           suptitle=f"{suptitle}: {head}" if suptitle else head,
                           invalid=[validity[i]["reason"] for i in keep])
