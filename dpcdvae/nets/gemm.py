"""Matrix products of the dense layers on CPU: oneDNN where the default BLAS leaves the CPU's vector units idle.

On CPU, ``torch.nn.functional.linear`` in float32 calls MKL's ``sgemm``. MKL picks its code path by CPU vendor, and on
AMD processors with AVX-512 (Zen 4, Zen 5) it runs its AVX2 kernels, while oneDNN's inner product
(``torch.ops.mkldnn._linear_pointwise``, shipped inside torch) uses the wider units (rates per shape and CPU:
``benchmarks/bench_gemm.py``, BENCHMARKS.md). The two compute the same sums in a different order (differences of a
few 1e-7, relative).

:func:`linear` is a drop-in for ``F.linear`` that takes the oneDNN path for float32 CPU tensors when the backend is
``onednn``, and the stock path otherwise (GPU, float64, other CPUs). Training goes through :class:`_OneDNNLinear`,
an autograd function: the input gradient is another oneDNN product; the weight gradient (a reduction over all rows)
stays with MKL (oneDNN's own weight-gradient primitive was not reliably faster; BENCHMARKS.md).

Backend choice (``DPCDVAE_GEMM`` environment variable, or :func:`set_backend`):

* ``auto`` (default): ``onednn`` when torch reports AVX-512 for this CPU and has oneDNN, else ``torch``. On an
  AVX2-only CPU (AMD Zen 3) oneDNN was not faster in an earlier measurement (BENCHMARKS.md), so it is not used there.
* ``onednn``: whenever available (a tensor it cannot take, e.g. float64, still goes to ``F.linear``).
* ``torch``: always ``F.linear`` (exactly the behaviour before this module; use it to compare against code that
  runs stock torch, or to reproduce numbers computed with it bit for bit).

A row's result does not depend on the other rows of a call of two or more rows (tested; a one-row call takes
oneDNN's matrix-vector kernel and may differ in the last bits; MKL's ``sgemm`` differs for calls of under 16 rows,
measured), so batch composition does not change results.
"""
from __future__ import annotations

import os
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["linear", "Linear", "set_backend", "backend", "onednn_available", "use_fast_linears", "BACKENDS"]

BACKENDS = ("auto", "onednn", "torch")
_ENV = "DPCDVAE_GEMM"
_requested: Optional[str] = None  # set_backend's choice; None = read the environment
_resolved: Optional[bool] = None  # cached "use oneDNN" decision


def onednn_available() -> bool:
    """Whether this torch build has oneDNN's linear operator (CPU builds from pytorch.org and PyPI do)."""
    try:
        return bool(torch.backends.mkldnn.is_available()) and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    except (AttributeError, RuntimeError):
        return False


def _cpu_has_avx512() -> bool:
    try:
        return str(torch.backends.cpu.get_cpu_capability()).upper().startswith("AVX512")
    except (AttributeError, RuntimeError):
        return False


def set_backend(name: Optional[str]) -> str:
    """Choose the backend (``'auto'``, ``'onednn'``, ``'torch'``; ``None`` = the ``DPCDVAE_GEMM`` environment
    variable again). Returns the previous request so that callers can restore it. Raises ``ValueError`` for other
    names."""
    global _requested, _resolved
    if name is not None and name not in BACKENDS:
        raise ValueError(f"GEMM backend must be one of {', '.join(BACKENDS)}; got {name!r}")
    previous = _requested if _requested is not None else os.environ.get(_ENV, "auto")
    _requested, _resolved = name, None
    return previous


def _use_onednn() -> bool:
    global _resolved
    if _resolved is None:
        name = _requested if _requested is not None else os.environ.get(_ENV, "auto").strip().lower()
        if name not in BACKENDS:
            raise ValueError(f"environment variable {_ENV}={name!r}: expected one of {', '.join(BACKENDS)}")
        if name == "torch":
            _resolved = False
        elif name == "onednn":
            _resolved = onednn_available()
        else:
            _resolved = onednn_available() and _cpu_has_avx512()
    return _resolved


def backend() -> str:
    """The backend in effect for float32 CPU tensors: ``'onednn'`` or ``'torch'``."""
    return "onednn" if _use_onednn() else "torch"


def _takes(x: torch.Tensor, weight: torch.Tensor) -> bool:
    return (x.device.type == "cpu" and x.dtype == torch.float32 and weight.dtype == torch.float32
            and weight.dim() == 2 and x.dim() >= 1 and x.shape[-1] == weight.shape[1] and _use_onednn())


def _onednn(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


class _OneDNNLinear(torch.autograd.Function):
    """``x @ W^T + b`` with oneDNN forward and input gradient; weight and bias gradients with torch's BLAS."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _onednn(x, weight, bias)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = _onednn(grad, weight.t(), None)  # grad @ W
        if ctx.needs_input_grad[1] or (ctx.has_bias and ctx.needs_input_grad[2]):
            g2 = grad.reshape(-1, grad.shape[-1])
            if ctx.needs_input_grad[1]:
                grad_w = g2.t().mm(x.reshape(-1, x.shape[-1]))
            if ctx.has_bias and ctx.needs_input_grad[2]:
                grad_b = g2.sum(0)
        return grad_x, grad_w, grad_b


def linear(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` (``x [..., in]``, ``weight [out, in]``), through oneDNN where :func:`backend`
    says so and the tensors are float32 on the CPU; differentiable either way. (Fusing the following SiLU into
    oneDNN's product, its "swish" post-op, was measured and gave no gain: not done.)"""
    if not _takes(x, weight):
        return F.linear(x, weight, bias)
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad
                                    or (bias is not None and bias.requires_grad)):
        return _OneDNNLinear.apply(x, weight, bias)
    return _onednn(x, weight, bias)


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters, initialisation and state-dict keys) whose product goes through :func:`linear`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)


def use_fast_linears(module: nn.Module) -> nn.Module:
    """Make every plain ``nn.Linear`` inside ``module`` a :class:`Linear` (in place; parameters untouched) and
    return ``module``. For networks assembled from other libraries' blocks (PyG's DimeNet++)."""
    for mod in module.modules():
        if type(mod) is nn.Linear:
            mod.__class__ = Linear
    return module
