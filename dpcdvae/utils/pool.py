"""Process pools: the one place that decides how the package's worker processes start (:func:`process_pool`,
:func:`default_start_method`).

Every pool of the package comes from :func:`process_pool`: the CSV preprocessing and the CIF scan
(:mod:`dpcdvae.data.csvio`), the property model's graph building (:mod:`dpcdvae.eval.property`), the fingerprint /
StructureMatcher map (:func:`dpcdvae.eval.fingerprints.parallel_map`) and the relaxations
(:mod:`dpcdvae.eval.relax`). The start method:

* ``fork`` on Linux (the default there): a child starts as a copy of this process, with its imports, so nothing
  re-imports ``__main__``: pools work from notebooks, from ``python - <<EOF`` and from scripts without an
  ``if __name__ == "__main__":`` guard, and workers start in milliseconds. The work given to such pools is pure
  Python / numpy (pymatgen, CrystalNN, the StructureMatcher); an initializer can pin torch to one thread;
* ``spawn`` everywhere else (macOS, where forking a process that loaded the system frameworks is unsafe; Windows,
  which has no fork): scripts then need the ``__main__`` guard;
* ``spawn`` where the workers themselves run torch models with their own threads (the CHGNet relaxations of
  :mod:`dpcdvae.eval.relax`): a forked child inherits the parent's torch thread pools and locks in whatever state
  they were in and can hang; such a caller passes ``start_method="spawn"``. (The ``--devices N`` sharding,
  :mod:`dpcdvae.workflows.sharding`, starts its processes with ``torch.multiprocessing`` and ``spawn`` for the same
  reason; it is a process group, not a pool.)

Imports nothing from the package (this is the foundation layer).
"""
from __future__ import annotations

import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Optional

__all__ = ["process_pool", "default_start_method", "START_METHODS"]

#: the start methods :func:`process_pool` accepts
START_METHODS = ("fork", "spawn", "forkserver")


def default_start_method() -> str:
    """``"fork"`` on Linux where the platform offers it, else ``"spawn"`` (see the module docstring for why)."""
    if sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods():
        return "fork"
    return "spawn"


def process_pool(workers: int, initializer: Optional[Callable[..., None]] = None, initargs: tuple = (),
                 start_method: Optional[str] = None) -> ProcessPoolExecutor:
    """A ``concurrent.futures.ProcessPoolExecutor`` of ``workers`` processes (use it as a context manager).

    ``initializer(*initargs)`` runs once in each worker before its first task (e.g. to pin torch to one thread); it
    must be a picklable module-level function. ``start_method``: ``None`` for :func:`default_start_method` (fork on
    Linux, spawn elsewhere), or ``"spawn"`` for workers that run threaded torch models (relaxations). Functions
    submitted to the pool must be picklable (module-level) under ``spawn``."""
    method = start_method or default_start_method()
    if method not in START_METHODS:
        raise ValueError(f"start_method must be one of {START_METHODS} or None, got {start_method!r}")
    workers = int(workers)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context(method),
                               initializer=initializer, initargs=initargs)
