"""GINE crystal encoder (the extra encoder of DP-CDVAE+GINE and DP-CDVAE+N_a+GINE, Fig. S1(d)).

GINE (Hu et al., "Strategies for pre-training graph neural networks") is a graph-isomorphism network with edge
features: ``h_i' = MLP((1 + eps) h_i + sum_j ReLU(h_j + e_ji))``. Following the paper (Sec. IV.B), the only edge
attribute is the periodic interatomic distance ``|r_j + T - r_i|``, so the encoder is invariant to rotations,
translations and the choice of unit cell, but it sees no angles.

Architecture (DP-CDVAE's published configuration): atom-type embedding (256), edge MLP on the distance
1 -> 256 -> 256, three :class:`torch_geometric.nn.GINEConv` layers (each with a 256 -> 256 -> 256 MLP) with residual
connections and a ReLU after every layer but the last, global max-pool over the atoms of each crystal, and a
256 -> 256 -> latent MLP.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn
from torch_geometric.nn import GINEConv
from torch_geometric.utils import scatter

from ..structures.crystal import MAX_ATOMIC_NUM

__all__ = ["GINEEncoder"]


class GINEEncoder(nn.Module):
    """GINE over a (periodic) crystal graph; returns one vector per crystal.

    Args:
        hidden_dim: node / edge embedding width (256).
        out_dim: output width (the latent width, 256).
        num_convs: number of GINEConv layers (3).
        num_atom_types: size of the type embedding; row ``Z - 1`` holds element Z (100 -> Z in 1..100).
        residual: add each layer's input to its output.
    """

    def __init__(self, hidden_dim: int = 256, out_dim: int = 256, num_convs: int = 3,
                 num_atom_types: int = MAX_ATOMIC_NUM, residual: bool = True):
        super().__init__()
        self.hidden_dim, self.out_dim, self.residual = hidden_dim, out_dim, residual
        self.num_atom_types = num_atom_types
        self.node_emb = nn.Embedding(num_atom_types, hidden_dim)
        self.edge_mlp = nn.Sequential(nn.Linear(1, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, hidden_dim))
        self.convs = nn.ModuleList([
            GINEConv(nn.Sequential(nn.Linear(hidden_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, hidden_dim)))
            for _ in range(num_convs)
        ])
        self.fc = nn.Sequential(nn.Linear(hidden_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, out_dim))

    def forward(self, atom_types: torch.Tensor, edge_index: torch.Tensor, dist: torch.Tensor, batch: torch.Tensor,
                num_graphs: Optional[int] = None) -> torch.Tensor:
        """``[B, out_dim]``.

        Args:
            atom_types: ``[N]`` atomic numbers Z (1..num_atom_types).
            edge_index: ``[2, E]``, ``[0]`` = source j, ``[1]`` = target i (messages flow j -> i).
            dist: ``[E]`` periodic edge lengths in Angstrom.
            batch: ``[N]`` crystal index per atom.
            num_graphs: B (default ``batch.max() + 1``).
        """
        z = atom_types.long()
        if z.numel() and (int(z.min()) < 1 or int(z.max()) > self.num_atom_types):
            raise ValueError(f"atom types must be atomic numbers in [1, {self.num_atom_types}]")
        if num_graphs is None:
            num_graphs = int(batch.max()) + 1 if z.numel() else 0
        h = self.node_emb(z - 1)
        e = self.edge_mlp(dist.reshape(-1, 1).to(h.dtype))
        last = len(self.convs) - 1
        for k, conv in enumerate(self.convs):
            out = conv(h, edge_index, e)
            if k < last:
                out = torch.relu(out)
            h = h + out if self.residual else out
        pooled = scatter(h, batch, dim=0, dim_size=num_graphs, reduce="max")
        return self.fc(pooled)
