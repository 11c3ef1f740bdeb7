"""The paper's transcribed numbers and the side-by-side tables."""

import pytest

from dpcdvae.eval.reference import (CITATION, REFERENCE, SOURCE, TABLE_METRICS, get_reference, models,
                                    source)
from dpcdvae.eval.tables import compare_table, paper_table, render_markdown, render_text


def test_row_counts_and_keys():
    assert len(models("I", "perov_5")) == 6 and len(models("S1", "mp_20")) == 4
    assert len(models("II", "carbon_24")) == 7 and models("III", "carbon_24") == ["CDVAE", "CDVAE+Fourier",
                                                                                  "DP-CDVAE"]
    for (t, d, m), row in REFERENCE.items():
        assert set(row) == set(TABLE_METRICS[t]), (t, d, m)
        assert (t, d, m) in SOURCE
    assert "Pakornchote" in CITATION and "2023" in CITATION


def test_spot_values():
    assert get_reference("I", "perov_5", "DP-CDVAE") == {"match_rate": 90.04, "delta_rms": 0.0212}
    assert get_reference("I", "mp_20", "FTCP")["delta_rms"] == 0.1593
    assert get_reference("S1", "carbon_24", "DP-CDVAE+N_a+GINE") == {"match_rate": 34.68, "delta_rms": 0.3212}
    r = get_reference("II", "Carbon-24", "P-G-SchNet")
    assert r["w1_eform"] == 134.7 and r["comp_validity"] is None and r["w1_n_elem"] is None
    assert get_reference("II", "mp_20", "DP-CDVAE+Na+GINE")["cov_r"] == 95.51
    assert get_reference("II", "perov_5", "CDVAE")["w1_eform"] == 0.0264
    assert get_reference("III", "carbon_24", "DP-CDVAE") == {"match_rate": 64.0, "delta_rms": 0.0141,
                                                            "dV_rms": 0.0158, "dE_rms": 400.7}
    assert get_reference("III", "carbon_24", "CDVAE+Fourier")["dE_rms"] == 494.4
    assert source("I", "perov_5", "CDVAE") == "quoted from [8] via DP-CDVAE paper"
    assert source("II", "mp_20", "G-SchNet") == "quoted from [8] via DP-CDVAE paper"
    assert source("II", "mp_20", "DP-CDVAE") == "DP-CDVAE paper"
    with pytest.raises(KeyError):
        get_reference("I", "perov_5", "NoSuchModel")


def test_compare_table_deltas_and_rendering():
    ours = {"struct_validity": 99.0, "comp_validity": 97.07, "cov_r": 99.52, "cov_p": 98.0,
            "w1_density": 0.2, "w1_eform": "unavailable: no weights", "w1_n_elem": 0.05}
    df = compare_table(ours, table="II", dataset="perov_5", model="DP-CDVAE", headers=False)
    assert list(df.index)[-2:] == ["ours", "delta (ours - DP-CDVAE)"]
    d = df.loc["delta (ours - DP-CDVAE)"]
    assert d["struct_validity"] == pytest.approx(-1.0)
    assert d["w1_density"] == pytest.approx(0.2 - 0.1807)
    assert d["w1_eform"] == "n/a"
    assert df.loc["ours", "w1_eform"] == "unavailable: no weights"
    assert df.loc["CDVAE (paper)", "source"] == "quoted from [8] via DP-CDVAE paper"
    txt = render_text(compare_table(ours, table="II", dataset="perov_5"))
    assert "COV-R (%)" in txt and "unavailable" in txt
    md = render_markdown(compare_table(ours, table="II", dataset="perov_5", all_models=False))
    assert md.startswith("| ") and "Pakornchote" in md


def test_compare_table_recon_and_missing_metrics():
    df = compare_table({"match_rate": 50.0, "delta_rms": float("nan")}, table="I", dataset="carbon_24",
                       headers=False, all_models=False)
    assert df.loc["delta (ours - DP-CDVAE)", "match_rate"] == pytest.approx(50.0 - 45.57)
    assert df.loc["ours", "delta_rms"] is None
    p = paper_table("II", "carbon_24")
    assert p.loc["CDVAE", "comp_validity"] is None


def test_public_api_resolves():
    import dpcdvae.eval as ev

    for name in ev.__all__:
        assert getattr(ev, name) is not None, name
    with pytest.raises(AttributeError):
        ev.no_such_thing  # noqa: B018
