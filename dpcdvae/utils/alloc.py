"""Keep glibc's allocator from handing memory back to the OS between network calls (CPU speed, Linux only).

A reverse-diffusion step allocates and frees the same few hundred tensors (megabytes each) a thousand times. With
glibc's defaults, a freed block above the mmap threshold (dynamic, 128 KiB to 32 MiB) is unmapped, and the top of
the heap is trimmed once more than 128 KiB is free; the next step maps the memory again and pays a page fault for
every 4 KiB page it touches: thousands of minor page faults per sampling step with the defaults, next to none with
the thresholds raised (``tests/utils/test_alloc.py`` counts them; the time saved per step depends on the CPU: measure it
with ``benchmarks/bench_sampling.py``).

:func:`tune_allocator` raises both thresholds with ``mallopt`` (2 GiB), once per process. The entry points call it,
not the library code: the ``dpcdvae`` command line (:func:`dpcdvae.cli.main`), :func:`dpcdvae.train.train`, the
notebooks' ``setup()``, the relaxation (:func:`dpcdvae.eval.relax.relax_structures`) and the processes of a sharded
run; a script of your own that samples calls it once. The cost: memory freed by the process is kept for reuse
instead of returned to the OS, so the resident size stays at its peak until the process ends (the peak itself is
unchanged). Turn it off with the environment variable ``DPCDVAE_TUNE_MALLOC=0``. Where the C library is not glibc (macOS, Windows,
musl) it does nothing. It has no effect on any number the model computes.

The same effect from outside the process: ``MALLOC_MMAP_THRESHOLD_=2147483647 MALLOC_TRIM_THRESHOLD_=2147483647``.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

__all__ = ["tune_allocator", "allocator_state"]

_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
_M_MMAP_THRESHOLD = -3
_VALUE = 2 ** 31 - 1  # mallopt takes a C int; larger requests still get their own mapping

_state: dict = {"applied": False, "reason": "not called yet"}


def _glibc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        version = libc.gnu_get_libc_version  # only glibc has it
    except (OSError, AttributeError):
        return None
    version.restype = ctypes.c_char_p
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.mallopt.restype = ctypes.c_int
    return libc


def tune_allocator() -> dict:
    """Raise glibc's mmap and trim thresholds to 2 GiB for this process (see the module docstring); idempotent:
    the first call decides (reading ``DPCDVAE_TUNE_MALLOC`` and the C library), later calls return that decision.

    Returns ``{"applied": bool, "reason": str}``: applied now or earlier, or why not (the environment variable
    ``DPCDVAE_TUNE_MALLOC=0``, or a C library that is not glibc).
    """
    if _state["reason"] != "not called yet":  # decided once per process: later calls (another entry point) are free
        return dict(_state)
    if os.environ.get("DPCDVAE_TUNE_MALLOC", "1").strip().lower() in ("0", "false", "no", "off"):
        _state.update(applied=False, reason="disabled by DPCDVAE_TUNE_MALLOC")
        return dict(_state)
    libc = _glibc()
    if libc is None:
        _state.update(applied=False, reason="not glibc: nothing to tune")
        return dict(_state)
    ok = libc.mallopt(_M_MMAP_THRESHOLD, _VALUE) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, _VALUE) == 1
    _state.update(applied=ok, reason=("mmap and trim thresholds set to 2 GiB" if ok else "mallopt refused"))
    return dict(_state)


def allocator_state() -> dict:
    """What :func:`tune_allocator` did in this process (for benchmark records)."""
    return dict(_state)
