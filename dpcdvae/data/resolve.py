"""From a dataset name to its folder and its spec, once; the one place that generates a synthetic dataset on first use.

Layers (each imports only the ones before it): :mod:`~dpcdvae.data.paths` -> :mod:`~dpcdvae.data.registry`
(facts) -> :mod:`~dpcdvae.data.locator` (finds folders, never writes) and :mod:`~dpcdvae.data.demo` (writes
the synthetic data; registers its builder with the registry) -> this module, which uses both:

* :func:`resolve_dataset` -> :class:`DatasetHandle`: a name, an alias (any case), a folder or a spec resolved once
  into the spec, the folder on disk and the name the loaders use. The loaders (:func:`dpcdvae.data.load_split`,
  :func:`~dpcdvae.data.load_dataset_splits`), :func:`dpcdvae.config.load_config`, :func:`dpcdvae.train.train`
  and the workflows take a handle (or a name, which they resolve once at the edge);
* :func:`resolve_root`: the data root to hand to the loaders (for a synthetic dataset without an explicit root:
  its generated copy);
* :func:`dataset_dir`: the folder of a dataset; a synthetic dataset that no data root holds is generated
  (the demo: into ``$DPCDVAE_CACHE/demo``);
* :func:`dataset_root`: the same as :func:`resolve_root` for a name;
* :func:`split_file`: one split's CSV;
* :func:`dataset_spec`: the :class:`~dpcdvae.data.registry.DatasetSpec` of a registered name, or of a folder of
  one's own (``max_atoms`` computed from its crystals).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

from ..utils.errors import UnknownDatasetError
from . import demo as _demo  # noqa: F401  (registers the demo's builder: registry.register_builder)
from .locator import candidate_roots, locate_dataset, split_file_in, splits_in
from .paths import DatasetNotFoundError, PathLike
from .registry import DatasetSpec, builder_of, find_spec, get_spec, spec_for_folder, unknown_dataset_message

__all__ = ["DatasetHandle", "UnknownDatasetNameError", "resolve_dataset", "resolve_root", "dataset_dir",
           "dataset_root", "split_file", "dataset_spec", "build_synthetic"]


class UnknownDatasetNameError(DatasetNotFoundError, UnknownDatasetError):
    """A dataset name that is neither registered nor an alias nor a folder any data root holds. One line naming the
    known datasets (:func:`~dpcdvae.data.registry.unknown_dataset_message`); both a
    :class:`~dpcdvae.data.DatasetNotFoundError` (it is not on disk) and an
    :class:`~dpcdvae.utils.errors.UnknownDatasetError` (a :class:`~dpcdvae.utils.errors.UserError`)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class DatasetHandle:
    """A dataset resolved once (:func:`resolve_dataset`): what the loaders, the config and the trainer need.

    ``name``: the name the loaders use (cache folder, default property column, messages): the registered name
    when ``given`` was a registered name or an alias, else ``given`` itself (a folder). ``directory``: the folder
    holding its split CSVs. ``root``: the data root to hand to code that still takes ``(name, root)`` (for a
    synthetic dataset without an explicit root: the parent of its generated copy; see :func:`resolve_root`).
    ``given``: the name or path as the caller gave it. ``spec``: its
    :class:`~dpcdvae.data.registry.DatasetSpec` (a folder of one's own: computed from its crystals on first use).
    """

    name: str
    directory: Path
    root: Optional[str] = None
    given: str = ""
    _spec: Optional[DatasetSpec] = field(default=None, compare=False, repr=False)

    @property
    def spec(self) -> DatasetSpec:
        if self._spec is None:  # a folder of one's own: max_atoms from its crystals, computed once
            object.__setattr__(self, "_spec", spec_for_folder(self.directory,
                                                              name=Path(self.given or self.name).name or None))
        return self._spec

    @property
    def max_atoms(self) -> int:
        """The largest crystal (atoms per cell) of the dataset (:attr:`spec`)."""
        return self.spec.max_atoms

    @property
    def synthetic(self) -> bool:
        return self.spec.synthetic

    def splits(self) -> list[str]:
        """Splits whose CSV is in :attr:`directory`, in the order train, val, test."""
        return splits_in(self.directory)

    def split_file(self, split: str) -> Path:
        """Path of one split's CSV; :class:`~dpcdvae.data.DatasetNotFoundError` naming the splits present when it
        is absent."""
        return split_file_in(self.directory, self.name, split)

    def __str__(self) -> str:
        return self.name


DatasetLike = Union[str, "os.PathLike[str]", DatasetSpec, DatasetHandle]


def _looks_like_path(name: str) -> bool:
    return os.sep in name or "/" in name or name.startswith((".", "~"))


def _registered(spec: DatasetSpec, given: str, root: Optional[PathLike]) -> DatasetHandle:
    build = builder_of(spec) if root is None else None
    if build is not None:  # a synthetic dataset without a root: its generated copy (made on first use)
        directory = Path(build())
        return DatasetHandle(spec.name, directory, str(directory.parent), given, spec)
    return DatasetHandle(spec.name, locate_dataset(spec.name, root), None if root is None else str(root), given,
                         spec)


def resolve_dataset(dataset: DatasetLike, root: Optional[PathLike] = None) -> DatasetHandle:
    """Resolve ``dataset`` once into a :class:`DatasetHandle` (its spec and its folder).

    ``dataset``: a registered name or any alias of one, in any case (``"Perov-5"``, ``"demo"``); a folder of one's
    own (found like :func:`~dpcdvae.data.locate_dataset` finds it: ``<root>/<name>``, ``root`` itself, or under
    ``$DPCDVAE_DATA``, ``./data``, ``../shared/data``; an absolute path works anywhere); a
    :class:`~dpcdvae.data.registry.DatasetSpec`; or a handle, returned as it is (resolved again only when a
    different ``root`` is given). A registered name is taken before a folder of that name, a folder before an
    alias (as :func:`dataset_spec` does). A synthetic dataset (the demo) without a ``root`` is generated on first
    use and read from its generated copy (``$DPCDVAE_CACHE/demo``).

    Raises :class:`~dpcdvae.data.DatasetNotFoundError` (every place looked at, how to get the files) when a known
    dataset or a path is not on disk, and :class:`UnknownDatasetNameError` (one line naming the known datasets;
    also a :class:`~dpcdvae.utils.errors.UnknownDatasetError`) for a name that is nothing of these.
    """
    if isinstance(dataset, DatasetHandle):
        if root is None or dataset.root is not None and Path(root) == Path(dataset.root):
            return dataset
        return resolve_dataset(dataset.given or dataset.name, root)
    if isinstance(dataset, DatasetSpec):
        if dataset.folder is not None and find_spec(dataset.name, aliases=False) is not dataset:
            return DatasetHandle(dataset.name, Path(dataset.folder), None, dataset.folder, dataset)
        return _registered(dataset, dataset.name, root)
    given = os.fspath(dataset)
    spec = find_spec(given, aliases=False)
    if spec is None:
        try:
            directory = locate_dataset(given, root)
        except DatasetNotFoundError:
            spec = find_spec(given)  # an alias: "Perov-5" -> perov_5
            if spec is None:
                if _looks_like_path(given):
                    raise  # the locator's message: every place looked at
                where = ", ".join(str(base / given) for base, _ in candidate_roots(root))
                raise UnknownDatasetNameError(f"{unknown_dataset_message(given)}; no folder {given!r} with split "
                                              f"CSVs in {where}") from None
        else:
            return DatasetHandle(given, directory, None if root is None else str(root), given)
    return _registered(spec, given, root)


def resolve_root(dataset: DatasetLike, root: Optional[PathLike] = None) -> Optional[PathLike]:
    """The data root to hand to code that takes ``(name, root)``: ``root`` as given, except for a synthetic
    dataset without a root, which is generated on first use (``$DPCDVAE_CACHE/demo``) and read from there. A
    :class:`DatasetHandle` knows its own. (Moved here from ``dpcdvae.train``.)"""
    if isinstance(dataset, DatasetHandle):
        return dataset.root
    return dataset_root(dataset, root)


def build_synthetic(name: str) -> Path:
    """Generate (or reuse, when already generated with the same settings) the synthetic dataset ``name`` with its
    builder (:func:`~dpcdvae.data.registry.builder_of`); returns its folder."""
    spec = get_spec(name)
    build = builder_of(spec)
    if build is None:
        raise ValueError(f"dataset {spec.name!r} is not a generated (synthetic) dataset")
    return Path(build())


def _synthetic_spec(name: str) -> Optional[DatasetSpec]:
    spec = find_spec(name, aliases=False)
    return spec if spec is not None and builder_of(spec) is not None else None


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
    if isinstance(name, DatasetHandle):
        return name.spec
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
