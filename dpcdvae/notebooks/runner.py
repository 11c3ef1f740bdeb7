"""Running the notebooks of ``notebooks/`` headlessly: papermill, HTML export (nbconvert), checks, two commands.

Commands (registered by :mod:`dpcdvae.cli.notebooks`)::

    dpcdvae notebooks --ci --out DIR [--only NAME]     execute every notebook with its CI parameters (papermill),
                                                        write DIR/<name>.ipynb and DIR/<name>.html, check the HTML
    dpcdvae reproduce --table I|II|III --dataset NAME [--checkpoint CKPT] [--out DIR] [-p KEY VALUE ...]
                                                        run the notebook of that table (03/04/05) with those
                                                        parameters and write the executed notebook + HTML

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
from .session import GUARD_MARK

__all__ = [
    "NOTEBOOKS", "CI_PARAMETERS", "TABLE_NOTEBOOK", "HTML_EXPECT", "notebooks_dir", "check_html", "prerender_math",
    "export_html", "run_notebook", "run_ci", "reproduce",
]

# ================================================================================================================
# the notebooks and their CI parameters
# ================================================================================================================
NOTEBOOKS: tuple[str, ...] = (
    "00_quickstart",
    "01_training",
    "02_reverse_trajectory",
    "03_table1_reconstruction",
    "04_table2_generation",
    "05_table3_ground_state",
    "06_teaching_diffusion",
    "07_latent_explorer",
)

#: which notebook reproduces which table of the paper (``dpcdvae reproduce --table``)
TABLE_NOTEBOOK: dict[str, str] = {
    "I": "03_table1_reconstruction",
    "S1": "03_table1_reconstruction",
    "II": "04_table2_generation",
    "III": "05_table3_ground_state",
}

#: the model every CI notebook shares (same values -> same cache key -> trained once per ``work_dir``)
_CI_TRAIN: dict[str, Any] = {"config": "tiny", "train_epochs": 25, "train_minutes": 3.0, "limit_train": 300,
                             "limit_val": 64, "batch_size": 32, "threads": 1}

#: small parameters for CI (papermill ``-p``): tiny config, a few samples, a few epochs; ``dataset="auto"`` means
#: Perov-5 from ../shared/data when the data locator finds it, else the self-generated SYNTHETIC perovskites.
#: ``work_dir`` is added by the runner (one folder shared by all notebooks of a run).
CI_PARAMETERS: dict[str, dict[str, Any]] = {
    "00_quickstart": {"dataset": "auto", **_CI_TRAIN, "n_generate": 4, "n_recon": 6, "sampler": "eq7",
                      "steps": None},
    "01_training": {"dataset": "auto", "config": "tiny", "train_epochs": 6, "train_minutes": 2.0,
                    "resume_epochs": 2, "limit_train": 200, "limit_val": 48, "batch_size": 32, "threads": 1},
    "02_reverse_trajectory": {"dataset": "auto", **_CI_TRAIN, "crystal_index": 0, "sampler": "eq7",
                              "trajectory_every": 2, "max_animation_frames": 25},
    "03_table1_reconstruction": {"dataset": "auto", **_CI_TRAIN, "n_test": 12, "samplers": ["eq7", "eq6"],
                                 "steps": None, "n_workers": 1},
    "04_table2_generation": {"dataset": "auto", **_CI_TRAIN, "n_generate": 12, "n_test": 24, "sampler": "eq7",
                             "steps": None, "n_property_samples": 12, "compute_eform": "auto", "n_workers": 1},
    "05_table3_ground_state": {"dataset": "carbon_24", "fallback_to_demo": True, **_CI_TRAIN,
                               "n_generate": 3, "sampler": "eq7", "steps": None, "pressure_gpa": 10.0,
                               "calculator": "chgnet", "fmax": 0.1, "max_steps": 12},
    "06_teaching_diffusion": {"dataset": "auto", **_CI_TRAIN, "T": 1000, "n_oracle_atoms": 400,
                              "steps_list": [1, 2, 5, 10, 20, 50], "eps_ts": [1, 10, 25, 50, 75, 100]},
    # the shipped model decodes without any data; the map then shows the SYNTHETIC demo crystals (labelled)
    "07_latent_explorer": {"dataset": "auto", "fallback_to_demo": True, "checkpoint": "pretrained:perov_5",
                           "n_encode": 48, "map_method": "pca", "index_a": 0, "index_b": None, "n_path": 5,
                           "sampler": "strided_eq7", "steps": 20, "seed": 0, "threads": 1},
}

#: strings the executed HTML of each notebook must contain (tables' headers, figures); checked in CI
HTML_EXPECT: dict[str, list[str]] = {
    "00_quickstart": ["data:image/png", "install check", "CIF"],
    "01_training": ["data:image/png", "val_loss", "resumed"],
    "02_reverse_trajectory": ["data:image/png", "Eq. 6", "Eq. 7", "animation"],
    "03_table1_reconstruction": ["data:image/png", "Match rate (%)", "<delta_rms>", "Table I /", "Table S1 /",
                                 "DP-CDVAE (paper)", "delta (ours - DP-CDVAE)"],
    "04_table2_generation": ["data:image/png", "Valid. struc. (%)", "COV-R (%)", "COV-P (%)", "W1 rho (g/cm^3)",
                             "Table II /", "delta (ours - DP-CDVAE)"],
    "05_table3_ground_state": ["data:image/png", "DFT (paper)", "dE_rms (meV/atom)", "dV_rms (A^3/atom)"],
    "06_teaching_diffusion": ["data:image/png", "sigmoid", "cosine", "linear"],
    "07_latent_explorer": ["data:image/png", "explained variance of the two axes", "active dims", "|mu_A - mu_B|",
                           "p(N_a)", "composition head", "invalid because", "points decode into valid crystals",
                           "first frame"],
}


# ================================================================================================================
# running notebooks: papermill + nbconvert + checks
# ================================================================================================================
def notebooks_dir(path: Optional[str] = None) -> Path:
    """The folder holding the ``.ipynb`` files (``path``, else ``<repo>/notebooks`` of this source checkout)."""
    d = Path(path) if path else Path(__file__).resolve().parents[2] / "notebooks"
    if not (d / f"{NOTEBOOKS[0]}.ipynb").is_file():
        raise SystemExit(f"no notebooks in {d}: the .ipynb files live in the source checkout's notebooks/ folder "
                         "(pass --notebooks DIR)")
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
    """The HTML checks: every string of :data:`HTML_EXPECT` present (raw or HTML-escaped), at least one PNG figure,
    no error outputs (from ``nb`` when given, else by the HTML's error markers). Returns ``{"ok", "missing",
    "errors", "images", "guarded"}``; ``guarded`` counts cells that printed "not available" (reported, not failed)."""
    expect = HTML_EXPECT.get(name, []) if expect is None else expect
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


def _print_result(r: dict) -> None:
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
    """Execute the notebooks (all, or ``only``) with :data:`CI_PARAMETERS` into ``out``; returns a summary dict
    (also written to ``out/summary.json``) with ``ok`` True only when every notebook ran and passed its checks.

    ``timeout`` is per cell (seconds; the CI cells take well under a minute). A notebook that fails outside its cells
    (cell timeout, dead kernel: seen here once as a kernel reply that never reached papermill after a widget cell)
    is run once more; the retry is recorded as ``retried_after`` in its summary entry. Cell errors are not retried."""
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    names = list(NOTEBOOKS)
    if only:
        unknown = [n for n in only if _match(n) is None]
        if unknown:
            raise SystemExit(f"unknown notebook(s) {unknown}; known: {', '.join(NOTEBOOKS)}")
        names = [_match(n) for n in only]
    work = str(Path(work_dir).resolve()) if work_dir else str(out / "work")
    t0 = time.time()
    results = []
    for name in names:
        params = {**CI_PARAMETERS[name], "work_dir": work}
        print(f"[dpcdvae notebooks] running {name} ...", flush=True)
        r = run_notebook(name, out, params, notebooks=notebooks, kernel=kernel, timeout=timeout)
        if _infrastructure_failure(r):
            first = r["error"]
            print(f"[dpcdvae notebooks] {name}: {first['ename']} outside the cells; running it once more", flush=True)
            r = run_notebook(name, out, params, notebooks=notebooks, kernel=kernel, timeout=timeout)
            r["retried_after"] = f"{first['ename']}: {first['evalue'][:300]}"
        _print_result(r)
        results.append(r)
    summary = {"ok": all(r["ok"] for r in results), "wall_s": round(time.time() - t0, 1), "out": str(out),
               "notebooks": [{k: v for k, v in r.items() if k != "parameters"} for r in results]}
    (out / "summary.json").write_text(strict_json_dumps(summary, indent=1))
    n_ok = sum(r["ok"] for r in results)
    print(f"[dpcdvae notebooks] {n_ok}/{len(results)} notebooks passed in {summary['wall_s']} s; "
          f"summary: {out / 'summary.json'}", flush=True)
    return summary


def _match(name: str) -> Optional[str]:
    name = Path(name).stem
    for n in NOTEBOOKS:
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
    extra ``parameters`` through papermill; writes ``<out>/<notebook>-<dataset>.ipynb`` and ``.html``."""
    t = str(table).strip().upper().removeprefix("TABLE").strip()
    if t not in TABLE_NOTEBOOK:
        raise SystemExit(f"--table must be one of {', '.join(TABLE_NOTEBOOK)}, got {table!r}")
    name = TABLE_NOTEBOOK[t]
    params = {"dataset": dataset, "checkpoint": checkpoint, "work_dir": str(Path(out).resolve() / "work"),
              **(parameters or {})}
    if t == "S1":
        params.setdefault("samplers", ["eq7", "eq6"])
    header = {"I": "Match rate (%)", "S1": "Match rate (%)", "II": "COV-R (%)", "III": "DFT (paper)"}[t]
    expect = ["data:image/png", header, f"Table {t} /"]
    r = run_notebook(name, out, params, notebooks=notebooks, kernel=kernel, timeout=timeout,
                     stem=f"{name}-{dataset}", expect=expect)
    _print_result(r)
    return r
