"""Moved: fitting the shipped property heads is the command ``dpcdvae pretrained fit-heads NAME ...``
(:func:`dpcdvae.workflows.optimize.fit_shipped_head`). This alias keeps the command recorded in the heads' cards
(``dpcdvae/weights/heads/*.json``) running: ``python benchmarks/fit_property_heads.py ARGS`` runs ``dpcdvae pretrained
fit-heads ARGS`` (a card it writes records the new command)."""
import sys

from dpcdvae.cli import main

if __name__ == "__main__":
    sys.exit(main(["pretrained", "fit-heads", *sys.argv[1:]]))
