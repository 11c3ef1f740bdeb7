"""Node-feature embeddings for the denoiser: Fourier features of fractional coordinates (paper S3) and the
diffusion-time embedding.

``FourierFeatures``
    ``r [N, D]`` (fractional coordinates, dimensionless; D = 3) -> ``[N, 2 * D * K]`` with ``K = n_max - n_min + 1``
    frequencies (36 for D = 3, n = 3..8). Frequencies: ``'paper'`` ``w_n = 2^n * pi`` (S3 as printed);
    ``'code'`` ``w_n = 2 * pi * 2^n`` (the published code, i.e. the paper's ``n + 1``).
    Ordering: all sines first, then all cosines; inside each half, frequency-major then coordinate::

        out[:, k * D + d]             = sin(w_{n_min + k} * r[:, d])
        out[:, K * D + k * D + d]     = cos(w_{n_min + k} * r[:, d])

    Periodicity: the features of ``r`` and ``r + 1`` coincide when every ``w_n`` is a multiple of ``2 pi``:
    always for ``'code'``, for ``'paper'`` when ``n_min >= 1`` (``n = 0`` gives ``w = pi``, which flips signs).

``TimeEmbedding``
    Sinusoidal embedding of the diffusion step followed by an MLP ``dim -> hidden -> dim`` (SiLU). ``'integer'``
    (default) embeds the integer step ``t`` itself, frequencies ``w_k = 1e4^(-k / (dim/2 - 1))``, ``k = 0..dim/2-1``,
    so the highest frequency is 1 rad per step and neighbouring steps are clearly distinct. ``'code'`` embeds
    ``t / T`` in ``(0, 1]`` with the same frequencies, as the published code does: there neighbouring steps
    differ by at most ``1/T`` rad in every channel (cosine distance ~ 1e-8 for T = 1000), i.e. the network can
    barely tell them apart. Layout of the sinusoid: ``[sin(w_k s) for k] + [cos(w_k s) for k]``, ``s = t`` or
    ``t / T``.
"""
from __future__ import annotations

import math
from typing import Union

import torch
from torch import nn

__all__ = ["FourierFeatures", "TimeEmbedding", "sinusoidal_embedding"]


class FourierFeatures(nn.Module):
    """Fourier features ``sin/cos(w_n r)`` of fractional coordinates (paper S3); no parameters.

    Parameters
    ----------
    n_min, n_max: frequency exponents (inclusive), paper: 3..8.
    convention: ``'paper'`` (``w_n = 2^n pi``) or ``'code'`` (``w_n = 2 pi 2^n``).
    in_dim: size of the last input dimension (3 for coordinates); only used for :attr:`out_dim`.
    """

    def __init__(self, n_min: int = 3, n_max: int = 8, convention: str = "paper", in_dim: int = 3):
        super().__init__()
        if n_max < n_min:
            raise ValueError(f"n_max ({n_max}) < n_min ({n_min})")
        if convention not in ("paper", "code"):
            raise ValueError(f"convention must be 'paper' or 'code', got {convention!r}")
        self.n_min, self.n_max, self.convention, self.in_dim = int(n_min), int(n_max), convention, int(in_dim)
        # no buffer: frequencies are made in the input's dtype on each call (exact powers of two times pi)
        self._scale = math.pi * (2.0 if convention == "code" else 1.0)

    @property
    def num_frequencies(self) -> int:
        return self.n_max - self.n_min + 1

    @property
    def out_dim(self) -> int:
        """``2 * in_dim * (n_max - n_min + 1)`` (36 for the paper's setting)."""
        return 2 * self.in_dim * self.num_frequencies

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        """``r [N, D]`` -> ``[N, 2 * D * K]`` (sines then cosines; see the module docstring for the order)."""
        n = torch.arange(self.n_min, self.n_max + 1, device=r.device, dtype=torch.float64)
        w = ((2.0 ** n) * self._scale).to(r.dtype)
        arg = (r.unsqueeze(-2) * w.unsqueeze(-1)).flatten(-2)  # [N, K*D], index k*D + d
        return torch.cat([torch.sin(arg), torch.cos(arg)], dim=-1)

    def extra_repr(self) -> str:
        return f"n_min={self.n_min}, n_max={self.n_max}, convention={self.convention!r}, out_dim={self.out_dim}"


def sinusoidal_embedding(s: torch.Tensor, dim: int, base: float = 1e4) -> torch.Tensor:
    """``s [B]`` (float) -> ``[B, dim]``: ``[sin(w_k s), cos(w_k s)]``, ``w_k = base^(-k / (dim/2 - 1))``.

    ``dim`` must be even and >= 4.
    """
    if dim % 2 or dim < 4:
        raise ValueError(f"dim must be even and >= 4, got {dim}")
    half = dim // 2
    k = torch.arange(half, device=s.device, dtype=torch.float64)
    w = torch.exp(-math.log(base) * k / (half - 1)).to(s.dtype)
    arg = s.reshape(-1, 1) * w.reshape(1, -1)
    return torch.cat([torch.sin(arg), torch.cos(arg)], dim=-1)


class TimeEmbedding(nn.Module):
    """Diffusion-step embedding: sinusoid of ``t`` (or ``t / T``) then ``Linear(dim, hidden)-SiLU-Linear(hidden, dim)``.

    Parameters
    ----------
    dim: embedding width (paper: 128). hidden: MLP hidden width (512). T: number of diffusion steps (1000).
    mode: ``'integer'`` (embed the integer step; our default) or ``'code'`` (embed ``t / T`` as the published code).

    ``forward(t)``: ``t`` an int, a 0-d tensor or a tensor ``[B]`` / ``[B, 1]`` of steps in ``1..T`` (integer or
    float dtype) -> ``[B, dim]`` (``[1, dim]`` for a scalar; a batch of one works).
    """

    def __init__(self, dim: int = 128, hidden: int = 512, T: int = 1000, mode: str = "integer"):
        super().__init__()
        if mode not in ("integer", "code"):
            raise ValueError(f"mode must be 'integer' or 'code', got {mode!r}")
        self.dim, self.hidden, self.T, self.mode = int(dim), int(hidden), int(T), mode
        self.mlp = nn.Sequential(nn.Linear(self.dim, self.hidden), nn.SiLU(), nn.Linear(self.hidden, self.dim))

    def sinusoid(self, t: Union[int, torch.Tensor]) -> torch.Tensor:
        """The fixed sinusoidal part (before the MLP), ``[B, dim]``."""
        p = self.mlp[0].weight
        t = torch.as_tensor(t, device=p.device).reshape(-1).to(p.dtype)
        s = t if self.mode == "integer" else t / self.T
        return sinusoidal_embedding(s, self.dim)

    def forward(self, t: Union[int, torch.Tensor]) -> torch.Tensor:
        return self.mlp(self.sinusoid(t))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, hidden={self.hidden}, T={self.T}, mode={self.mode!r}"
