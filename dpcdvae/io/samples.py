"""Writing sampled crystals: a fresh run folder per call (never overwrites), CIFs written as they come,
one extxyz with every crystal (material id, flags and sampler in each frame's info) and a JSON summary; and reading
such a folder back (:func:`read_sample_run`)."""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
from pathlib import Path
from typing import Optional

from ..utils.fileio import atomic_write_text, strict_json_dumps  # noqa: F401  (re-exported)
from ..structures.crystal import structure_to_atoms, write_cif
from ..utils.errors import UserError

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



__all__ = ["new_run_dir", "SampleWriter", "write_samples", "read_sample_run", "strict_json_dumps", "VALIDITY_NOTE"]


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


def read_sample_run(folder: str | os.PathLike, allow_interrupted: bool = False):
    """Rebuild the :class:`~dpcdvae.models.SampleOutput` of a run folder written by :class:`SampleWriter`
    (``dpcdvae sample --out DIR``, :func:`dpcdvae.workflows.generate_to_folder`): ``folder`` is the folder holding
    ``samples.json`` (or that file itself).

    Restored, for every record of ``samples.json`` in its order: ``ids``, ``flags``, ``num_atoms`` [B] (int64),
    ``lengths`` [B,3] (A) and ``angles`` [B,3] (deg) (float32, the numbers the sampler produced); ``structures``:
    the crystal read from its CIF (``cif/<id>.cif``, the same reader as ``dpcdvae evaluate --samples``) for a
    ``"decoded"`` record, ``None`` for one that was not built; ``frac_coords`` [N,3] (float32, wrapped into [0, 1))
    and ``atom_types`` [N] (Z, int64) concatenated from those structures, ``num_atoms[i]`` rows per crystal, so that
    ``N = num_atoms.sum()`` and the rows of crystal ``i`` are where the sampler's were; a crystal without a
    structure (not built), or whose CIF holds another number of atoms than ``num_atoms[i]`` (a CIF symmetrised with
    ``--symprec`` may be a conventional cell), gets ``num_atoms[i]`` rows of NaN coordinates and type 0 instead;
    :meth:`~dpcdvae.models.SampleOutput.validity` answers what ``samples.json`` recorded (``valid``,
    ``struct_valid``, ``comp_valid``, ``invalid_reason``) without recomputing it; ``meta``: ``samples.json``'s
    ``"meta"`` plus ``"read_from": str(folder)`` (and ``"interrupted": True`` for an interrupted run read with
    ``allow_interrupted``).

    Not restored: the coordinates and types of crystals that were not built (no CIF is written for them), the
    sampler's unrounded coordinates (a CIF keeps 8 decimals), a reverse-diffusion ``trajectory`` (None) and any
    timing in memory (``wall_s``); the sampler's exact tensors of a ``dpcdvae sample`` run are in its
    ``batches/batch_<k>.pt`` files (:func:`dpcdvae.models.output.load_batch`). A decoded record whose CIF exists but
    cannot be read as one ordered crystal gets ``None`` as structure, that read error as its flag and as its invalid
    reason, and is listed in ``meta["read_errors"]`` ({id: error}).

    Raises :class:`~dpcdvae.utils.errors.UserError` (one line, naming the file) when ``samples.json`` is missing or
    unreadable, when a CIF it lists is absent, and for an interrupted run (``"interrupted": true``, stopped before
    the end: it holds only the crystals of the batches finished before) unless ``allow_interrupted=True``.
    """
    import math

    import torch

    from ..eval.io import read_cif_file
    from ..models.output import SampleOutput

    folder = Path(folder).expanduser()
    if folder.name == "samples.json" and folder.is_file():
        folder = folder.parent
    path = folder / "samples.json"
    if not path.is_file():
        raise UserError(f"{path}: not found; {folder} is not a run folder written by `dpcdvae sample` (it writes "
                        f"samples.json, cif/ and samples.extxyz)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        records = data["crystals"]
        if not isinstance(records, list):
            raise TypeError("'crystals' is not a list")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path}: not a samples.json written by `dpcdvae sample` ({type(exc).__name__}: {exc})") \
            from None
    if data.get("interrupted") and not allow_interrupted:
        raise UserError(f"{path}: the run was interrupted (\"interrupted\": true) and holds {len(records):,} "
                        f"crystals, those of the batches finished before it stopped; finish it first (the same "
                        f"`dpcdvae sample` command plus --resume --out {folder}), or read these with "
                        f"allow_interrupted=True")
    ids, flags, structures, n_atoms, lengths, angles, validity = [], [], [], [], [], [], []
    coords, types = [], []
    read_errors: dict[str, str] = {}
    for k, rec in enumerate(records):
        try:
            sid = str(rec["id"])
            flag = str(rec.get("flag") or "")
            na = int(rec["num_atoms"])
            lens = [float(x) for x in rec["lengths"]]
            angs = [float(x) for x in rec["angles"]]
            if len(lens) != 3 or len(angs) != 3:
                raise ValueError("lengths / angles need 3 numbers each")
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"{path}: crystal record {k} is incomplete ({type(exc).__name__}: {exc})") from None
        s = None
        if rec.get("decoded"):
            cif = folder / str(rec.get("cif") or Path("cif") / f"{sid}.cif")
            if not cif.is_file():
                raise UserError(f"{cif}: listed in {path} for crystal {sid} but absent")
            _, structs, errs = read_cif_file(cif)
            if len(structs) != 1 or structs[0] is None:
                why = errs[0] if len(structs) == 1 else f"{len(structs)} data blocks in {cif.name}"
                flag = f"unreadable CIF: {why}"[:300] if not why.startswith("unreadable CIF") else why
                read_errors[sid] = flag
            else:
                s = structs[0]
        v = {"valid": bool(rec.get("valid", False)), "struct_valid": bool(rec.get("struct_valid", False)),
             "comp_valid": bool(rec.get("comp_valid", False)), "reason": rec.get("invalid_reason")}
        if sid in read_errors:
            v = {"valid": False, "struct_valid": False, "comp_valid": False, "reason": read_errors[sid]}
        if s is not None and len(s) == na:
            coords.append(torch.tensor([[x - math.floor(x) for x in site.frac_coords] for site in s],
                                       dtype=torch.float32).reshape(-1, 3))
            types.append(torch.tensor([site.specie.Z for site in s], dtype=torch.long))
        else:
            coords.append(torch.full((max(na, 0), 3), float("nan"), dtype=torch.float32))
            types.append(torch.zeros(max(na, 0), dtype=torch.long))
        ids.append(sid)
        flags.append(flag)
        structures.append(s)
        n_atoms.append(na)
        lengths.append(lens)
        angles.append(angs)
        validity.append(v)
    has_validity = all(all(key in r for key in ("valid", "struct_valid", "comp_valid")) for r in records)
    meta = dict(data.get("meta") or {})
    meta["read_from"] = str(folder)
    if data.get("interrupted"):
        meta["interrupted"] = True
    if read_errors:
        meta["read_errors"] = read_errors
    return SampleOutput(
        structures=structures,
        frac_coords=torch.cat(coords) if coords else torch.zeros((0, 3), dtype=torch.float32),
        atom_types=torch.cat(types) if types else torch.zeros(0, dtype=torch.long),
        lengths=torch.tensor(lengths, dtype=torch.float32).reshape(-1, 3),
        angles=torch.tensor(angles, dtype=torch.float32).reshape(-1, 3),
        num_atoms=torch.tensor(n_atoms, dtype=torch.long), flags=flags, ids=ids, meta=meta,
        _validity=validity if has_validity else None)
