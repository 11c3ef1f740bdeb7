"""Finding dataset files on disk, the cache directory, and downloading the CDVAE benchmark CSVs.

A dataset is a directory ``<root>/<name>/`` holding any of ``train.csv``, ``val.csv``, ``test.csv`` in the CDVAE
CSV format. The data root is looked up in this order (first hit wins):

1. an explicit ``root`` argument (authoritative: when given, nothing else is searched);
2. ``$DPCDVAE_DATA``;
3. ``./data`` (relative to the current working directory), then ``<repository>/data``;
4. ``../shared/data`` (relative to the current working directory), then ``<repository>/../shared/data``.

``<repository>`` is the checkout holding this package (``Path(__file__).parents[2]``, used only when it has a
``pyproject.toml``), so the locator works from any working directory. A directory that exists but holds no split
CSV (e.g. a folder with only a README) does not count as the dataset.

The locator only locates: it never generates data. Generating the SYNTHETIC demo dataset on first use is
:func:`dpcdvae.data.resolve.dataset_dir`; which datasets exist, and where they are downloaded from, is
:mod:`dpcdvae.data.registry`.
"""
from __future__ import annotations

import logging
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterable, Optional

from ..utils.fileio import atomic_write_bytes
from .paths import ENV_CACHE, ENV_DATA, SPLITS, DatasetNotFoundError, PathLike, cache_dir  # noqa: F401
from .registry import downloadable_datasets, find_spec

log = logging.getLogger("dpcdvae.data")

_REPO_ROOT = Path(__file__).resolve().parents[2]


class DownloadError(RuntimeError):
    """Fetching a dataset failed (offline, HTTP error, or the server sent something that is not a CDVAE CSV)."""


def _repo_root() -> Optional[Path]:
    return _REPO_ROOT if (_REPO_ROOT / "pyproject.toml").is_file() else None


def candidate_roots(root: Optional[PathLike] = None) -> list[tuple[Path, str]]:
    """The data roots searched, in order, as ``(path, how it was chosen)``; duplicates removed."""
    if root is not None:
        return [(Path(root).expanduser(), "explicit root argument")]
    cands: list[tuple[Path, str]] = []
    env = os.environ.get(ENV_DATA)
    if env:
        cands.append((Path(env).expanduser(), f"${ENV_DATA}"))
    cwd = Path.cwd()
    repo = _repo_root()
    cands.append((cwd / "data", "./data (current directory)"))
    if repo is not None:
        cands.append((repo / "data", "data/ of the repository"))
    cands.append((cwd.parent / "shared" / "data", "../shared/data (current directory)"))
    if repo is not None:
        cands.append((repo.parent / "shared" / "data", "../shared/data (repository)"))
    seen: set[str] = set()
    out = []
    for path, why in cands:
        key = os.path.normcase(os.path.abspath(path))
        if key not in seen:
            seen.add(key)
            out.append((path, why))
    return out


def splits_in(directory: Path) -> list[str]:
    """Splits whose CSV is in ``directory``, in the order train, val, test."""
    return [s for s in SPLITS if (Path(directory) / f"{s}.csv").is_file()]


def _how_to_get(name: str) -> str:
    spec = find_spec(name, aliases=False)
    if spec is not None and spec.synthetic:
        return "build it with `dpcdvae data demo` (it is generated locally, never downloaded)"
    hint = (f"set ${ENV_DATA} to a directory holding {name}/{{train,val,test}}.csv, or pass root=DIR")
    if spec is not None and spec.download_url:
        return f"get the files with `dpcdvae data download {name}` (needs internet), or {hint}"
    return f"{hint} (known downloadable datasets: {', '.join(downloadable_datasets())})"


def locate_dataset(name: str, root: Optional[PathLike] = None) -> Path:
    """Directory of dataset ``name`` (``<root>/<name>`` holding at least one of train/val/test.csv).

    ``root`` may be a data root (holding ``<name>/``) or the dataset directory itself. Raises
    :class:`DatasetNotFoundError` naming every place looked at and how to get the files. Never generates anything
    (for the synthetic demo, :func:`dpcdvae.data.resolve.dataset_dir` does).
    """
    looked: list[str] = []
    for base, why in candidate_roots(root):
        options = [base / name]
        if root is not None:
            options.append(base)  # the explicit path may be the dataset directory itself
        for d in options:
            if d.is_dir():
                found = splits_in(d)
                if found:
                    log.debug("dataset %s found in %s (%s)", name, d, why)
                    return d
                looked.append(f"  {d}  [{why}]: directory exists but holds no train/val/test.csv")
            else:
                looked.append(f"  {d}  [{why}]: not found")
    raise DatasetNotFoundError(
        f"dataset {name!r} not found. Looked in:\n" + "\n".join(looked) + f"\nTo fix: {_how_to_get(name)}."
    )


def available_splits(name: str, root: Optional[PathLike] = None) -> list[str]:
    """Splits of ``name`` present on disk, in the order train, val, test; ``[]`` when the dataset is absent."""
    try:
        return splits_in(locate_dataset(name, root))
    except DatasetNotFoundError:
        return []


def split_path(name: str, split: str, root: Optional[PathLike] = None) -> Path:
    """Path of ``<dataset>/<split>.csv``; :class:`DatasetNotFoundError` if the dataset or that split is absent."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    return split_file_in(locate_dataset(name, root), name, split)


def split_file_in(directory: PathLike, name: str, split: str) -> Path:
    """Path of ``<directory>/<split>.csv`` of dataset ``name`` (already located); :class:`DatasetNotFoundError`
    naming the splits present when that file is absent."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    d = Path(directory)
    p = d / f"{split}.csv"
    if not p.is_file():
        present = ", ".join(splits_in(d)) or "none"
        raise DatasetNotFoundError(
            f"split {split!r} of dataset {name!r} is absent: {p} does not exist (present in {d}: {present}). "
            f"To fix: {_how_to_get(name)}"
            + (", or train on another split (e.g. train_split='val')" if split == "train" else "")
            + "."
        )
    return p


# ---------------------------------------------------------------------------------------------------------------
# download
# ---------------------------------------------------------------------------------------------------------------

def _open_url(url: str, timeout: float):
    """Open ``url`` (patched in tests)."""
    req = urllib.request.Request(url, headers={"User-Agent": "dpcdvae-data-download"})
    return urllib.request.urlopen(req, timeout=timeout)


def default_download_dest() -> Path:
    """Where :func:`download` writes by default: ``$DPCDVAE_DATA`` if set, else ``./data``."""
    env = os.environ.get(ENV_DATA)
    return Path(env).expanduser() if env else Path.cwd() / "data"


def download(name: str, dest: Optional[PathLike] = None, splits: Iterable[str] = SPLITS, *,
             timeout: float = 30.0, overwrite: bool = False, url_template: Optional[str] = None) -> Path:
    """Fetch ``{train,val,test}.csv`` of a CDVAE benchmark dataset from the public CDVAE GitHub repository.

    Files go to ``<dest>/<name>/<split>.csv`` (``dest`` defaults to ``$DPCDVAE_DATA`` or ``./data``), written
    atomically (temporary file + ``os.replace``), so an interrupted download never leaves a truncated CSV.
    Existing files are kept unless ``overwrite=True``. Raises :class:`DownloadError` with a clear message when the
    server cannot be reached (offline), answers with an HTTP error, or sends something that is not a CDVAE CSV.
    Returns the dataset directory. This is the only function in the package that touches the network.
    ``url_template`` (``{name}``, ``{split}``) defaults to the dataset's own (:mod:`dpcdvae.data.registry`).
    """
    spec = find_spec(name, aliases=False)
    if spec is not None and spec.synthetic:
        raise DownloadError(f"{name!r} is generated locally, not downloaded: run `dpcdvae data demo`.")
    if spec is None or not spec.download_url:
        raise ValueError(f"unknown dataset {name!r}; downloadable: {', '.join(downloadable_datasets())}")
    url_template = url_template or spec.download_url
    splits = list(splits)
    for s in splits:
        if s not in SPLITS:
            raise ValueError(f"unknown split {s!r}; expected one of {SPLITS}")
    out_dir = Path(dest).expanduser() if dest is not None else default_download_dest()
    out_dir = out_dir / name
    for split in splits:
        target = out_dir / f"{split}.csv"
        if target.is_file() and not overwrite:
            log.info("%s exists, kept (overwrite=True to fetch again)", target)
            continue
        url = url_template.format(name=name, split=split)
        log.info("downloading %s -> %s", url, target)
        try:
            with _open_url(url, timeout) as resp:
                data = resp.read()
        except urllib.error.HTTPError as exc:
            raise DownloadError(f"downloading {url} failed: HTTP {exc.code} {exc.reason}") from exc
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise DownloadError(
                f"could not download {url}: {reason}. This machine seems to be offline (or the server is "
                f"unreachable within {timeout:g} s). On a machine with internet run `dpcdvae data download {name}`"
                f" and copy {name}/ into a data root, or set ${ENV_DATA} to a directory holding "
                f"{name}/{{train,val,test}}.csv."
            ) from exc
        head = data[:4096].decode("utf-8", errors="replace").splitlines()[0] if data else ""
        if "cif" not in head.split(",") or "material_id" not in head.split(","):
            raise DownloadError(
                f"{url} did not return a CDVAE CSV (first line: {head[:120]!r}); nothing written to {target}."
            )
        atomic_write_bytes(target, data, fsync=True)
    return out_dir
