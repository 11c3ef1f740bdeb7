"""The relaxation engine: calculator resolution (CHGNet, EMT, an ASE calculator, ``module:attr``, a batch predictor),
the one-by-one ASE loop (``Optimizer.run``), the lock-step loop (every optimizer step of all active structures served
by one batched predictor call), the worker processes, and :func:`relax_structures` / :func:`relax_structure`
(see :mod:`dpcdvae.eval.relax` for the whole story)."""
from __future__ import annotations

import contextlib
import importlib
import io
import json
import math
import os
import time
import warnings
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from ...utils.alloc import tune_allocator
from ...utils.progress import progress_bar
from .chgnet import CHGNetBatchPredictor, load_chgnet
from .io import (_bare, _is_atoms, _safe_name, _settings_mismatch, _to_atoms, _to_structure, _write_result,
                 read_structures)
from .results import RelaxResult

# local: heavy -- ase is imported inside the functions (the workflows import this package); chgnet and
# threadpoolctl are optional

__all__ = ["relax_structures", "relax_structure", "VOLUME_RATIO_LIMITS"]


@contextlib.contextmanager
def _blas_single_thread():
    """numpy/scipy BLAS (OpenBLAS) limited to one thread while relaxing: the optimizer and ``FrechetCellFilter``
    work on 3x3 / 9x9 matrices (``expm``, ``logm``, ``lu_solve``), where BLAS threads only add overhead; on a loaded
    machine they made these tiny solves take ~10 ms each (the cell filter cost more than EMT itself). torch's own
    threads (OpenMP) are not touched. No-op without ``threadpoolctl``."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


# ================================================================================================================
# calculator plumbing
# ================================================================================================================
def _served_calculator_class():
    from ase.calculators.calculator import Calculator, all_changes

    class ServedCalculator(Calculator):
        """ASE calculator whose results are pushed in by the batched loop (``serve``); if asked about another
        configuration (should not happen) it evaluates that one alone through the batch predictor."""

        implemented_properties = ["energy", "free_energy", "forces", "stress"]

        def __init__(self, predictor):
            super().__init__()
            self.predictor = predictor
            self.fallback_calls = 0

        def serve(self, atoms, result: Mapping):
            self.atoms = atoms.copy()
            self.results = {k: result[k] for k in ("energy", "free_energy", "forces", "stress") if k in result}
            if "free_energy" not in self.results:
                self.results["free_energy"] = self.results["energy"]
            self.results["stress"] = _voigt(self.results["stress"])

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            res = self.predictor([self.atoms])[0]
            if isinstance(res, BaseException):
                raise res
            self.fallback_calls += 1
            self.serve(self.atoms, res)

    return ServedCalculator


def _voigt(s):
    s = np.asarray(s, dtype=float)
    if s.shape == (3, 3):
        from ase.stress import full_3x3_to_voigt_6_stress

        return full_3x3_to_voigt_6_stress(s)
    return s.reshape(6)


def _is_ase_calculator(obj) -> bool:
    try:
        from ase.calculators.calculator import BaseCalculator
    except ImportError:  # pragma: no cover
        from ase.calculators.calculator import Calculator as BaseCalculator
    return isinstance(obj, BaseCalculator) or (hasattr(obj, "get_potential_energy") and hasattr(obj, "get_forces")
                                                and not callable(obj))


def _resolve_calculator(calculator, batch: bool, device: str, batch_size: int):
    """-> (kind, object, name) with kind 'batch' (a batch predictor) or 'ase' (an ASE calculator)."""
    if isinstance(calculator, str):
        key = calculator.strip()
        low = key.lower()
        if low in ("chgnet", "chgnet-0.3.0", "chgnet:0.3.0"):
            if batch:
                pred = CHGNetBatchPredictor(device=device, batch_size=max(batch_size, 1))
                return "batch", pred, pred.name
            from chgnet.model.dynamics import CHGNetCalculator

            model = load_chgnet("0.3.0", device)
            with contextlib.redirect_stdout(io.StringIO()):
                calc = CHGNetCalculator(model=model, use_device=device)
            return "ase", calc, f"chgnet-{getattr(model, 'version', None) or '0.3.0'}"
        if low == "emt":
            from ase.calculators.emt import EMT

            return "ase", EMT(), "emt"
        if ":" in key:
            mod, _, attr = key.partition(":")
            obj = getattr(importlib.import_module(mod), attr)
            if isinstance(obj, type) or (callable(obj) and not _is_ase_calculator(obj)
                                         and getattr(obj, "__code__", None) is not None
                                         and obj.__code__.co_argcount == 0):
                obj = obj()  # a class or a zero-argument factory
            kind, o, _ = _resolve_calculator(obj, batch, device, batch_size)
            return kind, o, key
        raise ValueError(f"unknown calculator {calculator!r}: use 'chgnet', 'emt', 'package.module:attribute', "
                         "an ASE Calculator or a batch predictor callable")
    if _is_ase_calculator(calculator):
        return "ase", calculator, type(calculator).__name__
    if callable(calculator):
        name = getattr(calculator, "name", None) or getattr(calculator, "__name__", None) \
            or type(calculator).__name__
        return "batch", calculator, str(name)
    raise TypeError(f"calculator must be 'chgnet', an ASE Calculator or a callable, got {type(calculator)}")


def _make_optimizer(optimizer, filt):
    from ase.optimize import BFGS, FIRE, LBFGS

    if isinstance(optimizer, str):
        table = {"fire": FIRE, "bfgs": BFGS, "lbfgs": LBFGS}
        cls = table.get(optimizer.strip().lower())
        if cls is None:
            raise ValueError(f"unknown optimizer {optimizer!r}; known: FIRE, BFGS, LBFGS")
    else:
        cls = optimizer
    return cls(filt, logfile=None)


def _optimizer_name(optimizer) -> str:
    return optimizer.upper() if isinstance(optimizer, str) else getattr(optimizer, "__name__", str(optimizer))


# ================================================================================================================
# relaxation
# ================================================================================================================
@dataclass
class _State:
    idx: int
    sid: str
    atoms: Any
    filt: Any
    opt: Any
    calc: Any
    structure: Any
    t0: float
    n: int
    e0: float | None = None
    h0: float | None = None
    v0: float | None = None


def _per_atom(atoms, p_ev_a3: float) -> tuple[float, float, float]:
    """(E/N, H/N, V/N) of ``atoms`` (calculator results must be current)."""
    n = len(atoms)
    e = float(atoms.get_potential_energy()) / n
    v = float(atoms.get_volume()) / n
    return e, e + p_ev_a3 * v, v


def _check_finite(e, forces=None):
    if not math.isfinite(e):
        raise FloatingPointError("non-finite energy")
    if forces is not None and not np.all(np.isfinite(forces)):
        raise FloatingPointError("non-finite forces")


def _base_result(sid: str, structure, settings: dict, batched: bool) -> RelaxResult:
    n = len(structure) if structure is not None else 0
    formula = ""
    if structure is not None:
        with contextlib.suppress(Exception):
            formula = structure.composition.reduced_formula if hasattr(structure, "composition") \
                else structure.get_chemical_formula()
    return RelaxResult(id=sid, n_atoms=n, formula=formula, pressure_gpa=settings["pressure_gpa"],
                       calculator=settings["calculator"], optimizer=settings["optimizer"], fmax=settings["fmax"],
                       max_steps=settings["max_steps"], batched=batched, initial_structure=structure)


VOLUME_RATIO_LIMITS = (0.2, 5.0)  # relaxed / initial volume outside this range: the cell blew up or collapsed


def _finish(st: _State, settings: dict, batched: bool, converged: bool, p_ev_a3: float) -> RelaxResult:
    r = _base_result(st.sid, st.structure, settings, batched)
    r.initial_energy_per_atom, r.initial_enthalpy_per_atom, r.initial_volume_per_atom = st.e0, st.h0, st.v0
    e, h, v = _per_atom(st.atoms, p_ev_a3)
    _check_finite(e)
    r.relaxed_energy_per_atom, r.relaxed_enthalpy_per_atom, r.relaxed_volume_per_atom = e, h, v
    r.steps = int(st.opt.nsteps)
    r.converged = bool(converged)
    g = st.opt.optimizable.get_gradient()
    r.final_fmax = float(st.opt.optimizable.gradient_norm(g))
    r.wall_time_s = time.perf_counter() - st.t0
    r.relaxed_structure = _to_structure(st.atoms)
    ratio = v / st.v0 if st.v0 else float("nan")
    if not (VOLUME_RATIO_LIMITS[0] <= ratio <= VOLUME_RATIO_LIMITS[1]):
        r.error = f"unphysical relaxation: volume changed by a factor {ratio:.3g}"
    return r


def _failed(sid, structure, settings, batched, msg, t0=None) -> RelaxResult:
    r = _base_result(sid, structure if not _is_atoms(structure) else _to_structure(structure), settings, batched)
    r.error = str(msg)[:500]
    if t0 is not None:
        r.wall_time_s = time.perf_counter() - t0
    return r


def _err(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _run_sequential_ase(todo, calc, settings, optimizer, fmax, max_steps, p_ev_a3):
    """One structure at a time with an ASE calculator and ``Optimizer.run`` (the stock path)."""
    from ase.filters import FrechetCellFilter

    for idx, sid, structure in todo:
        t0 = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                atoms = _to_atoms(structure)
                atoms.calc = calc
                filt = FrechetCellFilter(atoms, scalar_pressure=p_ev_a3)
                e0, h0, v0 = _per_atom(atoms, p_ev_a3)
                _check_finite(e0, atoms.get_forces())
                opt = _make_optimizer(optimizer, filt)
                converged = opt.run(fmax=fmax, steps=max_steps)
                st = _State(idx, sid, atoms, filt, opt, calc, structure, t0, len(atoms), e0, h0, v0)
                res = _finish(st, settings, False, bool(converged), p_ev_a3)
            atoms.calc = None
        except Exception as exc:  # one bad structure never stops the run
            res = _failed(sid, structure, settings, False, _err(exc), t0)
        yield idx, res


def _predict_safe(predictor, atoms_list) -> list:
    """Batch call; if the batch fails, evaluate one by one so only the culprits fail."""
    try:
        out = list(predictor(atoms_list))
        if len(out) != len(atoms_list):
            raise RuntimeError(f"batch predictor returned {len(out)} results for {len(atoms_list)} structures")
        return out
    except Exception as exc:
        if len(atoms_list) == 1:
            return [exc]
    out = []
    for a in atoms_list:
        try:
            out.append(predictor([a])[0])
        except Exception as exc:
            out.append(exc)
    return out


def _run_lockstep(todo, predictor, settings, optimizer, fmax, max_steps, p_ev_a3, batch_size, batched_flag):
    """Lock-step relaxation: every optimizer step of all active structures is served by one predictor call."""
    from ase.filters import FrechetCellFilter

    Served = _served_calculator_class()
    pending = deque(todo)
    active: list[_State] = []
    while pending or active:
        while pending and len(active) < batch_size:
            idx, sid, structure = pending.popleft()
            t0 = time.perf_counter()
            try:
                atoms = _to_atoms(structure)
                calc = Served(predictor)
                atoms.calc = calc
                filt = FrechetCellFilter(atoms, scalar_pressure=p_ev_a3)
                opt = _make_optimizer(optimizer, filt)
                opt.fmax = fmax
                active.append(_State(idx, sid, atoms, filt, opt, calc, structure, t0, len(atoms)))
            except Exception as exc:
                yield idx, _failed(sid, structure, settings, batched_flag, _err(exc), t0)
        if not active:
            continue
        finished: list[tuple[int, RelaxResult]] = []
        still: list[_State] = []
        with warnings.catch_warnings():  # results are yielded after this block (never with the filters changed)
            warnings.simplefilter("ignore")
            outs = _predict_safe(predictor, [_bare(st.atoms) for st in active])
            for st, out in zip(active, outs):
                try:
                    if isinstance(out, BaseException):
                        raise out
                    _check_finite(float(out["energy"]), out["forces"])
                    st.calc.serve(st.atoms, out)
                    if st.e0 is None:
                        st.e0, st.h0, st.v0 = _per_atom(st.atoms, p_ev_a3)
                    g = st.opt.optimizable.get_gradient()
                    converged = bool(st.opt.gradient_converged(g))
                    v_ratio = st.atoms.get_volume() / (st.v0 * st.n)
                    if converged or st.opt.nsteps >= max_steps or not (
                            VOLUME_RATIO_LIMITS[0] <= v_ratio <= VOLUME_RATIO_LIMITS[1]):
                        finished.append((st.idx, _finish(st, settings, batched_flag, converged, p_ev_a3)))
                        st.atoms.calc = None
                        continue
                    st.opt.step()
                    st.opt.nsteps += 1
                    still.append(st)
                except Exception as exc:
                    st.atoms.calc = None
                    finished.append((st.idx, _failed(st.sid, st.structure, settings, batched_flag, _err(exc),
                                                     st.t0)))
        active = still
        yield from finished


def relax_structures(structures, ids: Sequence[str] | None = None, pressure_gpa: float = 0.0,
                     calculator: Any = "chgnet", optimizer: Any = "FIRE", fmax: float = 0.05,
                     max_steps: int = 500, out_dir: str | os.PathLike | None = None, batch: bool = True,
                     progress: bool = True, batch_size: int = 32, resume: bool = True,
                     retry_failed: bool = False, device: str = "cpu", workers: int = 1) -> list[RelaxResult]:
    """Relax cell and positions of every structure at ``pressure_gpa`` (GPa); one :class:`RelaxResult` each, in
    input order.

    Parameters
    ----------
    structures : pymatgen ``Structure`` / ASE ``Atoms`` (``None`` entries fail with a message), or a path (CIF,
        folder of CIFs, extxyz; ids then come from the files).
    ids : one name per structure (default ``"00000"``, ``"00001"`` ...); must be unique; file names in
        ``out_dir`` are these ids with characters outside ``[A-Za-z0-9._#+=-]`` replaced by ``_``.
    pressure_gpa : external hydrostatic pressure in GPa (10 for Carbon-24, as in the paper).
    calculator : ``"chgnet"`` (default), ``"emt"``, ``"module:attr"``, an ASE ``Calculator`` or a batch
        predictor ``f(list[Atoms]) -> list[dict(energy eV, forces eV/A, stress eV/A^3)]``.
    optimizer : ``"FIRE"`` (default), ``"BFGS"``, ``"LBFGS"`` or an ASE optimizer class.
    fmax : convergence threshold on the largest generalised force of the ``FrechetCellFilter`` (eV/A).
    max_steps : optimizer steps at most (not converged: ``converged=False``, result kept).
    out_dir : write ``<id>.json`` + ``<id>.cif`` per structure as it finishes; resume from there.
    batch : relax up to ``batch_size`` structures in lock step with one predictor call per optimizer step (batch
        predictors and CHGNet). ``False``: one at a time (CHGNet: the stock ``CHGNetCalculator`` + ASE ``run``).
        An ASE ``Calculator`` instance always runs one structure at a time.
    resume : reuse finished results found in ``out_dir`` (``False``: recompute and overwrite them).
    retry_failed : with ``resume``, recompute ids whose stored result has an ``error``.
    device : torch device for CHGNet (``"cpu"``, ``"cuda"``).
    workers : relax in this many processes at once (CPU), each with ``torch.get_num_threads() // workers`` torch
        threads and its own copy of the calculator; the structures are dealt out in chunks (each chunk relaxed as
        above, in lock step when ``batch``). On a few CPU cores, processes of one thread use the cores better than
        one process of several threads (small matrices); ``BENCHMARKS.md`` has the figures. Needs ``calculator``
        given by name (a string), as the processes build their own.

    Returns the results in input order (``resumed=True`` on those loaded from ``out_dir``).
    """
    tune_allocator()  # an entry point: glibc keeps freed memory for the next step (CPU speed; results unchanged)
    from ase.units import GPa

    if isinstance(structures, (str, os.PathLike)):
        read_ids, structures, read_errs = read_structures(structures)
        ids = read_ids if ids is None else ids
    else:
        structures = list(structures)
        read_errs = [None] * len(structures)
    n = len(structures)
    if ids is None:
        ids = [f"{i:05d}" for i in range(n)]
    ids = [str(i) for i in ids]
    if len(ids) != n:
        raise ValueError(f"{len(ids)} ids for {n} structures")
    names = [_safe_name(i) for i in ids]
    if len(set(names)) != n:
        dup = sorted({x for x in names if names.count(x) > 1})
        raise ValueError(f"duplicate ids (after making them file-name safe): {dup[:5]}")
    if fmax <= 0 or max_steps < 0:
        raise ValueError("fmax must be > 0 and max_steps >= 0")

    kind, calc, calc_name = _resolve_calculator(calculator, batch, device, batch_size)
    settings = {"pressure_gpa": float(pressure_gpa), "calculator": calc_name,
                "optimizer": _optimizer_name(optimizer), "fmax": float(fmax), "max_steps": int(max_steps)}
    p_ev_a3 = float(pressure_gpa) * GPa

    out_path = None
    if out_dir is not None:
        out_path = Path(out_dir)
        out_path.mkdir(parents=True, exist_ok=True)

    results: list[RelaxResult | None] = [None] * n
    if out_path is not None and resume:
        for i, name in enumerate(names):
            p = out_path / f"{name}.json"
            if not p.is_file():
                continue
            try:
                r = RelaxResult.from_dict(json.loads(p.read_text()))
            except Exception:  # a corrupt file (should not happen: atomic writes): recompute
                continue
            bad = _settings_mismatch(r, settings)
            if bad:
                raise ValueError(f"{p} was computed with other settings ({'; '.join(bad)}); use another out_dir "
                                 "or resume=False to recompute")
            if r.error is not None and retry_failed:
                continue
            r.resumed = True
            results[i] = r

    batched = kind == "batch" and batch
    todo = []
    for i in range(n):
        if results[i] is not None:
            continue
        s = structures[i]
        if s is None:
            r = _failed(ids[i], None, settings, batched, read_errs[i] or "no structure")
            results[i] = r
            if out_path is not None:
                _write_result(out_path, r)
            continue
        if _is_atoms(s):
            with contextlib.suppress(Exception):
                s = _to_structure(s)
        todo.append((i, ids[i], s))

    workers = int(workers)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if workers > 1 and len(todo) > 1:
        if not isinstance(calculator, str):
            raise ValueError("workers > 1 needs the calculator given by name ('chgnet', 'emt' or 'module:attr'), "
                             f"not an object ({type(calculator).__name__}): each process builds its own")
        runner = _run_in_processes(todo, workers, dict(
            pressure_gpa=pressure_gpa, calculator=calculator, optimizer=optimizer, fmax=fmax, max_steps=max_steps,
            batch=batch, batch_size=batch_size, device=device))
    elif kind == "batch":
        runner = _run_lockstep(todo, calc, settings, optimizer, fmax, max_steps, p_ev_a3,
                               batch_size=max(1, int(batch_size)) if batch else 1, batched_flag=batched)
    else:
        runner = _run_sequential_ase(todo, calc, settings, optimizer, fmax, max_steps, p_ev_a3)

    bar = None
    if progress and todo:
        bar = progress_bar(total=len(todo), desc=f"relax @ {pressure_gpa:g} GPa", unit="struct")
    try:
        with _blas_single_thread():
            for idx, res in runner:
                results[idx] = res
                if out_path is not None:
                    _write_result(out_path, res)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(steps=res.steps, ok=res.error is None)
    finally:
        if bar is not None:
            bar.close()
    return results  # type: ignore[return-value]


def _relax_chunk(chunk: list, kwargs: dict, threads: int) -> list:
    """One worker process's share (see ``workers`` in :func:`relax_structures`): ``[(index, RelaxResult)]``."""
    torch.set_num_threads(max(1, threads))
    res = relax_structures([s for _, _, s in chunk], ids=[sid for _, sid, _ in chunk], progress=False,
                           out_dir=None, workers=1, **kwargs)
    return [(idx, r) for (idx, _, _), r in zip(chunk, res)]


def _run_in_processes(todo: list, workers: int, kwargs: dict):
    """Deal ``todo`` out to ``workers`` spawned processes in chunks; yield ``(index, result)`` as chunks finish.
    Spawned, not forked: each worker runs its own threaded torch model (CHGNet), and a forked child would inherit
    this process's torch thread pools in whatever state they were (:mod:`dpcdvae.utils.pool`)."""
    from concurrent.futures import as_completed

    from ...utils.pool import process_pool

    per_chunk = max(1, 4 * int(kwargs.get("batch_size") or 1)) if kwargs.get("batch") else 4
    n_chunks = max(workers, math.ceil(len(todo) / per_chunk))
    n_chunks = min(len(todo), math.ceil(n_chunks / workers) * workers)
    chunks = [todo[k::n_chunks] for k in range(n_chunks)]
    threads = max(1, torch.get_num_threads() // workers)
    with process_pool(workers, start_method="spawn") as pool:
        futures = [pool.submit(_relax_chunk, c, kwargs, threads) for c in chunks if c]
        for fut in as_completed(futures):
            yield from fut.result()


def relax_structure(structure, **kwargs) -> RelaxResult:
    """Relax one structure (keyword arguments as :func:`relax_structures`; ``id`` default ``"00000"``)."""
    sid = kwargs.pop("id", None)
    kwargs.setdefault("progress", False)
    return relax_structures([structure], ids=None if sid is None else [sid], **kwargs)[0]
