"""``dpcdvae relax``: relax structures under pressure (CHGNet by default) and report the Table III metrics.

Examples::

    dpcdvae relax runs/x/gen_cifs --pressure 10 --out runs/x/relaxed            # CHGNet, batched, FIRE
    dpcdvae relax gen.extxyz --pressure 10 --optimizer BFGS --fmax 0.02 --out relaxed
    dpcdvae relax gen_cifs --calculator mypkg.calcs:make_vasp --no-batch --out relaxed_vasp

Writes ``<out>/<id>.json`` + ``<out>/<id>.cif`` per structure as each finishes (a re-run with the same ``--out``
resumes: finished ids are not relaxed again) and ``<out>/summary.json`` (settings, metrics, one row per structure),
prints a summary table and the metrics (match rate, <delta_rms>, dV_rms, dE_rms with the enthalpy per atom; the
relaxed structure is the reference). ``--plot`` also writes the Fig. S2 histogram ``<out>/delta_e_hist.png``.
Caveat: CHGNet is not DFT (different energy reference, MAE ~49 meV/atom on Carbon-24): compare models under the
same potential only.

Needs the ``relax`` extra for CHGNet: ``pip install -e ".[relax]"`` from the repository root (the README's first
command installs it); without it the command prints one line naming the extra and exits 2.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path



def _add_study_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "ground-state", help="Table III study: generate with each checkpoint, relax (CHGNet; needs the relax extra), "
                             "tabulate vs DFT (paper)")
    p.add_argument("--checkpoints", nargs="+", required=True, help="e.g. DP-CDVAE, CDVAE, CDVAE+Fourier checkpoints")
    p.add_argument("--n", type=int, default=100, help="generated crystals per model (paper: 100)")
    p.add_argument("--dataset", default="carbon_24", help="for the record (the models carry their own settings)")
    p.add_argument("--pressure", type=float, default=10.0, metavar="GPA")
    p.add_argument("--sampler", default=None, help="default: eq7 for DP-CDVAE, langevin for the CDVAE baselines")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fmax", type=float, default=0.05)
    p.add_argument("--max-steps", type=int, default=500)
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=_cmd_study)


def _cmd_study(a) -> int:
    from ..workflows.relax import run_ground_state_study

    s = run_ground_state_study(a.checkpoints, a.out, n=a.n, pressure_gpa=a.pressure, seed=a.seed, sampler=a.sampler,
                               steps=a.steps, fmax=a.fmax, max_steps=a.max_steps, device=a.device,
                               command=" ".join(shlex.quote(x) for x in sys.argv))
    print(s.table)
    print(f"wall time {s.wall_s} s; details: {Path(a.out) / 'study.json'}")
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``relax`` subcommand on an ``argparse`` subparsers object; sets ``func``."""
    p = subparsers.add_parser(
        "relax", help="relax structures under pressure (CHGNet default; needs the relax extra) + Table III "
                 "ground-state metrics",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("path", help="a CIF file, a folder of CIFs or an extxyz file")
    p.add_argument("--pressure", type=float, default=0.0, metavar="GPA",
                   help="external pressure in GPa (the paper relaxes Carbon-24 at 10)")
    p.add_argument("--calculator", default="chgnet",
                   help="chgnet (default), emt (toy, tests only) or package.module:attribute (an ASE calculator, "
                        "a zero-argument factory of one, or a batch predictor)")
    p.add_argument("--fmax", type=float, default=0.05, help="force criterion in eV/A (default 0.05)")
    p.add_argument("--max-steps", type=int, default=500)
    p.add_argument("--optimizer", default="FIRE", choices=["FIRE", "BFGS", "LBFGS"])
    p.add_argument("--out", required=True, help="output folder (re-use it to resume an interrupted run)")
    p.add_argument("--no-batch", action="store_true", help="relax one structure at a time (stock ASE path)")
    p.add_argument("--batch-size", type=int, default=32, help="structures relaxed in lock step (default 32)")
    p.add_argument("--device", default="cpu", help="torch device for CHGNet (cpu, cuda)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--workers", type=int, default=1,
                   help="relax in N processes at once, threads/N torch threads each (CPU; default 1)")
    p.add_argument("--no-resume", action="store_true", help="recompute ids already finished in --out")
    p.add_argument("--retry-failed", action="store_true", help="recompute ids whose stored result failed")
    p.add_argument("--energy", choices=["enthalpy", "energy"], default="enthalpy",
                   help="dE measure: enthalpy per atom H = E + pV (default, what the relaxation minimises) or E")
    p.add_argument("--plot", action="store_true", help="write the Fig. S2 histogram <out>/delta_e_hist.png")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_relax)
    _add_study_parser(subparsers)
    return p


def _cmd_relax(a) -> int:
    from ..workflows.relax import _fmt, relax_headline, run_relax, summary_table

    if a.threads:
        import torch

        torch.set_num_threads(int(a.threads))
    from ..eval.ground_state import CAVEAT

    try:
        s = run_relax(a.path, a.out, pressure_gpa=a.pressure, calculator=a.calculator, fmax=a.fmax,
                      max_steps=a.max_steps, optimizer=a.optimizer, batch=not a.no_batch, batch_size=a.batch_size,
                      device=a.device, resume=not a.no_resume, retry_failed=a.retry_failed, energy=a.energy,
                      plot=a.plot, progress=not a.no_progress, workers=a.workers,
                      command=" ".join(shlex.quote(x) for x in sys.argv))
    except (FileNotFoundError, ValueError) as exc:
        print(f"dpcdvae relax: error: {exc}", file=sys.stderr)
        return 2
    print(summary_table(s.results, a.energy))
    m = s.metrics
    print()
    print(relax_headline(s.results, a.energy))  # the headline: what relaxing changed, before any match rate
    print(f"{m['n']} structures at {a.pressure:g} GPa: {m['n_relaxed']} relaxed ({m['n_converged']} converged), "
          f"{m['n_failed']} failed, {s.n_resumed} resumed from {a.out} (* in the table)")
    print(f"match rate (relaxed vs generated) {_fmt(m['match_rate'], 1)} %   <delta_rms> {_fmt(m['delta_rms'])}   "
          f"dV_rms {_fmt(m['dV_rms'])} A^3/atom   dE_rms ({m['energy_measure']}) {_fmt(m['dE_rms'], 1)} meV/atom")
    if "chgnet" in str(a.calculator).lower():
        print(CAVEAT)
    print(f"summary: {Path(a.out) / 'summary.json'}")
    return 0
