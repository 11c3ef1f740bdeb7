"""Crystal datasets: locating / downloading CDVAE CSVs, preprocessing into torch_geometric ``Data`` (cached),
scalers, and the self-generated SYNTHETIC demo dataset.

Quick start::

    from dpcdvae.data import load_split, load_dataset_splits
    test = load_split("perov_5", "test")                 # CrystalDataset of Data, cached on disk
    splits = load_dataset_splits("carbon_24", train_split="val")   # train here on 'val' (train absent)

Units: lengths in Angstrom, angles in degrees, properties in the dataset's unit (eV/atom for the CDVAE
benchmarks; the demo's ``heat_ref`` is synthetic and dimensionless).
"""
import importlib
from typing import Any

# Exports are loaded lazily (PEP 562) so that `dpcdvae data info` and the locator do not import torch.
_EXPORTS = {
    "csvio": ["DEFAULT_MAX_ATOMS", "PREPROCESS_VERSION", "PROPERTY_COLUMNS", "DataError", "DataWarning",
              "PreprocessSettings", "canonical_structure", "parse_cif", "read_csv_rows"],
    "dataset": ["CrystalDataset", "DatasetSplits", "cache_key", "load_dataset_splits", "load_split"],
    "demo": ["ensure_demo_dataset", "make_demo_dataset"],
    "locator": ["DEMO_NAME", "KNOWN_DATASETS", "SPLITS", "DatasetNotFoundError", "DownloadError", "available_splits",
                "cache_dir", "candidate_roots", "download", "locate_dataset", "split_path"],
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
    "PreprocessSettings", "parse_cif", "canonical_structure", "read_csv_rows",
    "PROPERTY_COLUMNS", "DEFAULT_MAX_ATOMS", "PREPROCESS_VERSION", "KNOWN_DATASETS", "SPLITS",
]
