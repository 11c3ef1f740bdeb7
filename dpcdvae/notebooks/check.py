"""Checks on the notebook sources in ``notebooks/``: the ``.ipynb`` files are the source (edited in Jupyter), so what
keeps them runnable and reviewable is checked here, by the tests and by anyone before a commit::

    python -m dpcdvae.notebooks.check [--fix] [FOLDER]      (FOLDER: default the checkout's notebooks/)

Per notebook (``FOLDER/*.ipynb``):

* it is a valid nbformat v4 notebook;
* exactly one *code* cell is tagged ``parameters`` (papermill overrides its assignments), and no cell carries
  papermill's ``injected-parameters`` tag (an executed copy saved over the source);
* no code cell holds outputs or an execution count (``--fix`` strips them in place);
* the kernelspec is ``python3``;
* its metadata holds the runner's facts (``metadata["dpcdvae"]``, see :data:`dpcdvae.notebooks.runner.META_KEY`):
  ``ci_parameters`` (a mapping whose names are all assigned in the parameters cell) and ``html_expect`` (strings);
* it is listed in the table of ``FOLDER/README.md`` (and every notebook listed there exists);
* no code cell is longer than :data:`MAX_CELL_LINES` lines (notebooks hold narrative and calls into the package,
  not logic), except the cells tagged ``lesson`` in the teaching notebooks (metadata ``"lesson_cells": true``),
  which show a lesson's arithmetic and may hold up to :data:`MAX_LESSON_LINES` lines. Lines are counted as in the
  cell's source, comments and blank lines included.

Each problem is one line naming the file (and the cell index, counted from 0 over all cells as Jupyter shows them).
``--fix`` rewrites only the files it changes, with :mod:`nbformat` (one-space indentation, a trailing newline: what
Jupyter writes), so everything else in them stays as it was. Exit status 0 when no problem is left, 1 otherwise.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Optional, Sequence

__all__ = ["MAX_CELL_LINES", "MAX_LESSON_LINES", "check_notebook_sources", "fix_notebook_sources",
           "readme_notebooks", "main"]

#: longest code cell allowed (today's longest is a 24-line parameters cell)
MAX_CELL_LINES = 40
#: longest cell tagged ``lesson`` allowed in a notebook whose metadata says ``"dpcdvae": {"lesson_cells": true}``
MAX_LESSON_LINES = 120
LESSON_TAG = "lesson"
PARAMETERS_TAG = "parameters"
#: the notebook-metadata key of the runner's facts (what :mod:`dpcdvae.notebooks.runner` reads)
META_KEY = "dpcdvae"


def default_folder() -> Path:
    """The ``notebooks/`` folder of this source checkout."""
    return Path(__file__).resolve().parents[2] / "notebooks"


def readme_notebooks(readme: Path) -> list[str]:
    """The notebook names (without ``.ipynb``) in the first column of the tables of ``readme``: rows such as
    ``| `00_quickstart` | what it shows |``."""
    names = []
    for line in readme.read_text(encoding="utf-8").splitlines():
        if not line.lstrip().startswith("|"):
            continue
        first = line.strip().strip("|").split("|")[0]
        m = re.fullmatch(r"\s*`([^`]+)`\s*", first)
        if m:
            names.append(m.group(1).removesuffix(".ipynb"))
    return names


def _tags(cell) -> list:
    tags = cell.get("metadata", {}).get("tags", [])
    return list(tags) if isinstance(tags, (list, tuple)) else []


def _assigned_names(source: str) -> set[str]:
    """The names assigned at the top level of ``source`` (a parameters cell: plain assignments); empty when it does
    not parse."""
    import ast

    try:
        body = ast.parse(source).body
    except SyntaxError:
        return set()
    return {t.id for node in body if isinstance(node, ast.Assign) for t in node.targets if isinstance(t, ast.Name)}


def _check_one(path: Path) -> list[str]:
    import nbformat

    f = path.name
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return [f"{f}: not readable as JSON: {exc}"]
    if not isinstance(raw, dict) or raw.get("nbformat") != 4:
        version = raw.get("nbformat") if isinstance(raw, dict) else None
        return [f"{f}: nbformat version {version!r}, expected 4 (open and save it in a current Jupyter)"]
    try:
        nb = nbformat.reads(json.dumps(raw), as_version=4)
        nbformat.validate(nb)
    except Exception as exc:  # nbformat's ValidationError and friends
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return [f"{f}: not a valid nbformat v4 notebook: {first}"]

    problems = []
    kernel = nb.metadata.get("kernelspec", {}).get("name")
    if kernel != "python3":
        problems.append(f"{f}: kernelspec name is {kernel!r}, expected 'python3'")
    tagged = [i for i, c in enumerate(nb.cells) if PARAMETERS_TAG in _tags(c)]
    code_tagged = [i for i in tagged if nb.cells[i].cell_type == "code"]
    for i in tagged:
        if nb.cells[i].cell_type != "code":
            problems.append(f"{f}: cell {i}: a {nb.cells[i].cell_type} cell is tagged '{PARAMETERS_TAG}'")
    if len(code_tagged) != 1:
        where = f" (cells {', '.join(map(str, code_tagged))})" if code_tagged else ""
        problems.append(f"{f}: {len(code_tagged)} code cells tagged '{PARAMETERS_TAG}'{where}, expected exactly 1")
    meta = nb.metadata.get(META_KEY)
    if not isinstance(meta, dict):
        problems.append(f"{f}: no metadata[{META_KEY!r}] (its CI parameters and HTML checks, see "
                        "dpcdvae.notebooks.runner.META_KEY)")
        meta = {}
    else:
        ci = meta.get("ci_parameters")
        if not isinstance(ci, dict):
            problems.append(f"{f}: metadata[{META_KEY!r}]['ci_parameters'] is {type(ci).__name__}, expected a mapping")
        elif len(code_tagged) == 1:  # papermill sets a parameter only by assigning it in the parameters cell
            missing = sorted(set(ci) - _assigned_names(nb.cells[code_tagged[0]].source))
            if missing:
                problems.append(f"{f}: CI parameters {missing} are not assigned in its parameters cell "
                                f"(cell {code_tagged[0]})")
        expect = meta.get("html_expect")
        if not (isinstance(expect, list) and all(isinstance(x, str) for x in expect)):
            problems.append(f"{f}: metadata[{META_KEY!r}]['html_expect'] is not a list of strings")
    lesson_ok = meta.get("lesson_cells") is True
    for i, c in enumerate(nb.cells):
        if "injected-parameters" in _tags(c):
            problems.append(f"{f}: cell {i}: papermill's injected-parameters cell (an executed copy saved as the "
                            "source?)")
        if c.cell_type != "code":
            continue
        if c.get("outputs"):
            problems.append(f"{f}: cell {i}: has {len(c.outputs)} output(s) (run with --fix to strip them)")
        if c.get("execution_count") is not None:
            problems.append(f"{f}: cell {i}: has execution count {c.execution_count} (run with --fix to strip it)")
        n_lines = len(c.source.splitlines())
        lesson = lesson_ok and LESSON_TAG in _tags(c)
        bound = MAX_LESSON_LINES if lesson else MAX_CELL_LINES
        if n_lines > bound:
            what = f"'{LESSON_TAG}' cell" if lesson else "code cell"
            problems.append(f"{f}: cell {i}: {what} of {n_lines} lines, at most {bound} (move the logic into the "
                            "package)")
    return problems


def check_notebook_sources(folder=None) -> list[str]:
    """The problems of the notebooks in ``folder`` (default: the checkout's ``notebooks/``), one line each; empty
    when every check passes (see the module's docstring for the checks)."""
    folder = Path(folder) if folder is not None else default_folder()
    paths = sorted(folder.glob("*.ipynb"))
    if not paths:
        return [f"{folder}: no .ipynb files"]
    problems = []
    for path in paths:
        problems.extend(_check_one(path))
    readme = folder / "README.md"
    if not readme.is_file():
        problems.append(f"{readme}: missing (it lists the notebooks)")
    else:
        listed = readme_notebooks(readme)
        for path in paths:
            if path.stem not in listed:
                problems.append(f"{path.name}: not listed in the table of {readme.name}")
        on_disk = {p.stem for p in paths}
        for name in listed:
            if name not in on_disk:
                problems.append(f"{readme.name}: lists {name}, but {name}.ipynb does not exist")
    return problems


def fix_notebook_sources(folder=None) -> list[str]:
    """Strip outputs and execution counts from the code cells of every notebook in ``folder``, in place; returns the
    names of the files rewritten (only those that changed; unreadable files are left for the checks to report)."""
    import nbformat

    folder = Path(folder) if folder is not None else default_folder()
    fixed = []
    for path in sorted(folder.glob("*.ipynb")):
        try:
            nb = nbformat.read(path, as_version=4)
        except Exception:
            continue
        changed = False
        for c in nb.cells:
            if c.cell_type != "code":
                continue
            if c.get("outputs"):
                c.outputs = []
                changed = True
            if c.get("execution_count") is not None:
                c.execution_count = None
                changed = True
        if changed:
            path.write_text(nbformat.writes(nb) + "\n", encoding="utf-8")
            fixed.append(path.name)
    return fixed


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dpcdvae.notebooks.check",
                                description="check the notebook sources (one parameters cell, no outputs, ...)")
    p.add_argument("folder", nargs="?", default=None, help="folder of .ipynb files (default: the checkout's "
                                                              "notebooks/)")
    p.add_argument("--fix", action="store_true", help="strip outputs and execution counts in place first")
    a = p.parse_args(argv)
    folder = Path(a.folder) if a.folder else default_folder()
    if a.fix:
        for name in fix_notebook_sources(folder):
            print(f"fixed {name}: outputs and execution counts stripped")
    problems = check_notebook_sources(folder)
    for line in problems:
        print(line)
    n = len(list(folder.glob("*.ipynb")))
    print(f"{n} notebooks in {folder}: " + (f"{len(problems)} problem(s)" if problems else "ok"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
