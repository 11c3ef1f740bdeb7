"""From a dataset name to its folder and its spec; the one place that generates a synthetic dataset on first use.

Layers (each imports only the ones before it): :mod:`~dpcdvae.data.paths` -> :mod:`~dpcdvae.data.registry`
(facts) -> :mod:`~dpcdvae.data.locator` (finds folders, never writes) and :mod:`~dpcdvae.data.demo` (writes
the synthetic data) -> this module, which uses both:

* :func:`dataset_dir`: the folder of a dataset; a synthetic dataset that no data root holds is generated
  (the demo: into ``$DPCDVAE_CACHE/demo``);
* :func:`dataset_root`: the data root to hand to the loaders (for a synthetic dataset without an explicit root:
  its generated copy);
* :func:`split_file`: one split's CSV;
* :func:`dataset_spec`: the :class:`~dpcdvae.data.registry.DatasetSpec` of a registered name, or of a folder of
  one's own (``max_atoms`` computed from its crystals).
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Optional

from .locator import locate_dataset, split_file_in
from .paths import DatasetNotFoundError, PathLike
from .registry import DatasetSpec, find_spec, get_spec, spec_for_folder

__all__ = ["dataset_dir", "dataset_root", "split_file", "dataset_spec", "build_synthetic"]


def build_synthetic(name: str) -> Path:
    """Generate (or reuse, when already generated with the same settings) the synthetic dataset ``name`` with the
    builder its spec names; returns its folder."""
    spec = get_spec(name)
    if not spec.synthetic or not spec.builder:
        raise ValueError(f"dataset {spec.name!r} is not a generated (synthetic) dataset")
    module, _, func = spec.builder.partition(":")
    return Path(getattr(importlib.import_module(module), func)())


def _synthetic_spec(name: str) -> Optional[DatasetSpec]:
    spec = find_spec(name, aliases=False)
    return spec if spec is not None and spec.synthetic and spec.builder else None


def dataset_dir(name: str, root: Optional[PathLike] = None) -> Path:
    """The folder of dataset ``name`` (see :func:`dpcdvae.data.locate_dataset`); a synthetic dataset (the demo)
    that is found nowhere is generated when no ``root`` is given. Raises :class:`DatasetNotFoundError`."""
    try:
        return locate_dataset(name, root)
    except DatasetNotFoundError:
        if root is None and _synthetic_spec(name) is not None:
            return build_synthetic(name)
        raise


def dataset_root(name: str, root: Optional[PathLike] = None) -> Optional[PathLike]:
    """The data root to load ``name`` from: ``root`` as given, except for a synthetic dataset without a root, which
    is generated on first use and read from its generated copy (``$DPCDVAE_CACHE/demo`` for the demo)."""
    if root is None and _synthetic_spec(name) is not None:
        return str(build_synthetic(name).parent)
    return root


def split_file(name: str, split: str, root: Optional[PathLike] = None) -> Path:
    """Path of one split's CSV (:func:`dataset_dir`, so the demo is generated when needed)."""
    return split_file_in(dataset_dir(name, root), name, split)


def dataset_spec(name, root: Optional[PathLike] = None) -> DatasetSpec:
    """The spec of ``name``: a registered dataset (exact name, no disk access), else the folder the locator finds
    for ``name`` under ``root`` (:func:`~dpcdvae.data.registry.spec_for_folder`: ``max_atoms`` from its crystals),
    else a registered alias (``"Perov-5"``). Raises :class:`DatasetNotFoundError` (listing where it looked) when
    ``name`` is none of these."""
    if isinstance(name, DatasetSpec):
        return name
    spec = find_spec(name, aliases=False)
    if spec is not None:
        return spec
    try:
        directory = locate_dataset(name, root)
    except DatasetNotFoundError:
        spec = find_spec(name)
        if spec is not None:
            return spec
        raise
    return spec_for_folder(directory, name=Path(str(name)).name or None)
