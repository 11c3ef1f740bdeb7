"""The wrapped reverse diffusion (Fig. 2): unwrapped r_t hollow, wrapped pi(r_t) filled, frame by frame, as an
animation, and how far the unwrapped state wanders outside the cell. Notebook figures: they return a matplotlib
Figure made with pyplot (Jupyter's inline backend shows it) and never switch the backend; units on every axis."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ._style import finish
from .structures import element_color

__all__ = ["plot_wrapped_frames", "trajectory_animation", "plot_outside_fraction"]


def _symbols(types) -> list:
    if types is None:
        return None
    from pymatgen.core import Element

    return [Element.from_Z(int(z)).symbol for z in np.asarray(types).ravel()]


def _crystal_slice(traj: dict, crystal: int) -> tuple[int, int]:
    na = np.asarray(traj["num_atoms"]).ravel()
    start = int(na[:crystal].sum())
    return start, int(na[crystal])


def _draw_wrapped_frame(ax, u: np.ndarray, w: np.ndarray, plane, symbols, lim, title, arrows=True,
                        legend=False):
    """One Fig.-2-style panel: unwrapped r_t hollow, wrapped pi(r_t) filled (element colours), arrows u -> w."""
    i, j = plane
    ax.add_patch(__import__("matplotlib").patches.Rectangle((0, 0), 1, 1, fill=False, ls="--", lw=1.0,
                                                             color="0.25", zorder=1))
    n = len(w)
    cols = [element_color(s) for s in symbols] if symbols else [f"C{a % 10}" for a in range(n)]
    moved = np.abs(u - w).max(axis=1) > 1e-6
    if arrows:
        for a in np.nonzero(moved)[0]:
            ax.annotate("", xy=(w[a, i], w[a, j]), xytext=(u[a, i], u[a, j]),
                        arrowprops=dict(arrowstyle="->", color="0.65", lw=0.6, shrinkA=3, shrinkB=3), zorder=2)
    ax.scatter(u[moved, i], u[moved, j], s=34, facecolors="none", edgecolors=[cols[a] for a in np.nonzero(moved)[0]],
               linewidths=1.1, zorder=3)
    ax.scatter(w[:, i], w[:, j], s=34, c=cols, edgecolors="k", linewidths=0.4, zorder=4)
    ax.set_xlim(lim[0], lim[1])
    ax.set_ylim(lim[0], lim[1])
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=9)
    ax.tick_params(labelsize=7)
    if legend:
        from matplotlib.lines import Line2D

        handles = [Line2D([], [], ls="", marker="o", mfc="none", mec="0.3", label=r"$r_t$ (unwrapped, outside cell)"),
                   Line2D([], [], ls="", marker="o", mfc="0.5", mec="k", label=r"$\pi(r_t)$ (wrapped into cell)"),
                   Line2D([], [], ls="--", color="0.25", label="unit cell")]
        if symbols:
            for s in sorted(set(symbols)):
                handles.append(Line2D([], [], ls="", marker="o", mfc=element_color(s), mec="k", label=s))
        return handles
    return None


def _frame_limits(u: np.ndarray, plane) -> tuple[float, float]:
    i, j = plane
    lo = float(min(0.0, np.floor(u[..., [i, j]].min() * 2) / 2)) - 0.15
    hi = float(max(1.0, np.ceil(u[..., [i, j]].max() * 2) / 2)) + 0.15
    return max(lo, -3.0), min(hi, 4.0)


def plot_wrapped_frames(trajs: dict, crystal: int = 0, n_frames: int = 6, plane: tuple[int, int] = (0, 1),
                        types=None, frames: Optional[Sequence[int]] = None, suptitle: Optional[str] = None):
    """Fig. 2 of the paper for one crystal, one row per trajectory: the unwrapped ``r_t`` (hollow circles, may lie
    outside the cell) and the wrapped ``pi(r_t)`` (filled, element colours) in fractional coordinates projected on
    ``plane`` (default a-b), over ``n_frames`` frames from ``t = T`` to ``0``.

    ``trajs``: ``{row label: trajectory dict}`` (``SampleOutput.trajectory`` format: ``t``, ``unwrapped [K,N,3]``,
    ``wrapped [K,N,3]``, ``num_atoms``); a single trajectory dict is accepted too. ``types``: atomic numbers of the
    crystal's atoms (colours and legend). Rows share axis limits so they can be compared.
    """
    import matplotlib.pyplot as plt

    if "t" in trajs:
        trajs = {"": trajs}
    symbols = _symbols(types)
    rows = list(trajs.items())
    K = len(rows[0][1]["t"])
    if frames is None:
        frames = sorted(set(np.linspace(0, K - 1, min(K, n_frames)).round().astype(int).tolist()))
    allu = []
    for _, tr in rows:
        s, n = _crystal_slice(tr, crystal)
        allu.append(np.asarray(tr["unwrapped"])[frames][:, s:s + n])
    lim = _frame_limits(np.concatenate(allu, axis=1), plane)
    fig, axes = plt.subplots(len(rows), len(frames), figsize=(2.35 * len(frames) + 1.6, 2.45 * len(rows) + 0.5),
                             squeeze=False)
    handles = None
    for r, (label, tr) in enumerate(rows):
        s, n = _crystal_slice(tr, crystal)
        for c, f in enumerate(frames):
            u = np.asarray(tr["unwrapped"][f])[s:s + n]
            w = np.asarray(tr["wrapped"][f])[s:s + n]
            h = _draw_wrapped_frame(axes[r][c], u, w, plane, symbols, lim, f"t = {tr['t'][f]}",
                                    legend=(r == 0 and c == 0))
            handles = handles or h
            if r == len(rows) - 1:
                axes[r][c].set_xlabel(f"fractional {'abc'[plane[0]]}", fontsize=8)
        axes[r][0].set_ylabel((label + "\n" if label else "") + f"fractional {'abc'[plane[1]]}", fontsize=8)
    fig.legend(handles=handles, loc="center right", fontsize=7, frameon=False)
    return finish(fig, suptitle, rect=(0, 0, 1 - 1.5 / fig.get_figwidth(), 1))


def trajectory_animation(traj: dict, crystal: int = 0, plane: tuple[int, int] = (0, 1), types=None,
                         max_frames: int = 60, interval: int = 120, title: str = ""):
    """A ``matplotlib.animation.FuncAnimation`` of the wrapped reverse process of one crystal (unwrapped hollow,
    wrapped filled), at most ``max_frames`` frames. Show it in a notebook with ``HTML(anim.to_jshtml())`` (no
    ffmpeg needed); the figure is closed so that it is not shown twice."""
    import matplotlib.pyplot as plt
    from matplotlib.animation import FuncAnimation

    symbols = _symbols(types)
    s, n = _crystal_slice(traj, crystal)
    K = len(traj["t"])
    idx = sorted(set(np.linspace(0, K - 1, min(K, max_frames)).round().astype(int).tolist()))
    U = np.asarray(traj["unwrapped"])[:, s:s + n]
    W = np.asarray(traj["wrapped"])[:, s:s + n]
    lim = _frame_limits(U[idx], plane)
    fig, ax = plt.subplots(figsize=(5.6, 3.6))

    def draw(k):
        ax.clear()
        f = idx[k]
        handles = _draw_wrapped_frame(ax, U[f], W[f], plane, symbols, lim, f"{title}  t = {traj['t'][f]}".strip(),
                                      legend=True)
        ax.set_xlabel(f"fractional {'abc'[plane[0]]}")
        ax.set_ylabel(f"fractional {'abc'[plane[1]]}")
        ax.legend(handles=handles, fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        return []

    fig.subplots_adjust(left=0.1, right=0.66, bottom=0.14, top=0.9)
    anim = FuncAnimation(fig, draw, frames=len(idx), interval=interval, blit=False)
    plt.close(fig)
    return anim


def plot_outside_fraction(trajs: dict, crystal: Optional[int] = None):
    """How far the unwrapped state wanders: per trajectory, the fraction of fractional coordinates outside
    ``[0, 1)`` and the largest distance of a coordinate outside ``[0, 1]`` (cell lengths) versus the step ``t``. ``crystal=None``
    uses every crystal of the trajectory."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9.0, 3.2))
    for k, (label, tr) in enumerate(trajs.items()):
        U = np.asarray(tr["unwrapped"])
        W = np.asarray(tr["wrapped"])
        if crystal is not None:
            s, n = _crystal_slice(tr, crystal)
            U, W = U[:, s:s + n], W[:, s:s + n]
        t = np.asarray(tr["t"])
        outside = (np.abs(U - W) > 1e-9).mean(axis=(1, 2))
        shift = np.maximum(np.maximum(-U, U - 1.0), 0.0).max(axis=(1, 2))
        axes[0].plot(t, 100 * outside, label=label, color=f"C{k}")
        axes[1].plot(t, shift, label=label, color=f"C{k}")
    axes[0].set_ylabel("coordinates outside the cell (%)")
    axes[1].set_ylabel("largest distance outside the cell\n(fractional units = cell lengths)")
    for ax in axes:
        ax.set_xlabel("diffusion step t (sampling runs right to left)")
        ax.invert_xaxis()
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    return finish(fig)
