"""What a notebook runs on: the dataset (:func:`resolve_dataset` -> :class:`DataChoice`: the real data when the
locator finds it, else the SYNTHETIC demo perovskites) and the model (:func:`ensure_checkpoint`: a given or shipped
checkpoint, one trained earlier with the same settings, or one trained now; :func:`train_run`), loading them
(:func:`load`, :func:`load_batch`, :func:`test_structures`) and what they hold (:func:`model_summary`,
:func:`checkpoint_summary`)."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any, Optional

from ..data import DEMO_NAME, DatasetNotFoundError, available_splits, load_split
from ..data.registry import benchmark_datasets, find_spec
from ..data.resolve import build_synthetic
from ..eval.io import load_split_structures
from ..models import load_model
from ..models.pretrained import pretrained_card
from ..train import train
from ..utils.fileio import strict_json_dumps
from ..workflows.demo import pick_demo_dataset
from .session import GUARD_MARK, headless

__all__ = ["DataChoice", "resolve_dataset", "ensure_checkpoint", "train_run", "load", "load_batch", "test_structures",
           "model_summary", "checkpoint_summary"]


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

    spec = find_spec(dataset) if dataset != "auto" else None  # the registry's aliases ("demo", "Perov-5", ...)
    if dataset == "auto" or (spec is not None and spec.synthetic):
        name, synthetic = pick_demo_dataset(dataset)
    else:
        name, synthetic = dataset, False
    note = ""
    if not synthetic:
        try:
            from ..data import locate_dataset

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
    done.write_text(strict_json_dumps({**res, "key": key}, indent=1))
    return Path(res["best"])


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


def checkpoint_summary(ckpt) -> "Any":
    """What a checkpoint holds: epoch, global step, size, config name, dataset, monitored best score."""
    import pandas as pd

    from ..models.safeload import load_weights_only

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


def load_batch(data: DataChoice, model=None, split: str = "test", n: Optional[int] = None, start: int = 0):
    """``(dataset, batch)``: the first ``n`` crystals of ``split`` (from ``start``) as one PyG batch, with the graph
    the model's encoder needs."""
    from torch_geometric.loader import DataLoader


    kw = {"graph": "none"}
    if model is not None:
        kw["max_atoms"] = model.cfg.max_atoms
        kw["graph"] = model.data_graph
    ds = load_split(data.name, split, limit=(start + n) if n else None,  # resolved once there (the demo: generated)
                    progress=not headless(), **kw)
    if start:
        import torch

        ds = torch.utils.data.Subset(ds, range(start, len(ds)))
    batch = next(iter(DataLoader(ds, batch_size=len(ds))))
    return ds, batch


def test_structures(data: DataChoice, n: Optional[int] = None, split: str = "test") -> tuple[list, list]:
    """``(ids, structures)`` of the first ``n`` crystals of ``split`` as the evaluation reads them (CDVAE-canonical
    from the CSV for real datasets; the stored crystals for the synthetic set)."""
    if data.synthetic:

        ds = load_split(data.name, split, limit=n, graph="none", progress=False)
        return [str(ds[i].material_id) for i in range(len(ds))], [ds.get_structure(i) for i in range(len(ds))]

    return load_split_structures(data.name, split, limit=n)
