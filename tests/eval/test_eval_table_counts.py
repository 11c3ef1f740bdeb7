"""Issue 28, item 5b: ``evaluate --task gen`` prints our sample count and the paper's (10,240) in the table itself,
and labels the delta row not comparable when the counts differ."""
from __future__ import annotations

from dpcdvae.eval.tables import PAPER_GEN_SAMPLES, compare_table, render_text

OURS = {"struct_validity": 100.0, "comp_validity": 96.9, "cov_r": 58.0, "cov_p": 99.0, "w1_density": 0.5,
        "w1_eform": 0.3, "w1_n_elem": 0.1}


def test_small_run_names_both_counts_and_labels_the_delta():
    df = compare_table({**OURS, "n_generated": 32}, table="II", dataset="perov_5", headers=False)
    ours, delta = list(df.index)[-2:]
    assert ours == "ours (n = 32; paper n = 10,240)"
    assert delta == "delta (ours - DP-CDVAE), n 32 vs 10,240: not comparable"
    assert "sample count" in df.loc[delta, "source"]
    text = render_text(compare_table({**OURS, "n_generated": 32}, table="II", dataset="perov_5"))
    assert "n = 32" in text and "10,240" in text and "not comparable" in text


def test_paper_sized_run_has_a_plain_delta():
    df = compare_table({**OURS, "n_generated": PAPER_GEN_SAMPLES}, table="II", dataset="perov_5", headers=False)
    assert list(df.index)[-2:] == ["ours (n = 10,240; paper n = 10,240)", "delta (ours - DP-CDVAE)"]


def test_recon_table_unchanged():
    df = compare_table({"match_rate": 50.0, "n_generated": 3}, table="I", dataset="perov_5", headers=False)
    assert list(df.index)[-2:] == ["ours", "delta (ours - DP-CDVAE)"]
