"""The record of one relaxation (:class:`RelaxResult`): energies, enthalpies and volumes per atom before and after,
steps, convergence, the structures, the error of a failed relaxation; ``to_dict`` / ``from_dict`` for the JSON files
of :mod:`dpcdvae.eval.relax.io`."""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Mapping

from ...utils.fileio import jsonable

# local: heavy -- pymatgen is imported inside RelaxResult.from_dict (the workflows import this package)

__all__ = ["RelaxResult"]


@dataclass
class RelaxResult:
    """One relaxation. Energies and enthalpies in eV/atom, volumes in A^3/atom, pressure in GPa, time in s.

    ``initial_*`` refer to the generated (input) structure, ``relaxed_*`` to the end of the relaxation. The
    enthalpy per atom is ``H = E + p V`` with ``p = pressure_gpa * ase.units.GPa`` (eV/A^3). ``steps`` counts
    optimizer steps (force calls = steps + 1). ``converged`` is ASE's criterion (largest generalised force of the
    ``FrechetCellFilter``, atoms and cell, below ``fmax``). ``wall_time_s`` runs from the moment the structure
    started relaxing to its end (in batched mode it includes the time spent on the other structures of the same
    batch). ``error`` is ``None`` unless the relaxation failed; ``resumed`` is True when the result was loaded from
    ``out_dir`` instead of computed.
    """

    id: str
    n_atoms: int = 0
    formula: str = ""
    pressure_gpa: float = 0.0
    initial_energy_per_atom: float = float("nan")
    relaxed_energy_per_atom: float = float("nan")
    initial_enthalpy_per_atom: float = float("nan")
    relaxed_enthalpy_per_atom: float = float("nan")
    initial_volume_per_atom: float = float("nan")
    relaxed_volume_per_atom: float = float("nan")
    steps: int = 0
    converged: bool = False
    final_fmax: float = float("nan")
    wall_time_s: float = 0.0
    calculator: str = ""
    optimizer: str = ""
    fmax: float = float("nan")
    max_steps: int = 0
    batched: bool = False
    error: str | None = None
    initial_structure: Any = field(default=None, repr=False)
    relaxed_structure: Any = field(default=None, repr=False)
    resumed: bool = False

    @property
    def ok(self) -> bool:
        """Relaxed without error (converged or not) and the relaxed structure is available."""
        return self.error is None and self.relaxed_structure is not None and self.initial_structure is not None

    def delta_energy_mev(self, energy: str = "enthalpy") -> float:
        """``E_gen - E_relaxed`` in meV/atom (``energy="enthalpy"``: H = E + pV, the default; or ``"energy"``)."""
        a, b = _energy_pair(self, energy)
        return 1000.0 * (a - b)

    @property
    def delta_volume_per_atom(self) -> float:
        """``V_gen/N - V_relaxed/N`` (A^3/atom)."""
        return self.initial_volume_per_atom - self.relaxed_volume_per_atom

    def to_dict(self, structures: bool = True) -> dict:
        """JSON-ready dict (structures as pymatgen ``as_dict()`` when ``structures``)."""
        d = {}
        for f in fields(self):
            if f.name in ("initial_structure", "relaxed_structure"):
                if structures:
                    s = getattr(self, f.name)
                    d[f.name] = None if s is None else s.as_dict()
                continue
            if f.name == "resumed":
                continue
            d[f.name] = jsonable(getattr(self, f.name))
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> "RelaxResult":
        from pymatgen.core import Structure

        kw = {}
        names = {f.name for f in fields(cls)}
        for k, v in d.items():
            if k not in names:
                continue
            if k in ("initial_structure", "relaxed_structure"):
                v = None if v is None else Structure.from_dict(v)
            elif v is None and k not in ("error",):
                v = float("nan")
            kw[k] = v
        return cls(**kw)


def _energy_pair(r: RelaxResult, energy: str) -> tuple[float, float]:
    e = str(energy).lower()
    if e in ("enthalpy", "h"):
        return r.initial_enthalpy_per_atom, r.relaxed_enthalpy_per_atom
    if e in ("energy", "e"):
        return r.initial_energy_per_atom, r.relaxed_energy_per_atom
    raise ValueError(f"energy must be 'enthalpy' or 'energy', got {energy!r}")
