"""Running the notebooks of ``notebooks/`` headlessly: papermill, HTML export (nbconvert), checks, two commands.

Commands (registered by :mod:`dpcdvae.cli.notebooks`)::

    dpcdvae notebooks --ci --out DIR [--only NAME]     execute every notebook with its CI parameters (papermill),
                                                        write DIR/<name>.ipynb and DIR/<name>.html, check the HTML
    dpcdvae reproduce --table I|II|III --dataset NAME [--checkpoint CKPT] [--out DIR] [-p KEY VALUE ...]
                                                        run the notebook of that table (03/04/05) with those
                                                        parameters and write the executed notebook + HTML
    dpcdvae reproduce --paper [--ci] [--dry-run] [--only T:D[:M] ...] [--force] [--out DIR]
                                                        every row of the paper the shipped models can run, each
                                                        through run_notebook: :mod:`dpcdvae.notebooks.paper`

Both use papermill, nbconvert and ipykernel (part of the main install) and a source checkout (the ``.ipynb`` files
are not part of the wheel); ``--notebooks DIR`` points elsewhere. The helpers the notebooks themselves call are in
:mod:`dpcdvae.notebooks`.

This module imports nothing heavy at import time (``dpcdvae`` builds its command line from it).
"""
from __future__ import annotations

import html as _html
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

from ..utils.fileio import strict_json_dumps
from ..utils.errors import ArgumentError, mention
from .check import META_KEY
from .session import GUARD_MARK

__all__ = [
    "NOTEBOOKS", "CI_PARAMETERS", "TABLE_NOTEBOOK", "HTML_EXPECT", "META_KEY", "notebook_names", "notebook_meta",
    "ci_parameters", "html_expect", "table_notebooks", "notebooks_folder", "notebooks_dir", "check_html",
    "prerender_math", "export_html", "run_notebook", "print_result", "run_ci", "reproduce",
]

# ================================================================================================================
# the notebooks and their facts: each notebook's own metadata (one place)
# ================================================================================================================
# What the runner and the checks need to know about a notebook is in the notebook's own metadata (key META_KEY):
#
#     nb.metadata["dpcdvae"] = {
#         "ci_parameters": {...},  # small parameters for CI (papermill ``-p``): tiny config, a few samples, a few
#                                  # epochs; ``dataset="auto"`` means Perov-5 from ../shared/data when the data
#                                  # locator finds it, else the SYNTHETIC perovskites; ``work_dir`` is added by the
#                                  # runner (one folder shared by all notebooks of a run). The notebooks that train
#                                  # share one model: the same training values -> same cache key -> trained once
#                                  # per work_dir (07 decodes the shipped model, without data).
#         "html_expect": [...],    # strings the executed HTML must contain (tables' headers, figures)
#         "tables": {"I": {"header": "...", "parameters": {...}}},  # optional: the paper's tables it reproduces
#                                  # (``dpcdvae reproduce --table``), the header its HTML must show and parameters
#                                  # that table needs (defaults under the user's ``-p``)
#         "lesson_cells": true,    # optional: its cells tagged ``lesson`` may be longer (dpcdvae.notebooks.check)
#     }
#
# A new notebook is its ``.ipynb`` file (with this metadata, written with nbformat) and a row in notebooks/README.md;
# ``python -m dpcdvae.notebooks.check`` checks the metadata. (``META_KEY`` is defined in :mod:`.check`.)


def notebooks_folder(path: Optional[str] = None) -> Path:
    """The folder of the ``.ipynb`` files: ``path``, else the checkout's ``notebooks/`` (not checked: see
    :func:`notebooks_dir`)."""
    return Path(path) if path else Path(__file__).resolve().parents[2] / "notebooks"


def notebook_names(notebooks: Optional[str] = None) -> list[str]:
    """The notebooks of the folder (``notebooks``, else the checkout's ``notebooks/``): the ``.ipynb`` stems, sorted
    (their run order)."""
    return sorted(p.stem for p in notebooks_folder(notebooks).glob("*.ipynb"))


def notebook_meta(name: str, notebooks: Optional[str] = None) -> dict:
    """``nb.metadata["dpcdvae"]`` of ``<folder>/<name>.ipynb`` (read as JSON: nothing heavy imported). Raises
    ``SystemExit`` with one line when the file or its metadata is missing."""
    path = notebooks_folder(notebooks) / f"{name}.ipynb"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SystemExit(f"{path}: cannot read the notebook ({exc})") from None
    meta = raw.get("metadata", {}).get(META_KEY) if isinstance(raw, dict) else None
    if not isinstance(meta, dict) or not isinstance(meta.get("ci_parameters"), dict):
        raise SystemExit(f"{path}: no metadata[{META_KEY!r}]['ci_parameters'] (see dpcdvae.notebooks.runner.META_KEY)")
    return meta


def ci_parameters(name: str, notebooks: Optional[str] = None) -> dict[str, Any]:
    """The CI parameters of notebook ``name`` (its metadata's ``ci_parameters``; ``work_dir`` not included)."""
    return dict(notebook_meta(name, notebooks)["ci_parameters"])


def html_expect(name: str, notebooks: Optional[str] = None) -> list[str]:
    """The strings the executed HTML of notebook ``name`` must contain (its metadata's ``html_expect``; none for a
    notebook that is not in the folder or has no such metadata)."""
    try:
        return list(notebook_meta(name, notebooks).get("html_expect", []))
    except SystemExit:
        return []


def table_notebooks(notebooks: Optional[str] = None) -> dict[str, tuple[str, dict]]:
    """Which notebook reproduces which table of the paper (``dpcdvae reproduce --table``): ``{table: (notebook,
    {"header": ..., "parameters": {...}})}`` from the notebooks' metadata, in notebook order."""
    out: dict[str, tuple[str, dict]] = {}
    for name in notebook_names(notebooks):
        for table, facts in notebook_meta(name, notebooks).get("tables", {}).items():
            out[table] = (name, dict(facts))
    return out


def __getattr__(attr: str):
    """Read-only views over the checkout's notebooks, computed from their metadata when asked for (the module still
    imports nothing and reads no file at import time): ``NOTEBOOKS`` (names, sorted), ``CI_PARAMETERS`` and
    ``HTML_EXPECT`` (name -> value), ``TABLE_NOTEBOOK`` (table -> notebook name)."""
    if attr == "NOTEBOOKS":
        return tuple(notebook_names())
    if attr == "CI_PARAMETERS":
        return {n: ci_parameters(n) for n in notebook_names()}
    if attr == "HTML_EXPECT":
        return {n: html_expect(n) for n in notebook_names()}
    if attr == "TABLE_NOTEBOOK":
        return {t: n for t, (n, _) in table_notebooks().items()}
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")


# ================================================================================================================
# running notebooks: papermill + nbconvert + checks
# ================================================================================================================
def notebooks_dir(path: Optional[str] = None) -> Path:
    """The folder holding the ``.ipynb`` files (``path``, else ``<repo>/notebooks`` of this source checkout); an
    :class:`~dpcdvae.utils.errors.ArgumentError` of ``notebooks`` when it holds none."""
    d = notebooks_folder(path)
    if not notebook_names(path):
        raise ArgumentError("notebooks", f"no notebooks in {d}: the .ipynb files live in the source checkout's "
                                         f"notebooks/ folder (pass {mention('notebooks')} DIR)", lead=False)
    return d


def _kernel_spec(root: Path) -> str:
    """Write a kernel spec that runs THIS Python (whatever environment the command runs in) with the inline
    matplotlib backend, under ``root/kernels/``; returns its name. ``JUPYTER_PATH`` is pointed there."""
    name = "dpcdvae-python"
    d = root / "kernels" / name
    d.mkdir(parents=True, exist_ok=True)
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}",
                     "--IPKernelApp.log_level=ERROR"],
            "display_name": "Python 3 (dpcdvae)", "language": "python",
            "env": {"MPLBACKEND": "module://matplotlib_inline.backend_inline", "DPCDVAE_HEADLESS": "1",
                    "PYTHONWARNINGS": "ignore"}}
    (d / "kernel.json").write_text(json.dumps(spec, indent=1))
    paths = [x for x in os.environ.get("JUPYTER_PATH", "").split(os.pathsep) if x]
    if str(root) not in paths:
        os.environ["JUPYTER_PATH"] = os.pathsep.join([str(root), *paths])
    return name


def _error_outputs(nb) -> list[dict]:
    out = []
    for i, cell in enumerate(nb.cells):
        for o in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if o.get("output_type") == "error":
                out.append({"cell": i, "ename": o.get("ename"), "evalue": o.get("evalue"),
                            "source": cell.source[:400]})
    return out


def check_html(html_text: str, name: str, nb=None, expect: Optional[Sequence[str]] = None) -> dict:
    """The HTML checks: every string of ``expect`` (default: the notebook's metadata's ``html_expect``, see
    :func:`html_expect`) present (raw or HTML-escaped), at least one PNG figure,
    no error outputs (from ``nb`` when given, else by the HTML's error markers). Returns ``{"ok", "missing",
    "errors", "images", "guarded"}``; ``guarded`` counts cells that printed "not available" (reported, not failed)."""
    expect = html_expect(name) if expect is None else expect
    missing = [s for s in expect if s not in html_text and _html.escape(s) not in html_text]
    images = html_text.count('src="data:image/png')  # figures rendered as <img> (animation frames not counted)
    errors = _error_outputs(nb) if nb is not None else []
    if nb is None and ("jp-RenderedText\" data-mime-type=\"application/vnd.jupyter.stderr" in html_text
                       and "Traceback" in html_text):
        errors.append({"cell": None, "ename": "Traceback in HTML"})
    if nb is not None:  # count only what cells printed (their sources mention the mark too)
        guarded = sum(o.get("text", "").count(GUARD_MARK) for c in nb.cells if c.cell_type == "code"
                      for o in c.get("outputs", []) if o.get("output_type") == "stream")
    else:
        guarded = html_text.count(GUARD_MARK)
    return {"ok": not missing and images > 0 and not errors, "missing": missing, "errors": errors,
            "images": images, "guarded": guarded}


_MATH = None


def prerender_math(nb) -> tuple[int, list[str]]:
    """Replace the ``$...$`` / ``$$...$$`` LaTeX of every markdown cell of ``nb`` (in place) by MathML
    (``latex2mathml``), which browsers draw natively: the exported HTML then shows its formulas offline, where the
    MathJax of nbconvert's template (loaded from a CDN) never arrives. Returns ``(n converted, expressions left as
    they were because they did not convert)``."""
    global _MATH
    import re

    from latex2mathml.converter import convert

    if _MATH is None:
        _MATH = re.compile(r"(?<!\\)\$\$(.+?)(?<!\\)\$\$|(?<![\\$])\$(?!\$)(.+?)(?<![\\$])\$", re.S)
    n, failed = 0, []

    def sub(m, text_only=False):
        nonlocal n
        block = m.group(1) is not None
        expr = m.group(1) if block else m.group(2)
        try:
            out = convert(expr.strip(), display="block" if block else "inline")
        except Exception:  # leave it as LaTeX (a live MathJax still renders it)
            failed.append(expr)
            return m.group(0)
        n += 1
        if text_only:  # headings: nbconvert's anchor links drop markup, so write the formula as plain Unicode
            return _html.unescape(re.sub(r"<[^>]+>", "", out))
        return out

    for cell in nb.cells:
        if cell.cell_type == "markdown" and "$" in cell.source:
            lines = cell.source.split("\n")
            heads = [i for i, ln in enumerate(lines) if ln.lstrip().startswith("#")]
            for i in heads:
                lines[i] = _MATH.sub(lambda m: sub(m, text_only=True), lines[i])
            cell.source = _MATH.sub(sub, "\n".join(lines))
    return n, failed


def export_html(nb) -> str:
    """The executed notebook as one HTML page (nbconvert), its formulas pre-rendered as MathML
    (:func:`prerender_math`) so that the page reads the same offline."""
    import copy

    from nbconvert import HTMLExporter

    nb = copy.deepcopy(nb)
    prerender_math(nb)
    body, _ = HTMLExporter().from_notebook_node(nb)
    return body


def run_notebook(name: str, out_dir, parameters: dict, notebooks: Optional[str] = None, kernel: Optional[str] = None,
                 timeout: int = 1800, stem: Optional[str] = None, expect: Optional[Sequence[str]] = None) -> dict:
    """Execute ``notebooks/<name>.ipynb`` with papermill and ``parameters`` into ``out_dir/<stem>.ipynb``, export
    ``out_dir/<stem>.html`` (nbconvert) and check it. Never raises on a notebook failure: the result says which
    cell failed (``error``: index, exception, source)."""
    import nbformat
    import papermill as pm

    src = notebooks_dir(notebooks) / f"{name}.ipynb"
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = stem or name
    out_nb, out_html = out_dir / f"{stem}.ipynb", out_dir / f"{stem}.html"
    kernel = kernel or _kernel_spec(out_dir / ".jupyter")
    expect = html_expect(name, notebooks) if expect is None else expect
    saved_backend = os.environ.pop("MPLBACKEND", None)  # the kernel must use the inline backend
    t0 = time.time()
    result: dict = {"name": name, "ipynb": str(out_nb), "html": str(out_html), "parameters": parameters}
    try:
        pm.execute_notebook(str(src), str(out_nb), parameters=parameters, kernel_name=kernel, cwd=str(out_dir),
                            progress_bar=False, log_output=False, execution_timeout=timeout)
        result["executed"] = True
    except pm.PapermillExecutionError as exc:
        result["executed"] = False
        result["error"] = {"cell": exc.cell_index, "exec_count": exc.exec_count, "ename": exc.ename,
                           "evalue": str(exc.evalue)[:2000], "source": exc.source}
    except Exception as exc:  # kernel died, timeout, bad parameters ...
        result["executed"] = False
        result["error"] = {"cell": None, "ename": type(exc).__name__, "evalue": str(exc)[:2000], "source": ""}
    finally:
        if saved_backend is not None:
            os.environ["MPLBACKEND"] = saved_backend
    result["wall_s"] = round(time.time() - t0, 1)
    if out_nb.is_file():
        nb = nbformat.read(out_nb, as_version=4)
        body = export_html(nb)
        out_html.write_text(body)
        result["checks"] = check_html(body, name, nb, expect)
    else:
        result["checks"] = {"ok": False, "missing": ["(no executed notebook)"], "errors": [], "images": 0,
                            "guarded": 0}
    result["ok"] = bool(result["executed"] and result["checks"]["ok"])
    return result


def print_result(r: dict) -> None:
    """Print what :func:`run_notebook` returned: one status line (ok / FAILED, wall time, figures, the HTML), then
    the failing cell, what the HTML lacks and the error outputs, if any."""
    c = r["checks"]
    status = "ok" if r["ok"] else "FAILED"
    print(f"[{status}] {r['name']}: {r['wall_s']} s, {c['images']} figures"
          + (f", {c['guarded']} guarded outputs ('{GUARD_MARK}')" if c.get("guarded") else "")
          + f" -> {r['html']}", flush=True)
    if r.get("error"):
        e = r["error"]
        print(f"    failing cell #{e['cell']} ({e['ename']}): {e['evalue'].strip().splitlines()[-1] if e['evalue'].strip() else ''}")
        for line in (e.get("source") or "").splitlines()[:25]:
            print(f"    | {line}")
    if c.get("missing"):
        print(f"    HTML lacks: {c['missing']}")
    for e in c.get("errors", []):
        print(f"    error output in cell {e.get('cell')}: {e.get('ename')}: {e.get('evalue')}")


def _infrastructure_failure(r: dict) -> bool:
    """True when a notebook failed outside its cells (cell timeout, dead kernel, a kernel message that never
    arrived), not because a cell raised: such a run is worth one retry; a cell error never is."""
    e = r.get("error")
    return bool(not r["ok"] and e and e.get("cell") is None
                and any(k in e.get("ename", "") for k in ("Timeout", "DeadKernel", "Kernel", "RuntimeError")))


def run_ci(out, only: Optional[Sequence[str]] = None, notebooks: Optional[str] = None, kernel: Optional[str] = None,
           work_dir: Optional[str] = None, timeout: int = 600) -> dict:
    """Execute the notebooks (all, or ``only``) with their CI parameters (each notebook's metadata, see
    :func:`ci_parameters`) into ``out``; returns a summary dict
    (also written to ``out/summary.json``) with ``ok`` True only when every notebook ran and passed its checks.

    ``timeout`` is per cell (seconds; the CI cells take well under a minute). A notebook that fails outside its cells
    (cell timeout, dead kernel: seen here once as a kernel reply that never reached papermill after a widget cell)
    is run once more; the retry is recorded as ``retried_after`` in its summary entry. Cell errors are not retried."""
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    known = notebook_names(notebooks_dir(notebooks))  # (a folder without notebooks: one line, exit)
    names = list(known)
    if only:
        unknown = [n for n in only if _match(n, known) is None]
        if unknown:
            raise SystemExit(f"unknown notebook(s) {unknown}; known: {', '.join(known)}")
        names = [_match(n, known) for n in only]
    work = str(Path(work_dir).resolve()) if work_dir else str(out / "work")
    t0 = time.time()
    results = []
    for name in names:
        params = {**ci_parameters(name, notebooks), "work_dir": work}
        print(f"[dpcdvae notebooks] running {name} ...", flush=True)
        r = run_notebook(name, out, params, notebooks=notebooks, kernel=kernel, timeout=timeout)
        if _infrastructure_failure(r):
            first = r["error"]
            print(f"[dpcdvae notebooks] {name}: {first['ename']} outside the cells; running it once more", flush=True)
            r = run_notebook(name, out, params, notebooks=notebooks, kernel=kernel, timeout=timeout)
            r["retried_after"] = f"{first['ename']}: {first['evalue'][:300]}"
        print_result(r)
        results.append(r)
    summary = {"ok": all(r["ok"] for r in results), "wall_s": round(time.time() - t0, 1), "out": str(out),
               "notebooks": [{k: v for k, v in r.items() if k != "parameters"} for r in results]}
    (out / "summary.json").write_text(strict_json_dumps(summary, indent=1))
    n_ok = sum(r["ok"] for r in results)
    print(f"[dpcdvae notebooks] {n_ok}/{len(results)} notebooks passed in {summary['wall_s']} s; "
          f"summary: {out / 'summary.json'}", flush=True)
    return summary


def _match(name: str, known: Optional[Sequence[str]] = None) -> Optional[str]:
    name = Path(name).stem
    for n in (notebook_names() if known is None else known):
        if name == n or n.startswith(name) or n.split("_", 1)[1] == name or n.split("_", 1)[0] == name:
            return n
    return None


def _parse_value(v: str):
    import yaml

    return yaml.safe_load(v)


def reproduce(table: str, dataset: str, checkpoint: Optional[str] = None, out: str = "runs/reproduce",
              parameters: Optional[dict] = None, notebooks: Optional[str] = None, kernel: Optional[str] = None,
              timeout: int = 24 * 3600) -> dict:
    """Run the notebook of Table ``table`` (I/S1 -> 03, II -> 04, III -> 05) with ``dataset``, ``checkpoint`` and
    extra ``parameters`` through papermill; writes ``<out>/<notebook>-<dataset>.ipynb`` and ``.html``. A table no
    notebook reproduces is an :class:`~dpcdvae.utils.errors.ArgumentError` of ``table``."""
    t = str(table).strip().upper().removeprefix("TABLE").strip()
    tables = table_notebooks(notebooks)
    if t not in tables:
        raise ArgumentError("table", f" must be one of {', '.join(tables)}, got {table!r}")
    name, facts = tables[t]
    params = {"dataset": dataset, "checkpoint": checkpoint, "work_dir": str(Path(out).resolve() / "work"),
              **(parameters or {})}
    for k, v in facts.get("parameters", {}).items():  # what this table needs (e.g. S1: samplers), unless given
        params.setdefault(k, v)
    expect = ["data:image/png", facts["header"], f"Table {t} /"]
    r = run_notebook(name, out, params, notebooks=notebooks, kernel=kernel, timeout=timeout,
                     stem=f"{name}-{dataset}", expect=expect)
    print_result(r)
    return r
