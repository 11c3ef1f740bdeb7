"""Inputs and the resumable output folder of a relaxation: :func:`read_structures` (CIF / folder / extxyz),
Structure <-> ASE ``Atoms`` conversion, one ``<id>.json`` + ``<id>.cif`` per result written atomically (the JSON
last, as the completion marker), :func:`load_results`, and the check that a stored result was computed with the
same settings before it is resumed."""
from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Iterable

from ...utils.fileio import atomic_write_text, strict_json_dumps
from ..io import read_samples_with_errors
from .results import RelaxResult

# local: heavy -- ase and pymatgen are imported inside the functions (the workflows import this package)

__all__ = ["read_structures", "load_results"]


def read_structures(path: str | os.PathLike) -> tuple[list[str], list, list[str | None]]:
    """``(ids, structures, errors)`` from a CIF file, a folder of CIFs (and extxyz files) or an extxyz file.

    Ids are file stems (``<stem>#<k>`` for multi-block CIFs) or, for extxyz frames, ``info["material_id"]`` (else
    the frame index). Unreadable entries are ``None`` with the reason in ``errors``.
    """
    return read_samples_with_errors(path)


_SAFE = re.compile(r"[^A-Za-z0-9._#+=-]")


def _safe_name(sid: str) -> str:
    s = _SAFE.sub("_", str(sid)).lstrip(".")
    return s or "_"


def _bare(atoms):
    a = atoms.copy()
    a.calc = None
    return a


def _to_atoms(s):
    """Structure / Atoms -> a fresh periodic ``Atoms`` without calculator."""
    from ase import Atoms

    if isinstance(s, Atoms):
        a = s.copy()
        a.calc = None
        if not all(a.pbc):
            a.pbc = True
        return a
    from pymatgen.io.ase import AseAtomsAdaptor

    if not getattr(s, "is_ordered", True):
        raise ValueError("disordered structure (partial occupancies)")
    return _bare(AseAtomsAdaptor.get_atoms(s))


def _to_structure(a):
    from pymatgen.io.ase import AseAtomsAdaptor

    return AseAtomsAdaptor.get_structure(_bare(a))


def _is_atoms(x) -> bool:
    try:
        from ase import Atoms
    except ImportError:  # pragma: no cover
        return False
    return isinstance(x, Atoms)


def _write_result(out_dir: Path, r: RelaxResult) -> None:
    name = _safe_name(r.id)
    if r.relaxed_structure is not None:
        from pymatgen.io.cif import CifWriter

        atomic_write_text(out_dir / f"{name}.cif", str(CifWriter(r.relaxed_structure)))
    # the JSON is the completion marker: written last
    atomic_write_text(out_dir / f"{name}.json", strict_json_dumps(r.to_dict(structures=True), indent=1))


def load_results(out_dir: str | os.PathLike, ids: Iterable[str] | None = None) -> list[RelaxResult]:
    """Results written by :func:`relax_structures` in ``out_dir`` (all ``*.json`` but ``summary.json``, sorted,
    or the given ``ids`` in that order; a missing id raises ``FileNotFoundError``)."""
    out_dir = Path(out_dir)
    if ids is None:
        files = sorted(p for p in out_dir.glob("*.json") if p.name != "summary.json" and not p.name.startswith("."))
    else:
        files = [out_dir / f"{_safe_name(i)}.json" for i in ids]
    out = []
    for p in files:
        r = RelaxResult.from_dict(json.loads(p.read_text()))
        r.resumed = True
        out.append(r)
    return out


def _settings_mismatch(r: RelaxResult, want: dict) -> list[str]:
    bad = []
    if not math.isclose(float(r.pressure_gpa), want["pressure_gpa"], rel_tol=1e-9, abs_tol=1e-9):
        bad.append(f"pressure_gpa {r.pressure_gpa} != {want['pressure_gpa']}")
    for k in ("calculator", "optimizer", "max_steps"):
        if getattr(r, k) != want[k]:
            bad.append(f"{k} {getattr(r, k)!r} != {want[k]!r}")
    if not math.isclose(float(r.fmax), want["fmax"], rel_tol=1e-9):
        bad.append(f"fmax {r.fmax} != {want['fmax']}")
    return bad
