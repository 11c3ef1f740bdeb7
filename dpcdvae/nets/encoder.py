"""The VAE encoders of the four DP-CDVAE variants (paper Fig. S1).

=============  ========================================================================================
variant        feature (``[B, latent_dim]``; the model's fc_mu / fc_var heads come after it)
=============  ========================================================================================
``dpcdvae``    DimeNet++ (out_channels = latent_dim, mean readout)                          Fig. S1(g)
``na``         concat(DimeNet++, N_a branch 256) -> 512 -> 1024 -> 256 MLP                   Fig. S1(e)
``gine``       concat(DimeNet++, GINE 256) -> 512 -> 512 -> 512 -> 256 MLP                   Fig. S1(f)
``na_gine``    concat(DimeNet++, GINE 256, N_a branch 128) -> 640 -> 640 -> 640 -> 256 MLP   Fig. S1(h)
=============  ========================================================================================

N_a branch (``na_encoder``): the paper says "N_a is encoded through a multilayer perceptron"; the published code
uses ``nn.Embedding(max_atoms + 1, width)`` of the true N_a (an MLP on a one-hot is equivalent to it).
``'mlp'`` (default, the paper): N_a / max_atoms as a scalar through Linear(1, w) - ReLU - Linear(w, w).
``'embedding'`` (the code): a learned vector per N_a in 0..max_atoms. ``'onehot_mlp'``: one-hot(N_a) through
Linear - ReLU - Linear (the code's commented-out alternative).

Graph (``graph``): ``'crystalnn'`` (paper configuration) uses the CrystalNN edges stored in the batch
(``edge_index``, ``to_jimages``), symmetrised by default because CDVAE's CrystalNN graph (pymatgen
``StructureGraph``) holds both directions of every bond while CrystalNN's per-site lists are not symmetric;
``'radius'`` builds ``radius_graph_pbc(cutoff=7 A, max_neighbors=20)`` on the fly. Distances and triplet angles are
always computed from the image-shifted edge vectors (exact PBC).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ..structures.crystal import MAX_ATOMIC_NUM, lattice_params_to_matrix
from ..structures.graph import PeriodicGraph, graph_from_edges, radius_graph_pbc
from .dimenet import PeriodicDimeNetPlusPlus, drop_backtracking_triplets
from .gine import GINEEncoder

__all__ = ["CrystalEncoder", "NumAtomsEncoder", "symmetrize_edges", "VARIANTS", "count_parameters"]

VARIANTS = ("dpcdvae", "na", "gine", "na_gine")


def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def symmetrize_edges(edge_index: torch.Tensor, offsets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Union of the edges and their reverses (j->i with image T  <->  i->j with image -T), duplicates removed.

    Returns ``(edge_index [2, E'], offsets [E', 3])`` sorted by (target, source, offset); ``offsets`` keep their
    dtype.
    """
    if edge_index.numel() == 0:
        return edge_index, offsets
    off = offsets.round().long()
    fwd = torch.cat([edge_index.t(), off], dim=1)  # [E, 5] = (j, i, T)
    rev = torch.cat([edge_index.flip(0).t(), -off], dim=1)
    allc = torch.cat([fwd, rev], dim=0)
    key = torch.stack([allc[:, 1], allc[:, 0], allc[:, 2], allc[:, 3], allc[:, 4]], dim=1)  # target first
    uniq = torch.unique(key, dim=0)  # lexicographic sort
    ei = torch.stack([uniq[:, 1], uniq[:, 0]])
    return ei, uniq[:, 2:].to(offsets.dtype)


class NumAtomsEncoder(nn.Module):
    """Encodes the number of atoms per crystal ``N_a [B]`` into ``[B, out_dim]``.

    Args:
        mode: ``'mlp'`` (scalar N_a / max_atoms -> Linear-ReLU-Linear, the paper), ``'embedding'``
            (``nn.Embedding(max_atoms + 1, out_dim)``, the published code) or ``'onehot_mlp'``.
        max_atoms: largest N_a ('embedding'/'onehot_mlp' raise for larger values; 'mlp' extrapolates).
    """

    def __init__(self, out_dim: int = 256, max_atoms: int = 20, mode: str = "mlp"):
        super().__init__()
        if mode not in ("mlp", "embedding", "onehot_mlp"):
            raise ValueError(f"na_encoder must be 'mlp', 'embedding' or 'onehot_mlp', got {mode!r}")
        self.mode, self.max_atoms, self.out_dim = mode, int(max_atoms), out_dim
        if mode == "embedding":
            self.net = nn.Embedding(self.max_atoms + 1, out_dim)
        else:
            d_in = 1 if mode == "mlp" else self.max_atoms + 1
            self.net = nn.Sequential(nn.Linear(d_in, out_dim), nn.ReLU(), nn.Linear(out_dim, out_dim))

    def forward(self, num_atoms: torch.Tensor) -> torch.Tensor:
        n = num_atoms.reshape(-1).long()
        if self.mode != "mlp" and n.numel() and (int(n.min()) < 0 or int(n.max()) > self.max_atoms):
            raise ValueError(f"N_a must be in [0, {self.max_atoms}] for na_encoder={self.mode!r}; "
                             f"got up to {int(n.max())} (raise max_atoms)")
        if self.mode == "embedding":
            return self.net(n)
        if self.mode == "onehot_mlp":
            x = nn.functional.one_hot(n, self.max_atoms + 1).to(self.net[0].weight.dtype)
        else:
            x = (n.to(self.net[0].weight.dtype) / self.max_atoms).unsqueeze(-1)
        return self.net(x)


def _mlp(dims: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for k in range(len(dims) - 1):
        layers.append(nn.Linear(dims[k], dims[k + 1]))
        if k < len(dims) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class CrystalEncoder(nn.Module):
    """Encoder G_phi(L r_f, Z, N_a) of one of the four DP-CDVAE variants; returns ``[B, latent_dim]``.

    Args:
        variant: ``'dpcdvae'`` | ``'na'`` | ``'gine'`` | ``'na_gine'`` (Fig. S1 (g), (e), (f), (h)).
        latent_dim: feature width (256); also the DimeNet++ output width and the GINE output width.
        na_encoder: ``'mlp'`` (paper) | ``'embedding'`` (published code) | ``'onehot_mlp'``.
        na_dim: N_a branch width (default 256 in ``na``, 128 in ``na_gine``, as the published configs).
        max_atoms: largest N_a (20 for Perov-5/MP-20, 24 for Carbon-24).
        graph: ``'crystalnn'`` (edges from the batch) | ``'radius'`` (built on the fly).
        cutoff, max_neighbors: DimeNet++ cutoff (A) and, for ``graph='radius'``, the radius graph (7 A, 20).
        symmetrize: symmetrise given (CrystalNN) edges as CDVAE's graph is (see module docstring).
        triplets: ``'exact_reverse'`` (project convention: drop only the walked-back bond) or ``'cdvae'`` (drop
            every k == i triplet, as CDVAE/DP-CDVAE's DimeNet++).
        gine_hidden: GINE width (256).
        num_atom_types: DimeNet++ type-embedding rows indexed by Z (101 accepts Z = 1..100; CDVAE's is 95).
        output_initializer: DimeNet++ output layers' init, ``'zeros'`` (CDVAE/PyG: the DimeNet++ feature starts at
            exactly 0) or ``'glorot_orthogonal'``.
        dimenet_kwargs: other :class:`PeriodicDimeNetPlusPlus` arguments (hidden_channels, num_blocks, ...).
    """

    def __init__(self, variant: str = "dpcdvae", latent_dim: int = 256, na_encoder: str = "mlp",
                 max_atoms: int = 20, graph: str = "crystalnn", cutoff: float = 7.0, max_neighbors: int = 20,
                 na_dim: Optional[int] = None, gine_hidden: int = 256, symmetrize: bool = True,
                 triplets: str = "exact_reverse", num_atom_types: int = MAX_ATOMIC_NUM + 1,
                 output_initializer: str = "zeros", dimenet_kwargs: Optional[dict] = None):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        if graph not in ("crystalnn", "radius"):
            raise ValueError(f"graph must be 'crystalnn' or 'radius', got {graph!r}")
        if triplets not in ("exact_reverse", "cdvae"):
            raise ValueError(f"triplets must be 'exact_reverse' or 'cdvae', got {triplets!r}")
        if output_initializer not in ("zeros", "glorot_orthogonal"):
            raise ValueError(f"model.encoder.output_init must be 'zeros' or 'glorot_orthogonal', "
                             f"got {output_initializer!r}")
        self.variant, self.latent_dim, self.max_atoms = variant, latent_dim, max_atoms
        self.graph_method, self.cutoff, self.max_neighbors = graph, float(cutoff), max_neighbors
        self.symmetrize, self.triplets = symmetrize, triplets
        self.dimenet = PeriodicDimeNetPlusPlus(out_channels=latent_dim, cutoff=cutoff,
                                               max_num_neighbors=max_neighbors, num_atom_types=num_atom_types,
                                               output_initializer=output_initializer, readout="mean",
                                               **(dimenet_kwargs or {}))
        use_na = variant in ("na", "na_gine")
        use_gine = variant in ("gine", "na_gine")
        fc_in = latent_dim
        self.na = None
        self.gine = None
        if use_na:
            na_dim = na_dim or (latent_dim if variant == "na" else latent_dim // 2)
            self.na = NumAtomsEncoder(na_dim, max_atoms=max_atoms, mode=na_encoder)
            fc_in += na_dim
        if use_gine:
            self.gine = GINEEncoder(hidden_dim=gine_hidden, out_dim=latent_dim, num_atom_types=MAX_ATOMIC_NUM)
            fc_in += latent_dim
        if variant == "dpcdvae":
            self.combiner = None
        elif variant == "na":
            self.combiner = _mlp([fc_in, 2 * fc_in, latent_dim])
        else:
            self.combiner = _mlp([fc_in, fc_in, fc_in, latent_dim])

    # ------------------------------------------------------------------------------------------------------------
    def build_graph(self, frac_coords: torch.Tensor, lattice: torch.Tensor, batch: torch.Tensor,
                    edge_index: Optional[torch.Tensor] = None, to_jimages: Optional[torch.Tensor] = None,
                    num_atoms: Optional[torch.Tensor] = None) -> PeriodicGraph:
        """The encoder graph (with triplets) for this encoder's ``graph`` setting."""
        if self.graph_method == "radius":
            g = radius_graph_pbc(frac_coords, lattice, batch, cutoff=self.cutoff, max_neighbors=self.max_neighbors,
                                 triplets=True, num_atoms=num_atoms)
        else:
            if edge_index is None or to_jimages is None:
                raise ValueError("graph='crystalnn' needs the CrystalNN edges (edge_index, to_jimages) of the batch; "
                                 "build them in the dataset (graph='crystalnn') or use CrystalEncoder(graph='radius')")
            if self.symmetrize:
                edge_index, to_jimages = symmetrize_edges(edge_index, to_jimages)
            g = graph_from_edges(frac_coords, lattice, batch, edge_index, to_jimages, triplets=True)
        if self.triplets == "cdvae":
            g.idx_kj, g.idx_ji = drop_backtracking_triplets(g.edge_index, g.idx_kj, g.idx_ji)
        return g

    def forward(self, frac_coords: torch.Tensor, atom_types: torch.Tensor, num_atoms: torch.Tensor,
                lattice: torch.Tensor, batch: Optional[torch.Tensor] = None, edge_index: Optional[torch.Tensor] = None,
                to_jimages: Optional[torch.Tensor] = None, graph: Optional[PeriodicGraph] = None) -> torch.Tensor:
        """Encoder feature ``[B, latent_dim]``.

        Args:
            frac_coords: ``[N, 3]`` fractional coordinates.
            atom_types: ``[N]`` atomic numbers Z.
            num_atoms: ``[B]`` atoms per crystal (N_a).
            lattice: ``[B, 3, 3]`` lattice matrices (rows = vectors, Angstrom).
            batch: ``[N]`` crystal index per atom (default: from ``num_atoms``).
            edge_index, to_jimages: the CrystalNN graph (``[2, E]``, ``[E, 3]`` images of the sources), needed for
                ``graph='crystalnn'``.
            graph: a prebuilt :class:`PeriodicGraph` with triplets (overrides the graph construction).
        """
        B = int(num_atoms.shape[0])
        if batch is None:
            batch = torch.repeat_interleave(torch.arange(B, device=num_atoms.device), num_atoms.long())
        if graph is None:
            graph = self.build_graph(frac_coords, lattice, batch, edge_index, to_jimages, num_atoms)
        feats = [self.dimenet(atom_types, graph, batch, num_graphs=B)]
        if self.gine is not None:
            feats.append(self.gine(atom_types, graph.edge_index, graph.dist, batch, num_graphs=B))
        if self.na is not None:
            feats.append(self.na(num_atoms))
        if self.combiner is None:
            return feats[0]
        return self.combiner(torch.cat(feats, dim=-1))

    def forward_batch(self, data) -> torch.Tensor:
        """Convenience wrapper for a torch_geometric ``Batch`` with ``frac_coords, atom_types, lengths, angles,
        num_atoms, batch`` and (for ``graph='crystalnn'``) ``edge_index, to_jimages``."""
        lattice = lattice_params_to_matrix(data.lengths.reshape(-1, 3), data.angles.reshape(-1, 3))
        frac = data.frac_coords.to(lattice.dtype)
        return self.forward(frac, data.atom_types, data.num_atoms.reshape(-1), lattice, batch=data.batch,
                            edge_index=getattr(data, "edge_index", None), to_jimages=getattr(data, "to_jimages", None))

    def num_parameters(self) -> dict:
        """Trainable parameters per part (``dimenet``, ``gine``, ``na``, ``combiner``, ``total``)."""
        parts = {"dimenet": self.dimenet, "gine": self.gine, "na": self.na, "combiner": self.combiner}
        out = {k: (count_parameters(m) if m is not None else 0) for k, m in parts.items()}
        out["total"] = count_parameters(self)
        return out

    def extra_repr(self) -> str:
        return (f"variant={self.variant!r}, latent_dim={self.latent_dim}, graph={self.graph_method!r}, "
                f"triplets={self.triplets!r}, symmetrize={self.symmetrize}")
