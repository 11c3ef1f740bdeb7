"""``dpcdvae relax``: relax structures under pressure (CHGNet by default) and report the Table III metrics.

Examples::

    dpcdvae relax runs/x/gen_cifs --pressure 10 --out runs/x/relaxed            # CHGNet, batched, FIRE
    dpcdvae relax gen.extxyz --pressure 10 --optimizer BFGS --fmax 0.02 --out relaxed
    dpcdvae relax gen_cifs --calculator mypkg.calcs:make_vasp --no-batch --out relaxed_vasp

Writes ``<out>/<id>.json`` + ``<out>/<id>.cif`` per structure as each finishes (a re-run with the same ``--out``
resumes: finished ids are not relaxed again) and ``<out>/summary.json`` (settings, metrics, one row per structure),
prints a summary table and the metrics (match rate, <delta_rms>, dV_rms, dE_rms with the enthalpy per atom; the
relaxed structure is the reference). ``--plot`` also writes the Fig. S2 histogram ``<out>/delta_e_hist.png``.
Caveat: CHGNet is not DFT (different energy reference, MAE ~49 meV/atom on Carbon-24): compare models under the
same potential only.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import shlex
import sys
import time
from pathlib import Path

from .._fileio import strict_json_dumps


def _clean(v):
    """JSON-safe copy: NaN/inf -> None, numpy scalars -> Python, recursively."""
    import numpy as np

    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _fmt(v, nd=4):
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.{nd}f}"
    return str(v)


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
              plot: bool = False, progress: bool = True, command: str = "") -> dict:
    """The API behind ``dpcdvae relax``: relax, compute the metrics, write ``<out>/summary.json``; returns it."""
    from .ground_state import ground_state_metrics, plot_delta_e_histogram, relax_structures

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
                               batch_size=batch_size, resume=resume, retry_failed=retry_failed, device=device)
    wall = time.time() - t0
    metrics = ground_state_metrics(results, energy=energy)
    per = metrics.pop("per_structure")
    summary = {
        "command": command,
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "input": str(path),
        "settings": {"pressure_gpa": pressure_gpa, "calculator": calculator, "optimizer": optimizer, "fmax": fmax,
                     "max_steps": max_steps, "batch": batch, "batch_size": batch_size, "device": device,
                     "energy_measure": energy},
        "wall_s": round(wall, 2),
        "wall_s_total": round(earlier + wall, 2),  # this run plus the earlier runs it resumed
        "n_resumed": sum(1 for r in results if r.resumed),
        "metrics": metrics,
        "results": [{**r.to_dict(structures=False), "resumed": r.resumed, **{k: p[k] for k in
                     ("matched", "rms_dist", "dV", "dE_meV")}} for r, p in zip(results, per)],
    }
    if plot:
        plot_delta_e_histogram({Path(str(path)).stem or "relaxed": results}, path=out_dir / "delta_e_hist.png",
                               energy=energy)
        summary["plot"] = str(out_dir / "delta_e_hist.png")
    from .._fileio import atomic_write_text

    atomic_write_text(out_dir / "summary.json", strict_json_dumps(_clean(summary), indent=1, default=str))
    summary["_results"] = results
    return summary


def run_ground_state_study(checkpoints, out: str, n: int = 100, pressure_gpa: float = 10.0, seed: int = 0,
                           sampler: str | None = None, steps: int | None = None, fmax: float = 0.05,
                           max_steps: int = 500, batch_size: int = 32, device: str = "cpu", plot: bool = True,
                           progress: bool = True, command: str = "") -> dict:
    """Table III for several models: for each checkpoint generate ``n`` crystals (seeded), relax them with CHGNet at
    ``pressure_gpa`` and compute the ground-state metrics; then one table with the paper's DFT rows beside ours, and
    the Fig. S2 histograms. Layout: ``<out>/<model label>/{generated,relaxed}``, ``<out>/table3.md``,
    ``<out>/study.json``, ``<out>/delta_e_hist.png``. Resumable (finished relaxations are not redone)."""
    from ..io import SampleWriter
    from ..train import load_model
    from .ground_state import plot_delta_e_histogram, render_table3, table3

    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    ours, by_model, rows = {}, {}, {}
    for ck in checkpoints:
        model = load_model(ck, map_location=device).to(device)
        kind = model.cfg.model
        label = {"dpcdvae": "DP-CDVAE", "cdvae": "CDVAE", "cdvae_fourier": "CDVAE+Fourier"}.get(kind, kind)
        if label in ours:
            label = f"{label} ({Path(ck).parent.name})"
        smp = sampler or ("langevin" if kind.startswith("cdvae") else "eq7")
        mdir = out_dir / label.replace(" ", "_").replace("+", "plus")
        gen_dir = mdir / "generated"
        if not (gen_dir / "samples.extxyz").exists():
            gen = model.generate(n, sampler=smp, steps=steps, seed=seed, progress=progress)
            SampleWriter(gen_dir, meta={"command": command, "checkpoint": str(ck), "sampler": smp, "steps": steps,
                                        "seed": seed}).add(gen)
        s = run_relax(str(gen_dir / "samples.extxyz"), str(mdir / "relaxed"), pressure_gpa=pressure_gpa,
                      fmax=fmax, max_steps=max_steps, batch_size=batch_size, device=device, progress=progress,
                      command=command)
        by_model[label] = s.pop("_results")
        ours[label] = s["metrics"]
        rows[label] = {"checkpoint": str(ck), "sampler": smp, "n_generated": n, **s["metrics"]}
    df = table3(ours)
    text = render_table3(df, markdown=True)
    (out_dir / "table3.md").write_text(text + "\n")
    study = {"command": command, "date": _dt.datetime.now().isoformat(timespec="seconds"), "n": n,
             "pressure_gpa": pressure_gpa, "seed": seed, "wall_s": round(time.time() - t0, 1), "models": rows}
    if plot:
        plot_delta_e_histogram(by_model, path=out_dir / "delta_e_hist.png")
        study["plot"] = str(out_dir / "delta_e_hist.png")
    (out_dir / "study.json").write_text(strict_json_dumps(_clean(study), indent=1, default=str))
    study["table"] = text
    return study


def _add_study_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "ground-state", help="Table III study: generate with each checkpoint, relax (CHGNet), tabulate vs DFT (paper)")
    p.add_argument("--checkpoints", nargs="+", required=True, help="e.g. DP-CDVAE, CDVAE, CDVAE+Fourier checkpoints")
    p.add_argument("--n", type=int, default=100, help="generated crystals per model (paper: 100)")
    p.add_argument("--dataset", default="carbon_24", help="for the record (the models carry their own settings)")
    p.add_argument("--pressure", type=float, default=10.0, metavar="GPA")
    p.add_argument("--sampler", default=None, help="default: eq7 for DP-CDVAE, langevin for the CDVAE baselines")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fmax", type=float, default=0.05)
    p.add_argument("--max-steps", type=int, default=500)
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=_cmd_study)


def _cmd_study(a) -> int:
    s = run_ground_state_study(a.checkpoints, a.out, n=a.n, pressure_gpa=a.pressure, seed=a.seed, sampler=a.sampler,
                               steps=a.steps, fmax=a.fmax, max_steps=a.max_steps, device=a.device,
                               command=" ".join(shlex.quote(x) for x in sys.argv))
    print(s["table"])
    print(f"wall time {s['wall_s']} s; details: {Path(a.out) / 'study.json'}")
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``relax`` subcommand on an ``argparse`` subparsers object; sets ``func``."""
    p = subparsers.add_parser(
        "relax", help="relax structures under pressure (CHGNet default) + Table III ground-state metrics",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("path", help="a CIF file, a folder of CIFs or an extxyz file")
    p.add_argument("--pressure", type=float, default=0.0, metavar="GPA",
                   help="external pressure in GPa (the paper relaxes Carbon-24 at 10)")
    p.add_argument("--calculator", default="chgnet",
                   help="chgnet (default), emt (toy, tests only) or package.module:attribute (an ASE calculator, "
                        "a zero-argument factory of one, or a batch predictor)")
    p.add_argument("--fmax", type=float, default=0.05, help="force criterion in eV/A (default 0.05)")
    p.add_argument("--max-steps", type=int, default=500)
    p.add_argument("--optimizer", default="FIRE", choices=["FIRE", "BFGS", "LBFGS"])
    p.add_argument("--out", required=True, help="output folder (re-use it to resume an interrupted run)")
    p.add_argument("--no-batch", action="store_true", help="relax one structure at a time (stock ASE path)")
    p.add_argument("--batch-size", type=int, default=32, help="structures relaxed in lock step (default 32)")
    p.add_argument("--device", default="cpu", help="torch device for CHGNet (cpu, cuda)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--no-resume", action="store_true", help="recompute ids already finished in --out")
    p.add_argument("--retry-failed", action="store_true", help="recompute ids whose stored result failed")
    p.add_argument("--energy", choices=["enthalpy", "energy"], default="enthalpy",
                   help="dE measure: enthalpy per atom H = E + pV (default, what the relaxation minimises) or E")
    p.add_argument("--plot", action="store_true", help="write the Fig. S2 histogram <out>/delta_e_hist.png")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_relax)
    _add_study_parser(subparsers)
    return p


def _cmd_relax(a) -> int:
    if a.threads:
        import torch

        torch.set_num_threads(int(a.threads))
    from .ground_state import CAVEAT

    try:
        s = run_relax(a.path, a.out, pressure_gpa=a.pressure, calculator=a.calculator, fmax=a.fmax,
                      max_steps=a.max_steps, optimizer=a.optimizer, batch=not a.no_batch, batch_size=a.batch_size,
                      device=a.device, resume=not a.no_resume, retry_failed=a.retry_failed, energy=a.energy,
                      plot=a.plot, progress=not a.no_progress,
                      command=" ".join(shlex.quote(x) for x in sys.argv))
    except (FileNotFoundError, ValueError) as exc:
        print(f"dpcdvae relax: error: {exc}", file=sys.stderr)
        return 2
    results = s.pop("_results")
    print(summary_table(results, a.energy))
    m = s["metrics"]
    print()
    print(f"{m['n']} structures at {a.pressure:g} GPa: {m['n_relaxed']} relaxed ({m['n_converged']} converged), "
          f"{m['n_failed']} failed, {s['n_resumed']} resumed from {a.out} (* in the table)")
    print(f"match rate {_fmt(m['match_rate'], 1)} %   <delta_rms> {_fmt(m['delta_rms'])}   "
          f"dV_rms {_fmt(m['dV_rms'])} A^3/atom   dE_rms ({m['energy_measure']}) {_fmt(m['dE_rms'], 1)} meV/atom")
    if "chgnet" in str(a.calculator).lower():
        print(CAVEAT)
    print(f"summary: {Path(a.out) / 'summary.json'}")
    return 0


def main(argv=None) -> int:  # pragma: no cover - convenience: python -m dpcdvae.eval.ground_state_cli
    parser = argparse.ArgumentParser(prog="dpcdvae")
    add_parser(parser.add_subparsers(dest="command", required=True))
    a = parser.parse_args(argv)
    return a.func(a)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
