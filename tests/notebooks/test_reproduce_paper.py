"""`dpcdvae reproduce --paper` (dpcdvae.notebooks.paper): the plan (which rows of the paper run, which are skipped and
why), the time estimate, resuming, the summary page, and one real CI-size run of a tiny plan (slow)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dpcdvae.eval.reference import REFERENCE
from dpcdvae.notebooks import paper
from dpcdvae.notebooks import runner as nbrun

WEIGHTS = Path(paper.__file__).resolve().parents[1] / "weights"


def _fake_weights(tmp_path, cards: dict[str, dict]) -> Path:
    d = tmp_path / "weights"
    d.mkdir()
    for name, card in cards.items():
        (d / f"{name}.json").write_text(json.dumps({"name": name, "date": "2026-12-07", "commit": "abc", **card}))
        (d / f"{name}.pt").write_bytes(b"")
    return d


def _by_key(plan):
    return {(r.table, r.dataset, r.model): r for r in plan.rows}


def test_table_notebooks_match_the_notebooks_metadata():
    assert paper.TABLE_NOTEBOOK == nbrun.TABLE_NOTEBOOK


def test_plan_skips_absent_data_and_unshipped_models_and_grows_with_shipped_ones(tmp_path):
    """Every row of the paper is in the plan once, with a stated status; a model named <dataset>_na is picked up as
    DP-CDVAE+Na without any code change; absent data and unshipped models are skipped, saying so."""
    wd = _fake_weights(tmp_path, {"perov_5": {"dataset": "perov_5", "model": "dpcdvae"},
                                  "perov_5_na": {"dataset": "perov_5", "model": "dpcdvae"},
                                  "carbon_24_cdvae": {"dataset": "carbon_24", "model": "cdvae"},
                                  "my_fourier": {"dataset": "carbon_24", "model": "cdvae",
                                                 "paper_model": "CDVAE+Fourier"}})
    plan = paper.build_plan(weights_dir=wd, present=lambda ds: ds == "perov_5")
    rows = _by_key(plan)
    assert sorted(rows) == sorted(REFERENCE) and len(plan.rows) == len(REFERENCE)
    assert all(r.status for r in plan.rows)
    for key in [("I", "perov_5", "DP-CDVAE"), ("S1", "perov_5", "DP-CDVAE"), ("I", "perov_5", "DP-CDVAE+Na"),
                ("S1", "perov_5", "DP-CDVAE+Na"), ("II", "perov_5", "DP-CDVAE+Na")]:
        assert rows[key].status == "run" and rows[key].job, key
    assert rows[("I", "perov_5", "DP-CDVAE+Na")].weights == "perov_5_na"
    assert rows[("I", "perov_5", "DP-CDVAE+Na")].job == rows[("S1", "perov_5", "DP-CDVAE+Na")].job  # one 03 run
    assert rows[("I", "perov_5", "DP-CDVAE+GINE")].status == "skipped: no shipped model"
    assert rows[("I", "mp_20", "DP-CDVAE")].status == "skipped: data absent; no shipped model"
    assert rows[("II", "carbon_24", "CDVAE")].status == "skipped: data absent"
    assert rows[("III", "carbon_24", "CDVAE+Fourier")].status.startswith("skipped: data absent")
    assert rows[("I", "perov_5", "FTCP")].status.startswith("not run: no implementation here")
    assert "annealed Langevin" in rows[("I", "perov_5", "CDVAE")].status  # notebook 03 cannot run CDVAE
    assert {j.stem for j in plan.jobs} == {"03_table1_reconstruction-perov_5", "03_table1_reconstruction-perov_5_na",
                                          "04_table2_generation-perov_5", "04_table2_generation-perov_5_na"}
    # every job's parameters name its shipped model; notebook 03 runs both samplers (Table I and S1)
    j = plan.job("03_table1_reconstruction-perov_5_na")
    assert j.parameters["checkpoint"] == "pretrained:perov_5_na" and j.parameters["samplers"] == ["eq7", "eq6"]

    # CI size: rows whose data are absent but whose model ships run on the SYNTHETIC demo data, saying so
    ci = _by_key(paper.build_plan(ci=True, weights_dir=wd, present=lambda ds: ds == "perov_5"))
    assert ci[("II", "carbon_24", "CDVAE")].status.startswith("run (CI: on the SYNTHETIC demo data")
    assert ci[("III", "carbon_24", "CDVAE+Fourier")].status.startswith("skipped: ")  # no DP-CDVAE for notebook 05
    assert ci[("I", "mp_20", "DP-CDVAE")].status == "skipped: data absent; no shipped model"


def test_plan_of_the_shipped_models_without_mp20():
    plan = paper.build_plan(present=lambda ds: ds != "mp_20")
    runs = {(r.table, r.dataset, r.model) for r in plan.rows if r.runs}
    assert runs == {("I", "perov_5", "DP-CDVAE"), ("S1", "perov_5", "DP-CDVAE"), ("I", "carbon_24", "DP-CDVAE"),
                    ("S1", "carbon_24", "DP-CDVAE"), ("II", "perov_5", "DP-CDVAE"), ("II", "carbon_24", "DP-CDVAE"),
                    ("II", "carbon_24", "CDVAE"), ("III", "carbon_24", "DP-CDVAE"), ("III", "carbon_24", "CDVAE")}
    t3 = plan.job("05_table3_ground_state-carbon_24")
    assert t3.parameters["checkpoint"] == "pretrained:carbon_24"
    assert t3.parameters["baseline_checkpoints"] == {"CDVAE": "pretrained:carbon_24_cdvae"}
    cd = plan.job("04_table2_generation-carbon_24_cdvae").parameters
    assert cd["sampler"] == "langevin" and cd["steps"] == 20
    assert all(r.status.startswith("skipped: data absent") for r in plan.rows if r.dataset == "mp_20"
               and r.model in paper.IMPLEMENTED)
    text = paper.format_plan(plan)
    assert "estimated time" in text and "ESTIMATE" in text and "skipped: data absent" in text
    # --only keeps the matching rows
    only = paper.build_plan(present=lambda ds: True, only=["II:carbon_24:cdvae", "III"])
    assert {(r.table, r.dataset, r.model) for r in only.rows} == {
        ("II", "carbon_24", "CDVAE"), ("III", "carbon_24", "CDVAE"), ("III", "carbon_24", "CDVAE+Fourier"),
        ("III", "carbon_24", "DP-CDVAE")}


def test_estimate_scales_with_sample_count_and_threads():
    """The estimate (seconds) is the overhead plus the work, and the work is proportional to the crystals sampled
    (per-crystal costs of COSTS) and inversely to the threads."""
    plan = paper.build_plan(present=lambda ds: True, only=["I:perov_5:DP-CDVAE", "II:carbon_24:DP-CDVAE"])
    j1 = plan.job("03_table1_reconstruction-perov_5")
    over = paper.NOTEBOOK_OVERHEAD_S

    def work(job, threads=1, **p):
        job = paper.Job(job.stem, job.notebook, {**job.parameters, **p}, dataset=job.dataset)
        return paper.estimate_job_seconds(job, threads) - over

    assert work(j1, n_test=200) == pytest.approx(2 * work(j1, n_test=100))
    assert work(j1, n_test=100) == pytest.approx(100 * paper.COSTS["sample_s_per_crystal"]["perov_5"])  # Eq. 7 only
    assert work(j1, n_test=100, threads=2) == pytest.approx(work(j1, n_test=100) / 2)
    # whole test split by default: 3785 Perov-5 crystals, Eq. 7 and Eq. 6
    assert work(j1, n_test=None, samplers=["eq7", "eq6"]) == pytest.approx(2 * 3785 * 1.1)
    j2 = plan.job("04_table2_generation-carbon_24")
    w1, w2 = work(j2, n_generate=1000, n_test=1), work(j2, n_generate=2000, n_test=1)
    assert w2 == pytest.approx(2 * w1, rel=1e-3) and w1 > 1000 * paper.COSTS["sample_s_per_crystal"]["carbon_24"]
    assert work(j2, n_generate=1000, n_test=1, sampler="strided_eq7", steps=100) < w1 / 5


def _fake_runner(fail: set, calls: list):
    def run(name, out, params, notebooks=None, kernel=None, timeout=0, stem=None, expect=None):
        calls.append(stem)
        out = Path(out)
        (out / f"{stem}.ipynb").write_text("{}")
        (out / f"{stem}.html").write_text("<html></html>")
        work = Path(params["work_dir"]) / name
        work.mkdir(parents=True, exist_ok=True)
        if stem in fail:
            return {"name": name, "ok": False, "wall_s": 0.1, "html": str(out / f"{stem}.html"),
                    "error": {"cell": 3, "ename": "ValueError", "evalue": "boom", "source": "x"},
                    "checks": {"ok": False, "missing": [], "errors": [], "images": 0}}
        for t, prefix in (("I", "table1_"), ("S1", "tableS1_"), ("II", "table2_")):
            (work / f"{prefix}{params['dataset']}.json").write_text(json.dumps(
                {"table": t, "ours": {"match_rate": 12.5, "delta_rms": 0.25, "cov_r": 50.0, "n": 7}}))
        return {"name": name, "ok": True, "wall_s": 0.1, "html": str(out / f"{stem}.html"),
                "checks": {"ok": True, "missing": [], "errors": [], "images": 1}}
    return run


def test_run_resumes_records_failures_and_writes_the_summary(tmp_path, capsys):
    plan = paper.build_plan(present=lambda ds: ds == "perov_5", only=["I:perov_5", "S1:perov_5", "II:perov_5"])
    assert [j.stem for j in plan.jobs] == ["03_table1_reconstruction-perov_5", "04_table2_generation-perov_5"]
    out, calls = tmp_path / "out", []
    recs = paper.run_plan(plan, out, runner=_fake_runner({"03_table1_reconstruction-perov_5"}, calls))
    assert calls == [j.stem for j in plan.jobs]  # the failing first job did not stop the second
    assert [r["ok"] for r in recs] == [False, True]
    log = capsys.readouterr().out
    assert "(1/2) start 03_table1_reconstruction-perov_5" in log and "FAILED 03_table1" in log
    assert "(2/2) done 04_table2_generation-perov_5" in log and "elapsed" in log
    md, html = paper.write_summary(plan, out)
    text = md.read_text()
    assert "| II | perov_5 | DP-CDVAE | perov_5 | [ran](04_table2_generation-perov_5.html) | 7 |" in text
    assert "99.52 \\| 50.00" in text  # COV-R: paper | ours
    assert "FAILED" in text and "## Claims" in text and "| # | claim (paper's words, line) |" in text
    assert "<table>" in html.read_text() and '<table class="claims">' in html.read_text()

    # second invocation: the done job is skipped, the failed one runs again
    calls.clear()
    paper.run_plan(plan, out, runner=_fake_runner(set(), calls))
    assert calls == ["03_table1_reconstruction-perov_5"]
    assert "04_table2_generation-perov_5: done, skipped" in capsys.readouterr().out
    calls.clear()
    paper.run_plan(plan, out, runner=_fake_runner(set(), calls))
    assert calls == []
    # a changed parameter changes the fingerprint: that job reruns; --force reruns everything
    plan2 = paper.build_plan(present=lambda ds: ds == "perov_5", only=["I:perov_5", "S1:perov_5", "II:perov_5"],
                             parameters={"n_generate": 5})
    assert paper.fingerprint(plan2.jobs[1]) != paper.fingerprint(plan.jobs[1])
    paper.run_plan(plan2, out, runner=_fake_runner(set(), calls))
    assert calls == [j.stem for j in plan2.jobs]  # n_generate is a parameter of every job
    calls.clear()
    paper.run_plan(plan, out, force=True, runner=_fake_runner(set(), calls))
    assert calls == [j.stem for j in plan.jobs]


def test_summary_page_holds_the_claims_table(tmp_path):
    """The summary's Claims section is the claims table of dpcdvae.eval.claims, from the job records: Eq. 7 vs Eq. 6
    on the same 40 crystals (per-crystal records -> paired SE) holds; a shipped model not run yet, an unshipped one
    and absent data are "not measured" with the reason; claims.json holds the rows."""
    wd = _fake_weights(tmp_path, {"perov_5": {"dataset": "perov_5", "model": "dpcdvae"},
                                  "perov_5_na": {"dataset": "perov_5", "model": "dpcdvae"}})
    plan = paper.build_plan(weights_dir=wd, present=lambda ds: ds == "perov_5")
    ids = [f"p{i}" for i in range(40)]

    def run(name, out, params, notebooks=None, kernel=None, timeout=0, stem=None, expect=None):
        out = Path(out)
        (out / f"{stem}.ipynb").write_text("{}")
        (out / f"{stem}.html").write_text("<html></html>")
        work = Path(params["work_dir"]) / name
        work.mkdir(parents=True, exist_ok=True)
        if stem == "03_table1_reconstruction-perov_5":  # only DP-CDVAE's Table I run saved its tables
            for t, prefix, k in (("I", "table1_", 38), ("S1", "tableS1_", 20)):
                (work / f"{prefix}perov_5.json").write_text(json.dumps(
                    {"table": t, "synthetic": False, "ours": {"match_rate": 100 * k / 40, "delta_rms": 0.05, "n": 40},
                     "per_crystal": {"id": ids, "matched": [i < k for i in range(40)], "rms": [0.05] * 40}}))
        return {"name": name, "ok": True, "wall_s": 0.1, "html": str(out / f"{stem}.html"),
                "checks": {"ok": True, "missing": [], "errors": [], "images": 1}}

    out = tmp_path / "out"
    paper.run_plan(plan, out, runner=run)
    md, html = paper.write_summary(plan, out)
    text = md.read_text()
    claims = text[text.index("## Claims"):]
    row = next(ln for ln in claims.splitlines() if ln.startswith("| 11a |"))
    assert "95.00 vs 50.00 (+45.00)" in row and "paired SE over 40 common crystals" in row
    assert "| holds (measured for DP-CDVAE (Table I vs S1); not measured for DP-CDVAE+Na" in row
    assert "Table I not measured yet for perov_5_na" in row and "no shipped model perov_5_gine" in row
    assert "| not measured: Carbon-24 data absent |" in claims  # the plan found Carbon-24 absent
    assert "- [1] Table I, Perov-5, DP-CDVAE, match_rate = 95.00 %" in claims
    saved = json.loads((out / "claims.json").read_text())
    assert saved["counts"]["holds"] >= 1 and len(saved["rows"]) == sum(saved["counts"].values())
    assert '<table class="claims">' in html.read_text() and "paired SE over 40" in html.read_text()


def test_command_line(capsys):
    from dpcdvae.cli import main

    assert main(["reproduce", "--paper", "--dry-run", "--only", "I:perov_5"]) == 0
    out = capsys.readouterr().out
    assert "[reproduce --paper] plan (full size" in out and "estimated time" in out
    with pytest.raises(SystemExit) as exc:
        main(["reproduce", "--dataset", "perov_5"])
    assert exc.value.code == 2 and "the following arguments are required: --table" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["reproduce", "--table", "I", "--dataset", "perov_5", "--ci"])
    assert "--ci: only with --paper" in capsys.readouterr().err


@pytest.mark.slow
def test_reproduce_paper_ci_runs_resumes_and_summarises(tmp_path, capsys):
    """`reproduce --paper --ci` on a tiny plan (Table I, Perov-5, the shipped perov_5: the real test split when the
    data are here, else the SYNTHETIC demo set): the plan is printed, the row runs, a second invocation skips it,
    the summary page has the row with our number."""
    out = tmp_path / "reports"
    r = paper.reproduce_paper(out=out, ci=True, only=["I:perov_5:DP-CDVAE"])
    log = capsys.readouterr().out
    assert r["ok"], log[-4000:]
    assert "plan (CI size" in log and "estimated time" in log and "(1/1) start 03_table1_reconstruction-perov_5" in log
    stem = r["plan"].jobs[0].stem
    assert (out / f"{stem}.ipynb").is_file() and (out / f"{stem}.html").is_file()
    rec = json.loads((out / "paper_runs" / f"{stem}.json").read_text())
    assert rec["ok"] and rec["metrics"]["I"]["ours"]["n"] == 12
    assert len(rec["metrics"]["I"]["per_crystal"]["matched"]) == 12  # what the claims table pairs crystals by
    text = (out / "paper_summary.md").read_text()
    row = next(ln for ln in text.splitlines() if ln.startswith("| I | perov_5 | DP-CDVAE |"))
    assert "ran" in row and "90.04 \\| " in row and "90.04 \\| -" not in row
    assert "## Claims" in text and (out / "claims.json").is_file()
    r2 = paper.reproduce_paper(out=out, ci=True, only=["I:perov_5:DP-CDVAE"])
    assert r2["ok"] and r2["records"][0]["skipped"] and "done, skipped" in capsys.readouterr().out
    print(f"reproduce --paper --ci (one row) wall time: {r['wall_s']} s")


def test_save_table_writes_our_numbers_as_json(tmp_path):
    """nb.save_table writes <name>.json with our numbers by metric key (what the summary page reads), here for a
    Table III frame of two models."""
    from dpcdvae.notebooks.tables import save_table, table3_frame

    study = {"DP-CDVAE": {"metrics": {"match_rate": 64.0, "delta_rms": 0.01, "dV_rms": 0.02, "dE_rms": float("nan"),
                                      "n": 3}},
             "CDVAE": {"metrics": {"match_rate": 50.0, "delta_rms": 0.03, "dV_rms": 0.04, "dE_rms": 500.0, "n": 3}}}
    df = table3_frame(study, "chgnet")
    save_table(df, tmp_path, "table3_carbon_24", footer=df.attrs.get("footer", ""))
    saved = json.loads((tmp_path / "table3_carbon_24.json").read_text())
    assert saved["table"] == "III" and saved["calculator"] == "chgnet"
    assert saved["ours"]["CDVAE"] == {"match_rate": 50.0, "delta_rms": 0.03, "dV_rms": 0.04, "dE_rms": 500.0, "n": 3,
                                      "synthetic": False}
    assert saved["ours"]["DP-CDVAE"]["dE_rms"] is None  # NaN written as null
    assert (tmp_path / "table3_carbon_24.md").is_file() and (tmp_path / "table3_carbon_24.csv").is_file()


def test_saved_tables_hold_what_the_claims_table_needs(tmp_path):
    """Table I: each crystal's outcome (id, matched, rms) for a paired SE; Table III: each relaxed structure's dV
    and dE for a bootstrap, and the Fig. S2 mode bin."""
    from types import SimpleNamespace

    from dpcdvae.notebooks.choice import DataChoice
    from dpcdvae.notebooks.tables import paper_vs_ours, save_table, table3_frame

    data = DataChoice(name="perov_5", synthetic=False, train_split="train", paper_dataset="perov_5", label="Perov-5")
    metrics = {"match_rate": 50.0, "delta_rms": 0.1, "n_targets": 2,
               "per_structure": [{"material_id": "a", "matched": True, "rms_dist": 0.1},
                                 {"material_id": "b", "matched": False, "rms_dist": None}]}
    save_table(paper_vs_ours(metrics, "I", data), tmp_path, "table1_perov_5")
    saved = json.loads((tmp_path / "table1_perov_5.json").read_text())
    assert saved["per_crystal"] == {"id": ["a", "b"], "matched": [True, False], "rms": [0.1, None]}
    assert saved["ours"]["n"] == 2

    def relaxed(dv, de, ok=True):
        return SimpleNamespace(ok=ok, delta_volume_per_atom=dv, delta_energy_mev=lambda energy="enthalpy": de)

    study = {"DP-CDVAE": {"metrics": {"match_rate": 50.0, "delta_rms": 0.01, "dV_rms": 0.02, "dE_rms": 100.0, "n": 3,
                                      "dE_mode_bin": [64.0, 128.0]},
                          "results": [relaxed(0.01, 90.0), relaxed(-0.03, 110.0), relaxed(9.9, 9.9, ok=False)]}}
    save_table(table3_frame(study, "chgnet"), tmp_path, "table3_carbon_24")
    saved = json.loads((tmp_path / "table3_carbon_24.json").read_text())
    assert saved["per_structure"]["DP-CDVAE"] == {"dV": [0.01, -0.03], "dE": [90.0, 110.0],
                                                  "dE_mode_bin": [64.0, 128.0]}
