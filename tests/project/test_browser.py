"""The widgets in a real browser: Debian's chromium, driven by Playwright (``executable_path``: no browser download),
opens JupyterLab on 127.0.0.1, runs all cells of a notebook that calls the package's widget helpers, and checks
that the ipywidgets slider renders, that nglview draws its canvas and that no output shows a widget error (nglview
4.0.1's mismatched front end showed "Click to show javascript error" in every view)."""
from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium; "
                                                ".ci/run installs it)"),
]

CELLS = [
    "from dpcdvae import notebooks as nb\nimport torch\nprint('live front end:', nb.live_frontend())",
    "slider = nb.forward_slider(torch.rand(4, 3), T=50, types=[8, 8, 22, 38])\nslider",
    "from pymatgen.core import Lattice, Structure\n"
    "s = Structure(Lattice.cubic(3.905), ['Sr', 'Ti', 'O', 'O', 'O'],\n"
    "              [[0, 0, 0], [.5, .5, .5], [.5, .5, 0], [.5, 0, .5], [0, .5, .5]])\n"
    "view = nb.nglview_structure(s)\nview",
]
WIDGET_ERRORS = ("Click to show javascript error", "Error displaying widget", "Failed to load model class",
                 "Error rendering")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def jupyterlab(tmp_path):
    """A JupyterLab server on 127.0.0.1 serving ``tmp_path`` (its own config/runtime folders); yields its URL."""
    root = tmp_path / "lab"
    root.mkdir()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, root / "widgets.ipynb")
    port, token = _free_port(), secrets.token_hex(12)
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / "cfg"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "rt"),
           "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "ws"), "OMP_NUM_THREADS": "1"}
    env.pop("DPCDVAE_HEADLESS", None)
    env.pop("DPCDVAE_WIDGETS", None)
    log = open(tmp_path / "lab.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1",
                             f"--port={port}", f"--ServerApp.token={token}", f"--ServerApp.root_dir={root}",
                             "--ServerApp.open_browser=False", "--allow-root", "--LabApp.news_url=", "--LabApp.check_for_updates_class="
                             "jupyterlab.NeverCheckForUpdate"],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        t0 = time.time()
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() - t0 > 120:
                log.flush()
                pytest.fail("JupyterLab did not start: " + (tmp_path / "lab.log").read_text()[-2000:])
            time.sleep(0.5)
        yield f"{base}/lab/tree/widgets.ipynb?token={token}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_widgets_render_in_jupyterlab(jupyterlab, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (pip install playwright) is missing")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(jupyterlab, timeout=120_000)
            page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=120_000)
            # the kernel must be up (idle) before Run All: on a loaded machine it takes minutes to start
            page.wait_for_selector('.jp-Notebook-ExecutionIndicator[data-status="idle"]', timeout=420_000)
            # JupyterLab may still ask which kernel to use (a modal dialog that blocks the menus): accept its
            # preselected choice, the notebook's own Python 3 kernel
            page.wait_for_timeout(2000)
            dialog = page.locator(".jp-Dialog .jp-mod-accept")
            if dialog.count():
                dialog.first.click()
                page.wait_for_selector('.jp-Notebook-ExecutionIndicator[data-status="idle"]', timeout=420_000)
            # Run All; on a loaded machine the first request can be lost while the kernel connection settles
            # (cells stay "[ ]" with the kernel idle): ask again until the first cell prints
            for attempt in range(6):
                page.locator(".jp-NotebookPanel .jp-Cell").first.click()
                page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
                page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
                try:
                    page.wait_for_selector("text=live front end:", timeout=90_000)
                    break
                except sync_api.TimeoutError:
                    continue
            try:
                page.wait_for_selector("text=live front end:", timeout=60_000)
                page.wait_for_selector(".jp-OutputArea-output .widget-hslider, .jp-OutputArea-output .widget-slider",
                                       timeout=420_000)
                page.wait_for_selector(".jp-OutputArea-output canvas", timeout=420_000)
            except sync_api.TimeoutError:
                page.screenshot(path=str(tmp_path / "lab.png"))
                pytest.fail("JupyterLab did not show the widgets; page text:\n" + page.inner_text("body")[-3000:]
                            + "\nserver log:\n" + (tmp_path / "lab.log").read_text()[-2000:])
            page.wait_for_timeout(3000)  # let a late widget error surface
            text = page.inner_text(".jp-NotebookPanel")
            page.screenshot(path=str(tmp_path / "lab.png"))
        finally:
            browser.close()
    assert "live front end: True" in text, text[-3000:]
    assert not [e for e in WIDGET_ERRORS if e in text], text[-3000:]
    assert "first frame is drawn instead" not in text  # a live front end gets the widget, not the static picture
