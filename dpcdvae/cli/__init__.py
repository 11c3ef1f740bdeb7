"""The ``dpcdvae`` command line: thin wrappers around the package (each subcommand calls one function).

    dpcdvae demo [--out DIR]                    the main job: data -> train -> reconstruct -> generate, <= 10 min CPU
    dpcdvae data info|download|demo ...         datasets
    dpcdvae train --dataset perov_5 --config compact --out DIR [--max-minutes M] [--resume]
    dpcdvae sample --checkpoint CKPT --n N [--sampler eq7|eq6|strided_eq7|strided --steps S] --out DIR
    dpcdvae reconstruct --checkpoint CKPT --split test --out DIR
    dpcdvae csp --checkpoint CKPT --composition SrTiO3 [--num-atoms N] --n 20 --out DIR
    dpcdvae evaluate --task recon|gen --samples PATH --dataset NAME --out DIR [--property-model best.pt]
    dpcdvae train-property --dataset NAME [--prop COLUMN] --out DIR    a fresh property regressor (W1(E_form))
"""
from __future__ import annotations

import argparse
import sys

from ..data import DataError, DatasetNotFoundError
from ..errors import CheckpointError, ConfigError, PretrainedNotFoundError, TrainingDiverged, UserError
from . import data, evaluate, models, notebooks, relax

__all__ = ["main", "build_parser", "known_errors", "COMMAND_GROUPS"]

#: Every command group's ``add_parser(subparsers)``, in the order ``dpcdvae --help`` lists them.
COMMAND_GROUPS = (models.add_parser, data.add_parser, evaluate.add_parser, relax.add_parser,
                  evaluate.add_train_property_parser, notebooks.add_parser)


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


def main(argv=None) -> int:
    """Run one ``dpcdvae`` command. A user error (bad argument, missing or unreadable file, bad data row) prints
    one line, ``dpcdvae: error: ...``, and returns 2; with ``--debug`` the traceback is shown instead."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args._argv = list(argv) if argv is not None else sys.argv[1:]  # the command recorded in outputs
    try:
        rc = args.func(args)
    except known_errors() as exc:
        if getattr(args, "debug", False):
            raise
        print(f"dpcdvae: error: {exc}", file=sys.stderr)
        return 2
    except TrainingDiverged as exc:  # not the user's mistake, but a traceback says nothing more
        if getattr(args, "debug", False):
            raise
        print(f"dpcdvae: error: {exc}", file=sys.stderr)
        return 1
    return int(rc or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
