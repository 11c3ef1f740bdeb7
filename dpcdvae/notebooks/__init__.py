"""Notebook support: the helpers the notebooks in ``notebooks/`` call (``import dpcdvae.notebooks as nb``).

The notebooks hold narrative and calls into the package (here, :mod:`dpcdvae.viz` and the modules they call); the
teaching notebook 06 also shows its lesson's few lines of arithmetic in its cells. The helpers, one module per job,
are re-exported here (imported on first use):

- :mod:`.session`: the first cell's ``setup()``, ``headless()`` / ``live_frontend()``, the guards for missing
  optional pieces (``GUARD_MARK``, ``relax_unavailable``);
- :mod:`.choice`: the dataset and the model a notebook runs on (``resolve_dataset``, ``ensure_checkpoint``, ``load``);
- :mod:`.tables`: results as tables beside the paper's, saved beside the figures (``paper_vs_ours``, ``save_table``);
- :mod:`.studies`: the reconstruction, generation, ground-state, trajectory and teaching runs;
- :mod:`.widgets`: the sliders, nglview views and animations (a headless run draws their first frame).

Running the notebooks headlessly (papermill, ``dpcdvae notebooks`` / ``dpcdvae reproduce``) is
:mod:`dpcdvae.notebooks.runner`; checking their sources (one ``parameters`` cell, no outputs, ...) is
:mod:`dpcdvae.notebooks.check` (``python -m dpcdvae.notebooks.check [--fix]``).

Importing this package applies the process tuning of an entry point: how idle OpenMP threads wait
(:func:`dpcdvae.utils.openmp.configure_openmp`, before torch is imported; the helpers import it);
``setup()`` also tunes glibc's allocator (:func:`dpcdvae.utils.alloc.tune_allocator`).
"""
from __future__ import annotations

from ..utils.openmp import configure_openmp

configure_openmp()  # an entry point: before torch is first imported (the helpers below import it)

from ..utils.lazy import lazy_exports  # noqa: E402

_EXPORTS = {
    "GUARD_MARK": "session", "live_frontend": "session", "headless": "session", "HEADLESS_WIDGET_NOTE": "session",
    "setup": "session", "RELAX_INSTALL": "session", "relax_unavailable": "session",
    "DataChoice": "choice", "resolve_dataset": "choice", "ensure_checkpoint": "choice", "train_run": "choice",
    "load": "choice", "load_batch": "choice", "test_structures": "choice", "model_summary": "choice",
    "checkpoint_summary": "choice",
    "describe_samples": "tables", "write_samples": "tables", "save_fig": "tables", "save_table": "tables",
    "paper_vs_ours": "tables", "reconstruction_details": "tables", "table3_frame": "tables", "unique_rows": "tables",
    "delta_e_values": "tables", "paper_fig_s2": "tables", "dataset_overview": "tables", "config_table": "tables",
    "run_reconstruction": "studies", "run_generation": "studies", "load_generation": "studies",
    "eform_available_offline": "studies", "generation_study": "studies", "property_panels": "studies",
    "ground_state_study": "studies", "trajectory_run": "studies", "sampler_pair": "studies",
    "forward_trajectory": "studies", "eps_study": "studies", "steps_study": "studies",
    "show_animation": "widgets", "trajectory_slider": "widgets", "forward_slider": "widgets",
    "nglview_trajectory": "widgets", "nglview_structure": "widgets", "path_slider": "widgets",
    "draw_path_point": "widgets",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
