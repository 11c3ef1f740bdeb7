"""Building blocks of the GemNet-T denoiser (written from Gasteiger, Becker & Guennemann, NeurIPS 2021).

Notation follows docs/ARCHITECTURE.md: an edge ``e = (j -> i)`` has source ``j = edge_index[0, e]`` and target
``i = edge_index[1, e]``; its message ``m_ji`` lives on the edge. A triplet ``(kj, ji)`` pairs an edge ``k -> j``
with an edge ``j -> i`` (they share atom ``j``); it carries the angle ``theta_kji`` at ``j``.

Everything here is invariant (distances and angles only); the only equivariant quantity of the model is the direct
force head in :mod:`dpcdvae.nets.gemnet`. No Python loops over atoms, edges or triplets: all aggregations are
``index_add_`` or dense batched matrix products over a padded per-edge triplet layout (:class:`TripletLayout`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.utils.checkpoint
from torch import nn

from .gemm import Linear

__all__ = ["ScaledSiLU", "Dense", "ResidualLayer", "ScaleFactor", "PolynomialEnvelope", "GaussianRBF",
           "legendre_sph", "TripletLayout", "EdgeEmbedding", "TripletInteraction", "AtomUpdate",
           "InteractionBlock", "ForceOutput"]

INV_SQRT2 = 1.0 / math.sqrt(2.0)


# --------------------------------------------------------------------------------------------------------------------
# elementary layers
# --------------------------------------------------------------------------------------------------------------------
class ScaledSiLU(nn.Module):
    """SiLU divided by 0.6 so that a unit-variance input gives roughly unit-variance output (GemNet's activation)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.silu(x).mul_(1.0 / 0.6)  # in place on a fresh tensor: autograd-safe


def he_orthogonal_(weight: torch.Tensor) -> torch.Tensor:
    """Orthogonal init, then standardised so that each weight has variance 1 / fan_in (GemNet's initialiser)."""
    with torch.no_grad():
        nn.init.orthogonal_(weight)
        fan_in = weight.shape[1]
        mean = weight.mean(dim=1, keepdim=True)
        var = weight.var(dim=1, keepdim=True, unbiased=False)
        weight.sub_(mean).div_((var + 1e-6).sqrt()).mul_(1.0 / math.sqrt(fan_in))
    return weight


class Dense(nn.Module):
    """``act(x @ W (+ b))`` with He-orthogonal initialisation. ``activation=False`` gives a plain linear map."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False, activation: bool = True):
        super().__init__()
        self.linear = Linear(in_features, out_features, bias=bias)
        he_orthogonal_(self.linear.weight)
        if bias:
            nn.init.zeros_(self.linear.bias)
        self.act = ScaledSiLU() if activation else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.linear(x))


class ResidualLayer(nn.Module):
    """``(x + Dense(Dense(x))) / sqrt(2)`` (two activated dense layers)."""

    def __init__(self, units: int, n_layers: int = 2):
        super().__init__()
        self.layers = nn.Sequential(*[Dense(units, units) for _ in range(n_layers)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x + self.layers(x)).mul_(INV_SQRT2)


class ScaleFactor(nn.Module):
    """A fixed (not trained) scalar that multiplies a sum over neighbours or a product with a basis embedding.

    GemNet places such factors after every neighbour sum and every "features x basis" product and fits them so that
    the result has unit variance at initialisation. The value is a buffer (saved in checkpoints). Fitting: set
    ``fitting = True`` on all factors and run one forward pass; because a forward pass is sequential, each factor
    is fitted (``1 / rms`` of its input) on signals that already went through the fitted earlier factors
    (see :meth:`dpcdvae.nets.gemnet.GemNetTDenoiser.fit_scale_factors`).
    """

    def __init__(self, value: float = 1.0):
        super().__init__()
        self.register_buffer("scale", torch.tensor(float(value)))
        self.fitting = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fitting:
            ms = float(x.detach().double().pow(2).mean()) if x.numel() else 0.0
            if ms > 0 and math.isfinite(ms):
                self.scale.fill_(1.0 / math.sqrt(ms))
            self.fitting = False
        return x * self.scale.to(x.dtype)


# --------------------------------------------------------------------------------------------------------------------
# bases
# --------------------------------------------------------------------------------------------------------------------
class PolynomialEnvelope(nn.Module):
    """Smooth cutoff ``u(d) = 1 - (p+1)(p+2)/2 d^p + p(p+2) d^(p+1) - p(p+1)/2 d^(p+2)`` for ``d < 1``, else 0.

    ``d`` is the distance divided by the cutoff; ``u``, ``u'`` and ``u''`` vanish at ``d = 1``.
    """

    def __init__(self, exponent: int = 5):
        super().__init__()
        p = float(exponent)
        self.p = p
        self.a = -(p + 1) * (p + 2) / 2
        self.b = p * (p + 2)
        self.c = -p * (p + 1) / 2

    def forward(self, d_scaled: torch.Tensor) -> torch.Tensor:
        dp = d_scaled.pow(self.p)
        env = 1 + dp * (self.a + d_scaled * (self.b + self.c * d_scaled))
        return torch.where(d_scaled < 1, env, torch.zeros_like(env))


class GaussianRBF(nn.Module):
    """``num_radial`` Gaussians ``exp(-(d/cutoff - mu_k)^2 / (2 delta^2))`` with centres ``mu_k = linspace(0, 1,
    num_radial)`` and width ``delta`` = the centre spacing, multiplied by the polynomial envelope.
    Input distances ``[E]`` in Angstrom; output ``[E, num_radial]``.
    """

    def __init__(self, num_radial: int, cutoff: float, envelope_exponent: int = 5):
        super().__init__()
        self.cutoff = float(cutoff)
        self.register_buffer("centres", torch.linspace(0.0, 1.0, num_radial), persistent=False)
        spacing = 1.0 / max(num_radial - 1, 1)
        self.coeff = -0.5 / spacing ** 2
        self.envelope = PolynomialEnvelope(envelope_exponent)

    def forward(self, dist: torch.Tensor) -> torch.Tensor:
        d = dist / self.cutoff
        arg = self.coeff * (d[:, None] - self.centres.to(d.dtype)) ** 2
        # Gaussians below exp(-32) ~ 1e-14 are set to exactly 0: exp of very negative numbers (and the denormals it
        # produces) is ~10x slower on x86 CPUs, and those values carry no information.
        g = torch.exp(arg.clamp(min=-32.0)).masked_fill(arg < -32.0, 0.0)
        return self.envelope(d)[:, None] * g


def legendre_sph(cos: torch.Tensor, num_spherical: int) -> torch.Tensor:
    """Real spherical harmonics with m = 0, ``Y_l^0 = sqrt((2l+1)/4pi) P_l(cos)``, l = 0..num_spherical-1.

    Bonnet recurrence for the Legendre polynomials; ``[T] -> [T, num_spherical]``.
    """
    out = [torch.ones_like(cos)]
    if num_spherical > 1:
        out.append(cos)
    for l in range(1, num_spherical - 1):
        out.append(((2 * l + 1) * cos * out[l] - l * out[l - 1]) / (l + 1))
    norm = torch.tensor([math.sqrt((2 * l + 1) / (4 * math.pi)) for l in range(num_spherical)],
                        dtype=cos.dtype, device=cos.device)
    return torch.stack(out, dim=-1) * norm


# --------------------------------------------------------------------------------------------------------------------
# triplet layout: each edge ji gets a padded row of its (at most Kmax) incoming triplet partners kj
# --------------------------------------------------------------------------------------------------------------------
@dataclass
class TripletLayout:
    """Padded per-edge view of the triplets, built once per forward call.

    Attributes:
        num_edges: E.
        kmax: largest number of triplets sharing one edge ji.
        gather_kj: ``[E * kmax]`` long; for slot (ji, k) the index of edge kj, or ``E`` (a zero row) for padding.
        slot: ``[T]`` long; the flat slot ``ji * kmax + position`` of every triplet.
    """

    num_edges: int
    kmax: int
    gather_kj: torch.Tensor
    slot: torch.Tensor

    @staticmethod
    def build(idx_kj: torch.Tensor, idx_ji: torch.Tensor, num_edges: int) -> "TripletLayout":
        device = idx_ji.device
        T = idx_ji.numel()
        if T > 1 and not bool((idx_ji[1:] >= idx_ji[:-1]).all()):
            order = torch.argsort(idx_ji, stable=True)
            idx_kj, idx_ji = idx_kj[order], idx_ji[order]
        else:
            order = None
        counts = torch.bincount(idx_ji, minlength=num_edges)
        kmax = int(counts.max()) if T > 0 else 0
        start = torch.cumsum(counts, 0) - counts
        pos = torch.arange(T, device=device) - start[idx_ji]
        slot_sorted = idx_ji * kmax + pos
        gather_kj = torch.full((num_edges * kmax,), num_edges, dtype=torch.long, device=device)
        gather_kj[slot_sorted] = idx_kj
        if order is not None:  # slot in the caller's triplet order
            slot = torch.empty_like(slot_sorted)
            slot[order] = slot_sorted
        else:
            slot = slot_sorted
        return TripletLayout(num_edges, kmax, gather_kj, slot)

    def pad_triplets(self, values: torch.Tensor) -> torch.Tensor:
        """Per-triplet values ``[T, C]`` -> ``[E, kmax, C]`` (zeros in the padding)."""
        out = values.new_zeros(self.num_edges * self.kmax, values.shape[-1])
        out[self.slot] = values
        return out.view(self.num_edges, self.kmax, values.shape[-1])

    def gather_edges(self, x: torch.Tensor) -> torch.Tensor:
        """Per-edge values ``x [E, F]`` of the partner edges kj -> ``[E, kmax, F]`` (zeros in the padding)."""
        xz = torch.cat([x, x.new_zeros(1, x.shape[-1])], dim=0)
        return xz.index_select(0, self.gather_kj).view(self.num_edges, self.kmax, x.shape[-1])


def gather_or_zero(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x[index]`` with ``index == -1`` giving a zero row."""
    xz = torch.cat([x, x.new_zeros(1, x.shape[-1])], dim=0)
    return xz.index_select(0, torch.where(index < 0, x.shape[0], index))


# --------------------------------------------------------------------------------------------------------------------
# GemNet-T blocks
# --------------------------------------------------------------------------------------------------------------------
class EdgeEmbedding(nn.Module):
    """``m_ji = act(W [h_j | h_i | e])`` for an edge j -> i, with ``e`` an edge feature (the rbf, or the message).

    The concatenation is never materialised: ``W [h_j | h_i | e] = (h W_j)[j] + (h W_i)[i] + e W_e``, and the atom
    products are computed on the N atoms, not the E edges (identical function, ~20x fewer flops for that part).
    Parameter count equals one ``Dense(2 * atom_dim + edge_in, edge_dim)``.
    """

    def __init__(self, atom_dim: int, edge_in: int, edge_dim: int):
        super().__init__()
        self.edge_dim = edge_dim
        self.atom_lin = Dense(atom_dim, 2 * edge_dim, activation=False)
        self.edge_lin = Dense(edge_in, edge_dim, activation=False)
        # initialise as one He-orthogonal matrix of fan_in 2*atom_dim + edge_in
        with torch.no_grad():
            w = he_orthogonal_(torch.empty(edge_dim, 2 * atom_dim + edge_in))
            self.atom_lin.linear.weight.copy_(torch.cat([w[:, :atom_dim], w[:, atom_dim:2 * atom_dim]], 0))
            self.edge_lin.linear.weight.copy_(w[:, 2 * atom_dim:])
        self.act = ScaledSiLU()

    def forward(self, h: torch.Tensor, e: torch.Tensor, src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
        a = self.atom_lin(h)
        a_src, a_dst = a[:, :self.edge_dim], a[:, self.edge_dim:]
        return self.act(a_src.index_select(0, src) + a_dst.index_select(0, dst) + self.edge_lin(e))


class TripletInteraction(nn.Module):
    """GemNet-T two-hop message passing: edge ji gathers from every edge kj through the circular basis.

    ``x_kj = down(s1 * act(W m_kj) * (W_rbf rbf_kj))``; the bilinear layer gives
    ``y_ji[o] = sum_{c,f} W_bil[c,f,o] sum_k cbf_kji[c] x_kj[f]`` where ``cbf_kji`` is the (shared, pre-projected)
    circular basis of (d_kj, theta_kji). The inner sum over k is a batched matmul over the padded layout; then
    ``out_ji = (act(W_up s2 y_ji) + act(W_up' s2 y_ij)) / sqrt 2`` (symmetric update with the reverse edge, zero when the
    reverse edge is not in the graph).
    """

    def __init__(self, emb_size_edge: int, emb_size_trip: int, emb_size_rbf: int, emb_size_cbf: int,
                 emb_size_bil_trip: int):
        super().__init__()
        self.emb_size_cbf, self.emb_size_trip, self.emb_size_edge = emb_size_cbf, emb_size_trip, emb_size_edge
        self.mlp_rbf = Dense(emb_size_rbf, emb_size_edge, activation=False)
        self.scale_rbf = ScaleFactor()
        self.down = Dense(emb_size_edge, emb_size_trip)
        self.bilinear = Linear(emb_size_cbf * emb_size_trip, emb_size_bil_trip, bias=False)
        he_orthogonal_(self.bilinear.weight)
        self.scale_sum = ScaleFactor()
        # up-projections for the edge itself and for its reverse edge, as one matrix [ji | ij]
        self.up = Dense(emb_size_bil_trip, 2 * emb_size_edge)

    def forward(self, x_kj: torch.Tensor, rbf3: torch.Tensor, cbf_pad_t: torch.Tensor, layout: TripletLayout,
                id_swap: torch.Tensor) -> torch.Tensor:
        """``x_kj = act(W m)`` (computed by the caller, fused with the skip branch) -> ``[E, emb_size_edge]``."""
        E = x_kj.shape[0]
        x = self.down(self.scale_rbf(x_kj * self.mlp_rbf(rbf3)))  # [E, F]
        if layout.kmax > 0:
            xk = layout.gather_edges(x)  # [E, K, F]
            y = torch.bmm(cbf_pad_t, xk).reshape(E, self.emb_size_cbf * self.emb_size_trip)  # [E, C*F]
        else:
            y = x.new_zeros(E, self.emb_size_cbf * self.emb_size_trip)
        y = self.up(self.scale_sum(self.bilinear(y)))
        E_ = self.emb_size_edge
        return (y[:, :E_] + gather_or_zero(y[:, E_:], id_swap)).mul_(INV_SQRT2)


class AtomUpdate(nn.Module):
    """``h_i <- MLP(s * sum_j m_ji * (W rbf_ji))``: Dense(edge -> atom) then ``num_atom`` residual layers."""

    def __init__(self, emb_size_atom: int, emb_size_edge: int, emb_size_rbf: int, num_atom: int):
        super().__init__()
        self.dense_rbf = Dense(emb_size_rbf, emb_size_edge, activation=False)
        self.scale_sum = ScaleFactor()
        self.mlp = nn.Sequential(Dense(emb_size_edge, emb_size_atom),
                                 *[ResidualLayer(emb_size_atom) for _ in range(num_atom)])

    def forward(self, m: torch.Tensor, rbf_h: torch.Tensor, dst: torch.Tensor, num_nodes: int) -> torch.Tensor:
        x = m * self.dense_rbf(rbf_h)
        agg = x.new_zeros(num_nodes, x.shape[1]).index_add_(0, dst, x)
        return self.mlp(self.scale_sum(agg))


class InteractionBlock(nn.Module):
    """One GemNet-T interaction block (no quadruplets): triplet interaction + skip, residual layers, atom update,
    then the message is refreshed from the updated atom embeddings (concatenation layer)."""

    def __init__(self, emb_size_atom: int, emb_size_edge: int, emb_size_trip: int, emb_size_rbf: int,
                 emb_size_cbf: int, emb_size_bil_trip: int, num_before_skip: int, num_after_skip: int,
                 num_concat: int, num_atom: int):
        super().__init__()
        self.emb_size_edge = emb_size_edge
        # [skip branch | first dense of the triplet branch], both act(W m), as one matrix
        self.dense_m = Dense(emb_size_edge, 2 * emb_size_edge)
        self.trip = TripletInteraction(emb_size_edge, emb_size_trip, emb_size_rbf, emb_size_cbf, emb_size_bil_trip)
        self.before_skip = nn.Sequential(*[ResidualLayer(emb_size_edge) for _ in range(num_before_skip)])
        self.after_skip = nn.Sequential(*[ResidualLayer(emb_size_edge) for _ in range(num_after_skip)])
        self.atom_update = AtomUpdate(emb_size_atom, emb_size_edge, emb_size_rbf, num_atom)
        self.concat = EdgeEmbedding(emb_size_atom, emb_size_edge, emb_size_edge)
        self.residual_m = nn.Sequential(*[ResidualLayer(emb_size_edge) for _ in range(num_concat)])

    def forward(self, h, m, rbf3, rbf_h, cbf_pad_t, layout, id_swap, src, dst):
        xm = self.dense_m(m)
        E_ = self.emb_size_edge
        x = (xm[:, :E_] + self.trip(xm[:, E_:], rbf3, cbf_pad_t, layout, id_swap)).mul_(INV_SQRT2)
        x = self.before_skip(x)
        m = (m + x).mul_(INV_SQRT2)
        m = self.after_skip(m)
        h = (h + self.atom_update(m, rbf_h, dst, h.shape[0])).mul_(INV_SQRT2)
        m2 = self.residual_m(self.concat(h, m, src, dst))
        m = (m + m2).mul_(INV_SQRT2)
        return h, m


class ForceOutput(nn.Module):
    """Direct-force output of one block: a scalar per edge, ``w . (s * MLP(m_ji) * (W rbf_ji))``.

    (GemNet's output block also has an atom/energy branch; the denoiser never uses an energy, so it is not built.)
    """

    def __init__(self, emb_size_edge: int, emb_size_rbf: int, num_atom: int):
        super().__init__()
        self.mlp = nn.Sequential(Dense(emb_size_edge, emb_size_edge),
                                 *[ResidualLayer(emb_size_edge) for _ in range(num_atom)])
        self.dense_rbf = Dense(emb_size_rbf, emb_size_edge, activation=False)
        self.scale_rbf = ScaleFactor()
        self.out = Linear(emb_size_edge, 1, bias=False)
        he_orthogonal_(self.out.weight)

    def forward(self, m: torch.Tensor, rbf_out: torch.Tensor) -> torch.Tensor:
        return self.out(self.scale_rbf(self.mlp(m) * self.dense_rbf(rbf_out))).squeeze(-1)


def maybe_checkpoint(recompute: bool, fn, *args, **kwargs):
    """``fn(*args, **kwargs)``; with ``recompute`` through activation checkpointing (only the inputs are kept and
    ``fn`` runs again in the backward pass: same values and gradients, less memory). Used by GemNet-T and DimeNet++."""
    if recompute:
        return torch.utils.checkpoint.checkpoint(fn, *args, use_reentrant=False, **kwargs)
    return fn(*args, **kwargs)
