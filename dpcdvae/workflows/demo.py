"""``dpcdvae demo``: the main job on a fresh machine, no downloads.

The shipped Perov-5 model (``pretrained:perov_5``) -> reconstruct a handful of Perov-5 test crystals when the data
locator finds them (match rate) -> generate a handful of new ones -> CIFs, a PNG picture and ``summary.json`` in a
fresh run folder. ``--train-minutes M`` trains a fresh compact model instead (Perov-5 when found, else the
self-generated SYNTHETIC perovskites).
"""
from __future__ import annotations

import time
from typing import Optional

from ..diffusion.samplers import get_sampler
from ..utils.fileio import strict_json_dumps
from ..data import DEMO_NAME, DatasetNotFoundError, available_splits
from ..data.registry import find_spec
from ..io import new_run_dir
from ..models import load_model
from ..train import train
from ..viz import plot_samples
from .common import checkpoint_dataset
from .generate import generate_to_folder
from .reconstruct import reconstruct_split

__all__ = ["run_demo", "pick_demo_dataset", "whole_split_reference"]


def pick_demo_dataset(dataset: str = "auto") -> tuple[str, bool]:
    """(dataset name, synthetic?) for the demo: Perov-5 when found by the locator, else the synthetic demo."""
    spec = find_spec(dataset) if dataset != "auto" else None
    if spec is not None and spec.synthetic:  # "demo" or its registered name (any case)
        return spec.name, True
    if dataset != "auto":
        return dataset, False
    try:
        if {"train", "val", "test"} <= set(available_splits("perov_5")):
            return "perov_5", False
    except DatasetNotFoundError:
        pass
    return DEMO_NAME, True


#: (sampler, steps) -> the key of a shipped model card's whole-test-split reconstruction figure with that protocol
_WHOLE_SPLIT_KEYS = {("eq7", None): "recon_full_eq7", ("strided_eq7", 100): "recon_full_s100",
                     ("eq6", None): "recon_full_eq6"}


def whole_split_reference(card: Optional[dict], dataset: Optional[str], sampler: str, steps: Optional[int],
                          latent: str = "sample") -> Optional[dict]:
    """The shipped model's match rate on the whole test split of ``dataset`` with the same protocol (``sampler``,
    ``steps``, z sampled), from its model card: ``{"match_rate", "n", "key"}``; ``None`` when the card has no such
    figure (another dataset, the posterior mean, an untabulated sampler, a model trained here)."""
    if not card or latent != "sample" or dataset is None or card.get("dataset") != dataset:
        return None
    key = _WHOLE_SPLIT_KEYS.get((sampler, None if sampler in ("eq7", "eq6") else steps))
    for m in card.get("metrics") or []:
        if key is not None and m.get("key") == key and m.get("n"):
            return {"match_rate": float(m["value"]), "n": int(m["n"]), "key": key}
    return None


def run_demo(out: str = "runs/demo", checkpoint: str = "pretrained:perov_5", train_minutes: Optional[float] = None,
             dataset: str = "auto", config: str = "compact", n_recon: int = 32, n_gen: int = 16,
             steps: Optional[int] = None, limit_train: Optional[int] = 3000, seed: int = 0,
             latent: str = "sample") -> dict:
    """Run the demo; returns (and writes to ``<run>/summary.json``) what it did and measured.

    By default it uses the model shipped with the package (``checkpoint="pretrained:perov_5"``): it reconstructs
    the first ``n_recon`` Perov-5 test crystals when the data locator finds them (reconstruction is skipped, and
    said so, when it does not) and generates ``n_gen`` new crystals. ``train_minutes=M`` instead trains a fresh
    ``config`` model for M minutes (on Perov-5 when found, else on the SYNTHETIC demo perovskites) and uses it.

    ``steps=None`` (default) samples with the paper's 1000-step Eq. 7 sampler; an integer uses the strided Eq. 7
    few-step sampler with that many network calls. ``latent``: z of the reconstructions, ``"sample"`` (paper) or
    ``"mean"``.
    """
    t0 = time.time()
    run = new_run_dir(out, "demo")
    res = None
    if train_minutes:
        name, synthetic = pick_demo_dataset(dataset)
        label = "SYNTHETIC demo perovskites (generated, not DFT data)" if synthetic else name
        print(f"[dpcdvae demo] training a fresh {config!r} model for {train_minutes} min on {label}; "
              f"output: {run}", flush=True)
        overrides = {"train.limit_train": limit_train, "train.limit_val": 256}
        res = train(name, config=config, out=run / "train", overrides=overrides, max_minutes=train_minutes,
                    seed=seed, progress=False)
        checkpoint = res["best"]
        model = load_model(checkpoint)
        model_label = f"DP-CDVAE ({config}, {train_minutes} min on {label})"
    else:
        model = load_model(checkpoint)
        card = getattr(model, "card", {}) or {}
        name = checkpoint_dataset(checkpoint, model) if dataset == "auto" else pick_demo_dataset(dataset)[0]
        synthetic = name == pick_demo_dataset("demo")[0]
        label = name or "unknown data"
        model_label = f"shipped model {checkpoint}" if card else f"checkpoint {checkpoint}"
        print(f"[dpcdvae demo] using {model_label} (trained on {card.get('dataset', label)}, split "
              f"{card.get('train_split', '?')}); output: {run}", flush=True)
    smp = get_sampler("strided_eq7" if steps else "eq7")  # the object both jobs below run
    sampler = smp.label
    recon = None  # a ReconstructionResult when the test split was found
    recon_note = ""
    have_test = False
    if name is not None:
        try:
            have_test = synthetic or "test" in available_splits(name)
        except DatasetNotFoundError:
            have_test = False
    if n_recon and have_test:
        print(f"[dpcdvae demo] reconstructing the first {n_recon} {label} test crystals ({sampler})", flush=True)
        recon = reconstruct_split(checkpoint, run / "reconstruction", dataset=name, split="test", limit=n_recon,
                                  sampler=smp, steps=steps, seed=seed, command="dpcdvae demo", latent=latent)
    elif n_recon:
        recon_note = (f"reconstruction skipped: the {name} test split was not found by the data locator "
                      f"(set DPCDVAE_DATA or --data-root; `dpcdvae data info {name}`)")
        print(f"[dpcdvae demo] {recon_note}", flush=True)
    gen = generate_to_folder(model, n_gen, run / "generated", sampler=smp, steps=steps, seed=seed,
                             batch_size=512, progress=False,
                             meta={"command": "dpcdvae demo", "checkpoint": str(checkpoint),
                                   "synthetic_training_data": synthetic})
    png = run / "generated.png"
    plot_samples(gen.samples, 8, png, suptitle=model_label, what="generated crystals")
    whole = whole_split_reference(getattr(model, "card", None) if res is None else None, name, sampler, steps,
                                  latent) if recon is not None and recon.n else None
    recon_n = 0 if recon is None else recon.n
    dr = None if recon is None else recon.delta_rms
    summary = {
        "run": str(run), "checkpoint": str(checkpoint), "dataset": name, "synthetic": synthetic,
        "config": model.config.name, "trained_here": res is not None,
        "train_minutes": train_minutes, "epochs": res["epochs"] if res else None,
        "best_val_loss": res["best_val_loss"] if res else None,
        "sampler": sampler, "steps": steps or model.cfg.timesteps, "latent": latent,
        "recon_n": recon_n, "recon_match_rate": None if recon is None else recon.match_rate,
        "recon_delta_rms": dr if isinstance(dr, (int, float)) and dr == dr else None,  # NaN -> null
        "recon_note": recon_note or None,
        "recon_whole_split": whole,  # the same model and protocol on the whole test split (model card), or null
        "generated_n": gen.n, "generated_valid": gen.n_valid, "generated_built": gen.n_decoded,
        "validity": "paper (structure + composition, as Table II)", "picture": str(png),
        "cif_dirs": ([str(recon.out / "cif")] if recon is not None and recon.out else []) + [str(gen.cif_dir)],
        "wall_s": round(time.time() - t0, 1),
    }
    (run / "summary.json").write_text(strict_json_dumps(summary, indent=1))
    rate = summary["recon_match_rate"]
    beside = (f" (whole test split, {whole['n']} crystals, same sampler, from the model card: "
              f"{whole['match_rate']:.2f} %)" if whole and rate is not None else "")
    print(f"[dpcdvae demo] reconstruction match rate on the first {recon_n} {name} test crystals: "
          f"{'n/a' if rate is None else f'{rate:.1f} %'}{beside}; generated {summary['generated_valid']}/{n_gen} "
          f"valid; picture {png}", flush=True)
    return summary
