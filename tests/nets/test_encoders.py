"""Periodic DimeNet++, GINE and the four DP-CDVAE encoder variants: shapes and symmetries."""
from __future__ import annotations

import math

import pytest
import torch

from dpcdvae.structures.graph import crystalnn_edges, graph_from_edges, radius_graph_pbc
from dpcdvae.nets.dimenet import PeriodicDimeNetPlusPlus, drop_backtracking_triplets, triplet_angles
from dpcdvae.nets.encoder import VARIANTS, CrystalEncoder, NumAtomsEncoder, symmetrize_edges
from dpcdvae.nets.gine import GINEEncoder

pymatgen = pytest.importorskip("pymatgen.core")


def _structures():
    from pymatgen.core import Lattice, Structure

    nacl = Structure(Lattice.cubic(5.64), ["Na", "Cl"] * 4,
                     [[0, 0, 0], [0.5, 0, 0], [0.5, 0.5, 0], [0, 0.5, 0], [0.5, 0, 0.5], [0, 0, 0.5],
                      [0, 0.5, 0.5], [0.5, 0.5, 0.5]]).get_primitive_structure()
    sto = Structure(Lattice.cubic(3.905), ["Sr", "Ti", "O", "O", "O"],
                    [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    si = Structure(Lattice.from_parameters(3.84, 3.84, 3.84, 60, 60, 60), ["Si", "Si"],
                   [[0, 0, 0], [0.25, 0.25, 0.25]])
    tri = Structure(Lattice.from_parameters(4.1, 4.6, 5.2, 80, 95, 105), ["Mg", "O", "O"],
                    [[0.1, 0.2, 0.3], [0.6, 0.55, 0.4], [0.3, 0.8, 0.85]])
    return [nacl, sto, si, tri]


def _collate(structs):
    fr, zs, lat, nat, eis, offs = [], [], [], [], [], []
    start = 0
    for s in structs:
        ei, off = crystalnn_edges(s)
        fr.append(torch.tensor(s.frac_coords, dtype=torch.float64))
        zs.append(torch.tensor([site.specie.Z for site in s]))
        lat.append(torch.tensor(s.lattice.matrix, dtype=torch.float64))
        nat.append(len(s))
        eis.append(ei + start)
        offs.append(off)
        start += len(s)
    num_atoms = torch.tensor(nat)
    return {
        "frac": torch.cat(fr), "z": torch.cat(zs), "lattice": torch.stack(lat), "num_atoms": num_atoms,
        "batch": torch.repeat_interleave(torch.arange(len(structs)), num_atoms),
        "edge_index": torch.cat(eis, 1), "to_jimages": torch.cat(offs),
    }


@pytest.fixture(scope="module")
def crystals():
    return _collate(_structures())


@pytest.fixture(scope="module")
def dimenet():
    torch.manual_seed(0)
    m = PeriodicDimeNetPlusPlus(out_channels=8, output_initializer="glorot_orthogonal", num_atom_types=101)
    return m.double().eval()


def _dime_out(model, d, graph="radius"):
    if graph == "radius":
        g = radius_graph_pbc(d["frac"], d["lattice"], d["batch"], cutoff=7.0, max_neighbors=None)
    else:
        ei, off = symmetrize_edges(d["edge_index"], d["to_jimages"])
        g = graph_from_edges(d["frac"], d["lattice"], d["batch"], ei, off)
    with torch.no_grad():
        return model(d["z"], g, d["batch"], num_graphs=int(d["num_atoms"].numel()))


def _random_rotation(seed=0):
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    if torch.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


# ------------------------------------------------------------------------------------------------------------------
# DimeNet++
# ------------------------------------------------------------------------------------------------------------------

def test_dimenet_parameter_names_match_pyg():
    m = PeriodicDimeNetPlusPlus(out_channels=1)
    names = set(m.state_dict())
    assert len(names) == 152
    for k in range(5):
        assert f"output_blocks.{k}.lin_up.bias" in names
    assert m.emb.emb.weight.shape == (95, 128)
    assert {n.split(".")[0] for n in names} == {"rbf", "emb", "output_blocks", "interaction_blocks"}


def test_cached_spherical_basis_equals_pyg(tmp_path, monkeypatch):
    from torch_geometric.nn.models.dimenet import SphericalBasisLayer

    from dpcdvae.nets import dimenet as dn

    monkeypatch.setenv("DPCDVAE_CACHE", str(tmp_path))
    monkeypatch.setattr(dn, "_SBF_FUNCS", {})
    ours = dn._CachedSphericalBasisLayer(3, 2, cutoff=5.0, envelope_exponent=5)  # small: fast sympy
    assert list((tmp_path / "dimenet_basis").glob("sbf_3_2_*.pkl"))
    monkeypatch.setattr(dn, "_SBF_FUNCS", {})
    again = dn._CachedSphericalBasisLayer(3, 2, cutoff=5.0, envelope_exponent=5)  # from the disk cache
    ref = SphericalBasisLayer(3, 2, cutoff=5.0, envelope_exponent=5)
    g = torch.Generator().manual_seed(0)
    dist, ang = torch.rand(20, generator=g) * 6, torch.rand(50, generator=g) * math.pi
    idx = torch.randint(0, 20, (50,), generator=g)
    assert torch.equal(ours(dist, ang, idx), ref(dist, ang, idx))
    assert torch.equal(again(dist, ang, idx), ref(dist, ang, idx))


def test_triplet_angle_is_angle_between_vec_ji_and_vec_kj():
    vec = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [-1.0, 1.0, 0.0]])
    ang = triplet_angles(vec, idx_kj=torch.tensor([1, 2]), idx_ji=torch.tensor([0, 0]))
    assert torch.allclose(ang, torch.tensor([math.pi / 2, 3 * math.pi / 4]), atol=1e-6)


@pytest.mark.parametrize("graph", ["radius", "crystalnn"])
def test_dimenet_rotation_invariance(dimenet, crystals, graph):
    d = dict(crystals)
    out = _dime_out(dimenet, d, graph)
    rot = _random_rotation(1)
    d["lattice"] = crystals["lattice"] @ rot.T  # rotate every lattice vector (rows) by R
    out_rot = _dime_out(dimenet, d, graph)
    assert out.abs().max() > 1e-3
    assert torch.allclose(out, out_rot, atol=1e-9, rtol=1e-7)


@pytest.mark.parametrize("graph", ["radius", "crystalnn"])
def test_dimenet_permutation_invariance(dimenet, crystals, graph):
    d = dict(crystals)
    out = _dime_out(dimenet, d, graph)
    # permute atoms within each crystal (batch stays contiguous)
    perm = []
    start = 0
    g = torch.Generator().manual_seed(3)
    for n in crystals["num_atoms"].tolist():
        perm.append(start + torch.randperm(n, generator=g))
        start += n
    perm = torch.cat(perm)  # new atom k = old atom perm[k]
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(perm.numel())
    d["frac"], d["z"], d["batch"] = crystals["frac"][perm], crystals["z"][perm], crystals["batch"][perm]
    d["edge_index"] = inv[crystals["edge_index"]]
    out_p = _dime_out(dimenet, d, graph)
    assert torch.allclose(out, out_p, atol=1e-9, rtol=1e-7)


@pytest.mark.parametrize("graph", ["radius", "crystalnn"])
def test_dimenet_lattice_shift_invariance(dimenet, crystals, graph):
    d = dict(crystals)
    out = _dime_out(dimenet, d, graph)
    atom = 3  # first atom of the perovskite
    shift = torch.tensor([1.0, -2.0, 1.0], dtype=torch.float64)
    d["frac"] = crystals["frac"].clone()
    d["frac"][atom] += shift
    # the same bonds: an edge from the moved atom needs offset - shift, an edge into it offset + shift
    off = crystals["to_jimages"].clone().double()
    j, i = crystals["edge_index"]
    off[j == atom] -= shift
    off[i == atom] += shift
    d["to_jimages"] = off
    out_s = _dime_out(dimenet, d, graph)
    assert torch.allclose(out, out_s, atol=1e-9, rtol=1e-7)


def test_dimenet_batch_independence(dimenet, crystals):
    out = _dime_out(dimenet, crystals, "crystalnn")
    structs = _structures()
    for k in (0, 2):
        single = _dime_out(dimenet, _collate([structs[k]]), "crystalnn")
        assert single.shape == (1, 8)
        assert torch.allclose(single[0], out[k], atol=1e-9, rtol=1e-7)


def test_drop_backtracking_triplets(crystals):
    g = radius_graph_pbc(crystals["frac"], crystals["lattice"], crystals["batch"], cutoff=5.0)
    kj, ji = drop_backtracking_triplets(g.edge_index, g.idx_kj, g.idx_ji)
    assert kj.numel() < g.idx_kj.numel()
    assert (g.edge_index[0, kj] != g.edge_index[1, ji]).all()
    assert (g.edge_index[1, kj] == g.edge_index[0, ji]).all()  # k->j then j->i


def test_symmetrize_edges(crystals):
    ei, off = symmetrize_edges(crystals["edge_index"], crystals["to_jimages"])
    fwd = {(int(a), int(b), tuple(o.tolist())) for a, b, o in zip(ei[0], ei[1], off)}
    assert len(fwd) == ei.shape[1]
    assert all((b, a, tuple(-x for x in o)) in fwd for a, b, o in fwd)
    orig = {(int(a), int(b), tuple(o.tolist())) for a, b, o in
            zip(crystals["edge_index"][0], crystals["edge_index"][1], crystals["to_jimages"])}
    assert orig <= fwd
    ei2, off2 = symmetrize_edges(ei, off)
    assert torch.equal(ei, ei2) and torch.equal(off, off2)


# ------------------------------------------------------------------------------------------------------------------
# encoders
# ------------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def encoders():
    torch.manual_seed(0)
    return {v: CrystalEncoder(v, max_atoms=20, output_initializer="glorot_orthogonal") for v in VARIANTS}


def _enc_inputs(d):
    return dict(frac_coords=d["frac"].float(), atom_types=d["z"], num_atoms=d["num_atoms"],
                lattice=d["lattice"].float(), batch=d["batch"], edge_index=d["edge_index"],
                to_jimages=d["to_jimages"])


@pytest.mark.parametrize("variant", VARIANTS)
def test_encoder_variants_forward_and_gradients(encoders, crystals, variant):
    enc = encoders[variant]
    enc.zero_grad()
    out = enc(**_enc_inputs(crystals))
    assert out.shape == (4, 256) and torch.isfinite(out).all()
    out.pow(2).mean().backward()
    missing = [n for n, p in enc.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()
               or p.grad.abs().sum() == 0]
    assert not missing, f"no gradient for {missing}"


@pytest.mark.parametrize("variant", VARIANTS)
def test_encoder_variants_radius_graph_and_batch_of_one(encoders, crystals, variant):
    enc = encoders[variant]
    enc.graph_method = "radius"
    try:
        with torch.no_grad():
            out = enc(**_enc_inputs(crystals))
            one = enc(**_enc_inputs(_collate(_structures()[1:2])))
    finally:
        enc.graph_method = "crystalnn"
    assert out.shape == (4, 256) and torch.isfinite(out).all()
    assert one.shape == (1, 256)
    assert torch.allclose(one[0], out[1], atol=1e-4, rtol=1e-4)


def test_encoder_rotation_invariance(encoders, crystals):
    enc = encoders["na_gine"]
    d = dict(crystals)
    d["lattice"] = crystals["lattice"] @ _random_rotation(5).T
    with torch.no_grad():
        a = enc(**_enc_inputs(crystals))
        b = enc(**_enc_inputs(d))
    assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)


def test_encoder_forward_batch_wrapper(encoders, crystals):
    from types import SimpleNamespace

    from dpcdvae.structures.crystal import matrix_to_lattice_params

    lengths, angles = matrix_to_lattice_params(crystals["lattice"])
    data = SimpleNamespace(frac_coords=crystals["frac"].float(), atom_types=crystals["z"],
                           lengths=lengths.float(), angles=angles.float(), num_atoms=crystals["num_atoms"],
                           batch=crystals["batch"], edge_index=crystals["edge_index"],
                           to_jimages=crystals["to_jimages"])
    with torch.no_grad():
        a = encoders["gine"].forward_batch(data)
        b = encoders["gine"](**_enc_inputs(crystals))  # different frame, same crystals
    assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)


def test_default_init_starts_at_zero_and_counts(crystals):
    enc = CrystalEncoder("dpcdvae")  # CDVAE's zero-initialised output layers
    with torch.no_grad():
        out = enc(**_enc_inputs(crystals))
    assert torch.count_nonzero(out) == 0
    counts = enc.num_parameters()
    assert counts["total"] == counts["dimenet"] == 2_214_278


@pytest.mark.parametrize("graph", ["crystalnn", "radius"])
def test_encoder_cdvae_triplet_rule(crystals, graph):
    enc = CrystalEncoder("dpcdvae", graph=graph, triplets="cdvae")
    inp = _enc_inputs(crystals)
    g = enc.build_graph(inp["frac_coords"], inp["lattice"], inp["batch"], inp["edge_index"], inp["to_jimages"])
    assert (g.edge_index[0, g.idx_kj] != g.edge_index[1, g.idx_ji]).all()
    assert enc(**inp).shape == (4, 256)


def test_crystalnn_graph_required(encoders, crystals):
    inp = _enc_inputs(crystals)
    inp["edge_index"] = None
    with pytest.raises(ValueError, match="radius"):
        encoders["dpcdvae"](**inp)


@pytest.mark.parametrize("mode", ["mlp", "embedding", "onehot_mlp"])
def test_num_atoms_encoder(mode):
    m = NumAtomsEncoder(32, max_atoms=20, mode=mode)
    out = m(torch.tensor([1, 5, 20]))
    assert out.shape == (3, 32)
    if mode != "mlp":
        with pytest.raises(ValueError):
            m(torch.tensor([21]))


def test_gine_invariances(crystals):
    torch.manual_seed(0)
    gine = GINEEncoder(hidden_dim=32, out_dim=16).double()
    d = crystals
    ei, off = symmetrize_edges(d["edge_index"], d["to_jimages"])
    g = graph_from_edges(d["frac"], d["lattice"], d["batch"], ei, off, triplets=False)
    a = gine(d["z"], g.edge_index, g.dist, d["batch"], num_graphs=4)
    g2 = graph_from_edges(d["frac"], d["lattice"] @ _random_rotation(2).T, d["batch"], ei, off, triplets=False)
    b = gine(d["z"], g2.edge_index, g2.dist, d["batch"], num_graphs=4)
    assert a.shape == (4, 16)
    assert torch.allclose(a, b, atol=1e-9)


def test_dimenet_checkpoint_blocks_same_outputs_and_gradients(crystals):
    """Activation checkpointing of DimeNet++ recomputes its blocks in the backward pass: identical outputs and
    gradients, and the blocks really run twice."""
    d = crystals
    g = radius_graph_pbc(d["frac"], d["lattice"], d["batch"], cutoff=7.0, max_neighbors=None)
    res = []
    for ckpt in (False, True):
        torch.manual_seed(0)
        m = PeriodicDimeNetPlusPlus(out_channels=8, output_initializer="glorot_orthogonal", num_atom_types=101,
                                    checkpoint_blocks=ckpt).double().train()
        calls, fwd = [], m.interaction_blocks[1].forward
        m.interaction_blocks[1].forward = lambda *a, _f=fwd, **k: calls.append(1) or _f(*a, **k)
        out = m(d["z"], g, d["batch"], num_graphs=int(d["num_atoms"].numel()))
        (out.pow(2).sum() + out.sin().sum()).backward()
        assert len(calls) == (2 if ckpt else 1)
        res.append((out.detach(), {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}))
    (o0, g0), (o1, g1) = res
    assert torch.allclose(o0, o1, atol=1e-12)
    assert g0.keys() == g1.keys() and len(g0) > 10
    for n in g0:
        assert torch.allclose(g0[n], g1[n], atol=1e-10), n
