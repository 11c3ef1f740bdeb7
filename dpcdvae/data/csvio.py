"""Reading CDVAE-format CSV files and turning each row into a canonical crystal (pymatgen, no torch needed).

CDVAE CSV format: a leading unnamed index column, ``material_id``, ``cif`` (the CIF text of one P1 cell) and
property columns. Preprocessing of a row (as in CDVAE, primitive-cell search off):

``Structure.from_str(cif, fmt="cif")`` -> ``get_reduced_structure()`` (Niggli) -> canonical ``Structure`` rebuilt
with ``Lattice.from_parameters(a, b, c, alpha, beta, gamma)`` and the same fractional coordinates and species
(:func:`canonicalize_structure` with ``wrap=True``: fractional coordinates wrapped into [0, 1)).

Every rejected row raises :class:`DataError` naming the file, the 0-based data row and the ``material_id``, or,
with ``on_error="skip"``, is skipped and reported (never a silent drop).
"""
from __future__ import annotations

import io
import logging
import math
import os
import re
import shlex
import sys
import warnings
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import numpy as np

from ..utils.pool import process_pool
from ..utils.progress import progress_bar
from ..structures.validity import canonicalize_structure  # noqa: F401 (the one canonicaliser; re-exported)

# local: heavy, keeps the CLI start fast (pandas, pymatgen: the command line imports this module at start)

log = logging.getLogger("dpcdvae.data")

#: Bump when the preprocessing output changes: every cache entry keyed with an older value is rebuilt.
#: 2: the geometry checks of the canonical cell (:func:`check_canonical_geometry`).
PREPROCESS_VERSION = 2
MAX_ATOMIC_NUM = 100
GRAPH_METHODS = ("crystalnn", "none")
MIN_VOLUME = 0.1  # A^3, below this a cell is treated as degenerate (the paper's validity threshold)
#: Geometry checks of the canonical (Niggli-reduced, rebuilt) cell, :func:`check_canonical_geometry`. Measured on
#: the shared CDVAE data (every row of Perov-5 train/val/test, Carbon-24 val/test, 2026-12-07): canonical angles
#: 90 deg (Perov-5) and 60.0-120.0 deg (Carbon-24; a Niggli-reduced cell has all angles in [60, 120]); shortest
#: lattice vector 3.30 A / 2.40 A; shortest interatomic distance 1.30 A / 1.19 A. The thresholds sit well below:
MIN_CELL_ANGLE = 20.0  # deg: a canonical angle outside [20, 160] deg is a degenerate (flattened) cell
MAX_CELL_ANGLE = 160.0  # deg
MIN_LATTICE_VECTOR = 1.0  # A: no crystal has a repeat shorter than this (the shortest data: 2.40 A)
MIN_PAIR_DISTANCE = 0.5  # A: the paper's structural-validity threshold; below any bond (the shortest data: 1.19 A)

Row = tuple[int, str, Any, float]  # (0-based data row, material_id, cif text, property value or NaN)


class DataError(ValueError):
    """A CSV file or one of its rows cannot be used; the message names the file, row and material_id."""


class DataWarning(UserWarning):
    """Rows were skipped under ``on_error='skip'`` (the warning gives the count and the reasons)."""


class RowError(Exception):
    """Internal: a single row is invalid (``reason`` is the human-readable cause)."""


@dataclass(frozen=True)
class PreprocessSettings:
    """Everything that changes the preprocessing output (part of the cache key).

    ``max_atoms``: rows with more atoms are errors (None: no limit). ``prop``: property column (None: ``y`` = NaN).
    ``graph``: ``'crystalnn'`` (edges via :func:`dpcdvae.structures.graph.crystalnn_edges`) or ``'none'``.
    """

    niggli: bool = True
    primitive: bool = False
    graph: str = "crystalnn"
    max_atoms: Optional[int] = None
    prop: Optional[str] = None
    version: int = PREPROCESS_VERSION

    def as_dict(self) -> dict:
        return asdict(self)


def row_error_message(path, row: Optional[int], material_id: Optional[str], reason: str) -> str:
    """``"<file>: row <i> (material_id=<id>): <reason>"`` (file-level errors omit the row)."""
    if row is None:
        return f"{path}: {reason}"
    return f"{path}: row {row} (material_id={material_id!r}): {reason}"


# ---------------------------------------------------------------------------------------------------------------
# CSV reading
# ---------------------------------------------------------------------------------------------------------------

def read_csv_frame(path, data: Optional[bytes] = None, nrows: Optional[int] = None):
    """A CDVAE CSV as a pandas DataFrame of text columns (``dtype=str``, empty cells stay ``""``).

    ``data`` may hold the file's bytes (already read for hashing); ``nrows`` reads only the first rows. File-level
    problems (unreadable, empty, not CSV) raise :class:`DataError` naming the file.
    """
    import pandas as pd

    path = Path(path)
    if data is None:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise DataError(f"{path}: cannot read file: {exc}") from exc
    if not data.strip():
        raise DataError(f"{path}: file is empty (expected a CDVAE CSV with columns material_id, cif, ...)")
    try:
        return pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False, nrows=nrows)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{path}: not a readable CSV file: {exc}") from exc


ID_MODES = ("material_id", "material_id-or-row")


def read_csv_rows(path, prop: Optional[str] = None, limit: Optional[int] = None,
                  data: Optional[bytes] = None, *, ids: str = "material_id",
                  count_rows: bool = True) -> tuple[list[Row], int]:
    """Rows ``(row, material_id, cif, y)`` of a CDVAE CSV, and the number of data rows in the file.

    The package's one reader of split CSVs (the training loader, ``dpcdvae data info``, the evaluation's
    reference splits and the registry's atom count all use it). ``y`` is the ``prop`` column as float (NaN when
    ``prop`` is None; unparsable values become NaN and are rejected later with the raw text in the reason).
    ``data`` may hold the file's bytes (already read for hashing). ``ids``: ``"material_id"`` (the column is
    required) or ``"material_id-or-row"`` (a file without it gets the 0-based row numbers as ids, what the
    evaluation accepts). ``count_rows=False`` with a ``limit`` reads only the first ``limit`` rows and then
    returns their count instead of the file's. File-level problems (empty file, no data rows, missing columns,
    CSV syntax) raise :class:`DataError`.
    """
    if ids not in ID_MODES:
        raise ValueError(f"ids must be one of {ID_MODES}, got {ids!r}")
    path = Path(path)
    nrows = max(int(limit), 0) if (limit is not None and not count_rows) else None
    df = read_csv_frame(path, data=data, nrows=nrows)
    required = (["material_id"] if ids == "material_id" else []) + ["cif"] + ([prop] if prop else [])
    missing = [c for c in required if c not in df.columns]
    if missing:
        cols = [c for c in df.columns if not c.startswith("Unnamed")]
        raise DataError(f"{path}: missing column(s) {missing} (columns present: {cols})")
    if len(df) == 0:
        raise DataError(f"{path}: no data rows (header only)")
    n_rows = len(df)
    if limit is not None:
        df = df.iloc[: max(int(limit), 0)]
    mids = df["material_id"].tolist() if "material_id" in df.columns else [str(i) for i in range(len(df))]
    cifs = df["cif"].tolist()
    if prop:
        raw = df[prop].tolist()
        ys = []
        for v in raw:
            try:
                ys.append(float(v))
            except (TypeError, ValueError):
                ys.append(("raw", v))
    else:
        ys = [math.nan] * len(df)
    rows = [(i, str(mids[i]), cifs[i], ys[i]) for i in range(len(df))]
    return rows, n_rows


# ---------------------------------------------------------------------------------------------------------------
# one row -> canonical structure -> arrays
# ---------------------------------------------------------------------------------------------------------------

def _short(msg: str, n: int = 200) -> str:
    msg = " ".join(str(msg).split())
    return msg if len(msg) <= n else msg[: n - 3] + "..."


def parse_cif(cif: Any):
    """CIF text -> pymatgen ``Structure``, validated; raises :class:`RowError` with the reason.

    Checks: non-empty text, parsable, ordered (no partial occupancy), known elements with Z in 1..100, finite
    lattice and coordinates, right-handed cell with volume >= 0.1 A^3, at least one atom.
    """
    from pymatgen.core import Structure

    if not isinstance(cif, str) or not cif.strip():
        raise RowError("empty CIF text")
    check_cell_text(cif)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            s = Structure.from_str(cif, fmt="cif")
        except Exception as exc:  # pymatgen raises many types on malformed CIF text
            notes = []
            for w in caught:
                m = _short(w.message, 120)
                if "Issues encountered" not in m and m not in notes:
                    notes.append(m)
            what = "malformed CIF"
            if _NONFINITE.search(cif):
                what = "malformed CIF: non-finite number (NaN/inf) in the coordinates or cell"
            raise RowError(f"{what} ({type(exc).__name__}: {_short(exc)}"
                           + (f"; parser said: {'; '.join(notes[:3])}" if notes else "") + ")") from None
    validate_structure(s)
    return s


_NONFINITE = re.compile(r"(?<![\w.])[+-]?(nan|inf|infinity)(?![\w.])", re.IGNORECASE)
_CELL = re.compile(r"^\s*_cell_(length_a|length_b|length_c|angle_alpha|angle_beta|angle_gamma)\s+(\S+)",
                   re.MULTILINE | re.IGNORECASE)


def check_cell_text(cif: str) -> None:
    """Check the raw ``_cell_length_*`` (Angstrom) / ``_cell_angle_*`` (degrees) values of a CIF before parsing
    (pymatgen silently flips negative lengths and rejects degenerate cells with an opaque message).

    Raises :class:`RowError` for non-numeric or non-finite values, non-positive lengths, angles outside (0, 180)
    and zero or negative volume. Missing values are left to the parser.
    """
    vals: dict[str, float] = {}
    for key, raw in _CELL.findall(cif):
        txt = raw.split("(")[0]
        try:
            v = float(txt)
        except ValueError:
            raise RowError(f"_cell_{key.lower()} is not a number: {raw!r}") from None
        if not math.isfinite(v):
            raise RowError(f"non-finite lattice parameter _cell_{key.lower()} = {raw}")
        vals[key.lower()] = v
    for k in ("length_a", "length_b", "length_c"):
        if k in vals and vals[k] <= 0:
            raise RowError(f"zero or negative lattice length _cell_{k} = {vals[k]:g} A (zero/negative volume)")
    for k in ("angle_alpha", "angle_beta", "angle_gamma"):
        if k in vals and not 0.0 < vals[k] < 180.0:
            raise RowError(f"lattice angle _cell_{k} = {vals[k]:g} deg outside (0, 180) (degenerate cell)")
    if len(vals) == 6:
        ca, cb, cg = (math.cos(math.radians(vals[k])) for k in ("angle_alpha", "angle_beta", "angle_gamma"))
        rad = 1.0 - ca * ca - cb * cb - cg * cg + 2.0 * ca * cb * cg
        vol = vals["length_a"] * vals["length_b"] * vals["length_c"] * math.sqrt(max(rad, 0.0))
        if rad <= 0.0 or vol < MIN_VOLUME:
            raise RowError(f"zero or negative cell volume ({vol:.4g} A^3 from the cell parameters, angles "
                           f"{vals['angle_alpha']:g}/{vals['angle_beta']:g}/{vals['angle_gamma']:g} deg)")


def validate_structure(s) -> None:
    """Raise :class:`RowError` if ``s`` is not a usable ordered crystal (see :func:`parse_cif`)."""
    from pymatgen.core import DummySpecies, Element

    if len(s) == 0:
        raise RowError("structure has no atoms")
    if not s.is_ordered:
        raise RowError("disordered structure (partial occupancy) is not supported")
    for sp in s.species:
        if isinstance(sp, DummySpecies):
            raise RowError(f"unknown element {str(sp)!r}")
        el = sp if isinstance(sp, Element) else getattr(sp, "element", None)
        if not isinstance(el, Element):
            raise RowError(f"unknown element {str(sp)!r}")
        if not 1 <= el.Z <= MAX_ATOMIC_NUM:
            raise RowError(f"element {el.symbol} (Z={el.Z}) outside Z = 1..{MAX_ATOMIC_NUM}")
    m = np.asarray(s.lattice.matrix, dtype=float)
    abc = np.asarray(s.lattice.abc, dtype=float)
    ang = np.asarray(s.lattice.angles, dtype=float)
    if not (np.isfinite(m).all() and np.isfinite(abc).all() and np.isfinite(ang).all()):
        raise RowError(f"non-finite lattice (lengths {abc.tolist()} A, angles {ang.tolist()} deg)")
    if not np.isfinite(np.asarray(s.frac_coords, dtype=float)).all():
        raise RowError("non-finite fractional coordinates")
    vol = float(np.linalg.det(m))
    if not vol >= MIN_VOLUME:
        raise RowError(f"zero or negative cell volume ({vol:.4g} A^3; signed, must be >= {MIN_VOLUME} A^3)")


def check_canonical_geometry(lattice: np.ndarray, frac: np.ndarray) -> None:
    """Reject a degenerate canonical cell (raises :class:`RowError` naming the measure, its value and the limit).

    ``lattice``: ``[3, 3]`` rows a, b, c in Angstrom (the cell after the Niggli reduction and the canonical rebuild);
    ``frac``: ``[n, 3]`` fractional coordinates. Checked, in this order:

    * every cell angle within [:data:`MIN_CELL_ANGLE`, :data:`MAX_CELL_ANGLE`] = [20, 160] deg;
    * the shortest lattice vector >= :data:`MIN_LATTICE_VECTOR` = 1.0 A (the shortest repeat of the crystal);
    * the shortest distance between two different atoms, over all periodic images, >= :data:`MIN_PAIR_DISTANCE`
      = 0.5 A.

    A cell given with a 170 deg angle and 4 A edges reduces to a cell with a 0.70 A vector, and its atoms end up
    closer than 0.5 A: the second and third checks name it. The distance search is exact below the threshold: the
    images searched per direction reach at least ``MIN_PAIR_DISTANCE`` beyond the cell (numpy, no torch)."""
    lat = np.asarray(lattice, dtype=np.float64).reshape(3, 3)
    lengths = np.linalg.norm(lat, axis=1)
    pairs = ((1, 2, "alpha"), (0, 2, "beta"), (0, 1, "gamma"))
    for i, j, name in pairs:
        cos = float(lat[i] @ lat[j] / max(lengths[i] * lengths[j], 1e-300))
        ang = math.degrees(math.acos(min(1.0, max(-1.0, cos))))
        if not MIN_CELL_ANGLE <= ang <= MAX_CELL_ANGLE:
            raise RowError(f"degenerate cell after the Niggli reduction: angle {name} = {ang:.1f} deg outside "
                           f"[{MIN_CELL_ANGLE:g}, {MAX_CELL_ANGLE:g}] deg")
    k = int(np.argmin(lengths))
    if lengths[k] < MIN_LATTICE_VECTOR:
        raise RowError(f"degenerate cell after the Niggli reduction: shortest lattice vector "
                       f"{'abc'[k]} = {lengths[k]:.3f} A < {MIN_LATTICE_VECTOR:g} A")
    f = np.asarray(frac, dtype=np.float64).reshape(-1, 3)
    n = len(f)
    if n < 2:
        return
    diff = f[None, :, :] - f[:, None, :]
    diff -= np.round(diff)  # [n, n, 3] in [-0.5, 0.5]
    # |(d + m) . L| < t needs |d_k + m_k| < t / spacing_k, spacing_k = V / |a_l x a_m| (the k-th plane spacing)
    vol = abs(float(np.linalg.det(lat)))
    cross = np.stack([np.cross(lat[1], lat[2]), np.cross(lat[2], lat[0]), np.cross(lat[0], lat[1])])
    spacing = vol / np.linalg.norm(cross, axis=1)
    reach = [int(math.ceil(MIN_PAIR_DISTANCE / max(sp, 1e-12) + 0.5)) for sp in spacing]
    axes = [np.arange(-r, r + 1, dtype=np.float64) for r in reach]
    images = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)  # [K, 3]
    off = ~np.eye(n, dtype=bool)
    d = np.linalg.norm((diff[off][:, None, :] + images[None]) @ lat, axis=-1).min(axis=1)  # [n (n - 1)]
    m = int(np.argmin(d))
    if d[m] < MIN_PAIR_DISTANCE:
        i, j = np.argwhere(off)[m]
        raise RowError(f"degenerate cell after the Niggli reduction: atoms {i} and {j} are {d[m]:.3f} A apart "
                       f"(< {MIN_PAIR_DISTANCE:g} A)")


def _graph_fn(method: str):
    if method == "none":
        return None
    if method == "crystalnn":
        try:
            from ..structures.graph import crystalnn_edges  # local: guarded; graph needs torch, this reader does not
        except ImportError as exc:  # pragma: no cover - depends on the rest of the package
            raise RuntimeError(
                "graph='crystalnn' needs dpcdvae.structures.graph.crystalnn_edges, which could not be imported "
                f"({exc}); use graph='none' or fix the installation."
            ) from exc
        return crystalnn_edges
    raise ValueError(f"unknown graph method {method!r}; expected one of {GRAPH_METHODS}")


def process_row(cif: Any, y: Any, settings: PreprocessSettings, graph_fn=None) -> dict:
    """One CSV row (CIF text, property value) -> record of numpy arrays; see :func:`process_structure`.

    Raises :class:`RowError` (with the reason) for any invalid input.
    """
    if settings.prop:
        if isinstance(y, tuple):
            raise RowError(f"property {settings.prop!r} is not a number: {y[1]!r}")
        if not math.isfinite(y):
            raise RowError(f"property {settings.prop!r} is not finite ({y})")
    return process_structure(parse_cif(cif), y if settings.prop else math.nan, settings, graph_fn)


def process_structure(s, y: float, settings: PreprocessSettings, graph_fn=None) -> dict:
    """A validated ``Structure`` -> record of numpy arrays: ``frac_coords [n,3]`` (float32, in [0,1)),
    ``atom_types [n]`` (Z), ``lengths [3]`` (Angstrom), ``angles [3]`` (degrees), ``y`` (float, NaN if no
    property) and, with a graph, ``edge_index [2,E]`` (source, target) and ``to_jimages [E,3]`` (image of the
    source). Raises :class:`RowError`.
    """
    validate_structure(s)
    if settings.max_atoms is not None and len(s) > settings.max_atoms:
        raise RowError(f"{len(s)} atoms > max_atoms={settings.max_atoms}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            c = canonicalize_structure(s, niggli=settings.niggli, wrap=True)
            if settings.primitive:  # pragma: no cover - CDVAE setting is off; kept for completeness
                c = canonicalize_structure(c.get_primitive_structure(), niggli=settings.niggli, wrap=True)
    except Exception as exc:
        raise RowError(f"Niggli reduction / canonicalisation failed ({type(exc).__name__}: {_short(exc)})") from None
    validate_structure(c)
    lat = c.lattice
    # the geometry checks judge the crystal, not its basis: without the Niggli reduction (niggli=False keeps a
    # possibly skewed basis) they run on the reduced cell of the same crystal
    chk = c
    if not settings.niggli:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                chk = canonicalize_structure(c, niggli=True, wrap=True)
        except Exception as exc:
            raise RowError(f"Niggli reduction failed ({type(exc).__name__}: {_short(exc)})") from None
    check_canonical_geometry(np.asarray(chk.lattice.matrix, dtype=np.float64),
                             np.asarray(chk.frac_coords, dtype=np.float64))
    out = {
        "frac_coords": np.asarray(c.frac_coords, dtype=np.float32),
        "atom_types": np.asarray([sp.Z for sp in c.species], dtype=np.int64),
        "lengths": np.asarray(lat.abc, dtype=np.float64),
        "angles": np.asarray(lat.angles, dtype=np.float64),
        "y": float(y),
    }
    # float32 rounding can turn 0.99999999 into 1.0: keep coordinates in [0, 1)
    out["frac_coords"][out["frac_coords"] >= 1.0] = 0.0
    if graph_fn is not None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ei, off = graph_fn(c)
        except Exception as exc:
            raise RowError(f"{settings.graph} graph failed ({type(exc).__name__}: {_short(exc)})") from None
        out["edge_index"] = np.asarray(ei, dtype=np.int64).reshape(2, -1)
        out["to_jimages"] = np.asarray(off, dtype=np.int64).reshape(-1, 3)
    return out


def _process_chunk(task: tuple[dict, list[Row]]) -> list[tuple[int, str, bool, Any]]:
    """Worker entry point: ``[(row, material_id, ok, record-or-reason), ...]``."""
    settings_dict, rows = task
    settings = PreprocessSettings(**settings_dict)
    graph_fn = _graph_fn(settings.graph)
    out = []
    for row, mid, cif, y in rows:
        try:
            out.append((row, mid, True, process_row(cif, y, settings, graph_fn)))
        except RowError as exc:
            out.append((row, mid, False, str(exc)))
    return out


def _worker_init() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            torch.set_num_threads(1)
        except Exception:  # pragma: no cover
            pass


def iter_processed(rows: Sequence[Row], settings: PreprocessSettings, num_workers: Optional[int] = None,
                   progress: bool = True, desc: str = "preprocessing",
                   chunksize: int = 32) -> Iterator[tuple[int, str, bool, Any]]:
    """Process ``rows`` (in parallel worker processes when worth it), yielding results in row order.

    ``num_workers``: processes to use (default ``os.cpu_count()``; 0 or 1: in this process). A tqdm progress bar
    counts crystals. Results are ``(row, material_id, ok, record-or-reason)``.
    """
    _graph_fn(settings.graph)  # fail early (in this process) on a bad graph setting or a missing graph module
    if num_workers is None:
        num_workers = os.cpu_count() or 1
    chunks = [list(rows[i:i + chunksize]) for i in range(0, len(rows), chunksize)]
    tasks = [(settings.as_dict(), ch) for ch in chunks]
    bar = progress_bar(total=len(rows), desc=desc, unit="crystal", disable=not progress, dynamic_ncols=True)
    try:
        if num_workers <= 1 or len(chunks) <= 1:
            for t in tasks:
                res = _process_chunk(t)
                bar.update(len(res))
                yield from res
            return
        done = 0
        try:
            # fork on Linux, spawn elsewhere (dpcdvae.utils.pool); a failing pool falls back to in-process work
            with process_pool(min(num_workers, len(chunks)), initializer=_worker_init) as ex:
                try:
                    for res in ex.map(_process_chunk, tasks):
                        bar.update(len(res))
                        done += 1
                        yield from res
                except BaseException:
                    ex.shutdown(wait=False, cancel_futures=True)
                    raise
        except BrokenProcessPool as exc:
            warnings.warn(f"worker processes failed ({exc}); preprocessing the remaining rows in this process",
                          RuntimeWarning, stacklevel=2)
            for t in tasks[done:]:
                res = _process_chunk(t)
                bar.update(len(res))
                yield from res
    finally:
        bar.close()


# ---------------------------------------------------------------------------------------------------------------
# quick statistics for `dpcdvae data info` (no Niggli, no graph)
# ---------------------------------------------------------------------------------------------------------------

_SYMBOL = re.compile(r"^([A-Z][a-z]?)")


def scan_cif_symbols(cif: str) -> Optional[list[str]]:
    """Element symbols of the atom sites of a P1 CIF, read with a light text scan (no pymatgen).

    Returns ``None`` when the CIF is not a simple P1 cell (symmetry operations other than ``x, y, z``,
    several data blocks, no atom-site loop), so callers fall back to pymatgen.
    """
    if not isinstance(cif, str):
        return None
    lines = cif.splitlines()
    if sum(1 for ln in lines if ln.lstrip().startswith("data_")) > 1:
        return None
    symbols: Optional[list[str]] = None
    i = 0
    n = len(lines)
    while i < n:
        ln = lines[i].strip()
        if ln.lower() == "loop_":
            heads = []
            i += 1
            while i < n and lines[i].strip().startswith("_"):
                heads.append(lines[i].strip().split()[0].lower())
                i += 1
            vals: list[str] = []
            while i < n:
                s = lines[i].strip()
                if not s or s.startswith("#"):
                    i += 1
                    continue
                if s.lower() == "loop_" or s.startswith("_") or s.lower().startswith("data_"):
                    break
                if "'" in s or '"' in s:
                    try:
                        vals.extend(shlex.split(s))
                    except ValueError:
                        return None
                else:
                    vals.extend(s.split())
                i += 1
            if any(h in ("_symmetry_equiv_pos_as_xyz", "_space_group_symop_operation_xyz") for h in heads):
                k = len(heads)
                if k == 0 or len(vals) % k:
                    return None
                col = [h for h in heads if h.endswith("_xyz")][0]
                ops = vals[heads.index(col)::k]
                if [o.replace(" ", "").lower() for o in ops] != ["x,y,z"]:
                    return None
            elif "_atom_site_fract_x" in heads:
                k = len(heads)
                if k == 0 or len(vals) % k:
                    return None
                key = "_atom_site_type_symbol" if "_atom_site_type_symbol" in heads else "_atom_site_label"
                if key not in heads:
                    return None
                raw = vals[heads.index(key)::k]
                if "_atom_site_occupancy" in heads:
                    occ = vals[heads.index("_atom_site_occupancy")::k]
                    try:
                        if any(abs(float(o.split("(")[0]) - 1.0) > 1e-6 for o in occ):
                            return None
                    except ValueError:
                        return None
                symbols = []
                for r in raw:
                    m = _SYMBOL.match(r)
                    if not m:
                        return None
                    symbols.append(m.group(1))
            continue
        low = ln.lower()
        if low.startswith(("_symmetry_int_tables_number", "_space_group_it_number")):
            parts = ln.split()
            if len(parts) >= 2 and parts[1] != "1":
                return None
        i += 1
    return symbols


def _scan_chunk(cifs: list) -> list[Optional[list[str]]]:
    out = []
    for cif in cifs:
        sym = scan_cif_symbols(cif)
        if sym is None:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    s = parse_cif(cif)
                sym = [sp.symbol for sp in s.species]
            except RowError:
                sym = None
        out.append(sym)
    return out


def scan_symbols(cifs: Sequence, num_workers: Optional[int] = None) -> list[Optional[list[str]]]:
    """Element symbols per CIF (``None`` for an unparsable one); fast scan with a pymatgen fallback."""
    cifs = list(cifs)
    if num_workers is None:
        num_workers = os.cpu_count() or 1
    if num_workers <= 1 or len(cifs) < 20000:
        return _scan_chunk(cifs)
    size = math.ceil(len(cifs) / num_workers)
    parts = [cifs[i:i + size] for i in range(0, len(cifs), size)]
    with process_pool(len(parts)) as ex:
        return [x for part in ex.map(_scan_chunk, parts) for x in part]
