"""The widgets the notebooks show, each built only where a person's Jupyter front end will draw it
(:func:`dpcdvae.notebooks.session.headless`); a headless run (``dpcdvae notebooks``, plain papermill) draws the
widget's first frame as a static picture instead and says so: the slider over the points of a decoded path (notebook
07), the sliders over a reverse trajectory (02) and the forward process (06), nglview's 3D views and the
animations' player.
"""
from __future__ import annotations

from typing import Optional

from ..structures.crystal import lattice_params_to_matrix
from ..viz import plot_structures
from ..viz.trajectories import _crystal_slice, _draw_wrapped_frame, _frame_limits, _symbols
from .session import GUARD_MARK, HEADLESS_WIDGET_NOTE, _widget_or_static, headless
from .studies import forward_trajectory

__all__ = ["path_slider", "draw_path_point", "show_animation", "trajectory_slider", "nglview_trajectory",
           "nglview_structure", "forward_slider"]


def draw_path_point(dec, k: int, proj=None, enc: Optional[dict] = None, color_by: str = "main_element"):
    """One frame of :func:`path_slider`: point ``k`` of a decoded path (``dec``: :func:`dpcdvae.workflows.latent.decode_path`)
    as a 3D crystal with its N_a, formula, validity and predicted cell (A, deg); with ``proj`` (a PCA projection
    of ``enc["z"]``, path in ``proj.extra_xy``) and ``enc``, also the latent map with the point circled.
    Returns the figure."""
    import matplotlib.pyplot as plt

    from ..viz.latent import plot_latent_map
    from ..viz.structures import _draw_structure

    row = dec.table.iloc[k]
    with_map = proj is not None and enc is not None and getattr(proj, "extra_xy", None) is not None
    fig = plt.figure(figsize=(9.6 if with_map else 4.4, 4.0))
    if with_map:
        ax = fig.add_subplot(1, 2, 1)
        vals = enc["y"] if color_by == "property" else enc[color_by]
        label = {"property": f"{enc.get('prop')} ({enc.get('prop_units')})", "num_atoms": "N_a (atoms per cell)",
                 "main_element": "most common element"}.get(color_by, color_by)
        plot_latent_map(proj.xy, vals, kind="continuous" if color_by == "property" else "auto", label=label, ax=ax,
                        path_xy=proj.extra_xy, axis_labels=proj.axis_labels(), highlight=k,
                        title=f"point {k} of {len(dec.table)} (s = {float(row['s']):.2f})")
    ax3 = fig.add_subplot(1, 2 if with_map else 1, 2 if with_map else 1, projection="3d")
    st = dec.out.structures[k]
    cell = (f"a b c = {row['a (A)']:.2f} {row['b (A)']:.2f} {row['c (A)']:.2f} A, "
            f"angles {row['alpha (deg)']:.0f} {row['beta (deg)']:.0f} {row['gamma (deg)']:.0f} deg")
    title = f"s = {float(row['s']):.2f}: {row['formula']} (N_a {int(row['N_a'])}, " \
            f"{'valid' if row['valid'] else 'INVALID'})\n{cell}"
    if st is None:
        ax3.text2D(0.5, 0.5, "not built", ha="center", transform=ax3.transAxes)
        ax3.set_axis_off()
        ax3.set_title(title, fontsize=8)
    else:
        _draw_structure(ax3, st, title)
        ax3.title.set_fontsize(8)
        if not row["valid"]:
            ax3.title.set_color("crimson")
    fig.tight_layout()
    return fig


def path_slider(dec, proj=None, enc: Optional[dict] = None, color_by: str = "main_element"):
    """An ipywidgets slider over the points of a decoded path, redrawing :func:`draw_path_point` (the crystal at
    that point and, given ``proj`` and ``enc``, where it lies on the latent map). In a live Jupyter front end it
    returns the widget; headless it draws point 0 and returns ``None`` (printing why); without ipywidgets it says
    so and returns ``None``."""
    import matplotlib.pyplot as plt

    def show(point):
        draw_path_point(dec, point, proj, enc, color_by)
        plt.show()

    if headless():
        print("no live Jupyter front end (headless run): the slider's first frame is drawn instead; open the "
              "notebook in JupyterLab to move along the path (DPCDVAE_WIDGETS=1 forces the widget)")
        show(0)
        return None
    try:
        import ipywidgets as widgets
    except ImportError as exc:
        print(f"ipywidgets {GUARD_MARK}: {exc} (pip install ipywidgets)")
        return None
    slider = widgets.IntSlider(min=0, max=len(dec.table) - 1, step=1, value=0, description="point on the path",
                               style={"description_width": "initial"}, continuous_update=False)
    return widgets.interactive(show, point=slider)


# ================================================================================================================
# the reverse trajectory (02), the forward process (06), 3D views and animations
# ================================================================================================================
def show_animation(anim, embed_limit_mb: float = 30.0):
    """``IPython.display.HTML(anim.to_jshtml())`` (pure JavaScript + PNG frames; no ffmpeg)."""
    import matplotlib
    from IPython.display import HTML

    matplotlib.rcParams["animation.embed_limit"] = embed_limit_mb
    return HTML(anim.to_jshtml())


def trajectory_slider(traj: dict, crystal: int = 0, types=None, plane: tuple[int, int] = (0, 1)):
    """An ipywidgets slider over the recorded frames (``t``) of a trajectory, redrawing the Fig.-2 panel.
    Returns the widget, or ``None`` (printing why) when ipywidgets is missing."""
    try:
        import ipywidgets as widgets
    except ImportError as exc:
        print(f"ipywidgets {GUARD_MARK}: {exc} (pip install ipywidgets)")
        return None
    import matplotlib.pyplot as plt


    s, n = _crystal_slice(traj, crystal)
    import numpy as np

    U = np.asarray(traj["unwrapped"])[:, s:s + n]
    W = np.asarray(traj["wrapped"])[:, s:s + n]
    lim = _frame_limits(U, plane)
    ts = list(traj["t"])
    symbols = _symbols(types)

    def show(frame):
        fig, ax = plt.subplots(figsize=(4.4, 3.8))
        h = _draw_wrapped_frame(ax, U[frame], W[frame], plane, symbols, lim, f"t = {ts[frame]}", legend=True)
        ax.set_xlabel(f"fractional {'abc'[plane[0]]}")
        ax.set_ylabel(f"fractional {'abc'[plane[1]]}")
        ax.legend(handles=h, fontsize=6, loc="upper left", bbox_to_anchor=(1, 1), frameon=False)
        fig.tight_layout()
        plt.show()

    def build():
        slider = widgets.IntSlider(min=0, max=len(ts) - 1, step=1, value=0, description="frame (t = T..0)",
                                   style={"description_width": "initial"}, continuous_update=False)
        return widgets.interactive(show, frame=slider)

    return _widget_or_static(build, lambda: show(0))


def nglview_trajectory(out, crystal: int = 0):
    """An nglview trajectory widget of one crystal's wrapped reverse process (final atom types, predicted lattice).
    nglview widgets render only in a live Jupyter front end (not under papermill/HTML export); returns the widget or
    ``None`` with the reason printed."""
    try:
        import nglview
        from ase import Atoms
    except Exception as exc:
        print(f"nglview {GUARD_MARK}: {type(exc).__name__}: {exc}")
        return None

    traj = out.trajectory
    s, n = (int(out.num_atoms[:crystal].sum()), int(out.num_atoms[crystal]))
    lat = lattice_params_to_matrix(out.lengths[crystal:crystal + 1], out.angles[crystal:crystal + 1])[0].numpy()
    Z = out.atom_types[s:s + n].numpy()
    frames = [Atoms(numbers=Z, scaled_positions=traj["wrapped"][k][s:s + n].numpy(), cell=lat, pbc=True)
              for k in range(len(traj["t"]))]
    if headless():
        print(f"nglview: {HEADLESS_WIDGET_NOTE} ({len(frames)} frames ready)")
        from pymatgen.io.ase import AseAtomsAdaptor

        plot_structures([AseAtomsAdaptor.get_structure(frames[0])],
                        titles=[f"frame 1 of {len(frames)} (t = {int(traj['t'][0])})"])
        return None
    return _nglview_with_cell(lambda: nglview.show_asetraj(frames))


def _nglview_with_cell(make):
    """``make()`` (an nglview view) with its unit cell drawn, or ``None`` with the reason printed."""
    try:
        view = make()
        view.add_unitcell()
        return view
    except Exception as exc:
        print(f"nglview {GUARD_MARK}: {type(exc).__name__}: {exc}")
        return None


def nglview_structure(structure):
    """An nglview widget of a pymatgen Structure with its unit cell (``None`` with the reason if unavailable or in a
    headless run)."""
    if headless():
        print(f"nglview: {HEADLESS_WIDGET_NOTE}")
        plot_structures([structure])
        return None

    def make():
        import nglview

        return nglview.show_pymatgen(structure)

    return _nglview_with_cell(make)


def forward_slider(frac, T: int = 1000, types=None, seed: int = 0):
    """ipywidgets: a slider over t and a schedule dropdown showing the forward process (unwrapped hollow, wrapped
    filled) of one crystal. Returns the widget or ``None`` (reason printed)."""
    try:
        import ipywidgets as widgets
    except ImportError as exc:
        print(f"ipywidgets {GUARD_MARK}: {exc}")
        return None
    import matplotlib.pyplot as plt
    import numpy as np


    symbols = _symbols(types)

    def show(t, schedule):
        tr = forward_trajectory(frac, T, schedule, [t], seed)
        fig, ax = plt.subplots(figsize=(4.4, 3.8))
        h = _draw_wrapped_frame(ax, np.asarray(tr["unwrapped"][0]), np.asarray(tr["wrapped"][0]), (0, 1), symbols,
                                (-2.2, 3.2), f"{schedule}, t = {t}", legend=True)
        ax.set_xlabel("fractional a")
        ax.set_ylabel("fractional b")
        ax.legend(handles=h, fontsize=6, loc="upper left", bbox_to_anchor=(1, 1), frameon=False)
        fig.tight_layout()
        plt.show()

    def build():
        return widgets.interactive(show, t=widgets.IntSlider(min=0, max=T, step=max(1, T // 100), value=T // 4,
                                                             continuous_update=False),
                                   schedule=widgets.Dropdown(options=["sigmoid", "linear", "cosine"],
                                                             value="sigmoid"))

    return _widget_or_static(build, lambda: show(T // 4, "sigmoid"))
