"""Initial atom types Z_T from the composition head (what the reverse process starts from), and the cosine
learning-rate schedule of training."""
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dpcdvae.models import INITIAL_TYPES, initial_type_counts
from dpcdvae.train import cosine_lr

E = 100


def _peaked(counts: dict, n: int, leak: float, seed: int = 0) -> torch.Tensor:
    """Probabilities of an exact composition (``counts`` by atomic-number index), with ``leak`` of the mass spread
    at random over all 100 elements (a softmax always leaks some)."""
    g = torch.Generator().manual_seed(seed)
    p = torch.zeros(E, dtype=torch.float64)
    for e, c in counts.items():
        p[e] = c / n
    noise = torch.rand(E, generator=g, dtype=torch.float64)
    return (1 - leak) * p + leak * noise / noise.sum()


@pytest.mark.parametrize("method", INITIAL_TYPES)
@pytest.mark.parametrize("leak", [0.01, 0.03, 0.05, 0.1])
@pytest.mark.parametrize("comp", [{21: 1, 7: 1, 8: 3}, {37: 1, 21: 1, 7: 2, 8: 1}, {5: 3, 10: 1, 30: 1},
                                  {5: 1, 6: 1, 7: 1, 8: 1, 9: 1}, {11: 4}])
def test_peaked_composition_with_leakage_is_exact(method, leak, comp):
    """A confident head (1-10 % of the mass leaked over all elements) starts from exactly its composition: the
    floor-based scheme this replaces got a 5-atom ABX3 wrong most of the time."""
    n = sum(comp.values())
    for seed in range(5):
        p = _peaked(comp, n, leak, seed)
        counts = initial_type_counts(p, n, method=method, generator=torch.Generator().manual_seed(seed))
        expect = torch.zeros(E, dtype=torch.long)
        for e, c in comp.items():
            expect[e] = c
        assert torch.equal(counts, expect), (method, leak, comp, seed)


@pytest.mark.parametrize("method", INITIAL_TYPES)
@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 30), seed=st.integers(0, 10_000), k=st.integers(1, 8))
def test_counts_sum_to_n_and_are_non_negative(method, n, seed, k):
    g = torch.Generator().manual_seed(seed)
    p = torch.zeros(E, dtype=torch.float64)
    idx = torch.randperm(E, generator=g)[:k]
    p[idx] = torch.rand(k, generator=g, dtype=torch.float64) + 1e-3
    p = p / p.sum()
    counts = initial_type_counts(p, n, method=method, generator=g)
    assert counts.dtype == torch.long and counts.shape == (E,)
    assert int(counts.sum()) == n
    assert bool((counts >= 0).all())
    assert bool((counts[p == 0] == 0).all()), "an element with probability 0 was drawn"


@pytest.mark.parametrize("method", INITIAL_TYPES)
def test_one_atom(method):
    p = _peaked({25: 1}, 1, 0.2)
    counts = initial_type_counts(p, 1, method=method, generator=torch.Generator().manual_seed(0))
    assert int(counts.sum()) == 1 and int(counts[25]) == 1
    # a flat head still yields exactly one atom
    flat = torch.full((E,), 1.0 / E)
    assert int(initial_type_counts(flat, 1, method=method).sum()) == 1


@pytest.mark.parametrize("method", INITIAL_TYPES)
@pytest.mark.parametrize("n", [1, 6, 24])
def test_one_element(method, n):
    p = torch.zeros(E)
    p[5] = 1.0  # carbon
    counts = initial_type_counts(p, n, method=method)
    assert int(counts[5]) == n and int(counts.sum()) == n


def test_largest_remainder_is_hamilton():
    p = torch.zeros(E, dtype=torch.float64)
    p[0], p[1], p[2] = 0.45, 0.35, 0.20  # x 4 atoms = 1.8, 1.4, 0.8 -> floors 1,1,0, remainders .8 .4 .8
    counts = initial_type_counts(p, 4, method="largest_remainder")
    assert counts[:3].tolist() == [2, 1, 1]  # the tie .8/.8 goes to both (two atoms left)
    p[0], p[1], p[2] = 0.5, 0.25, 0.25  # x 2 = 1, .5, .5: tie at .5 broken by p (equal), then the lower index
    assert initial_type_counts(p, 2, method="largest_remainder")[:3].tolist() == [1, 1, 0]


def test_round_residual_overshoot_and_shortfall():
    p = torch.zeros(E, dtype=torch.float64)
    p[:4] = 0.25  # x 2 atoms = 0.5 each: round-half-to-even gives 0 everywhere -> all drawn from the residual
    for seed in range(10):
        c = initial_type_counts(p, 2, generator=torch.Generator().manual_seed(seed))
        assert int(c.sum()) == 2 and int(c[4:].sum()) == 0
    p = torch.zeros(E, dtype=torch.float64)
    p[:3] = torch.tensor([0.3, 0.3, 0.4])  # x 5 = 1.5, 1.5, 2.0 -> round 2, 2, 2 = 6 > 5: shuffled and truncated
    for seed in range(10):
        c = initial_type_counts(p, 5, generator=torch.Generator().manual_seed(seed))
        assert int(c.sum()) == 5 and bool((c[:3] >= 1).all()) and bool((c[:3] <= 2).all())


def test_unknown_method():
    with pytest.raises(ValueError, match="initial_types"):
        initial_type_counts(torch.full((E,), 0.01), 3, method="floor")


def test_model_initial_types_follow_counts():
    """DPCDVAE._initial_types lays out one block per crystal with exactly the counts (order shuffled)."""
    from dpcdvae.config import load_config
    from dpcdvae.models import DPCDVAE

    cfg = load_config("tiny").model
    model = DPCDVAE(cfg)
    probs = torch.stack([_peaked({7: 1, 21: 1, 8: 3}, 5, 0.05), _peaked({5: 4}, 4, 0.08)]).float()
    types = model._initial_types(probs, torch.tensor([5, 4]), torch.Generator().manual_seed(0))
    assert sorted(types[:5].tolist()) == [8, 9, 9, 9, 22]
    assert types[5:].tolist() == [6, 6, 6, 6]
    empty = model._initial_types(probs, torch.tensor([0, 0]))
    assert empty.numel() == 0


def test_cosine_lr_shape():
    lr, lo = 1e-3, 1e-5
    assert cosine_lr(0.0, lr, 0.1, 0.01) == pytest.approx(lo)
    assert cosine_lr(0.05, lr, 0.1, 0.01) == pytest.approx(lo + (lr - lo) * 0.5)
    assert cosine_lr(0.1, lr, 0.1, 0.01) == pytest.approx(lr)
    assert cosine_lr(0.55, lr, 0.1, 0.01) == pytest.approx(lo + (lr - lo) * 0.5)
    assert cosine_lr(1.0, lr, 0.1, 0.01) == pytest.approx(lo)
    assert cosine_lr(3.0, lr, 0.1, 0.01) == pytest.approx(lo)
    vals = [cosine_lr(x / 100, lr, 0.1, 0.01) for x in range(10, 101)]
    assert all(a >= b for a, b in zip(vals, vals[1:])), "not monotone after the warm-up"
    assert cosine_lr(0.0, lr, 0.0, 0.01) == pytest.approx(lr) and not math.isnan(cosine_lr(0.5, lr, 0.0, 0.0))


def test_type_update_fixed_keeps_the_initial_types():
    """model.type_update=fixed: the sampled crystals keep Z_T (the composition head's exact counts); with the
    paper's argmax update an untrained type head rewrites them."""
    import collections

    import torch.nn.functional as F

    from dpcdvae.config import load_config
    from dpcdvae.models import DPCDVAE

    from dpcdvae.data import LatticeScaler

    torch.manual_seed(0)
    cfg = load_config("tiny").model
    lengths = torch.tensor([[4.0, 4.0, 4.0], [5.0, 5.5, 6.0]])
    angles = torch.full((2, 3), 90.0)
    scaler = LatticeScaler(cfg.lattice_scaler).fit((lengths, angles, torch.tensor([5, 6])))
    model = DPCDVAE(cfg, scaler).eval()
    z = torch.randn(3, cfg.latent_dim)
    na = torch.tensor([4, 5, 6])
    comp = F.softmax(model.decode_stats(z, na)[-1], -1)
    model.cfg.type_update = "fixed"
    out = model.sample_from_latent(z, sampler="strided_eq7", steps=4, num_atoms=na,
                                   generator=torch.Generator().manual_seed(1))
    expect = model._initial_types(comp, na, torch.Generator().manual_seed(1))
    for got, want in zip(torch.split(out.atom_types, na.tolist()), torch.split(expect, na.tolist())):
        assert collections.Counter(got.tolist()) == collections.Counter(want.tolist())
    model.cfg.type_update = "nonsense"
    with pytest.raises(ValueError, match="type_update"):
        model.sample_from_latent(z, sampler="strided_eq7", steps=2, num_atoms=na)
