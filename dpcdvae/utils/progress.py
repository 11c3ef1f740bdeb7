"""Progress bars that suit where the output goes.

In a terminal or a live Jupyter kernel, :func:`progress_bar` is tqdm's usual bar. When the output is a file or a
pipe (``nohup ... > log``, CI), a redrawn bar fills the log with carriage returns; there it writes one plain line
at most every ``DPCDVAE_PROGRESS_INTERVAL`` seconds (default 30) and one at the end, e.g.::

    sampling (eq7):  41%|####1     | 410/1000 [05:02<07:15,  1.36it/s]
"""
from __future__ import annotations

import os
import re
import sys
from typing import Any, Iterable, Optional

from tqdm import tqdm as plain_tqdm

__all__ = ["progress_bar", "interactive_output", "log_interval_s"]


def log_interval_s() -> float:
    """Seconds between two progress lines in a log file (``$DPCDVAE_PROGRESS_INTERVAL``, default 30)."""
    try:
        return max(0.0, float(os.environ.get("DPCDVAE_PROGRESS_INTERVAL", "30")))
    except ValueError:
        return 30.0


def _in_jupyter_kernel() -> bool:
    if "ipykernel" not in sys.modules:
        return False
    try:
        from IPython import get_ipython  # local: optional (only present with Jupyter)

        ip = get_ipython()
    except Exception:  # pragma: no cover - IPython broken
        return False
    return ip is not None and hasattr(ip, "kernel")


def interactive_output(stream=None) -> bool:
    """True when ``stream`` (default stderr) is a terminal or the process is a live Jupyter kernel: a redrawn bar is
    readable there. False for files and pipes."""
    stream = sys.stderr if stream is None else stream
    if _in_jupyter_kernel():
        return True
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")  # cursor moves of nested bars


class _LineStream:
    """A file-like wrapper that turns tqdm's carriage-return redraws into whole lines (blank redraws dropped)."""

    def __init__(self, stream):
        self.stream = stream
        self._last = None

    def write(self, s: str) -> int:
        text = _ANSI.sub("", s.replace("\r", "")).strip()
        if text and text != self._last:  # close() repeats the final state
            self.stream.write(text + "\n")
            self._last = text
        return len(s)

    def flush(self) -> None:
        try:
            self.stream.flush()
        except (AttributeError, ValueError):
            pass


def progress_bar(iterable: Optional[Iterable] = None, **kwargs: Any):
    """tqdm with the same arguments; see the module docstring for how it draws. ``disable=True`` hides it."""
    stream = kwargs.pop("file", None) or sys.stderr
    if _in_jupyter_kernel():
        from tqdm.auto import tqdm  # local: picks the notebook bar at import; only wanted inside a kernel

        return tqdm(iterable, **kwargs)
    if kwargs.get("disable") or interactive_output(stream):
        return plain_tqdm(iterable, file=stream, **kwargs)
    kwargs.pop("dynamic_ncols", None)
    kwargs["mininterval"] = max(float(kwargs.get("mininterval", 0.1)), log_interval_s())
    kwargs.setdefault("maxinterval", max(kwargs["mininterval"], 10.0))
    kwargs["leave"] = True  # the final line is the useful one in a log
    kwargs.setdefault("ncols", 100)
    kwargs.setdefault("ascii", True)
    return plain_tqdm(iterable, file=_LineStream(stream), **kwargs)
