"""The ``dpcdvae`` command line: thin wrappers around the package (each subcommand calls one function).

    dpcdvae demo [--out DIR]                    the main job: data -> train -> reconstruct -> generate, <= 10 min CPU
    dpcdvae data info|download|demo ...         datasets
    dpcdvae train --dataset perov_5 --config compact --out DIR [--max-minutes M] [--resume]
    dpcdvae sample --checkpoint CKPT --n N [--sampler eq7|eq6|strided_eq7|ddim --steps S] --out DIR [--resume]
    dpcdvae reconstruct --checkpoint CKPT --split test --out DIR
    dpcdvae csp --checkpoint CKPT --composition SrTiO3 [--num-atoms N] --n 20 --out DIR
    dpcdvae csp-match --checkpoint CKPT --dataset perov_5 --samples 20     the CSP benchmark (DiffCSP's protocol)
    dpcdvae evaluate --task recon|gen --samples PATH --dataset NAME --out DIR [--property-model best.pt]
    dpcdvae train-property --dataset NAME [--prop COLUMN] --out DIR    a fresh property regressor (W1(E_form))
    dpcdvae pretrained list|export|fit-heads ...  the shipped models: their cards, a new one, their property heads
    dpcdvae convert IN OUT                      weights-only copy of a checkpoint you trust (reading IN runs its code)

Importing this module applies the process tuning of an entry point: how idle OpenMP threads wait
(:func:`dpcdvae.utils.openmp.configure_openmp`, before torch is imported); :func:`main` also tunes glibc's allocator
(:func:`dpcdvae.utils.alloc.tune_allocator`).

Errors: a user mistake (package error class, ``--set`` value outside the config schema, a file the system refuses:
``OSError``, a missing optional package: ``ModuleNotFoundError``) prints one line ``dpcdvae: error: ...`` and exits
2; Ctrl-C (``KeyboardInterrupt``) prints one line and exits 130; ``dpcdvae --debug ...`` shows the traceback.
"""
from __future__ import annotations

import argparse
import sys

from ..utils.openmp import configure_openmp

configure_openmp()  # an entry point: before torch is first imported (the command groups below import it)

from ..data import DataError, DatasetNotFoundError  # noqa: E402
from ..utils.alloc import tune_allocator  # noqa: E402
from ..utils.errors import (ArgumentError, CheckpointError, ConfigError, PretrainedNotFoundError,  # noqa: E402
                            TrainingDiverged, UserError)
from . import convert, data, evaluate, models, notebooks, relax  # noqa: E402
from .flags import FLAGS, flag_for  # noqa: E402  (Python argument -> flag; re-exported here)

__all__ = ["main", "build_parser", "known_errors", "COMMAND_GROUPS", "error_line", "flag_for", "FLAGS", "EXIT_USER",
           "EXIT_INTERRUPTED"]

#: Every command group's ``add_parser(subparsers)``, in the order ``dpcdvae --help`` lists them.
COMMAND_GROUPS = (models.add_parser, data.add_parser, evaluate.add_parser, relax.add_parser,
                  evaluate.add_train_property_parser, notebooks.add_parser, convert.add_parser)

EXIT_USER = 2  #: a user mistake, a refused file, a missing optional package
EXIT_INTERRUPTED = 130  #: Ctrl-C (128 + SIGINT), as a shell reports it

#: top-level module -> the pip extra of dpcdvae that installs it (used when importlib.metadata cannot say)
OPTIONAL_MODULES = {"chgnet": "relax", "threadpoolctl": "relax", "playwright": "dev", "hypothesis": "dev"}


def known_errors() -> tuple:
    """Exceptions that are the user's to fix (data, files, arguments): ``dpcdvae`` prints them as one line and exits
    with status 2; ``dpcdvae --debug ...`` shows the traceback instead."""
    return (UserError, DataError, DatasetNotFoundError, PretrainedNotFoundError, CheckpointError, ConfigError)


# ------------------------------------------------------------------------------------------------------ main
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dpcdvae", description="DP-CDVAE crystal generation companion")
    from .._version import __version__

    p.add_argument("--version", action="version", version=f"dpcdvae {__version__}")
    p.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = p.add_subparsers(dest="command", required=True)
    for add_parser in COMMAND_GROUPS:
        add_parser(sub)
    return p


def _extra_for(module: str):
    """The pip extra of dpcdvae whose requirements install top-level module ``module`` (e.g. ``"chgnet"`` ->
    ``"relax"``; an extra other than ``dev`` is preferred), from the installed package metadata, else from
    :data:`OPTIONAL_MODULES`; ``None`` when no extra installs it."""
    import re

    found = []
    try:
        from importlib.metadata import requires

        for req in requires("dpcdvae") or []:
            m = re.match(r"\s*([A-Za-z0-9_.\-]+).*extra\s*==\s*['\"]([^'\"]+)['\"]", req)
            if m and m.group(1).lower().replace("-", "_").replace(".", "_") == module.lower():
                found.append(m.group(2))
    except Exception:  # pragma: no cover - not installed as a distribution
        pass
    found = sorted(found, key=lambda e: (e == "dev", e))
    return found[0] if found else OPTIONAL_MODULES.get(module)


def error_line(exc: BaseException) -> str:
    """The one line ``dpcdvae`` prints for an error that ends a command (without the ``dpcdvae: error:`` prefix):
    the message of a package error; for an ``OSError`` what failed and the path(s) it names (``exc.filename``,
    ``exc.filename2``); for a ``ModuleNotFoundError`` the missing package and the ``pip install`` that brings it
    (the dpcdvae extra, e.g. ``dpcdvae[relax]`` for CHGNet); an :class:`~dpcdvae.utils.errors.ArgumentError` with
    the flags of the arguments it names (:func:`flag_for`: ``--limit 0: must be >= 1``). Always a single line."""
    if isinstance(exc, ModuleNotFoundError):
        name = (exc.name or str(exc)).split(".")[0]
        extra = _extra_for(name)
        how = f"pip install 'dpcdvae[{extra}]'" if extra else f"pip install {name}"
        text = f"this needs the optional package {name!r}, which is not installed; install it with: {how}"
    elif isinstance(exc, OSError) and (exc.filename is not None or exc.strerror):
        what = exc.strerror or type(exc).__name__
        paths = [str(f) for f in (exc.filename, exc.filename2) if f is not None]
        text = f"{what}: {' -> '.join(paths)}" if paths else f"{what}"
        if isinstance(exc, PermissionError):
            text += " (check the permissions of that path, or write somewhere else)"
        elif getattr(exc, "errno", None) == 28:  # ENOSPC
            text += " (free some space, or write somewhere else; the files written before are complete)"
    elif isinstance(exc, ArgumentError):
        text = exc.render(flag_for)
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())  # one line whatever the message held


def main(argv=None) -> int:
    """Run one ``dpcdvae`` command. A user error (bad argument or ``--set`` value, missing, unreadable or refused
    file, bad data row, an ``OSError`` such as a full disk or a denied permission, a missing optional package)
    prints one line, ``dpcdvae: error: ...`` (:func:`error_line`), and returns 2; Ctrl-C prints one line and
    returns 130; a diverged training returns 1. With ``--debug`` the traceback is shown instead."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args._argv = list(argv) if argv is not None else sys.argv[1:]  # the command recorded in outputs
    debug = getattr(args, "debug", False)
    tune_allocator()  # an entry point: glibc keeps freed memory for the next step (CPU speed; outputs unchanged)
    try:
        rc = args.func(args)
    except KeyboardInterrupt:
        if debug:
            raise
        hint = getattr(args, "resume_hint", None)  # set by a command that can continue where it stopped
        print(f"dpcdvae: interrupted (Ctrl-C) during `{args.command}`; the files written so far are complete (an "
              f"unfinished samples.json says \"interrupted\": true)" + (f"; {hint}" if hint else ""),
              file=sys.stderr)
        return EXIT_INTERRUPTED
    except known_errors() as exc:
        if debug:
            raise
        print(f"dpcdvae: error: {error_line(exc)}", file=sys.stderr)
        return EXIT_USER
    except TrainingDiverged as exc:  # not the user's mistake, but a traceback says nothing more
        if debug:
            raise
        print(f"dpcdvae: error: {error_line(exc)}", file=sys.stderr)
        return 1
    except (OSError, ModuleNotFoundError) as exc:  # full disk, denied permission, missing optional package
        if debug:
            raise
        print(f"dpcdvae: error: {error_line(exc)}", file=sys.stderr)
        return EXIT_USER
    return int(rc or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
