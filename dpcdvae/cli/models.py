"""The model commands of ``dpcdvae``: demo, train, sample, reconstruct, csp, csp-match, optimize, pretrained (parse,
call, print)."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ..utils.fileio import strict_json_dumps
from ..data.registry import registered_name
from ..diffusion.samplers import sampler_names
from ..utils.errors import UserError  # noqa: F401  (re-exported: dpcdvae.cli.UserError)


def _parse_set(values) -> dict:
    """``--set train.lr=0.001 model.variant=na`` -> dict with YAML-parsed values (not yet checked against the
    config schema: :func:`dpcdvae.config.validate` does that). :class:`UserError` for an item that is not
    ``key=value`` or whose value is not YAML."""
    import yaml

    out = {}
    for item in values or []:
        if "=" not in item or not item.split("=", 1)[0].strip():
            raise UserError(f"--set expects key=value, got {item!r}")
        k, v = item.split("=", 1)
        try:
            out[k.strip()] = yaml.safe_load(v)
        except yaml.YAMLError as exc:
            raise UserError(f"--set {item}: the value is not valid YAML ({' '.join(str(exc).split())[:120]})") \
                from None
    return out


def check_train_settings(config: str, overrides: dict, max_epochs=None, max_minutes=None, seed=None) -> None:
    """Check what ``dpcdvae train`` was given before any work (before Lightning is even imported): the numbers of
    ``--max-epochs`` / ``--max-minutes`` / ``--seed`` and every ``--set`` value against the config schema (type,
    range, allowed values: :func:`dpcdvae.config.validate`). Raises :class:`UserError` or
    :class:`~dpcdvae.utils.errors.ConfigValueError`, one line each."""
    from ..config import load_config

    if max_epochs is not None and max_epochs < 1:
        raise UserError(f"--max-epochs {max_epochs}: must be >= 1")
    if max_minutes is not None and not max_minutes > 0:
        raise UserError(f"--max-minutes {max_minutes:g}: must be > 0")
    if seed is not None and not 0 <= seed < 2 ** 32:
        raise UserError(f"--seed {seed}: must be in [0, 2^32 - 1]")
    load_config(config, overrides=overrides)


# ------------------------------------------------------------------------------------------------------ train
def _add_train(sub):
    p = sub.add_parser("train", help="train a model (Lightning; best/last checkpoints in --out)")
    p.add_argument("--dataset", required=True, help="perov_5, carbon_24, mp_20 or demo (synthetic)")
    p.add_argument("--config", default="compact", help="paper | compact | tiny | path/to.yaml")
    p.add_argument("--variant", choices=["dpcdvae", "na", "gine", "na_gine"], default=None)
    p.add_argument("--model", choices=["dpcdvae", "cdvae", "cdvae_fourier"], default=None)
    p.add_argument("--train-split", default="train", choices=["train", "val"],
                   help="split to train on (Carbon-24 has no train split here: use val, and say so)")
    p.add_argument("--max-epochs", type=int, default=None)
    p.add_argument("--max-minutes", type=float, default=None)
    p.add_argument("--out", required=True)
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.ckpt")
    p.add_argument("--init-from", default=None, metavar="CHECKPOINT",
                   help="start from these weights (fine-tuning; path or pretrained:<name>, same architecture)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--data-root", default=None)
    p.add_argument("--accelerator", default="auto")
    p.add_argument("--devices", default="auto")
    p.add_argument("--strategy", default="auto", help="e.g. ddp for multi-GPU (Lightning strategy flag)")
    p.add_argument("--set", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. train.batch_size=64")
    p.add_argument("--on-error", choices=["raise", "skip"], default="raise",
                   help="a bad CSV row: stop with its file, row and material_id (raise), or skip it and report "
                        "the skipped rows (skip)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_train)


def _cmd_train(a):
    import warnings

    ov = _parse_set(a.set)
    if a.variant:
        ov["model.variant"] = a.variant
    if a.model:
        ov["model.model"] = a.model
    check_train_settings(a.config, ov, a.max_epochs, a.max_minutes, a.seed)  # before Lightning is imported
    data = resolve_dataset_arg(a.dataset, a.data_root)  # once: the config and every split read this handle

    from ..data import DataWarning
    from ..train import train

    warnings.simplefilter("ignore", DataWarning)  # the dataset report lists the skipped rows
    devices = a.devices if a.devices == "auto" else int(a.devices)
    train(dataset=data, config=a.config, out=a.out, overrides=ov,
          train_split=a.train_split, max_epochs=a.max_epochs, max_minutes=a.max_minutes, resume=a.resume,
          accelerator=a.accelerator, devices=devices, strategy=a.strategy, progress=not a.no_progress,
          seed=a.seed, on_error=a.on_error, init_from=a.init_from)


def resolve_dataset_arg(name: str, root=None, flag: str = "--dataset"):
    """``--dataset NAME`` resolved once (:func:`dpcdvae.data.resolve_dataset`: the registry's names and aliases in
    any case, a folder of one's own, the demo generated on first use) -> a
    :class:`~dpcdvae.data.resolve.DatasetHandle`. An unknown name is a one-line :class:`UserError` naming the
    argument and the known datasets."""
    from ..data.resolve import UnknownDatasetNameError, resolve_dataset

    try:
        return resolve_dataset(name, root)
    except UnknownDatasetNameError as exc:
        raise UserError(f"{flag} {name}: {exc}") from None


def _add_sampling_args(p) -> None:
    """--sampler (choices: the sampler registry, aliases included), --steps, --batch-size, --seed: shared by sample
    and reconstruct."""
    p.add_argument("--sampler", choices=sampler_names(), default=None,
                   help="default: the model's own (eq7 for DP-CDVAE, langevin for the CDVAE baselines); "
                        "strided is another name of ddim")
    p.add_argument("--steps", type=int, default=None,
                   help="network calls for --sampler strided_eq7 or ddim (<= T); Langevin iterations per level")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--devices", type=int, default=1,
                   help="processes to shard the batches over (one per GPU with --accelerator gpu); the same "
                        "crystals whatever the number")
    p.add_argument("--strategy", default="ddp", choices=["ddp"], help="one process per device")
    p.add_argument("--accelerator", default="cpu", choices=["cpu", "gpu"])


# ------------------------------------------------------------------------------------------------------ sample
def _add_sample(sub):
    p = sub.add_parser("sample", help="generate crystals from z ~ N(0, I); writes CIFs + extxyz + JSON")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--n", type=int, default=16)
    _add_sampling_args(p)
    p.add_argument("--out", required=True, help="a new run folder is made inside if OUT is not empty")
    p.add_argument("--resume", action="store_true",
                   help="OUT is the run folder of an earlier, stopped `dpcdvae sample` with the same settings: its "
                        "finished batches (OUT/batches) are read back, the rest computed; the result is the same "
                        "crystals as one uninterrupted run")
    p.add_argument("--device", default="cpu")
    p.add_argument("--symprec", type=float, default=None, metavar="A",
                   help="write symmetrised CIFs with the space group found at this tolerance (A, e.g. 0.1; atoms "
                        "move by up to this much); default: P1 CIFs, exactly as sampled")
    p.set_defaults(func=_cmd_sample)


def _cmd_sample(a):
    from ..workflows.common import check_sampling_args
    from ..workflows.generate import generate_to_folder

    from ..io import new_run_dir
    from ..models import load_model
    from ..models.scope import model_scope

    if a.n < 1:
        raise UserError(f"--n {a.n}: the number of crystals must be >= 1")
    if a.batch_size < 1:
        raise UserError(f"--batch-size {a.batch_size}: must be >= 1")
    if a.symprec is not None and not a.symprec > 0:
        raise UserError(f"--symprec {a.symprec}: a tolerance in A, > 0 (e.g. 0.1)")
    if a.resume and not (Path(a.out) / "batches" / "spec.json").is_file():
        raise UserError(f"--resume: {a.out} holds no batches/spec.json; give the run folder that an earlier "
                        f"`dpcdvae sample` printed as \"out\"")
    model = load_model(a.checkpoint, map_location=a.device).to(a.device)
    a.sampler = check_sampling_args(model, a.sampler, a.steps)
    run = Path(a.out) if a.resume else new_run_dir(a.out, "sample")
    a.resume_hint = f"continue it with the same command plus --resume --out {run}"
    t0 = time.time()
    gen = generate_to_folder(model, a.n, run, sampler=a.sampler, steps=a.steps, seed=a.seed,
                             batch_size=a.batch_size, symprec=a.symprec, reseed_batches=True,
                             devices=a.devices, checkpoint=a.checkpoint, strategy=a.strategy,
                             accelerator=a.accelerator, resume=a.resume,
                             meta={"command": " ".join(sys.argv), "checkpoint": str(a.checkpoint),
                                   "model_dataset": model_scope(model, a.checkpoint)["dataset"],
                                   "cif_symprec": a.symprec})
    print(json.dumps({"out": str(run), "n": a.n, "n_valid": gen.n_valid, "n_decoded": gen.n_decoded,
                      "devices": a.devices, "batches_read_back": gen.batches_read_back,
                      "validity": "paper (structure + composition; see samples.json)",
                      "wall_s": round(time.time() - t0, 1)}))


# ------------------------------------------------------------------------------------------------------ csp
def _add_csp(sub):
    p = sub.add_parser("csp", help="structure prediction from a composition: candidates with exactly that "
                                   "composition (lattice and coordinates from the model)")
    p.add_argument("--checkpoint", required=True, help="a DP-CDVAE checkpoint, e.g. pretrained:perov_5")
    p.add_argument("--composition", required=True, help="chemical formula, e.g. SrTiO3")
    p.add_argument("--num-atoms", type=int, default=None,
                   help="atoms per cell (a multiple of the formula's; default: the multiple the model's N_a head "
                        "finds most probable, per candidate)")
    p.add_argument("--n", type=int, default=20, help="candidates (default 20)")
    p.add_argument("--latent", choices=["search", "prior"], default="search",
                   help="z moved until the N_a and composition heads agree with the request (search, default) "
                        "or drawn from the prior")
    p.add_argument("--forced-types", choices=["assign", "fixed"], default="assign",
                   help="the requested types re-assigned to sites by the type head at every step (assign, "
                        "default; the composition stays exact) or kept on their random start sites (fixed)")
    p.add_argument("--sampler", choices=sampler_names("ddpm"), default="eq7")
    p.add_argument("--steps", type=int, default=None, help="network calls for --sampler strided_eq7 or ddim (alias strided)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="a new run folder is made inside if OUT is not empty")
    p.add_argument("--symprec", type=float, default=None, metavar="A",
                   help="symmetrised CIFs at this tolerance (A); default P1, exactly as sampled")
    p.add_argument("--rank", choices=["gii", "chgnet", "none"], default="gii",
                   help="rank the valid candidates, best first, into ranking.json (with the basis) and "
                        "ranked/NN_<id>.cif: gii (default) by the bond-valence global instability index, a "
                        "geometric proxy (v.u.; no energy, undefined for one-element crystals); chgnet by CHGNet "
                        "energy per atom (the [relax] extra); none: no ranking")
    p.add_argument("--relax-steps", type=int, default=0, metavar="K",
                   help="with --rank chgnet: relax each candidate (cell + positions, FIRE, <= K steps) first and "
                        "rank by relaxed enthalpy per atom (default 0: static energy as sampled)")
    p.add_argument("--pressure", type=float, default=0.0, metavar="GPA", help="pressure of --relax-steps (GPa)")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=_cmd_csp)


def _cmd_csp(a):
    from ..workflows.common import check_sampling_args
    from ..workflows.rank import rank_candidates

    from ..models.csp import allowed_num_atoms, parse_composition
    from ..io import SampleWriter, new_run_dir
    from ..models import load_model
    from ..models.scope import check_composition, model_scope

    if a.n < 1:
        raise UserError(f"--n {a.n}: the number of candidates must be >= 1")
    if a.relax_steps < 0 or (a.relax_steps and a.rank != "chgnet"):
        raise UserError(f"--relax-steps {a.relax_steps}: >= 0, and only with --rank chgnet")
    if a.symprec is not None and not a.symprec > 0:
        raise UserError(f"--symprec {a.symprec}: a tolerance in A, > 0 (e.g. 0.1)")
    try:
        counts = parse_composition(a.composition)
    except ValueError as exc:
        raise UserError(f"--composition {a.composition}: {str(exc).split(': ', 1)[-1]}") from None
    model = load_model(a.checkpoint, map_location=a.device).to(a.device)
    if model.cfg.model != "dpcdvae":
        raise UserError(f"--checkpoint {a.checkpoint}: CSP mode needs a DP-CDVAE model (this is {model.cfg.model})")
    a.sampler = check_sampling_args(model, a.sampler, a.steps)
    # an element the model never saw, a cell above its max_atoms: one line naming them (OutOfScopeError)
    check_composition(model_scope(model, a.checkpoint), a.composition, a.num_atoms)
    try:
        allowed_num_atoms(counts, int(model.cfg.max_atoms), a.num_atoms)
    except ValueError as exc:
        raise UserError(f"--num-atoms / --composition: {exc}") from None
    t0 = time.time()
    out = model.predict_structure(a.composition, n=a.n, num_atoms=a.num_atoms, latent=a.latent, sampler=a.sampler,
                                  steps=a.steps, seed=a.seed, progress=True, forced_types=a.forced_types)
    run = new_run_dir(a.out, "csp")
    csp = out.meta["csp"]
    writer = SampleWriter(run, meta={"command": " ".join(sys.argv), "checkpoint": str(a.checkpoint),
                                     "model_dataset": csp.get("model_scope", {}).get("dataset"),
                                     "sampler": a.sampler.label, "steps": a.steps, "seed": a.seed, "csp": csp,
                                     "cif_symprec": a.symprec}, symprec=a.symprec)
    writer.add(out)
    summary = {"out": str(run), "composition": csp["composition"], "latent": a.latent,
               "forced_types": a.forced_types, "n": a.n,
               "num_atoms": sorted(set(csp["num_atoms"])), "n_valid": writer.n_valid}
    if a.rank == "chgnet":
        table = rank_candidates(out, run_dir=run, relax_steps=a.relax_steps, pressure_gpa=a.pressure)
        best = [r for r in table if r["rank"] is not None][:5]
        print("rank  id            formula      E/atom (eV)" + ("  relax steps" if a.relax_steps else ""),
              file=sys.stderr)
        for r in best:
            print(f"{r['rank']:>4}  {r['id']:<12}  {r['formula'] or '-':<11}  {r['energy_per_atom']:>11.4f}"
                  + (f"  {r['steps']:>11}" if a.relax_steps else ""), file=sys.stderr)
        summary.update(ranking=str(run / "ranking.json"), rank_by="chgnet",
                       n_ranked=sum(r["rank"] is not None for r in table), best=best[0]["id"] if best else None)
    elif a.rank == "gii":
        from ..eval.plausibility import GII_BASIS
        from ..workflows.rank import rank_by_proxy

        table = rank_by_proxy(out, run_dir=run)
        best = [r for r in table if r["rank"] is not None][:5]
        print(f"ranked by {GII_BASIS}", file=sys.stderr)
        if best:
            print("rank  id            formula      GII (v.u.)", file=sys.stderr)
            for r in best:
                print(f"{r['rank']:>4}  {r['id']:<12}  {r['formula'] or '-':<11}  {r['gii']:>10.3f}", file=sys.stderr)
        else:
            why = next((r["error"] for r in table if r["error"]), "no valid candidate")
            print(f"no candidate ranked: {why}", file=sys.stderr)
        summary.update(ranking=str(run / "ranking.json"), rank_by="gii",
                       n_ranked=sum(r["rank"] is not None for r in table), best=best[0]["id"] if best else None)
    summary["wall_s"] = round(time.time() - t0, 1)
    print(strict_json_dumps(summary))


# ------------------------------------------------------------------------------------------------------ csp-match
_CSP_MATCH_DOC = """``dpcdvae csp-match``: the CSP benchmark (DiffCSP's protocol). For each test crystal, predict structures from
its composition and atom count alone and match them with StructureMatcher(stol=0.5, angle_tol=10, ltol=0.3) against
the true crystal: the match rate with 1 sample (the first) and with the best of --samples (a crystal counts when any
of its samples matches; RMS = the smallest over the matching samples). Prints one progress line per sample, then one
JSON line (dpcdvae.workflows.csp.csp_match).

    dpcdvae csp-match --checkpoint pretrained:perov_5 --dataset perov_5 --samples 20
    dpcdvae csp-match --checkpoint pretrained:perov_5 --limit 200 --samples 20 --sampler strided_eq7 --steps 100

--rank chgnet also scores every valid candidate with CHGNet's static energy per atom (as sampled, no relaxation;
dpcdvae csp --rank chgnet) and reports the match rate of each crystal's lowest-energy candidate
(match_rate_chgnet_top1): does the ranking pick a matching candidate more often than the first sample does?

Anchors (quoted from the DiffCSP paper, Perov-5, for orientation): CDVAE used as a CSP model 45.31 % (1 sample),
DiffCSP 52.02 % (1 sample) and 98.60 % (20 samples).
"""


def _add_csp_match(sub):
    p = sub.add_parser("csp-match", help="the CSP benchmark: structures predicted from each test crystal's "
                                         "composition, match rate with 1 and the best of N samples",
                       description=_CSP_MATCH_DOC, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="a DP-CDVAE checkpoint, e.g. pretrained:perov_5")
    p.add_argument("--dataset", default="perov_5", help="its test split is predicted (default perov_5)")
    p.add_argument("--data-root", default=None)
    p.add_argument("--limit", type=int, default=None, help="first N test crystals (default: the whole split)")
    p.add_argument("--samples", type=int, default=20, help="candidates per crystal (best of k)")
    p.add_argument("--latent", choices=["search", "prior"], default="search")
    p.add_argument("--forced-types", choices=["fixed", "assign"], default="assign",
                   help="requested types fixed on their random start sites, or re-assigned by the type head")
    p.add_argument("--sampler", choices=sampler_names("ddpm"), default="eq7")
    p.add_argument("--steps", type=int, default=None,
                   help="network calls for --sampler strided_eq7 or ddim (alias strided)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0, help="candidate k is drawn with seed SEED + 1000 k")
    p.add_argument("--n-workers", type=int, default=1, help="processes for the StructureMatcher step")
    p.add_argument("--rank", choices=["none", "chgnet"], default="none")
    p.add_argument("--raw-weights", action="store_true", help="a training checkpoint's raw weights, not its EMA")
    p.set_defaults(func=_cmd_csp_match)


def _cmd_csp_match(a):
    from ..workflows.csp import csp_match

    res = csp_match(a.checkpoint, dataset=a.dataset, limit=a.limit, samples=a.samples, latent=a.latent,
                    forced_types=a.forced_types, sampler=a.sampler, steps=a.steps, batch_size=a.batch_size,
                    seed=a.seed, n_workers=a.n_workers, rank=a.rank, ema=not a.raw_weights, root=a.data_root)
    print(strict_json_dumps(res))


# ------------------------------------------------------------------------------------------------------ optimize
def _add_optimize(sub):
    p = sub.add_parser("optimize", help="property-guided generation: gradient steps on z against a property head, "
                                        "decoded and judged by CDVAE's property model (SR5/SR10/SR15)")
    p.add_argument("--checkpoint", required=True, help="a DP-CDVAE checkpoint, e.g. pretrained:perov_5")
    p.add_argument("--dataset", default=None, help="default: the dataset the checkpoint was trained on")
    p.add_argument("--property", default=None,
                   help="property column (default and, for now, only choice: the dataset's own, e.g. heat_ref)")
    p.add_argument("--direction", choices=["min", "max"], default="min")
    p.add_argument("--n", type=int, default=100, help="starting points (CDVAE: 100)")
    p.add_argument("--start", choices=["data", "prior"], default="data",
                   help="z of the first N test crystals (posterior samples, CDVAE's default) or z ~ N(0, I)")
    p.add_argument("--opt-steps", type=int, default=5000, help="Adam steps on z (CDVAE: 5000)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate on z (CDVAE: 1e-3)")
    p.add_argument("--saves", type=int, default=10, help="latents decoded along the path (CDVAE: 10, plus the last)")
    p.add_argument("--prior-weight", type=float, default=0.0, help="weight of |z|^2/2 in the objective (0: none)")
    p.add_argument("--head", default=None,
                   help="property head file (dpcdvae optimize writes OUT/property_head.pt); default: the one shipped "
                        "with a pretrained model, else one is fitted now on the training split")
    p.add_argument("--head-minutes", type=float, default=10.0, help="time limit for fitting a head (minutes)")
    p.add_argument("--sampler", choices=sampler_names("ddpm"), default=None)
    p.add_argument("--steps", type=int, default=None, help="network calls for --sampler strided_eq7 or ddim (alias strided)")
    p.add_argument("--no-eval", action="store_true", help="skip CDVAE's property model (no SR)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root", default=None)
    p.add_argument("--n-workers", type=int, default=1, help="processes for the property model's graphs")
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=_cmd_optimize)


def _cmd_optimize(a):
    from ..models import load_model
    from ..workflows.optimize import fit_property_head, load_head, run_optimization, save_head, shipped_head_path
    from ..workflows.common import check_sampling_args, checkpoint_dataset

    if a.n < 1:
        raise UserError(f"--n {a.n}: the number of starting points must be >= 1")
    model = load_model(a.checkpoint, map_location=a.device).to(a.device)
    if model.sampler_family != "ddpm":
        raise UserError(f"--checkpoint {a.checkpoint}: optimize needs a DP-CDVAE model (this is {model.cfg.model})")
    a.sampler = check_sampling_args(model, a.sampler, a.steps)
    dataset = registered_name(a.dataset) if a.dataset else checkpoint_dataset(a.checkpoint, model)
    if dataset is None:
        raise UserError("--dataset is needed (no config.json beside the checkpoint and no model card)")
    out = Path(a.out)
    head_path = Path(a.head) if a.head else shipped_head_path(a.checkpoint)
    if head_path is not None and head_path.is_file():
        head = load_head(head_path)
        print(f"[dpcdvae] property head {head_path} ({head.meta.get('prop')}, validation MAE "
              f"{head.meta.get('val_mae', float('nan')):.4g} {head.meta.get('units') or ''})", flush=True)
    elif a.head:
        raise UserError(f"--head {a.head}: no such file")
    else:
        print(f"[dpcdvae] fitting a property head on the frozen encoder ({dataset}, the model's training split)",
              flush=True)
        split = getattr(model, "card", {}).get("train_split") if isinstance(getattr(model, "card", None), dict) \
            else None
        split = split or "train"
        head, report = fit_property_head(model, dataset, root=a.data_root, max_minutes=a.head_minutes,
                                         seed=a.seed, split=split, val_split="val" if split == "train" else split)
        head_path = save_head(head, out / "property_head.pt")
        print(f"[dpcdvae] head: validation MAE {report['val_mae']:.4g} (constant: {report['val_mae_constant']:.4g}), "
              f"R^2 {report['val_r2']:.3f}; written to {head_path}", flush=True)
    if a.property and a.property != head.meta.get("prop"):
        raise UserError(f"--property {a.property}: the head predicts {head.meta.get('prop')!r}")
    res = run_optimization(model, head, dataset, out, n=a.n, start=a.start, steps=a.opt_steps, lr=a.lr,
                           num_saved=a.saves, direction=a.direction, prior_weight=a.prior_weight,
                           sampler=a.sampler, sampler_steps=a.steps, seed=a.seed, root=a.data_root,
                           evaluate=not a.no_eval, n_workers=a.n_workers, command=" ".join(sys.argv))
    res["head_file"] = str(head_path)
    keep = ("dataset", "n", "start", "direction", "validity_all", "head_pred_start_mean", "head_pred_end_mean",
            "SR5_cdvae", "SR10_cdvae", "SR15_cdvae", "SR5_test_split", "SR10_test_split", "SR15_test_split",
            "start_property_mean", "best_property_mean", "property_model", "wall_s", "head_file")
    print(strict_json_dumps({"out": str(out), **{k: res.get(k) for k in keep}}))


# ------------------------------------------------------------------------------------------------------ recon
def _add_reconstruct(sub):
    p = sub.add_parser("reconstruct", help="reconstruct a split's crystals; writes CIFs named by material_id")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--dataset", default=None, help="default: the dataset the checkpoint was trained on")
    p.add_argument("--split", default="test")
    p.add_argument("--limit", type=int, default=None, help="only the first N crystals")
    _add_sampling_args(p)
    p.add_argument("--data-root", default=None)
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-metrics", action="store_true", help="skip the match-rate computation")
    p.add_argument("--breakdown", action="store_true",
                   help="also sort every unmatched crystal into one cause (wrong composition, wrong geometry, two "
                        "elements exchanged, ...) into failures.json and the printed result")
    p.add_argument("--latent", choices=("sample", "mean"), default="sample",
                   help="z for each crystal: 'sample' from the encoder posterior (the paper's and CDVAE's protocol, "
                        "default) or its 'mean'")
    p.add_argument("--initial-types", choices=["round_residual", "largest_remainder"], default=None,
                   help="how Z_T is built from the composition head (default: the checkpoint's config)")
    p.add_argument("--raw-weights", action="store_true",
                   help="sample with the raw weights of a run trained with EMA (default: the EMA weights)")
    p.add_argument("--type-update", choices=["argmax", "fixed"], default=None,
                   help="atom types during the reverse process: argmax of the type head at every step (paper) or "
                        "fixed to Z_T (default: the checkpoint's config)")
    p.add_argument("--on-error", choices=["raise", "skip"], default="raise",
                   help="a bad CSV row: stop with its file, row and material_id (raise), or skip and list it (skip)")
    p.set_defaults(func=_cmd_reconstruct)


def _cmd_reconstruct(a):
    from ..workflows.reconstruct import reconstruct_split

    if a.breakdown and a.no_metrics:
        raise UserError("--breakdown sorts the misses of the match-rate computation: drop --no-metrics")
    data = resolve_dataset_arg(a.dataset, a.data_root) if a.dataset else None  # before the model is loaded
    res = reconstruct_split(a.checkpoint, a.out, dataset=data, split=a.split,
                            limit=a.limit, sampler=a.sampler, steps=a.steps, batch_size=a.batch_size,
                            seed=a.seed, root=a.data_root, device=a.device, metrics=not a.no_metrics,
                            command=" ".join(sys.argv), latent=a.latent, initial_types=a.initial_types,
                            ema=not a.raw_weights, type_update=a.type_update, on_error=a.on_error,
                            devices=a.devices, strategy=a.strategy, accelerator=a.accelerator,
                            breakdown=a.breakdown)
    print(strict_json_dumps(res.summary()))


# ------------------------------------------------------------------------------------------------------ demo
def _add_demo(sub):
    p = sub.add_parser("demo", help="the main job on a fresh machine: the shipped Perov-5 model reconstructs and "
                                    "generates a handful of crystals (CIFs, PNG, match rate); --train-minutes trains "
                                    "a fresh one instead")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--checkpoint", default="pretrained:perov_5",
                   help="model to use (default: the shipped pretrained:perov_5)")
    p.add_argument("--train-minutes", type=float, default=None,
                   help="train a fresh model for this many minutes instead of using --checkpoint")
    p.add_argument("--minutes", type=float, default=None, dest="train_minutes_old", help=argparse.SUPPRESS)
    p.add_argument("--dataset", default="auto",
                   help="auto: the checkpoint's dataset (or, when training, Perov-5 if found, else the synthetic "
                        "demo data)")
    p.add_argument("--config", default="compact", help="config of a freshly trained model (--train-minutes)")
    p.add_argument("--n-recon", type=int, default=32)
    p.add_argument("--n-gen", type=int, default=16)
    p.add_argument("--latent", choices=("sample", "mean"), default="sample", help="z of the reconstructions")
    p.add_argument("--steps", type=int, default=None,
                   help="use the strided Eq. 7 few-step sampler with this many steps (default: the paper's Eq. 7, "
                        "1000 steps; a few seconds for the demo's handful of crystals)")
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(a):
    from ..workflows.demo import run_demo

    minutes = a.train_minutes if a.train_minutes is not None else a.train_minutes_old
    res = run_demo(out=a.out, checkpoint=a.checkpoint, train_minutes=minutes, dataset=a.dataset, config=a.config,
                   n_recon=a.n_recon, n_gen=a.n_gen, steps=a.steps, latent=a.latent)
    print(strict_json_dumps(res))


# ------------------------------------------------------------------------------------------------------ pretrained
def _add_pretrained(sub):
    p = sub.add_parser("pretrained", help="the models shipped with the package: list their cards, export a new one")
    ps = p.add_subparsers(dest="pretrained_command", required=True)
    pl = ps.add_parser("list", help="print each shipped model's card (command, commit, date, data, metrics)")
    pl.add_argument("--json", action="store_true", help="the cards as JSON")
    pl.set_defaults(func=_cmd_pretrained_list)
    pe = ps.add_parser("export", help="write a training checkpoint's sampling weights as a shipped model")
    pe.add_argument("--checkpoint", required=True)
    pe.add_argument("--name", required=True, help="e.g. perov_5 (used as pretrained:NAME)")
    pe.add_argument("--card", required=True, help="JSON file with the card: command, commit, date, machine, "
                                                   "metrics ... (dataset/train_split are read from config.json)")
    pe.add_argument("--weights-dir", default=None, help="default: the package's weights folder")
    pe.add_argument("--raw-weights", action="store_true",
                    help="ship the raw weights of a run trained with EMA (default: the EMA weights)")
    pe.set_defaults(func=_cmd_pretrained_export)
    pf = ps.add_parser("fit-heads", help="fit the property heads shipped for `dpcdvae optimize` (weights/heads/NAME.pt "
                                         "+ card); rerun whenever a shipped model is re-exported")
    pf.add_argument("names", nargs="+", metavar="NAME", help="shipped models, e.g. perov_5 carbon_24")
    pf.add_argument("--seed", type=int, default=0)
    pf.add_argument("--out", default=None, help="default: the heads folder of --weights-dir (the package's)")
    pf.add_argument("--weights-dir", default=None, help="default: the package's weights folder")
    pf.add_argument("--data-root", default=None)
    pf.set_defaults(func=_cmd_pretrained_fit_heads)


def format_card(card: dict) -> str:
    """A model card as indented text (what ``dpcdvae pretrained list`` prints)."""
    lines = [f"pretrained:{card['name']}  ({card.get('model', '?')}, config {card.get('config_name', '?')}, "
             f"{card.get('parameters', 0) / 1e6:.2f} M parameters, {card.get('file_mb', '?')} MB)"]
    for key in ("description", "dataset", "train_split", "date", "commit", "machine", "train_command",
                "train_wall_minutes", "epochs"):
        if card.get(key) not in (None, ""):
            lines.append(f"  {key}: {card[key]}")
    for m in card.get("metrics", []):
        lines.append(f"  metric: {m.get('what')}: {m.get('value')}  [{m.get('protocol', '')}]")
        if m.get("command"):
            lines.append(f"    command: {m['command']}")
    return "\n".join(lines)


def _cmd_pretrained_list(a):
    from ..models.pretrained import list_pretrained

    cards = list_pretrained()
    if a.json:
        print(strict_json_dumps(cards, indent=1))
        return 0
    if not cards:
        print("no pretrained models are shipped with this installation")
    for card in cards:
        print(format_card(card) + "\n")
    return 0


def _cmd_pretrained_export(a):
    from ..models.pretrained import export_pretrained

    card = json.loads(Path(a.card).read_text())
    card.setdefault("weights", "raw" if a.raw_weights else "ema (when the run had EMA)")
    from ..models import load_model

    path = export_pretrained(load_model(a.checkpoint, ema=not a.raw_weights), a.name, card,
                             weights_dir=Path(a.weights_dir) if a.weights_dir else None, checkpoint=a.checkpoint)
    print(json.dumps({"written": str(path), "card": str(path.with_suffix(".json"))}))
    return 0


def _cmd_pretrained_fit_heads(a):
    from ..workflows.optimize import fit_shipped_head

    cards = {}
    for name in a.names:  # each card printed as soon as its head is written
        cards[name] = card = fit_shipped_head(name, out=a.out, seed=a.seed, weights_dir=a.weights_dir,
                                              root=a.data_root)
        print(strict_json_dumps(card), flush=True)
    print(strict_json_dumps({"heads": {k: {"val_mae": v["val_mae"], "val_r2": v["val_r2"]}
                                       for k, v in cards.items()}}))
    return 0


def add_parser(sub) -> None:
    """Register the model commands: demo, train, sample, reconstruct, csp, csp-match, optimize, pretrained."""
    for add in (_add_demo, _add_train, _add_sample, _add_reconstruct, _add_csp, _add_csp_match, _add_optimize,
                _add_pretrained):
        add(sub)
