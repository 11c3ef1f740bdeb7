"""Names and places shared by the whole data layer (no imports of the rest of the package).

``SPLITS`` (the split files of a dataset folder), the environment variables that move the data root and the cache,
and :func:`cache_dir`. Both the locator and the demo generator build on this module, never on each other.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Union

PathLike = Union[str, "os.PathLike[str]"]

#: A dataset is a folder holding any of ``train.csv``, ``val.csv``, ``test.csv`` (CDVAE CSV format).
SPLITS: tuple[str, ...] = ("train", "val", "test")
ENV_DATA = "DPCDVAE_DATA"
ENV_CACHE = "DPCDVAE_CACHE"


def cache_dir() -> Path:
    """The cache directory: ``$DPCDVAE_CACHE``, else ``$XDG_CACHE_HOME/dpcdvae``, else ``~/.cache/dpcdvae``."""
    env = os.environ.get(ENV_CACHE)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "dpcdvae"


class DatasetNotFoundError(FileNotFoundError):
    """A dataset (or one of its splits) is not on disk; the message lists every place looked at."""
