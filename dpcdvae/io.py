"""Writing sampled crystals: a fresh run folder per call (never overwrites), CIFs written as they come,
one extxyz with every crystal (material id, flags and sampler in each frame's info) and a JSON summary."""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
from pathlib import Path
from typing import Optional

from ._fileio import atomic_write_text, strict_json_dumps  # noqa: F401  (re-exported)
from .crystal import structure_to_atoms, write_cif

# local: heavy -- pymatgen and ase are imported inside the writers (the workflows import this module)

#: what ``valid`` means in samples.json (the paper's, CDVAE's, validity; the same as Table II counts)
VALIDITY_NOTE = ("valid = structure valid (usable cell, every interatomic distance >= 0.5 A, periodic images "
                 "included) and composition valid (SMACT charge neutrality + Pauling test), as the paper's Table II; "
                 "decoded = a crystal was built at all (N_a >= 1, usable cell)")


def spacegroup_symbol(structure, symprec: float) -> str:
    """Hermann-Mauguin symbol of ``structure`` at tolerance ``symprec`` (A), the space group its symmetrised CIF
    carries; ``"P1"`` when detection fails (the CIF is then written in P1 too)."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    try:
        return SpacegroupAnalyzer(structure, symprec=symprec).get_space_group_symbol()
    except Exception:  # degenerate cell: spglib gives up
        return "P1"



__all__ = ["new_run_dir", "SampleWriter", "write_samples", "strict_json_dumps", "VALIDITY_NOTE"]


def new_run_dir(out: str | os.PathLike, prefix: str = "run") -> Path:
    """``out`` itself if it does not exist or is empty, else a new ``out/<prefix>-YYYYmmdd-HHMMSS[-k]`` folder:
    results of a previous run are never overwritten."""
    out = Path(out)
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        out.mkdir(parents=True, exist_ok=True)
        return out
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    k = 0
    while True:
        cand = out / (f"{prefix}-{stamp}" + (f"-{k}" if k else ""))
        try:
            cand.mkdir(parents=True)
            return cand
        except FileExistsError:
            k += 1


class SampleWriter:
    """Writes :class:`dpcdvae.models.SampleOutput` batches into a run folder as they are produced.

    Layout: ``cif/<id>.cif`` (every crystal that could be built, valid or not; written exactly as sampled, P1, unless ``symprec`` is given: a
    symmetrised CIF moves atoms by up to ``symprec`` A, which would bias reconstruction metrics), ``samples.extxyz`` (the same crystals,
    ``valid`` in each frame's info), ``samples.json`` (every crystal incl. ones not built: id, ``valid`` in the paper's
    sense with ``struct_valid``, ``comp_valid`` and ``invalid_reason``, ``decoded``, flag, formula, lattice).
    """

    def __init__(self, run_dir: str | os.PathLike, meta: Optional[dict] = None, symprec: Optional[float] = None):
        self.dir = Path(run_dir)
        (self.dir / "cif").mkdir(parents=True, exist_ok=True)
        self.symprec = symprec
        self.records: list[dict] = []
        self.meta = dict(meta or {})
        self.meta.setdefault("created", _dt.datetime.now().isoformat(timespec="seconds"))
        self._xyz = self.dir / "samples.extxyz"

    def add(self, out) -> None:
        from ase.io import write as ase_write

        frames = []
        validity = out.validity()
        for i, (sid, s, flag) in enumerate(zip(out.ids, out.structures, out.flags)):
            decoded = s is not None and not flag
            v = validity[i]
            rec = {"id": str(sid), "decoded": decoded, "valid": v["valid"], "struct_valid": v["struct_valid"],
                   "comp_valid": v["comp_valid"], "invalid_reason": v["reason"], "flag": flag,
                   "num_atoms": int(out.num_atoms[i]), "lengths": [float(x) for x in out.lengths[i]],
                   "angles": [float(x) for x in out.angles[i]]}
            if decoded:
                rec["formula"] = s.composition.reduced_formula
                rec["cif"] = str(Path("cif") / f"{sid}.cif")
                write_cif(s, self.dir / rec["cif"], symprec=self.symprec)
                if self.symprec:
                    rec["spacegroup"] = spacegroup_symbol(s, self.symprec)
                atoms = structure_to_atoms(s)
                atoms.info.update({"material_id": str(sid), "flag": flag, "valid": bool(v["valid"])})
                frames.append(atoms)
            self.records.append(rec)
        if frames:
            ase_write(self._xyz, frames, format="extxyz", append=self._xyz.exists())
        self._flush()

    def _flush(self) -> None:
        data = {"meta": self.meta, "n": len(self.records), "n_valid": self.n_valid, "n_decoded": self.n_decoded,
                "validity": VALIDITY_NOTE, "crystals": self.records}
        if getattr(self, "interrupted", False):
            data = {"interrupted": True, **data}
        atomic_write_text(self.dir / "samples.json", strict_json_dumps(data, indent=1))

    def mark_interrupted(self) -> None:
        """Rewrite ``samples.json`` with ``"interrupted": true`` at its top: the run was stopped (Ctrl-C) and the
        file lists only the crystals of the batches finished before (each complete; CIFs of the batch under way may
        exist without a line in it)."""
        self.interrupted = True
        self._flush()

    @contextlib.contextmanager
    def marks_interrupt(self):
        """``with writer.marks_interrupt(): ...``: a ``KeyboardInterrupt`` inside marks ``samples.json`` as
        interrupted (:meth:`mark_interrupted`) and propagates."""
        try:
            yield self
        except KeyboardInterrupt:
            self.mark_interrupted()
            raise

    @property
    def n_valid(self) -> int:
        """Crystals valid in the paper's sense (structure and composition)."""
        return sum(r["valid"] for r in self.records)

    @property
    def n_decoded(self) -> int:
        """Crystals built at all (written as CIFs), valid or not."""
        return sum(r["decoded"] for r in self.records)


def write_samples(out, run_dir: str | os.PathLike, meta: Optional[dict] = None) -> Path:
    """Write one :class:`SampleOutput` into ``run_dir`` (see :class:`SampleWriter`); returns the folder."""
    w = SampleWriter(run_dir, meta)
    w.add(out)
    return w.dir
