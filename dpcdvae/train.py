"""Training with Lightning: module, data module, atomic checkpoints, resume, EMA, DDP through a flag.

The model itself (:class:`dpcdvae.models.DPCDVAE`) does not depend on Lightning; this module only wraps it.
A checkpoint holds the config (``hyper_parameters["config"]``) and the lattice scaler (in the model's extra
state), so :func:`load_model` needs nothing else.

Command line: ``dpcdvae train --dataset perov_5 --config compact --max-minutes 60 --out runs/perov_compact``.
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
import warnings
from pathlib import Path
from typing import Any, Optional

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch_geometric.loader import DataLoader

from .utils.alloc import tune_allocator
from .utils.fileio import atomic_open, strict_json_dumps
from .config import Config, load_config
from .data import load_dataset_splits
from .data.resolve import DatasetLike, resolve_dataset
from .data.scalers import LatticeScaler
from .utils.errors import CheckpointArgumentError, ConfigArgumentError, TrainingDiverged, mention
from .models import build_model
from .models.safeload import load_weights_only
from .models.scope import training_data_of
from .utils.progress import interactive_output

log = logging.getLogger("dpcdvae.train")

try:  # Lightning is a core dependency, but keep the import error readable
    import lightning as L
    from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint, TQDMProgressBar
    from lightning.pytorch.plugins.io import TorchCheckpointIO
except ImportError as exc:  # pragma: no cover
    raise ImportError("dpcdvae.train needs `lightning` (pip install lightning)") from exc


# ---------------------------------------------------------------------------------------------------- checkpoints
class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temporary file in the same folder, then renames it: a crash mid-write never
    leaves a truncated ``best.ckpt`` / ``last.ckpt``."""

    def save_checkpoint(self, checkpoint, path, storage_options=None):
        with atomic_open(path, "wb") as fh:
            torch.save(checkpoint, fh)


def clean_stale_temps(folder: Path) -> list[Path]:
    """Remove the temporary files an interrupted checkpoint write leaves (``.last.ckpt.*.tmp``,
    ``.best.ckpt.*.tmp``: a ``kill -9`` between the write and the rename). Returns what was removed."""
    removed = []
    for tmp in sorted(Path(folder).glob(".*.ckpt.*.tmp")):
        try:
            tmp.unlink()
            removed.append(tmp)
        except OSError:  # pragma: no cover - already gone / not ours
            pass
    return removed


def resume_checkpoint(out: Path) -> Path:
    """The checkpoint ``--resume`` continues from: ``out/last.ckpt``, or ``out/best.ckpt`` when a kill hit the
    first ``last.ckpt`` write (said on stdout). When there is neither, a
    :class:`~dpcdvae.utils.errors.CheckpointArgumentError` (a ``CheckpointError`` of :func:`train`'s ``resume``)
    names the folder."""
    out = Path(out)
    last, best = out / "last.ckpt", out / "best.ckpt"
    if last.is_file():
        return last
    if best.is_file():
        print(f"[dpcdvae] {last} is missing (the run was stopped during its first write); resuming from {best}",
              flush=True)
        return best
    raise CheckpointArgumentError("resume", f": no last.ckpt or best.ckpt in {out} to resume from "
                                            f"(run without {mention('resume')} to start a new training there)")


def quiet_lightning() -> None:
    """Silence Lightning's start-up chatter that tells a CPU user nothing: the GPU/TPU availability lines and the
    logger advert (Lightning's rank-zero INFO messages), the warning that the output folder is not empty (our
    config.json is written first) and a deprecation warning from Lightning's own pytree helper. Our own device
    line replaces the availability lines."""
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    logging.getLogger("lightning.fabric.utilities.rank_zero").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated")
    warnings.filterwarnings("ignore", message=r"The '(train|val)_dataloader' does not have many workers")


VAL_SEED = 20231  # seed of the validation noise draws (per validation batch: VAL_SEED + batch index)
#: consecutive optimizer steps with non-finite gradients after which training stops as diverged
MAX_NONFINITE_STEPS = 25


# ---------------------------------------------------------------------------------------------------- module
class DPCDVAEModule(L.LightningModule):
    """Lightning wrapper: Adam with ReduceLROnPlateau on ``val_loss`` (coordinate + 0.1 x type loss) or a
    budget-aware cosine schedule (``train.lr_schedule``), optional EMA. Validation draws its noise from a fixed
    seed, so ``val_loss`` of two epochs differs only through the weights."""

    def __init__(self, config: dict, lattice_scaler_state: Optional[dict] = None,
                 training_data: Optional[dict] = None):
        """``training_data``: what the model is trained on (dataset, split, elements, cell sizes, max_atoms;
        :func:`dpcdvae.models.scope.training_data_of`), stored with the hyper-parameters in every checkpoint."""
        super().__init__()
        self.save_hyperparameters()
        self.cfg = Config.from_dict(config)
        scaler = LatticeScaler.from_state_dict(lattice_scaler_state) if lattice_scaler_state else None
        self.model = build_model(self.cfg, scaler)
        self.ema = None
        if self.cfg.train.ema_decay:
            self.ema = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(self.cfg.train.ema_decay),
                                     use_buffers=True)

    def training_step(self, batch, batch_idx):
        out = self.model(batch, epoch=self.current_epoch)
        bs = batch.num_graphs
        self.log("train_loss", out["loss"], prog_bar=True, batch_size=bs, sync_dist=True)
        for k in ("coord", "type", "kld", "lattice", "composition", "num_atoms", "num_atoms_acc", "type_acc"):
            self.log(f"train_{k}", out[k], batch_size=bs, sync_dist=True)
        return out["loss"]

    def on_before_optimizer_step(self, optimizer):
        """Skip an optimizer step whose gradients are not all finite (a NaN or inf loss, or an overflow in the
        backward pass): the gradients are dropped, so Adam leaves the weights and its moments as they were, and the
        step is counted (``nonfinite_steps``; one line on stdout for the first of a run). After
        :data:`MAX_NONFINITE_STEPS` such steps in a row the run stops with a :class:`TrainingDiverged` that says
        where the last good weights are. Without this, one bad step turned every weight into NaN and the next
        forward pass crashed in ``torch.multinomial`` (a compact Perov-5 run with ``model.w_kld=0.001``, step
        ~8370, 2026-12-06)."""
        self._skip_step = False
        params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        if not params:
            return
        finite = torch.stack([torch.isfinite(p.grad).all() for p in params]).all()
        if bool(finite):
            self._bad_in_row = 0
            return
        self._skip_step = True
        for p in params:
            p.grad = None
        self.nonfinite_steps = getattr(self, "nonfinite_steps", 0) + 1
        self._bad_in_row = getattr(self, "_bad_in_row", 0) + 1
        if self.nonfinite_steps == 1:
            print(f"[dpcdvae] step {self.global_step}: non-finite gradients, step skipped (further skips are "
                  f"counted in nonfinite_steps)", flush=True)
        if self._bad_in_row >= MAX_NONFINITE_STEPS:
            raise TrainingDiverged(
                f"training diverged: {self._bad_in_row} optimizer steps in a row with non-finite gradients (global "
                f"step {self.global_step}); the last good weights are in best.ckpt / last.ckpt of the output "
                f"folder; try a lower train.lr")

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        """Lightning's clipping, except on a step :meth:`on_before_optimizer_step` dropped (no gradients left)."""
        if getattr(self, "_skip_step", False):
            return
        self.clip_gradients(optimizer, gradient_clip_val=gradient_clip_val,
                            gradient_clip_algorithm=gradient_clip_algorithm)

    def on_train_batch_end(self, outputs, batch, batch_idx):
        if self.ema is not None:
            self.ema.update_parameters(self.model)

    def validation_step(self, batch, batch_idx):
        model = self.ema.module if self.ema is not None else self.model
        # the same noise draws (t, eps, sigma', Z_t, z) at every validation: val_loss compares weights, not luck
        gen = torch.Generator(device=batch.frac_coords.device)
        gen.manual_seed(VAL_SEED + batch_idx)
        out = model(batch, epoch=self.current_epoch, generator=gen)
        bs = batch.num_graphs
        self.log("val_loss", out["val_loss"], prog_bar=True, batch_size=bs, sync_dist=True)
        for k in ("coord", "type", "lattice", "num_atoms_acc"):
            self.log(f"val_{k}", out[k], batch_size=bs, sync_dist=True)
        self.log("val_total_loss", out["loss"], batch_size=bs, sync_dist=True)

    def configure_optimizers(self):
        t = self.cfg.train
        opt = torch.optim.Adam(self.model.parameters(), lr=t.lr)
        if t.lr_schedule == "cosine":
            return opt  # the learning rate is set every step by _BudgetCosine (a callback: it knows the deadline)
        if t.lr_schedule != "plateau":
            raise ValueError(f"train.lr_schedule must be 'plateau' or 'cosine', got {t.lr_schedule!r}")
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=t.lr_factor,
                                                           patience=t.lr_patience, min_lr=t.lr_min)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": "val_loss", "interval": "epoch"}}

    def sampling_model(self):
        """The model to sample from (the EMA average when EMA is on)."""
        return self.ema.module if self.ema is not None else self.model


# ---------------------------------------------------------------------------------------------------- data
class CrystalDataModule(L.LightningDataModule):
    """Train/val loaders for a CDVAE-format dataset (or the synthetic demo). ``dataset``: a
    :class:`~dpcdvae.data.resolve.DatasetHandle`, or a name resolved once (with ``root``) when the data are set up.
    ``train_split`` may be ``val`` for datasets whose training split is absent (Carbon-24 here); the choice is
    printed."""

    def __init__(self, dataset: DatasetLike, cfg: Config, root: Optional[str] = None, train_split: str = "train",
                 num_workers: int = 0, on_error: str = "raise"):
        super().__init__()
        self.dataset, self.cfg, self.root, self.on_error = dataset, cfg, root, on_error
        self.train_split, self.num_workers = train_split, num_workers
        self.train_ds = self.val_ds = self.scaler = None

    def setup(self, stage: Optional[str] = None):
        if self.train_ds is not None:
            return
        graph = "crystalnn" if self.cfg.model.encoder.graph == "crystalnn" else "none"
        t = self.cfg.train
        self.dataset = resolve_dataset(self.dataset, self.root)
        splits = load_dataset_splits(self.dataset, train_split=self.train_split, max_atoms=self.cfg.model.max_atoms,
                                     graph=graph,
                                     lattice_scaler=self.cfg.model.lattice_scaler, limit=t.limit_train,
                                     on_error=self.on_error)
        val = splits.val if splits.val is not None else splits.train
        if t.limit_val is not None and len(val) > t.limit_val:
            val = torch.utils.data.Subset(val, range(t.limit_val))
        self.train_ds, self.val_ds, self.scaler = splits.train, val, splits.lattice_scaler

    def _loader(self, ds, shuffle):
        return DataLoader(ds, batch_size=self.cfg.train.batch_size, shuffle=shuffle,
                          num_workers=self.num_workers, drop_last=False)

    def train_dataloader(self):
        return self._loader(self.train_ds, True)

    def val_dataloader(self):
        return self._loader(self.val_ds, False)


class _WallClockLog(Callback):
    """Appends one JSON line per epoch (losses, lr, wall time) to ``metrics.jsonl`` for the training-curve plots."""

    def __init__(self, path: Path, print_lines: bool = False):
        self.path = Path(path)
        self.t0 = time.time()
        self.print_lines = print_lines

    def on_train_start(self, trainer, pl_module):
        """On a resumed run, drop the rows of epochs that will be trained again (a kill after an epoch's metrics
        line but before its checkpoint): metrics.jsonl then lists each epoch once."""
        if trainer.global_rank != 0 or not self.path.is_file():
            return
        start = trainer.current_epoch
        keep = []
        for line in self.path.read_text().splitlines():
            try:
                row = json.loads(line)
            except ValueError:  # a line cut by the kill
                continue
            if isinstance(row, dict) and row.get("epoch", -1) < start:
                keep.append(line)
        with atomic_open(self.path, "w") as fh:
            fh.write("".join(k + "\n" for k in keep))

    def on_validation_epoch_end(self, trainer, pl_module):
        if trainer.sanity_checking or trainer.global_rank != 0:
            return
        row = {"epoch": trainer.current_epoch, "step": trainer.global_step, "wall_s": round(time.time() - self.t0, 2),
               "lr": trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else None}
        for k, v in trainer.callback_metrics.items():
            row[k] = float(v)
        with open(self.path, "a") as fh:
            fh.write(strict_json_dumps(row) + "\n")
        if self.print_lines:
            parts = [f"{k} {row[k]:.4g}" for k in ("train_loss", "val_loss", "val_coord", "val_type") if k in row]
            lr = f", lr {row['lr']:.3g}" if row.get("lr") is not None else ""
            print(f"[dpcdvae] epoch {row['epoch']} (step {row['step']}, {row['wall_s'] / 60:.1f} min): "
                  f"{', '.join(parts)}{lr}", flush=True)


class _WallClockBudget(Callback):
    """Stops training after ``minutes`` of wall clock of *this* run (``--max-minutes``).

    Lightning's own ``max_time`` Timer saves its elapsed time in the checkpoint and restores it on resume, so a run
    resumed with the same limit stopped at once. This budget is not saved: ``--resume --max-minutes M`` trains M more
    minutes. Checked after every training batch and epoch, agreed across DDP ranks (rank 0 decides)."""

    def __init__(self, minutes: float):
        self.limit_s = float(minutes) * 60.0
        self.t0: Optional[float] = None

    def on_train_start(self, trainer, pl_module):
        self.t0 = time.monotonic()

    def _check(self, trainer) -> None:
        if self.t0 is None:
            return
        stop = trainer.strategy.broadcast(time.monotonic() - self.t0 >= self.limit_s)
        if stop and not trainer.should_stop:
            trainer.should_stop = True
            print(f"[dpcdvae] wall-clock budget of {self.limit_s / 60:.1f} min reached: stopping", flush=True)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._check(trainer)

    def on_train_epoch_end(self, trainer, pl_module):
        self._check(trainer)


def cosine_lr(progress: float, lr: float, warmup_frac: float, final_factor: float) -> float:
    """Learning rate at ``progress`` in [0, 1] of a run: linear warm-up from ``lr * final_factor`` to ``lr`` over
    the first ``warmup_frac``, then half a cosine from ``lr`` down to ``lr * final_factor`` at ``progress = 1``
    (held there beyond 1)."""
    p = min(max(float(progress), 0.0), 1.0)
    lo = lr * final_factor
    if warmup_frac > 0 and p < warmup_frac:
        return lo + (lr - lo) * p / warmup_frac
    q = (p - warmup_frac) / max(1.0 - warmup_frac, 1e-12)
    return lo + 0.5 * (lr - lo) * (1.0 + math.cos(math.pi * q))


class _BudgetCosine(Callback):
    """Sets the learning rate before every optimizer step from the run's progress (``train.lr_schedule=cosine``).

    Progress is the elapsed share of the wall-clock budget ``max_minutes`` when one is set (a run that stops at its
    deadline ends at the bottom of the cosine), else the share of ``max_epochs`` done. Rank 0's progress is
    broadcast so every DDP rank uses the same rate. A resumed run starts a new warm-up and cosine over its own
    budget (a warm restart)."""

    def __init__(self, cfg, minutes: Optional[float]):
        self.t = cfg
        self.limit_s = float(minutes) * 60.0 if minutes else None
        self.t0: Optional[float] = None
        self.step0 = 0

    def on_train_start(self, trainer, pl_module):
        self.t0 = time.monotonic()
        self.step0 = trainer.global_step

    def progress(self, trainer) -> float:
        if self.limit_s:
            return (time.monotonic() - self.t0) / self.limit_s
        per_epoch = max(int(trainer.num_training_batches or 1), 1)
        return (trainer.global_step - self.step0) / max(self.t.max_epochs * per_epoch, 1)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        p = float(trainer.strategy.broadcast(self.progress(trainer)))
        lr = cosine_lr(p, self.t.lr, self.t.warmup_frac, self.t.cosine_final_factor)
        for opt in trainer.optimizers:
            for g in opt.param_groups:
                g["lr"] = lr


# ---------------------------------------------------------------------------------------------------- API
def train(dataset: DatasetLike, config: str | Config = "compact", out: str | os.PathLike = "runs/dpcdvae",
          overrides: Optional[dict] = None, root: Optional[str] = None, train_split: str = "train",
          max_epochs: Optional[int] = None, max_minutes: Optional[float] = None, resume: bool = False,
          accelerator: str = "auto", devices: Any = "auto", strategy: str = "auto", progress: bool = True,
          seed: Optional[int] = None, num_workers: int = 0, on_error: str = "raise",
          init_from: Optional[str] = None) -> dict:
    """Train a model; returns ``{"best": path, "last": path, "out": dir, "epochs": n, "wall_s": s}``.

    Checkpoints ``out/best.ckpt`` (lowest val_loss) and ``out/last.ckpt`` are written atomically; ``resume=True``
    continues from ``out/last.ckpt``. ``max_minutes`` is the wall-clock budget of this call (a resumed run gets
    the full budget again; the checkpoint it resumes from is read with ``torch.load(weights_only=True)``, and one
    that needs more is refused with :class:`CheckpointError` before any work). ``strategy="ddp"`` with
    ``devices=K`` trains on K GPUs (or K CPU processes with ``accelerator="cpu"``, gloo backend). ``on_error``:
    ``"raise"`` stops at the first bad CSV row (the message names file, row and material_id), ``"skip"`` skips bad
    rows and reports them (count, file, rows, reasons). ``init_from``: a checkpoint (path or ``pretrained:<name>``;
    EMA weights when it has them) whose weights start the run instead of a random initialisation (fine-tuning; the
    architecture must be the same, the training options may differ; the optimizer, schedule and epoch count start
    afresh). Temporary files of an interrupted checkpoint write are removed on start. ``progress``: a bar in a
    terminal, one line per epoch when the output is a file or a pipe. ``dataset``: a name, an alias, a folder or
    a :class:`~dpcdvae.data.resolve.DatasetHandle`; it is resolved once (:func:`dpcdvae.data.resolve_dataset`,
    with ``root``), and the config and all splits are read through that one handle.
    """
    quiet_lightning()
    tune_allocator()  # an entry point: glibc keeps freed memory for the next step (CPU speed; outputs unchanged)
    data = resolve_dataset(dataset, root)
    cfg = config if isinstance(config, Config) else load_config(config, dataset=data)
    ov = dict(overrides or {})
    if max_epochs is not None:
        ov["train.max_epochs"] = int(max_epochs)
    if max_minutes is not None:
        ov["train.max_minutes"] = float(max_minutes)
    if seed is not None:
        ov["train.seed"] = int(seed)
    cfg = cfg.override(ov)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for tmp in clean_stale_temps(out):
        print(f"[dpcdvae] removed {tmp.name}, left by an interrupted checkpoint write", flush=True)
    ckpt_path = str(resume_checkpoint(out)) if resume else None
    if ckpt_path:  # refused in one line (nothing run) before any work when it needs more than a weights-only load
        load_weights_only(ckpt_path)
    L.seed_everything(cfg.train.seed, workers=True, verbose=False)

    dm = CrystalDataModule(data, cfg, train_split=train_split, num_workers=num_workers, on_error=on_error)
    dm.setup("fit")
    dataset = data.name
    print(f"[dpcdvae] dataset {dataset!r}: training on split {train_split!r} ({len(dm.train_ds)} crystals), "
          f"validating on {len(dm.val_ds)} crystals; config {cfg.name!r}", flush=True)
    training_data = training_data_of(dataset, train_split, dm.train_ds, cfg.model.max_atoms)
    module = DPCDVAEModule(cfg.to_dict(), dm.scaler.state_dict(), training_data)
    if init_from is not None and not ckpt_path:
        init_weights(module, init_from)
    nparams = sum(p.numel() for p in module.model.parameters())
    print(f"[dpcdvae] model: {nparams / 1e6:.2f} M parameters", flush=True)
    (out / "config.json").write_text(json.dumps({"dataset": dataset, "train_split": train_split,
                                                 "config": cfg.to_dict(), "num_parameters": nparams,
                                                 "training_data": training_data}, indent=1))

    t = cfg.train
    ckpt_best = ModelCheckpoint(dirpath=out, filename="best", monitor="val_loss", mode="min", save_top_k=1,
                                save_last=True, enable_version_counter=False)
    ckpt_best.CHECKPOINT_NAME_LAST = "last"
    bar = progress and interactive_output()
    callbacks = [ckpt_best, EarlyStopping(monitor="val_loss", patience=t.early_stop_patience, mode="min"),
                 _WallClockLog(out / "metrics.jsonl", print_lines=progress and not bar)]
    if t.max_minutes:
        callbacks.append(_WallClockBudget(t.max_minutes))
    if t.lr_schedule == "cosine":
        callbacks.append(_BudgetCosine(t, t.max_minutes))
    if bar:
        callbacks.append(TQDMProgressBar(refresh_rate=max(1, len(dm.train_ds) // t.batch_size // 20)))
    trainer = L.Trainer(
        max_epochs=t.max_epochs,
        accelerator=accelerator, devices=devices, strategy=strategy, gradient_clip_val=t.grad_clip_value,
        gradient_clip_algorithm="value", callbacks=callbacks, default_root_dir=str(out), logger=False,
        enable_progress_bar=bar, check_val_every_n_epoch=t.val_every, plugins=[AtomicCheckpointIO()],
        num_sanity_val_steps=0, enable_model_summary=False)
    print(f"[dpcdvae] device: {_device_line(trainer)}", flush=True)
    if ckpt_path:
        print(f"[dpcdvae] resuming from {ckpt_path}", flush=True)
    t0 = time.time()
    trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path, **_weights_only_kwarg(trainer.fit))
    wall = time.time() - t0
    result = {"best": str(out / "best.ckpt"), "last": str(out / "last.ckpt"), "out": str(out),
              "epochs": trainer.current_epoch, "wall_s": round(wall, 1),
              "best_val_loss": float(ckpt_best.best_model_score) if ckpt_best.best_model_score is not None else None,
              "nonfinite_steps": int(getattr(module, "nonfinite_steps", 0))}
    print(f"[dpcdvae] done: {strict_json_dumps(result)}", flush=True)
    return result


def _weights_only_kwarg(fit) -> dict:
    """``{"weights_only": True}`` when this Lightning's ``Trainer.fit`` takes it (2.5+: the resumed checkpoint is
    then read with ``torch.load(weights_only=True)``), else ``{}`` (the file was checked by
    :func:`~dpcdvae.models.safeload.load_weights_only` before)."""
    import inspect

    try:
        return {"weights_only": True} if "weights_only" in inspect.signature(fit).parameters else {}
    except (TypeError, ValueError):  # pragma: no cover
        return {}


def init_weights(module: "DPCDVAEModule", checkpoint: str) -> None:
    """Copy the weights of ``checkpoint`` (a path or ``pretrained:<name>``, EMA weights when it has them) into
    ``module.model`` and restart the EMA from them. A checkpoint of another architecture raises a
    :class:`~dpcdvae.utils.errors.ConfigArgumentError` (a ``ConfigError`` of :func:`train`'s ``init_from``) naming
    the first mismatching parameter."""
    from .models import load_model

    src = load_model(checkpoint, ema=True)
    own, theirs = module.model.state_dict(), src.state_dict()
    for k, v in own.items():
        w = theirs.get(k)
        if isinstance(v, torch.Tensor) and (not isinstance(w, torch.Tensor) or w.shape != v.shape):
            got = "missing" if w is None else tuple(getattr(w, "shape", ()))
            raise ConfigArgumentError("init_from", f"{checkpoint}: parameter {k!r} is {got} there, "
                                                   f"{tuple(v.shape)} in this model: the architecture differs")
    module.model.load_state_dict(theirs)
    if module.ema is not None:
        module.ema = AveragedModel(module.model, multi_avg_fn=get_ema_multi_avg_fn(module.cfg.train.ema_decay),
                                   use_buffers=True)
    print(f"[dpcdvae] weights initialised from {checkpoint}", flush=True)


def _device_line(trainer) -> str:
    """``"cpu (2 torch threads)"`` or ``"cuda x1 (NVIDIA H200)"``: what the run trains on, in one line."""
    acc = type(trainer.accelerator).__name__.replace("Accelerator", "").lower()
    if acc == "cuda" and torch.cuda.is_available():
        return f"cuda x{trainer.num_devices} ({torch.cuda.get_device_name(0)})"
    return f"{acc} x{trainer.num_devices} ({torch.get_num_threads()} torch threads)"


