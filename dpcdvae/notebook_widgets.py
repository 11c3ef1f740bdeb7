"""Widgets of the latent-space explorer (notebook 07): a slider over the points of a decoded path.

Like the sliders of :mod:`dpcdvae.notebooks`, the widget is built only where a person's Jupyter front end will draw
it (:func:`dpcdvae.notebooks.headless`); a headless run (``dpcdvae notebooks``, plain papermill) draws its first
frame as a static picture instead. Imports nothing heavy at import time.
"""
from __future__ import annotations

from typing import Optional

__all__ = ["path_slider", "draw_path_point"]


def draw_path_point(dec, k: int, proj=None, enc: Optional[dict] = None, color_by: str = "main_element"):
    """One frame of :func:`path_slider`: point ``k`` of a decoded path (``dec``: :func:`dpcdvae.workflows.latent.decode_path`)
    as a 3D crystal with its N_a, formula, validity and predicted cell (A, deg); with ``proj`` (a PCA projection
    of ``enc["z"]``, path in ``proj.extra_xy``) and ``enc``, also the latent map with the point circled.
    Returns the figure."""
    import matplotlib.pyplot as plt

    from .viz.latent import plot_latent_map
    from .viz.structures import _draw_structure

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

    from .notebooks import GUARD_MARK, headless

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
