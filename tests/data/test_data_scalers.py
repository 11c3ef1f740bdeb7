"""LatticeScaler / StandardScaler: round trips, ranges, state dicts."""
from __future__ import annotations

import io

import pytest
import torch

from dpcdvae.data import LatticeScaler, StandardScaler, lattice_features

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


def _lattices(n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    num_atoms = torch.randint(1, 25, (n,), generator=g)
    lengths = (2.0 + 10.0 * torch.rand(n, 3, generator=g, dtype=torch.float64)) * num_atoms[:, None] ** (1 / 3)
    angles = 60.0 + 60.0 * torch.rand(n, 3, generator=g, dtype=torch.float64)
    return lengths, angles, num_atoms


@pytest.mark.parametrize("kind", ["minmax", "standard"])
def test_fit_ranges(kind):
    lengths, angles, num_atoms = _lattices(200)
    sc = LatticeScaler(kind).fit((lengths, angles, num_atoms))
    y = sc.transform(lengths, angles, num_atoms)
    assert y.shape == (200, 6)
    if kind == "minmax":
        assert torch.allclose(y.min(0).values, torch.zeros(6, dtype=y.dtype), atol=1e-9)
        assert torch.allclose(y.max(0).values, torch.ones(6, dtype=y.dtype), atol=1e-9)
    else:
        assert torch.allclose(y.mean(0), torch.zeros(6, dtype=y.dtype), atol=1e-9)
        assert torch.allclose(y.std(0, unbiased=False), torch.ones(6, dtype=y.dtype), atol=1e-9)


def test_features_definition():
    f = lattice_features(torch.tensor([[8.0, 8.0, 16.0]]), torch.tensor([[90.0, 90.0, 120.0]]), torch.tensor([8]))
    assert torch.allclose(f, torch.tensor([[4.0, 4.0, 8.0, 90.0, 90.0, 120.0]]))


@settings(max_examples=60, deadline=None)
@given(kind=st.sampled_from(["minmax", "standard"]), seed=st.integers(0, 10_000), n=st.integers(2, 40),
       dtype=st.sampled_from([torch.float32, torch.float64]))
def test_round_trip(kind, seed, n, dtype):
    lengths, angles, num_atoms = _lattices(n, seed)
    sc = LatticeScaler(kind).fit((lengths, angles, num_atoms))
    lq, aq = lengths.to(dtype), angles.to(dtype)
    y = sc.transform(lq, aq, num_atoms)
    assert y.dtype == dtype
    l2, a2 = sc.inverse_transform(y, num_atoms)
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    assert torch.allclose(l2, lq, rtol=tol, atol=tol) and torch.allclose(a2, aq, rtol=tol, atol=tol)


@pytest.mark.parametrize("kind", ["minmax", "standard"])
def test_state_dict_round_trip_through_torch_save(kind):
    lengths, angles, num_atoms = _lattices(50, 3)
    sc = LatticeScaler(kind).fit((lengths, angles, num_atoms))
    buf = io.BytesIO()
    torch.save({"lattice_scaler": sc.state_dict()}, buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)["lattice_scaler"]
    sc2 = LatticeScaler.from_state_dict(state)
    assert sc2.kind == kind
    assert torch.equal(sc2.transform(lengths, angles, num_atoms), sc.transform(lengths, angles, num_atoms))


def test_zero_spread_feature_and_errors():
    # all cubic: angles have no spread -> scale 1, transform 0, inverse exact
    lengths = torch.tensor([[4.0, 4.0, 4.0], [5.0, 5.0, 5.0]])
    angles = torch.full((2, 3), 90.0)
    n = torch.tensor([5, 5])
    for kind in ("minmax", "standard"):
        sc = LatticeScaler(kind).fit((lengths, angles, n))
        y = sc.transform(lengths, angles, n)
        assert torch.isfinite(y).all() and torch.all(y[:, 3:] == 0)
        l2, a2 = sc.inverse_transform(y, n)
        assert torch.allclose(l2, lengths) and torch.allclose(a2, angles)
    with pytest.raises(RuntimeError, match="not fitted"):
        LatticeScaler().transform(lengths, angles, n)
    with pytest.raises(ValueError):
        LatticeScaler("robust")


def test_fit_on_dataset_like_and_data_list():
    from torch_geometric.data import Data

    lengths, angles, num_atoms = _lattices(10, 1)
    items = [Data(lengths=lengths[i:i + 1].float(), angles=angles[i:i + 1].float(), num_atoms=num_atoms[i:i + 1])
             for i in range(10)]
    a = LatticeScaler().fit(items)
    b = LatticeScaler().fit((lengths.float(), angles.float(), num_atoms))
    assert torch.allclose(a.loc, b.loc) and torch.allclose(a.scale, b.scale)


def test_standard_scaler():
    x = torch.tensor([1.0, 2.0, 3.0, float("nan"), 4.0])
    sc = StandardScaler().fit(x)
    assert sc.fitted_on == 4 and sc.mean == pytest.approx(2.5)
    y = sc.transform(x)
    assert torch.allclose(sc.inverse_transform(y)[[0, 1, 2, 4]], x[[0, 1, 2, 4]])
    sc2 = StandardScaler.from_state_dict(sc.state_dict())
    assert sc2.mean == sc.mean and sc2.std == sc.std
    empty = StandardScaler().fit(torch.tensor([float("nan")]))
    assert (empty.mean, empty.std, empty.fitted_on) == (0.0, 1.0, 0)
    const = StandardScaler().fit(torch.tensor([2.0, 2.0]))
    assert const.std == 1.0
