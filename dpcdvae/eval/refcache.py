"""On-disk caches of the reference side of an evaluation: the parsed test split and its predicted properties.

Every ``dpcdvae evaluate`` call compares a (small, new) generated set with the same reference split. Parsing and
Niggli-reducing the 3785 Perov-5 test CIFs takes about 20 s, predicting their E_form with CDVAE's regressor about
two minutes on a CPU; both are the same on every call. They are computed once and kept under
``$DPCDVAE_CACHE/reference`` (default ``~/.cache/dpcdvae/reference``). The structure fingerprints have their own
cache (:func:`dpcdvae.eval.fingerprints.structure_fingerprints`).

Keys: a parsed split is keyed by the sha256 of the CSV file's bytes, :data:`CACHE_VERSION` and the pymatgen version;
predictions by :func:`dpcdvae.eval.fingerprints.structures_hash` of the structures, a caller's tag naming the
predictor (model file digest, dataset) and :data:`CACHE_VERSION`. A changed file, other structures or another
predictor therefore miss the cache and are computed afresh. Files are written atomically; a corrupt or mismatched
file is ignored and rewritten. ``DPCDVAE_NO_REFERENCE_CACHE=1`` turns the caches off.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..utils.fileio import atomic_open

#: bump when what is cached (the canonicaliser, the arrays' layout) changes: old files are then ignored
CACHE_VERSION = 1


def cache_root() -> Path:
    """``$DPCDVAE_CACHE/reference`` if the variable is set, else ``~/.cache/dpcdvae/reference``."""
    base = os.environ.get("DPCDVAE_CACHE")
    root = Path(base).expanduser() if base else Path("~/.cache/dpcdvae").expanduser()
    return root / "reference"


def enabled() -> bool:
    """False when ``$DPCDVAE_NO_REFERENCE_CACHE`` is set to anything but ``""``/``0``."""
    return os.environ.get("DPCDVAE_NO_REFERENCE_CACHE", "") in ("", "0")


def file_digest(path: str | os.PathLike) -> str:
    """sha256 (hex) of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _key(*parts: str) -> str:
    h = hashlib.sha256(f"v{CACHE_VERSION}".encode())
    for p in parts:
        h.update(b"\0" + str(p).encode())
    return h.hexdigest()[:24]


def _pymatgen_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pymatgen")
    except PackageNotFoundError:  # pragma: no cover
        return "?"


def _load(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception:  # noqa: BLE001 - a corrupt file is a miss; it is rewritten
        return None


def _save(path: Path, **arrays) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(path, "wb") as fh:
            np.savez(fh, **arrays)
    except OSError:  # a read-only or full cache directory costs speed only, never the result
        pass


# ------------------------------------------------------------------------------------------------------------
# parsed splits
# ------------------------------------------------------------------------------------------------------------
def _pack_split(ids: Sequence[str], structures: Sequence) -> dict | None:
    """Arrays of a parsed split, or None when a structure cannot be stored exactly (a species that is not a plain
    element, partial occupancy, site properties)."""
    from pymatgen.core import Element

    ok, n_atoms, lat, z, frac = [], [], [], [], []
    for s in structures:
        if s is None:
            ok.append(False)
            n_atoms.append(0)
            lat.append(np.zeros((3, 3)))
            continue
        if not s.is_ordered or s.site_properties or any(not isinstance(sp, Element) for sp in s.species):
            return None
        ok.append(True)
        n_atoms.append(len(s))
        lat.append(np.asarray(s.lattice.matrix, dtype=np.float64))
        z.extend(sp.Z for sp in s.species)
        frac.append(np.asarray(s.frac_coords, dtype=np.float64).reshape(-1, 3))
    return {"ids": np.asarray([str(i) for i in ids], dtype=str), "ok": np.asarray(ok, bool),
            "n_atoms": np.asarray(n_atoms, np.int64), "lattice": np.asarray(lat, np.float64).reshape(-1, 3, 3),
            "z": np.asarray(z, np.int64), "frac": (np.concatenate(frac) if frac else np.zeros((0, 3)))}


def _unpack_split(d: dict) -> tuple[list[str], list]:
    from pymatgen.core import Element, Lattice, Structure

    ids = [str(i) for i in d["ids"]]
    structs, off = [], 0
    for ok, n, m in zip(d["ok"], d["n_atoms"], d["lattice"]):
        if not ok:
            structs.append(None)
            continue
        n = int(n)
        species = [Element.from_Z(int(k)) for k in d["z"][off:off + n]]
        structs.append(Structure(Lattice(m), species, d["frac"][off:off + n], coords_are_cartesian=False))
        off += n
    return ids, structs


def cached_split(csv_path: str | os.PathLike, parse: Callable[[], tuple[list, list]], tag: str = ""
                 ) -> tuple[list[str], list]:
    """``(ids, structures)`` of a split file: from the cache when the file's bytes, ``tag`` (what ``parse`` does)
    and the versions match, else ``parse()`` (stored for next time when every structure can be stored exactly).
    The structures from the cache equal ``parse()``'s: same lattice matrix, elements and fractional coordinates
    (bit for bit)."""
    if not enabled():
        return parse()
    key = _key("split", file_digest(csv_path), tag, _pymatgen_version())
    path = cache_root() / "splits" / f"{key}.npz"
    d = _load(path)
    if d is not None:
        try:
            return _unpack_split(d)
        except Exception:  # noqa: BLE001 - a mismatched layout is a miss
            pass
    ids, structs = parse()
    packed = _pack_split(ids, structs)
    if packed is not None:
        _save(path, **packed)
    return ids, structs


# ------------------------------------------------------------------------------------------------------------
# predictions of a fixed reference set
# ------------------------------------------------------------------------------------------------------------
def cached_values(structures: Sequence, tag: str, compute: Callable[[list], np.ndarray]) -> np.ndarray:
    """``compute(structures)`` (one float per structure), cached on disk under the structures' content hash and
    ``tag`` (which must name the predictor: its weights' digest, its dataset). A result of the wrong length is
    returned but not stored."""
    from .fingerprints import structures_hash

    structures = list(structures)
    if not enabled():
        return np.asarray(compute(structures), dtype=float)
    key = _key("values", structures_hash(structures), tag)
    path = cache_root() / "values" / f"{key}.npz"
    d = _load(path)
    if d is not None and "values" in d and d["values"].shape == (len(structures),):
        return d["values"].astype(float)
    vals = np.asarray(compute(structures), dtype=float).ravel()
    if vals.shape == (len(structures),):
        _save(path, values=vals)
    return vals
