"""dpcdvae.eval.relax: relaxation under pressure with CHGNet (batched) or any ASE calculator: the engine behind
``dpcdvae relax`` and the Table III study (:mod:`dpcdvae.eval.ground_state` computes the metrics).

Relaxation
----------
``relax_structures(structures, ids=None, pressure_gpa=0.0, calculator="chgnet", optimizer="FIRE", fmax=0.05,
max_steps=500, out_dir=None, batch=True, progress=True) -> list[RelaxResult]``

* ``structures``: pymatgen ``Structure`` / ASE ``Atoms`` objects (``None`` entries give a failed result), or a path
  (a CIF file, a folder of CIFs, an extxyz file; see :func:`read_structures`).
* Each :class:`RelaxResult` holds energies per atom (eV/atom), enthalpies per atom ``H = E + pV`` (eV/atom),
  volumes per atom (A^3/atom) before and after, the number of optimizer steps, ``converged``, wall time, the
  generated and relaxed ``Structure`` and the error message of a failed relaxation (a failure never stops the run).
* With ``out_dir`` each result is written as soon as it finishes: ``out_dir/<id>.json`` (everything, structures
  included) and ``out_dir/<id>.cif`` (the relaxed structure, P1), both written atomically. A later call with the
  same ``out_dir`` loads finished ids instead of relaxing them again (``resume=True``), so an interrupted run only
  does the rest. Results computed with other settings (pressure, calculator, optimizer, fmax, max_steps) are never
  mixed in silently: that raises ``ValueError``.
* **Batching** (``batch=True``, the default for CHGNet): up to ``batch_size`` structures relax in lock step. Each
  structure keeps its own ASE optimizer on its own ``FrechetCellFilter`` (so the algorithm is exactly ASE's FIRE /
  BFGS), but all energy/force/stress requests of one optimizer step are served by ONE batched CHGNet call
  (:class:`CHGNetBatchPredictor`: one graph batch, one forward pass and a single backward pass for forces and
  stresses together, where stock CHGNet does two backward passes with ``create_graph=True``). Finished structures
  leave the batch and waiting ones join it. ``batch=False`` with ``calculator="chgnet"`` uses the stock
  ``chgnet.model.dynamics.CHGNetCalculator`` with ``Optimizer.run`` one structure at a time (the reference path).
  The lock-step loop reproduces ``Optimizer.run`` step for step (same steps, same result; tested). Most of the
  CPU gain comes from the single-backward kernel, little from batching itself: on CPU CHGNet is compute-bound (a
  24-atom cell has thousands of bonds and angles), so batching mostly pays off on a GPU (measured:
  ``benchmarks/bench_relax.py``, BENCHMARKS.md). While relaxing, numpy/scipy BLAS is limited to one thread (the cell
  filter's 3x3 matrix functions are much slower with threaded BLAS on a loaded machine).
* ``calculator`` can be ``"chgnet"`` (default; model loaded once per process and reused), ``"emt"`` (ASE's toy EMT,
  for smoke tests only), an ASE ``Calculator`` instance (one structure at a time; e.g. ``ase.calculators.vasp.Vasp``),
  ``"package.module:attribute"`` (an importable calculator, calculator factory or batch predictor), or a *batch
  predictor*: a callable ``f(list[ase.Atoms]) -> list[dict]`` returning for each ``energy`` (eV, total),
  ``forces`` ([n, 3] eV/A) and ``stress`` (Voigt 6 or 3x3, eV/A^3, ASE sign convention); a failed item may be an
  ``Exception`` instance instead of a dict.

Modules
-------
* :mod:`.chgnet`: the CHGNet wrapper (``load_chgnet``, the per-process model cache, ``CHGNetBatchPredictor``);
* :mod:`.engine`: the relaxation engine (calculator resolution, the lock-step and one-by-one optimiser loops, the
  worker processes, ``relax_structures`` / ``relax_structure``);
* :mod:`.results`: the record of one relaxation (``RelaxResult``);
* :mod:`.io`: inputs and the resumable output folder (``read_structures``, ``load_results``, the per-id JSON + CIF
  written atomically, the settings check on resume, Structure <-> Atoms conversion).

The public names are re-exported here (``from dpcdvae.eval.relax import relax_structures`` as before).
"""
from .chgnet import CHGNetBatchPredictor, load_chgnet
from .engine import VOLUME_RATIO_LIMITS, relax_structure, relax_structures
from .io import load_results, read_structures
from .results import RelaxResult

__all__ = ["RelaxResult", "relax_structures", "relax_structure", "read_structures", "load_results", "load_chgnet",
           "CHGNetBatchPredictor"]
