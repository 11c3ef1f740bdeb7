"""Tests of the GemNet-T denoiser: symmetries, edge cases, gradients, parameter counts (+ a timing print).

Run: ``python -m pytest -q tests/nets/test_gemnet.py`` (add ``-s`` to see the parameter counts and the timing).
"""
from __future__ import annotations

import math
import time

import pytest
import torch

from dpcdvae.structures.crystal import lattice_params_to_matrix
from dpcdvae.structures.graph import graph_from_edges, radius_graph_pbc
from dpcdvae.nets.gemnet import GemNetTDenoiser, reverse_edges

LATENT = 8
TINY = dict(latent_dim=LATENT, num_blocks=2, emb_size_atom=24, emb_size_edge=16, emb_size_trip=16, emb_size_rbf=8,
            emb_size_cbf=8, emb_size_bil_trip=16, num_spherical=4, num_radial=16, cutoff=5.0, max_neighbors=12,
            num_atom=1, type_emb_dim=16, time_emb_dim=16, fourier=(3, 4))


def tiny_model(dtype=torch.float64, seed=0, **kw):
    torch.manual_seed(seed)
    cfg = dict(TINY)
    cfg.update(kw)
    return GemNetTDenoiser(**cfg).to(dtype)


def random_crystals(num_atoms, dtype=torch.float64, seed=1):
    """Random triclinic cells (lengths 3-4.5 A, angles 75-105 deg) with random fractional coordinates."""
    g = torch.Generator().manual_seed(seed)
    num_atoms = torch.as_tensor(num_atoms, dtype=torch.long)
    B, N = num_atoms.numel(), int(num_atoms.sum())
    lengths = 3.0 + 1.5 * torch.rand(B, 3, generator=g, dtype=dtype)
    angles = 75.0 + 30.0 * torch.rand(B, 3, generator=g, dtype=dtype)
    lattice = lattice_params_to_matrix(lengths, angles).to(dtype)
    frac = torch.rand(N, 3, generator=g, dtype=dtype)
    batch = torch.arange(B).repeat_interleave(num_atoms)
    types = torch.randint(1, 101, (N,), generator=g)
    z = torch.randn(B, LATENT, generator=g, dtype=dtype)
    t = torch.randint(1, 1000, (B,), generator=g)
    return dict(frac_t=frac, atom_types=types, z=z, t=t, lattice=lattice, batch=batch, num_atoms=num_atoms)


def random_rotation(dtype=torch.float64, seed=3):
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=dtype))
    q = q * torch.sign(torch.diagonal(r))
    if torch.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


@pytest.fixture(scope="module")
def model():
    """max_neighbors=12: truncated, non-symmetric graphs (some edges have no reverse edge)."""
    return tiny_model().eval()


@pytest.fixture(scope="module")
def model_full():
    """max_neighbors=None: every edge within the cutoff (no tie-breaking at the truncation shell)."""
    return tiny_model(max_neighbors=None).eval()


@pytest.fixture(scope="module")
def crystals():
    return random_crystals([3, 5, 2, 4])


def _graph(c, max_neighbors=12):
    return radius_graph_pbc(c["frac_t"], c["lattice"], c["batch"], 5.0, max_neighbors)


# Note on symmetry tests with truncated graphs: the radius graph keeps the ``max_neighbors`` nearest sources with
# ties broken by index/round-off; self-images +o and -o of an atom are always exactly tied, so rotating or permuting
# the input can flip which of the two survives the cut (a property of the graph, not of the network). The truncated
# model is therefore tested on the *same* graph carried through the transformation (graph_from_edges), and the
# untruncated model on graphs rebuilt from the transformed input.


def test_shapes_and_graph_nontrivial(model, crystals):
    eps, logits = model(**crystals)
    N = crystals["frac_t"].shape[0]
    assert eps.shape == (N, 3) and logits.shape == (N, 100)
    assert torch.isfinite(eps).all() and torch.isfinite(logits).all()
    g = _graph(crystals)
    assert g.num_edges > 0 and g.idx_kj.numel() > 0
    # max_neighbors truncation makes the graph non-symmetric: some edges have no reverse (handled as zero)
    sw = reverse_edges(g.edge_index, g.offsets, N)
    ok = sw >= 0
    assert (~ok).any() and ok.any()
    assert torch.equal(sw[sw[ok]], torch.nonzero(ok).squeeze(1))  # reverse of reverse is the edge itself
    assert eps.abs().max() > 0


def _rotated(c, R):
    return dict(c, lattice=c["lattice"] @ R.T)


def test_rotation_invariance_of_frac_outputs(model, model_full, crystals):
    """Rotating the Cartesian frame (L -> L R^T) leaves eps_frac and the type logits unchanged."""
    R = random_rotation()
    rot = _rotated(crystals, R)
    # untruncated graph rebuilt from the rotated input
    eps, logits = model_full(**crystals)
    eps_r, logits_r = model_full(**rot)
    torch.testing.assert_close(eps_r, eps, atol=1e-8, rtol=1e-6)
    torch.testing.assert_close(logits_r, logits, atol=1e-8, rtol=1e-6)
    # truncated graph, same edges in the rotated frame
    g = _graph(crystals)
    g_r = graph_from_edges(rot["frac_t"], rot["lattice"], rot["batch"], g.edge_index, g.offsets)
    eps, logits = model(**crystals, graph=g)
    eps_r, logits_r = model(**rot, graph=g_r)
    torch.testing.assert_close(eps_r, eps, atol=1e-8, rtol=1e-6)
    torch.testing.assert_close(logits_r, logits, atol=1e-8, rtol=1e-6)


def test_rotation_float32(crystals):
    m = tiny_model(torch.float32, max_neighbors=None).eval()
    c32 = {k: (v.float() if v.is_floating_point() else v) for k, v in crystals.items()}
    eps, logits = m(**c32)
    R = random_rotation(torch.float32)
    eps_r, logits_r = m(**_rotated(c32, R))
    torch.testing.assert_close(eps_r, eps, atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(logits_r, logits, atol=1e-3, rtol=1e-3)


def test_cartesian_force_is_equivariant(model_full, crystals):
    """F = eps_frac @ L rotates with the frame: F(L R^T) = F(L) R^T."""
    eps, _ = model_full(**crystals)
    R = random_rotation(seed=7)
    rot = _rotated(crystals, R)
    eps_r, _ = model_full(**rot)
    b = crystals["batch"]
    F = torch.einsum("ni,nij->nj", eps, crystals["lattice"][b])
    F_r = torch.einsum("ni,nij->nj", eps_r, rot["lattice"][b])
    torch.testing.assert_close(F_r, F @ R.T, atol=1e-8, rtol=1e-6)


def _within_crystal_perm(num_atoms, seed=5):
    g = torch.Generator().manual_seed(seed)
    perm, start = [], 0
    for n in num_atoms.tolist():
        perm.append(start + torch.randperm(n, generator=g))
        start += n
    return torch.cat(perm)


def test_permutation_equivariance(model, model_full, crystals):
    """Permuting atoms inside each crystal permutes the outputs."""
    perm = _within_crystal_perm(crystals["num_atoms"])
    pc = dict(crystals, frac_t=crystals["frac_t"][perm], atom_types=crystals["atom_types"][perm])
    eps, logits = model_full(**crystals)
    eps_p, logits_p = model_full(**pc)
    torch.testing.assert_close(eps_p, eps[perm], atol=1e-8, rtol=1e-6)
    torch.testing.assert_close(logits_p, logits[perm], atol=1e-8, rtol=1e-6)
    # truncated graph carried through the permutation (new index of old atom a is inv[a]); edges also shuffled
    g = _graph(crystals)
    inv = torch.argsort(perm)
    shuffle = torch.randperm(g.num_edges, generator=torch.Generator().manual_seed(6))
    g_p = graph_from_edges(pc["frac_t"], pc["lattice"], pc["batch"], inv[g.edge_index][:, shuffle],
                           g.offsets[shuffle])
    eps, logits = model(**crystals, graph=g)
    eps_p, logits_p = model(**pc, graph=g_p)
    torch.testing.assert_close(eps_p, eps[perm], atol=1e-8, rtol=1e-6)
    torch.testing.assert_close(logits_p, logits[perm], atol=1e-8, rtol=1e-6)


def test_crystals_are_independent_in_a_batch(model, model_full, crystals):
    """Each crystal's output does not depend on the other crystals in the batch."""
    sel = crystals["batch"] == 1
    one = dict(frac_t=crystals["frac_t"][sel], atom_types=crystals["atom_types"][sel], z=crystals["z"][1:2],
               t=crystals["t"][1:2], lattice=crystals["lattice"][1:2],
               batch=torch.zeros(int(sel.sum()), dtype=torch.long))
    eps, logits = model_full(**crystals)
    eps1, logits1 = model_full(**one)
    torch.testing.assert_close(eps1, eps[sel], atol=1e-8, rtol=1e-6)
    torch.testing.assert_close(logits1, logits[sel], atol=1e-8, rtol=1e-6)
    # truncated graph: the crystal's own edges, cut out of the batch graph
    g = _graph(crystals)
    first = int(torch.nonzero(sel)[0])
    emask = sel[g.edge_index[1]]
    g1 = graph_from_edges(one["frac_t"], one["lattice"], one["batch"], g.edge_index[:, emask] - first,
                          g.offsets[emask])
    eps, logits = model(**crystals, graph=g)
    eps1, logits1 = model(**one, graph=g1)
    torch.testing.assert_close(eps1, eps[sel], atol=1e-8, rtol=1e-6)
    torch.testing.assert_close(logits1, logits[sel], atol=1e-8, rtol=1e-6)


def test_lattice_translation_of_one_atom(model, model_full, crystals):
    """frac -> frac + integer vector for some atoms changes nothing (the network wraps its input), and a graph
    built from the *unwrapped* coordinates describes the same physics (same edges/distances, same outputs)."""
    shifted = crystals["frac_t"].clone()
    shifted[4] += torch.tensor([1.0, -2.0, 3.0], dtype=shifted.dtype)
    shifted[0] += torch.tensor([0.0, 0.0, -1.0], dtype=shifted.dtype)
    sc = dict(crystals, frac_t=shifted)
    for m in (model, model_full):
        eps, logits = m(**crystals)
        eps_s, logits_s = m(**sc)
        torch.testing.assert_close(eps_s, eps, atol=1e-8, rtol=1e-6)
        torch.testing.assert_close(logits_s, logits, atol=1e-8, rtol=1e-6)
    # untruncated graph from the unwrapped coordinates: same (target, source, distance) multiset
    g_w = _graph(crystals, None)
    g_u = _graph(sc, None)
    assert g_u.num_edges == g_w.num_edges and g_u.idx_kj.numel() == g_w.idx_kj.numel()
    key_w = sorted(zip(g_w.edge_index[1].tolist(), g_w.edge_index[0].tolist(), g_w.dist.round(decimals=9).tolist()))
    key_u = sorted(zip(g_u.edge_index[1].tolist(), g_u.edge_index[0].tolist(), g_u.dist.round(decimals=9).tolist()))
    assert key_w == key_u
    eps, logits = model_full(**crystals)
    eps_g, logits_g = model_full(**sc, graph=g_u)
    torch.testing.assert_close(eps_g, eps, atol=1e-8, rtol=1e-6)
    torch.testing.assert_close(logits_g, logits, atol=1e-8, rtol=1e-6)
    # truncated graph: its edges re-expressed for the unwrapped coordinates (offsets shift by the integer moves)
    g = _graph(crystals)
    n = torch.round(shifted - crystals["frac_t"])
    j, i = g.edge_index
    g_s = graph_from_edges(shifted, crystals["lattice"], crystals["batch"], g.edge_index, g.offsets - n[j] + n[i])
    torch.testing.assert_close(g_s.vec, g.vec, atol=1e-9, rtol=0)
    eps, logits = model(**crystals)
    eps_g, logits_g = model(**sc, graph=g_s)
    torch.testing.assert_close(eps_g, eps, atol=1e-8, rtol=1e-6)
    torch.testing.assert_close(logits_g, logits, atol=1e-8, rtol=1e-6)


def test_batch_of_one_and_one_atom_crystal(model, model_full):
    one = random_crystals([4], seed=11)
    eps, logits = model(**one)
    assert eps.shape == (4, 3) and torch.isfinite(eps).all() and torch.isfinite(logits).all()
    # scalar t for the whole batch
    eps2, _ = model(**dict(one, t=one["t"][0]))
    torch.testing.assert_close(eps2, eps)
    # one-atom crystal alone and inside a batch; it has only self-image edges
    single = random_crystals([1], seed=12)
    eps1, logits1 = model(**single)
    assert eps1.shape == (1, 3) and logits1.shape == (1, 100) and torch.isfinite(eps1).all()
    mixed = random_crystals([1, 3], seed=13)
    eps_m, _ = model(**mixed)
    assert eps_m.shape == (4, 3) and torch.isfinite(eps_m).all()
    # without neighbour truncation a one-atom crystal is centrosymmetric: the force sums to zero
    e0, _ = model_full(**single)
    assert e0.abs().max() < 1e-9


def test_no_edges(model):
    """A crystal whose cell is larger than the cutoff in every direction: no edges, zero eps, finite logits."""
    c = random_crystals([1], seed=14)
    c["lattice"] = 12.0 * torch.eye(3, dtype=torch.float64)[None]
    eps, logits = model(**c)
    assert torch.equal(eps, torch.zeros_like(eps)) and torch.isfinite(logits).all()


def test_gradients_reach_all_parameters(crystals):
    m = tiny_model(torch.float32).train()
    c32 = {k: (v.float() if v.is_floating_point() else v) for k, v in crystals.items()}
    eps, logits = m(**c32)
    loss = (eps - torch.randn_like(eps)).pow(2).mean() + torch.nn.functional.cross_entropy(
        logits, c32["atom_types"] - 1)
    loss.backward()
    for name, p in m.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().max() > 0, name


def test_checkpoint_blocks_same_outputs_and_gradients(crystals):
    """Activation checkpointing recomputes the blocks in the backward pass: identical outputs and gradients."""
    grads = []
    for ckpt in (False, True):
        m = tiny_model(checkpoint_blocks=ckpt).train()
        calls, fwd = [], m.blocks[0].forward
        m.blocks[0].forward = lambda *a, _f=fwd, **k: calls.append(1) or _f(*a, **k)
        out_calls, ofwd = [], m.out_blocks[1].forward
        m.out_blocks[1].forward = lambda *a, _f=ofwd, **k: out_calls.append(1) or _f(*a, **k)
        z = crystals["z"].clone().requires_grad_(True)
        eps, logits = m(**{**crystals, "z": z})
        loss = eps.pow(2).sum() + logits.logsumexp(-1).sum()
        loss.backward()
        assert len(calls) == (2 if ckpt else 1)  # checkpointing really recomputes the block in backward
        assert len(out_calls) == (2 if ckpt else 1)  # and the output block
        grads.append((eps.detach(), logits.detach(), z.grad, {n: p.grad for n, p in m.named_parameters()}))
    (e0, l0, gz0, g0), (e1, l1, gz1, g1) = grads
    assert torch.allclose(e0, e1, atol=1e-12) and torch.allclose(l0, l1, atol=1e-12)
    assert torch.allclose(gz0, gz1, atol=1e-10)
    for n in g0:
        assert (g0[n] is None) == (g1[n] is None), n
        if g0[n] is not None:
            assert torch.allclose(g0[n], g1[n], atol=1e-10), n


def test_gradcheck_wrt_latent_and_lattice(model_full):
    """Analytic gradients (through the in-place activations/residuals) match finite differences (float64)."""
    c = random_crystals([2, 3], seed=21)

    def f(z, lattice):
        eps, logits = model_full(**dict(c, z=z, lattice=lattice))
        return eps, logits[:, :5]

    z = c["z"].clone().requires_grad_(True)
    lat = c["lattice"].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(f, (z, lat), eps=1e-6, atol=1e-5, rtol=1e-4)


def test_fit_scale_factors(crystals):
    """Scale factors: fitted at construction (buffers, in the state dict), refittable on a batch in one pass."""
    m = tiny_model()
    nb = TINY["num_blocks"]
    names = [k for k in m.state_dict() if k.endswith(".scale")]
    assert len(names) == 3 * nb + (nb + 1)  # trip rbf, trip sum, atom sum per block; one per output block
    assert all(float(m.state_dict()[k]) != 1.0 for k in names)  # fitted at construction
    fitted = m.fit_scale_factors(**crystals)
    assert len(fitted) == len(names)
    assert all(v > 0 and math.isfinite(v) for v in fitted.values())
    eps, logits = m(**crystals)
    assert torch.isfinite(eps).all() and torch.isfinite(logits).all()
    assert not any(p.requires_grad for n, p in m.named_buffers() if n.endswith(".scale"))
    m1 = tiny_model(fit_scales=False)
    assert all(float(v) == 1.0 for k, v in m1.state_dict().items() if k.endswith(".scale"))


def _energy_branch_params(model: GemNetTDenoiser, emb_size_rbf=16, emb_size_edge=128, num_atom=3) -> int:
    """Parameters of the atom/energy branch of GemNet's output blocks that the published code builds (and never
    uses): per output block Dense(rbf -> edge), Dense(edge -> atom), num_atom residual layers, Linear(atom -> 1)."""
    A = model.emb_size_atom
    per_block = emb_size_rbf * emb_size_edge + emb_size_edge * A + num_atom * 2 * A * A + A
    return len(model.out_blocks) * per_block


@pytest.mark.parametrize("project_input, lo, hi, pub_lo, pub_hi", [(True, 1.9e6, 2.2e6, 2.3e6, 2.6e6),
                                                                  (False, 8.0e6, 8.6e6, 15.5e6, 16.1e6)])
def test_parameter_counts_paper_config(project_input, lo, hi, pub_lo, pub_hi):
    m = GemNetTDenoiser(project_input=project_input)
    n = sum(p.numel() for p in m.parameters())
    pub = n + _energy_branch_params(m)
    print(f"\nGemNetTDenoiser(project_input={project_input}): atom width {m.emb_size_atom}, {n:,} parameters; "
          f"+ unused energy branch of the published code = {pub:,}")
    assert lo < n < hi
    assert pub_lo < pub < pub_hi


def perov_like_batch(B: int = 16, seed: int = 0):
    """16 Perov-like 5-atom crystals (cubic ~4 A cells, ABO3 positions jittered), float32."""
    g = torch.Generator().manual_seed(seed)
    n = 5
    base = torch.tensor([[0, 0, 0], [.5, .5, .5], [.5, .5, 0], [.5, 0, .5], [0, .5, .5]])
    frac = (base.repeat(B, 1) + 0.05 * torch.randn(B * n, 3, generator=g)) % 1.0
    lattice = 4.0 * torch.eye(3).repeat(B, 1, 1) + 0.1 * torch.randn(B, 3, 3, generator=g)
    batch = torch.arange(B).repeat_interleave(n)
    types = torch.randint(1, 101, (B * n,), generator=g)
    z = torch.randn(B, 256, generator=g)
    t = torch.randint(1, 1000, (B,), generator=g)
    return frac, types, z, t, lattice, batch


def time_paper_config(threads: int = 2, repeats: int = 3, B: int = 16) -> dict:
    """Forward time per structure-step (graph building included), paper config, ``B`` Perov-like crystals."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    out = {}
    try:
        args = perov_like_batch(B)
        for project_input in (True, False):
            m = GemNetTDenoiser(project_input=project_input).eval()
            with torch.inference_mode():
                m(*args)
                times = []
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    m(*args)
                    times.append(time.perf_counter() - t0)
            best = min(times)
            out[project_input] = B / best
            print(f"[timing] project_input={project_input}: {best * 1e3:.1f} ms per call of {B} structures "
                  f"(graph included) -> {B / best:.0f} structure-steps/s ({threads} threads, best of {repeats})")
    finally:
        torch.set_num_threads(old)
    return out


@pytest.mark.slow
def test_timing_print_paper_config():
    """Not an assertion: prints the forward speed (``pytest -s``). For a clean number run the file directly on an
    otherwise idle machine: ``python tests/nets/test_gemnet.py`` (best of 20, 2 threads)."""
    rates = time_paper_config(threads=2, repeats=3)
    assert all(r > 0 for r in rates.values())


if __name__ == "__main__":
    time_paper_config(threads=2, repeats=20)
