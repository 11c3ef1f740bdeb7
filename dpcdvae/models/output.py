"""What the models' samplers return: :class:`SampleOutput` (structures plus the raw tensors), and
:func:`concat_outputs`."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch

from ..structures.validity import crystal_validity

__all__ = ["SampleOutput", "concat_outputs", "save_batch", "load_batch"]

#: version of the batch file layout written by :func:`save_batch`
BATCH_FILE_VERSION = 1


@dataclass
class SampleOutput:
    """What :meth:`DPCDVAE.reconstruct` / :meth:`DPCDVAE.generate` return.

    Attributes:
        structures: one pymatgen ``Structure`` per crystal, ``None`` where degenerate (see ``flags``).
        frac_coords [N,3] (wrapped), atom_types [N] (Z), lengths [B,3] (A), angles [B,3] (deg), num_atoms [B].
        flags: per crystal, ``""`` if fine, else why it is degenerate (``"N_a = 0"``, ``"volume ..."``).
        trajectory: if requested, ``{"t": [K], "unwrapped": [K,N,3], "wrapped": [K,N,3], "num_atoms", ...}``
            recorded every ``trajectory_every`` reverse steps (first frame = r_T, last = the final r_0).
        ids: material ids of the inputs (reconstruction) or ``gen-<i>`` names (generation).
    """

    structures: list
    frac_coords: torch.Tensor
    atom_types: torch.Tensor
    lengths: torch.Tensor
    angles: torch.Tensor
    num_atoms: torch.Tensor
    flags: list
    ids: list
    trajectory: Optional[dict] = None
    meta: dict = field(default_factory=dict)
    _validity: Optional[list] = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.structures)

    @staticmethod
    def concat(outs: list) -> "SampleOutput":
        """Several outputs as one (see :func:`concat_outputs`)."""
        return concat_outputs(outs)

    @property
    def decoded_mask(self) -> list:
        """True where a ``Structure`` was built (N_a >= 1, a usable cell). Not the paper's validity, which also
        asks for interatomic distances >= 0.5 A and a charge-neutral composition: see :meth:`validity`."""
        return [s is not None and not f for s, f in zip(self.structures, self.flags)]

    def validity(self) -> list[dict]:
        """The paper's validity of each crystal (:func:`dpcdvae.eval.generation.crystal_validity`): ``{"valid",
        "struct_valid", "comp_valid", "reason"}``; a crystal that was not built is invalid with its flag as
        reason. Computed on first call, then cached."""
        if self._validity is None or len(self._validity) != len(self.structures):
            self._validity = [crystal_validity(s if not f else None, not_decoded=f or "not decoded")
                              for s, f in zip(self.structures, self.flags)]
        return self._validity

    @property
    def valid_mask(self) -> list:
        """The paper's validity per crystal (see :meth:`validity`)."""
        return [v["valid"] for v in self.validity()]


def concat_outputs(outs: list) -> SampleOutput:
    """Concatenate several :class:`SampleOutput` (the trajectory of the first one is kept)."""
    if len(outs) == 1:
        return outs[0]
    return SampleOutput(
        structures=sum((o.structures for o in outs), []),
        frac_coords=torch.cat([o.frac_coords for o in outs]), atom_types=torch.cat([o.atom_types for o in outs]),
        lengths=torch.cat([o.lengths for o in outs]), angles=torch.cat([o.angles for o in outs]),
        num_atoms=torch.cat([o.num_atoms for o in outs]), flags=sum((o.flags for o in outs), []),
        ids=sum((o.ids for o in outs), []), trajectory=outs[0].trajectory, meta=outs[0].meta)


def save_batch(out: SampleOutput, path) -> None:
    """Write ``out`` to ``path`` (a ``.pt`` file of tensors, strings and numbers only, so that
    :func:`load_batch` reads it with ``torch.load(weights_only=True)``): coordinates, types, lattice, atom counts,
    flags, ids and meta; not the structures (rebuilt from the tensors on load) and not a trajectory. The file appears
    whole or not at all (written to a temporary name, then renamed): a run stopped mid-write leaves no half file."""
    import os
    from pathlib import Path

    path = Path(path)
    state = {"version": BATCH_FILE_VERSION, "frac_coords": out.frac_coords.detach().cpu(),
             "atom_types": out.atom_types.detach().cpu(), "lengths": out.lengths.detach().cpu(),
             "angles": out.angles.detach().cpu(), "num_atoms": out.num_atoms.detach().cpu(),
             "flags": [str(f) for f in out.flags], "ids": [str(i) for i in out.ids],
             "meta": {str(k): v for k, v in out.meta.items() if isinstance(v, (str, int, float, bool, type(None)))}}
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_batch(path) -> SampleOutput:
    """Read a file written by :func:`save_batch` back into a :class:`SampleOutput`: the same tensors, flags, ids and
    meta, and the structures rebuilt from the tensors exactly as the sampler built them (``None`` where flagged).
    Raises ``ValueError`` naming the file if it is not such a file."""
    from ..structures.crystal import tensors_to_structures

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, not a torch file, or holding objects we did not write
        raise ValueError(f"{path}: not a sample batch file ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or state.get("version") != BATCH_FILE_VERSION:
        raise ValueError(f"{path}: not a sample batch file of version {BATCH_FILE_VERSION}")
    flags = list(state["flags"])
    structures = tensors_to_structures(state["frac_coords"], state["atom_types"], state["lengths"], state["angles"],
                                       state["num_atoms"])
    return SampleOutput(structures=[None if f else s for s, f in zip(structures, flags)],
                        frac_coords=state["frac_coords"], atom_types=state["atom_types"], lengths=state["lengths"],
                        angles=state["angles"], num_atoms=state["num_atoms"], flags=flags, ids=list(state["ids"]),
                        meta=dict(state["meta"]))
