"""Crystal datasets: locating / downloading CDVAE CSVs, preprocessing into torch_geometric ``Data`` (cached),
scalers, and the self-generated SYNTHETIC demo dataset.

Quick start::

    from dpcdvae.data import load_split, load_dataset_splits, resolve_dataset
    test = load_split("perov_5", "test")                 # CrystalDataset of Data, cached on disk
    splits = load_dataset_splits("carbon_24", train_split="val")   # train here on 'val' (train absent)
    carbon = resolve_dataset("Carbon-24")                 # resolved once: .spec, .directory, .name (carbon_24)
    val = load_split(carbon, "val")                       # a handle is not looked up again

Which datasets exist, and every fact about them (property column and units, ``max_atoms``, batch size, COV
thresholds, property model, download address, synthetic or not), is :mod:`dpcdvae.data.registry`
(``get_spec("perov_5")``; ``spec_for_folder(path)`` for a folder of one's own).

Units: lengths in Angstrom, angles in degrees, properties in the dataset's unit (eV/atom for the CDVAE
benchmarks; the demo's ``heat_ref`` is synthetic and dimensionless).
"""
import importlib
from typing import Any

# Exports are loaded lazily (PEP 562) so that `dpcdvae data info` and the locator do not import torch.
_EXPORTS = {
    "csvio": ["PREPROCESS_VERSION", "DataError", "DataWarning", "PreprocessSettings", "parse_cif", "read_csv_rows"],
    "dataset": ["CrystalDataset", "DatasetSplits", "cache_key", "load_dataset_splits", "load_split"],
    "demo": ["ensure_demo_dataset", "make_demo_dataset"],
    "locator": ["DownloadError", "available_splits", "candidate_roots", "download", "locate_dataset", "split_path"],
    "paths": ["SPLITS", "DatasetNotFoundError", "cache_dir"],
    "registry": ["DEMO_NAME", "DatasetSpec", "PropertyModelSpec", "find_spec", "get_spec", "known_datasets",
                 "register_dataset", "spec_for_folder"],
    "resolve": ["DatasetHandle", "UnknownDatasetNameError", "dataset_dir", "dataset_root", "dataset_spec",
                "resolve_dataset", "resolve_root"],
    "scalers": ["LatticeScaler", "StandardScaler", "lattice_features"],
}
_WHERE = {name: mod for mod, names in _EXPORTS.items() for name in names}


def __getattr__(name: str) -> Any:
    mod = _WHERE.get(name)
    if mod is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{mod}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list:
    return sorted(list(globals()) + list(_WHERE))


__all__ = [
    "CrystalDataset", "DatasetSplits", "load_split", "load_dataset_splits", "cache_key",
    "locate_dataset", "available_splits", "split_path", "candidate_roots", "cache_dir", "download",
    "DatasetNotFoundError", "DownloadError", "DataError", "DataWarning",
    "LatticeScaler", "StandardScaler", "lattice_features",
    "make_demo_dataset", "ensure_demo_dataset", "DEMO_NAME",
    "PreprocessSettings", "parse_cif", "read_csv_rows", "PREPROCESS_VERSION", "SPLITS",
    "DatasetSpec", "PropertyModelSpec", "get_spec", "find_spec", "known_datasets", "register_dataset",
    "spec_for_folder", "dataset_dir", "dataset_root", "dataset_spec",
    "DatasetHandle", "resolve_dataset", "resolve_root", "UnknownDatasetNameError",
]
