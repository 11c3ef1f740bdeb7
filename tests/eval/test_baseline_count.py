"""The data-vs-data ceiling at a chosen count (``data_vs_data(n_generated=...)``, ``dpcdvae evaluate --task baseline
--generated-split ... --n-generated N``) on a tiny SYNTHETIC demo dataset the tests write themselves."""
from __future__ import annotations

import json
import warnings

import pytest

pytest.importorskip("pymatgen")

from dpcdvae.cli import error_line, main  # noqa: E402
from dpcdvae.utils.errors import ArgumentError, UserError  # noqa: E402
from dpcdvae.eval.generation import data_vs_data, load_generated_split  # noqa: E402

DEMO = "demo_synthetic_perovskites"
DEMO_SIZES = (10, 16, 6)  # train, val, test (read by conftest's demo_root)


def _key(structures):
    """Something that tells the demo crystals apart: formula and lattice constants."""
    return [(s.composition.reduced_formula, round(s.lattice.a, 6), round(s.lattice.c, 6)) for s in structures]


def test_subset_has_the_requested_size_and_is_seeded(demo_root):
    whole = load_generated_split(DEMO, "val", root=str(demo_root))
    assert len(whole) == DEMO_SIZES[1]
    a = load_generated_split(DEMO, "val", root=str(demo_root), n_generated=5, seed=0)
    b = load_generated_split(DEMO, "val", root=str(demo_root), n_generated=5, seed=0)
    c = load_generated_split(DEMO, "val", root=str(demo_root), n_generated=5, seed=1)
    assert len(a) == 5 and len(c) == 5
    assert _key(a) == _key(b)            # same seed, same subset, same order
    assert _key(a) != _key(c)            # another seed, another subset
    # drawn without replacement, in split order
    order = {k: i for i, k in enumerate(_key(whole))}
    pos = [order[k] for k in _key(a)]
    assert pos == sorted(pos) and len(set(pos)) == 5
    # the whole split when n_generated equals its size
    assert _key(load_generated_split(DEMO, "val", root=str(demo_root), n_generated=DEMO_SIZES[1])) == _key(whole)


def test_unparseable_rows_are_dropped_before_drawing(tmp_path, isolated_cache):
    from pymatgen.core import Lattice, Structure

    from conftest import write_perov5_csvs

    s = {f"p-{i}": Structure(Lattice.cubic(3.9 + 0.01 * i), ["Sr", "Ti", "O", "O", "O"],
                             [[0, 0, 0], [.5, .5, .5], [.5, .5, 0], [.5, 0, .5], [0, .5, .5]]) for i in range(4)}
    root = write_perov5_csvs(tmp_path, s)
    import pandas as pd

    f = root / "perov_5" / "val.csv"
    df = pd.read_csv(f, index_col=0)
    df.loc[len(df)] = ["p-bad", "not a cif", 0.0]
    df.to_csv(f)
    assert sum(x is None for x in load_generated_split("perov_5", "val", root=str(root))) == 1
    got = load_generated_split("perov_5", "val", root=str(root), n_generated=4)
    assert len(got) == 4 and all(x is not None for x in got)
    with pytest.raises(UserError, match=r"has 4 crystals \(1 unparseable rows dropped\)"):
        load_generated_split("perov_5", "val", root=str(root), n_generated=5)


def test_over_large_request_names_the_split_and_sizes(demo_root):
    """From Python the message names the arguments (n_generated=..., generated_split); the command line prints the
    same message with the flags (dpcdvae.cli.error_line)."""
    with pytest.raises(UserError) as exc:
        load_generated_split(DEMO, "val", root=str(demo_root), n_generated=10240)
    msg = str(exc.value)
    assert isinstance(exc.value, ArgumentError) and exc.value.arg == "n_generated"
    assert msg.startswith("n_generated=10,240: ") and f"{DEMO} val split has {DEMO_SIZES[1]} crystals" in msg
    assert "(generated_split train may be larger" in msg and "--" not in msg and "\n" not in msg
    line = error_line(exc.value)
    assert line.startswith("--n-generated 10,240: ") and "(--generated-split train may be larger" in line
    with pytest.raises(ArgumentError, match=r"^n_generated=0: the number of crystals must be >= 1$"):
        load_generated_split(DEMO, "val", root=str(demo_root), n_generated=0)


def test_data_vs_data_records_the_split_and_count(demo_root, monkeypatch):
    warnings.filterwarnings("ignore")
    m = data_vs_data(DEMO, root=str(demo_root), n_workers=1, seed=3, n_property_samples=4, generated_split="train",
                     n_generated=4, compute_eform=False, progress=False, paper_dataset="perov_5")
    assert m["n_generated"] == 4 and m["baseline_n_generated"] == 4
    assert m["baseline_generated_split"] == "train"
    assert "4 crystals drawn from the train split (seed 3)" in m["baseline"]
    assert len(m["per_sample"]) == 4


def _evaluate(argv, capsys):
    rc = main(argv)
    return rc, capsys.readouterr().err


def test_cli_rejects_the_count_flags_outside_baseline(tmp_path, capsys):
    rc, err = _evaluate(["evaluate", "--task", "gen", "--samples", str(tmp_path), "--dataset", "perov_5",
                         "--n-generated", "10", "--out", str(tmp_path / "o"), "--no-eform", "--quiet"], capsys)
    assert rc == 2 and "--n-generated applies to --task baseline only" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    rc, err = _evaluate(["evaluate", "--task", "recon", "--samples", str(tmp_path), "--dataset", "perov_5",
                         "--generated-split", "train", "--out", str(tmp_path / "o"), "--quiet"], capsys)
    assert rc == 2 and "--generated-split applies to --task baseline only" in err
    assert not (tmp_path / "o" / "metrics.json").exists()


def test_cli_baseline_with_a_count(demo_root, tmp_path, capsys):
    out = tmp_path / "base"
    rc, err = _evaluate(["evaluate", "--task", "baseline", "--dataset", "demo", "--data-root", str(demo_root),
                         "--n-generated", "99", "--out", str(out), "--no-eform", "--quiet"], capsys)
    assert rc == 2 and f"val split has {DEMO_SIZES[1]} crystals" in err and "--n-generated 99" in err
    rc, err = _evaluate(["evaluate", "--task", "baseline", "--dataset", "demo", "--data-root", str(demo_root),
                         "--generated-split", "train", "--n-generated", "3", "--out", str(out), "--no-eform",
                         "--quiet", "--n-workers", "1", "--n-property-samples", "3"], capsys)
    assert rc == 0, err
    m = json.loads((out / "metrics.json").read_text())
    assert m["baseline_n_generated"] == 3 and m["n_generated"] == 3 and m["baseline_generated_split"] == "train"
    assert "--n-generated 3" in m["command"]
