"""CDVAE CSV splits -> cached, preprocessed :class:`CrystalDataset` of torch_geometric ``Data``.

Each crystal becomes a ``Data`` with (units: Angstrom, degrees; property in the dataset's unit, eV/atom for the
CDVAE benchmarks):

* ``frac_coords [n,3]`` float32 in [0, 1), ``atom_types [n]`` long (Z), ``num_nodes = n``;
* ``lengths [1,3]``, ``angles [1,3]`` float32, ``num_atoms [1]`` long, ``y [1]`` float32 (NaN if no property);
* with ``graph='crystalnn'``: ``edge_index [2,E]`` long ([0] = source j, [1] = target i), ``to_jimages [E,3]`` long
  (image of the source atom), ``num_bonds [1]`` long;
* ``material_id`` (str).

Preprocessing runs in worker processes with a progress bar and is cached on disk under
``<cache>/datasets/<name>/<split>-<key>.pt`` (``<cache>`` = ``$DPCDVAE_CACHE`` or ``~/.cache/dpcdvae``), keyed
by the SHA-256 of the CSV bytes and the preprocessing settings, so a changed CSV or setting rebuilds.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import numpy as np
import torch
from torch_geometric.data import Data

from .csvio import (GRAPH_METHODS, DataError, DataWarning, PreprocessSettings, RowError, _graph_fn, iter_processed,
                    process_structure, read_csv_rows, row_error_message)
from .paths import SPLITS, DatasetNotFoundError, PathLike, cache_dir
from .locator import splits_in
from .registry import default_max_atoms, default_prop, find_spec
from .resolve import DatasetLike, resolve_dataset
from ..utils.fileio import atomic_open
from .scalers import LatticeScaler, StandardScaler

# local: heavy -- pymatgen only in CrystalDataset.get_structure (training and sampling import this module)

log = logging.getLogger("dpcdvae.data")

CACHE_FORMAT = 1
ON_ERROR = ("raise", "skip")
_AUTO = "auto"

Skipped = tuple[int, str, str]  # (0-based data row, material_id, reason)


# ---------------------------------------------------------------------------------------------------------------
# columnar store <-> records
# ---------------------------------------------------------------------------------------------------------------

def _build_store(records: Sequence[tuple[int, str, dict]], graph: bool) -> dict:
    """Concatenate per-crystal records into one columnar store (fast to save and load)."""
    m = len(records)
    num_atoms = torch.tensor([len(r[2]["atom_types"]) for r in records], dtype=torch.long)
    store: dict[str, Any] = {
        "row_index": torch.tensor([r[0] for r in records], dtype=torch.long),
        "material_id": [r[1] for r in records],
        "num_atoms": num_atoms,
        "lengths": torch.tensor(np.array([r[2]["lengths"] for r in records]).reshape(m, 3), dtype=torch.float32),
        "angles": torch.tensor(np.array([r[2]["angles"] for r in records]).reshape(m, 3), dtype=torch.float32),
        "y": torch.tensor([r[2]["y"] for r in records], dtype=torch.float32),
        "frac_coords": torch.from_numpy(np.concatenate([r[2]["frac_coords"] for r in records]).reshape(-1, 3)
                                        if m else np.zeros((0, 3), np.float32)).float(),
        "atom_types": torch.from_numpy(np.concatenate([r[2]["atom_types"] for r in records])
                                       if m else np.zeros(0, np.int64)).long(),
    }
    if graph:
        store["num_bonds"] = torch.tensor([r[2]["edge_index"].shape[1] for r in records], dtype=torch.long)
        store["edge_index"] = torch.from_numpy(np.concatenate([r[2]["edge_index"] for r in records], axis=1)
                                               if m else np.zeros((2, 0), np.int64)).long()
        store["to_jimages"] = torch.from_numpy(np.concatenate([r[2]["to_jimages"] for r in records]).reshape(-1, 3)
                                               if m else np.zeros((0, 3), np.int64)).long()
    return store


def _ptr(counts: torch.Tensor) -> torch.Tensor:
    out = torch.zeros(len(counts) + 1, dtype=torch.long)
    torch.cumsum(counts, 0, out=out[1:])
    return out


def _head(store: dict, m: int) -> dict:
    """The first ``m`` crystals of a store."""
    a = int(store["num_atoms"][:m].sum())
    out = {
        "row_index": store["row_index"][:m], "material_id": store["material_id"][:m],
        "num_atoms": store["num_atoms"][:m], "lengths": store["lengths"][:m], "angles": store["angles"][:m],
        "y": store["y"][:m], "frac_coords": store["frac_coords"][:a], "atom_types": store["atom_types"][:a],
    }
    if "edge_index" in store:
        e = int(store["num_bonds"][:m].sum())
        out.update(num_bonds=store["num_bonds"][:m], edge_index=store["edge_index"][:, :e],
                   to_jimages=store["to_jimages"][:e])
    return out


# ---------------------------------------------------------------------------------------------------------------
# cache
# ---------------------------------------------------------------------------------------------------------------

def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "dataset"


def cache_key(csv_sha256: str, settings: PreprocessSettings) -> str:
    """Hex key of a preprocessed split: hash of the CSV bytes' SHA-256, the settings and the cache format.

    One cache file per key holds either the whole file or a processed prefix of it (``limit`` rows); a request
    for at most that many rows is served from it, a larger one reprocesses and replaces it.
    """
    payload = json.dumps({"csv_sha256": csv_sha256, "settings": settings.as_dict(), "format": CACHE_FORMAT},
                         sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def _cache_file(root: Path, name: str, split: str, key: str) -> Path:
    return root / "datasets" / _safe(name) / f"{_safe(split)}-{key}.pt"


def _atomic_torch_save(obj: Any, path: Path) -> None:
    with atomic_open(path, "wb") as fh:
        torch.save(obj, fh)


def _load_cache(path: Path, csv_sha: str, settings: PreprocessSettings) -> Optional[dict]:
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        warnings.warn(f"unreadable cache file {path} ({type(exc).__name__}: {exc}); rebuilding", DataWarning,
                      stacklevel=3)
        return None
    if (not isinstance(payload, dict) or payload.get("format") != CACHE_FORMAT
            or payload.get("csv_sha256") != csv_sha or payload.get("settings") != settings.as_dict()):
        return None
    return payload


# ---------------------------------------------------------------------------------------------------------------
# the dataset
# ---------------------------------------------------------------------------------------------------------------

def _is_synthetic(csv_path: Optional[Path], name: Optional[str]) -> bool:
    spec = find_spec(name, aliases=False) if name else None
    if spec is not None and spec.synthetic:
        return True
    if csv_path is not None:
        meta = csv_path.parent / "dataset.json"
        if meta.is_file():
            try:
                return bool(json.loads(meta.read_text()).get("synthetic", False))
            except (OSError, ValueError):
                return False
    return False


def _report_skipped(source, skipped: Sequence[Skipped], n_rows: int) -> None:
    if not skipped:
        return
    shown = "; ".join(f"row {r} (material_id={m!r}): {why}" for r, m, why in skipped[:5])
    more = f"; ... and {len(skipped) - 5} more (see dataset.skipped)" if len(skipped) > 5 else ""
    msg = f"{source}: skipped {len(skipped)} of {n_rows} rows (on_error='skip'): {shown}{more}"
    log.info(msg)
    warnings.warn(msg, DataWarning, stacklevel=4)


class CrystalDataset(torch.utils.data.Dataset):
    """Preprocessed crystals of one split; items are torch_geometric ``Data`` (see the module docstring).

    Use with ``torch_geometric.loader.DataLoader``. Columns over all crystals are available without building
    ``Data`` objects: :attr:`lengths` ``[M,3]`` (A), :attr:`angles` ``[M,3]`` (deg), :attr:`num_atoms` ``[M]``,
    :attr:`y` ``[M]``, :attr:`material_ids`, :attr:`row_index` (0-based CSV data row of each crystal).

    Attributes: ``name``, ``split``, ``source`` (CSV path), ``settings`` (:class:`PreprocessSettings`), ``prop``
    (property column or None), ``skipped`` (list of ``(row, material_id, reason)`` rejected under
    ``on_error='skip'``), ``n_rows`` (data rows read), ``n_rows_file`` (data rows in the file, more than ``n_rows``
    under a ``limit``; None when unknown), ``synthetic`` (True for the self-generated demo data),
    ``cache_path`` and ``from_cache`` (whether this instance was loaded from the on-disk cache).
    """

    def __init__(self, store: dict, *, name: str = "dataset", split: str = "", source: Optional[PathLike] = None,
                 settings: Optional[PreprocessSettings] = None, skipped: Iterable[Skipped] = (),
                 n_rows: Optional[int] = None, synthetic: bool = False, cache_path: Optional[Path] = None,
                 from_cache: bool = False, n_rows_file: Optional[int] = None):
        self._store = store
        self.name = name
        self.split = split
        self.source = Path(source) if source is not None else None
        self.settings = settings or PreprocessSettings(graph="crystalnn" if "edge_index" in store else "none")
        self.skipped: list[Skipped] = [tuple(s) for s in skipped]
        self.n_rows = int(n_rows) if n_rows is not None else len(store["material_id"]) + len(self.skipped)
        self.n_rows_file = int(n_rows_file) if n_rows_file is not None else None
        self.synthetic = bool(synthetic)
        self.cache_path = cache_path
        self.from_cache = bool(from_cache)
        self._atom_ptr = _ptr(store["num_atoms"])
        self._edge_ptr = _ptr(store["num_bonds"]) if "num_bonds" in store else None

    # -- construction -------------------------------------------------------------------------------------------
    @classmethod
    def from_csv(cls, path: PathLike, *, name: Optional[str] = None, split: Optional[str] = None,
                 prop: Optional[str] = _AUTO, max_atoms: Optional[int] = _AUTO, graph: str = "crystalnn",
                 niggli: bool = True, on_error: str = "raise", num_workers: Optional[int] = None,
                 limit: Optional[int] = None, cache: bool = True, cache_root: Optional[PathLike] = None,
                 progress: bool = True) -> "CrystalDataset":
        """Read and preprocess one CDVAE CSV (cached).

        ``name``: dataset name (default: the CSV's folder name); a name registered in
        :mod:`dpcdvae.data.registry` selects the default property column (``prop='auto'``: perov_5 ``heat_ref``,
        carbon_24 ``energy_per_atom``, mp_20 ``formation_energy_per_atom``, other datasets none; pass a column name,
        or ``None`` for no property) and the default ``max_atoms`` (``'auto'``: 20 / 24 / 20; other datasets no
        limit; ``None``: no limit). ``graph``: ``'crystalnn'`` or
        ``'none'``. ``on_error``: ``'raise'`` (:class:`DataError` at the first bad row) or ``'skip'`` (bad rows are
        skipped, warned about and listed in :attr:`skipped`). ``limit``: only the first ``limit`` data rows.
        ``num_workers``: worker processes (default ``os.cpu_count()``). ``cache``: read/write the disk cache
        (under ``cache_root``, default :func:`dpcdvae.data.cache_dir`).
        """
        path = Path(path)
        name = name or path.parent.name or "dataset"
        split = split or path.stem
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
        if graph not in GRAPH_METHODS:
            raise ValueError(f"graph must be one of {GRAPH_METHODS}, got {graph!r}")
        if limit is not None and int(limit) < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        if prop == _AUTO:
            prop = default_prop(name)
        if max_atoms == _AUTO:
            max_atoms = default_max_atoms(name)
        settings = PreprocessSettings(niggli=bool(niggli), graph=graph,
                                      max_atoms=None if max_atoms is None else int(max_atoms), prop=prop)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise DatasetNotFoundError(f"{path}: no such file") from None
        csv_sha = hashlib.sha256(data).hexdigest()
        root = Path(cache_root) if cache_root is not None else cache_dir()
        synthetic = _is_synthetic(path, name)
        common = dict(name=name, split=split, source=path, settings=settings, synthetic=synthetic)

        cfile = _cache_file(root, name, split, cache_key(csv_sha, settings)) if cache else None
        payload = _load_cache(cfile, csv_sha, settings) if cfile is not None else None
        if payload is not None:
            have = payload["limit"]  # None: the whole file was processed
            if have is None or (limit is not None and limit <= have):
                store, errors = payload["store"], [tuple(e) for e in payload["errors"]]
                n_rows = payload["n_rows"]
                if limit is not None and limit < n_rows:
                    store = _head(store, int((store["row_index"] < limit).sum()))
                    errors = [e for e in errors if e[0] < limit]
                    n_rows = limit
                if errors and on_error == "raise":
                    r, mid, why = errors[0]
                    raise DataError(row_error_message(path, r, mid, why)
                                    + (f" [{len(errors)} bad rows in total; " if len(errors) > 1 else " [")
                                    + "skip bad rows with on_error='skip' (CLI: --on-error skip)]")
                log.info("%s/%s: loaded %d crystals from cache %s", name, split, len(store["material_id"]), cfile)
                _report_skipped(path, errors, n_rows)
                return cls(store, skipped=errors, n_rows=n_rows, cache_path=cfile, from_cache=True,
                           n_rows_file=payload.get("n_rows_file"), **common)

        rows, n_total = read_csv_rows(path, prop=prop, limit=limit, data=data)
        records: list[tuple[int, str, dict]] = []
        errors: list[Skipped] = []
        gen = iter_processed(rows, settings, num_workers=num_workers, progress=progress,
                             desc=f"{name}/{split}: preprocessing")
        try:
            for row, mid, ok, payload in gen:
                if ok:
                    records.append((row, mid, payload))
                elif on_error == "raise":
                    raise DataError(row_error_message(path, row, mid, payload)
                                    + " [skip bad rows with on_error='skip' (CLI: --on-error skip)]")
                else:
                    errors.append((row, mid, payload))
        finally:
            gen.close()
        n_rows = len(rows)
        if not records:
            r, mid, why = errors[0]
            raise DataError(f"{path}: all {n_rows} rows were rejected; first: row {r} (material_id={mid!r}): {why}")
        store = _build_store(records, graph=graph != "none")
        if cfile is not None:
            complete = limit is None or n_rows >= n_total
            _atomic_torch_save({"format": CACHE_FORMAT, "csv_sha256": csv_sha, "settings": settings.as_dict(),
                                "limit": None if complete else n_rows, "n_rows": n_rows, "n_rows_file": n_total,
                                "source": str(path), "store": store, "errors": errors}, cfile)
            log.info("%s/%s: cached %d crystals in %s", name, split, len(records), cfile)
        _report_skipped(path, errors, n_rows)
        return cls(store, skipped=errors, n_rows=n_rows, cache_path=cfile, from_cache=False, n_rows_file=n_total,
                   **common)

    @classmethod
    def from_structures(cls, structures: Sequence, *, y: Optional[Sequence[float]] = None,
                        material_ids: Optional[Sequence[str]] = None, graph: str = "none", niggli: bool = True,
                        max_atoms: Optional[int] = None, on_error: str = "raise",
                        name: str = "structures") -> "CrystalDataset":
        """Build a dataset from pymatgen ``Structure`` objects (same preprocessing, in this process, no cache)."""
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
        settings = PreprocessSettings(niggli=niggli, graph=graph, max_atoms=max_atoms,
                                      prop="y" if y is not None else None)
        gfn = _graph_fn(graph)
        records, errors = [], []
        for i, s in enumerate(structures):
            mid = str(material_ids[i]) if material_ids is not None else f"structure-{i}"
            yi = float(y[i]) if y is not None else math.nan
            try:
                if y is not None and not math.isfinite(yi):
                    raise RowError(f"property is not finite ({yi})")
                records.append((i, mid, process_structure(s, yi, settings, gfn)))
            except RowError as exc:
                if on_error == "raise":
                    raise DataError(row_error_message(f"<structures {name}>", i, mid, str(exc))) from None
                errors.append((i, mid, str(exc)))
        _report_skipped(f"<structures {name}>", errors, len(structures))
        return cls(_build_store(records, graph=graph != "none"), name=name, split="", settings=settings,
                   skipped=errors, n_rows=len(structures))

    # -- access -------------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._store["material_id"])

    def __getitem__(self, idx: int) -> Data:
        n = len(self)
        idx = int(idx)
        if idx < 0:
            idx += n
        if not 0 <= idx < n:
            raise IndexError(f"index {idx} out of range for {n} crystals")
        st = self._store
        a0, a1 = int(self._atom_ptr[idx]), int(self._atom_ptr[idx + 1])
        d = Data(
            frac_coords=st["frac_coords"][a0:a1].clone(),
            atom_types=st["atom_types"][a0:a1].clone(),
            lengths=st["lengths"][idx:idx + 1].clone(),
            angles=st["angles"][idx:idx + 1].clone(),
            num_atoms=st["num_atoms"][idx:idx + 1].clone(),
            y=st["y"][idx:idx + 1].clone(),
            material_id=st["material_id"][idx],
            num_nodes=a1 - a0,
        )
        if self._edge_ptr is not None:
            e0, e1 = int(self._edge_ptr[idx]), int(self._edge_ptr[idx + 1])
            d.edge_index = st["edge_index"][:, e0:e1].clone()
            d.to_jimages = st["to_jimages"][e0:e1].clone()
            d.num_bonds = st["num_bonds"][idx:idx + 1].clone()
        return d

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    @property
    def has_graph(self) -> bool:
        return self._edge_ptr is not None

    @property
    def lengths(self) -> torch.Tensor:
        """``[M, 3]`` lattice lengths (Angstrom), float32."""
        return self._store["lengths"]

    @property
    def angles(self) -> torch.Tensor:
        """``[M, 3]`` lattice angles alpha, beta, gamma (degrees), float32."""
        return self._store["angles"]

    @property
    def num_atoms(self) -> torch.Tensor:
        return self._store["num_atoms"]

    @property
    def y(self) -> torch.Tensor:
        """``[M]`` property values (dataset units, eV/atom for the CDVAE benchmarks; NaN without a property)."""
        return self._store["y"]

    @property
    def material_ids(self) -> list[str]:
        return list(self._store["material_id"])

    @property
    def row_index(self) -> torch.Tensor:
        return self._store["row_index"]

    @property
    def prop(self) -> Optional[str]:
        return self.settings.prop

    @property
    def atomic_numbers(self) -> list[int]:
        """The atomic numbers that occur in this split, ascending."""
        return sorted(int(z) for z in torch.unique(self._store["atom_types"]).tolist())

    @property
    def cell_sizes(self) -> list[int]:
        """The atom counts per cell that occur in this split, ascending."""
        return sorted(int(n) for n in torch.unique(self._store["num_atoms"]).tolist())

    def to_data_list(self) -> list[Data]:
        return [self[i] for i in range(len(self))]

    def get_structure(self, idx: int):
        """The canonical (preprocessed) crystal ``idx`` as a pymatgen ``Structure``."""
        from pymatgen.core import Lattice, Structure

        d = self[idx]
        lat = Lattice.from_parameters(*d.lengths[0].double().tolist(), *d.angles[0].double().tolist())
        return Structure(lat, d.atom_types.tolist(), d.frac_coords.double().numpy(), coords_are_cartesian=False)

    def __repr__(self) -> str:
        extra = ", SYNTHETIC" if self.synthetic else ""
        skipped = f", skipped={len(self.skipped)}" if self.skipped else ""
        return (f"CrystalDataset({self.name}/{self.split}: {len(self)} crystals, graph={self.settings.graph!r}, "
                f"prop={self.prop!r}{skipped}{extra})")


# ---------------------------------------------------------------------------------------------------------------
# convenience loaders
# ---------------------------------------------------------------------------------------------------------------

def load_split(name: DatasetLike, split: str, root: Optional[PathLike] = None, max_atoms: Optional[int] = _AUTO,
               graph: str = "crystalnn", on_error: str = "raise", num_workers: Optional[int] = None,
               limit: Optional[int] = None, *, prop: Optional[str] = _AUTO, niggli: bool = True,
               cache: bool = True, progress: bool = True) -> CrystalDataset:
    """Load one split of a dataset as a :class:`CrystalDataset`.

    ``name``: a :class:`~dpcdvae.data.resolve.DatasetHandle` (already resolved: nothing is looked up again), or a
    name, alias or folder, resolved here once with ``root`` (:func:`dpcdvae.data.resolve_dataset`: the synthetic
    demo is generated on first use).

    ``max_atoms``: ``'auto'`` (default) takes the dataset's limit (Perov-5 / MP-20: 20, Carbon-24: 24, other
    datasets none); ``None`` means no limit; an int is a limit. ``prop``: ``'auto'`` (the dataset's property
    column), a column name, or ``None``. Other arguments as :meth:`CrystalDataset.from_csv`.
    Raises :class:`DatasetNotFoundError` when the dataset or split is absent.
    """
    handle = resolve_dataset(name, root)
    return CrystalDataset.from_csv(handle.split_file(split), name=handle.name, split=split, prop=prop, max_atoms=max_atoms, graph=graph,
                                   niggli=niggli, on_error=on_error, num_workers=num_workers, limit=limit,
                                   cache=cache, progress=progress)


def split_count_line(ds: CrystalDataset) -> str:
    """``"11356 crystals of 11356 rows"``, or under a row limit ``"3000 crystals (the first 3000 of 11356 rows)"``."""
    if ds.n_rows_file is not None and ds.n_rows_file > ds.n_rows:
        return f"{len(ds)} crystals (the first {ds.n_rows} of {ds.n_rows_file} rows: row limit)"
    return f"{len(ds)} crystals of {ds.n_rows} rows"


@dataclass
class DatasetSplits:
    """Result of :func:`load_dataset_splits`: datasets (``None`` when absent), fitted scalers, and a report."""

    name: str
    directory: Path
    train_split: str
    train: CrystalDataset
    val: Optional[CrystalDataset]
    test: Optional[CrystalDataset]
    lattice_scaler: LatticeScaler
    prop_scaler: StandardScaler
    absent: list[str] = field(default_factory=list)
    report: str = ""

    def __iter__(self):  # train, val, test, scaler unpacking
        return iter((self.train, self.val, self.test, self.lattice_scaler))


def load_dataset_splits(name: DatasetLike, train_split: str = "train", root: Optional[PathLike] = None, *,
                        lattice_scaler: str = "minmax", verbose: bool = True, **kwargs) -> DatasetSplits:
    """Load train/val/test of ``name`` (a :class:`~dpcdvae.data.resolve.DatasetHandle`, or a name, alias or folder
    resolved here once with ``root``) with the scalers fitted on the training split.

    ``train_split``: the split to train on, ``'train'`` or ``'val'`` (e.g. Carbon-24 here, whose train split is
    absent). When training on ``'val'`` the returned ``val`` is the same dataset (validation on training rows).
    Absent splits are ``None`` and reported as absent. The scalers are fitted once on the training split and stored
    next to its cache file (``<cache file>.scaler-<kind>.pt``), so later runs reuse them instead of refitting.
    Prints (``verbose``) and logs which split trains. ``kwargs`` go to :func:`load_split`.
    """
    if train_split not in ("train", "val"):
        raise ValueError(f"train_split must be 'train' or 'val', got {train_split!r}")
    handle = resolve_dataset(name, root)
    name, directory = handle.name, handle.directory
    present = splits_in(directory)
    if train_split not in present:
        raise DatasetNotFoundError(
            f"dataset {name!r} in {directory} has no {train_split!r} split (present: {', '.join(present) or 'none'})."
            + (" Pass train_split='val' to train on the validation split." if train_split == "train"
               and "val" in present else "")
        )
    lines = [f"dataset {name} from {directory}"]
    absent = [s for s in SPLITS if s not in present]
    if train_split != "train":
        if "train" in absent:
            lines.append(f"  absent: train (0 rows); training on {train_split!r} as requested")
        else:
            lines.append(f"  train present but not used; training on {train_split!r} as requested")
    loaded: dict[str, CrystalDataset] = {}
    for s in SPLITS:
        if s in present and (s == train_split or s in ("val", "test")):
            loaded[s] = load_split(handle, s, **kwargs)
    train = loaded[train_split]
    val, test = loaded.get("val"), loaded.get("test")
    for s in SPLITS:
        if s in absent:
            if not (s == "train" and train_split != "train"):
                lines.append(f"  absent: {s} (0 rows)")
            continue
        if s not in loaded:
            continue
        ds = loaded[s]
        role = " <- training split" if s == train_split else ""
        if s == "val" and train_split == "val":
            role += " (also used for validation)"
        sk = f", skipped {len(ds.skipped)} bad rows (see .skipped)" if ds.skipped else ""
        lines.append(f"  {s}: {split_count_line(ds)}{sk}{role}")
        for r, mid, why in ds.skipped[:5]:
            lines.append(f"    skipped row {r} (material_id={mid!r}): {why}")
        if len(ds.skipped) > 5:
            lines.append(f"    ... and {len(ds.skipped) - 5} more skipped rows in {ds.source}")
    if train.synthetic:
        lines.append("  NOTE: this dataset is SYNTHETIC (generated by dpcdvae.data.demo), not DFT data")

    scaler_file = (train.cache_path.with_name(train.cache_path.stem + f".scaler-{lattice_scaler}.pt")
                   if train.cache_path is not None else None)
    lat_scaler = prop_scaler = None
    if scaler_file is not None and scaler_file.is_file():
        try:
            state = torch.load(scaler_file, map_location="cpu", weights_only=True)
            if state.get("fitted_on") == [len(train), train.n_rows]:
                lat_scaler = LatticeScaler.from_state_dict(state["lattice"])
                prop_scaler = StandardScaler.from_state_dict(state["prop"])
                lines.append(f"  scalers loaded from {scaler_file} (fitted on {train_split!r})")
        except Exception as exc:  # corrupt file: refit
            log.warning("could not read %s (%s); refitting the scalers", scaler_file, exc)
            lat_scaler = prop_scaler = None
    if lat_scaler is None:
        lat_scaler = LatticeScaler(kind=lattice_scaler).fit(train)
        prop_scaler = StandardScaler().fit(train.y)
        if scaler_file is not None:
            _atomic_torch_save({"lattice": lat_scaler.state_dict(), "prop": prop_scaler.state_dict(),
                                "train_split": train_split, "fitted_on": [len(train), train.n_rows]}, scaler_file)
        lines.append(f"  scalers fitted on {train_split!r} ({lattice_scaler} lattice scaler)")
    report = "\n".join(lines)
    log.info(report)
    if verbose:
        print(report, file=sys.stdout, flush=True)
    if train_split == "val":
        val = train
    return DatasetSplits(name=name, directory=directory, train_split=train_split, train=train, val=val, test=test,
                         lattice_scaler=lat_scaler, prop_scaler=prop_scaler, absent=absent, report=report)
