"""``dpcdvae reproduce --paper``: every row of the paper's Tables I, S1, II and III that the shipped models can run,
as one resumable plan of notebook runs, with an up-front time estimate and one summary page.

The pieces, in the order the command uses them::

    plan = build_plan(ci=False)            # rows (table, dataset, paper model) -> status, shipped model, job
    print(format_plan(plan, ...))          # the plan table and the time estimate (seconds) per row and in total
    results = run_plan(plan, out)          # each job through runner.run_notebook (papermill), resumable
    write_summary(plan, out)               # out/paper_summary.md and .html: paper | ours per cell, the claims

**Rows.** The paper's rows are :data:`dpcdvae.eval.reference.REFERENCE`. A row runs when (1) this package
implements the model (DP-CDVAE and its +N_a / +GINE variants, CDVAE, CDVAE+Fourier; the paper quotes FTCP and the
G-SchNets from CDVAE's paper: "not run"), (2) the dataset's test split is on disk (``dpcdvae data info``; else
"skipped: data absent"), (3) a shipped model (``dpcdvae pretrained list``) is that model on that dataset (else
"skipped: no shipped model") and (4) the table's notebook can run it (Table I's notebook 03 runs the DDPM samplers
only, not CDVAE's annealed Langevin). Which shipped model is which paper model: the card's ``paper_model`` when it
has one, else the name ``<dataset><suffix>`` of :data:`MODEL_SUFFIX` (``perov_5_na`` is DP-CDVAE+Na on Perov-5), so
the plan grows by itself when a model ships.

**Jobs.** One notebook run serves several rows: notebook 03 computes Table I (Eq. 7) and Table S1 (Eq. 6) of one
model in one run, notebook 05 relaxes every Table III model of Carbon-24 in one run. A job's executed notebook and
HTML are ``<out>/<stem>.ipynb`` / ``.html`` (the same papermill call as ``dpcdvae reproduce --table``); its record,
``<out>/paper_runs/<stem>.json``, holds the parameter fingerprint, the outcome and the metrics the notebook saved
(``nb.save_table`` writes ``<table>.json`` beside its ``.md``). A job whose two files exist and whose record has the
current fingerprint and ``ok`` is not run again (``force=True`` reruns it).

**Claims.** The summary page ends with the claims table (:mod:`dpcdvae.eval.claims`: each claim of the paper's
text, the paper's numbers, ours from the job records here and the shipped models' cards, the difference with its
standard error, and whether it holds); ``<out>/claims.json`` holds its rows. ``dpcdvae reproduce --claims`` prints
it without running anything.

**CI size** (``ci=True``): the same rows, each job with its notebook's metadata CI parameters (a dozen crystals, a
few relaxation steps, one thread) and the shipped model; a row whose data are absent but whose model is shipped runs
on the SYNTHETIC demo data (labelled so in its status and in the page; its numbers are not comparable).

This module imports nothing heavy at import time (the command line builds its parser from the package).
"""
from __future__ import annotations

import ast
import hashlib
import html as _html
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

from ..eval.claims import LANGEVIN_MODELS, MODEL_SUFFIX, shipped_for, shipped_models
from ..utils.errors import ArgumentError
from ..utils.fileio import atomic_write_text, strict_json_dumps

__all__ = [
    "MODEL_SUFFIX", "IMPLEMENTED", "TABLE_NOTEBOOK", "TEST_SPLIT_SIZE", "COSTS", "NOTEBOOK_OVERHEAD_S", "PlanRow",
    "Job", "Plan", "shipped_models", "data_present", "build_plan", "estimate_job_seconds", "format_plan",
    "fingerprint", "run_plan", "claims_of", "write_summary", "reproduce_paper",
]

PREFIX = "[reproduce --paper]"

#: paper models this package implements (the others, FTCP and the G-SchNets, the paper quotes from CDVAE's paper);
#: :data:`MODEL_SUFFIX` (from :mod:`dpcdvae.eval.claims`): the suffix of the shipped model that is that model on a
#: dataset (``perov_5_na``); :data:`LANGEVIN_MODELS`: those that sample with annealed Langevin (CDVAE's sampler), not
#: with the DDPM samplers Eq. 6 / Eq. 7
IMPLEMENTED = tuple(MODEL_SUFFIX)
#: the notebook of each table (the same as the notebooks' metadata ``tables``; checked by the tests)
TABLE_NOTEBOOK = {"I": "03_table1_reconstruction", "S1": "03_table1_reconstruction", "II": "04_table2_generation",
                  "III": "05_table3_ground_state"}
#: what a CDVAE-family model needs in notebook 04 (Table II): annealed Langevin, 50 levels x 20 steps = 1000 network
#: calls (the protocol of the carbon_24_cdvae card)
LANGEVIN_PARAMETERS = {"sampler": "langevin", "steps": 20}
LANGEVIN_CALLS = 1000

#: test-split sizes (crystals) of CDVAE's splits, used by the estimate when a notebook reconstructs or compares with
#: the whole split (``n_test = None``)
TEST_SPLIT_SIZE = {"perov_5": 3785, "carbon_24": 2030, "mp_20": 9046, "demo": 8}

#: Measured costs behind the time estimate (seconds; one CPU thread), in one place with their sources:
#:
#: * ``sample_s_per_crystal``: seconds per crystal for 1000 network calls (Eq. 7 / Eq. 6, and CDVAE's annealed
#:   Langevin at 50 x 20) of the compact network, large batches: Perov-5 1.1 s, Carbon-24 2.0 s on one Zen 3 core
#:   (RESULTS.md "Cost here", from BENCHMARKS.md; sampling is 97-98 % of the Table I protocol). MP-20: not measured
#:   (no data here), taken as Carbon-24's (up to 20 atoms per cell vs 24). The demo set: Perov-5's (5-atom cells).
#: * ``fingerprint_per_s``: CrystalNN fingerprints per second (Table II compares generated and test crystals),
#:   Zen 3, 1 thread (BENCHMARKS.md: Perov-5 65.73, Carbon-24 30.68; MP-20 taken as Carbon-24's).
#: * ``relax_s_per_step``: seconds per structure per FIRE step of the CHGNet relaxation (Table III): BENCHMARKS.md
#:   ``bench_relax.py``, 16.18 structures/min for 30 steps of 24-atom Carbon-24 cells in 2 worker processes
#:   (Zen 5) -> 0.124 s per structure-step on 2 cores, 0.25 on one; the estimate charges every structure
#:   ``max_steps`` steps (an upper bound: most converge before).
COSTS: dict[str, dict[str, float]] = {
    "sample_s_per_crystal": {"perov_5": 1.1, "carbon_24": 2.0, "mp_20": 2.0, "demo": 1.1},
    "fingerprint_per_s": {"perov_5": 65.73, "carbon_24": 30.68, "mp_20": 30.68, "demo": 65.73},
    "relax_s_per_step": {"carbon_24": 0.25, "perov_5": 0.25, "mp_20": 0.25, "demo": 0.25},
}
#: seconds per notebook run besides its sampling (kernel start, imports, data and model loading, matching, HTML
#: export). Set from `reproduce --paper --ci` on the 2-core dev CPU (Zen 3, one thread, nice 19 beside two training
#: runs, 2026-12-07): the six CI jobs took 57-166 s (03 on Perov-5, 12 crystals x Eq. 7 + Eq. 6: 80.7 s, estimated
#: 66 s); the whole CI plan 547 s against 408 s estimated
NOTEBOOK_OVERHEAD_S = 40.0


@dataclass
class PlanRow:
    """One row of the paper: ``table`` (I, S1, II, III), ``dataset`` (perov_5 ...), ``model`` (the paper's name),
    ``weights`` (the shipped model, ``None`` when none), ``status`` ("run" or why not), ``job`` (the stem of the
    notebook run that computes it, ``None`` when skipped)."""

    table: str
    dataset: str
    model: str
    weights: Optional[str] = None
    status: str = "run"
    job: Optional[str] = None

    @property
    def runs(self) -> bool:
        return self.job is not None


@dataclass
class Job:
    """One notebook run: ``notebook`` with ``parameters`` (papermill ``-p``), written as ``<out>/<stem>.ipynb`` /
    ``.html``; ``rows`` = ``(table, dataset, model)`` it computes; ``expect``: strings its HTML must contain;
    ``models``: the shipped models it uses (their cards' date and commit enter the fingerprint)."""

    stem: str
    notebook: str
    parameters: dict
    rows: list = field(default_factory=list)
    expect: list = field(default_factory=list)
    models: dict = field(default_factory=dict)
    dataset: str = ""


@dataclass
class Plan:
    """The rows (every row of the paper, skipped ones included, in the paper's order) and the jobs that run."""

    rows: list
    jobs: list
    ci: bool = False
    threads: int = 1
    only: Optional[list] = None
    weights_dir: Optional[str] = None

    def job(self, stem: str) -> Job:
        return next(j for j in self.jobs if j.stem == stem)


# ================================================================================================================
# facts: shipped models, data on disk, notebook defaults
# ================================================================================================================
def data_present(dataset: str) -> bool:
    """True when the test split of ``dataset`` is on disk (the data locator: ``$DPCDVAE_DATA``, ``../shared/data``
    ...)."""
    from ..data.locator import available_splits

    return "test" in available_splits(dataset)


def notebook_defaults(name: str, notebooks: Optional[str] = None) -> dict:
    """The values of the ``parameters`` cell of ``notebooks/<name>.ipynb`` (the full-size defaults)."""
    from .runner import notebooks_folder

    raw = json.loads((notebooks_folder(notebooks) / f"{name}.ipynb").read_text(encoding="utf-8"))
    for cell in raw["cells"]:
        if cell["cell_type"] == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            out = {}
            for node in ast.parse("".join(cell["source"])).body:
                if isinstance(node, ast.Assign):
                    for t in node.targets:
                        if isinstance(t, ast.Name):
                            try:
                                out[t.id] = ast.literal_eval(node.value)
                            except ValueError:
                                pass
            return out
    return {}


# ================================================================================================================
# the plan
# ================================================================================================================
def _paper_rows() -> list[tuple[str, str, str]]:
    from ..eval.reference import REFERENCE, TABLES

    order = {t: i for i, t in enumerate(TABLES)}
    keys = list(REFERENCE)
    return sorted(keys, key=lambda k: (order[k[0]], k[1] != "perov_5", k[1] != "carbon_24", keys.index(k)))


def _matches(row: tuple[str, str, str], only: Optional[Sequence[str]]) -> bool:
    """``only``: items ``TABLE[:DATASET[:MODEL]]`` (``I:perov_5``, ``III``, ``II:carbon_24:CDVAE``, ``*:perov_5``)."""
    if not only:
        return True
    from ..eval.reference import canonical_model

    for item in only:
        parts = [p.strip() for p in str(item).split(":")]
        want = [parts[0].upper().removeprefix("TABLE").strip()] + parts[1:]
        have = [row[0], row[1], row[2]]
        ok = True
        for i, w in enumerate(want[:3]):
            if w in ("", "*"):
                continue
            if i == 0 and w != have[0]:
                ok = False
            elif i == 1 and w.lower().replace("-", "_") != have[1]:
                ok = False
            elif i == 2 and canonical_model(w) != have[2]:
                ok = False
        if ok:
            return True
    return False


def build_plan(ci: bool = False, only: Optional[Sequence[str]] = None, threads: int = 1,
               parameters: Optional[dict] = None, weights_dir=None,
               present: Optional[Callable[[str], bool]] = None, notebooks: Optional[str] = None) -> Plan:
    """Every row of the paper's Tables I, S1, II, III with its status, and the notebook jobs that compute the rows
    that run (see the module docstring for the rules). ``only``: keep the rows matching one of its
    ``TABLE[:DATASET[:MODEL]]`` items (the other rows are left out of the plan). ``threads``: torch threads and
    worker processes of each notebook (``threads`` and ``n_workers``). ``parameters``: extra papermill parameters
    for every job (after the plan's own). ``weights_dir`` / ``present`` (dataset -> bool): the shipped models and the
    data check (default: ``dpcdvae/weights`` and :func:`data_present`)."""
    from .runner import ci_parameters

    from ..eval.reference import SOURCE, QUOTED_FROM_CDVAE

    cards = shipped_models(weights_dir)
    shipped = shipped_for(cards)
    present = present or data_present
    have_data: dict[str, bool] = {}
    rows: list[PlanRow] = []
    jobs: dict[str, Job] = {}
    extra = dict(parameters or {})

    def job_for(table: str, dataset: str, model: str, weights: str, run_on: str) -> Job:
        notebook = TABLE_NOTEBOOK[table]
        if table == "III":
            stem = f"{notebook}-{dataset}"
        else:
            stem = f"{notebook}-{weights}" + ("-demo" if run_on != dataset else "")
        if stem in jobs:
            return jobs[stem]
        if ci:
            params = ci_parameters(notebook, notebooks)
            for k in ("config", "train_epochs", "train_minutes", "limit_train", "limit_val", "batch_size"):
                params.pop(k, None)  # training budget: the jobs use shipped models
        else:
            params = {}
        params.update({"dataset": run_on, "threads": threads})
        if "n_workers" in notebook_defaults(notebook, notebooks):
            params["n_workers"] = threads
        if table == "III":
            params["dataset"] = dataset
            if ci:
                params["fallback_to_demo"] = True
            params["checkpoint"] = f"pretrained:{weights}"
            params["baseline_checkpoints"] = {}
        else:
            params["checkpoint"] = f"pretrained:{weights}"
            if model in LANGEVIN_MODELS:
                params.update(LANGEVIN_PARAMETERS)
        params.update(extra)
        j = Job(stem=stem, notebook=notebook, parameters=params, expect=["data:image/png"], dataset=run_on)
        jobs[stem] = j
        return j

    for table, dataset, model in _paper_rows():
        if not _matches((table, dataset, model), only):
            continue
        reasons = []
        weights = shipped.get((dataset, model))
        if model not in IMPLEMENTED:
            src = SOURCE.get((table, dataset, model), "")
            rows.append(PlanRow(table, dataset, model, None,
                                "not run: no implementation here" + (" (quoted by the paper from [8])"
                                                                     if src == QUOTED_FROM_CDVAE else "")))
            continue
        if dataset not in have_data:
            have_data[dataset] = bool(present(dataset))
        if not have_data[dataset]:
            reasons.append("data absent")
        if weights is None:
            reasons.append("no shipped model")
        if table == "I" and model in LANGEVIN_MODELS:
            reasons.append("notebook 03 runs the DDPM samplers (Eq. 7 / Eq. 6) only; this model samples with "
                           "annealed Langevin")
        if table == "III" and model != "DP-CDVAE" and shipped.get((dataset, "DP-CDVAE")) is None:
            reasons.append("notebook 05 needs the DP-CDVAE model of this dataset")
        run_on = dataset
        if reasons == ["data absent"] and ci:
            reasons, run_on = [], "demo"  # CI size: the synthetic stand-in (said so in the status)
        if reasons:
            rows.append(PlanRow(table, dataset, model, weights, "skipped: " + "; ".join(reasons)))
            continue
        if table == "III":
            dp = shipped[(dataset, "DP-CDVAE")]
            j = job_for(table, dataset, "DP-CDVAE", dp, run_on)
            j.models[dp] = cards[dp]
            if model != "DP-CDVAE":
                j.parameters["baseline_checkpoints"][model] = f"pretrained:{weights}"
        else:
            j = job_for(table, dataset, model, weights, run_on)
        j.models[weights] = cards[weights]
        j.rows.append((table, dataset, model))
        header = f"Table {table} /"
        if header not in j.expect:
            j.expect.append(header)
        status = "run" if run_on == dataset else "run (CI: on the SYNTHETIC demo data, the dataset is absent)"
        rows.append(PlanRow(table, dataset, model, weights, status, j.stem))
    for j in jobs.values():  # notebook 03: the samplers of the tables it computes (Table I: eq7, S1: eq6)
        if j.notebook == TABLE_NOTEBOOK["I"] and "samplers" not in extra:
            j.parameters["samplers"] = [s for t, s in (("I", "eq7"), ("S1", "eq6")) if any(r[0] == t for r in j.rows)]
    return Plan(rows=rows, jobs=list(jobs.values()), ci=ci, threads=threads, only=list(only) if only else None,
                weights_dir=None if weights_dir is None else str(weights_dir))


# ================================================================================================================
# the estimate
# ================================================================================================================
def _cost(kind: str, dataset: str) -> float:
    table = COSTS[kind]
    return table.get(dataset, table["carbon_24"] if kind != "relax_s_per_step" else 0.25)


def estimate_job_seconds(job: Job, threads: int = 1, notebooks: Optional[str] = None) -> float:
    """Estimated wall time of one job in seconds: its sampling (crystals x :data:`COSTS` seconds per crystal per
    1000 network calls x calls / 1000), fingerprints (Table II) and relaxation steps (Table III, at ``max_steps``:
    an upper bound), divided by ``threads`` (ideal scaling: an optimistic figure for several threads), plus
    :data:`NOTEBOOK_OVERHEAD_S`. An estimate from measured per-crystal costs, not a measurement."""
    p = {**notebook_defaults(job.notebook, notebooks), **job.parameters}
    ds = job.dataset if job.dataset in COSTS["sample_s_per_crystal"] else p.get("dataset", "carbon_24")
    per = _cost("sample_s_per_crystal", ds)
    calls = 1.0
    if p.get("sampler") == "langevin":
        calls = LANGEVIN_CALLS / 1000.0
    elif p.get("steps") and p.get("sampler") in ("strided_eq7", "strided"):
        calls = float(p["steps"]) / 1000.0
    n_test = p.get("n_test") or TEST_SPLIT_SIZE.get(ds, 1000)
    if job.notebook == TABLE_NOTEBOOK["I"]:
        work = len(p.get("samplers") or ["eq7"]) * n_test * per
    elif job.notebook == TABLE_NOTEBOOK["II"]:
        n_gen = int(p.get("n_generate") or 0)
        work = n_gen * per * calls + (n_gen + n_test) / _cost("fingerprint_per_s", ds)
    else:
        n_models = 1 + len(p.get("baseline_checkpoints") or {})
        n_gen = int(p.get("n_generate") or 0)
        work = n_models * n_gen * (per + int(p.get("max_steps") or 0) * _cost("relax_s_per_step", ds))
    return NOTEBOOK_OVERHEAD_S + work / max(1, int(threads))


def _fmt_s(s: Optional[float]) -> str:
    if s is None:
        return "-"
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def format_plan(plan: Plan, notebooks: Optional[str] = None) -> str:
    """The plan as text: one line per row (table, dataset, model, shipped model, status, job and the job's estimated
    time), then the total estimate (seconds and hours). Rows computed by one job share its estimate (counted once)."""
    est = {j.stem: estimate_job_seconds(j, plan.threads, notebooks) for j in plan.jobs}
    head = ("table", "dataset", "model", "shipped", "status", "job", "estimate")
    lines = [head]
    seen = set()
    for r in plan.rows:
        shown = "-" if not r.job else ("(same job)" if r.job in seen else _fmt_s(est[r.job]))
        seen.add(r.job)
        lines.append((r.table, r.dataset, r.model, r.weights or "-", r.status, r.job or "-", shown))
    widths = [max(len(str(x[i])) for x in lines) for i in range(len(head) - 1)]
    out = [f"{PREFIX} plan ({'CI size' if plan.ci else 'full size'}, {plan.threads} thread(s) per notebook): "
           f"{sum(r.runs for r in plan.rows)} of {len(plan.rows)} rows run in {len(plan.jobs)} notebook job(s)"]
    for ln in lines:
        out.append("  " + "  ".join(str(x).ljust(w) for x, w in zip(ln, widths)) + "  " + str(ln[-1]))
    total = sum(est.values())
    out.append(f"{PREFIX} estimated time: {_fmt_s(total)} ({total:.0f} s) in all; an ESTIMATE from measured per-crystal "
               f"costs on one Zen 3 core (dpcdvae.notebooks.paper.COSTS; Table III relaxations counted at max_steps, an "
               f"upper bound), not a measurement")
    for j in plan.jobs:
        out.append(f"  job {j.stem}: {j.notebook} -p {json.dumps(j.parameters, sort_keys=True)}  ~{_fmt_s(est[j.stem])}")
    return "\n".join(out)


# ================================================================================================================
# running
# ================================================================================================================
def fingerprint(job: Job) -> str:
    """sha256 (16 hex digits) of what decides a job's result: notebook, parameters (``work_dir`` left out: it
    follows from the output folder) and the date + commit of each shipped model it uses."""
    params = {k: v for k, v in job.parameters.items() if k != "work_dir"}
    models = {n: [c.get("date"), c.get("commit")] for n, c in sorted(job.models.items())}
    blob = strict_json_dumps({"notebook": job.notebook, "parameters": params, "models": models}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _record_path(out: Path, stem: str) -> Path:
    return out / "paper_runs" / f"{stem}.json"


def read_record(out, stem: str) -> Optional[dict]:
    p = _record_path(Path(out), stem)
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def _done(out: Path, job: Job) -> bool:
    rec = read_record(out, job.stem)
    return bool(rec and rec.get("ok") and rec.get("fingerprint") == fingerprint(job)
                and (out / f"{job.stem}.ipynb").is_file() and (out / f"{job.stem}.html").is_file())


_TABLE_FILE = {"I": "table1_", "S1": "tableS1_", "II": "table2_", "III": "table3_"}


def _collect_metrics(job_work: Path, notebook: str) -> dict:
    """The metrics the notebook saved (``nb.save_table``: ``<work>/<notebook>/<table>_<dataset>.json``):
    ``{table: saved dict}``."""
    out = {}
    for t, prefix in _TABLE_FILE.items():
        for p in sorted((job_work / notebook).glob(f"{prefix}*.json")):
            try:
                out[t] = json.loads(p.read_text())
            except ValueError:
                pass
    return out


def run_plan(plan: Plan, out, force: bool = False, notebooks: Optional[str] = None, kernel: Optional[str] = None,
             timeout: int = 24 * 3600, runner: Optional[Callable] = None) -> list[dict]:
    """Run the plan's jobs into ``out`` (each with :func:`dpcdvae.notebooks.runner.run_notebook`: papermill, HTML,
    checks), one progress line at each job's start and end with the elapsed time (seconds). A job already done with
    the same fingerprint is skipped ("done, skipped") unless ``force``; a failing job is recorded and the next one
    runs. ``timeout``: per cell, seconds. Returns one record per job (``ok``, ``skipped``, ``wall_s``, ``metrics``,
    ``error``)."""
    from .runner import print_result, run_notebook

    runner = runner or run_notebook
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    records = []
    n = len(plan.jobs)
    for i, job in enumerate(plan.jobs, 1):
        rows = ", ".join(f"{t}/{d}/{m}" for t, d, m in job.rows)
        if not force and _done(out, job):
            rec = read_record(out, job.stem)
            rec["skipped"] = True
            print(f"{PREFIX} ({i}/{n}) {job.stem}: done, skipped (same fingerprint {rec['fingerprint']}; --force "
                  f"reruns it)  [elapsed {time.time() - t0:.1f} s]", flush=True)
            records.append(rec)
            continue
        work = out / "work" / job.stem
        params = {**job.parameters, "work_dir": str(work)}
        print(f"{PREFIX} ({i}/{n}) start {job.stem} ({rows})  [elapsed {time.time() - t0:.1f} s]", flush=True)
        r = runner(job.notebook, out, params, notebooks=notebooks, kernel=kernel, timeout=timeout, stem=job.stem,
                   expect=job.expect)
        print_result(r)
        rec = {"stem": job.stem, "notebook": job.notebook, "rows": job.rows, "fingerprint": fingerprint(job),
               "parameters": job.parameters, "models": sorted(job.models), "ok": bool(r.get("ok")),
               "wall_s": r.get("wall_s"), "error": r.get("error"), "checks_missing": r.get("checks", {}).get("missing"),
               "metrics": _collect_metrics(work, job.notebook), "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
               "skipped": False}
        _record_path(out, job.stem).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(_record_path(out, job.stem), strict_json_dumps(rec, indent=1))
        print(f"{PREFIX} ({i}/{n}) {'done' if rec['ok'] else 'FAILED'} {job.stem} in {rec['wall_s']} s  "
              f"[elapsed {time.time() - t0:.1f} s]", flush=True)
        records.append(rec)
    return records


# ================================================================================================================
# the summary page
# ================================================================================================================
_COLUMNS = ("match_rate", "delta_rms", "struct_validity", "comp_validity", "cov_r", "cov_p", "w1_density",
            "w1_eform", "w1_n_elem", "dV_rms", "dE_rms")


def _num(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    v = float(v)
    return f"{v:.4f}" if abs(v) < 1 else f"{v:.2f}"


def _ours_of(rec: Optional[dict], table: str, model: str) -> Optional[dict]:
    if not rec or not rec.get("ok"):
        return None
    saved = (rec.get("metrics") or {}).get(table)
    if not saved:
        return None
    ours = saved.get("ours") or {}
    if table == "III":
        return ours.get(model)
    return ours


def summary_rows(plan: Plan, out) -> list[dict]:
    """One dict per plan row: table, dataset, model, shipped, status (with the outcome of its job), n (ours), and per
    metric ``(paper, ours)``."""
    from ..eval.reference import REFERENCE, TABLE_METRICS

    out = Path(out)
    recs = {j.stem: read_record(out, j.stem) for j in plan.jobs}
    rows = []
    for r in plan.rows:
        paper = REFERENCE.get((r.table, r.dataset, r.model), {})
        rec = recs.get(r.job) if r.job else None
        ours = _ours_of(rec, r.table, r.model)
        status = r.status
        if r.job:
            if rec is None:
                status = "not run yet"
            elif not rec.get("ok"):
                status = "FAILED (see " + f"{r.job}.html)"
            elif ours is None:
                status = "ran, but the notebook saved no metrics for this row"
            elif r.status != "run":
                status = r.status.replace("run ", "ran ", 1)
            else:
                status = "ran"
        cells = {k: (paper.get(k), (ours or {}).get(k)) for k in TABLE_METRICS[r.table]}
        rows.append({"table": r.table, "dataset": r.dataset, "model": r.model, "shipped": r.weights or "-",
                     "status": status, "n": (ours or {}).get("n"), "job": r.job, "cells": cells,
                     "synthetic": bool(ours and (ours.get("synthetic") or False))})
    return rows


def claims_of(plan: Plan, out) -> tuple[list, list]:
    """The claims table (:func:`dpcdvae.eval.claims.claim_rows`) from the runs in ``out`` and the shipped models'
    cards (the plan's ``weights_dir``); a dataset the plan found absent is absent for the claims too. Returns
    ``(rows, sources)``."""
    from ..eval.claims import claim_rows, collect_figures

    absent = {r.dataset for r in plan.rows if "data absent" in r.status}
    planned = {r.dataset for r in plan.rows if r.model in IMPLEMENTED}

    def present(ds: str) -> bool:
        return ds not in absent if ds in planned else data_present(ds)

    figs = collect_figures(out, plan.weights_dir)
    return claim_rows(figs, present=present, weights_dir=plan.weights_dir), figs.sources


def write_summary(plan: Plan, out) -> tuple[Path, Path]:
    """Write ``<out>/paper_summary.md`` and ``.html``: one table, a row per paper row, each metric cell
    ``paper | ours`` (``-`` where there is no number), the status of the row and a link to its executed notebook's
    HTML; then the "Claims" section: the claims table of :mod:`dpcdvae.eval.claims` (:func:`claims_of`), also
    written as ``<out>/claims.json``. Returns the two paths."""
    from ..eval.claims import render_html as claims_html, render_markdown as claims_md, verdict_counts
    from ..eval.reference import CITATION, METRIC_INFO

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = summary_rows(plan, out)
    claims, sources = claims_of(plan, out)
    atomic_write_text(out / "claims.json", strict_json_dumps({"rows": claims, "counts": verdict_counts(claims),
                                                              "sources": sources}, indent=1))
    heads = ["table", "dataset", "model", "shipped model", "status", "n (ours)"] + [
        METRIC_INFO[k]["label"] + (f" ({METRIC_INFO[k]['unit']})" if METRIC_INFO[k]["unit"] else "")
        for k in _COLUMNS]
    intro = (f"Every row of the paper's Tables I (Eq. 7), S1 (Eq. 6), II and III ({CITATION}); each metric cell is "
             f"**paper | ours** (`-`: no number). Written by `dpcdvae reproduce --paper"
             f"{' --ci' if plan.ci else ''}{' --only ' + ' '.join(plan.only) if plan.only else ''}` on "
             f"{time.strftime('%Y-%m-%d %H:%M')}"
             + (" (only the rows asked for)" if plan.only else "")
             + (" at CI size (a few crystals per row; the numbers only show that the pipeline runs)"
                if plan.ci else "") + ". Table III: ours with CHGNet at 10 GPa, the paper's with DFT. Rows that "
             "ran on the SYNTHETIC demo data are not comparable with the paper's.")
    md = ["# The paper, row by row", "", intro, "",
          "| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    body = []
    for r in rows:
        cells = []
        for k in _COLUMNS:
            if k in r["cells"]:
                p, o = r["cells"][k]
                cells.append(f"{_num(p)} \\| {_num(o)}")
            else:
                cells.append("")
        link = f"[{r['status']}]({r['job']}.html)" if r["job"] else r["status"]
        md.append("| " + " | ".join([r["table"], r["dataset"], r["model"], r["shipped"], link,
                                     "-" if r["n"] is None else str(r["n"])] + cells) + " |")
        body.append(([r["table"], r["dataset"], r["model"], r["shipped"]], r["status"], r["job"], r["n"],
                     [r["cells"].get(k) for k in _COLUMNS]))
    md += ["", claims_md(claims, sources, heading="## Claims")]
    md_path = out / "paper_summary.md"
    atomic_write_text(md_path, "\n".join(md))

    e = _html.escape
    trs = ["<tr>" + "".join(f"<th>{e(h)}</th>" for h in heads) + "</tr>"]
    for first, status, job, n, cells in body:
        st = f'<a href="{e(job)}.html">{e(status)}</a>' if job else e(status)
        tds = [f"<td>{e(x)}</td>" for x in first] + [f"<td>{st}</td>", f"<td>{'-' if n is None else e(str(n))}</td>"]
        tds += ["<td></td>" if c is None else f"<td>{e(_num(c[0]))} | <b>{e(_num(c[1]))}</b></td>" for c in cells]
        trs.append("<tr>" + "".join(tds) + "</tr>")
    page = ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>DP-CDVAE paper summary</title>"
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:13px}"
            "td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}th{background:#f3f3f3}</style></head><body>"
            f"<h1>The paper, row by row</h1><p>{e(intro).replace('**paper | ours**', '<b>paper | ours</b>')}</p>"
            f"<table>{''.join(trs)}</table><h2>Claims</h2>{claims_html(claims, sources)}</body></html>\n")
    html_path = out / "paper_summary.html"
    atomic_write_text(html_path, page)
    return md_path, html_path


def reproduce_paper(out="docs/reports", ci: bool = False, only: Optional[Sequence[str]] = None, threads: int = 1,
                    parameters: Optional[dict] = None, dry_run: bool = False, force: bool = False,
                    notebooks: Optional[str] = None, kernel: Optional[str] = None, timeout: int = 24 * 3600) -> dict:
    """``dpcdvae reproduce --paper``: build the plan, print it with the time estimate (seconds), and unless
    ``dry_run`` run it (:func:`run_plan`) and write the summary page (:func:`write_summary`). Returns ``{"plan",
    "records", "ok", "summary", "wall_s"}``; ``ok`` is False when a job failed. ``only`` that matches no row of the
    paper is an :class:`~dpcdvae.utils.errors.ArgumentError` of ``only``."""
    t0 = time.time()
    plan = build_plan(ci=ci, only=only, threads=threads, parameters=parameters, notebooks=notebooks)
    if only and not plan.rows:
        raise ArgumentError("only", f" {' '.join(only)}: no row of the paper matches (items: "
                                    "TABLE[:DATASET[:MODEL]], e.g. I:perov_5, II:carbon_24:CDVAE, III)")
    print(format_plan(plan, notebooks), flush=True)
    if dry_run:
        return {"plan": plan, "records": [], "ok": True, "summary": None, "wall_s": 0.0}
    records = run_plan(plan, out, force=force, notebooks=notebooks, kernel=kernel, timeout=timeout)
    md, html_path = write_summary(plan, out)
    failed = [r["stem"] for r in records if not r.get("ok")]
    wall = round(time.time() - t0, 1)
    print(f"{PREFIX} {len(records) - len(failed)}/{len(records)} jobs ok"
          + (f"; FAILED: {', '.join(failed)}" if failed else "")
          + f"; {wall} s; summary: {md} and {html_path}", flush=True)
    return {"plan": plan, "records": records, "ok": not failed, "summary": str(md), "wall_s": wall}
