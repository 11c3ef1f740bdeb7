"""Crystal math (dpcdvae.structures.crystal): property-based round trips, checked against pymatgen and ASE."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from dpcdvae.structures.crystal import (
    atoms_to_structure,
    batch_from_num_atoms,
    canonicalize_structure,
    cart_to_frac,
    frac_to_cart,
    lattice_params_to_matrix,
    matrix_to_lattice_params,
    min_image_distance_matrix,
    min_pair_distance,
    structure_to_atoms,
    structure_to_tensors,
    tensors_to_structures,
    volume,
    wrap,
    write_cif,
)

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _cell_factor(angles_deg) -> float:
    """V / (abc) = sqrt(1 - cos^2 a - cos^2 b - cos^2 g + 2 cos a cos b cos g); 0 when the angles cannot close a
    cell."""
    ca, cb, cg = np.cos(np.deg2rad(angles_deg))
    g = 1 - ca * ca - cb * cb - cg * cg + 2 * ca * cb * cg
    return math.sqrt(g) if g > 0 else 0.0


@st.composite
def cells(draw, min_angle=40.0, max_angle=140.0, min_len=1.5, max_len=25.0, min_factor=0.15):
    """(lengths [3] A, angles [3] deg) of a non-degenerate cell, skewed and needle-like ones included."""
    lengths = [draw(st.floats(min_len, max_len)) for _ in range(3)]
    angles = [draw(st.floats(min_angle, max_angle)) for _ in range(3)]
    assume(_cell_factor(angles) > min_factor)
    return np.array(lengths), np.array(angles)


# ---------------------------------------------------------------------------------------------------------------
# lattice parameters <-> matrix, volume
# ---------------------------------------------------------------------------------------------------------------

@SETTINGS
@given(cells())
def test_lattice_params_round_trip_and_pymatgen(cell):
    from pymatgen.core import Lattice

    lengths, angles = cell
    lat = lattice_params_to_matrix(torch.tensor(lengths), torch.tensor(angles))
    ref = Lattice.from_parameters(*lengths, *angles).matrix
    np.testing.assert_allclose(lat.numpy(), ref, atol=1e-9 * lengths.max())
    l2, a2 = matrix_to_lattice_params(lat)
    np.testing.assert_allclose(l2.numpy(), lengths, rtol=1e-10)
    np.testing.assert_allclose(a2.numpy(), angles, atol=1e-6)
    vol = float(volume(lat[None])[0])
    assert vol > 0  # right-handed
    np.testing.assert_allclose(vol, Lattice.from_parameters(*lengths, *angles).volume, rtol=1e-9)
    np.testing.assert_allclose(vol, np.prod(lengths) * _cell_factor(angles), rtol=1e-9)


def test_lattice_params_batched_float32_and_grad():
    lengths = torch.tensor([[3.0, 4.0, 5.0], [6.0, 6.0, 6.0]], requires_grad=True)
    angles = torch.tensor([[80.0, 95.0, 110.0], [90.0, 90.0, 120.0]], requires_grad=True)
    lat = lattice_params_to_matrix(lengths, angles)
    assert lat.shape == (2, 3, 3)
    volume(lat).sum().backward()
    assert torch.isfinite(lengths.grad).all() and torch.isfinite(angles.grad).all()
    l32, a32 = matrix_to_lattice_params(lattice_params_to_matrix(lengths.detach().float(), angles.detach().float()))
    assert l32.dtype == torch.float32
    torch.testing.assert_close(a32, angles.detach(), atol=2e-3, rtol=0)


# ---------------------------------------------------------------------------------------------------------------
# frac <-> cart, wrap
# ---------------------------------------------------------------------------------------------------------------

@SETTINGS
@given(cells(), st.integers(1, 6), st.integers(0, 2 ** 31 - 1))
def test_frac_cart_round_trip(cell, n, seed):
    gen = torch.Generator().manual_seed(seed)
    lengths, angles = cell
    lat = lattice_params_to_matrix(torch.tensor(lengths), torch.tensor(angles))[None].repeat(2, 1, 1)
    lat[1] = lat[1] * 1.3
    frac = torch.rand(2 * n, 3, generator=gen, dtype=torch.float64) * 6 - 3  # unwrapped on purpose
    batch = batch_from_num_atoms(torch.tensor([n, n]))
    cart = frac_to_cart(frac, lat, batch)
    torch.testing.assert_close(cart[:n], frac[:n] @ lat[0])
    torch.testing.assert_close(cart[n:], frac[n:] @ lat[1])
    torch.testing.assert_close(cart_to_frac(cart, lat, batch), frac, atol=1e-9, rtol=0)


@given(st.lists(st.floats(-1e4, 1e4, allow_nan=False), min_size=1, max_size=30), st.integers(-50, 50))
@settings(max_examples=200, deadline=None)
def test_wrap_range_idempotent_shift_invariant(xs, k):
    for dtype in (torch.float32, torch.float64):
        x = torch.tensor(xs, dtype=dtype)
        w = wrap(x)
        assert ((w >= 0) & (w < 1)).all(), (x, w)
        assert torch.equal(wrap(w), w)
        # integer shifts land on the same point of the circle (exact up to rounding of x + k itself)
        ws = wrap(x + k)
        circ = torch.minimum((ws - w).abs(), 1 - (ws - w).abs())
        assert (circ <= 4 * torch.finfo(dtype).eps * (x.abs() + abs(k) + 1)).all()


def test_wrap_edge_values():
    x = torch.tensor([-1e-20, -0.0, 0.0, 1.0, -1.0, 2.5, -2.5, -1e-8], dtype=torch.float32)
    w = wrap(x)
    assert ((w >= 0) & (w < 1)).all()
    assert w[0] == 0.0  # -1e-20 - floor(-1e-20) rounds to 1.0 in float32: mapped to 0
    torch.testing.assert_close(w[5:7], torch.tensor([0.5, 0.5]))
    assert torch.isnan(wrap(torch.tensor([float("nan")]))).all()
    # shape, dtype and device kept
    y = torch.rand(2, 5, 3, dtype=torch.float64) * 4 - 2
    assert wrap(y).shape == y.shape and wrap(y).dtype == torch.float64 and wrap(y).device == y.device


def test_canonicaliser_wraps_as_wrap():
    """canonicalize_structure(wrap=True) (numpy, torch-free: validity sits below this module) gives the fractional
    coordinates crystal.wrap gives, bit for bit, at the edge values too."""
    from pymatgen.core import Lattice, Structure

    frac = np.array([[-1e-20, -0.25, 1.0], [2.5, -2.5, -1e-8], [0.3, 0.0, -0.0], [-7.1, 3.75, 0.999999999]])
    s = Structure(Lattice.cubic(4.0), ["Na", "Cl", "Na", "Cl"], frac, to_unit_cell=False)
    got = canonicalize_structure(s, niggli=False, wrap=True).frac_coords
    raw = canonicalize_structure(s, niggli=False, wrap=False).frac_coords
    assert np.array_equal(got, wrap(torch.from_numpy(np.asarray(raw))).numpy())
    assert ((got >= 0) & (got < 1)).all()


# ---------------------------------------------------------------------------------------------------------------
# minimum-image distances
# ---------------------------------------------------------------------------------------------------------------

@SETTINGS
@given(cells(min_angle=50.0, max_angle=130.0, min_len=2.0, max_len=15.0), st.integers(2, 6),
       st.integers(0, 2 ** 31 - 1))
def test_min_image_distances_vs_pymatgen(cell, n, seed):
    from pymatgen.core import Lattice, Structure

    lengths, angles = cell
    rng = np.random.default_rng(seed)
    frac = rng.random((n, 3))
    lat = Lattice.from_parameters(*lengths, *angles)
    s = Structure(lat, ["Si"] * n, frac)
    ours = min_image_distance_matrix(torch.tensor(frac), torch.tensor(lat.matrix)).numpy()
    ref = s.distance_matrix
    off = ~np.eye(n, dtype=bool)
    np.testing.assert_allclose(ours[off], ref[off], atol=1e-8)
    # the diagonal: the shortest lattice vector (brute force over a generous image box)
    rng3 = np.arange(-4, 5)
    img = np.stack(np.meshgrid(rng3, rng3, rng3, indexing="ij"), -1).reshape(-1, 3)
    img = img[np.abs(img).sum(1) > 0]
    shortest = np.linalg.norm(img @ lat.matrix, axis=1).min()
    np.testing.assert_allclose(np.diag(ours), shortest, rtol=1e-10)
    assert min_pair_distance(torch.tensor(frac), torch.tensor(lat.matrix)) == pytest.approx(ours.min())


def test_min_image_distance_needle_cell_is_exact():
    # a 2 x 2 x 20 A needle with a 30 degree angle: the nearest image is several cells away along the short axes
    lat = lattice_params_to_matrix(torch.tensor([2.0, 2.0, 20.0], dtype=torch.float64),
                                   torch.tensor([90.0, 90.0, 30.0], dtype=torch.float64))
    frac = torch.tensor([[0.0, 0.0, 0.0], [0.37, 0.81, 0.5]], dtype=torch.float64)
    d_auto = min_image_distance_matrix(frac, lat)
    d_big = min_image_distance_matrix(frac, lat, n_images=6)
    torch.testing.assert_close(d_auto, d_big)
    assert d_auto[0, 0] == pytest.approx(2 * 2 * math.sin(math.radians(15)))  # |a - b| for a 30-degree rhombus


# ---------------------------------------------------------------------------------------------------------------
# pymatgen / ASE conversion, CIF
# ---------------------------------------------------------------------------------------------------------------

def _random_structure(seed, n=5):
    from pymatgen.core import Lattice, Structure

    rng = np.random.default_rng(seed)
    angles = rng.uniform(60, 120, 3)
    while _cell_factor(angles) < 0.3:
        angles = rng.uniform(60, 120, 3)
    lat = Lattice.from_parameters(*rng.uniform(3, 9, 3), *angles)
    return Structure(lat, rng.choice(["Na", "Cl", "O", "Ti", "Sr"], n).tolist(), rng.random((n, 3)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_structure_tensors_structure_round_trip(seed):
    from pymatgen.analysis.structure_matcher import StructureMatcher

    s = _random_structure(seed)
    t = structure_to_tensors(s)
    assert t["frac_coords"].shape == (5, 3) and t["atom_types"].dtype == torch.long
    out = tensors_to_structures(t["frac_coords"], t["atom_types"], t["lengths"][None], t["angles"][None],
                                torch.tensor([5]))
    assert len(out) == 1 and out[0] is not None
    s2 = out[0]
    assert [sp.Z for sp in s2.species] == [sp.Z for sp in s.species]
    np.testing.assert_allclose(s2.lattice.abc, s.lattice.abc, rtol=1e-6)
    np.testing.assert_allclose(s2.lattice.angles, s.lattice.angles, atol=1e-4)
    np.testing.assert_allclose(s2.frac_coords, s.frac_coords % 1.0, atol=1e-6)
    assert StructureMatcher().fit(s, s2)


def test_tensors_to_structures_batch_and_degenerate_crystals():
    n = torch.tensor([2, 0, 3, 1, 2, 1, 2])
    N = int(n.sum())
    frac = torch.rand(N, 3) * 3 - 1  # unwrapped: wrapped on the way
    z = torch.full((N,), 14)
    lengths = torch.tensor([[4.0, 4, 4], [4, 4, 4], [float("nan"), 4, 4], [4, 4, 4], [4, 4, 4], [4, 4, 4],
                            [1e-3, 1e-3, 1e-3]])
    angles = torch.tensor([[90.0, 90, 90], [90, 90, 90], [90, 90, 90], [90, 90, 90], [170, 170, 170],
                           [90, 90, 90], [90, 90, 90]])
    z[int(n[:5].sum())] = 0  # unknown element in crystal 5
    out = tensors_to_structures(frac, z, lengths, angles, n)
    # 0 ok, 1 no atoms, 2 NaN lattice, 3 ok, 4 angles cannot close a cell, 5 Z = 0, 6 volume ~ 0
    assert [s is not None for s in out] == [True, False, False, True, False, False, False]
    assert len(out[0]) == 2 and len(out[3]) == 1
    assert ((out[0].frac_coords >= 0) & (out[0].frac_coords < 1)).all()
    with pytest.raises(ValueError, match="crystal 1"):
        tensors_to_structures(frac, z, lengths, angles, n, strict=True)
    with pytest.raises(ValueError, match="num_atoms"):
        tensors_to_structures(frac[:-1], z[:-1], lengths, angles, n)


def test_tensors_to_structures_all_empty():
    out = tensors_to_structures(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long), torch.ones(2, 3) * 4,
                                torch.full((2, 3), 90.0), torch.tensor([0, 0]))
    assert out == [None, None]


@pytest.mark.parametrize("seed", [0, 3])
def test_ase_round_trip(seed):
    s = _random_structure(seed)
    atoms = structure_to_atoms(s)
    assert atoms.pbc.all() and len(atoms) == len(s)
    np.testing.assert_allclose(atoms.cell.array, s.lattice.matrix)
    np.testing.assert_allclose(atoms.get_scaled_positions(wrap=False), s.frac_coords, atol=1e-10)
    assert atoms.get_atomic_numbers().tolist() == [sp.Z for sp in s.species]
    s2 = atoms_to_structure(atoms)
    np.testing.assert_allclose(s2.lattice.matrix, s.lattice.matrix)
    np.testing.assert_allclose(s2.cart_coords, s.cart_coords, atol=1e-10)
    assert s2.species == s.species


def _rocksalt():
    from pymatgen.core import Lattice, Structure

    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def test_write_cif_detects_symmetry_and_rereads(tmp_path):
    from pymatgen.analysis.structure_matcher import StructureMatcher
    from pymatgen.core import Structure

    nacl = _rocksalt()
    assert len(nacl) == 8  # conventional cell
    path = write_cif(nacl, tmp_path / "sub" / "nacl.cif")
    text = path.read_text()
    assert "_symmetry_space_group_name_H-M   Fm-3m" in text
    assert "_symmetry_Int_Tables_number   225" in text
    back = Structure.from_file(path)
    assert StructureMatcher().fit(nacl, back)
    assert back.composition.reduced_formula == "NaCl"
    # no temporary files left behind
    assert sorted(p.name for p in path.parent.iterdir()) == ["nacl.cif"]


def test_write_cif_p1_and_noisy_structures(tmp_path):
    from pymatgen.analysis.structure_matcher import StructureMatcher
    from pymatgen.core import Structure

    nacl = _rocksalt()
    p1 = write_cif(nacl, tmp_path / "p1.cif", symprec=None).read_text()
    assert "P 1" in p1 or "P1" in p1
    # a slightly perturbed crystal is still found Fm-3m with the default tolerance (0.1 A)
    noisy = nacl.copy()
    noisy.perturb(0.01)
    text = write_cif(noisy, tmp_path / "noisy.cif").read_text()
    assert "Fm-3m" in text
    assert StructureMatcher().fit(noisy, Structure.from_file(tmp_path / "noisy.cif"))
