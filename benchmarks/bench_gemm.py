"""Benchmark: the dense-layer products of GemNet-T through torch's BLAS (MKL) and through oneDNN
(:mod:`dpcdvae.nets.gemm`), in GFLOP/s, for the shapes a published-architecture sampling step multiplies.

Shapes (rows x in -> out, Perov-5 batch of 64 = 320 atoms, 6400 edges): the edge layers ``6400 x 128 -> 128``, the
fused ``dense_m`` / up-projections ``6400 x 128 -> 256``, the triplet down-projection ``6400 x 128 -> 64``, the
bilinear layer ``6400 x 1024 -> 64``, the 548-wide atom layers ``320 x 548 -> 548``. For each: the forward product
(``F.linear`` vs oneDNN), and the two products of the backward pass, input gradient (``grad @ W``) and weight
gradient (``grad^T @ x``, which :mod:`dpcdvae.nets.gemm` leaves to torch's BLAS). Median of ``--repeats`` timings of
``--calls`` calls each, after a warm-up.

    python benchmarks/bench_gemm.py [--threads 2] [--repeats 5] [--calls 20]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import dpcdvae.utils.openmp  # noqa: E402  (first: an entry point's OpenMP default, before torch starts its threads)
dpcdvae.utils.openmp.configure_openmp()
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import machine_info, print_json  # noqa: E402

SHAPES = [(6400, 128, 128), (6400, 128, 256), (6400, 128, 64), (6400, 1024, 64), (320, 548, 548)]


def _gflops(fn, flops: float, repeats: int, calls: int) -> float:
    for _ in range(3):
        fn()
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        rates.append(flops * calls / (time.perf_counter() - t0) / 1e9)
    return statistics.median(rates)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--calls", type=int, default=20)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    from dpcdvae.nets.gemm import _onednn, onednn_available

    g = torch.Generator().manual_seed(0)
    cases = []
    for m, k, n in SHAPES:
        x, w = torch.randn(m, k, generator=g), torch.randn(n, k, generator=g)
        gy = torch.randn(m, n, generator=g)
        flops = 2.0 * m * k * n
        row = {"rows": m, "in": k, "out": n,
               "forward_torch": _gflops(lambda: F.linear(x, w), flops, a.repeats, a.calls),
               "grad_input_torch": _gflops(lambda: gy.mm(w), flops, a.repeats, a.calls),
               "grad_weight_torch": _gflops(lambda: gy.t().mm(x), flops, a.repeats, a.calls)}
        if onednn_available():
            row["forward_onednn"] = _gflops(lambda: _onednn(x, w, None), flops, a.repeats, a.calls)
            row["grad_input_onednn"] = _gflops(lambda: _onednn(gy, w.t(), None), flops, a.repeats, a.calls)
            row["forward_speedup"] = row["forward_onednn"] / row["forward_torch"]
        cases.append({k_: (round(v, 1) if isinstance(v, float) else v) for k_, v in row.items()})
        print(cases[-1], file=sys.stderr)
    out = {"bench": "gemm", "unit": "GFLOP/s", "cases": cases, "onednn_available": onednn_available(),
           **machine_info()}
    print_json(out)
    return out


if __name__ == "__main__":
    main()
