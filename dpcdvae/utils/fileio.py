"""Atomic file writes: the one helper behind every checkpoint, cache, CIF, JSON and relaxation record we write;
and the one JSON sanitiser (:func:`jsonable`, :func:`strict_json_dumps`).

A file is written to a temporary name in the destination folder and renamed over the destination only when the
write finished (``os.replace`` is atomic on POSIX and Windows within one file system). An interrupted run therefore
leaves either the old file or the complete new one, never a truncated file, and no temporary file behind.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator, Union

PathLike = Union[str, "os.PathLike[str]"]

__all__ = ["atomic_open", "atomic_write_text", "atomic_write_bytes", "strict_json_dumps", "jsonable"]


@contextlib.contextmanager
def atomic_open(path: PathLike, mode: str = "wb", fsync: bool = False, encoding: str | None = None) -> Iterator[IO]:
    """``with atomic_open(path, "w") as fh: ...``: write ``fh``; on a clean exit it becomes ``path``.

    ``mode`` is ``"w"`` (text) or ``"wb"`` (binary). The parent folder is created. ``fsync=True`` flushes the data
    to disk before the rename (downloads, caches that must survive a power cut). On an exception the temporary file
    is removed and the exception propagates; ``path`` is untouched.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open: mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, encoding=encoding if mode == "w" else None) as fh:
            yield fh
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: PathLike, text: str, fsync: bool = False) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns the path."""
    with atomic_open(path, "w", fsync=fsync, encoding="utf-8") as fh:
        fh.write(text)
    return Path(path)


def atomic_write_bytes(path: PathLike, data: bytes, fsync: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    with atomic_open(path, "wb", fsync=fsync) as fh:
        fh.write(data)
    return Path(path)


def strict_json_dumps(obj, **kwargs) -> str:
    """``json.dumps`` that writes standard JSON: NaN and +-inf become ``null`` (jq and JavaScript reject a bare
    ``NaN``); numpy scalars become numbers (``obj`` goes through :func:`jsonable` first)."""
    return json.dumps(jsonable(obj), allow_nan=False, **kwargs)


def jsonable(v, nonfinite: str = "null"):
    """A JSON-safe copy of ``v``, recursively: the package's one sanitiser (behind :func:`strict_json_dumps`).

    * ``None``, ``bool``, ``str``, ``int``: as they are;
    * ``float`` (numpy's ``float64`` included): a plain ``float``; NaN and +-inf become ``None`` (``nonfinite="null"``,
      the default: standard JSON, what every results file and printed line uses) or stay floats
      (``nonfinite="keep"``: ``json.dumps`` then writes ``NaN`` / ``Infinity``, which Python's ``json.loads`` reads
      back as floats; used for the metadata a property head stores inside its own file, where a NaN ``val_r2`` must
      come back as a number);
    * numpy / torch scalars (``np.float32``, ``np.int64``, ``np.bool_``, 0-d arrays and tensors): their Python value,
      sanitised the same way (``np.bool_`` -> ``bool``, ``np.int64`` -> ``int``, NaN as above);
    * ``dict``: keys made ``str``, values sanitised; ``list`` / ``tuple``: a ``list``;
    * arrays and tensors: nested lists (``tolist()``), sanitised;
    * anything else (a ``Path``, a ``Structure`` ...): ``str(v)``.
    """
    if nonfinite not in ("null", "keep"):
        raise ValueError(f"nonfinite must be 'null' or 'keep', got {nonfinite!r}")
    return _jsonable(v, nonfinite == "keep")


def _jsonable(v, keep: bool):
    if isinstance(v, bool) or v is None or isinstance(v, (str, int)):
        return v
    if isinstance(v, float):
        return float(v) if keep or math.isfinite(v) else None
    if isinstance(v, dict):
        return {str(k): _jsonable(x, keep) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x, keep) for x in v]
    if hasattr(v, "item") and callable(v.item) and getattr(v, "ndim", 1) == 0:  # numpy / torch scalar
        return _jsonable(v.item(), keep)
    if hasattr(v, "tolist"):
        return _jsonable(v.tolist(), keep)
    return str(v)
