"""Reading samples to evaluate (CIF folders, extxyz files) and the reference splits (CDVAE CSVs).

Samples
-------
``read_samples(path) -> (ids, structures)``; ``read_samples_with_errors(path) -> (ids, structures, errors)``.

* a **directory**: every ``*.cif`` file in it (and ``*.extxyz`` / ``*.xyz`` files), sorted naturally by name; the id
  of a CIF is its file stem (for reconstructions: ``<material_id>.cif``); a CIF with several data blocks gives
  ``<stem>#<k>`` ids.
* a **CIF file**: its data blocks.
* an **extxyz file** (``.extxyz`` / ``.xyz``): every frame, read frame by frame with ASE and converted with
  ``pymatgen.io.ase.AseAtomsAdaptor``; the id is the frame's ``info["material_id"]`` if present, else its index.

Nothing here raises on a bad sample: an unreadable file or frame, a disordered CIF (overlapping sites merged by the
parser) or a cell-less frame yields ``None`` in ``structures`` with the reason in ``errors``; the metrics count it
invalid. A missing path raises ``FileNotFoundError``.
"""
from __future__ import annotations

import io as _io
import os
import re
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from ..data.csvio import read_csv_frame, read_csv_rows
from ..data.registry import find_spec
from ..data.resolve import split_file
from ..structures.validity import canonicalize_structure

# local: heavy -- pymatgen and ase are imported inside the readers (the relaxation engine imports this module, and
# the workflows import the relaxation engine)

CIF_SUFFIXES = (".cif",)
XYZ_SUFFIXES = (".extxyz", ".xyz")


def _natural_key(s: str):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", s)]


def read_cif_file(path: str | os.PathLike) -> tuple[list[str], list, list[str | None]]:
    """All data blocks of one CIF file: ``(ids, structures, errors)`` (never raises on bad content)."""
    from pymatgen.io.cif import CifParser

    path = Path(path)
    stem = path.stem
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parser = CifParser(str(path))
            structs = parser.parse_structures(primitive=False, on_error="raise")
    except Exception as exc:
        return [stem], [None], [f"unreadable CIF: {type(exc).__name__}: {exc}"[:300]]
    if not structs:
        return [stem], [None], ["unreadable CIF: no structure in file"]
    ids = [stem] if len(structs) == 1 else [f"{stem}#{k}" for k in range(len(structs))]
    out, errs = [], []
    for s in structs:
        if not s.is_ordered:
            out.append(None)
            errs.append("disordered CIF (overlapping or partially occupied sites)")
        else:
            out.append(s)
            errs.append(None)
    return ids, out, errs


def _xyz_frames(text: str) -> list[tuple[int, str | None, str | None]]:
    """Split an (ext)xyz text into frames: ``[(first_line_no, frame_text or None, error or None)]``."""
    lines = text.splitlines(keepends=True)
    frames = []
    i = 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        try:
            n = int(lines[i].split()[0])
            if n < 0:
                raise ValueError
        except (ValueError, IndexError):
            frames.append((i, None, f"bad atom-count line {i + 1}: {lines[i].strip()[:60]!r}; rest of file skipped"))
            break
        chunk = lines[i:i + n + 2]
        if len(chunk) < n + 2:
            frames.append((i, None, f"truncated frame at line {i + 1}"))
            break
        frames.append((i, "".join(chunk), None))
        i += n + 2
    return frames


def read_extxyz_file(path: str | os.PathLike) -> tuple[list[str], list, list[str | None]]:
    """All frames of an extxyz file: ``(ids, structures, errors)``; ids from ``info["material_id"]`` or the index."""
    import ase.io
    from pymatgen.io.ase import AseAtomsAdaptor

    path = Path(path)
    try:
        text = path.read_text()
    except Exception as exc:
        return [path.stem], [None], [f"unreadable file: {type(exc).__name__}: {exc}"[:300]]
    ids, structs, errs = [], [], []
    for k, (_, chunk, err) in enumerate(_xyz_frames(text)):
        fid = str(k)
        if chunk is None:
            ids.append(fid)
            structs.append(None)
            errs.append(err)
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                atoms = ase.io.read(_io.StringIO(chunk), format="extxyz", index=0)
            mid = atoms.info.get("material_id")
            if mid is not None:
                fid = str(mid)
            cell = np.asarray(atoms.cell.array, dtype=float)
            if not np.all(np.isfinite(cell)) or abs(np.linalg.det(cell)) == 0.0:
                raise ValueError("frame has no (or a degenerate / non-finite) cell")
            s = AseAtomsAdaptor.get_structure(atoms)
            ids.append(fid)
            structs.append(s)
            errs.append(None)
        except Exception as exc:
            ids.append(fid)
            structs.append(None)
            errs.append(f"unreadable extxyz frame {k}: {type(exc).__name__}: {exc}"[:300])
    if not ids:
        return [path.stem], [None], ["extxyz file holds no frames"]
    return ids, structs, errs


def read_samples_with_errors(path: str | os.PathLike) -> tuple[list[str], list, list[str | None]]:
    """``(ids, structures, errors)`` from a CIF folder, a CIF file or an extxyz file (see module docstring)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"samples not found: {path}")
    if path.is_dir():
        files = sorted((p for p in path.iterdir() if p.is_file() and p.suffix.lower() in CIF_SUFFIXES + XYZ_SUFFIXES),
                       key=lambda p: _natural_key(p.name))
        if not files:
            raise FileNotFoundError(f"no .cif / .extxyz / .xyz files in {path}")
    else:
        files = [path]
    ids: list[str] = []
    structs: list = []
    errs: list[str | None] = []
    for f in files:
        if f.suffix.lower() in XYZ_SUFFIXES:
            a, b, c = read_extxyz_file(f)
        else:
            a, b, c = read_cif_file(f)
        ids += a
        structs += b
        errs += c
    return ids, structs, errs


def read_samples(path: str | os.PathLike) -> tuple[list[str], list]:
    """``(ids, structures)`` from a CIF folder, a CIF file or an extxyz file; unreadable entries are ``None``."""
    ids, structs, _ = read_samples_with_errors(path)
    return ids, structs


# ----------------------------------------------------------------------------------------------------------------
# reference splits
# ----------------------------------------------------------------------------------------------------------------
def _parse_canonical(cif: str):
    """CIF text -> CDVAE canonical Structure (:func:`dpcdvae.structures.validity.canonicalize_structure`: Niggli-reduced,
    rebuilt from lattice parameters, coordinates not wrapped); None when the text cannot be parsed. Unlike the
    training loader, nothing is validated beyond parsing: the metrics judge the crystals themselves."""
    from pymatgen.core import Structure

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return canonicalize_structure(Structure.from_str(cif, fmt="cif"))
    except Exception:
        return None


def load_split_structures(dataset: str, split: str = "test", root: str | os.PathLike | None = None,
                          with_frame: bool = False, limit: int | None = None, cache: bool = True):
    """Read ``<dataset>/<split>.csv`` (CDVAE format) -> ``(material_ids, structures)`` in CSV order.

    The split is found like the training loader finds it (:func:`dpcdvae.data.dataset_dir`: explicit root >
    ``$DPCDVAE_DATA`` > ``./data`` > ``../shared/data``; the SYNTHETIC demo is generated on first use) and read with
    its CSV reader (:func:`dpcdvae.data.read_csv_rows`: every column as text, so ids are the file's strings; a file
    without a ``material_id`` column gets the row numbers as ids). Each CIF is parsed and canonicalised as CDVAE
    does (Niggli-reduced, primitive search off, rebuilt with ``Lattice.from_parameters``); a row whose CIF cannot
    be parsed gives ``None``. ``limit`` keeps the first rows only. With ``with_frame=True`` the split as a pandas
    DataFrame of text columns is returned as a third element. With ``cache=True`` the parsed split is kept on disk
    (:func:`dpcdvae.eval.refcache.cached_split`, keyed by the file's bytes): the second read of a split takes a
    second or two instead of ~20 s for Perov-5's 3785 crystals.
    """
    from .refcache import cached_split

    spec = find_spec(dataset)
    ds = spec.name if spec is not None and spec.benchmark else str(dataset)  # "Perov-5" -> perov_5
    csv = split_file(ds, split, root)

    def parse():
        rows, _ = read_csv_rows(csv, limit=limit, ids="material_id-or-row", count_rows=False)
        return [r[1] for r in rows], [_parse_canonical(r[2]) for r in rows]

    ids, structs = (cached_split(csv, parse, tag=f"canonical niggli wrap=False ids=material_id-or-row limit={limit}")
                    if cache else parse())
    if with_frame:
        return ids, structs, read_csv_frame(csv, nrows=limit)
    return ids, structs


def align_by_id(pred_ids: Sequence[str], preds: Sequence, target_ids: Sequence[str],
                pred_errors: Sequence[str | None] | None = None):
    """Order predictions like the targets: ``(aligned_preds, aligned_errors, unknown_ids)``.

    A target without a prediction gets ``None`` with error ``"no prediction for this material_id"``; predictions
    whose id is not a target id are returned in ``unknown_ids`` (ignored by the metrics); for a duplicated id the
    first readable prediction wins.
    """
    index: dict[str, int] = {}
    for i, pid in enumerate(pred_ids):
        if pid not in index or (preds[index[pid]] is None and preds[i] is not None):
            index[pid] = i
    tset = set(target_ids)
    unknown = [pid for pid in pred_ids if pid not in tset]
    aligned, errors = [], []
    for tid in target_ids:
        if tid in index:
            i = index[tid]
            aligned.append(preds[i])
            errors.append(pred_errors[i] if pred_errors is not None else None)
        else:
            aligned.append(None)
            errors.append("no prediction for this material_id")
    return aligned, errors, unknown
