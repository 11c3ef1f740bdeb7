"""GemNet-T denoiser of DP-CDVAE: ``eps_theta`` on fractional coordinates and atom-type logits.

Written from the GemNet paper (Gasteiger, Becker & Guennemann, NeurIPS 2021), triplet variant (GemNet-T, no
quadruplets), with the direct force head; building blocks in :mod:`dpcdvae.nets.gemnet_layers`.

Inputs per atom (paper Sec. IV.C, S3): ``[type embedding (128) | z of its crystal (256) | time embedding (128) |
Fourier features of the wrapped fractional coordinates (36)]`` = 548 features.

* ``project_input=True`` (default, CDVAE's choice): one Linear 548 -> ``emb_size_atom`` (128) before the
  blocks. 2.03 M parameters with the paper defaults.
* ``project_input=False`` (the published DP-CDVAE code's choice): a width-preserving MLP
  ``Linear(548, 548)-ReLU-Linear(548, 548)`` and the atom width stays 548 through every block (``emb_size_atom``
  is then ignored). 8.31 M parameters.

The published counts (about 2.4 M for CDVAE's decoder, 15.8 M for DP-CDVAE's) also include the energy branch of
GemNet's output blocks (per output block: Dense(rbf -> edge), Dense(edge -> atom), ``num_atom`` residual layers of
the atom width and Linear(atom -> 1)), which the published code evaluates on every call and throws away. It is not
built here; adding its size back gives 2.50 M (minus our time embedding, 0.13 M, which CDVAE lacks: 2.37 M) and
15.80 M (``tests/nets/test_gemnet.py::test_parameter_counts_paper_config``).

Graph symmetry: a radius graph truncated to ``max_neighbors`` is not symmetric (edge j->i may be kept while i->j
is not). GemNet's symmetric message update needs the reverse edge; here a missing reverse edge contributes zero
(the graph is used as given). The published code instead symmetrises the graph (keeps one direction of each pair
and mirrors it), which changes the neighbour sets slightly.

Geometry: the graph is the periodic radius graph (cutoff 7 A, at most 20 nearest neighbours per atom) of the
current wrapped coordinates, rebuilt on every call unless ``graph`` is given. Distances go through a Gaussian
radial basis (``num_radial`` = 128 centres on [0, cutoff]) times the polynomial envelope (p = 5); triplet angles
``theta_kji`` (at atom j, between j->k and j->i, from the image-shifted edge vectors) go through
``Y_l^0(cos theta) x rbf(d_kj)`` (``num_spherical`` x ``num_radial``), projected once per call to ``emb_size_cbf``
and shared by all blocks.

Outputs:

* ``eps_frac [N, 3]``: the direct force head gives a scalar per edge ``f_ji`` (summed over the
  ``num_blocks + 1`` output blocks); ``F_i = sum_j f_ji * vec_ji / |vec_ji|`` is a Cartesian vector (Angstrom
  frame, rotates with the lattice); the fractional noise is the fractional displacement that corresponds to it,
  ``eps_frac = F @ inv(L)`` (rows of ``L`` are lattice vectors, ``cart = frac @ L``). Rotating the Cartesian frame
  (``L -> L R^T``) rotates ``F -> F R^T`` and leaves ``eps_frac`` unchanged. With ``eps_frame="code"`` (the
  published code) ``F`` itself is returned as the fractional noise (no ``inv(L)``; not invariant to a rotation of
  the Cartesian frame, and its scale then depends on the cell).
* ``type_logits [N, 100]``: ``Linear(atom width -> 100)`` on the *last* atom embedding (after the last
  interaction block), as in CDVAE / DP-CDVAE; class index = Z - 1.

Scale factors: GemNet multiplies every neighbour sum and every "features x basis embedding" product by a fixed
factor fitted so that the result has unit variance at initialisation (13 factors here: 3 per interaction block, 1
per output block). They are fitted at construction on a built-in synthetic Perov-like batch (one forward pass,
private RNG) and stored as buffers; :meth:`GemNetTDenoiser.fit_scale_factors` refits them on a real batch.

Efficiency (1000 calls per sample): the bases (rbf, circular basis, all their shared projections) are computed once
per call; concatenation layers act on the atoms, not the edges; the triplet sum is one batched matmul per block
over a padded ``[E, K, .]`` layout; linear maps that read the same input are fused; no energy head; Gaussians far
in their tails are exactly 0 (avoids slow denormal ``exp``). On CPU, glibc returning large freed blocks to the OS
costs a page fault per page of every per-call temporary; the entry points (command line, trainer,
notebooks, relaxation) call :func:`dpcdvae.utils.alloc.tune_allocator`, which stops that for the process. Every dense layer multiplies through
:mod:`dpcdvae.nets.gemm` (oneDNN on AVX-512 CPUs, where MKL runs its AVX2 code on AMD). Measured speed: BENCHMARKS.md.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
from torch import nn

from ..structures.crystal import wrap
from ..structures.graph import PeriodicGraph, build_triplets, radius_graph_pbc
from .embeddings import FourierFeatures, TimeEmbedding
from .gemm import Linear
from .gemnet_layers import (Dense, EdgeEmbedding, ForceOutput, GaussianRBF, InteractionBlock, ScaleFactor, maybe_checkpoint,
                            TripletLayout, legendre_sph)

__all__ = ["GemNetTDenoiser", "reverse_edges"]


def reverse_edges(edge_index: torch.Tensor, offsets: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """For every edge ``j -> i`` (offset o) the index of the edge ``i -> j`` with offset ``-o``, or -1 if absent.

    (A radius graph truncated to ``max_neighbors`` need not be symmetric.) Pure torch: integer keys, sort,
    searchsorted.
    """
    E = edge_index.shape[1]
    if E == 0:
        return torch.zeros(0, dtype=torch.long, device=edge_index.device)
    src, dst = edge_index
    off = torch.round(offsets).long()
    omax = int(off.abs().max())
    base = 2 * omax + 1

    def key(s, d, o):
        k = s * num_nodes + d
        for a in range(3):
            k = k * base + (o[:, a] + omax)
        return k

    fwd = key(src, dst, off)
    rev = key(dst, src, -off)
    sk, order = torch.sort(fwd)
    pos = torch.searchsorted(sk, rev).clamp(max=E - 1)
    return torch.where(sk[pos] == rev, order[pos], torch.full_like(pos, -1))


class GemNetTDenoiser(nn.Module):
    """GemNet-T noise/type predictor for DP-CDVAE (defaults = the paper configuration).

    Args:
        latent_dim: width of the VAE latent ``z`` broadcast to the atoms of its crystal.
        num_blocks: interaction blocks (there are ``num_blocks + 1`` output blocks).
        emb_size_atom: atom embedding width (ignored when ``project_input=False``; it then equals the input width).
        emb_size_edge, emb_size_trip, emb_size_rbf, emb_size_cbf, emb_size_bil_trip: GemNet-T widths.
        num_spherical, num_radial: angular / radial basis sizes. cutoff: Angstrom. max_neighbors: per target atom.
        envelope_exponent: p of the polynomial envelope.
        num_before_skip, num_after_skip, num_concat, num_atom: residual layers at the respective places.
        type_emb_dim, time_emb_dim: widths of the type and time embeddings; fourier: ``(n_min, n_max)``.
        max_atomic_num: number of type classes (logits width); embedding index = Z - 1.
        project_input: see the module docstring.
        rbf: only ``'gaussian'`` is implemented.
        time_mode, fourier_convention: passed to :class:`TimeEmbedding` / :class:`FourierFeatures`.
        fit_scales: fit the :class:`ScaleFactor` buffers at construction on a built-in synthetic batch of
            Perov-like crystals (one forward pass; see :meth:`fit_scale_factors`). ``False`` leaves them at 1.
        checkpoint_blocks: activation checkpointing: in training, keep only the inputs of each interaction block
            and each output block and recompute them in the backward pass (the triplet tensors of a block and the
            edge MLPs of the output blocks are the bulk of the memory). Same results; less peak memory for about
            one more forward pass of compute.
        eps_frame: ``"fractional"`` (ours: ``eps_frac = F @ inv(L)``) or ``"code"`` (the published code: the
            Cartesian ``F`` is returned as the fractional noise).
    """

    def __init__(self, latent_dim: int = 256, num_blocks: int = 3, emb_size_atom: int = 128,
                 emb_size_edge: int = 128, emb_size_trip: int = 64, emb_size_rbf: int = 16, emb_size_cbf: int = 16,
                 emb_size_bil_trip: int = 64, num_spherical: int = 7, num_radial: int = 128, cutoff: float = 7.0,
                 max_neighbors: Optional[int] = 20, envelope_exponent: int = 5, num_before_skip: int = 1,
                 num_after_skip: int = 2, num_concat: int = 1, num_atom: int = 3, type_emb_dim: int = 128,
                 time_emb_dim: int = 128, fourier: Sequence[int] = (3, 8), max_atomic_num: int = 100,
                 project_input: bool = True, rbf: str = "gaussian", time_mode: str = "integer",
                 fourier_convention: str = "paper", T: int = 1000, time_hidden: int = 512,
                 fit_scales: bool = True, checkpoint_blocks: bool = False, eps_frame: str = "fractional"):
        super().__init__()
        if eps_frame not in ("fractional", "code"):
            raise ValueError(f"eps_frame must be 'fractional' or 'code', got {eps_frame!r}")
        self.eps_frame = eps_frame
        if rbf != "gaussian":
            raise ValueError(f"only rbf='gaussian' is implemented, got {rbf!r}")
        self.latent_dim = latent_dim
        self.cutoff = float(cutoff)
        self.max_neighbors = max_neighbors
        self.num_spherical, self.num_radial, self.emb_size_cbf = num_spherical, num_radial, emb_size_cbf
        self.max_atomic_num = max_atomic_num
        self.project_input = project_input
        self.checkpoint_blocks = bool(checkpoint_blocks)

        self.type_emb = nn.Embedding(max_atomic_num, type_emb_dim)
        self.time_emb = TimeEmbedding(time_emb_dim, time_hidden, T, mode=time_mode)
        self.fourier = FourierFeatures(fourier[0], fourier[1], convention=fourier_convention)
        self.input_dim = type_emb_dim + latent_dim + time_emb_dim + self.fourier.out_dim
        if project_input:  # CDVAE: one Linear back to emb_size_atom
            self.input_proj = nn.Sequential(Linear(self.input_dim, emb_size_atom))
            atom_dim = emb_size_atom
        else:  # published DP-CDVAE code: width-preserving MLP, Linear-ReLU-Linear
            self.input_proj = nn.Sequential(Linear(self.input_dim, self.input_dim), nn.ReLU(),
                                             Linear(self.input_dim, self.input_dim))
            atom_dim = self.input_dim
        self.emb_size_atom = atom_dim

        # bases (no parameters) and their shared projections
        self.rbf = GaussianRBF(num_radial, cutoff, envelope_exponent)
        # shared down-projections of the radial basis, as one matrix:
        # [rbf3 (triplet branch) | rbf_h (atom updates) | rbf_out (outputs) | radial part of the cbf (S x C)]
        self.emb_size_rbf = emb_size_rbf
        self.mlp_rbf = Dense(num_radial, 3 * emb_size_rbf + num_spherical * emb_size_cbf, activation=False)

        self.edge_emb = EdgeEmbedding(atom_dim, num_radial, emb_size_edge)
        self.blocks = nn.ModuleList([
            InteractionBlock(atom_dim, emb_size_edge, emb_size_trip, emb_size_rbf, emb_size_cbf, emb_size_bil_trip,
                             num_before_skip, num_after_skip, num_concat, num_atom)
            for _ in range(num_blocks)])
        self.out_blocks = nn.ModuleList([ForceOutput(emb_size_edge, emb_size_rbf, num_atom)
                                         for _ in range(num_blocks + 1)])
        self.type_head = Linear(atom_dim, max_atomic_num)
        if fit_scales:
            self.fit_scale_factors(*self._synthetic_batch())

    # ------------------------------------------------------------------------------------------------------------
    def atom_inputs(self, frac_w: torch.Tensor, atom_types: torch.Tensor, z: torch.Tensor, t: torch.Tensor,
                    batch: torch.Tensor) -> torch.Tensor:
        """The 548-wide node input ``[type | z | time | Fourier]`` (before the optional projection)."""
        B = z.shape[0]
        temb = self.time_emb(t)
        if temb.shape[0] != B:
            temb = temb.expand(B, -1)
        return torch.cat([self.type_emb(atom_types - 1), z.index_select(0, batch), temb.index_select(0, batch),
                          self.fourier(frac_w)], dim=-1)

    def forward(self, frac_t: torch.Tensor, atom_types: torch.Tensor, z: torch.Tensor, t: torch.Tensor,
                lattice: torch.Tensor, batch: torch.Tensor, num_atoms: Optional[torch.Tensor] = None,
                graph: Optional[PeriodicGraph] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """Predict the fractional noise and the atom-type logits.

        Args:
            frac_t: ``[N, 3]`` fractional coordinates at step t (wrapped here anyway with ``x - floor(x)``).
            atom_types: ``[N]`` long atomic numbers Z in 1..max_atomic_num.
            z: ``[B, latent_dim]`` latent vectors. t: ``[B]`` integer diffusion steps (or a scalar for all).
            lattice: ``[B, 3, 3]`` Angstrom, rows = lattice vectors. batch: ``[N]`` crystal index per atom.
            num_atoms: ``[B]`` optional (saves a bincount). graph: a prebuilt :class:`PeriodicGraph` on these
                coordinates (with triplets); by default the radius graph is built here.
        Returns:
            ``eps_frac [N, 3]`` (fractional frame) and ``type_logits [N, max_atomic_num]`` (index Z - 1).
        """
        N = frac_t.shape[0]
        frac_w = wrap(frac_t)
        if graph is None:
            graph = radius_graph_pbc(frac_w, lattice, batch, self.cutoff, self.max_neighbors, triplets=True,
                                     num_atoms=num_atoms)
        src, dst = graph.edge_index[0], graph.edge_index[1]
        E = src.numel()
        vec, dist = graph.vec.to(frac_t.dtype), graph.dist.to(frac_t.dtype)
        idx_kj, idx_ji = graph.idx_kj, graph.idx_ji
        if idx_kj is None:
            idx_kj, idx_ji = build_triplets(graph.edge_index, graph.offsets, N)

        h = self.input_proj(self.atom_inputs(frac_w, atom_types, z, t, batch))

        # bases, computed once per call and shared by all blocks
        rbf = self.rbf(dist)  # [E, R]
        Rb = self.emb_size_rbf
        rbf_all = self.mlp_rbf(rbf)
        rbf3, rbf_h, rbf_out = rbf_all[:, :Rb], rbf_all[:, Rb:2 * Rb], rbf_all[:, 2 * Rb:3 * Rb]
        S, C = self.num_spherical, self.emb_size_cbf
        # radial part of the circular basis, projected: [S, E + 1, C] (last row zero, for padded slots)
        rad = rbf_all[:, 3 * Rb:].reshape(E, S, C).transpose(0, 1)
        rad = torch.cat([rad, rad.new_zeros(S, 1, C)], dim=1)
        inv_d = 1.0 / dist.clamp_min(1e-9)
        unit = vec * inv_d[:, None]  # [E, 3], from i towards the image of j
        # angle at j between j->k (= vec_kj) and j->i (= -vec_ji)
        cos = -(unit.index_select(0, idx_kj) * unit.index_select(0, idx_ji)).sum(-1)
        sph = legendre_sph(cos.clamp(-1.0, 1.0), S)  # [T, S]
        layout = TripletLayout.build(idx_kj, idx_ji, E)
        # circular basis of every triplet, projected to C and laid out per edge ji: sum_s Y_s(theta) rad_s(d_kj),
        # accumulated over s so that no [T, S, C] tensor is formed
        sph_pad = layout.pad_triplets(sph)  # [E, K, S]
        cbf_pad = None
        for s_ in range(S):
            term = rad[s_].index_select(0, layout.gather_kj).view(E, layout.kmax, C) * sph_pad[:, :, s_, None]
            cbf_pad = term if cbf_pad is None else cbf_pad + term
        cbf_pad_t = (cbf_pad.transpose(1, 2).contiguous() if cbf_pad is not None
                     else rbf.new_zeros(E, C, layout.kmax))  # [E, C, K]
        id_swap = reverse_edges(graph.edge_index, graph.offsets, N)

        m = self.edge_emb(h, rbf, src, dst)
        recompute = self.checkpoint_blocks and self.training and torch.is_grad_enabled()
        f = maybe_checkpoint(recompute, self.out_blocks[0], m, rbf_out)
        for block, out in zip(self.blocks, self.out_blocks[1:]):
            h, m = maybe_checkpoint(recompute, block, h, m, rbf3, rbf_h, cbf_pad_t, layout, id_swap, src, dst)
            f = f + maybe_checkpoint(recompute, out, m, rbf_out)

        force = vec.new_zeros(N, 3).index_add_(0, dst, f[:, None] * unit)  # Cartesian
        if self.eps_frame == "code":  # the published code: the Cartesian output is the fractional noise
            return force, self.type_head(h)
        inv_lat = torch.linalg.inv(lattice.to(force.dtype))
        eps_frac = torch.bmm(force.unsqueeze(1), inv_lat.index_select(0, batch)).squeeze(1)
        return eps_frac, self.type_head(h)

    # ------------------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def fit_scale_factors(self, *args, **kwargs) -> dict:
        """Fit every :class:`ScaleFactor` so that its output has unit RMS, with one forward pass on a batch
        (``forward``'s arguments). Factors are fitted in network order, each on the already-rescaled upstream
        signals (GemNet's scheme). Call it again on a real training batch if you like; the values are buffers and
        are saved with the weights. Returns ``{module name: fitted value}``.
        """
        factors = {name: mod for name, mod in self.named_modules() if isinstance(mod, ScaleFactor)}
        was_training = self.training
        self.eval()
        try:
            for mod in factors.values():
                mod.scale.fill_(1.0)
                mod.fitting = True
            self.forward(*args, **kwargs)
        finally:
            for mod in factors.values():
                mod.fitting = False
            self.train(was_training)
        return {name: float(mod.scale) for name, mod in factors.items()}

    def _synthetic_batch(self, B: int = 8, seed: int = 0):
        """A fixed batch of jittered ABO3-like 5-atom crystals (cubic cells of 3.6-4.4 A, random types/z/t) used to
        fit the scale factors at construction; drawn from a private generator (the global RNG is untouched)."""
        g = torch.Generator().manual_seed(seed)
        p = next(self.parameters())
        base = torch.tensor([[0, 0, 0], [.5, .5, .5], [.5, .5, 0], [.5, 0, .5], [0, .5, .5]], dtype=torch.float64)
        frac = (base.repeat(B, 1) + 0.1 * torch.randn(B * 5, 3, generator=g, dtype=torch.float64)) % 1.0
        a = 3.6 + 0.8 * torch.rand(B, generator=g, dtype=torch.float64)
        lattice = a[:, None, None] * torch.eye(3, dtype=torch.float64) + 0.1 * torch.randn(B, 3, 3, generator=g,
                                                                                            dtype=torch.float64)
        batch = torch.arange(B).repeat_interleave(5)
        types = torch.randint(1, self.max_atomic_num + 1, (B * 5,), generator=g)
        z = torch.randn(B, self.latent_dim, generator=g, dtype=torch.float64)
        t = torch.randint(1, self.time_emb.T + 1, (B,), generator=g)
        dev, dt = p.device, p.dtype
        return (frac.to(dev, dt), types.to(dev), z.to(dev, dt), t.to(dev), lattice.to(dev, dt), batch.to(dev))
