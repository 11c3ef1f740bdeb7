"""Pictures of crystals and of the wrapped reverse diffusion (matplotlib; no ffmpeg, no browser needed), one module
per job; every figure is re-exported here (``from dpcdvae import viz; viz.plot_samples(...)``):

- :mod:`.structures`: element colours, the unit cell, 3D pictures of structures and of a sampling run's crystals;
- :mod:`.trajectories`: the wrapped reverse diffusion (Fig. 2), its animation, how far r_t leaves the cell;
- :mod:`.training`: training curves; :mod:`.tables`: a results table beside the paper's as bars;
  :mod:`.histograms`: overlaid histograms;
- :mod:`.teaching`: notebook 06's figures (schedules, prior mismatch, eps_theta, oracle and few-step studies);
- :mod:`.relaxation`: Fig. S2 and generated vs relaxed cells (Table III);
- :mod:`.latent`: the latent space (notebook 07).

Notebook figures return a matplotlib Figure made with pyplot (Jupyter's inline backend shows it) and never switch
the matplotlib backend; units are on every axis. matplotlib is imported inside the functions that draw.
"""
from .histograms import plot_histograms
from .latent import plot_latent_map, plot_latent_panels, plot_path_heads, plot_path_structures
from .relaxation import MIN_N_FOR_MODE, plot_delta_e_vs_paper, plot_relaxation_scatter
from .structures import draw_cell, element_color, plot_samples, plot_structures
from .tables import plot_paper_vs_ours
from .teaching import plot_eps_study, plot_oracle_study, plot_prior_mismatch, plot_schedules, plot_steps_study
from .training import plot_training_curves
from .trajectories import plot_outside_fraction, plot_wrapped_frames, trajectory_animation

__all__ = ["element_color", "draw_cell", "plot_structures", "plot_samples",
           "plot_wrapped_frames", "trajectory_animation", "plot_outside_fraction", "plot_training_curves",
           "plot_paper_vs_ours", "plot_histograms", "plot_schedules", "plot_prior_mismatch",
           "plot_eps_study", "plot_oracle_study", "plot_steps_study", "plot_delta_e_vs_paper",
           "plot_relaxation_scatter", "MIN_N_FOR_MODE",
           "plot_latent_map", "plot_latent_panels", "plot_path_structures", "plot_path_heads"]
