"""Small helpers shared by the benchmark scripts: machine description, timing, the final JSON line."""
from __future__ import annotations

import json
import os
import platform
import statistics
import time
from typing import Callable

import dpcdvae.utils.openmp  # noqa: E402  (first: an entry point's OpenMP default, before torch starts its threads)
dpcdvae.utils.openmp.configure_openmp()
import torch

__all__ = ["machine_info", "time_fn", "print_json", "sync", "half_diagonal_pairs"]


def _gemm_backend() -> str | None:
    try:
        from dpcdvae.nets.gemm import backend
        return backend()
    except (ImportError, ValueError):
        return None


def machine_info(device: str | torch.device = "cpu") -> dict:
    """Where the numbers were taken: device name, torch version and threads, CPU count, python version."""
    device = torch.device(device)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = platform.processor() or platform.machine()
        try:  # the model name is more telling than 'x86_64'
            with open("/proc/cpuinfo") as fh:
                for line in fh:
                    if line.startswith("model name"):
                        name = line.split(":", 1)[1].strip()
                        break
        except OSError:
            pass
    return {
        "device": f"{device.type}: {name}",
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),  # AVX2 / AVX512: kernels differ
        "gemm_backend": _gemm_backend(),
        "openmp_wait": dpcdvae.utils.openmp.OPENMP_WAIT,  # how idle OpenMP threads wait (dpcdvae/utils/openmp.py)  # dpcdvae.nets.gemm: oneDNN or torch's BLAS for the dense layers on CPU
        "cpu_count": os.cpu_count(),
        "load_avg_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
    }


def sync(device: str | torch.device = "cpu") -> None:
    """Wait for queued CUDA work (no-op on CPU) so that wall-clock timings are honest."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def time_fn(fn: Callable[[], object], repeats: int = 5, warmup: int = 1,
            device: str | torch.device = "cpu") -> dict:
    """Median (and min/max) wall-clock seconds of ``fn()`` over ``repeats`` runs after ``warmup`` runs, and the
    median CPU seconds of this process (all its threads; less sensitive than wall time to other load on a shared
    machine, but it counts every thread: with N busy threads it is up to N x the wall time)."""
    for _ in range(warmup):
        fn()
    sync(device)
    times, cpu = [], []
    for _ in range(repeats):
        c0 = time.process_time()
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
            "cpu_median_s": statistics.median(cpu), "repeats": repeats}


def print_json(record: dict) -> None:
    """Print one JSON line (the benchmark's machine-readable result)."""
    print(json.dumps(record, sort_keys=False), flush=True)


def half_diagonal_pairs(frac, tol: float = 0.2) -> list[tuple[int, int]]:
    """Index pairs ``(i, j)``, i < j, of the atoms of ONE cell whose minimum-image fractional separation is
    (1/2, 1/2, 1/2) within ``tol`` on each axis: the A-B cation pair of an ABX3 perovskite cell. ``frac`` is an
    [n, 3] array or tensor of fractional coordinates; pairs come in (i, j) lexicographic order."""
    import numpy as np
    fc = np.asarray(frac, dtype=float)
    d = fc[:, None, :] - fc[None, :, :]
    d = np.abs(d - np.round(d))
    hit = (np.abs(d - 0.5) < tol).all(-1)
    return [(int(i), int(j)) for i, j in zip(*np.nonzero(np.triu(hit, 1)))]


def probe_parser(description: str, n_default: int):
    """The arguments every model probe takes: ``--checkpoint --dataset --split --n --raw-weights``."""
    import argparse

    p = argparse.ArgumentParser(description=description)
    p.add_argument("--checkpoint", default="pretrained:perov_5")
    p.add_argument("--dataset", default="perov_5")
    p.add_argument("--split", default="test")
    p.add_argument("--n", type=int, default=n_default, help="the first N crystals of the split")
    p.add_argument("--raw-weights", action="store_true")
    return p


def probe_model_and_split(a):
    """``(model, dataset)`` for parsed :func:`probe_parser` arguments: the model (EMA weights unless
    ``--raw-weights``) and the first ``a.n`` crystals of the split, with the graph the model's encoder needs."""
    from dpcdvae.data import load_split
    from dpcdvae.models import load_model
    from dpcdvae.data.resolve import resolve_root

    model = load_model(a.checkpoint, ema=not a.raw_weights)
    ds = load_split(a.dataset, a.split, root=resolve_root(a.dataset, None), max_atoms=model.cfg.max_atoms,
                    graph=model.data_graph, limit=a.n, progress=False)
    return model, ds
