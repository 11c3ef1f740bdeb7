"""Moved: the CSP benchmark is the command ``dpcdvae csp-match`` (:func:`dpcdvae.workflows.csp.csp_match`). This
alias keeps the commands recorded with earlier results running: ``python benchmarks/csp_match.py ARGS`` runs
``dpcdvae csp-match ARGS`` (the same flags, the same output)."""
import sys

from dpcdvae.cli import main

if __name__ == "__main__":
    sys.exit(main(["csp-match", *sys.argv[1:]]))
