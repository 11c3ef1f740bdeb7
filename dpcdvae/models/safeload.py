"""Reading ``.ckpt`` / ``.pt`` files without running code stored in them.

A torch file is a pickle, and a pickle may name any Python callable to be called while it is read (``open``,
``os.system``, ...). :func:`load_weights_only` reads files with ``torch.load(weights_only=True)``, which accepts
tensors and plain data (dict, list, str, numbers, ...) only and refuses everything else *before* calling it. Every
file dpcdvae writes (training checkpoints, shipped weights, property heads) is of that kind, so the package never
needs more. A file that does (written by another tool, or edited by someone) is refused with one line saying why
and how to convert it when the user trusts its author: ``dpcdvae convert IN OUT`` (:func:`to_plain` is the
conversion of what was read).
"""
from __future__ import annotations

import dataclasses
import enum
import os
import pickle
import re
from pathlib import Path, PurePath
from typing import Any

import torch

from ..utils.errors import CheckpointError

__all__ = ["load_weights_only", "to_plain", "refusal_message"]


def refusal_message(path, detail: str, what: str = "checkpoint") -> str:
    """The one line that refuses a file needing full unpickling: what it refers to (``detail``: torch's error),
    why that is refused, and the ``dpcdvae convert`` command that makes a weights-only copy of a trusted file."""
    m = re.search(r"GLOBAL ([\w.]+)", detail)
    names = f"it refers to {m.group(1)}" if m else detail.strip().splitlines()[-1][:200] if detail.strip() else ""
    return (f"{what} {path}: refused: it needs full unpickling ({names}), which can run code stored in the file; "
            f"dpcdvae reads weights-only files (tensors and plain data). If you trust its author, convert it once "
            f"with `dpcdvae convert {path} NEW.ckpt` and use NEW.ckpt")


def load_weights_only(path, map_location: Any = "cpu", what: str = "checkpoint") -> Any:
    """Read a torch file with ``torch.load(weights_only=True)``: nothing stored in the file is ever called.

    Raises :class:`~dpcdvae.utils.errors.CheckpointError` with a one-line message naming ``what`` and the file when the
    file is missing, unreadable or truncated (``... cannot be read (...); is the file complete?``), or when it needs
    full unpickling (:func:`refusal_message`: refused, with the ``dpcdvae convert`` command for a trusted file).
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{what} {path} does not exist")
    try:
        return torch.load(p, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:  # torch's weights-only unpickler met a global it does not allow
        raise CheckpointError(refusal_message(path, str(exc), what)) from None
    except Exception as exc:  # truncated / not a torch file
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise CheckpointError(f"{what} {path} cannot be read ({type(exc).__name__}: {first}); is the file "
                              f"complete?") from None


_PLAIN = (type(None), bool, int, float, complex, str, bytes, torch.dtype, torch.device, torch.Size)


def to_plain(obj: Any, where: str = "", dropped: list | None = None) -> Any:
    """A copy of ``obj`` that ``torch.load(weights_only=True)`` reads: tensors (detached, plain ``Tensor``), plain
    Python data, dicts / lists / tuples of them. Dataclasses (e.g. :class:`~dpcdvae.config.Config`) and
    ``argparse.Namespace`` become dicts, numpy arrays tensors, numpy scalars Python numbers, paths strings, enums
    their values, sets lists. Anything else is left out (a list keeps ``None`` in its place); each such place is
    appended to ``dropped`` as ``"path.to.key (TypeName)"``."""
    if dropped is None:
        dropped = []
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone() if type(obj) is not torch.Tensor else obj
    if isinstance(obj, _PLAIN):
        return obj
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            key = k if isinstance(k, (str, int, float, bool, type(None))) else str(k)
            sub = f"{where}.{key}" if where else str(key)
            value = to_plain(v, sub, dropped)
            if value is _DROP:
                continue
            out[key] = value
        return out
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = [to_plain(v, f"{where}[{i}]", dropped) for i, v in enumerate(obj)]
        items = [None if v is _DROP else v for v in items]
        return tuple(items) if isinstance(obj, tuple) else items
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_plain(dataclasses.asdict(obj), where, dropped)
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, enum.Enum):
        return to_plain(obj.value, where, dropped)
    try:
        import argparse

        if isinstance(obj, argparse.Namespace):
            return to_plain(vars(obj), where, dropped)
    except ImportError:  # pragma: no cover
        pass
    try:
        import numpy as np

        if isinstance(obj, np.ndarray) and obj.dtype != object:
            return torch.from_numpy(np.ascontiguousarray(obj)).clone()
        if isinstance(obj, np.generic):
            return obj.item()
    except ImportError:  # pragma: no cover
        pass
    dropped.append(f"{where or '<top>'} ({type(obj).__name__})")
    return _DROP


class _Drop:
    """Marker of a value :func:`to_plain` leaves out."""


_DROP = _Drop()


def _same_file(a, b) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).resolve() == Path(b).resolve()
