"""dpcdvae: DP-CDVAE crystal structure generation (VAE + DDPM on fractional coordinates).

Paper: Pakornchote et al., "Diffusion probabilistic models enhance variational autoencoder for crystal structure
generative modeling" (2023). This package is an independent implementation.
"""
import os as _os
import sys as _sys


def _openmp_default(env=None, torch_loaded=None, load=None, cpus=None) -> str:
    """How torch's idle OpenMP threads wait between operations (libgomp reads this when torch is first imported).

    Measured on the 2-core dev CPU (AMD EPYC Zen 5, 2 torch threads, 2026-12-07; BENCHMARKS.md): sleeping at once
    (``OMP_WAIT_POLICY=PASSIVE``, this package's default before that date) made a sampling step of the published
    architecture 1.3x and the periodic graph builder 1.5x slower than spinning a little first, because every small
    operation then waits for the threads to wake up. libgomp's own default (a long spin) is as fast on free cores but,
    with two such processes on the two cores, 2x (sampling) to 3x (graph) slower than ``PASSIVE``. A short spin,
    ``GOMP_SPINCOUNT=3000``, keeps the speed on free cores and loses less under contention (1.5x / 2.4x vs
    ``PASSIVE``), so it is the default; when the machine is already fully loaded at import (1-minute load average
    >= the number of CPUs) the default is ``PASSIVE``. Nothing is changed when either variable is set (set
    ``OMP_WAIT_POLICY=PASSIVE`` on a machine shared with other jobs) or when torch was imported first.

    The arguments (for tests) default to this process's environment, whether torch is loaded, the 1-minute load
    average and the CPU count. Returns what was done, in words.
    """
    env = _os.environ if env is None else env
    if "OMP_WAIT_POLICY" in env or "GOMP_SPINCOUNT" in env:
        return "left to the environment (OMP_WAIT_POLICY / GOMP_SPINCOUNT set)"
    if torch_loaded if torch_loaded is not None else "torch" in _sys.modules:
        return "unchanged (torch was imported before dpcdvae)"
    if load is None:
        try:
            load = _os.getloadavg()[0]
        except (AttributeError, OSError):  # no load average (Windows)
            load = 0.0
    busy = load >= (cpus if cpus is not None else (_os.cpu_count() or 1))
    if busy:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
        return "OMP_WAIT_POLICY=PASSIVE (machine fully loaded at import)"
    env["GOMP_SPINCOUNT"] = "3000"
    return "GOMP_SPINCOUNT=3000"


#: What :func:`_openmp_default` did in this process (benchmarks record it).
OPENMP_WAIT = _openmp_default()

from ._version import __version__  # noqa: E402,F401


def load_pretrained(name: str = "perov_5", map_location: str = "cpu"):
    """Load a model shipped with the package (``"perov_5"``, ``"carbon_24"``, ``"carbon_24_cdvae"``); see
    :mod:`dpcdvae.models.pretrained` and ``dpcdvae pretrained list``."""
    # local: the root package is the public facade (importing any submodule imports it first, so it stays light)
    from .models.pretrained import load_pretrained as _load

    return _load(name, map_location=map_location)
