"""What a new user hits in the first hour (issue "A first hour without surprises"): bad rows are skipped only on
request and then reported, empty inputs are refused before expensive work, `data info` checks rows and fails on
files it cannot use, "valid" means the paper's validity everywhere, interrupted checkpoint writes leave nothing
behind, JSON is strict, and logs hold lines, not adverts or carriage returns."""
from __future__ import annotations

import io
import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from dpcdvae.cli import main

DEMO_SIZES = (40, 8, 8)
OV = {"train.batch_size": 16, "train.limit_val": 8}


def _run(argv, capsys):
    rc = main(argv)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


@pytest.fixture(scope="module")
def bad_root(tmp_path_factory, demo_root) -> Path:
    """A copy of the demo dataset named ``mini`` whose train.csv has a malformed CIF in row 3."""
    root = tmp_path_factory.mktemp("bad")
    d = root / "mini"
    d.mkdir()
    src = Path(demo_root) / "demo_synthetic_perovskites"
    for split in ("train", "val", "test"):
        df = pd.read_csv(src / f"{split}.csv")
        if split == "train":
            df.loc[3, "cif"] = "data_broken\n_cell_length_a 3.9\n"
        df.to_csv(d / f"{split}.csv", index=False)
    return root


# ------------------------------------------------------------------------------------------- --on-error skip
def test_train_stops_at_a_bad_row_with_one_line(bad_root, tmp_path, capsys):
    rc, out, err = _run(["train", "--dataset", "mini", "--data-root", str(bad_root), "--config", "tiny",
                         "--max-epochs", "1", "--no-progress", "--out", str(tmp_path / "r")], capsys)
    assert rc == 2
    assert "train.csv: row 3" in err and "--on-error skip" in err and "Traceback" not in err


def test_train_on_error_skip_reports_the_skipped_rows(bad_root, tmp_path, capsys):
    rc, out, err = _run(["train", "--dataset", "mini", "--data-root", str(bad_root), "--config", "tiny",
                         "--max-epochs", "1", "--no-progress", "--on-error", "skip", "--out", str(tmp_path / "r"),
                         "--set", "train.batch_size=16", "train.limit_val=8"], capsys)
    assert rc == 0, err
    assert "skipped 1 bad rows" in out and "skipped row 3 (material_id=" in out
    assert (tmp_path / "r" / "best.ckpt").is_file()


def test_unknown_set_key_is_one_line(demo_root, tmp_path, capsys):
    rc, out, err = _run(["train", "--dataset", "demo", "--data-root", str(demo_root), "--config", "tiny",
                         "--max-epochs", "1", "--out", str(tmp_path / "r"), "--set", "data.on_error=skip"], capsys)
    assert rc == 2 and "unknown config key 'data.on_error'" in err and "Traceback" not in err


# ------------------------------------------------------------------------------------------- evaluate
@pytest.mark.parametrize("content", ["", "not an xyz file\n"])
def test_evaluate_refuses_empty_or_unreadable_samples_at_once(tmp_path, capsys, content):
    f = tmp_path / "samples.extxyz"
    f.write_text(content)
    out = tmp_path / "ev"
    rc, _, err = _run(["evaluate", "--task", "gen", "--samples", str(f), "--dataset", "perov_5", "--out",
                       str(out)], capsys)
    assert rc == 2 and "nothing to evaluate" in err and str(f) in err
    assert not (out / "metrics.json").exists()


def test_evaluate_missing_samples_and_unknown_dataset(tmp_path, capsys):
    rc, _, err = _run(["evaluate", "--task", "gen", "--samples", str(tmp_path / "nope"), "--dataset", "perov_5"],
                      capsys)
    assert rc == 2 and "nope" in err
    rc, _, err = _run(["evaluate", "--task", "gen", "--samples", str(tmp_path), "--dataset", "perov_7"], capsys)
    assert rc == 2 and "--dataset perov_7" in err and "demo" in err


def test_evaluate_accepts_the_demo_dataset(demo_root):
    from dpcdvae.data import DEMO_NAME
    from dpcdvae.eval.evaluate import resolve_eval_dataset

    assert resolve_eval_dataset("demo", str(demo_root)) == (DEMO_NAME, "perov_5", str(demo_root))
    assert resolve_eval_dataset("Perov-5") == ("perov_5", "perov_5", None)


# ------------------------------------------------------------------------------------------- data info
def test_data_info_checks_rows_and_fails_on_a_bad_one(bad_root, capsys):
    rc, out, _ = _run(["data", "info", "mini", "--data-root", str(bad_root)], capsys)
    assert rc == 1
    assert "train.csv: row 3" in out and "NOT USABLE" in out
    rc, out, _ = _run(["data", "info", "mini", "--data-root", str(bad_root), "--json"], capsys)
    info = json.loads(out)
    assert info["ok"] is False and [r[0] for r in info["splits"]["train"]["bad_rows"]] == [3]
    assert info["splits"]["val"]["checked"] == DEMO_SIZES[1] and info["splits"]["val"]["bad_rows"] == []


@pytest.mark.parametrize("content, needle", [("", "file is empty"), ("material_id,cif\n", "no data rows")])
def test_data_info_fails_on_an_unusable_file(bad_root, tmp_path, capsys, content, needle):
    d = tmp_path / "x"
    d.mkdir()
    (d / "train.csv").write_text(content)
    rc, out, _ = _run(["data", "info", "x", "--data-root", str(tmp_path)], capsys)
    assert rc == 1 and needle in out and "UNUSABLE" in out


def test_data_info_passes_a_good_dataset(demo_root, capsys):
    rc, out, _ = _run(["data", "info", "demo_synthetic_perovskites", "--data-root", str(demo_root)], capsys)
    assert rc == 0 and f"all {DEMO_SIZES[0]} rows checked: ok" in out


def test_row_limit_is_reported_with_the_file_rows(demo_root):
    from dpcdvae.data import load_split
    from dpcdvae.data.dataset import split_count_line

    ds = load_split("demo_synthetic_perovskites", "train", root=demo_root, graph="none", limit=10, progress=False)
    assert split_count_line(ds) == f"10 crystals (the first 10 of {DEMO_SIZES[0]} rows: row limit)"
    full = load_split("demo_synthetic_perovskites", "train", root=demo_root, graph="none", progress=False)
    assert split_count_line(full) == f"{DEMO_SIZES[0]} crystals of {DEMO_SIZES[0]} rows"


# ------------------------------------------------------------------------------------------- one validity
def _sample_output(structures):
    from dpcdvae.models import SampleOutput

    n = len(structures)
    return SampleOutput(structures=list(structures), frac_coords=torch.zeros(0, 3), atom_types=torch.zeros(0),
                        lengths=torch.tensor([s.lattice.abc for s in structures], dtype=torch.float32),
                        angles=torch.tensor([s.lattice.angles for s in structures], dtype=torch.float32),
                        num_atoms=torch.tensor([len(s) for s in structures]), flags=[""] * n,
                        ids=[f"gen-{i}" for i in range(n)])


def _crystals():
    from pymatgen.core import Lattice, Structure

    rocksalt = Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    close = Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.0005, 0, 0]])  # 0.003 A apart
    nacl2 = Structure(Lattice.cubic(5.64), ["Na", "Cl", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5], [0, 0.5, 0.5]])
    return rocksalt, close, nacl2


def test_samples_json_carries_the_papers_validity(tmp_path):
    from dpcdvae.io import SampleWriter

    out = _sample_output(_crystals())
    w = SampleWriter(tmp_path / "s")
    w.add(out)
    data = json.loads((tmp_path / "s" / "samples.json").read_text())
    valid = [c["valid"] for c in data["crystals"]]
    assert valid == [True, False, False] and data["n_valid"] == 1 and data["n_decoded"] == 3
    c = data["crystals"]
    assert c[1]["struct_valid"] is False and "apart" in c[1]["invalid_reason"]
    assert c[2]["struct_valid"] is True and c[2]["comp_valid"] is False and "composition" in c[2]["invalid_reason"]
    assert c[0]["invalid_reason"] is None
    assert "0.5 A" in data["validity"]
    assert out.valid_mask == [True, False, False] and out.decoded_mask == [True, True, True]


def test_pictures_mark_invalid_crystals():
    import matplotlib

    matplotlib.use("Agg")
    from dpcdvae.viz import plot_samples

    fig = plot_samples(_sample_output(_crystals()), 3)
    titles = [ax.get_title() for ax in fig.axes]
    assert sum("INVALID" in t for t in titles) == 2 and "INVALID" not in titles[0]
    assert "1/3 valid" in fig._suptitle.get_text()


# ------------------------------------------------------------------------------------------- checkpoints
def test_stale_temps_are_removed_and_resume_falls_back_to_best(demo_root, tmp_path, capsys):
    from dpcdvae.train import train

    out = tmp_path / "run"
    train("demo_synthetic_perovskites", "tiny", out=out, overrides=OV, root=str(demo_root), max_epochs=1,
          progress=False)
    (out / "last.ckpt").unlink()  # a kill during the first last.ckpt write
    (out / ".last.ckpt.k9x.tmp").write_bytes(b"half")
    (out / ".best.ckpt.k9y.tmp").write_bytes(b"half")
    with open(out / "metrics.jsonl", "a") as fh:  # epoch 1 logged, then killed before its checkpoint
        fh.write(json.dumps({"epoch": 1, "step": 99}) + "\n")
    capsys.readouterr()
    train("demo_synthetic_perovskites", "tiny", out=out, overrides=OV, root=str(demo_root), max_epochs=2,
          resume=True, progress=False)
    said = capsys.readouterr().out
    assert "resuming from" in said and "best.ckpt" in said and "removed .last.ckpt.k9x.tmp" in said
    assert not list(out.glob(".*.tmp"))
    epochs = [json.loads(x)["epoch"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [0, 1]
    assert json.loads((out / "metrics.jsonl").read_text().splitlines()[1])["step"] != 99


# ------------------------------------------------------------------------------------------- strict JSON
def test_strict_json_has_no_bare_nan():
    import numpy as np

    from dpcdvae.io import strict_json_dumps

    text = strict_json_dumps({"a": math.nan, "b": [1.0, math.inf], "c": np.float32(2.5), "d": np.int64(3),
                              "e": torch.tensor(1.5)})

    def refuse(c):
        raise ValueError(c)

    assert json.loads(text, parse_constant=refuse) == {"a": None, "b": [1.0, None], "c": 2.5, "d": 3, "e": 1.5}


# ------------------------------------------------------------------------------------------- quiet logs
def test_progress_in_a_file_is_lines_not_redraws(monkeypatch):
    from dpcdvae.utils.progress import progress_bar

    monkeypatch.setenv("DPCDVAE_PROGRESS_INTERVAL", "3600")
    buf = io.StringIO()
    for _ in progress_bar(range(500), desc="work", file=buf):
        pass
    for _ in progress_bar(range(3), desc="outer", file=buf):  # nested bars move the cursor: no escapes either
        for _ in progress_bar(range(3), desc="inner", leave=False, file=buf):
            pass
    text = buf.getvalue()
    assert "\r" not in text and "\x1b" not in text
    text = text.split("outer")[0]
    lines = text.strip().splitlines()
    assert 1 <= len(lines) <= 2 and lines[-1].startswith("work: 100%") and "500/500" in lines[-1]


def test_training_log_is_quiet(demo_root, tmp_path):
    cmd = [sys.executable, "-m", "dpcdvae.cli", "train", "--dataset", "demo", "--data-root", str(demo_root),
           "--config", "tiny", "--max-epochs", "2", "--out", str(tmp_path / "r"),
           "--set", "train.batch_size=16", "train.limit_val=8"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    log = r.stdout + r.stderr
    for noise in ("litlogger", "GPU available", "TPU available", "exists and is not empty", "LeafSpec", "\r"):
        assert noise not in log, noise
    assert "[dpcdvae] epoch 1 (step" in log and "val_loss" in log and "[dpcdvae] device: cpu" in log


# ------------------------------------------------------------------------------------------- --symprec
def test_symprec_writes_symmetrised_cifs_and_p1_by_default(tmp_path):
    from dpcdvae.io import SampleWriter

    rocksalt = _crystals()[0].copy()
    rocksalt.make_supercell([1, 1, 2])  # 4 atoms in P1 coordinates
    p1 = SampleWriter(tmp_path / "p1")
    p1.add(_sample_output([rocksalt]))
    sym = SampleWriter(tmp_path / "sym", symprec=0.1)
    sym.add(_sample_output([rocksalt]))
    p1_text = (tmp_path / "p1" / "cif" / "gen-0.cif").read_text()
    sym_text = (tmp_path / "sym" / "cif" / "gen-0.cif").read_text()
    # Na at 0, Cl at the body centre: the CsCl structure, Pm-3m; the supercell doubles c
    assert "_symmetry_space_group_name_H-M   'P 1'" in p1_text and "Pm-3m" not in p1_text
    assert "_symmetry_space_group_name_H-M   Pm-3m" in sym_text
    assert sym.records[0]["spacegroup"] == "Pm-3m" and "spacegroup" not in p1.records[0]


def test_symprec_must_be_positive(tmp_path, capsys):
    rc, _, err = _run(["sample", "--checkpoint", "pretrained:perov_5", "--symprec", "0", "--out",
                       str(tmp_path / "o")], capsys)
    assert rc == 2 and "--symprec 0" in err


def test_reconstruct_on_error_skip_lists_the_skipped_rows(bad_root, tmp_path, capsys):
    from dpcdvae.train import train

    ck = train("mini", "tiny", out=tmp_path / "run", overrides={**OV, "train.limit_val": 4}, root=str(bad_root),
               max_epochs=1, progress=False, on_error="skip")["best"]
    argv = ["reconstruct", "--checkpoint", ck, "--dataset", "mini", "--data-root", str(bad_root), "--split", "train",
            "--limit", "6", "--sampler", "strided_eq7", "--steps", "3", "--no-metrics", "--out", str(tmp_path / "r")]
    rc, out, err = _run(argv, capsys)
    assert rc == 2 and "row 3" in err
    rc, out, err = _run(argv + ["--on-error", "skip"], capsys)
    assert rc == 0, err
    res = json.loads(out.strip().splitlines()[-1])
    assert res["n"] == 5 and [r["row"] for r in res["skipped_rows"]] == [3]


def test_raw_weights_on_a_shipped_model_is_refused(tmp_path, capsys):
    rc, _, err = _run(["reconstruct", "--checkpoint", "pretrained:carbon_24", "--raw-weights", "--limit", "2",
                       "--out", str(tmp_path / "o")], capsys)
    assert rc == 2 and "one set of weights" in err
