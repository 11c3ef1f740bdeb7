"""`dpcdvae data info|download|demo` via dpcdvae.cli.data.add_parser on a parser built here."""
from __future__ import annotations

import argparse
import json
import urllib.error

import pytest

from dpcdvae.data import DEMO_NAME, locator
from dpcdvae.cli.data import add_parser


def run(argv, capsys):
    parser = argparse.ArgumentParser(prog="dpcdvae")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    rc = args.func(args)
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_demo_then_info_json(tmp_path, isolated_cache, capsys):
    rc, out, _ = run(["data", "demo", "--root", str(tmp_path), "--sizes", "14", "3", "3"], capsys)
    assert rc == 0 and "SYNTHETIC" in out and str(tmp_path / DEMO_NAME) in out
    rc, out, _ = run(["data", "info", DEMO_NAME, "--root", str(tmp_path), "--json"], capsys)
    info = json.loads(out)
    assert rc == 0 and info["found"] and info["synthetic"] and info["property"] == "heat_ref"
    assert [info["splits"][s]["rows"] for s in ("train", "val", "test")] == [14, 3, 3]
    tr = info["splits"]["train"]
    assert tr["atoms_min"] == tr["atoms_max"] == 5 and tr["unparsable_cifs"] == 0
    assert set(tr["property_stats"]) >= {"mean", "std", "min", "max"}
    rc, out, _ = run(["data", "info", DEMO_NAME, "--root", str(tmp_path)], capsys)
    assert rc == 0 and "SYNTHETIC" in out and "train" in out


def test_info_absent_dataset(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DPCDVAE_DATA", str(tmp_path))
    rc, out, _ = run(["data", "info", "mp_20", "--json"], capsys)
    info = json.loads(out)
    assert rc == 1 and not info["found"] and "dpcdvae data download mp_20" in info["message"]
    assert all(not s["present"] and s["rows"] == 0 for s in info["splits"].values())
    rc, _, err = run(["data", "info", "mp_20"], capsys)
    assert rc == 1 and "not found" in err


@pytest.mark.shared_data
def test_info_perov5_and_carbon24(shared_data_dir, capsys):
    rc, out, _ = run(["data", "info", "perov_5", "--root", str(shared_data_dir), "--json"], capsys)
    info = json.loads(out)
    assert rc == 0
    assert [info["splits"][s]["rows"] for s in ("train", "val", "test")] == [11356, 3787, 3785]
    assert info["n_elements"] == 56 and info["splits"]["test"]["atoms_max"] == 5
    assert info["splits"]["train"]["property_stats"]["mean"] == pytest.approx(1.40322137, abs=1e-6)
    rc, out, _ = run(["data", "info", "carbon_24", "--root", str(shared_data_dir)], capsys)
    assert rc == 0 and "train  absent (0 rows)" in out


def test_download_offline(tmp_path, monkeypatch, capsys):
    def offline(url, timeout):
        raise urllib.error.URLError(OSError(101, "Network is unreachable"))

    monkeypatch.setattr(locator, "_open_url", offline)
    rc, _, err = run(["data", "download", "carbon_24", "--dest", str(tmp_path), "--timeout", "1"], capsys)
    assert rc == 1 and "offline" in err and "DPCDVAE_DATA" in err


def test_data_without_subcommand_prints_help(capsys):
    rc, _, err = run(["data"], capsys)
    assert rc == 2 and "info" in err
