"""Workflows: the jobs the command line, the demo and the notebooks run, one implementation each, one module per job:

- :mod:`.reconstruct`: :func:`reconstruct_split`, Table I / S1: reconstruct a split with a model, write the crystals
  and the metrics;
- :mod:`.generate`: :func:`generate_to_folder`, Table II: generate crystals in batches and write them (CIFs, extxyz,
  JSON), resumable;
- :mod:`.relax`: :func:`run_relax` (relax a folder or file of structures, ``dpcdvae relax``, and compute the Table III
  metrics) and :func:`run_ground_state_study` (Table III for several checkpoints: generate, relax, tabulate, Fig. S2);
- :mod:`.rank`: :func:`rank_candidates` / :func:`rank_by_proxy`, ranking CSP candidates;
- :mod:`.csp`: :func:`csp_match`, the CSP benchmark (DiffCSP's protocol) on a test split, ``dpcdvae csp-match``;
- :mod:`.results`: what those jobs return, :class:`ReconstructionResult`, :class:`GenerationResult`,
  :class:`RelaxRunResult` and :class:`GroundStateStudyResult`;
- :mod:`.common`: what the jobs share (the sampler a model runs with, the dataset a checkpoint was trained on,
  :func:`encode_posterior`);
- :mod:`.sharding` (``--devices N``), :mod:`.demo` (``dpcdvae demo``), :mod:`.optimize` (property head on z and the
  shipped heads, ``dpcdvae pretrained fit-heads``; latent optimisation, SR5/10/15), :mod:`.latent` (the latent space
  of notebook 07).

The names of the first six are re-exported here (``from dpcdvae.workflows import reconstruct_split``), imported on
first use, so that a process that needs one job (a sharded sampling process, the latent explorer) does not import
the others. Layering: this package sits above the models, data, metrics, writers and pictures and below the command
line and the notebooks.
"""
from __future__ import annotations

from ..utils.lazy import lazy_exports

_EXPORTS = {
    "check_sampling_args": "common", "sampler_for": "common", "checkpoint_dataset": "common",
    "checkpoint_training_dataset": "common", "encode_posterior": "common",
    "LATENTS": "reconstruct", "reconstruct_split": "reconstruct", "matcher_count_line": "reconstruct",
    "generate_to_folder": "generate", "model_fingerprint": "generate",
    "ReconstructionResult": "results", "GenerationResult": "results", "RelaxRunResult": "results",
    "GroundStateStudyResult": "results",
    "run_relax": "relax", "run_ground_state_study": "relax", "relax_changes": "relax", "relax_headline": "relax",
    "summary_table": "relax", "ck_name": "relax",
    "rank_candidates": "rank", "rank_by_proxy": "rank",
    "csp_match": "csp",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
