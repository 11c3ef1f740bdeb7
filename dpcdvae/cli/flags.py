"""The command-line flag of a library function's Python argument (no imports: every command module may use it).

An :class:`~dpcdvae.utils.errors.ArgumentError` names the Python argument (``batch_size=0: must be >= 1``); the
command line prints it with the flag (``--batch-size 0: must be >= 1``): :func:`dpcdvae.cli.error_line`, or
``exc.render(flag_for)`` in a command that prints its own line."""
from __future__ import annotations

__all__ = ["FLAGS", "flag_for"]

#: Python argument of a workflow -> its command-line flag, where the flag is not ``--`` + the name with ``-`` for ``_``
#: (an :class:`~dpcdvae.utils.errors.ArgumentError` names the Python argument; the command line prints the flag)
FLAGS = {"ema": "--raw-weights", "run_dir": "--out", "overrides": "--set", "fmt": "--format"}


def flag_for(arg: str) -> str:
    """The command-line flag of a workflow's Python argument: :data:`FLAGS`, else ``--`` + the name with ``-`` for
    ``_`` (``"batch_size"`` -> ``"--batch-size"``)."""
    return FLAGS.get(arg, "--" + arg.replace("_", "-"))
