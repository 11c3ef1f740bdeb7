"""Table III: relax a folder or file of structures and compute the ground-state metrics (:func:`run_relax`,
``dpcdvae relax``); the study over several checkpoints: generate, relax, tabulate, Fig. S2
(:func:`run_ground_state_study`, ``dpcdvae ground-state``)."""
from __future__ import annotations

import datetime as _dt
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from ..eval.ground_state import ground_state_metrics, relax_structures, render_table3, table3
from ..models import load_model
from ..utils.fileio import atomic_write_text, strict_json_dumps
from ..viz import plot_delta_e_vs_paper
from .common import sampler_for
from .generate import generate_to_folder
from .results import GroundStateStudyResult, RelaxRunResult

__all__ = ["run_relax", "run_ground_state_study", "relax_changes", "relax_headline", "summary_table", "ck_name"]


def _fmt(v, nd=4):
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.{nd}f}"
    return str(v)


def relax_changes(results, energy: str = "enthalpy") -> dict:
    """What relaxing did to the structures, over the successfully relaxed ones: ``n``, the volume change per crystal
    ``V_relaxed / V_generated - 1`` in % (``volume_change_median_pct``, ``_mean_pct``, ``_min_pct``, ``_max_pct``) and
    the enthalpy (or energy) change ``H_relaxed - H_generated`` in meV/atom (``dE_median_mev``, ``dE_mean_mev``;
    negative: relaxing lowered it)."""
    ok = [r for r in results if r.ok]
    if not ok:
        return {"n": 0}
    dv = np.array([100.0 * (r.relaxed_volume_per_atom / r.initial_volume_per_atom - 1.0) for r in ok], dtype=float)
    de = -np.array([r.delta_energy_mev(energy) for r in ok], dtype=float)  # relaxed - generated
    return {"n": len(ok), "volume_change_median_pct": float(np.nanmedian(dv)),
            "volume_change_mean_pct": float(np.nanmean(dv)), "volume_change_min_pct": float(np.nanmin(dv)),
            "volume_change_max_pct": float(np.nanmax(dv)), "dE_median_mev": float(np.nanmedian(de)),
            "dE_mean_mev": float(np.nanmean(de)), "energy_measure": energy}


def relax_headline(results, energy: str = "enthalpy") -> str:
    """The first line of ``dpcdvae relax``'s result: how much the cells' volume and the enthalpy changed on
    relaxing (median, mean and range over the relaxed crystals); a large change means the generated structures were
    far from their minimum, whatever the match rate says."""
    c = relax_changes(results, energy)
    if not c["n"]:
        return "no structure relaxed: no volume or enthalpy change to report"
    word = "enthalpy H = E + pV" if energy == "enthalpy" else "energy"
    return (f"on relaxing {c['n']} crystal{'s' if c['n'] != 1 else ''}: volume {c['volume_change_median_pct']:+.1f} % "
            f"(median; mean {c['volume_change_mean_pct']:+.1f} %, range {c['volume_change_min_pct']:+.1f} to "
            f"{c['volume_change_max_pct']:+.1f} %), {word} {c['dE_median_mev']:+.0f} meV/atom (median; mean "
            f"{c['dE_mean_mev']:+.0f})")


def summary_table(results, energy: str = "enthalpy") -> str:
    """Fixed-width text table: one row per result (energies eV/atom, volumes A^3/atom, dE meV/atom)."""
    head = ["id", "N", "E0", "E", "H0", "H", "V0", "V", f"d{'H' if energy == 'enthalpy' else 'E'}", "steps", "conv",
            "s", "error"]
    rows = []
    for r in results:
        de = r.delta_energy_mev(energy) if r.ok else None
        rows.append([r.id, str(r.n_atoms), _fmt(r.initial_energy_per_atom), _fmt(r.relaxed_energy_per_atom),
                     _fmt(r.initial_enthalpy_per_atom), _fmt(r.relaxed_enthalpy_per_atom),
                     _fmt(r.initial_volume_per_atom, 3), _fmt(r.relaxed_volume_per_atom, 3), _fmt(de, 1),
                     str(r.steps), _fmt(bool(r.converged)), _fmt(r.wall_time_s, 1) + ("*" if r.resumed else ""),
                     (r.error or "")[:60]])
    w = [max(len(x[i]) for x in [head] + rows) for i in range(len(head))]
    lines = ["  ".join(h.ljust(k) for h, k in zip(head, w)), "  ".join("-" * k for k in w)]
    lines += ["  ".join(c.ljust(k) for c, k in zip(r, w)) for r in rows]
    return "\n".join(lines)


def run_relax(path: str, out: str, pressure_gpa: float = 0.0, calculator: str = "chgnet", fmax: float = 0.05,
              max_steps: int = 500, optimizer: str = "FIRE", batch: bool = True, batch_size: int = 32,
              device: str = "cpu", resume: bool = True, retry_failed: bool = False, energy: str = "enthalpy",
              plot: bool = False, progress: bool = True, command: str = "", workers: int = 1) -> RelaxRunResult:
    """The API behind ``dpcdvae relax``: relax, compute the metrics, write ``<out>/summary.json``. Returns a
    :class:`~dpcdvae.workflows.results.RelaxRunResult` (the relaxations, the metrics; its
    :meth:`~dpcdvae.workflows.results.RelaxRunResult.summary` is what ``summary.json`` holds).
    ``workers``: processes relaxing at once (see :func:`~dpcdvae.eval.relax.relax_structures`)."""
    out_dir = Path(out)
    earlier = 0.0  # wall time of earlier (interrupted or finished) runs into the same folder
    if resume and (out_dir / "summary.json").is_file():
        try:
            old = json.loads((out_dir / "summary.json").read_text())
            earlier = float(old.get("wall_s_total", old.get("wall_s", 0.0)))
        except (ValueError, TypeError, OSError):
            earlier = 0.0
    t0 = time.time()
    results = relax_structures(path, pressure_gpa=pressure_gpa, calculator=calculator, optimizer=optimizer,
                               fmax=fmax, max_steps=max_steps, out_dir=out_dir, batch=batch, progress=progress,
                               batch_size=batch_size, resume=resume, retry_failed=retry_failed, device=device,
                               workers=workers)
    wall = time.time() - t0
    metrics = ground_state_metrics(results, energy=energy)
    per = metrics.pop("per_structure")
    run = RelaxRunResult(
        out=out_dir, input=str(path),
        settings={"pressure_gpa": pressure_gpa, "calculator": calculator, "optimizer": optimizer, "fmax": fmax,
                  "max_steps": max_steps, "batch": batch, "batch_size": batch_size, "device": device,
                  "workers": workers, "energy_measure": energy},
        results=results, metrics=metrics, per_structure=per, wall_s=round(wall, 2),
        wall_s_total=round(earlier + wall, 2),  # this run plus the earlier runs it resumed
        command=command, date=_dt.datetime.now().isoformat(timespec="seconds"))
    if plot:
        plot_delta_e_vs_paper({Path(str(path)).stem or "relaxed": _delta_e(results, energy)},
                              path=out_dir / "delta_e_hist.png", energy=energy)
        run.plot = out_dir / "delta_e_hist.png"
    atomic_write_text(out_dir / "summary.json", strict_json_dumps(run.summary(), indent=1))
    return run


def run_ground_state_study(checkpoints, out: str, n: int = 100, pressure_gpa: float = 10.0, seed: int = 0,
                           sampler: str | None = None, steps: int | None = None, fmax: float = 0.05,
                           max_steps: int = 500, batch_size: int = 32, device: str = "cpu", plot: bool = True,
                           progress: bool = True, command: str = "", calculator: str = "chgnet",
                           optimizer: str = "FIRE") -> GroundStateStudyResult:
    """Table III for several models: for each model generate ``n`` crystals (seeded), relax them at ``pressure_gpa``
    (GPa; CHGNet by default, ``fmax`` in eV/A) and compute the ground-state metrics; then one table with the paper's
    DFT rows beside ours, and the Fig. S2 histograms. Layout: ``<out>/<model label>/{generated,relaxed}``,
    ``<out>/table3.md``, ``<out>/study.json``, ``<out>/delta_e_hist.png``. Resumable (finished relaxations are not
    redone).

    ``checkpoints``: a list of checkpoints (paths or ``pretrained:<name>``; labelled by the model kind) or a dict
    ``{label: checkpoint or loaded model}``. ``sampler``: used by the models that run it; the others use their own
    (printed, :func:`sampler_for`). Returns a :class:`~dpcdvae.workflows.results.GroundStateStudyResult` (one row
    per model, each model's relaxations, the table; its
    :meth:`~dpcdvae.workflows.results.GroundStateStudyResult.summary` is what ``study.json`` holds)."""
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    ours, by_model, rows = {}, {}, {}
    items = checkpoints.items() if isinstance(checkpoints, dict) else [(None, ck) for ck in checkpoints]
    for given_label, ck in items:
        model = ck if isinstance(ck, torch.nn.Module) else load_model(ck, map_location=device).to(device)
        label = given_label or model.label
        if given_label is None and label in ours:
            label = f"{label} ({Path(str(ck)).parent.name})"
        smp, smp_steps, note = sampler_for(model, sampler, steps)
        if note:
            print(f"[dpcdvae] {label}: {note}", flush=True)
        mdir = out_dir / label.replace(" ", "_").replace("+", "plus")
        gen_dir = mdir / "generated"
        if not (gen_dir / "samples.extxyz").exists():
            generate_to_folder(model, n, gen_dir, sampler=smp, steps=smp_steps, seed=seed, batch_size=512,
                               progress=progress, meta={"command": command, "checkpoint": ck_name(ck)})
        s = run_relax(str(gen_dir / "samples.extxyz"), str(mdir / "relaxed"), pressure_gpa=pressure_gpa,
                      calculator=calculator, optimizer=optimizer, fmax=fmax, max_steps=max_steps,
                      batch_size=batch_size, device=device, progress=progress, command=command)
        by_model[label] = s.results
        m = {**s.metrics, "n_generated": n, "n_degenerate": n - len(by_model[label]), "relax_wall_s": s.wall_s}
        ours[label] = m
        rows[label] = {"checkpoint": ck_name(ck), "sampler": smp.label, **m}
        if progress:
            print(f"{label}: {m['n_relaxed']} relaxed ({m['n_converged']} converged) in {s.wall_s} s", flush=True)
    df = table3(ours)
    text = render_table3(df, markdown=True)
    (out_dir / "table3.md").write_text(text + "\n")
    study = GroundStateStudyResult(out=out_dir, n=n, pressure_gpa=pressure_gpa, seed=seed, models=rows,
                                   results=by_model, table=text, wall_s=round(time.time() - t0, 1), command=command,
                                   date=_dt.datetime.now().isoformat(timespec="seconds"))
    if plot:
        plot_delta_e_vs_paper({k: _delta_e(v) for k, v in by_model.items()}, path=out_dir / "delta_e_hist.png")
        study.plot = out_dir / "delta_e_hist.png"
    (out_dir / "study.json").write_text(strict_json_dumps(study.summary(), indent=1))
    return study


def ck_name(checkpoint) -> str:
    """How a checkpoint is named in output files: its path or ``pretrained:<name>``, or the card's name of a loaded
    shipped model, or ``"(a loaded model)"``."""
    if isinstance(checkpoint, torch.nn.Module):
        card = getattr(checkpoint, "card", None)
        return f"pretrained:{card['name']}" if isinstance(card, dict) and card.get("name") else "(a loaded model)"
    return str(checkpoint)


def _delta_e(results, energy: str = "enthalpy") -> list:
    """``E_gen - E_relaxed`` (meV/atom) of the successfully relaxed results."""
    return [r.delta_energy_mev(energy) for r in results if r.ok]
