"""The README's main job, `dpcdvae demo`, end to end on the synthetic demo data with a tiny budget: it trains,
reconstructs, generates, writes CIFs, a PNG picture and a summary with the match rate."""
from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.mark.slow
def test_demo_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("DPCDVAE_CACHE", str(tmp_path / "cache"))
    from dpcdvae.cli import main

    out = tmp_path / "demo"
    rc = main(["demo", "--out", str(out), "--dataset", "demo", "--config", "tiny", "--train-minutes", "0.1",
               "--n-recon", "4", "--n-gen", "3", "--steps", "5"])
    assert rc == 0
    summaries = list(out.rglob("summary.json"))
    summary = json.loads([p for p in summaries if p.parent.parent == out or p.parent == out][0].read_text())
    assert summary["synthetic"] is True and summary["sampler"] == "strided_eq7" and summary["steps"] == 5
    assert summary["recon_n"] == 4 and summary["generated_n"] == 3
    assert 0.0 <= summary["recon_match_rate"] <= 100.0
    assert Path(summary["picture"]).is_file() and Path(summary["picture"]).stat().st_size > 1000
    n_cifs = sum(len(list(Path(d).glob("*.cif"))) for d in summary["cif_dirs"])
    assert n_cifs >= 1
