"""What a dataset holds and whether it loads: :func:`dataset_info` (per split: rows, atoms, elements, property
statistics, bad rows), :func:`check_rows`, :func:`format_info`. ``dpcdvae data info`` prints it
(:mod:`dpcdvae.cli.data`)."""
from __future__ import annotations

import json
import math
from typing import Any, Optional

from .csvio import DataError, PreprocessSettings, iter_processed, read_csv_rows, scan_symbols
from .paths import SPLITS, DatasetNotFoundError
from .registry import default_max_atoms, default_prop, find_spec
from .resolve import dataset_dir

__all__ = ["dataset_info", "check_rows", "format_info", "CHECK_DEFAULT_MAX_ROWS"]

#: ``data info`` checks every row by default for splits up to this many rows (``--check`` / ``--no-check``)
CHECK_DEFAULT_MAX_ROWS = 5000


def _stats(values) -> Optional[dict]:
    import numpy as np

    v = np.asarray(values, dtype=float)
    finite = v[np.isfinite(v)]
    if finite.size == 0:
        return {"count": 0, "non_finite": int(v.size)}
    return {"count": int(finite.size), "non_finite": int(v.size - finite.size), "mean": float(finite.mean()),
            "std": float(finite.std()), "min": float(finite.min()), "max": float(finite.max())}


def check_rows(path, name: str, prop: Optional[str], num_workers: Optional[int] = None,
               progress: bool = False) -> dict:
    """Run every row of ``path`` through the loader's own checks (CIF parses, cell and distances sane, atom count
    within the dataset's ``max_atoms``, property a finite number), without Niggli reduction or graphs.

    Returns ``{"checked": n, "bad_rows": [[row, material_id, reason], ...]}``; file-level problems (empty file,
    header only, missing column) raise :class:`~dpcdvae.data.DataError` naming the file.
    """
    rows, _ = read_csv_rows(path, prop=prop)
    settings = PreprocessSettings(niggli=False, graph="none", max_atoms=default_max_atoms(name), prop=prop)
    bad = [[r, mid, why] for r, mid, ok, why in iter_processed(rows, settings, num_workers=num_workers,
                                                                progress=progress, desc=f"checking {path.name}")
           if not ok]
    return {"checked": len(rows), "bad_rows": bad}


def dataset_info(name: str, root: Optional[str] = None, prop: Optional[str] = "auto",
                 num_workers: Optional[int] = None, check: Optional[bool] = None) -> dict:
    """Per-split summary of a dataset's CSVs without Niggli reduction or graphs.

    Returns a JSON-ready dict: ``found``, ``directory``, ``synthetic``, ``property`` and per split ``present``,
    ``rows``, ``atoms_min``/``atoms_max`` (atoms per cell), ``n_elements`` and ``elements``, ``unparsable_cifs``,
    and ``property_stats`` (mean/std/min/max of the property column, dataset units, e.g. eV/atom). Absent splits are
    ``{"present": False, "rows": 0}``. CIFs are read with a fast P1 text scan (pymatgen for anything else).

    ``check``: also run every row through the loader's checks (:func:`check_rows`; adds ``checked`` and
    ``bad_rows``); ``None`` checks splits of up to :data:`CHECK_DEFAULT_MAX_ROWS` rows. A split that cannot be used
    (unreadable, empty, header only, missing column) carries ``error``; ``ok`` is False when any present split has
    an error or a bad row.
    """
    import pandas as pd

    if prop == "auto":
        prop = default_prop(name)
    out: dict[str, Any] = {"name": name, "property": prop, "splits": {}}
    try:
        directory = dataset_dir(name, root)
    except DatasetNotFoundError as exc:
        out.update(found=False, message=str(exc), splits={s: {"present": False, "rows": 0} for s in SPLITS})
        return out
    meta = directory / "dataset.json"
    spec = find_spec(name, aliases=False)
    synthetic = spec is not None and spec.synthetic
    if meta.is_file():
        try:
            synthetic = synthetic or bool(json.loads(meta.read_text()).get("synthetic", False))
        except ValueError:
            pass
    out.update(found=True, directory=str(directory), synthetic=synthetic)
    all_elements: set[str] = set()
    for split in SPLITS:
        path = directory / f"{split}.csv"
        if not path.is_file():
            out["splits"][split] = {"present": False, "rows": 0}
            continue
        info: dict[str, Any] = {"present": True, "path": str(path)}
        try:
            df = pd.read_csv(path, dtype=str, keep_default_na=False)
        except Exception as exc:  # empty or broken file: report, do not crash
            why = ("file is empty" if isinstance(exc, pd.errors.EmptyDataError)
                   else f"not a readable CSV file ({type(exc).__name__}: {exc})")
            out["splits"][split] = {**info, "rows": 0, "error": why}
            continue
        info["rows"] = int(len(df))
        if "cif" in df.columns and len(df):
            symbols = scan_symbols(df["cif"].tolist(), num_workers=num_workers)
            counts = [len(s) for s in symbols if s is not None]
            elements = sorted({e for s in symbols if s is not None for e in s})
            all_elements.update(elements)
            info.update(atoms_min=min(counts) if counts else None, atoms_max=max(counts) if counts else None,
                        n_elements=len(elements), elements=elements,
                        unparsable_cifs=sum(1 for s in symbols if s is None))
        else:
            info["error"] = "no 'cif' column" if "cif" not in df.columns else "no data rows"
        if prop:
            if prop in df.columns:
                info["property_stats"] = _stats(pd.to_numeric(df[prop], errors="coerce"))
            else:
                info["property_stats"] = None
                info["error"] = f"no {prop!r} column"
        do_check = check if check is not None else info["rows"] <= CHECK_DEFAULT_MAX_ROWS
        if do_check and not info.get("error"):
            try:
                info.update(check_rows(path, name, prop, num_workers=num_workers))
            except DataError as exc:
                info["error"] = str(exc).removeprefix(f"{path}: ")
        out["splits"][split] = info
    out["n_elements"] = len(all_elements)
    out["ok"] = not any(s.get("error") or s.get("bad_rows") for s in out["splits"].values() if s.get("present"))
    if not any(s.get("present") for s in out["splits"].values()):
        out["ok"] = False
    return out


def _fmt(x: Any, spec: str = ".4g") -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return format(x, spec) if math.isfinite(x) else str(x)
    return str(x)


def format_info(info: dict) -> str:
    """Human-readable table of :func:`dataset_info`'s result."""
    if not info.get("found"):
        return info.get("message", f"dataset {info['name']!r} not found")
    prop = info.get("property")
    lines = [f"{info['name']}  ({info['directory']})" + ("  [SYNTHETIC demo data]" if info.get("synthetic") else ""),
             f"property: {prop or 'none'}; distinct elements over all splits: {info.get('n_elements', '-')}"]
    head = f"{'split':6} {'rows':>7} {'atoms':>7} {'elements':>9}"
    if prop:
        head += f"  {prop + ' mean':>16} {'std':>9} {'min':>9} {'max':>9}"
    lines.append(head)
    for split, s in info["splits"].items():
        if not s.get("present"):
            lines.append(f"{split:6} absent (0 rows)")
            continue
        atoms = "-" if s.get("atoms_min") is None else f"{s['atoms_min']}-{s['atoms_max']}"
        row = f"{split:6} {s['rows']:>7} {atoms:>7} {_fmt(s.get('n_elements')):>9}"
        st = s.get("property_stats") or {}
        if prop:
            row += (f"  {_fmt(st.get('mean')):>16} {_fmt(st.get('std')):>9} {_fmt(st.get('min')):>9} "
                    f"{_fmt(st.get('max')):>9}")
        if s.get("error"):
            row += f"  (UNUSABLE: {s['error']})"
        elif s.get("bad_rows"):
            row += f"  ({len(s['bad_rows'])} bad rows of {s['checked']} checked)"
        elif "checked" in s:
            row += f"  (all {s['checked']} rows checked: ok)"
        elif s.get("unparsable_cifs"):
            row += f"  ({s['unparsable_cifs']} unparsable CIFs; rows not checked: --check)"
        else:
            row += "  (rows not checked: --check)"
        lines.append(row)
        for r, mid, why in (s.get("bad_rows") or [])[:10]:
            lines.append(f"    {s['path']}: row {r} (material_id={mid!r}): {why}")
        if len(s.get("bad_rows") or []) > 10:
            lines.append(f"    ... and {len(s['bad_rows']) - 10} more bad rows (--json lists all)")
    if not info.get("ok", True):
        lines.append("NOT USABLE as is: fix the rows above, or train with --on-error skip to skip bad rows"
                     if any(s.get("bad_rows") for s in info["splits"].values()) else
                     "NOT USABLE as is: see the split(s) marked UNUSABLE")
    return "\n".join(lines)
