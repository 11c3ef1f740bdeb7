"""Tests for dpcdvae.nets.embeddings: Fourier features (paper S3) and the time embedding."""
import math

import pytest
import torch
import torch.nn.functional as F

from dpcdvae.nets.embeddings import FourierFeatures, TimeEmbedding, sinusoidal_embedding


def test_fourier_shape_and_ordering():
    ff = FourierFeatures()
    r = torch.rand(7, 3, dtype=torch.float64)
    out = ff(r)
    assert out.shape == (7, 36) and ff.out_dim == 36 and out.dtype == torch.float64
    K, D = 6, 3
    for k in range(K):
        for d in range(D):
            w = 2 ** (3 + k) * math.pi
            assert torch.allclose(out[:, k * D + d], torch.sin(w * r[:, d]))
            assert torch.allclose(out[:, K * D + k * D + d], torch.cos(w * r[:, d]))
    assert FourierFeatures(0, 0)(torch.rand(2, 3)).shape == (2, 6)


def test_fourier_code_convention_is_paper_shifted_by_one():
    r = torch.rand(5, 3, dtype=torch.float64)
    assert torch.allclose(FourierFeatures(3, 8, "code")(r), FourierFeatures(4, 9, "paper")(r))


@pytest.mark.parametrize("convention", ["paper", "code"])
def test_fourier_periodic(convention):
    ff = FourierFeatures(3, 8, convention)
    g = torch.Generator().manual_seed(0)
    r = torch.rand(50, 3, generator=g, dtype=torch.float64)
    shift = torch.randint(-3, 4, (50, 3), generator=g).to(torch.float64)
    assert torch.allclose(ff(r), ff(r + 1), atol=1e-9)
    assert torch.allclose(ff(r), ff(r + shift), atol=1e-9)
    # float32: periodic up to rounding (r + 1 rounds by <= 6e-8, and w r ~ 1600 rad has an ulp of 1.2e-4)
    r32 = r.float()
    assert torch.allclose(ff(r32), ff(r32 + 1), atol=1e-3)


def test_fourier_paper_not_periodic_for_n0():
    r = torch.rand(5, 3, dtype=torch.float64) * 0.9 + 0.05
    ff = FourierFeatures(0, 2, "paper")
    assert not torch.allclose(ff(r), ff(r + 1))


def test_time_embedding_shapes_and_batch_of_one():
    torch.manual_seed(0)
    te = TimeEmbedding()
    assert te(torch.tensor([17])).shape == (1, 128)  # the published code crashed on a batch of one
    assert te(17).shape == (1, 128)
    assert te(torch.tensor(17)).shape == (1, 128)
    assert te(torch.tensor([[1], [2], [3]])).shape == (3, 128)
    t = torch.randint(1, 1001, (9,))
    assert torch.allclose(te(t), te(t.float()))
    assert torch.allclose(te(t)[4], te(t[4:5])[0], atol=1e-6)
    te(t).sum().backward()
    assert te.mlp[0].weight.grad is not None
    assert sum(p.numel() for p in te.parameters()) == 128 * 512 + 512 + 512 * 128 + 128
    with pytest.raises(ValueError):
        TimeEmbedding(mode="float")


def test_time_embedding_resolves_consecutive_steps():
    """Integer mode: cos distance between the sinusoids of t and t+1 is ~0.03 for every t (it depends only on
    the difference); the code mode (t/T) gives ~3e-8, practically indistinguishable."""
    t = torch.arange(1, 1000)
    for mode, lo, hi in (("integer", 1e-2, 1.0), ("code", 0.0, 1e-5)):
        te = TimeEmbedding(mode=mode).double()
        d = 1 - F.cosine_similarity(te.sinusoid(t), te.sinusoid(t + 1), dim=-1)
        assert lo < d.min().item() and d.max().item() < hi, (mode, d.min().item(), d.max().item())
    # after the (randomly initialised) MLP the integer embedding still separates neighbours far better
    torch.manual_seed(1)
    te_i, te_c = TimeEmbedding(mode="integer").double(), TimeEmbedding(mode="code").double()
    te_c.load_state_dict(te_i.state_dict())
    rel = lambda te: ((te(t) - te(t + 1)).norm(dim=-1) / te(t).norm(dim=-1)).min().item()
    assert rel(te_i) > 100 * rel(te_c)


def test_sinusoidal_embedding_values():
    s = torch.tensor([0.0, 1.0], dtype=torch.float64)
    e = sinusoidal_embedding(s, 8)
    w = torch.tensor([1e4 ** (-k / 3) for k in range(4)], dtype=torch.float64)
    assert torch.allclose(e[1], torch.cat([torch.sin(w), torch.cos(w)]))
    assert torch.allclose(e[0], torch.cat([torch.zeros(4), torch.ones(4)]).double())
    with pytest.raises(ValueError):
        sinusoidal_embedding(s, 7)
