"""``dpcdvae notebooks`` (run every notebook headlessly and check its HTML) and ``dpcdvae reproduce`` (one table by
running its notebook; ``--paper``: every row of the paper, :mod:`dpcdvae.notebooks.paper`; ``--claims``: the claims
table, :mod:`dpcdvae.eval.claims`): parse, call :mod:`dpcdvae.notebooks.runner` / :mod:`dpcdvae.notebooks.paper` /
:func:`dpcdvae.eval.claims.claims_report`, print."""
from __future__ import annotations

import functools
import json

from ..utils.errors import ArgumentError
from .flags import flag_for

__all__ = ["add_parser"]


def _flag_errors(cmd):
    """A command whose argument errors from the runner (an :class:`~dpcdvae.utils.errors.ArgumentError` naming the
    Python argument, e.g. ``table``) end as these commands always have: the line with the flag (``--table must be one
    of ...``) and exit status 1."""
    @functools.wraps(cmd)
    def run(a) -> int:
        try:
            return cmd(a)
        except ArgumentError as exc:
            raise SystemExit(exc.render(flag_for)) from None
    return run


def add_parser(subparsers) -> None:
    """Register ``dpcdvae notebooks`` and ``dpcdvae reproduce``."""
    p = subparsers.add_parser("notebooks", help="execute the notebooks headlessly (papermill) and check their HTML")
    p.add_argument("--ci", action="store_true", help="use the small CI parameters (required for now)")
    p.add_argument("--out", default=None, help="folder for the executed .ipynb and .html files (required)")
    p.add_argument("--only", nargs="*", default=None, metavar="NAME",
                   help="only these notebooks (e.g. 03_table1_reconstruction, 03, table1_reconstruction)")
    p.add_argument("--work-dir", default=None, help="shared folder for trained models (default OUT/work)")
    p.add_argument("--notebooks", default=None, help="folder with the .ipynb files (default: the checkout's)")
    p.add_argument("--kernel", default=None, help="Jupyter kernel name (default: this Python)")
    p.add_argument("--timeout", type=int, default=600,
                   help="per-cell timeout in seconds (default 600; a notebook failing outside its cells is retried "
                        "once)")
    p.add_argument("--list", action="store_true",
                   help="print the notebooks and their CI parameters (each notebook's metadata) and exit")
    p.set_defaults(func=_cmd_notebooks)

    r = subparsers.add_parser("reproduce", help="reproduce Table I/S1/II/III by running its notebook (papermill); "
                                                "--paper: every row of the paper with the shipped models")
    r.add_argument("--table", default=None, help="I, S1, II or III (required unless --paper)")
    r.add_argument("--dataset", default=None, help="perov_5, carbon_24, mp_20 or demo (synthetic) (required unless "
                                                   "--paper)")
    r.add_argument("--checkpoint", default=None, help="trained checkpoint (default: train one with the "
                                                      "notebook's budget)")
    r.add_argument("--out", default=None, help="output folder (default runs/reproduce; with --paper docs/reports)")
    r.add_argument("--paper", action="store_true",
                   help="every row of Tables I, S1, II and III that the shipped models can run (`dpcdvae pretrained "
                        "list`, data present): prints the plan and a time estimate, runs each notebook (resumable), "
                        "writes OUT/paper_summary.md and .html")
    r.add_argument("--claims", action="store_true",
                   help="print the claims table (each claim of the paper's text, the paper's numbers, ours from the "
                        "--paper runs in OUT and the shipped models' cards, the difference +- SE, whether it holds); "
                        "runs nothing")
    r.add_argument("--format", default="markdown", choices=("markdown", "html", "json"),
                   help="with --claims: markdown (default), an html fragment, or json")
    r.add_argument("--ci", action="store_true", help="with --paper: the notebooks' small CI parameters (minutes)")
    r.add_argument("--dry-run", action="store_true", help="with --paper: print the plan and the estimate, run nothing")
    r.add_argument("--force", action="store_true", help="with --paper: rerun jobs already done with the same "
                                                        "parameters")
    r.add_argument("--only", nargs="+", default=None, metavar="TABLE[:DATASET[:MODEL]]",
                   help="with --paper: only these rows, e.g. I:perov_5 II:carbon_24:CDVAE III")
    r.add_argument("--threads", type=int, default=1,
                   help="with --paper: torch threads and worker processes per notebook (default 1)")
    r.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                   help="extra notebook parameter (YAML value), e.g. -p n_test 1000 -p samplers '[eq7]'")
    r.add_argument("--notebooks", default=None)
    r.add_argument("--kernel", default=None)
    r.set_defaults(func=_cmd_reproduce, _parser=r)


@_flag_errors
def _cmd_notebooks(a) -> int:
    from ..notebooks.runner import ci_parameters, notebook_names, notebooks_dir, run_ci

    if a.list:
        for n in notebook_names(notebooks_dir(a.notebooks)):
            print(n, json.dumps(ci_parameters(n, a.notebooks)))
        return 0
    if not a.out:
        raise SystemExit("dpcdvae notebooks: --out DIR is required")
    if not a.ci:
        raise SystemExit("dpcdvae notebooks: pass --ci (the CI parameters); to run one notebook with your own "
                         "parameters use papermill or `dpcdvae reproduce`")
    summary = run_ci(a.out, only=a.only, notebooks=a.notebooks, kernel=a.kernel, work_dir=a.work_dir,
                     timeout=a.timeout)
    return 0 if summary["ok"] else 1


@_flag_errors
def _cmd_reproduce(a) -> int:
    from ..notebooks.runner import _parse_value, reproduce

    params = {k: _parse_value(v) for k, v in a.parameter}
    if a.claims:
        others = [f for f, v in (("--paper", a.paper), ("--table", a.table), ("--dataset", a.dataset),
                                 ("--checkpoint", a.checkpoint), ("--ci", a.ci), ("--dry-run", a.dry_run),
                                 ("--force", a.force), ("--only", a.only), ("-p", a.parameter)) if v]
        if others:
            a._parser.error(f"--claims prints the claims table from what was measured: leave out {', '.join(others)}")
        from ..eval.claims import claims_report

        print(claims_report(a.out or "docs/reports", fmt=a.format), end="")
        return 0
    if a.format != "markdown":
        a._parser.error("--format: only with --claims")
    if a.paper:
        if a.table or a.dataset or a.checkpoint:
            a._parser.error("--paper runs every row with the shipped models: leave out --table, --dataset and "
                            "--checkpoint (restrict with --only)")
        if a.threads < 1:
            a._parser.error(f"--threads {a.threads}: must be >= 1")
        from ..notebooks.paper import reproduce_paper

        r = reproduce_paper(out=a.out or "docs/reports", ci=a.ci, only=a.only, threads=a.threads, parameters=params,
                            dry_run=a.dry_run, force=a.force, notebooks=a.notebooks, kernel=a.kernel)
        return 0 if r["ok"] else 1
    given = [f for f, v in (("--ci", a.ci), ("--dry-run", a.dry_run), ("--force", a.force), ("--only", a.only))
             if v]
    if given:
        a._parser.error(f"{', '.join(given)}: only with --paper")
    missing = [f for f, v in (("--table", a.table), ("--dataset", a.dataset)) if v is None]
    if missing:
        a._parser.error(f"the following arguments are required: {', '.join(missing)}")
    from ..data.registry import registered_name

    name = registered_name(a.dataset)
    r = reproduce(a.table, name, a.checkpoint, a.out or "runs/reproduce", params, notebooks=a.notebooks,
                  kernel=a.kernel)
    return 0 if r["ok"] else 1
