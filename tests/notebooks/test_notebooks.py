"""The notebooks: structure (fast) and a headless papermill run of all of them with their CI parameters (slow).

The slow test is what `.ci/run` exercises: `dpcdvae notebooks --ci --out DIR` executes every notebook, writes the
executed .ipynb and an HTML copy, and checks that the HTML holds its tables and figures and no error output.
"""
from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from dpcdvae.notebooks import runner as nbrun
from dpcdvae import notebooks as nbmod
from dpcdvae.notebooks.check import (MAX_CELL_LINES, check_notebook_sources, fix_notebook_sources,
                                    readme_notebooks)

REPO = Path(__file__).resolve().parents[2]
NB_DIR = REPO / "notebooks"


def _read(name: str):
    return nbformat.read(NB_DIR / f"{name}.ipynb", as_version=4)


def _parameter_names(cell) -> set[str]:
    names = set()
    for node in ast.parse(cell.source).body:
        if isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


@pytest.mark.parametrize("name", nbrun.NOTEBOOKS)
def test_notebook_is_clean_and_parameterised(name):
    nb = _read(name)
    nbformat.validate(nb)
    tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{name}: {len(tagged)} cells tagged 'parameters'"
    assert tagged[0].cell_type == "code"
    for c in nb.cells:
        if c.cell_type == "code":
            assert c.get("outputs", []) == [], f"{name}: a cell has outputs"
            assert c.get("execution_count") is None, f"{name}: a cell has an execution count"
    # every CI parameter (and work_dir, which the runner adds) is a parameter of the notebook
    names = _parameter_names(tagged[0])
    missing = (set(nb.metadata["dpcdvae"]["ci_parameters"]) | {"work_dir"}) - names
    assert not missing, f"{name}: CI parameters {sorted(missing)} are not in its parameters cell"
    # the parameters cell is plain assignments (papermill overrides them by name)
    for node in ast.parse(tagged[0].source).body:
        assert isinstance(node, ast.Assign), f"{name}: parameters cell holds a {type(node).__name__}"


def test_every_notebook_is_listed_and_checked():
    on_disk = sorted(p.stem for p in NB_DIR.glob("*.ipynb"))
    assert on_disk == list(nbrun.NOTEBOOKS) == nbrun.notebook_names(str(NB_DIR))
    for name in on_disk:  # the runner's facts are the notebook's own metadata, nothing else
        meta = _read(name).metadata["dpcdvae"]
        assert nbrun.ci_parameters(name) == meta["ci_parameters"] == nbrun.CI_PARAMETERS[name]
        assert nbrun.html_expect(name) == meta["html_expect"] == nbrun.HTML_EXPECT[name] and meta["html_expect"]
    assert nbrun.TABLE_NOTEBOOK == {"I": "03_table1_reconstruction", "S1": "03_table1_reconstruction",
                                    "II": "04_table2_generation", "III": "05_table3_ground_state"}
    assert nbrun.table_notebooks()["S1"][1] == {"header": "Match rate (%)", "parameters": {"samplers": ["eq7", "eq6"]}}


def test_notebooks_that_train_share_one_model():
    """The CI notebooks that train (all but 01, which shows training with its own budget, and 07, which decodes the
    shipped model) ask for the same model: same training values -> same cache key -> trained once per work_dir."""
    keys = ("config", "train_epochs", "train_minutes", "limit_train", "limit_val", "batch_size", "threads")
    shared = [n for n in nbrun.NOTEBOOKS if n not in ("01_training", "07_latent_explorer")]
    budgets = {n: tuple(nbrun.ci_parameters(n).get(k) for k in keys) for n in shared}
    assert len(set(budgets.values())) == 1 and None not in next(iter(budgets.values())), budgets


def test_notebook_check_wants_the_runner_metadata(tmp_path):
    """`python -m dpcdvae.notebooks.check` refuses a notebook without its CI parameters, or with one that its
    parameters cell does not assign (papermill could not set it)."""
    d = _copy_notebooks(tmp_path)
    path = d / "00_quickstart.ipynb"
    nb = nbformat.read(path, as_version=4)
    nb.metadata["dpcdvae"]["ci_parameters"]["no_such_parameter"] = 1
    nbformat.write(nb, path)
    assert check_notebook_sources(d) == [
        f"00_quickstart.ipynb: CI parameters ['no_such_parameter'] are not assigned in its parameters cell "
        f"(cell {_code_cell(nb, True)})"]
    del nb.metadata["dpcdvae"]
    nbformat.write(nb, path)
    problems = check_notebook_sources(d)
    assert len(problems) == 1 and problems[0].startswith("00_quickstart.ipynb: no metadata['dpcdvae']"), problems
    with pytest.raises(SystemExit, match="no metadata"):
        nbrun.ci_parameters("00_quickstart", str(d))


def test_notebook_sources_pass_their_check():
    """The .ipynb files are the source: the committed ones pass `python -m dpcdvae.notebooks.check`."""
    assert check_notebook_sources(NB_DIR) == []
    assert check_notebook_sources() == []  # the default folder is the checkout's notebooks/
    assert sorted(readme_notebooks(NB_DIR / "README.md")) == sorted(nbrun.NOTEBOOKS)
    proc = subprocess.run([sys.executable, "-m", "dpcdvae.notebooks.check"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0 and proc.stdout.strip().endswith(": ok"), proc.stdout + proc.stderr


def _copy_notebooks(tmp_path) -> Path:
    d = tmp_path / "notebooks"
    d.mkdir()
    for p in [*NB_DIR.glob("*.ipynb"), NB_DIR / "README.md"]:
        shutil.copyfile(p, d / p.name)
    return d


def _code_cell(nb, tagged: bool = False) -> int:
    """Index of the first code cell that is (tagged) / is not (not tagged) the parameters cell."""
    return next(i for i, c in enumerate(nb.cells) if c.cell_type == "code"
                and ("parameters" in c.metadata.get("tags", [])) == tagged)


def _output(nb, i):
    nb.cells[i].outputs = [nbformat.v4.new_output("stream", name="stdout", text="hello\n")]
    return f"cell {i}: has 1 output(s)"


def _execution_count(nb, i):
    nb.cells[i].execution_count = 7
    return f"cell {i}: has execution count 7"


def _second_parameters_cell(nb, i):
    nb.cells[i].metadata["tags"] = ["parameters"]
    return f"2 code cells tagged 'parameters' (cells {min(i, _code_cell(nb, True))}"


def _no_parameters_cell(nb, i):
    nb.cells[_code_cell(nb, True)].metadata["tags"] = []
    return "0 code cells tagged 'parameters', expected exactly 1"


def _other_kernel(nb, i):
    nb.metadata["kernelspec"]["name"] = "julia-1.10"
    return "kernelspec name is 'julia-1.10', expected 'python3'"


def _long_cell(nb, i):
    nb.cells[i].source += "\n" + "\n".join(f"x{k} = {k}" for k in range(MAX_CELL_LINES))
    return f"cell {i}: code cell of {len(nb.cells[i].source.splitlines())} lines, at most {MAX_CELL_LINES}"


@pytest.mark.parametrize("corrupt", [_output, _execution_count, _second_parameters_cell, _no_parameters_cell,
                                     _other_kernel, _long_cell])
@pytest.mark.parametrize("name", ["03_table1_reconstruction", "06_teaching_diffusion"])
def test_notebook_check_flags_a_corrupted_copy(tmp_path, corrupt, name):
    d = _copy_notebooks(tmp_path)
    assert check_notebook_sources(d) == []
    path = d / f"{name}.ipynb"
    nb = nbformat.read(path, as_version=4)
    expected = corrupt(nb, _code_cell(nb))
    nbformat.write(nb, path)
    problems = check_notebook_sources(d)
    assert len(problems) == 1 and problems[0].startswith(f"{name}.ipynb: ") and expected in problems[0], problems
    proc = subprocess.run([sys.executable, "-m", "dpcdvae.notebooks.check", str(d)], capture_output=True, text=True,
                          cwd=REPO)
    assert proc.returncode == 1 and expected in proc.stdout, proc.stdout + proc.stderr


def test_notebook_check_wants_every_notebook_in_the_readme(tmp_path):
    d = _copy_notebooks(tmp_path)
    shutil.copyfile(d / "01_training.ipynb", d / "07_new.ipynb")
    readme = d / "README.md"
    readme.write_text(readme.read_text().replace("| `02_reverse_trajectory` |", "| `02_gone` |"))
    assert sorted(check_notebook_sources(d)) == [
        "02_reverse_trajectory.ipynb: not listed in the table of README.md",
        "07_new.ipynb: not listed in the table of README.md",
        "README.md: lists 02_gone, but 02_gone.ipynb does not exist"]


def test_notebook_check_lesson_cells_only_in_the_teaching_notebook(tmp_path):
    """A cell tagged 'lesson' may be longer in notebook 06, not elsewhere."""
    d = _copy_notebooks(tmp_path)
    long_source = "\n".join(f"x{k} = {k}" for k in range(MAX_CELL_LINES + 5))
    for name in ("06_teaching_diffusion", "03_table1_reconstruction"):
        path = d / f"{name}.ipynb"
        nb = nbformat.read(path, as_version=4)
        nb.cells.append(nbformat.v4.new_code_cell(long_source, metadata={"tags": ["lesson"]}))
        nbformat.write(nb, path)
    problems = check_notebook_sources(d)
    assert len(problems) == 1 and problems[0].startswith("03_table1_reconstruction.ipynb: cell "), problems


def test_notebook_check_fix_strips_outputs_and_counts_byte_stably(tmp_path):
    d = _copy_notebooks(tmp_path)
    name = "06_teaching_diffusion.ipynb"
    nb = nbformat.read(d / name, as_version=4)
    i = _code_cell(nb)
    _output(nb, i)
    _execution_count(nb, i)
    _execution_count(nb, _code_cell(nb, True))
    nbformat.write(nb, d / name)
    assert len(check_notebook_sources(d)) == 3
    proc = subprocess.run([sys.executable, "-m", "dpcdvae.notebooks.check", "--fix", str(d)], capture_output=True,
                          text=True, cwd=REPO)
    assert proc.returncode == 0 and f"fixed {name}" in proc.stdout, proc.stdout + proc.stderr
    assert check_notebook_sources(d) == []
    for p in NB_DIR.glob("*.ipynb"):  # the repaired file is the committed one again, byte for byte
        assert (d / p.name).read_bytes() == p.read_bytes(), p.name
    assert fix_notebook_sources(d) == []  # nothing left to fix: nothing rewritten


def test_teaching_lesson_cells_show_what_the_text_says():
    """Notebook 06 computes its lesson in cells tagged 'lesson' (no papermill here: the cells run in this process,
    with small parameters): the wrap removes the prior mismatch, and with the oracle E[eps | pi(r_t)] Eq. 6 keeps
    the data's spread s0 while Eq. 7 under-disperses."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nb = _read("06_teaching_diffusion")
    lessons = [c.source for c in nb.cells if "lesson" in c.metadata.get("tags", [])]
    assert len(lessons) == 2 and "def oracle_eps" in lessons[1] and "np.trapezoid" in lessons[0]
    setup = next(c.source for c in nb.cells if c.cell_type == "code" and "import dpcdvae.notebooks" in c.source)
    ns = {"T": 1000, "s0": 0.02, "n_oracle_atoms": 400, "steps_list": [1, 10, 50], "seed": 0, "threads": None}
    exec(setup.replace("%matplotlib inline", ""), ns)
    for src in lessons:
        exec(src, ns)
    last = ns["mism"].groupby("schedule").tail(1).set_index("schedule")
    assert set(last.index) == {"sigmoid", "linear", "cosine"}
    assert last.loc["sigmoid", "tv_unwrapped"] > 0.01 and (last["tv_wrapped"] < 1e-6).all(), last
    ora = ns["ora"].set_index("sampler")
    assert abs(ora.loc["Eq. 6 (standard DDPM)", "std"] - 0.02) < 0.004, ora
    assert ora.loc["Eq. 7 (DP-CDVAE)", "std"] < 0.01, ora
    assert list(ns["ora_samples"]) == ["Eq. 6 (standard DDPM) (1000 steps)", "Eq. 7 (DP-CDVAE) (1000 steps)",
                                       "strided Eq. 7 (50 steps)", "strided DDIM (50 steps)"]
    # the oracle: while the noise is small against the cell (t = 200: std 0.03), only the nearest unwrapped
    # candidate counts and it is the plain Gaussian posterior mean; at t = T the periodic images change it
    import torch

    oracle, sch, site = ns["oracle_eps"], ns["sch"], ns["site"]
    y = site + 0.01
    n = len(site)

    def plain(t):
        abar = sch.alpha_bar(torch.full((n,), t))[:, None]
        return (1 - abar).sqrt() * (y - abar.sqrt() * site) / (abar * 0.02 ** 2 + 1 - abar)

    assert torch.allclose(oracle(y, torch.full((n,), 200)), plain(200), rtol=1e-9, atol=0)
    assert (oracle(y, torch.full((n,), 1000)) - plain(1000)).abs().max() > 0.05
    plt.close("all")


def test_check_html_flags_missing_tables_and_errors():
    name = "03_table1_reconstruction"
    good = " ".join(nbrun.HTML_EXPECT[name]).replace("<delta_rms>", "&lt;delta_rms&gt;")
    good += ' <img src="data:image/png;base64,AAAA">'
    assert nbrun.check_html(good, name)["ok"]
    r = nbrun.check_html("<html>no table here</html>", name)
    assert not r["ok"] and "Match rate (%)" in r["missing"]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1/0")])
    nb.cells[0].outputs = [nbformat.v4.new_output("error", ename="ZeroDivisionError", evalue="division by zero",
                                                  traceback=[])]
    r = nbrun.check_html(good, name, nb)
    assert not r["ok"] and r["errors"][0]["ename"] == "ZeroDivisionError"


def test_commands_are_registered():
    import argparse

    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="command")
    from dpcdvae.cli import notebooks as nbcli

    nbcli.add_parser(sub)
    a = p.parse_args(["notebooks", "--ci", "--out", "x", "--only", "03"])
    assert a.ci and a.only == ["03"]
    a = p.parse_args(["reproduce", "--table", "I", "--dataset", "perov_5", "-p", "n_test", "10"])
    assert a.table == "I" and a.parameter == [["n_test", "10"]]
    assert nbrun._match("03") == "03_table1_reconstruction"
    assert nbrun._match("teaching_diffusion") == "06_teaching_diffusion"


def _run_cli(args, cwd):
    env = dict(os.environ)
    env.setdefault("MPLBACKEND", "Agg")
    return subprocess.run([sys.executable, "-m", "dpcdvae.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env=env)


@pytest.mark.slow
def test_all_notebooks_run_under_papermill(tmp_path):
    """`dpcdvae notebooks --ci` on every notebook: executes, writes .ipynb + .html, HTML checks pass."""
    out = tmp_path / "nb"
    proc = _run_cli(["notebooks", "--ci", "--out", str(out)], cwd=tmp_path)
    summary_file = out / "summary.json"
    assert summary_file.is_file(), proc.stdout[-4000:] + proc.stderr[-4000:]
    summary = json.loads(summary_file.read_text())
    assert proc.returncode == 0 and summary["ok"], proc.stdout[-6000:]
    assert [r["name"] for r in summary["notebooks"]] == list(nbrun.NOTEBOOKS)
    for r in summary["notebooks"]:
        assert r["checks"]["ok"] and not r["checks"]["errors"], r
        assert Path(r["html"]).is_file() and Path(r["ipynb"]).is_file()
    print(f"notebooks --ci wall time: {summary['wall_s']} s")


@pytest.mark.slow
def test_reproduce_table1_on_synthetic_data(tmp_path):
    """`dpcdvae reproduce --table I` runs notebook 03 with the given dataset (the synthetic set: no shared data
    needed) and writes the executed notebook and its HTML."""
    out = tmp_path / "repro"
    args = ["reproduce", "--table", "I", "--dataset", "demo", "--out", str(out),
            "-p", "config", "tiny", "-p", "train_epochs", "2", "-p", "train_minutes", "2", "-p", "limit_train", "64",
            "-p", "limit_val", "16", "-p", "n_test", "4", "-p", "samplers", "[eq7]", "-p", "threads", "1",
            "-p", "n_workers", "1"]
    proc = _run_cli(args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    stem = "03_table1_reconstruction-demo_synthetic_perovskites"
    html = (out / f"{stem}.html").read_text()
    assert "SYNTHETIC" in html and "Match rate (%)" in html
    assert (out / f"{stem}.ipynb").is_file()


def test_run_ci_retries_infrastructure_failures_once(tmp_path, monkeypatch):
    """A notebook that fails outside its cells (timeout, dead kernel) runs once more; a cell error does not."""
    calls = []

    def fake_run(name, out, params, notebooks=None, kernel=None, timeout=0, **kw):
        calls.append(name)
        n = calls.count(name)
        ok = {"ok": True, "name": name, "executed": True, "wall_s": 0.0, "html": "x", "checks": {
            "ok": True, "images": 1, "missing": [], "errors": [], "guarded": 0}}
        if name == nbrun.NOTEBOOKS[0] and n == 1:  # lost kernel reply: retried, then fine
            return {**ok, "ok": False, "executed": False,
                    "error": {"cell": None, "ename": "CellTimeoutError", "evalue": "no reply", "source": ""}}
        if name == nbrun.NOTEBOOKS[1]:  # a cell raised: a real failure, never retried
            return {**ok, "ok": False, "executed": False,
                    "error": {"cell": 3, "ename": "ValueError", "evalue": "bad", "source": "raise"}}
        return ok

    monkeypatch.setattr(nbrun, "run_notebook", fake_run)
    s = nbrun.run_ci(tmp_path / "out", only=[nbrun.NOTEBOOKS[0], nbrun.NOTEBOOKS[1], nbrun.NOTEBOOKS[2]])
    assert calls.count(nbrun.NOTEBOOKS[0]) == 2 and calls.count(nbrun.NOTEBOOKS[1]) == 1
    first, second, third = s["notebooks"]
    assert first["ok"] and "CellTimeoutError" in first["retried_after"]
    assert not second["ok"] and "retried_after" not in second and third["ok"]
    assert s["ok"] is False


def test_widgets_live_and_headless(monkeypatch, capsys):
    """The sliders are ipywidgets in a live session; a headless run draws their first picture instead (no comm
    messages for papermill) and says so."""
    widgets = pytest.importorskip("ipywidgets")
    import torch

    traj = {"t": [10, 5, 0], "unwrapped": torch.rand(3, 4, 3) * 3 - 1, "wrapped": torch.rand(3, 4, 3),
            "num_atoms": torch.tensor([4])}
    frac = torch.rand(4, 3)
    monkeypatch.delenv("DPCDVAE_HEADLESS", raising=False)
    monkeypatch.setenv("DPCDVAE_WIDGETS", "1")  # as in a live JupyterLab
    assert isinstance(nbmod.trajectory_slider(traj, types=[8, 8, 22, 38]), widgets.interactive)
    assert isinstance(nbmod.forward_slider(frac, T=50, types=[8, 8, 22, 38]), widgets.interactive)
    monkeypatch.delenv("DPCDVAE_WIDGETS")
    monkeypatch.setenv("DPCDVAE_HEADLESS", "1")
    import matplotlib.pyplot as plt

    n_figs = len(plt.get_fignums())
    assert nbmod.trajectory_slider(traj, types=[8, 8, 22, 38]) is None
    assert nbmod.forward_slider(frac, T=50, types=[8, 8, 22, 38]) is None
    assert capsys.readouterr().out.count(nbmod.HEADLESS_WIDGET_NOTE) == 2
    assert len(plt.get_fignums()) == n_figs + 2  # the first picture of each widget was drawn
    plt.close("all")


def test_live_frontend_only_in_a_jupyter_server_kernel(monkeypatch):
    """Plain papermill (an ipykernel without Jupyter Server's $JPY_SESSION_NAME) is headless too: widgets then draw
    their first frame instead of an empty widget view."""
    for k in ("DPCDVAE_HEADLESS", "DPCDVAE_WIDGETS", "JPY_SESSION_NAME", "VSCODE_PID", "VSCODE_IPC_HOOK_CLI"):
        monkeypatch.delenv(k, raising=False)
    assert nbmod.live_frontend() is False and nbmod.headless() is True  # no kernel at all (pytest)
    import dpcdvae.utils.progress as prog

    monkeypatch.setattr(prog, "_in_jupyter_kernel", lambda: True)
    assert nbmod.live_frontend() is False  # a kernel driven by papermill / nbclient
    monkeypatch.setenv("JPY_SESSION_NAME", "/home/u/notebooks/02.ipynb")
    assert nbmod.live_frontend() is True and nbmod.headless() is False  # JupyterLab's kernel
    monkeypatch.setenv("DPCDVAE_HEADLESS", "1")
    assert nbmod.live_frontend() is False
    monkeypatch.setenv("DPCDVAE_WIDGETS", "1")
    assert nbmod.live_frontend() is True


def test_nglview_headless_draws_a_picture(monkeypatch, capsys, srtio3):
    import matplotlib.pyplot as plt

    monkeypatch.setenv("DPCDVAE_HEADLESS", "1")
    n_figs = len(plt.get_fignums())
    assert nbmod.nglview_structure(srtio3) is None
    assert len(plt.get_fignums()) == n_figs + 1 and "first frame" in capsys.readouterr().out
    plt.close("all")


def test_nglview_front_end_matches_its_python_side():
    """nglview 4.0.1 asks for front end 4.0 but ships 3.1.5 ("Click to show javascript error" in JupyterLab); the
    pinned release must ship the front end its Python side asks for."""
    nglview = pytest.importorskip("nglview")
    import sys as _sys
    from pathlib import Path as _P

    from nglview._frontend import __frontend_version__

    found = [_P(p) / "share/jupyter/labextensions/nglview-js-widgets/package.json"
             for p in {_sys.prefix, _sys.base_prefix}]
    found = [f for f in found if f.is_file()]
    if not found:
        pytest.skip(f"nglview {nglview.__version__}: its JupyterLab extension is not installed under sys.prefix")
    assert json.loads(found[0].read_text())["version"] == __frontend_version__


def test_exported_html_renders_math_offline():
    """Every formula of every notebook converts to MathML, and the exported HTML carries MathML where the raw
    ``$...$`` stood (an offline reader never gets nbconvert's CDN MathJax)."""
    from dpcdvae.notebooks.runner import NOTEBOOKS, export_html, prerender_math

    total = 0
    for name in NOTEBOOKS:
        nb = nbformat.read(REPO / "notebooks" / f"{name}.ipynb", as_version=4)
        n_dollar = sum(c.source.count("$") for c in nb.cells if c.cell_type == "markdown")
        n_head = sum(ln.lstrip().startswith("#") and "$" in ln for c in nb.cells if c.cell_type == "markdown"
                     for ln in c.source.splitlines())  # headings carry the formula as plain text
        html = export_html(nb)
        n, failed = prerender_math(nb)
        assert failed == [], (name, failed)
        assert not any("$" in c.source for c in nb.cells if c.cell_type == "markdown"), name
        assert html.count("<math") >= n - n_head and (n > 0) == (n_dollar > 0)
        total += n
    assert total > 20


# ------------------------------------------------------------------------------------------------------------------
# the notebooks' text says what the code does (issue "One line for every mistake ...")
# ------------------------------------------------------------------------------------------------------------------
def _markdown(name: str) -> str:
    return "\n".join(c.source for c in _read(name).cells if c.cell_type == "markdown")


def _cell_holding(name: str, needle: str) -> str:
    cells = [c.source for c in _read(name).cells if c.cell_type == "code" and needle in c.source]
    assert len(cells) == 1, f"{name}: {len(cells)} code cells hold {needle!r}"
    return cells[0]


def test_quickstart_text_matches_what_its_calls_do(tmp_path, srtio3):
    """Notebook 00 says: the CIFs are one per crystal that could be built, valid or not, written as sampled (P1, not
    symmetrised); the cell edges are thin solid grey lines; the picture's title says how many of the generated
    crystals are drawn and how many of them all are valid. Its own cells are run here on a hand-made output."""
    import types

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import torch
    from pymatgen.core import Lattice, Structure
    from pymatgen.io.cif import CifParser

    from dpcdvae import viz
    from dpcdvae.models import SampleOutput

    text = _markdown("00_quickstart")
    assert "dashed" not in text and "solid" in text
    assert "symprec=0.1`)" not in text and "P1" in text and "valid or not" in text
    # a slightly distorted SrTiO3 (symmetrising at 0.1 A would move its atoms) and an invalid crystal
    near = srtio3.copy()
    near.translate_sites([1], [0.01, 0.0, 0.0])
    close = Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.0005, 0, 0]])
    gen = SampleOutput(structures=[near, close], frac_coords=torch.zeros(0, 3), atom_types=torch.zeros(0),
                       lengths=torch.tensor([s.lattice.abc for s in (near, close)]),
                       angles=torch.tensor([s.lattice.angles for s in (near, close)]),
                       num_atoms=torch.tensor([5, 2]), flags=["", ""], ids=["gen-0", "gen-1"])
    ns = {"viz": viz, "nb": nbmod, "Path": Path, "work_dir": str(tmp_path), "gen": gen, "sampler": "eq7",
          "steps": None, "ckpt": "pretrained:perov_5", "data": types.SimpleNamespace(label="Perov-5"),
          "model": types.SimpleNamespace(cfg=types.SimpleNamespace(timesteps=1000))}
    exec(_cell_holding("00_quickstart", "viz.plot_samples"), ns)
    title = ns["fig"]._suptitle.get_text()
    assert "2 of 2 generated crystals shown; 1/2 valid" in title, title
    styles = {ln.get_linestyle() for ax in ns["fig"].axes for ln in ax.lines}
    assert styles == {"-"}  # the cell edges: solid
    plt.close("all")
    exec(_cell_holding("00_quickstart", "nb.write_samples"), ns)
    cifs = sorted((ns["run"] / "cif").glob("*.cif"))
    assert [p.stem for p in cifs] == ["gen-0", "gen-1"]  # the invalid crystal has its CIF too
    cif = cifs[0].read_text()
    assert "_symmetry_space_group_name_H-M   'P 1'" in cif
    back = CifParser(cifs[0]).parse_structures(primitive=False)[0]
    assert len(back) == 5 and np.allclose(sorted(back.frac_coords[:, 0]), sorted(near.frac_coords[:, 0]),
                                          atol=1e-5)  # as sampled: the displaced Ti stays where it was


def test_relax_notebook_and_command_name_the_extra(capsys):
    """Notebook 05 and `dpcdvae relax` say they need the relax extra; without CHGNet the notebook's relaxation cell
    prints one line naming it (no traceback) and goes on without a study."""
    from dpcdvae.cli import build_parser

    install = 'pip install -e ".[relax]"'
    assert nbmod.RELAX_INSTALL == install
    assert install in _markdown("05_table3_ground_state")
    assert install in (REPO / "README.md").read_text()
    with pytest.raises(SystemExit):
        build_parser().parse_args(["relax", "--help"])
    assert install in capsys.readouterr().out

    def no_chgnet(*a, **k):
        raise ModuleNotFoundError("No module named 'chgnet'", name="chgnet")

    source = _cell_holding("05_table3_ground_state", "nb.ground_state_study(")
    ns = {"Path": Path, "work_dir": "unused", "models": {}, "n_generate": 1, "sampler": "eq7", "steps": None,
          "seed": 0, "pressure_gpa": 10.0, "calculator": "chgnet", "optimizer": "FIRE", "fmax": 0.05, "max_steps": 1,
          "nb": type("nb", (), {"ground_state_study": staticmethod(no_chgnet),
                                "relax_unavailable": staticmethod(nbmod.relax_unavailable)})}
    exec(source, ns)
    out = capsys.readouterr().out
    assert ns["study"] is None and len(out.strip().splitlines()) == 1, out
    assert "chgnet" in out and install in out and "Traceback" not in out
    # another missing package is named as itself
    line = nbmod.relax_unavailable(ModuleNotFoundError("No module named 'ase'", name="ase"))
    assert "'ase'" in line and "\n" not in line and install not in line
