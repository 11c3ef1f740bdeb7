"""Scalers for the lattice regression target and for a scalar property.

Both keep their state as plain tensors / floats / strings (``state_dict()`` / ``load_state_dict()``), so they can be
stored inside a checkpoint and are never recomputed at evaluation time.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Union

import torch

__all__ = ["LatticeScaler", "StandardScaler", "lattice_features"]


def lattice_features(lengths: torch.Tensor, angles: torch.Tensor, num_atoms: torch.Tensor) -> torch.Tensor:
    """The 6 lattice features ``[a, b, c] / N_a^(1/3)`` (Angstrom) and ``[alpha, beta, gamma]`` (degrees): ``[B, 6]``."""
    lengths = torch.as_tensor(lengths).reshape(-1, 3)
    angles = torch.as_tensor(angles, dtype=lengths.dtype).reshape(-1, 3)
    n = torch.as_tensor(num_atoms, device=lengths.device).reshape(-1, 1).to(lengths.dtype)
    return torch.cat([lengths / n.pow(1.0 / 3.0), angles], dim=1)


def _columns(data: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(lengths [B,3], angles [B,3], num_atoms [B]) from a CrystalDataset, a Batch, a list of Data or a tuple."""
    if isinstance(data, (tuple, list)) and len(data) == 3 and all(isinstance(x, torch.Tensor) for x in data):
        return data[0], data[1], data[2]
    for attr in ("lengths", "angles", "num_atoms"):
        if not hasattr(data, attr):
            break
    else:
        return data.lengths, data.angles, data.num_atoms
    items = list(data)
    if not items:
        raise ValueError("cannot fit a scaler on an empty dataset")
    return (torch.cat([d.lengths.reshape(-1, 3) for d in items]),
            torch.cat([d.angles.reshape(-1, 3) for d in items]),
            torch.cat([d.num_atoms.reshape(-1) for d in items]))


class LatticeScaler:
    """Scales the 6 lattice features (lengths / N_a^(1/3) in Angstrom, angles in degrees) for the lattice head.

    ``kind='minmax'`` (DP-CDVAE): ``y = (x - min) / (max - min)``; ``kind='standard'`` (CDVAE):
    ``y = (x - mean) / std``. A feature with zero spread (e.g. all angles 90 deg in Perov-5) gets scale 1.
    Statistics are computed in float64 and applied in the input's dtype.
    """

    KINDS = ("minmax", "standard")

    def __init__(self, kind: str = "minmax", eps: float = 1e-8):
        if kind not in self.KINDS:
            raise ValueError(f"unknown LatticeScaler kind {kind!r}; expected one of {self.KINDS}")
        self.kind = kind
        self.eps = float(eps)
        self.loc: Optional[torch.Tensor] = None
        self.scale: Optional[torch.Tensor] = None
        self.stats: dict[str, torch.Tensor] = {}

    @property
    def fitted(self) -> bool:
        return self.loc is not None

    def fit(self, data: Any) -> "LatticeScaler":
        """Fit on a dataset (``CrystalDataset``, ``Batch``, list of ``Data``) or a ``(lengths, angles, num_atoms)``
        tuple of tensors. Returns ``self``."""
        lengths, angles, num_atoms = _columns(data)
        x = lattice_features(lengths.double(), angles.double(), num_atoms)
        if x.shape[0] == 0:
            raise ValueError("cannot fit a LatticeScaler on zero crystals")
        if not torch.isfinite(x).all():
            raise ValueError("non-finite lattice features: cannot fit a LatticeScaler")
        mn, mx = x.min(0).values, x.max(0).values
        mean, std = x.mean(0), x.std(0, unbiased=False)
        if self.kind == "minmax":
            loc, scale = mn, mx - mn
        else:
            loc, scale = mean, std
        scale = torch.where(scale > self.eps, scale, torch.ones_like(scale))
        self.loc, self.scale = loc, scale
        self.stats = {"min": mn, "max": mx, "mean": mean, "std": std, "n": torch.tensor(x.shape[0])}
        return self

    def _check(self):
        if not self.fitted:
            raise RuntimeError("LatticeScaler is not fitted: call fit(train_dataset) or load_state_dict(...)")

    def transform(self, lengths: torch.Tensor, angles: torch.Tensor, num_atoms: torch.Tensor) -> torch.Tensor:
        """``lengths [B,3]`` (A), ``angles [B,3]`` (deg), ``num_atoms [B]`` -> scaled features ``[B, 6]``."""
        self._check()
        lengths = torch.as_tensor(lengths)
        dtype = lengths.dtype if lengths.is_floating_point() else torch.get_default_dtype()
        x = lattice_features(lengths.to(dtype), angles, num_atoms)
        return (x - self.loc.to(x)) / self.scale.to(x)

    def inverse_transform(self, y: torch.Tensor, num_atoms: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Scaled ``y [B, 6]`` and ``num_atoms [B]`` -> ``(lengths [B,3] in A, angles [B,3] in deg)``."""
        self._check()
        y = torch.as_tensor(y)
        x = y * self.scale.to(y) + self.loc.to(y)
        n = torch.as_tensor(num_atoms, device=y.device).reshape(-1, 1).to(y.dtype)
        return x[:, :3] * n.pow(1.0 / 3.0), x[:, 3:]

    def state_dict(self) -> dict:
        """Plain state: ``kind`` (str), ``eps`` (float), ``loc``/``scale`` and the fit statistics (float64 tensors)."""
        self._check()
        return {"kind": self.kind, "eps": self.eps, "loc": self.loc.clone(), "scale": self.scale.clone(),
                **{f"stat_{k}": v.clone() for k, v in self.stats.items()}}

    def load_state_dict(self, state: dict) -> "LatticeScaler":
        if state.get("kind", self.kind) not in self.KINDS:
            raise ValueError(f"bad LatticeScaler state: kind {state.get('kind')!r}")
        self.kind = state.get("kind", self.kind)
        self.eps = float(state.get("eps", self.eps))
        self.loc = torch.as_tensor(state["loc"], dtype=torch.float64).clone()
        self.scale = torch.as_tensor(state["scale"], dtype=torch.float64).clone()
        self.stats = {k[5:]: torch.as_tensor(v).clone() for k, v in state.items() if k.startswith("stat_")}
        return self

    @classmethod
    def from_state_dict(cls, state: dict) -> "LatticeScaler":
        return cls(kind=state.get("kind", "minmax")).load_state_dict(state)

    def save(self, path: Union[str, Path]) -> None:
        torch.save(self.state_dict(), path)

    @classmethod
    def load(cls, path: Union[str, Path]) -> "LatticeScaler":
        return cls.from_state_dict(torch.load(path, map_location="cpu", weights_only=True))

    def __repr__(self) -> str:
        if not self.fitted:
            return f"LatticeScaler(kind={self.kind!r}, unfitted)"
        return (f"LatticeScaler(kind={self.kind!r}, loc={[round(v, 4) for v in self.loc.tolist()]}, "
                f"scale={[round(v, 4) for v in self.scale.tolist()]})")


class StandardScaler:
    """Standardises a scalar property (e.g. eV/atom): ``y = (x - mean) / std``; NaNs are ignored when fitting.

    If there are no finite values (dataset without a property) the scaler is the identity (mean 0, std 1) and
    ``fitted_on`` is 0. A zero std becomes 1.
    """

    def __init__(self, mean: float = 0.0, std: float = 1.0, eps: float = 1e-12):
        self.mean = float(mean)
        self.std = float(std)
        self.eps = float(eps)
        self.fitted_on = 0

    def fit(self, values: Any) -> "StandardScaler":
        """Fit on a tensor of values, or on anything with a ``y`` attribute (dataset, Batch)."""
        if hasattr(values, "y") and not isinstance(values, torch.Tensor):
            values = values.y
        x = torch.as_tensor(values, dtype=torch.float64).reshape(-1)
        x = x[torch.isfinite(x)]
        self.fitted_on = int(x.numel())
        if self.fitted_on == 0:
            self.mean, self.std = 0.0, 1.0
        else:
            self.mean = float(x.mean())
            std = float(x.std(unbiased=False)) if x.numel() > 1 else 0.0
            self.std = std if std > self.eps else 1.0
        return self

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.as_tensor(x)
        return (x - self.mean) / self.std

    def inverse_transform(self, y: torch.Tensor) -> torch.Tensor:
        y = torch.as_tensor(y)
        return y * self.std + self.mean

    def state_dict(self) -> dict:
        return {"mean": self.mean, "std": self.std, "eps": self.eps, "fitted_on": self.fitted_on}

    def load_state_dict(self, state: dict) -> "StandardScaler":
        self.mean = float(state["mean"])
        self.std = float(state["std"])
        self.eps = float(state.get("eps", self.eps))
        self.fitted_on = int(state.get("fitted_on", 0))
        return self

    @classmethod
    def from_state_dict(cls, state: dict) -> "StandardScaler":
        return cls().load_state_dict(state)

    def __repr__(self) -> str:
        return f"StandardScaler(mean={self.mean:.6g}, std={self.std:.6g}, fitted_on={self.fitted_on})"
