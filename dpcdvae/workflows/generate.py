"""Table II: generate crystals in batches and write them as they come (CIFs, extxyz, JSON); a long run keeps its
finished batches and resumes (:func:`generate_to_folder`)."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import torch

from ..io import SampleWriter
from ..models import concat_outputs
from ..utils.errors import ArgumentError, UserError, mention
from ..utils.fileio import atomic_write_text, strict_json_dumps
from ..utils.progress import progress_bar
from .results import GenerationResult
from .sharding import run_sharded

__all__ = ["generate_to_folder", "model_fingerprint", "GenerationResult"]


def generate_to_folder(model, n: int, run_dir, sampler=None, steps: Optional[int] = None,
                       seed: int = 0, batch_size: int = 256, meta: Optional[dict] = None,
                       symprec: Optional[float] = None, progress: bool = True, reseed_batches: bool = False,
                       devices: int = 1, checkpoint=None, strategy: str = "ddp", accelerator: str = "cpu",
                       resume: bool = False) -> GenerationResult:
    """Generate ``n`` crystals from z ~ N(0, I) with ``model`` and write them into ``run_dir`` as they come (CIFs,
    ``samples.extxyz``, ``samples.json``: :class:`~dpcdvae.io.SampleWriter`). Returns a
    :class:`~dpcdvae.workflows.results.GenerationResult`: the crystals (``samples``), the folder (``out``) and the
    counts (``n``, ``n_decoded`` built, ``n_valid`` valid in the paper's sense, ``batches_read_back``).

    ``sampler``: a name (``None``: the model's default) or a sampler object (with its options, e.g.
    ``get_sampler("ddim", eta=0.5)``), resolved once here; the metadata record its ``label``. Seeding: one random stream seeded with ``seed`` over all batches
    (default; ids ``gen-<i>``), or, with ``reseed_batches=True`` (``dpcdvae sample``), batch ``k`` seeded with
    ``seed + first index of the batch`` so that any batch can be redone alone (ids ``gen-<iiiii>``). The two give
    the same crystals when ``n <= batch_size``. ``devices=N`` (with ``reseed_batches`` and ``checkpoint``, a path or
    ``pretrained:<name>``) shards the batches over N processes (:mod:`dpcdvae.workflows.sharding`): the same crystals whatever
    N.

    With ``reseed_batches`` every finished batch is also kept as ``run_dir/batches/batch_<k>.pt``
    (:func:`~dpcdvae.models.output.save_batch`) beside ``batches/spec.json`` (n, batch size, sampler, steps, seed
    and a fingerprint of the model's weights). ``resume=True`` reads the batches already there back instead of
    computing them again and computes the rest: a long run stopped by a crash, Ctrl-C or a time limit continues
    where it stopped and ends with the same crystals as one uninterrupted run. A spec that differs from the
    request raises :class:`~dpcdvae.utils.errors.UserError` naming the setting."""
    sampler = model.resolve_sampler(sampler)
    run_dir = Path(run_dir)
    batch_dir = None
    if reseed_batches:
        spec = {"n": int(n), "batch_size": int(batch_size), "sampler": sampler.label, "steps": steps, "seed": int(seed),
                "model_sha256": model_fingerprint(model)}
        if sampler.options() != type(sampler)().options():  # non-default options (e.g. DDIM's eta) must match too;
            spec["sampler_options"] = sampler.options()      # specs of default samplers keep their earlier form
        batch_dir = _prepare_batch_dir(run_dir, spec, resume)
    elif resume:
        raise UserError("resume: needs reseed_batches=True (batches that can be redone alone)")
    if resume:
        (run_dir / "samples.extxyz").unlink(missing_ok=True)  # the writer rewrites every crystal, in order
    writer = SampleWriter(run_dir, meta={"sampler": sampler.label, "steps": steps, "seed": seed, **(meta or {})},
                          symprec=symprec)
    with writer.marks_interrupt():  # Ctrl-C: samples.json says "interrupted": true
        samples = _generate_batches(model, writer, n, sampler, steps, seed, batch_size, progress, reseed_batches,
                                    devices, checkpoint, strategy, accelerator, batch_dir)
    return GenerationResult(samples=samples, out=writer.dir, n=len(samples), n_decoded=writer.n_decoded,
                            n_valid=writer.n_valid, batches_read_back=writer.meta.get("batches_read_back", 0),
                            meta=dict(writer.meta))


def model_fingerprint(model) -> str:
    """sha256 of a model's parameters and buffers (names, shapes, dtypes, values), in hex: two models with the same
    weights give the same string whatever file they came from."""
    import hashlib

    h = hashlib.sha256()

    def feed(name, v):
        if isinstance(v, torch.Tensor):
            t = v.detach().cpu().contiguous()
            h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        elif isinstance(v, dict):  # e.g. a fitted scaler's state kept beside the weights
            for k in sorted(v, key=str):
                feed(f"{name}.{k}", v[k])
        else:
            h.update(f"{name}={v!r}".encode())

    for name, value in sorted(model.state_dict().items()):
        feed(name, value)
    return h.hexdigest()


def _prepare_batch_dir(run_dir: Path, spec: dict, resume: bool) -> Path:
    """``run_dir/batches`` with ``spec.json`` written; with ``resume`` the spec already there must equal ``spec``
    (else a UserError names the first setting that differs)."""
    batch_dir = run_dir / "batches"
    spec_file = batch_dir / "spec.json"
    if resume:
        if not spec_file.is_file():
            raise ArgumentError("resume", f": {spec_file} not found (resume needs the folder of an earlier run with "
                                          f"the same settings)")
        old = json.loads(spec_file.read_text())
        for key in list(spec) + [k for k in old if k not in spec]:
            value = spec.get(key)
            if old.get(key) != value:
                what = "the model's weights differ" if key == "model_sha256" else \
                    f"{key} was {old.get(key)!r}, now {value!r}"
                raise ArgumentError("resume", f" {run_dir}: {what}; resume with the settings of the earlier run "
                                              f"(see {spec_file}) or write to a new {mention('run_dir')}")
        return batch_dir
    batch_dir.mkdir(parents=True, exist_ok=True)
    for stale in batch_dir.glob("batch_*.pt"):  # a fresh run never mixes in another run's batches
        stale.unlink()
    atomic_write_text(spec_file, strict_json_dumps(spec, indent=1))
    return batch_dir


def _generate_batches(model, writer, n, sampler, steps, seed, batch_size, progress, reseed_batches, devices,
                      checkpoint, strategy, accelerator, batch_dir=None):
    """The body of :func:`generate_to_folder` once its writer exists: all crystals as one ``SampleOutput``."""
    from ..models.output import load_batch, save_batch

    if not reseed_batches:
        out = model.generate(n, sampler=sampler, steps=steps, seed=seed, batch_size=batch_size, progress=progress)
        writer.add(out)
        return out
    n_batches = (n + batch_size - 1) // batch_size
    done_before = sorted(batch_dir.glob("batch_*.pt"))
    writer.meta["batches_read_back"] = len(done_before)
    if done_before and progress:
        print(f"[dpcdvae] resuming: {len(done_before)} of {n_batches} batches already in {batch_dir}",
              file=sys.stderr, flush=True)
    if devices > 1:
        if checkpoint is None or isinstance(checkpoint, torch.nn.Module):
            raise ArgumentError("devices", ": give a checkpoint path or pretrained:<name> (each process loads the "
                                           "model)")
        outs = run_sharded({"job": "generate", "checkpoint": str(checkpoint), "n": n, "n_batches": n_batches,
                            "batch_size": batch_size, "sampler": sampler, "steps": steps, "seed": seed,
                            "accelerator": accelerator, "batch_dir": str(batch_dir)}, devices, strategy)
        for out in outs:
            writer.add(out)
        return concat_outputs(outs)
    outs = []
    bar = progress_bar(total=n, desc="generating", unit="crystal") if progress else None
    for k in range(n_batches):
        start = k * batch_size
        m = min(batch_size, n - start)
        path = batch_dir / f"batch_{k:06d}.pt"
        if path.is_file():
            out = load_batch(path)
        else:
            out = model.generate(m, sampler=sampler, steps=steps, seed=seed + start, batch_size=m, progress=progress)
            out.ids = [f"gen-{start + i:05d}" for i in range(m)]
            save_batch(out, path)
        writer.add(out)
        outs.append(out)
        if bar is not None:
            bar.update(m)
    if bar is not None:
        bar.close()
    return concat_outputs(outs)
