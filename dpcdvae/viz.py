"""Pictures of crystals and of the wrapped reverse diffusion (matplotlib; no ffmpeg, no browser needed)."""
from __future__ import annotations

import itertools
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

__all__ = ["element_color", "draw_cell", "plot_structures", "plot_trajectory_frames"]

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
    """Draw the 12 edges of the unit cell (rows of ``lattice`` = a, b, c in Angstrom) on a 3D axis."""
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
                    ncols: int = 4, suptitle: Optional[str] = None):
    """Grid of 3D pictures of pymatgen structures (``None`` entries are shown as 'invalid'); saves a PNG if
    ``path`` is given and returns the figure."""
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
            ax.text2D(0.5, 0.5, "invalid", ha="center", transform=ax.transAxes)
            ax.set_axis_off()
            continue
        _draw_structure(ax, s, None if titles is None else titles[k])
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


def plot_trajectory_frames(traj: dict, crystal: int = 0, frames: Optional[Sequence[int]] = None,
                           path: Optional[str | Path] = None, plane: tuple[int, int] = (0, 1)):
    """Fig. 2 of the paper, for one crystal of a recorded trajectory: per frame, the unwrapped r_t (hollow circles,
    may lie outside the cell) and the wrapped pi(r_t) (filled, inside the cell), in fractional coordinates
    projected on ``plane`` (default a-b). ``traj`` as returned by ``SampleOutput.trajectory``."""
    import matplotlib

    if path is not None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    na = traj["num_atoms"]
    start = int(na[:crystal].sum())
    n = int(na[crystal])
    K = len(traj["t"])
    if frames is None:
        frames = sorted(set(np.linspace(0, K - 1, min(K, 6)).round().astype(int).tolist()))
    fig, axes = plt.subplots(1, len(frames), figsize=(2.6 * len(frames), 2.9), squeeze=False)
    i, j = plane
    for ax, f in zip(axes[0], frames):
        u = traj["unwrapped"][f][start:start + n].numpy()
        w = traj["wrapped"][f][start:start + n].numpy()
        ax.add_patch(plt.Rectangle((0, 0), 1, 1, fill=False, ls="--", color="0.3"))
        ax.scatter(u[:, i], u[:, j], facecolors="none", edgecolors="0.5", s=30, label="r_t (unwrapped)")
        ax.scatter(w[:, i], w[:, j], c=np.arange(n), cmap="tab10", s=30, label="pi(r_t)")
        for a in range(n):
            if np.abs(u[a] - w[a]).max() > 1e-6:
                ax.annotate("", xy=(w[a, i], w[a, j]), xytext=(u[a, i], u[a, j]),
                            arrowprops=dict(arrowstyle="->", color="0.7", lw=0.6))
        ax.set_title(f"t = {traj['t'][f]}", fontsize=9)
        lim = max(1.5, float(np.abs(u[:, [i, j]]).max()) + 0.2)
        ax.set_xlim(-lim + 0.5, lim + 0.5)
        ax.set_ylim(-lim + 0.5, lim + 0.5)
        ax.set_aspect("equal")
        ax.set_xlabel("frac " + "abc"[i])
    axes[0][0].set_ylabel("frac " + "abc"[j])
    axes[0][0].legend(fontsize=6, loc="lower left")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig
