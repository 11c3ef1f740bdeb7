"""Our metrics beside the paper's rows: pandas DataFrames, plain text and markdown.

``compare_table(ours, table="II", dataset="perov_5", model="DP-CDVAE")`` gives one row per model of the paper's
table for that dataset (its source noted), then our row, then ``delta (ours - <model>)``; for Table II our row
names its sample count beside the paper's 10,240 and a delta at another count is labelled not comparable. Columns are the table's
metrics (keys of :data:`dpcdvae.eval.reference.TABLE_METRICS`, headed with units). A metric we could not compute
(e.g. ``w1_eform = "unavailable: ..."``) is shown as that text and its delta as ``n/a``.
"""
from __future__ import annotations

import math
from typing import Mapping

import pandas as pd

from .reference import (CITATION, METRIC_INFO, REFERENCE, SOURCE, TABLE_METRICS, canonical_dataset,
                        canonical_model, canonical_table, models)


def _header(metric: str) -> str:
    info = METRIC_INFO.get(metric, {"label": metric, "unit": ""})
    return f"{info['label']} ({info['unit']})" if info["unit"] else info["label"]


def _num(v):
    if v is None or isinstance(v, str):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def paper_table(table: str, dataset: str) -> pd.DataFrame:
    """The paper's rows for ``table`` / ``dataset``: index = model, columns = metric keys + ``source``."""
    t, d = canonical_table(table), canonical_dataset(dataset)
    rows = []
    for m in models(t, d):
        rows.append({"model": m, **REFERENCE[(t, d, m)], "source": SOURCE[(t, d, m)]})
    if not rows:
        raise KeyError(f"the paper has no Table {t} rows for {d}")
    return pd.DataFrame(rows).set_index("model")


#: Crystals the paper generated for each Table II entry (CDVAE's protocol: 10,240 samples; the validity, COV and
#: W1 numbers are over them). COV-R and the W1 distances depend on that count, so a run of fewer is not comparable.
PAPER_GEN_SAMPLES = 10240


def _count(n) -> str:
    return f"{int(n):,}"


def compare_table(ours: Mapping, table: str = "I", dataset: str = "perov_5", model: str = "DP-CDVAE",
                  label: str = "ours", all_models: bool = True, headers: bool = True,
                  n: int | None = None) -> pd.DataFrame:
    """Our metrics beside the paper's (Table ``table``, ``dataset``) with deltas against ``model``'s row.

    Table II (generation): the number of generated crystals is part of the table. Our row is labelled
    ``"<label> (n = 32; paper n = 10,240)"`` (``n``: given, else ``ours["n_generated"]``; unknown: the label alone),
    and when ``n`` differs from the paper's :data:`PAPER_GEN_SAMPLES` the delta row says so in its label
    (``"delta (ours - DP-CDVAE), n 32 vs 10,240: not comparable"``) and its source: COV-R and the W1 distances
    change with the sample count, so such a delta measures the count as much as the model.

    ``ours`` is a flat metrics dict (as returned by :func:`~dpcdvae.eval.reconstruction.reconstruction_metrics` or
    :func:`~dpcdvae.eval.generation.generation_metrics`, or read from ``metrics.json``); missing metrics show as
    ``None``. With ``all_models=False`` only ``model``'s paper row is shown. ``headers=True`` labels columns with
    units (``"COV-R (%)"``); ``False`` keeps the metric keys. Values are floats, ``None`` or text.
    """
    t, d, m = canonical_table(table), canonical_dataset(dataset), canonical_model(model)
    metrics = TABLE_METRICS[t]
    paper = paper_table(t, d)
    if m not in paper.index:
        raise KeyError(f"no row for {model!r} in Table {t} / {d}; rows: {list(paper.index)}")
    shown = list(paper.index) if all_models else [m]
    rows = []
    for pm in shown:
        r = {k: _num(paper.loc[pm, k]) for k in metrics}
        r["source"] = paper.loc[pm, "source"]
        rows.append((f"{pm} (paper)", r))
    our_row: dict = {}
    delta_row: dict = {}
    for k in metrics:
        v = ours.get(k)
        our_row[k] = v if isinstance(v, str) else _num(v)
        a, b = _num(v), _num(paper.loc[m, k])
        delta_row[k] = (a - b) if (a is not None and b is not None) else ("n/a" if b is not None else None)
    our_row["source"] = "this run"
    delta_row["source"] = f"ours - {m} (paper)"
    if n is None and t == "II":
        n = _num(ours.get("n_generated"))
    our_label, delta_label = label, f"delta ({label} - {m})"
    if t == "II" and n is not None:
        our_label = f"{label} (n = {_count(n)}; paper n = {_count(PAPER_GEN_SAMPLES)})"
        our_row["source"] = f"this run, {_count(n)} generated crystals"
        if int(n) != PAPER_GEN_SAMPLES:
            delta_label += f", n {_count(n)} vs {_count(PAPER_GEN_SAMPLES)}: not comparable"
            delta_row["source"] = (f"ours - {m} (paper) at different n: COV and W1 depend on the sample count")
    rows.append((our_label, our_row))
    rows.append((delta_label, delta_row))
    df = pd.DataFrame([r for _, r in rows], index=[n for n, _ in rows], columns=[*metrics, "source"])
    df = df.astype(object).where(pd.notna(df), None)
    df.index.name = f"Table {t} / {d}"
    if headers:
        df = df.rename(columns={k: _header(k) for k in metrics})
    return df


def _fmt(v, key: str | None = None) -> str:
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    f = float(v)
    if math.isnan(f):
        return "nan"
    if abs(f) >= 100 or (key and ("(%)" in key)):
        return f"{f:.2f}"
    if abs(f) >= 1:
        return f"{f:.3f}"
    return f"{f:.4f}"


def _cells(df: pd.DataFrame, max_text: int = 40) -> tuple[list[str], list[list[str]]]:
    cols = [str(df.index.name or "")] + [str(c) for c in df.columns]
    body = []
    for idx, row in df.iterrows():
        cells = [str(idx)]
        for c, v in row.items():
            s = _fmt(v, str(c))
            if len(s) > max_text:
                s = s[: max_text - 3] + "..."
            cells.append(s)
        body.append(cells)
    return cols, body


def render_text(df: pd.DataFrame, max_text: int = 40) -> str:
    """Fixed-width plain-text rendering (numbers to 4 significant decimals, percentages to 2)."""
    cols, body = _cells(df, max_text)
    widths = [max(len(r[i]) for r in [cols] + body) for i in range(len(cols))]
    line = "  ".join(c.ljust(w) for c, w in zip(cols, widths))
    sep = "  ".join("-" * w for w in widths)
    def _numeric(c: str) -> bool:
        if c in ("-", "n/a", "nan"):
            return True
        try:
            float(c)
            return True
        except ValueError:
            return False

    rows = ["  ".join(c.rjust(w) if j and _numeric(c) else c.ljust(w) for j, (c, w) in enumerate(zip(r, widths)))
            for r in body]
    return "\n".join([line, sep, *rows])


def render_markdown(df: pd.DataFrame, max_text: int = 60, caption: bool = True) -> str:
    """GitHub markdown table (with the paper citation as a caption line when ``caption``)."""
    cols, body = _cells(df, max_text)
    esc = [[c.replace("|", "\\|") for c in r] for r in [cols] + body]
    out = ["| " + " | ".join(esc[0]) + " |", "|" + "|".join(["---"] + ["---:"] * (len(cols) - 1)) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in esc[1:]]
    if caption:
        out.append("")
        out.append(f"Paper rows: {CITATION}.")
    return "\n".join(out)
