"""Tests of dpcdvae.nets.gemm: the oneDNN path of the dense layers agrees with torch's, in values and gradients,
the backend switch does what it says, and the GemNet-T denoiser gives the same outputs through either backend."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dpcdvae.nets import gemm

needs_onednn = pytest.mark.skipif(not gemm.onednn_available(),
                                  reason="this torch build has no oneDNN linear operator; only the stock path runs")


@pytest.fixture
def backend():
    """Set a backend for one test; afterwards the previous request is restored and the cached choice dropped."""
    saved = gemm._requested

    def use(name):
        gemm.set_backend(name)
        return gemm.backend()

    yield use
    gemm.set_backend(saved)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach(), b.detach()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30)) if b.numel() else 0.0


@needs_onednn
@pytest.mark.parametrize("shape", [(0, 32), (1, 32), (7, 32), (3, 5, 32), (32,), (257, 32)])
@pytest.mark.parametrize("bias", [True, False])
def test_onednn_linear_matches_torch_values_and_gradients(backend, shape, bias):
    assert backend("onednn") == "onednn"
    g = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, generator=g, requires_grad=True)
    w = torch.randn(24, 32, generator=g, requires_grad=True)
    b = torch.randn(24, generator=g, requires_grad=True) if bias else None
    y = gemm.linear(x, w, b)
    assert y.grad_fn is not None and "OneDNN" in type(y.grad_fn).__name__  # the path under test was taken
    gy = torch.randn(y.shape, generator=g)
    grads = torch.autograd.grad(y, [x, w] + ([b] if bias else []), gy)
    y_ref = F.linear(x, w, b)
    grads_ref = torch.autograd.grad(y_ref, [x, w] + ([b] if bias else []), gy)
    assert y.shape == y_ref.shape
    assert _rel(y, y_ref) < 1e-5
    for a, r in zip(grads, grads_ref):
        assert a.shape == r.shape and _rel(a, r) < 1e-5


@needs_onednn
def test_onednn_linear_takes_strided_inputs_and_partial_gradients(backend):
    backend("onednn")
    g = torch.Generator().manual_seed(1)
    x = torch.randn(40, 64, generator=g)[:, ::2]  # non-contiguous [40, 32]
    w = torch.randn(16, 32, generator=g, requires_grad=True)
    with torch.no_grad():
        assert _rel(gemm.linear(x, w), F.linear(x, w)) < 1e-5
    (gw,) = torch.autograd.grad(gemm.linear(x, w).square().sum(), [w])  # x needs no gradient
    (gw_ref,) = torch.autograd.grad(F.linear(x, w).square().sum(), [w])
    assert _rel(gw, gw_ref) < 1e-5


@needs_onednn
def test_rows_are_independent_of_the_batch(backend):
    """The module docstring's promise: a row's result does not depend on the other rows of a call of >= 2 rows."""
    backend("onednn")
    g = torch.Generator().manual_seed(2)
    x, w, b = torch.randn(6400, 128, generator=g), torch.randn(128, 128, generator=g), torch.randn(128, generator=g)
    with torch.no_grad():
        full = gemm.linear(x, w, b)
        for lo, hi in [(0, 2), (0, 7), (0, 100), (3000, 3333), (6398, 6400)]:
            assert torch.equal(gemm.linear(x[lo:hi], w, b), full[lo:hi])
        assert torch.equal(gemm.linear(x, w, b), full)  # and deterministic


def test_torch_backend_is_exactly_stock(backend):
    assert backend("torch") == "torch"
    g = torch.Generator().manual_seed(3)
    x, w, b = torch.randn(50, 16, generator=g), torch.randn(8, 16, generator=g), torch.randn(8, generator=g)
    assert torch.equal(gemm.linear(x, w, b), F.linear(x, w, b))


def test_float64_and_other_dtypes_take_the_stock_path(backend):
    backend("onednn")
    g = torch.Generator().manual_seed(4)
    x, w = torch.randn(50, 16, generator=g, dtype=torch.float64), torch.randn(8, 16, generator=g, dtype=torch.float64)
    assert torch.equal(gemm.linear(x, w), F.linear(x, w))
    x = x.requires_grad_()
    assert "OneDNN" not in type(gemm.linear(x, w).grad_fn).__name__


def test_backend_names_are_checked(backend, monkeypatch):
    with pytest.raises(ValueError, match="one of auto, onednn, torch"):
        gemm.set_backend("mkl")
    monkeypatch.setenv("DPCDVAE_GEMM", "fastest")
    gemm.set_backend(None)  # back to the environment variable
    with pytest.raises(ValueError, match="DPCDVAE_GEMM='fastest'"):
        gemm.backend()
    monkeypatch.setenv("DPCDVAE_GEMM", "torch")
    gemm.set_backend(None)
    assert gemm.backend() == "torch"


def test_auto_uses_onednn_only_on_avx512(backend, monkeypatch):
    monkeypatch.setattr(gemm, "_cpu_has_avx512", lambda: False)
    assert backend("auto") == "torch"
    monkeypatch.setattr(gemm, "_cpu_has_avx512", lambda: True)
    assert backend("auto") == ("onednn" if gemm.onednn_available() else "torch")


def test_linear_module_is_a_drop_in_for_nn_linear():
    torch.manual_seed(5)
    ours = gemm.Linear(12, 7)
    torch.manual_seed(5)
    stock = nn.Linear(12, 7)
    assert ours.state_dict().keys() == stock.state_dict().keys()
    for k in stock.state_dict():
        assert torch.equal(ours.state_dict()[k], stock.state_dict()[k])  # same initialisation from the same seed
    x = torch.randn(9, 12)
    assert _rel(ours(x), stock(x)) < 1e-5


def test_use_fast_linears_converts_plain_linears_only():
    class Sub(nn.Linear):
        pass

    net = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), Sub(5, 3), nn.Sequential(nn.Linear(3, 2)))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    assert gemm.use_fast_linears(net) is net
    assert type(net[0]) is gemm.Linear and type(net[3][0]) is gemm.Linear
    assert type(net[2]) is Sub  # subclasses keep their own forward
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


@needs_onednn
@pytest.mark.parametrize("project_input", [True, False])
def test_gemnet_outputs_and_gradients_agree_across_backends(backend, project_input):
    """The denoiser in float32 through oneDNN vs through torch's BLAS: outputs and parameter gradients to 1e-5
    (relative to each tensor's largest entry), with and without activation checkpointing."""
    from test_gemnet import random_crystals, tiny_model

    model = tiny_model(dtype=torch.float32, project_input=project_input)
    inputs = random_crystals([5, 3, 8], dtype=torch.float32)

    def run(name, checkpoint=False):
        backend(name)
        model.checkpoint_blocks = checkpoint
        model.zero_grad()
        model.train()
        eps, logits = model(**inputs)
        (eps.square().sum() + logits.logsumexp(-1).sum()).backward()
        return eps.detach(), logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters()
                                               if p.grad is not None}

    eps0, log0, g0 = run("torch")
    for ck in (False, True):
        eps1, log1, g1 = run("onednn", ck)
        assert _rel(eps1, eps0) < 1e-5 and _rel(log1, log0) < 1e-5
        assert g1.keys() == g0.keys() and len(g0) > 20
        worst = max(_rel(g1[n], g0[n]) for n in g0)
        assert worst < 1e-4, worst
