"""``dpcdvae evaluate`` and ``dpcdvae train-property`` (parse, call :mod:`dpcdvae.eval`, write and print)."""
from __future__ import annotations

import argparse
import datetime as _dt
import shlex
import sys
import time
from pathlib import Path

from ..utils.fileio import atomic_write_text, strict_json_dumps
from ..data.paths import SPLITS
from ..eval import property_train
from ..eval.evaluate import _versions, evaluate, flatten, resolve_eval_dataset
from ..eval.property_train import DEFAULT_MODEL_KWARGS, train_property
from ..eval.tables import PAPER_GEN_SAMPLES, compare_table, render_markdown, render_text
from ..models.scope import dataset_mismatch

__all__ = ["add_parser", "run", "main"]

_EVALUATE_DOC = """``dpcdvae evaluate``: metrics of reconstructions / generated samples, written to ``metrics.json``.

Examples::

    dpcdvae evaluate --task recon --samples runs/x/recon_cifs --dataset perov_5 --out runs/x/eval_recon
    dpcdvae evaluate --task gen --samples runs/x/gen.extxyz --dataset carbon_24 --n-workers 2
    dpcdvae evaluate --task baseline --dataset perov_5          # validation split as "generated" (data vs data)
    dpcdvae evaluate --task baseline --dataset perov_5 --generated-split train --n-generated 10240
                                                                # the ceiling at Table II's count (10,240 drawn)
    dpcdvae evaluate --task gen --samples runs/x/gen --dataset perov_5 --property-model runs/prop/best.pt

Writes ``<out>/metrics.json`` (flat keys: every metric, counts, ``command``, package versions, date, wall time),
``<out>/per_structure.csv`` (recon) or ``<out>/per_sample.csv`` (gen) and ``<out>/table.md``, and prints our numbers
beside the paper's table. An existing ``metrics.json`` is never overwritten unless ``--overwrite`` is given.
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``evaluate`` subcommand on an ``argparse`` subparsers object; sets ``func``."""
    p = subparsers.add_parser(
        "evaluate", help="reconstruction (Table I) / generation (Table II) metrics of samples",
        description=_EVALUATE_DOC, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True, choices=["recon", "gen", "baseline"],
                   help="recon: samples named <material_id>.cif vs the test split; gen: generated samples; "
                        "baseline: the validation split (or --generated-split) as 'generated' (data vs data)")
    p.add_argument("--samples", help="folder of CIFs, a CIF file or an extxyz file")
    p.add_argument("--dataset", required=True, help="perov_5, carbon_24, mp_20 or demo (SYNTHETIC, scored as "
                                                     "perov_5)")
    p.add_argument("--data-root", default=None, help="folder holding <dataset>/test.csv (default: data locator)")
    p.add_argument("--out", default=None, help="output folder (default: ./eval-<task>-<dataset>-<timestamp>)")
    p.add_argument("--n-workers", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--split", default="test", help="reference split (default test)")
    p.add_argument("--generated-split", default=None, choices=list(SPLITS),
                   help="--task baseline: the split scored as 'generated' (default val)")
    p.add_argument("--n-generated", type=int, default=None, metavar="N",
                   help="--task baseline: score N crystals of --generated-split drawn without replacement with "
                        "--seed (default: the whole split); the paper's Table II uses 10,240, and COV-R and the W1 "
                        "distances depend on the count")
    p.add_argument("--seed", type=int, default=0, help="seed of the 1000-sample property subset and of the "
                                                       "--n-generated draw (default 0)")
    p.add_argument("--n-property-samples", type=int, default=1000)
    p.add_argument("--comp-scaler", default="cdvae",
                   help="Magpie standardiser for COV: 'cdvae' (CDVAE's fixed constants, default: comparable with "
                        "the papers), 'test' (fit on the reference split), 'train' (fit on the train split) or a "
                        "JSON file with 132 'mean' and 'std' values; reported as comp_scaler in metrics.json")
    p.add_argument("--compare-model", default="DP-CDVAE", help="paper row to compute deltas against")
    p.add_argument("--table", default=None, help="paper table to compare with (default I for recon, II for gen; "
                                                  "S1 for an Eq. 6 sampler)")
    p.add_argument("--structure-only-validity", action="store_true",
                   help="recon: match every structure-valid prediction (CDVAE also requires SMACT validity)")
    p.add_argument("--no-eform", action="store_true", help="skip the E_form predictor")
    p.add_argument("--breakdown", action="store_true",
                   help="recon: sort every unmatched crystal into one cause (wrong composition, wrong geometry, two "
                        "elements exchanged, ...); failures.* in metrics.json, category/swapped in per_structure.csv")
    p.add_argument("--property-model", default=None, metavar="PATH",
                   help="--task gen / baseline: W1(E_form) with this checkpoint from `dpcdvae train-property` (best.pt) instead "
                        "of CDVAE's pretrained regressor; recorded as property_model.* in metrics.json")
    p.add_argument("--no-cache", action="store_true", help="do not use the fingerprint cache")
    p.add_argument("--overwrite", action="store_true", help="overwrite an existing metrics.json")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)
    return p


def samples_model_dataset(samples) -> str | None:
    """The dataset the model behind ``samples`` was trained on, from the ``samples.json`` that ``dpcdvae sample`` /
    ``reconstruct`` / ``csp`` wrote beside them (in the folder, or above a ``cif/`` folder, a CIF or the extxyz):
    its ``model_dataset``, else what its ``checkpoint`` says (:func:`dpcdvae.workflows.checkpoint_training_dataset`);
    None when there is no such file or it does not say."""
    import json

    from ..workflows.common import checkpoint_training_dataset

    p = Path(samples)
    for cand in (p / "samples.json", p.parent / "samples.json", p.parent.parent / "samples.json"):
        if cand.is_file():
            try:
                meta = json.loads(cand.read_text()).get("meta") or {}
            except (OSError, ValueError, AttributeError):
                return None
            return meta.get("model_dataset") or checkpoint_training_dataset(meta.get("checkpoint"))
    return None


def run(args: argparse.Namespace) -> int:
    """Execute a parsed ``evaluate`` command; returns the exit status."""
    import pandas as pd

    t0 = time.time()
    dataset, paper_dataset, _ = resolve_eval_dataset(args.dataset, args.data_root)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(args.out) if args.out else Path(f"eval-{args.task}-{dataset}-{stamp}")
    if (out / "metrics.json").exists() and not args.overwrite:
        print(f"error: {out / 'metrics.json'} exists (use --overwrite or another --out)", file=sys.stderr)
        return 2
    mismatch = dataset_mismatch(samples_model_dataset(args.samples), dataset) if args.samples else None
    if mismatch:  # one line, before the work: the samples come from a model trained on another dataset
        print(f"[dpcdvae] {mismatch}", file=sys.stderr, flush=True)
    m, per = evaluate(args.task, dataset, samples=args.samples, data_root=args.data_root, split=args.split,
                      n_workers=args.n_workers, seed=args.seed, n_property_samples=args.n_property_samples,
                      require_comp_valid=not args.structure_only_validity, compute_eform=not args.no_eform,
                      cache=not args.no_cache, progress=not args.quiet, comp_scaler=args.comp_scaler,
                      property_model=getattr(args, "property_model", None),
                      breakdown=getattr(args, "breakdown", False),
                      generated_split=getattr(args, "generated_split", None),
                      n_generated=getattr(args, "n_generated", None))
    failures = m.pop("failures", None)
    flat = flatten(m)
    if failures is not None:
        flat.update({f"failures.{k}": v for k, v in flatten(failures).items()})
        flat["failures.swapped_pairs"] = "; ".join(f"{a}-{b}:{k}" for a, b, k in failures["swapped_pairs"])
    flat.update({
        "task": args.task,
        "paper_dataset": paper_dataset,
        "samples": str(Path(args.samples).resolve()) if args.samples else None,
        "split": args.split,
        "command": "dpcdvae " + " ".join(shlex.quote(a) for a in getattr(args, "_argv", sys.argv[1:])),
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "wall_time_s": round(time.time() - t0, 1),
        **_versions(),
    })
    if mismatch:
        flat["warning"] = mismatch
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "metrics.json", strict_json_dumps(flat, indent=2, sort_keys=True))
    if per is not None:
        name = "per_structure.csv" if args.task == "recon" else "per_sample.csv"
        pd.DataFrame(per).to_csv(out / name, index=False)
    table = args.table or ("I" if args.task == "recon" else "II")
    shown = flat
    subset_note = ""
    if args.task == "recon" and flat.get("n_targets_with_prediction", 0) < flat.get("n_targets", 0):
        # a subset run: the table shows the match rate over the crystals that have a prediction
        shown = {**flat, "match_rate": flat["match_rate_over_provided"]}
        subset_note = (f"\nnote: predictions for {flat['n_targets_with_prediction']} of {flat['n_targets']} test "
                       f"crystals; 'ours' is the match rate over those (over the whole split: "
                       f"{flat['match_rate']:.2f} %)")
    try:
        df = compare_table(shown, table=table, dataset=paper_dataset, model=args.compare_model)
        text = render_text(df)
        (out / "table.md").write_text(render_markdown(df) + "\n")
    except KeyError as exc:
        text = f"(no paper table to compare: {exc})"
    if table == "II" and flat.get("n_generated") is not None and int(flat["n_generated"]) != PAPER_GEN_SAMPLES:
        subset_note += (f"\nnote: {int(flat['n_generated']):,} generated crystals here, {PAPER_GEN_SAMPLES:,} in the "
                        f"paper: COV-R and the W1 distances depend on the count, so the delta row is not a comparison")
    if dataset != paper_dataset:
        subset_note += (f"\nnote: {dataset} is SYNTHETIC demo data, scored with {paper_dataset}'s thresholds and "
                        f"shown beside the paper's {paper_dataset} rows for orientation only")
    print(text + subset_note)
    if failures is not None:
        from ..eval.failures import render_breakdown

        print("\nwhy the unmatched crystals miss:\n" + render_breakdown(failures))
    print(f"\nwrote {out / 'metrics.json'}  ({flat['wall_time_s']} s)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Standalone entry: ``python -m dpcdvae.cli.evaluate evaluate ...``."""
    parser = argparse.ArgumentParser(prog="dpcdvae")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    args._argv = argv
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())


def add_train_property_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``dpcdvae train-property`` on an ``argparse`` subparsers object; sets ``func``."""
    p = subparsers.add_parser(
        "train-property", help="train a DimeNet++ property regressor (for W1(E_form) without a published model)",
        description=property_train.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True, help="perov_5, carbon_24, mp_20, demo or a dataset under --data-root")
    p.add_argument("--prop", default=None, help="property column (default: the dataset's, e.g. heat_ref)")
    p.add_argument("--train-split", default="train", choices=SPLITS)
    p.add_argument("--val-split", default="val", choices=SPLITS)
    p.add_argument("--max-epochs", type=int, default=300)
    p.add_argument("--max-minutes", type=float, default=None, help="wall-clock limit of the training loop")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--hidden-channels", type=int, default=DEFAULT_MODEL_KWARGS["hidden_channels"])
    p.add_argument("--num-blocks", type=int, default=DEFAULT_MODEL_KWARGS["num_blocks"])
    p.add_argument("--patience", type=int, default=30, help="early stopping: epochs without a better val MAE")
    p.add_argument("--limit-train", type=int, default=None, help="only the first N training rows")
    p.add_argument("--limit-val", type=int, default=None, help="only the first N validation rows")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root", default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--num-workers", type=int, default=None,
                   help="processes for the CrystalNN preprocessing (default: one per core; 1: in this process)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--out", required=True, help="output folder: best.pt, metrics.jsonl, summary.json")
    p.set_defaults(func=_cmd_train_property)
    return p


def _cmd_train_property(a: argparse.Namespace) -> int:
    argv = getattr(a, "_argv", None) or sys.argv[1:]
    res = train_property(a.dataset, a.out, prop=a.prop, train_split=a.train_split, val_split=a.val_split,
                         root=a.data_root, max_epochs=a.max_epochs, max_minutes=a.max_minutes,
                         batch_size=a.batch_size, lr=a.lr, hidden_channels=a.hidden_channels,
                         num_blocks=a.num_blocks, seed=a.seed, progress=not a.no_progress,
                         limit_train=a.limit_train, limit_val=a.limit_val, patience=a.patience, device=a.device,
                         num_workers=a.num_workers,
                         command="dpcdvae " + " ".join(shlex.quote(x) for x in argv))
    keys = ("dataset", "prop", "units", "best_val_mae", "baseline_val_mae", "val_std", "best_epoch", "epochs",
            "stopped", "wall_s", "n_train", "n_val", "n_excluded_nan", "checkpoint")
    print(strict_json_dumps({k: res[k] for k in keys}))
    return 0
