"""Shared pytest fixtures.

* ``shared_data_dir``: the development copy of the CDVAE datasets (``../shared/data`` next to the repository, or
  ``$DPCDVAE_SHARED_DATA``); tests using it skip with a clear reason when it is absent.
* ``isolated_cache``: points ``$DPCDVAE_CACHE`` at a fresh temporary directory (no writes to ``~/.cache``).
* ``srtio3``: a 5-atom cubic SrTiO3 pymatgen ``Structure`` (a = 3.905 Angstrom).
* ``demo_root`` / ``demo_train`` (module scope): a synthetic demo dataset written by the test itself, sized by the
  module's ``DEMO_SIZES = (train, val, test)`` (default (48, 8, 8)), and its preprocessed training split
  (radius graphs only: no CrystalNN). ``$DPCDVAE_CACHE`` defaults to a temporary folder.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is imported (see dpcdvae/__init__.py)
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def _shared_data_candidates() -> list[Path]:
    out = []
    env = os.environ.get("DPCDVAE_SHARED_DATA")
    if env:
        out.append(Path(env))
    out.append(REPO_ROOT.parent / "shared" / "data")
    return out


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """Root holding ``perov_5/``, ``carbon_24/``, ... (skips the test when absent)."""
    for cand in _shared_data_candidates():
        if (cand / "perov_5" / "test.csv").is_file():
            return cand
    pytest.skip(
        "shared datasets absent (looked for perov_5/test.csv under "
        + ", ".join(str(c) for c in _shared_data_candidates())
        + "); set $DPCDVAE_SHARED_DATA or fetch them with `dpcdvae data download perov_5`"
    )


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch) -> Path:
    """A fresh ``$DPCDVAE_CACHE`` for this test."""
    d = tmp_path / "dpcdvae-cache"
    d.mkdir()
    monkeypatch.setenv("DPCDVAE_CACHE", str(d))
    return d


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory, request) -> Path:
    from dpcdvae.data import make_demo_dataset

    root = tmp_path_factory.mktemp("demo")
    os.environ.setdefault("DPCDVAE_CACHE", str(tmp_path_factory.mktemp("cache")))
    make_demo_dataset(root, n=tuple(getattr(request.module, "DEMO_SIZES", (48, 8, 8))))
    return root


@pytest.fixture(scope="module")
def demo_train(demo_root):
    from dpcdvae.data import load_split

    return load_split("demo_synthetic_perovskites", "train", root=demo_root, graph="none", progress=False)


def write_perov5_csvs(root: Path, structures: dict, splits=("test", "val")) -> Path:
    """A hand-made ``perov_5`` dataset: ``root/data/perov_5/{split}.csv`` with the rows ``material_id, cif,
    heat_ref=0`` of ``structures`` ({material_id: pymatgen Structure}). Returns ``root/data``."""
    import pandas as pd
    from pymatgen.io.cif import CifWriter

    d = Path(root) / "data" / "perov_5"
    d.mkdir(parents=True, exist_ok=True)
    rows = [{"material_id": k, "cif": str(CifWriter(s)), "heat_ref": 0.0} for k, s in structures.items()]
    for split in splits:
        pd.DataFrame(rows).to_csv(d / f"{split}.csv")
    return d.parent


@pytest.fixture
def srtio3():
    from pymatgen.core import Lattice, Structure

    return Structure(Lattice.cubic(3.905), ["Sr", "Ti", "O", "O", "O"],
                     [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])


def pytest_configure(config):
    """One torch thread per test process: CI runs `pytest -n 2` on 2 cores, and oversubscribed torch thread pools
    were measured here to make small tensor ops ~100x slower."""
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass
    os.environ.setdefault("MPLBACKEND", "Agg")


def random_sane_cell(seed: int = 5):
    """A random triclinic BaTiO4 cell (lengths 3.5-5.5 A, angles 70-110 deg) whose atoms are all > 1.6 A apart:
    a low-symmetry crystal for the fingerprint tests."""
    import numpy as np
    from pymatgen.core import Lattice, Structure

    rng = np.random.default_rng(seed)
    for _ in range(10000):
        lat = Lattice.from_parameters(*rng.uniform(3.5, 5.5, 3), *rng.uniform(70, 110, 3))
        s = Structure(lat, ["Ba", "Ti", "O", "O", "O", "O"], rng.random((6, 3)))
        if (s.distance_matrix + np.eye(6) * 10).min() > 1.6:
            return s
    raise RuntimeError("no random cell with sane distances found")
