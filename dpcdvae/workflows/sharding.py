"""Sampling across processes and devices: ``dpcdvae sample`` / ``reconstruct`` with ``--devices N``.

The work is cut into the same batches as a one-process run, and batch ``k`` is seeded by its own index (``seed +
first crystal of the batch`` for generation, ``seed + k`` for reconstruction), so a batch's crystals do not depend on
which process computes it: the merged output is the same crystals, in the same order, whatever ``N`` (tested with 2
CPU processes). Batch ``k`` goes to process ``k % N``; every process loads the model itself (on ``cuda:<rank>`` with
``accelerator="gpu"``, else on the CPU with ``cpu_count // N`` torch threads), writes each finished batch to a
temporary folder, and the parent merges them in batch order and writes one run folder. The processes never talk to
each other (the batches are independent), so no process group is needed; one node only.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp

from ..utils.alloc import tune_allocator
from ..utils.errors import ArgumentError

__all__ = ["run_sharded", "STRATEGIES"]

#: ``--strategy`` values: ``ddp`` = one process per device (the only one; it is what the flag names in Lightning)
STRATEGIES = ("ddp",)


def _load(spec: dict, device: str):
    from ..models import load_model  # local: each spawned process imports the models itself

    model = load_model(spec["checkpoint"], map_location=device, ema=spec.get("ema", True)).to(device)
    for key in ("initial_types", "type_update"):
        if spec.get(key) is not None:
            setattr(model.cfg, key, spec[key])
    return model


def _worker(rank: int, world: int, spec: dict, tmp: str) -> None:
    from ..models.output import save_batch  # local: as in _load

    tune_allocator()  # each spawned process is an entry point (CPU speed; outputs unchanged)

    dev = f"cuda:{rank}" if spec.get("accelerator") == "gpu" else "cpu"
    if dev == "cpu":
        torch.set_num_threads(max(1, spec.get("threads") or (os.cpu_count() or 1) // world))
    model = _load(spec, dev)
    n_batches = spec["n_batches"]
    if spec["job"] == "generate":
        n, bs = spec["n"], spec["batch_size"]
        for k in range(rank, n_batches, world):
            path = Path(tmp) / f"batch_{k:06d}.pt"
            if path.is_file():  # kept from an earlier, interrupted run (resume)
                continue
            start = k * bs
            m = min(bs, n - start)
            out = model.generate(m, sampler=spec["sampler"], steps=spec["steps"], seed=spec["seed"] + start,
                                 batch_size=m)
            out.ids = [f"gen-{start + i:05d}" for i in range(m)]
            save_batch(out, path)
            print(f"[dpcdvae] process {rank}/{world}: batch {k + 1}/{n_batches} done", flush=True)
    elif spec["job"] == "reconstruct":
        from torch_geometric.loader import DataLoader  # local: as above

        from ..data import load_split

        ds = load_split(spec["dataset"], spec["split"], root=spec.get("root"),  # resolved once, in load_split
                        max_atoms=model.cfg.max_atoms, graph=model.data_graph, limit=spec.get("limit"),
                        on_error=spec.get("on_error", "raise"), progress=False)
        for k, batch in enumerate(DataLoader(ds, batch_size=spec["batch_size"])):
            if k % world != rank:
                continue
            out = model.reconstruct(batch, sampler=spec["sampler"], steps=spec["steps"], seed=spec["seed"] + k,
                                    use_mean=spec.get("latent") == "mean")
            save_batch(out, Path(tmp) / f"batch_{k:06d}.pt")
            print(f"[dpcdvae] process {rank}/{world}: batch {k + 1}/{n_batches} done", flush=True)
    else:
        raise ValueError(f"unknown job {spec['job']!r}")


def run_sharded(spec: dict, devices: int, strategy: str = "ddp") -> list:
    """Run ``spec`` (``job``: ``"generate"`` or ``"reconstruct"``, ``checkpoint`` (a path or ``pretrained:<name>``,
    never a loaded model), ``n_batches``, ``batch_size``, ``sampler``, ``steps``, ``seed`` and the job's own keys)
    on ``devices`` processes; returns the per-batch :class:`~dpcdvae.models.SampleOutput` in batch order. With
    ``batch_dir`` (generation) the batches are written there (:func:`~dpcdvae.models.output.save_batch`) and a batch
    file already there is not computed again (resume)."""
    if strategy not in STRATEGIES:
        raise ArgumentError("strategy", f"{strategy}: expected one of {', '.join(STRATEGIES)}")
    if devices < 1:
        raise ArgumentError("devices", f"{devices}: must be >= 1")
    if spec.get("accelerator") == "gpu" and devices > torch.cuda.device_count():
        raise ArgumentError("devices", f"{devices}: only {torch.cuda.device_count()} GPU(s) visible")
    if isinstance(spec.get("checkpoint"), torch.nn.Module):
        raise ValueError("run_sharded needs a checkpoint path or pretrained:<name>: each process loads the model")
    from ..models.output import load_batch  # local: the models package is heavy and only needed here

    t0 = time.time()
    keep = spec.get("batch_dir")  # generation: the batches stay in the run folder (resumable)
    with (contextlib.nullcontext(keep) if keep else tempfile.TemporaryDirectory(prefix="dpcdvae-shards-")) as folder:
        mp.start_processes(_worker, args=(devices, spec, folder), nprocs=devices, join=True, start_method="spawn")
        files = sorted(Path(folder).glob("batch_*.pt"))
        if len(files) != spec["n_batches"]:
            raise RuntimeError(f"{len(files)} of {spec['n_batches']} batches came back from the processes")
        outs = [load_batch(f) for f in files]
    print(f"[dpcdvae] {spec['n_batches']} batches on {devices} processes in {time.time() - t0:.1f} s", flush=True)
    return outs
