"""A package that re-exports names of its submodules, each submodule imported on first use (PEP 562)."""
from __future__ import annotations

import importlib
import sys

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: dict):
    """``(__getattr__, __dir__)`` for the package named ``package`` (its ``__name__``) that re-exports ``exports``
    (``{name: submodule}``): ``package.name`` and ``from package import name`` import ``package.submodule`` when
    the name is first used. Assign them in the package's ``__init__``: ``__getattr__, __dir__ = lazy_exports(...)``."""

    def __getattr__(name: str):
        if name in exports:
            return getattr(importlib.import_module(f".{exports[name]}", package), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__():
        return sorted(list(vars(sys.modules[package])) + sorted(exports))

    return __getattr__, __dir__
