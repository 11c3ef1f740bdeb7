"""Writing sampled crystals: a fresh run folder per call (never overwrites), CIFs written as they come,
one extxyz with every crystal (material id, flags and sampler in each frame's info) and a JSON summary."""
from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Optional

from ._fileio import atomic_write_text
from .crystal import write_cif

__all__ = ["new_run_dir", "SampleWriter", "write_samples"]


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
    """Writes :class:`dpcdvae.model.SampleOutput` batches into a run folder as they are produced.

    Layout: ``cif/<id>.cif`` (valid crystals; written exactly as sampled, P1, unless ``symprec`` is given: a
    symmetrised CIF moves atoms by up to ``symprec`` A, which would bias reconstruction metrics), ``samples.extxyz`` (all valid crystals),
    ``samples.json`` (every crystal incl. flagged ones: id, flag, formula, lattice), ``run.json`` (metadata).
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

        from .crystal import structure_to_atoms

        frames = []
        for i, (sid, s, flag) in enumerate(zip(out.ids, out.structures, out.flags)):
            rec = {"id": str(sid), "flag": flag, "valid": s is not None and not flag,
                   "num_atoms": int(out.num_atoms[i]), "lengths": [float(v) for v in out.lengths[i]],
                   "angles": [float(v) for v in out.angles[i]]}
            if s is not None and not flag:
                rec["formula"] = s.composition.reduced_formula
                rec["cif"] = str(Path("cif") / f"{sid}.cif")
                write_cif(s, self.dir / rec["cif"], symprec=self.symprec)
                atoms = structure_to_atoms(s)
                atoms.info.update({"material_id": str(sid), "flag": flag})
                frames.append(atoms)
            self.records.append(rec)
        if frames:
            ase_write(self._xyz, frames, format="extxyz", append=self._xyz.exists())
        self._flush()

    def _flush(self) -> None:
        data = {"meta": self.meta, "n": len(self.records),
                "n_valid": sum(r["valid"] for r in self.records), "crystals": self.records}
        atomic_write_text(self.dir / "samples.json", json.dumps(data, indent=1))


def write_samples(out, run_dir: str | os.PathLike, meta: Optional[dict] = None) -> Path:
    """Write one :class:`SampleOutput` into ``run_dir`` (see :class:`SampleWriter`); returns the folder."""
    w = SampleWriter(run_dir, meta)
    w.add(out)
    return w.dir
