"""How torch's idle OpenMP threads wait between operations: :func:`configure_openmp`, applied by the entry points
(the ``dpcdvae`` command line, the notebooks' helpers, the benchmarks) before torch is first imported. Importing
``dpcdvae`` changes no environment variable."""
from __future__ import annotations

import os as _os
import sys as _sys

__all__ = ["configure_openmp", "OPENMP_WAIT"]

#: What :func:`configure_openmp` did in this process (benchmarks record it); ``None`` until it was called.
OPENMP_WAIT = None


def configure_openmp(env=None, torch_loaded=None, load=None, cpus=None) -> str:
    """How torch's idle OpenMP threads wait between operations (libgomp reads this when torch is first imported).

    Sleeping at once (``OMP_WAIT_POLICY=PASSIVE``) makes every small operation wait for the threads to wake up;
    libgomp's own default (a long spin) is as fast on free cores but slow when two such processes share the cores. A
    short spin, ``GOMP_SPINCOUNT=3000``, keeps the speed on free cores and loses less under contention, so it is the
    default (measured on the 2-core dev CPU: the OpenMP section of docs/lab-notes/benchmarks-log.md); when the machine is already fully loaded when this is called (1-minute load
    average >= the number of CPUs) the default is ``PASSIVE``. Nothing is changed when either variable is set (set
    ``OMP_WAIT_POLICY=PASSIVE`` on a machine shared with other jobs) or when torch was imported first.

    The entry points call it before torch is imported: the ``dpcdvae`` command line (:mod:`dpcdvae.cli`), the
    notebooks' helpers (:mod:`dpcdvae.notebooks`) and the benchmarks; a script of your own calls it first thing.

    The arguments (for tests) default to this process's environment, whether torch is loaded, the 1-minute load
    average and the CPU count. Returns what was done, in words. Called with the process's own environment it is
    decided once per process, like :func:`dpcdvae.utils.alloc.tune_allocator`: the first call records what it did
    in :data:`OPENMP_WAIT` and later calls (a second entry point in the same process) return that.
    """
    global OPENMP_WAIT
    own = env is None
    if own and OPENMP_WAIT is not None:
        return OPENMP_WAIT
    env = _os.environ if env is None else env
    if "OMP_WAIT_POLICY" in env or "GOMP_SPINCOUNT" in env:
        said = "left to the environment (OMP_WAIT_POLICY / GOMP_SPINCOUNT set)"
    elif torch_loaded if torch_loaded is not None else "torch" in _sys.modules:
        said = "unchanged (torch was imported before dpcdvae)"
    else:
        if load is None:
            try:
                load = _os.getloadavg()[0]
            except (AttributeError, OSError):  # no load average (Windows)
                load = 0.0
        busy = load >= (cpus if cpus is not None else (_os.cpu_count() or 1))
        if busy:
            env["OMP_WAIT_POLICY"] = "PASSIVE"
            said = "OMP_WAIT_POLICY=PASSIVE (machine fully loaded at import)"
        else:
            env["GOMP_SPINCOUNT"] = "3000"
            said = "GOMP_SPINCOUNT=3000"
    if own:
        OPENMP_WAIT = said
    return said
