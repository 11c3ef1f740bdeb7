"""The notebook session: the first cell's :func:`setup`, whether a person watches a live front end
(:func:`live_frontend`, :func:`headless`), and the guards that let a cell run without an optional piece (a widget drawn
as its first frame, a relaxation without CHGNet) and say so (:data:`GUARD_MARK`)."""
from __future__ import annotations

import os
import warnings
from typing import Optional

from ..utils import progress as _progress  # (module attribute: tests replace progress._in_jupyter_kernel)
from ..utils.alloc import tune_allocator

__all__ = ["GUARD_MARK", "live_frontend", "headless", "HEADLESS_WIDGET_NOTE", "setup", "RELAX_INSTALL",
           "relax_unavailable"]

GUARD_MARK = "not available"  # what a guarded cell prints when an optional piece is missing


def live_frontend() -> bool:
    """True when a person's Jupyter front end will draw widgets: this code runs in an IPython kernel that Jupyter
    Server started for a notebook (JupyterLab, Notebook 7: ``$JPY_SESSION_NAME`` is set) or VS Code started.
    False under plain papermill / nbclient, ``dpcdvae notebooks`` / ``reproduce`` (``$DPCDVAE_HEADLESS``) and outside
    a kernel. ``$DPCDVAE_WIDGETS=1`` (or ``0``) overrides the guess."""

    force = os.environ.get("DPCDVAE_WIDGETS", "").strip()
    if force in ("0", "1"):
        return force == "1"
    if os.environ.get("DPCDVAE_HEADLESS", "") not in ("", "0"):
        return False
    if not _progress._in_jupyter_kernel():
        return False
    return bool(os.environ.get("JPY_SESSION_NAME") or os.environ.get("VSCODE_PID")
                or os.environ.get("VSCODE_IPC_HOOK_CLI"))


def headless() -> bool:
    """True when no person watches a live front end (``dpcdvae notebooks`` / ``reproduce``, plain papermill, a
    script): no progress bars, and widgets are drawn as their first frame (see :func:`live_frontend`)."""
    return not live_frontend()


HEADLESS_WIDGET_NOTE = ("no live Jupyter front end (headless run): the widget's first frame is drawn instead; open "
                        "the notebook in JupyterLab to interact (DPCDVAE_WIDGETS=1 forces the widget)")


def _widget_or_static(widget_fn, static_fn=None):
    """``widget_fn()`` in a live Jupyter session; without one (``dpcdvae notebooks`` / ``reproduce``, plain
    papermill) draw ``static_fn()`` (the widget's first picture) instead, print why, and return ``None``."""
    if headless():
        print(HEADLESS_WIDGET_NOTE)
        if static_fn is not None:
            static_fn()
        return None
    return widget_fn()


def setup(threads: Optional[int] = None, quiet: bool = True) -> dict:
    """First cell of every notebook: torch threads, quiet warnings/logging, versions (the install check).

    ``threads``: ``torch.set_num_threads`` (``None`` leaves torch's default; on a small shared CPU use 1).
    Tunes glibc's allocator for the kernel's process (:func:`dpcdvae.utils.alloc.tune_allocator`: CPU speed,
    outputs unchanged). Returns and prints ``{package: version}`` plus the device.
    """
    import logging

    import torch

    tune_allocator()  # an entry point (the notebook's kernel): freed memory is kept for the next step
    if threads:
        torch.set_num_threads(int(threads))
    if quiet:
        try:  # Lightning sets its loggers to INFO when imported: import it first, then quiet it
            import lightning  # noqa: F401  (import side effect: its loggers exist, then we quiet them)
        except ImportError:  # pragma: no cover
            pass
        for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning",
                     "lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
            logging.getLogger(name).setLevel(logging.ERROR)
        warnings.filterwarnings("ignore", category=UserWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", message=".*[Ii]ssues encountered while parsing CIF.*")
    from importlib.metadata import PackageNotFoundError, version

    info = {}
    for pkg in ("dpcdvae", "torch", "torch_geometric", "lightning", "pymatgen", "ase", "matplotlib",
                "papermill", "ipywidgets", "nglview", "chgnet"):
        try:
            info[pkg] = version(pkg.replace("_", "-"))
        except PackageNotFoundError:
            info[pkg] = "not installed"
    info["device"] = "cuda" if torch.cuda.is_available() else "cpu"
    info["torch threads"] = torch.get_num_threads()
    print("install check: " + ", ".join(f"{k} {v}" for k, v in info.items()))
    return info


#: the install that brings CHGNet (and threadpoolctl): the package's ``relax`` extra, from the repository root
RELAX_INSTALL = 'pip install -e ".[relax]"'
_RELAX_EXTRA_MODULES = ("chgnet", "threadpoolctl")


def relax_unavailable(exc: BaseException) -> str:
    """The one line a notebook prints when a relaxation cannot run because a package is missing (``exc``, an
    ``ImportError``): for CHGNet (or threadpoolctl) the package and the install of the ``relax`` extra that brings
    it (:data:`RELAX_INSTALL`, which the README's first command runs); for any other package its name. Always says
    that ``calculator='emt'`` (a toy potential) runs without it."""
    name = (getattr(exc, "name", None) or "").split(".")[0]
    if name in _RELAX_EXTRA_MODULES:
        what = (f"the optional package {name!r} is not installed; it comes with the relax extra: {RELAX_INSTALL} "
                f"(from the repository root)")
    elif name:
        what = f"the package {name!r} is not installed (pip install {name})"
    else:
        what = f"{type(exc).__name__}: {exc}"
    return " ".join(f"relaxation {GUARD_MARK}: {what}; calculator='emt' (a toy potential) runs without it".split())
