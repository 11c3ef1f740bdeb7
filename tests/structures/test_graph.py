"""Periodic graph (dpcdvae.structures.graph): neighbour lists against pymatgen, triplets against brute force.

Comparisons run in float64: identical (centre, neighbour, image) sets and distances within 1e-5 A.
"""
from __future__ import annotations

import inspect
import math
from collections import defaultdict

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import dpcdvae.structures.graph as graph_mod
from dpcdvae.structures.graph import (
    PeriodicGraph,
    build_triplets,
    crystalnn_edges,
    edge_vectors,
    graph_from_edges,
    radius_graph_pbc,
)

TOL = 1e-5  # Angstrom


# ---------------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------------

def _tensors(structures, dtype=torch.float64):
    frac = torch.tensor(np.concatenate([s.frac_coords for s in structures]), dtype=dtype)
    lattice = torch.tensor(np.stack([s.lattice.matrix for s in structures]), dtype=dtype)
    num_atoms = torch.tensor([len(s) for s in structures])
    batch = torch.repeat_interleave(torch.arange(len(structures)), num_atoms)
    return frac, lattice, batch, num_atoms


def _ours_by_crystal(g: PeriodicGraph, num_atoms):
    """[{(centre, neighbour, image): dist}] per crystal, local atom indices."""
    ptr = np.concatenate([[0], np.cumsum(num_atoms.numpy())])
    src, dst = g.edge_index.numpy()
    off = np.rint(g.offsets.detach().numpy()).astype(int)
    dist = g.dist.detach().numpy()
    out = [dict() for _ in range(len(num_atoms))]
    b_of = np.searchsorted(ptr, dst, side="right") - 1
    for e in range(len(src)):
        b = b_of[e]
        key = (int(dst[e] - ptr[b]), int(src[e] - ptr[b]), tuple(off[e]))
        assert key not in out[b], f"duplicate edge {key}"
        out[b][key] = float(dist[e])
    return out


def _pymatgen(structure, cutoff):
    c, n, im, d = structure.get_neighbor_list(cutoff)
    return {(int(a), int(b), tuple(int(x) for x in i)): float(dd) for a, b, i, dd in zip(c, n, im, d)}


def _assert_same(ours: dict, ref: dict, where=""):
    missing = set(ref) - set(ours)
    extra = set(ours) - set(ref)
    assert not missing and not extra, f"{where}: {len(missing)} missing e.g. {list(missing)[:3]}, " \
                                      f"{len(extra)} extra e.g. {list(extra)[:3]}"
    worst = max((abs(ours[k] - ref[k]) for k in ref), default=0.0)
    assert worst < TOL, f"{where}: distance mismatch {worst}"


def _check_against_pymatgen(structures, cutoff):
    frac, lattice, batch, num_atoms = _tensors(structures)
    g = radius_graph_pbc(frac, lattice, batch, cutoff, triplets=False, num_atoms=num_atoms)
    # grouped by target
    assert (g.edge_index[1][1:] >= g.edge_index[1][:-1]).all()
    # vec / dist consistent with the convention
    cart = torch.einsum("ni,nij->nj", frac, lattice[batch])
    torch.testing.assert_close(g.vec, edge_vectors(cart, lattice, batch, g.edge_index, g.offsets))
    torch.testing.assert_close(g.dist, g.vec.norm(dim=-1))
    for b, (ours, s) in enumerate(zip(_ours_by_crystal(g, num_atoms), structures)):
        _assert_same(ours, _pymatgen(s, cutoff), where=f"crystal {b} ({s.composition.reduced_formula})")
    return g


def _brute_triplets(edge_index, offsets):
    src, dst = edge_index.tolist()
    off = np.rint(offsets.detach().numpy()).astype(int).tolist() if offsets.is_floating_point() \
        else offsets.tolist()
    into = defaultdict(list)
    for e, t in enumerate(dst):
        into[t].append(e)
    out = []
    for ji in range(len(src)):
        j, i = src[ji], dst[ji]
        for kj in into[j]:
            if src[kj] == i and all(a == -b for a, b in zip(off[kj], off[ji])):
                continue  # the same bond walked back
            out.append((kj, ji))
    return out


def _assert_triplets(idx_kj, idx_ji, edge_index, offsets):
    ours = list(zip(idx_kj.tolist(), idx_ji.tolist()))
    ref = _brute_triplets(edge_index, offsets)
    assert len(ours) == len(set(ours)), "duplicate triplets"
    assert sorted(ours) == sorted(ref)


def _structure(lengths, angles, frac, species="C"):
    from pymatgen.core import Lattice, Structure

    frac = np.asarray(frac, dtype=float).reshape(-1, 3)
    return Structure(Lattice.from_parameters(*lengths, *angles), [species] * len(frac), frac)


def _cell_factor(angles):
    ca, cb, cg = np.cos(np.deg2rad(angles))
    g = 1 - ca * ca - cb * cb - cg * cg + 2 * ca * cb * cg
    return math.sqrt(g) if g > 0 else 0.0


def _read_cifs(shared_data_dir, name, nrows):
    pd = pytest.importorskip("pandas")
    from pymatgen.core import Structure

    df = pd.read_csv(shared_data_dir / name / "test.csv", nrows=nrows)
    return [Structure.from_str(c, fmt="cif") for c in df["cif"]]


# ---------------------------------------------------------------------------------------------------------------
# against pymatgen: real data
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.shared_data
def test_perov5_matches_pymatgen(shared_data_dir):
    structures = _read_cifs(shared_data_dir, "perov_5", 40)
    _check_against_pymatgen(structures, 7.0)


@pytest.mark.shared_data
def test_carbon24_matches_pymatgen(shared_data_dir):
    structures = _read_cifs(shared_data_dir, "carbon_24", 24)
    _check_against_pymatgen(structures, 7.0)
    _check_against_pymatgen(structures[:8], 3.2)


@pytest.mark.shared_data
@pytest.mark.parametrize("name,k", [("perov_5", 12), ("carbon_24", 20)])
def test_real_data_max_neighbors_and_triplets(shared_data_dir, name, k):
    structures = _read_cifs(shared_data_dir, name, 12)
    _check_max_neighbors(structures, 7.0, k)


# ---------------------------------------------------------------------------------------------------------------
# against pymatgen: random skewed cells
# ---------------------------------------------------------------------------------------------------------------

@st.composite
def crystals(draw, max_atoms=6):
    lengths = np.array([draw(st.floats(1.2, 12.0)) for _ in range(3)])
    angles = np.array([draw(st.floats(40.0, 140.0)) for _ in range(3)])
    assume(_cell_factor(angles) > 0.12)
    n = draw(st.integers(1, max_atoms))
    seed = draw(st.integers(0, 2 ** 31 - 1))
    frac = np.random.default_rng(seed).random((n, 3))
    vol = np.prod(lengths) * _cell_factor(angles)
    # cutoff up to 2.5 x the longest axis, but at most ~1500 neighbours per atom
    cutoff = draw(st.floats(0.3, 2.5)) * lengths.max()
    cutoff = min(cutoff, (1500 * vol / n * 3 / (4 * math.pi)) ** (1 / 3))
    return _structure(lengths, angles, frac), float(cutoff)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(crystals(), min_size=1, max_size=3))
def test_random_skewed_cells_match_pymatgen(items):
    # crystals of one batch share the cutoff: use the smallest
    cutoff = min(c for _, c in items)
    _check_against_pymatgen([s for s, _ in items], cutoff)


@pytest.mark.parametrize("lengths,angles,frac,cutoff", [
    ((3.0, 3.0, 3.0), (90, 90, 90), [[0.2, 0.3, 0.4]], 3.01),  # 1 atom: only the 6 self-images
    ((2.0, 2.5, 3.0), (70, 100, 125), [[0.0, 0.0, 0.0]], 9.0),  # 1 atom, cutoff 3-4 cells
    ((1.3, 1.4, 15.0), (48, 132, 90), [[0.1, 0.2, 0.3], [0.6, 0.9, 0.8]], 6.0),  # needle, very oblique
    ((14.0, 1.5, 1.6), (100, 45, 130), [[0.5, 0.5, 0.5], [0.0, 0.1, 0.95]], 4.0),  # needle along a
    ((4.0, 4.0, 4.0), (60, 60, 60), [[0, 0, 0], [0.25, 0.25, 0.25]], 7.0),  # fcc-like rhombohedral cell
])
def test_special_cells_match_pymatgen(lengths, angles, frac, cutoff):
    assert _cell_factor(angles) > 0.1  # a real cell (pymatgen silently builds a flat one otherwise)
    s = _structure(lengths, angles, frac)
    g = _check_against_pymatgen([s], cutoff)
    if len(frac) == 1 and cutoff == 3.01:
        assert g.num_edges == 6 and (g.edge_index == 0).all()
        assert sorted(map(tuple, g.offsets.long().tolist())) == sorted(
            [(1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1)])


def test_tiny_cutoff_gives_no_edges_and_empty_triplets():
    s = _structure((3, 3, 3), (90, 90, 90), [[0, 0, 0], [0.5, 0.5, 0.5]])
    frac, lattice, batch, na = _tensors([s])
    g = radius_graph_pbc(frac, lattice, batch, 1.0)
    assert g.num_edges == 0 and g.idx_kj.numel() == 0 and g.idx_ji.numel() == 0


@settings(max_examples=15, deadline=None)
@given(crystals(max_atoms=5), st.integers(0, 2 ** 31 - 1))
def test_unwrapped_input_gives_same_physical_graph(item, seed):
    s, cutoff = item
    frac, lattice, batch, na = _tensors([s])
    shift = torch.from_numpy(np.random.default_rng(seed).integers(-3, 4, size=frac.shape)).double()
    g0 = radius_graph_pbc(frac, lattice, batch, cutoff, num_atoms=na)
    g1 = radius_graph_pbc(frac + shift, lattice, batch, cutoff, num_atoms=na)
    assert g0.num_edges == g1.num_edges
    src, dst = g1.edge_index
    # offsets are relative to the coordinates as given: map them back to the wrapped frame
    back = g1.offsets + shift[src] - shift[dst]
    key0 = {(int(a), int(b), tuple(o)): v for a, b, o, v in
            zip(g0.edge_index[0], g0.edge_index[1], g0.offsets.long().tolist(), g0.vec)}
    for a, b, o, v in zip(src, dst, back.long().tolist(), g1.vec):
        v0 = key0[(int(a), int(b), tuple(o))]
        torch.testing.assert_close(v, v0, atol=1e-9, rtol=0)
    assert len(g0.idx_kj) == len(g1.idx_kj)


# ---------------------------------------------------------------------------------------------------------------
# max_neighbors
# ---------------------------------------------------------------------------------------------------------------

def _check_max_neighbors(structures, cutoff, k):
    frac, lattice, batch, na = _tensors(structures)
    g = radius_graph_pbc(frac, lattice, batch, cutoff, max_neighbors=k, triplets=True, num_atoms=na)
    assert (g.edge_index[1][1:] >= g.edge_index[1][:-1]).all()
    for b, (ours, s) in enumerate(zip(_ours_by_crystal(g, na), structures)):
        ref = _pymatgen(s, cutoff)
        for key, d in ours.items():  # every kept edge is a real neighbour, with its distance
            assert key in ref and abs(ref[key] - d) < TOL
        by_centre = defaultdict(list)
        for (c, _, _), d in ref.items():
            by_centre[c].append(d)
        mine = defaultdict(list)
        for (c, _, _), d in ours.items():
            mine[c].append(d)
        for c in range(len(s)):
            want = sorted(by_centre[c])[:k]  # the nearest k of pymatgen's list
            got = sorted(mine[c])
            assert len(got) == len(want), (b, c)
            np.testing.assert_allclose(got, want, atol=TOL)
    _assert_triplets(g.idx_kj, g.idx_ji, g.edge_index, g.offsets)
    return g


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(crystals(max_atoms=6), min_size=1, max_size=3), st.integers(1, 24))
def test_max_neighbors_keeps_nearest(items, k):
    cutoff = min(c for _, c in items)
    _check_max_neighbors([s for s, _ in items], cutoff, k)


def test_max_neighbors_with_uneven_density(monkeypatch):
    # a tight cluster plus lone atoms: the density-based first radius is too small for the lone atoms, which need
    # the second, full-cutoff search (and the reverse edges across the two searches found by key)
    calls = []
    real = graph_mod._enumerate

    def spy(*args, **kw):
        calls.append(kw.get("half"))
        return real(*args, **kw)

    monkeypatch.setattr(graph_mod, "_enumerate", spy)
    rng = np.random.default_rng(0)
    cluster = 0.5 + rng.normal(scale=0.03, size=(14, 3))
    lone = np.array([[0.02, 0.03, 0.05], [0.97, 0.5, 0.01], [0.5, 0.02, 0.5]])
    s1 = _structure((9.0, 9.5, 10.0), (88, 92, 95), np.vstack([cluster, lone]))
    s2 = _structure((5.0, 5.0, 5.0), (90, 90, 90), rng.random((4, 3)))
    _check_max_neighbors([s1, s2], 8.0, 12)
    assert calls == [True, False]  # the second search ran


def test_max_neighbors_more_than_available():
    s = _structure((4.0, 4.0, 4.0), (90, 90, 90), [[0, 0, 0], [0.5, 0.5, 0.5]])
    g = _check_max_neighbors([s], 4.5, 100)
    assert g.num_edges == 2 * (8 + 6)  # bcc: 8 at 3.46 A, 6 at 4 A; 12 at 5.66 A are beyond the cutoff


# ---------------------------------------------------------------------------------------------------------------
# triplets
# ---------------------------------------------------------------------------------------------------------------

@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(crystals(max_atoms=4), min_size=1, max_size=3))
def test_radius_graph_triplets_match_brute_force(items):
    structures = [s for s, _ in items]
    frac, lattice, batch, na = _tensors(structures)
    # a small cutoff keeps the brute force cheap, yet allows self-images and k == i through other images
    cutoff = min(min(s.lattice.abc) for s in structures) * 1.3
    g = radius_graph_pbc(frac, lattice, batch, cutoff, num_atoms=na)
    assume(g.num_edges < 3000)
    _assert_triplets(g.idx_kj, g.idx_ji, g.edge_index, g.offsets)
    # the generic builder agrees (on shuffled edges too)
    _assert_triplets(*build_triplets(g.edge_index, g.offsets, len(frac)), g.edge_index, g.offsets)
    perm = torch.randperm(g.num_edges, generator=torch.Generator().manual_seed(0))
    ei, off = g.edge_index[:, perm], g.offsets[perm]
    _assert_triplets(*build_triplets(ei, off, len(frac)), ei, off)


def test_build_triplets_handmade_cases():
    # two atoms; edges (src j, dst i, offset of j)
    edges = [
        (1, 0, (0, 0, 0)),  # e0: 1 -> 0
        (0, 1, (0, 0, 0)),  # e1: 0 -> 1, exact reverse of e0
        (0, 1, (1, 0, 0)),  # e2: 0(+a) -> 1: k == i through another image: kept with e0
        (1, 0, (-1, 0, 0)),  # e3: reverse of e2
        (0, 0, (0, 1, 0)),  # e4: self-image of 0
        (0, 0, (0, -1, 0)),  # e5: reverse of e4
        (0, 1, (0, 0, 0)),  # e6: duplicate of e1 (CrystalNN graphs can hold duplicates): dropped with e0 too
    ]
    ei = torch.tensor([[a for a, _, _ in edges], [b for _, b, _ in edges]])
    off = torch.tensor([o for _, _, o in edges])
    kj, ji = build_triplets(ei, off, 2)
    got = set(zip(kj.tolist(), ji.tolist()))
    assert (1, 0) not in got and (6, 0) not in got  # the bond walked back
    assert (2, 0) in got  # k == i via another image
    assert (4, 5) not in got and (5, 4) not in got and (4, 4) in got
    _assert_triplets(kj, ji, ei, off)
    _assert_triplets(*build_triplets(ei, off.double(), 2), ei, off)


def test_triplet_angles_across_images_simple_cubic():
    # one atom in a cubic cell: every neighbour is a self-image, all angles at j are 90 or 180 degrees
    s = _structure((3.0, 3.0, 3.0), (90, 90, 90), [[0.3, 0.6, 0.9]])
    frac, lattice, batch, na = _tensors([s])
    g = radius_graph_pbc(frac + 2.0, lattice, batch, 3.2, num_atoms=na)  # unwrapped on purpose
    assert g.num_edges == 6 and len(g.idx_kj) == 6 * 5
    v_ji, v_kj = g.vec[g.idx_ji], g.vec[g.idx_kj]  # i -> j image, j -> k image
    cos = (-v_ji * v_kj).sum(-1) / (v_ji.norm(dim=-1) * v_kj.norm(dim=-1))
    ang = torch.rad2deg(torch.arccos(cos.clamp(-1, 1)))
    assert int((ang - 90).abs().lt(1e-6).sum()) == 24 and int((ang - 180).abs().lt(1e-6).sum()) == 6


def test_triplet_angles_from_vec_match_positions():
    # angle k-j-i from image-shifted vectors equals the angle from explicit Cartesian image positions
    s = _structure((3.1, 3.3, 3.6), (75, 100, 110), [[0.1, 0.2, 0.3], [0.7, 0.4, 0.9]])
    frac, lattice, batch, na = _tensors([s])
    g = radius_graph_pbc(frac, lattice, batch, 4.0, num_atoms=na)
    cart = frac @ lattice[0]
    src, dst = g.edge_index
    pos_src = cart[src] + g.offsets @ lattice[0]  # where the source image sits, seen from the target
    for kj, ji in list(zip(g.idx_kj.tolist(), g.idx_ji.tolist()))[:200]:
        i = cart[dst[ji]]
        j = pos_src[ji]
        k = pos_src[kj] - cart[dst[kj]] + j  # edge kj seen from j's image
        a = torch.nn.functional.cosine_similarity(i - j, k - j, dim=0)
        b = torch.nn.functional.cosine_similarity(-g.vec[ji], g.vec[kj], dim=0)
        assert abs(float(a - b)) < 1e-10


# ---------------------------------------------------------------------------------------------------------------
# gradients, symmetry, dtypes, degenerate input, devices
# ---------------------------------------------------------------------------------------------------------------

def test_gradients_flow_to_positions_and_lattice():
    s = _structure((3.5, 3.8, 4.1), (80, 95, 105), np.random.default_rng(1).random((3, 3)))
    frac, lattice, batch, na = _tensors([s])
    frac.requires_grad_(True)
    lattice.requires_grad_(True)
    g = radius_graph_pbc(frac, lattice, batch, 5.0, max_neighbors=10, num_atoms=na)
    (g.dist ** 2).sum().backward()
    assert frac.grad is not None and torch.isfinite(frac.grad).all() and frac.grad.abs().sum() > 0
    assert lattice.grad is not None and torch.isfinite(lattice.grad).all()

    # the same edges, as a function of the lattice: analytic gradient == finite differences
    def energy(lat):
        gg = graph_from_edges(frac.detach(), lat, batch, g.edge_index, g.offsets, triplets=False)
        return (gg.dist ** 2).sum()

    lat0 = lattice.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(energy(lat0), lat0)
    eps = 1e-6
    for idx in [(0, 0, 0), (0, 1, 2), (0, 2, 1)]:
        lp, lm = lattice.detach().clone(), lattice.detach().clone()
        lp[idx] += eps
        lm[idx] -= eps
        fd = (energy(lp) - energy(lm)) / (2 * eps)
        assert abs(float(fd - grad[idx])) < 1e-5 * max(1.0, abs(float(fd)))


def test_rotation_equivariance():
    s = _structure((3.5, 4.0, 4.5), (70, 100, 110), np.random.default_rng(2).random((4, 3)))
    frac, lattice, batch, na = _tensors([s])
    q, _ = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3)))
    g0 = radius_graph_pbc(frac, lattice, batch, 6.0, max_neighbors=16, num_atoms=na)
    g1 = radius_graph_pbc(frac, lattice @ q, batch, 6.0, max_neighbors=16, num_atoms=na)
    d0 = sorted(g0.dist.tolist())
    d1 = sorted(g1.dist.tolist())
    np.testing.assert_allclose(d0, d1, atol=1e-9)
    if torch.equal(g0.edge_index, g1.edge_index) and torch.equal(g0.offsets, g1.offsets):
        torch.testing.assert_close(g1.vec, g0.vec @ q)


def test_float32_matches_float64():
    rng = np.random.default_rng(4)
    structures = [_structure(rng.uniform(3, 6, 3), (85, 95, 100), rng.random((5, 3))) for _ in range(4)]
    frac, lattice, batch, na = _tensors(structures)
    g64 = radius_graph_pbc(frac, lattice, batch, 6.0, max_neighbors=12, num_atoms=na)
    g32 = radius_graph_pbc(frac.float(), lattice.float(), batch, 6.0, max_neighbors=12, num_atoms=na)
    assert g32.vec.dtype == torch.float32 and g32.offsets.dtype == torch.float32
    assert g32.num_edges == g64.num_edges
    np.testing.assert_allclose(np.sort(g32.dist.numpy()), np.sort(g64.dist.numpy()), atol=1e-4)


def test_degenerate_crystals_get_no_edges_and_do_not_break_the_batch():
    good = _structure((4.0, 4.0, 4.0), (90, 90, 90), [[0, 0, 0], [0.5, 0.5, 0.5]])
    frac, lattice, batch, na = _tensors([good])
    ref = radius_graph_pbc(frac, lattice, batch, 5.0, max_neighbors=8, num_atoms=na)
    nan_lat = torch.full((1, 3, 3), float("nan"), dtype=torch.float64)
    flat = torch.tensor([[[4.0, 0, 0], [0, 4.0, 0], [4.0, 4.0, 0]]], dtype=torch.float64)  # volume 0
    for bad in (nan_lat, flat):
        lat2 = torch.cat([bad, lattice, bad])
        na2 = torch.tensor([2, 2, 0])  # an empty crystal too
        frac2 = torch.cat([torch.rand(2, 3, dtype=torch.float64), frac])
        batch2 = torch.repeat_interleave(torch.arange(3), na2)
        for k in (None, 8):
            with pytest.warns(RuntimeWarning, match="no edges"):
                g = radius_graph_pbc(frac2, lat2, batch2, 5.0, max_neighbors=k, num_atoms=na2)
            assert (g.edge_index >= 2).all()
            if k is not None:
                assert g.num_edges == ref.num_edges
                np.testing.assert_allclose(np.sort(g.dist.numpy()), np.sort(ref.dist.numpy()))
    # NaN coordinates in one crystal
    frac3 = torch.cat([frac, frac])
    frac3[0, 1] = float("nan")
    with pytest.warns(RuntimeWarning):
        g = radius_graph_pbc(frac3, torch.cat([lattice, lattice]), torch.tensor([0, 0, 1, 1]), 5.0, max_neighbors=8)
    assert (g.edge_index >= 2).all() and g.num_edges == ref.num_edges


def test_no_atoms():
    g = radius_graph_pbc(torch.zeros(0, 3), torch.eye(3)[None] * 4, torch.zeros(0, dtype=torch.long), 5.0)
    assert g.num_edges == 0 and g.vec.shape == (0, 3) and g.idx_kj.numel() == 0


def test_hot_path_is_device_agnostic():
    # no host round trips of per-edge data in the radius search (scalars to size outputs are fine)
    for fn in (graph_mod.radius_graph_pbc, graph_mod._enumerate, graph_mod._nearest, graph_mod._all_edges,
               graph_mod._half_positions, graph_mod._forward, graph_mod._triplets_from_rev, graph_mod._expand,
               graph_mod._reverse_by_key, graph_mod.build_triplets, graph_mod.edge_vectors,
               graph_mod.graph_from_edges):
        src = inspect.getsource(fn)
        for bad in (".cpu()", ".numpy()", ".tolist()", ".item()"):
            assert bad not in src, f"{fn.__name__} uses {bad}"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none here: CPU-only torch/machine)")
def test_cuda_matches_cpu():
    rng = np.random.default_rng(5)
    structures = [_structure(rng.uniform(3, 8, 3), (80, 95, 110), rng.random((rng.integers(2, 12), 3)))
                  for _ in range(16)]
    frac, lattice, batch, na = _tensors(structures, dtype=torch.float32)
    for k in (None, 20):
        gc = radius_graph_pbc(frac, lattice, batch, 7.0, max_neighbors=k, num_atoms=na)
        gg = radius_graph_pbc(frac.cuda(), lattice.cuda(), batch.cuda(), 7.0, max_neighbors=k, num_atoms=na.cuda())
        assert gg.vec.is_cuda and gg.idx_kj.is_cuda
        assert gg.num_edges == gc.num_edges and gg.idx_kj.numel() == gc.idx_kj.numel()
        np.testing.assert_allclose(np.sort(gg.dist.cpu().numpy()), np.sort(gc.dist.numpy()), atol=1e-4)
        _assert_triplets(gg.idx_kj.cpu(), gg.idx_ji.cpu(), gg.edge_index.cpu(), gg.offsets.cpu())


# ---------------------------------------------------------------------------------------------------------------
# CrystalNN
# ---------------------------------------------------------------------------------------------------------------

def _cdvae_reference(structure):
    """CDVAE's own recipe, spelled out: StructureGraph over CrystalNN, both directions of every bond."""
    from pymatgen.analysis.graphs import StructureGraph
    from pymatgen.analysis.local_env import CrystalNN

    cnn = CrystalNN(distance_cutoffs=None, x_diff_weight=-1, porous_adjustment=False)
    sg = StructureGraph.from_local_env_strategy(structure, cnn)
    out = []
    for i, j, to_jimage in sg.graph.edges(data="to_jimage"):
        out.append((j, i, tuple(to_jimage)))
        out.append((i, j, tuple(-t for t in to_jimage)))
    return cnn, out


def test_crystalnn_edges_match_crystalnn(srtio3):
    from pymatgen.core import Lattice, Structure

    diamond = Structure(Lattice.cubic(3.567), ["C"] * 8,
                        [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5],
                         [0.25, 0.25, 0.25], [0.75, 0.75, 0.25], [0.75, 0.25, 0.75], [0.25, 0.75, 0.75]])
    for s, coordination in ((srtio3, None), (diamond, 4)):
        ei, off = crystalnn_edges(s)
        assert ei.dtype == torch.long and off.dtype == torch.long and ei.shape[1] == off.shape[0]
        cnn, ref = _cdvae_reference(s)
        ours = list(zip(ei[0].tolist(), ei[1].tolist(), map(tuple, off.tolist())))
        assert sorted(ours) == sorted(ref)
        # every neighbour CrystalNN reports for a centre i is an edge into i, with the same image
        edge_set = set(ours)
        for i, infos in enumerate(cnn.get_all_nn_info(s)):
            for nb in infos:
                assert (nb["site_index"], i, tuple(int(x) for x in nb["image"])) in edge_set
        # symmetric, and every edge has the distance of a real bond
        assert all((i, j, tuple(-x for x in o)) in edge_set for j, i, o in ours)
        frac, lattice, batch, na = _tensors([s])
        g = graph_from_edges(frac, lattice, batch, ei, off)
        assert g.dist.min() > 1.0 and g.dist.max() < 3.5
        if coordination is not None:
            assert torch.bincount(ei[1], minlength=len(s)).eq(coordination).all()
        _assert_triplets(g.idx_kj, g.idx_ji, ei, off)


def test_reverse_edge_index():
    rng = np.random.default_rng(6)
    structures = [_structure(rng.uniform(2.5, 6, 3), (80, 100, 115), rng.random((rng.integers(1, 5), 3)))
                  for _ in range(5)]
    frac, lattice, batch, na = _tensors(structures)
    for k in (None, 6):
        g = radius_graph_pbc(frac, lattice, batch, 5.0, max_neighbors=k, num_atoms=na)
        key = {(a, b, tuple(o)): e for e, (a, b, o) in
               enumerate(zip(g.edge_index[0].tolist(), g.edge_index[1].tolist(), g.offsets.long().tolist()))}
        want = [key.get((b, a, tuple(-x for x in o)), -1) for (a, b, o) in key]
        assert g.rev.tolist() == want
        if k is None:
            assert (g.rev >= 0).all()
            torch.testing.assert_close(g.vec[g.rev], -g.vec)
    assert radius_graph_pbc(frac, lattice, batch, 5.0, triplets=False, num_atoms=na).rev is None
