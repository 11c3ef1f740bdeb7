"""Pictures of crystals and of the wrapped reverse diffusion (matplotlib; no ffmpeg, no browser needed)."""
from __future__ import annotations

import itertools
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .diffusion.schedules import make_betas
from .eval.ground_state import delta_e_bins
from .eval.reference import METRIC_INFO

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
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
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


# ================================================================================================================
# Notebook figures (added for the notebooks; all return a matplotlib Figure made with pyplot so that Jupyter's
# inline backend shows it, and never switch the matplotlib backend). Units are on every axis.
# ================================================================================================================
__all__ += ["plot_wrapped_frames", "trajectory_animation", "plot_outside_fraction", "plot_training_curves",
            "plot_paper_vs_ours", "plot_histograms", "plot_schedules", "plot_prior_mismatch",
            "plot_eps_study", "plot_oracle_study", "plot_steps_study", "plot_delta_e_vs_paper",
            "plot_relaxation_scatter"]

_OURS_COLOR = "#d62728"
_PAPER_COLOR = "#7f7f7f"
_PAPER_MAIN_COLOR = "#1f77b4"


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
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1 - 1.5 / fig.get_figwidth(), 1))
    return fig


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
    fig.tight_layout()
    return fig


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
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


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
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.35 / fig.get_figheight(), 1, 1))
    return fig


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
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_schedules(T: int = 1000, kinds: Sequence[str] = ("sigmoid", "linear", "cosine")):
    """The noise schedules side by side: ``beta_t``, the signal ``sqrt(abar_t)`` and the noise ``sqrt(1-abar_t)``
    (both in units of the fractional coordinate) versus ``t``; the sigmoid schedule (published DP-CDVAE code)
    keeps ``sqrt(abar_T) ~= 0.15`` of the signal at ``t = T``."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13.0, 3.3))
    t = np.arange(1, T + 1)
    for k, kind in enumerate(kinds):
        b = make_betas(kind, T).numpy()
        abar = np.cumprod(1 - b)
        style = dict(color=f"C{k}", lw=2.0 if kind == "sigmoid" else 1.3)
        axes[0].plot(t, b, label=kind, **style)
        axes[1].plot(t, np.sqrt(abar), label=f"{kind}: " + r"$\sqrt{\bar\alpha_T}$" + f" = {np.sqrt(abar[-1]):.3f}",
                     **style)
        axes[2].plot(t, np.sqrt(1 - abar), label=kind, **style)
    axes[0].set_yscale("log")
    axes[0].set_ylabel(r"$\beta_t = 1 - \alpha_t$")
    axes[1].set_ylabel(r"signal $\sqrt{\bar\alpha_t}$ (fraction of $r_0$ kept)")
    axes[2].set_ylabel(r"noise std $\sqrt{1-\bar\alpha_t}$ (fractional units)")
    for ax, name in zip(axes, ("variance per step", "signal kept (Eq. 2)", "noise added (Eq. 2)")):
        ax.set_xlabel(f"diffusion step t (T = {T})")
        ax.set_title(name, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_prior_mismatch(df):
    """Total-variation distance between the forward marginal q(r_t | r_0) and the sampling prior, with and without
    the periodic wrap, versus ``t`` (``df`` from the prior-mismatch cell of notebook 06: columns ``t``,
    ``schedule``, ``tv_unwrapped``, ``tv_wrapped``)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    for k, (kind, g) in enumerate(df.groupby("schedule", sort=False)):
        ax.plot(g["t"], g["tv_unwrapped"], color=f"C{k}", ls="--", label=f"{kind}: unwrapped r_t vs N(0, 1)")
        ax.plot(g["t"], g["tv_wrapped"].clip(lower=1e-16), color=f"C{k}", ls="-",
                label=r"%s: wrapped $\pi(r_t)$ vs $\pi$(N(0, 1))" % kind)
    ax.set_yscale("log")
    ax.set_xlabel("diffusion step t")
    ax.set_ylabel("total-variation distance")
    ax.set_title("How close the end of the forward process is to the prior we sample from", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_eps_study(df, arrows: Optional[dict] = None, plane: tuple[int, int] = (0, 1)):
    """What eps_theta predicts. Left: mean squared error of the predicted noise versus ``t`` (model vs the
    trivial predictor 0, whose MSE is E[eps^2] = 1). Right (``arrows`` given): at one ``t``, the true noise
    (black) and the prediction (red) drawn from each wrapped position ``pi(r_t)`` toward where ``r_0`` is,
    i.e. the arrows are ``-sqrt(1-abar_t) eps`` in fractional units."""
    import matplotlib.pyplot as plt

    n = 2 if arrows else 1
    fig, axes = plt.subplots(1, n, figsize=(5.2 * n, 3.6), squeeze=False)
    ax = axes[0][0]
    ax.plot(df["t"], df["mse_model"], "o-", color=_OURS_COLOR, ms=3, label=r"$\epsilon_\theta$ (trained model)")
    ax.plot(df["t"], df["mse_zero"], "s--", color="0.4", ms=3, label=r"predict 0 ($E[\epsilon^2]$)")
    if "mse_wrap_target" in df:
        ax.plot(df["t"], df["mse_wrap_target"], "^:", color="C2", ms=3,
                label=r"ideal wrap-relative target $\epsilon_w$")
    ax.set_xlabel("diffusion step t")
    ax.set_ylabel(r"MSE per coordinate (fractional units$^2$)")
    ax.set_title(r"noise prediction error vs $t$", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    if arrows:
        ax = axes[0][1]
        i, j = plane
        y = np.asarray(arrows["wrapped"])
        x0 = np.asarray(arrows["x0"])
        s = float(arrows["noise_scale"])
        ax.add_patch(__import__("matplotlib").patches.Rectangle((0, 0), 1, 1, fill=False, ls="--", color="0.3"))
        e, p = np.asarray(arrows["eps"]), np.asarray(arrows["eps_pred"])
        ax.quiver(y[:, i], y[:, j], -s * e[:, i], -s * e[:, j], angles="xy", scale_units="xy", scale=1,
                  color="k", width=0.009, label=r"true $-\sqrt{1-\bar\alpha_t}\,\epsilon$", zorder=4)
        ax.quiver(y[:, i], y[:, j], -s * p[:, i], -s * p[:, j], angles="xy", scale_units="xy", scale=1,
                  color=_OURS_COLOR, width=0.004, label=r"predicted $-\sqrt{1-\bar\alpha_t}\,\epsilon_\theta$",
                  zorder=5)
        ax.scatter(y[:, i], y[:, j], s=18, c="0.5", label=r"$\pi(r_t)$ (network input)", zorder=3)
        ax.scatter(x0[:, i], x0[:, j], s=30, marker="x", c="C0", label=r"$r_0$ (clean)", zorder=3)
        ax.set_aspect("equal")
        pts = np.concatenate([y[:, [i, j]], x0[:, [i, j]], (y - s * e)[:, [i, j]], (y - s * p)[:, [i, j]],
                              np.array([[0.0, 0.0], [1.0, 1.0]])])
        lo, hi = float(pts.min()) - 0.1, float(pts.max()) + 0.1
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_xlabel(f"fractional {'abc'[i]}")
        ax.set_ylabel(f"fractional {'abc'[j]}")
        ax.set_title(f"t = {arrows['t']}: " + r"$\pi(r_t) - \sqrt{1-\bar\alpha_t}\,\epsilon = \sqrt{\bar\alpha_t}\,r_0$"
                     + " + lattice vector", fontsize=8)
        ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    fig.tight_layout()
    return fig


def plot_oracle_study(df, samples: Optional[dict] = None, s0: Optional[float] = None):
    """Samplers driven by a perfect (oracle) noise predictor. Left: spread (std) of the final samples around the
    true positions versus the number of network calls, with the data's true spread ``s0``; right: histograms of
    the final displacements (fractional units) for a few samplers. ``df`` (columns ``sampler``, ``steps``, ``std``)
    and ``samples`` (label -> displacements) come from the oracle cell of notebook 06."""
    import matplotlib.pyplot as plt

    n = 2 if samples else 1
    fig, axes = plt.subplots(1, n, figsize=(5.4 * n, 3.5), squeeze=False)
    ax = axes[0][0]
    for k, (name, g) in enumerate(df.groupby("sampler", sort=False)):
        ax.plot(g["steps"], g["std"], "o-" if len(g) > 1 else "D", ms=5, color=f"C{k}", label=name)
    if s0 is not None:
        ax.axhline(s0, color="k", ls="--", lw=1.0, label=f"data spread s0 = {s0:g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("network calls (sampling steps)")
    ax.set_ylabel(r"spread of final $r_0$ around its site (fractional)")
    ax.set_title("sample spread with an exact noise predictor", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    if samples:
        ax = axes[0][1]
        allv = np.concatenate([np.asarray(v).ravel() for v in samples.values()])
        lim = 5 * s0 if s0 else float(np.quantile(np.abs(allv), 0.99))
        bins = np.linspace(-lim, lim, 50)
        for k, (name, v) in enumerate(samples.items()):
            ax.hist(np.asarray(v).ravel(), bins=bins, density=True, histtype="step", lw=1.5, label=name,
                    color=f"C{k}")
        if s0:
            xs = np.linspace(-lim, lim, 200)
            ax.plot(xs, np.exp(-xs ** 2 / (2 * s0 ** 2)) / np.sqrt(2 * np.pi * s0 ** 2), "k--", lw=1.0,
                    label="data distribution")
        ax.set_xlabel("final displacement from true position (fractional)")
        ax.set_ylabel("probability density")
        ax.set_xlim(-lim, lim)
        ax.set_title("distribution of the samples", fontsize=9)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_steps_study(df, T: Optional[int] = None):
    """Few-step vs all-step sampling with a trained model (``df`` from :func:`dpcdvae.notebooks.steps_study`):
    wall time per crystal and the distance (A) of each few-step result to the paper's Eq. 7 ``T``-step result,
    versus the number of network calls, one line per sampler (the Eq. 7 reference is a single point)."""
    import matplotlib.pyplot as plt

    names = {"eq7": f"Eq. 7, {T or 'T'} steps (reference)", "strided_eq7": "strided Eq. 7",
             "strided": "strided DDIM"}
    fig, axes = plt.subplots(1, 2, figsize=(10.0, 3.3))
    groups = df.groupby("sampler", sort=False) if "sampler" in df else [("strided", df)]
    for k, (name, g) in enumerate(groups):
        style = "D" if len(g) == 1 else "o-"
        label = names.get(name, name)
        axes[0].plot(g["steps"], g["ms_per_crystal"], style, color=f"C{k}", label=label)
        axes[1].plot(g["steps"], g["dist_to_full_A"], style, color=f"C{k}", label=label)
    axes[0].set_ylabel("sampling time per crystal (ms, this machine)")
    axes[1].set_ylabel(f"mean atom distance to Eq. 7, {T or 'T'} steps (Å)")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("network calls (sampling steps)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


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
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
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
    fig.tight_layout()
    return fig


# ================================================================================================================
# the latent space (notebook 07; the numbers come from dpcdvae.latent)
# ================================================================================================================
__all__ += ["plot_latent_map", "plot_latent_panels", "plot_path_structures", "plot_path_heads"]


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
    ``"formula"``. ``proj``: a projection (``xy``, ``axis_labels()``: :func:`dpcdvae.latent.project_2d`); ``enc``:
    :func:`dpcdvae.latent.encode_split`'s dict; ``path_xy``: a path drawn on every panel. SYNTHETIC data is said so
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
    fig.suptitle(head, fontsize=10)
    fig.tight_layout()
    return fig


def plot_path_structures(dec, ncols: Optional[int] = None, suptitle: Optional[str] = None):
    """The crystals decoded along a path (``dec``: :func:`dpcdvae.latent.decode_path`'s result), one panel per
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
    """What the heads predict from z along a path (``dec``: :func:`dpcdvae.latent.decode_path`), against the path
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
    fig.suptitle("what the heads predict from z along the path", fontsize=10)
    fig.tight_layout()
    return fig
