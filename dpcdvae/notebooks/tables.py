"""Table glue: a notebook's results as DataFrames beside the paper's (:func:`paper_vs_ours`, :func:`table3_frame`,
the dataset and config tables of notebook 01) and saved next to its figures (:func:`save_table`, :func:`save_fig`,
:func:`write_samples`)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from ..config import load_config
from ..data import load_split
from ..data.info import dataset_info
from ..eval.ground_state import table3
from ..eval.reference import FIG_S2_MODE_BINS, TABLE_METRICS, canonical_table, get_reference
from ..eval.tables import compare_table, render_markdown
from ..io import SampleWriter, new_run_dir
from ..utils.fileio import atomic_write_text, strict_json_dumps
from ..data.resolve import resolve_dataset as resolve_data
from .choice import DataChoice

__all__ = ["describe_samples", "write_samples", "save_fig", "save_table", "paper_vs_ours", "reconstruction_details",
           "table3_frame", "unique_rows", "delta_e_values", "paper_fig_s2", "dataset_overview", "config_table"]


def describe_samples(out) -> "Any":
    """DataFrame, one row per crystal of a ``SampleOutput``: id, formula, N_a, a b c (A), alpha beta gamma (deg),
    volume (A^3), density (g/cm^3), valid (the paper's validity) and why not, flag (not built)."""
    import pandas as pd

    rows = []
    for i, (sid, s, flag, v) in enumerate(zip(out.ids, out.structures, out.flags, out.validity())):
        L = [float(x) for x in out.lengths[i]]
        A = [float(x) for x in out.angles[i]]
        rows.append({"id": sid, "formula": s.composition.reduced_formula if s is not None else None,
                     "N_a": int(out.num_atoms[i]), "a (A)": L[0], "b (A)": L[1], "c (A)": L[2],
                     "alpha (deg)": A[0], "beta (deg)": A[1], "gamma (deg)": A[2],
                     "volume (A^3)": float(s.volume) if s is not None else None,
                     "density (g/cm^3)": float(s.density) if s is not None else None,
                     "valid": v["valid"], "invalid because": v["reason"] or "",
                     "flag": flag or ("" if s is not None else "not built")})
    return pd.DataFrame(rows).set_index("id").round(3)


def write_samples(out, run_dir, meta: Optional[dict] = None) -> Path:
    """Write a ``SampleOutput`` (CIFs, extxyz, JSON) into a fresh run folder; prints where."""

    d = new_run_dir(run_dir, "samples")
    w = SampleWriter(d, meta=meta)
    w.add(out)
    print(f"wrote {w.n_decoded} CIF files ({w.n_valid} valid in the paper's sense; + samples.extxyz, samples.json) "
          f"to {d / 'cif'}")
    return d


def save_fig(fig, out_dir, name: str, dpi: int = 130) -> Path:
    """Save ``fig`` as ``out_dir/name.png`` (the notebook shows it inline as well)."""
    p = Path(out_dir) / f"{name}.png"
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, dpi=dpi, bbox_inches="tight")
    return p


#: ``df.attrs`` key under which :func:`paper_vs_ours` and :func:`table3_frame` keep our numbers by metric key;
#: :func:`save_table` writes them as ``name.json`` (read by ``dpcdvae reproduce --paper``'s summary page)
METRICS_ATTR = "dpcdvae_metrics"


def save_table(df, out_dir, name: str, footer: str = "") -> Path:
    """Write a table as ``name.md`` (markdown, with the paper citation) and ``name.csv``; for a table of
    :func:`paper_vs_ours` or :func:`table3_frame` also ``name.json``: ``{"table", "dataset", "synthetic", "ours"}``
    with our numbers by metric key (the units of :data:`dpcdvae.eval.reference.METRIC_INFO`; Table III: ``ours``
    is ``{model: {metric: value}}``), and what the claims table (:mod:`dpcdvae.eval.claims`) needs for its
    uncertainties: ``per_crystal`` (Tables I / S1: ``id``, ``matched``, ``rms`` per test crystal), ``n_test``
    (Table II: the test crystals COV-R is over), ``per_structure`` (Table III: ``{model: {"dV" (A^3/atom), "dE"
    (meV/atom) per relaxed structure, "dE_mode_bin" (meV/atom)}}``)."""

    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    md = render_markdown(df) + (f"\n\n{footer}" if footer else "")
    (d / f"{name}.md").write_text(md + "\n")
    df.to_csv(d / f"{name}.csv")
    if df.attrs.get(METRICS_ATTR) is not None:
        atomic_write_text(d / f"{name}.json", strict_json_dumps(df.attrs[METRICS_ATTR], indent=1))
    return d / f"{name}.md"


def paper_vs_ours(ours: dict, table: str, data: DataChoice, model: str = "DP-CDVAE", label: str = "ours"):
    """:func:`dpcdvae.eval.tables.compare_table` for ``data``: the paper's rows of ``table`` for
    ``data.paper_dataset``, ours, and ``delta (ours - DP-CDVAE)``. Synthetic data is said so in the index name."""

    df = compare_table(ours, table=table, dataset=data.paper_dataset, model=model, label=label)
    if data.synthetic:
        df.index.name = f"{df.index.name} (ours on SYNTHETIC data: not comparable)"
    t = canonical_table(table)
    n = ours.get("n_targets", ours.get("n_generated"))
    saved = {"table": t, "dataset": data.name, "paper_dataset": data.paper_dataset,
             "synthetic": bool(data.synthetic),
             "ours": {**{k: ours.get(k) for k in TABLE_METRICS[t]}, "n": n, "synthetic": bool(data.synthetic)}}
    per = ours.get("per_structure")
    if t in ("I", "S1") and isinstance(per, list) and per and all("matched" in r for r in per):
        # each crystal's outcome: the claims table pairs two runs over the same crystals by id
        saved["per_crystal"] = {"id": [str(r.get("material_id", r.get("id", i))) for i, r in enumerate(per)],
                                "matched": [bool(r["matched"]) for r in per],
                                "rms": [r.get("rms_dist") for r in per]}
    if t == "II" and ours.get("n_test") is not None:
        saved["n_test"] = int(ours["n_test"])
    df.attrs[METRICS_ATTR] = saved
    return df


def reconstruction_details(metrics: dict):
    """Small DataFrame of the extra reconstruction numbers (validity, lattice errors, reasons)."""
    import pandas as pd

    keys = [("n_targets", ""), ("n_valid", ""), ("validity", "%"), ("n_matched", ""), ("match_rate_over_valid", "%"),
            ("lattice_length_rmse", "A"), ("lattice_angle_rmse", "deg"), ("volume_per_atom_rmse", "A^3/atom"),
            ("sample_wall_s", "s")]
    row = {f"{k} ({u})" if u else k: metrics.get(k) for k, u in keys}
    row["invalid reasons"] = "; ".join(f"{k}: {v}" for k, v in metrics.get("invalid_reasons", {}).items()) or "-"
    return pd.DataFrame([row], index=[metrics.get("sampler", "ours")])


def table3_frame(study: dict, calculator: str = "chgnet", data: Optional[DataChoice] = None):
    """Table III: the paper's "DFT (paper)" rows, then ours per model (labelled ``"<calculator> (ours)"``), with
    unit headers and the CHGNet-vs-DFT caveat in ``df.attrs["footer"]``. When ``data`` is not Carbon-24 (e.g. the
    synthetic fallback) the index name says so."""

    label = "CHGNet (ours)" if str(calculator).lower() == "chgnet" else f"{calculator} (ours)"
    df = table3({name: r["metrics"] for name, r in study.items()}, label=label, headers=True)
    synthetic = data is not None and (data.synthetic or data.paper_dataset != "carbon_24")
    if synthetic:
        df.index.name = f"{df.index.name} (ours on {data.label}: not comparable)"
    df.attrs[METRICS_ATTR] = {"table": "III", "dataset": None if data is None else data.name,
                              "calculator": str(calculator), "synthetic": bool(synthetic),
                              "ours": {str(name): {**{k: r["metrics"].get(k) for k in TABLE_METRICS["III"]},
                                                   "n": r["metrics"].get("n"), "synthetic": bool(synthetic)}
                                       for name, r in study.items()},
                              "per_structure": {str(name): _per_structure_iii(r) for name, r in study.items()}}
    return df


def _per_structure_iii(r: dict) -> dict:
    """One Table III model's relaxed structures (those its dV_rms / dE_rms are over): ``dV`` (A^3/atom), ``dE``
    (meV/atom, the energy measure of its metrics) and the Fig. S2 mode bin ``dE_mode_bin`` (meV/atom)."""
    m = r.get("metrics") or {}
    energy = m.get("energy_measure") or "enthalpy"
    done = [x for x in (r.get("results") or []) if getattr(x, "ok", False)]
    return {"dV": [x.delta_volume_per_atom for x in done], "dE": [x.delta_energy_mev(energy) for x in done],
            "dE_mode_bin": m.get("dE_mode_bin")}


def unique_rows(df):
    """Same table with rows named ``"<model> (<source>)"`` (Table III repeats model names: paper and ours)."""
    out = df.copy()
    if "source" in out.columns:
        out.index = [f"{i} ({s})" for i, s in zip(out.index, out["source"])]
    return out


def delta_e_values(study: dict) -> dict:
    """``{model: Delta E per relaxed structure (meV/atom, enthalpy H = E + pV)}`` for the Fig. S2 histograms."""
    return {name: [r.delta_energy_mev("enthalpy") for r in v["results"] if r.ok] for name, v in study.items()}


def paper_fig_s2() -> dict:
    """The paper's Fig. S2 modes (meV/atom bins, as printed in its caption; units there read eV/atom, a typo) and
    its Table III dE_rms per model."""

    modes = dict(FIG_S2_MODE_BINS)
    return {m: {"mode": modes[m], "dE_rms": get_reference("III", "carbon_24", m)["dE_rms"]} for m in modes}


def dataset_overview(data: DataChoice, limit: Optional[int] = 2000):
    """``(table, panels)``: per split rows, atoms per cell, elements and property statistics (fast CSV scan,
    :func:`dpcdvae.data.info.dataset_info`), and histogram panels of atoms per cell and lattice lengths (A) of the
    first ``limit`` crystals of the training split (preprocessed as for training, so the cache is shared)."""
    import numpy as np
    import pandas as pd


    handle = resolve_data(data.name)  # once (the demo: its generated copy)
    info = dataset_info(data.name, root=handle.root)
    rows = []
    for split, d in info["splits"].items():
        if not d.get("present"):
            continue
        ps = d.get("property_stats") or {}
        rows.append({"split": split, "crystals": d.get("rows"), "atoms/cell": f"{d.get('atoms_min')}-{d.get('atoms_max')}",
                     "elements": d.get("n_elements"), f"{info.get('property')} mean": ps.get("mean"),
                     f"{info.get('property')} std": ps.get("std"),
                     "used for": "training" if split == data.train_split else ("validation" if split == "val"
                                                                               else "evaluation")})
    df = pd.DataFrame(rows).set_index("split").round(3)
    ds = load_split(handle, data.train_split, limit=limit, graph="none", progress=False)
    lengths = np.concatenate([ds[i].lengths.numpy() for i in range(len(ds))])
    angles = np.concatenate([ds[i].angles.numpy() for i in range(len(ds))])
    sub = f"{data.train_split}, first {len(ds)}"
    panels = [{"title": f"atoms per cell ({sub})", "xlabel": r"$N_a$ (atoms per cell)", "discrete": True,
               "series": {data.label: [int(ds[i].num_atoms) for i in range(len(ds))]}},
              {"title": f"lattice lengths ({sub})", "xlabel": "a, b, c (A)",
               "series": {"a": lengths[:, 0], "b": lengths[:, 1], "c": lengths[:, 2]}},
              {"title": f"lattice angles ({sub})", "xlabel": "alpha, beta, gamma (deg)",
               "series": {"alpha": angles[:, 0], "beta": angles[:, 1], "gamma": angles[:, 2]}}]
    return df, panels


def config_table(config: str, data: DataChoice, overrides: Optional[dict] = None, batch_size: Optional[int] = None,
                 train_epochs: Optional[int] = None):
    """The main hyper-parameters of a config preset (after ``overrides``, ``batch_size`` and ``train_epochs``, as
    training will use them) as a DataFrame."""
    import pandas as pd


    ov = dict(overrides or {})
    if batch_size:
        ov["train.batch_size"] = int(batch_size)
    if train_epochs:
        ov["train.max_epochs"] = int(train_epochs)
    cfg = load_config(config, dataset=data.name).override(ov)
    m, t = cfg.model, cfg.train
    rows = {"config": cfg.name, "encoder variant": m.variant, "latent dim": m.latent_dim,
            "DimeNet++ hidden / blocks": f"{m.encoder.hidden_channels} / {m.encoder.num_blocks}",
            "GemNet-T atom emb / blocks": f"{m.decoder.emb_size_atom} / {m.decoder.num_blocks}",
            "T (diffusion steps)": m.timesteps, "beta schedule": m.beta_schedule,
            "Fourier features n": f"{m.decoder.fourier_min}..{m.decoder.fourier_max}",
            "batch size": t.batch_size, "learning rate": t.lr, "max epochs": t.max_epochs,
            "teacher forcing epochs": m.teacher_forcing_epochs}
    return pd.DataFrame({"value": {k: str(v) for k, v in rows.items()}})
