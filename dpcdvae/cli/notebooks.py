"""``dpcdvae notebooks`` (run every notebook headlessly and check its HTML) and ``dpcdvae reproduce`` (one table by
running its notebook): parse, call :mod:`dpcdvae.notebooks.runner`, print."""
from __future__ import annotations

import json

__all__ = ["add_parser"]


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

    r = subparsers.add_parser("reproduce", help="reproduce Table I/S1/II/III by running its notebook (papermill)")
    r.add_argument("--table", required=True, help="I, S1, II or III")
    r.add_argument("--dataset", required=True, help="perov_5, carbon_24, mp_20 or demo (synthetic)")
    r.add_argument("--checkpoint", default=None, help="trained checkpoint (default: train one with the "
                                                      "notebook's budget)")
    r.add_argument("--out", default="runs/reproduce")
    r.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                   help="extra notebook parameter (YAML value), e.g. -p n_test 1000 -p samplers '[eq7]'")
    r.add_argument("--notebooks", default=None)
    r.add_argument("--kernel", default=None)
    r.set_defaults(func=_cmd_reproduce)


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


def _cmd_reproduce(a) -> int:
    from ..notebooks.runner import _parse_value, reproduce

    params = {k: _parse_value(v) for k, v in a.parameter}
    from ..data.registry import registered_name

    name = registered_name(a.dataset)
    r = reproduce(a.table, name, a.checkpoint, a.out, params, notebooks=a.notebooks, kernel=a.kernel)
    return 0 if r["ok"] else 1
