"""`dpcdvae train-property`: a fresh DimeNet++ property regressor (dpcdvae.eval.property_train), its checkpoint
loaded by PropertyPredictor.from_checkpoint, and its use for W1(E_form) in `dpcdvae evaluate --property-model`.

All data is written by the tests: the SYNTHETIC demo perovskites (``heat_ref`` = |1 - Goldschmidt tolerance
factor|, dimensionless, a function of the composition, so it is learnable) and CSVs derived from them.
``$DPCDVAE_CACHE`` points at a temporary folder for the whole module (the DimeNet++ basis pickle is copied there
from the user's cache when present, so the sympy derivation is not repeated).
"""
from __future__ import annotations

import json
import math
import shutil
import warnings

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("pymatgen")
from pymatgen.core import Structure  # noqa: E402

from dpcdvae.data import DEMO_NAME, make_demo_dataset  # noqa: E402
from dpcdvae.eval import property as prop_mod  # noqa: E402
from dpcdvae.eval.property import PropertyModelUnavailable, PropertyPredictor, predict_property  # noqa: E402
from dpcdvae.eval.property_train import _load_items, train_property  # noqa: E402

SIZES = (96, 24, 8)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A temporary $DPCDVAE_CACHE (basis pickle copied in) and the demo dataset under a temporary root."""
    from dpcdvae.nets.dimenet import _basis_cache_file

    src = _basis_cache_file(7, 6)  # under the caller's cache, before it is redirected
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DPCDVAE_CACHE", str(cache))
        dst = _basis_cache_file(7, 6)
        if src is not None and dst is not None and src.is_file():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dst)
        root = tmp_path_factory.mktemp("data")
        make_demo_dataset(root, n=SIZES)
        yield {"root": root, "cache": cache, "tmp": tmp_path_factory}


@pytest.fixture(scope="module")
def trained(env):
    out = env["tmp"].mktemp("prop")
    res = train_property(DEMO_NAME, out, root=env["root"], max_epochs=30, batch_size=16, lr=2e-3, seed=0,
                         progress=False, max_minutes=2.0, command="pytest", num_workers=1)
    return out, res


def _val_structures(root, split="val"):
    df = pd.read_csv(root / DEMO_NAME / f"{split}.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        structs = [Structure.from_str(c, fmt="cif") for c in df["cif"]]
    return structs, df["heat_ref"].to_numpy(dtype=float)


# ------------------------------------------------------------------------------------------------------ (a)
def test_training_beats_predict_the_mean(trained):
    out, res = trained
    assert res["n_train"] == SIZES[0] and res["n_val"] == SIZES[1]
    assert res["n_excluded_nan"] == 0
    # the trivial baseline and the val std are the quantities the summary claims
    assert res["baseline_val_mae"] > 0 and res["val_std"] > 0
    # learning happened: clearly below predicting the training mean
    assert res["best_val_mae"] < 0.5 * res["baseline_val_mae"], res
    assert res["units"] == "dimensionless (SYNTHETIC)" and res["prop"] == "heat_ref"
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == res["epochs"] >= 1
    assert {"epoch", "train_loss", "val_mae", "lr"} <= set(lines[0])
    assert min(x["val_mae"] for x in lines) == pytest.approx(res["best_val_mae"])
    assert lines[-1]["train_loss"] < lines[0]["train_loss"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["best_val_mae"] == pytest.approx(res["best_val_mae"])
    assert summary["baseline_val_mae"] == pytest.approx(res["baseline_val_mae"])
    assert summary["command"] == "pytest" and "torch" in summary["versions"]
    assert "predictor" not in summary


# ------------------------------------------------------------------------------------------------------ (b)
def test_checkpoint_round_trip(trained, env):
    import torch

    out, res = trained
    ck = torch.load(out / "best.pt", map_location="cpu", weights_only=True)
    assert ck["format"] == prop_mod.CHECKPOINT_FORMAT
    assert ck["dataset"] == DEMO_NAME and ck["prop"] == "heat_ref" and ck["units"] == res["units"]
    assert ck["mean"] == pytest.approx(res["train_mean"]) and ck["std"] == pytest.approx(res["train_std"])
    assert ck["n_train"] == SIZES[0] and ck["n_val"] == SIZES[1]
    assert ck["best_val_mae"] == pytest.approx(res["best_val_mae"]) and ck["command"] == "pytest"
    assert ck["model_kwargs"]["out_channels"] == 1

    structs, y = _val_structures(env["root"])
    loaded = PropertyPredictor.from_checkpoint(out / "best.pt")
    assert (loaded.mean, loaded.std, loaded.prop) == (res["train_mean"], res["train_std"], "heat_ref")
    p_loaded = loaded.predict(structs, n_workers=1, progress=False)
    p_memory = res["predictor"].predict(structs, n_workers=1, progress=False)
    np.testing.assert_allclose(p_loaded, p_memory, rtol=0, atol=1e-9)
    assert np.isfinite(p_loaded).all()
    # the graph at prediction time (Structure -> CrystalNN) is the one trained on (dataset's stored edges)
    items, _ = _load_items(DEMO_NAME, "val", "heat_ref", env["root"], None, 94, progress=False, num_workers=1)
    p_train_path = res["predictor"].predict_prepared(items)
    np.testing.assert_allclose(p_loaded, p_train_path, rtol=0, atol=1e-4 * res["train_std"])
    assert float(np.abs(p_loaded - y).mean()) == pytest.approx(res["best_val_mae"], rel=1e-3)
    # predict_property with model_path: same numbers, loaded once per path
    p_fn = predict_property(structs, DEMO_NAME, model_path=out / "best.pt", n_workers=1)
    np.testing.assert_allclose(p_fn, p_loaded, rtol=0, atol=1e-9)
    n_loaded = len(prop_mod._LOADED)
    predict_property(structs[:2], "demo", model_path=str(out / "best.pt"), n_workers=1)
    assert len(prop_mod._LOADED) == n_loaded
    with pytest.raises(PropertyModelUnavailable):
        PropertyPredictor.from_checkpoint(out / "summary.json")
    with pytest.raises(PropertyModelUnavailable):
        PropertyPredictor.from_checkpoint(out / "absent.pt")


# ------------------------------------------------------------------------------------------------------ (c)
def test_nan_rows_are_excluded_and_reported(env, capsys):
    src = env["root"] / DEMO_NAME
    root = env["tmp"].mktemp("nanroot")
    d = root / "nanset"
    d.mkdir()
    tr = pd.read_csv(src / "train.csv", dtype=str, keep_default_na=False).iloc[:20].copy()
    tr.loc[[1, 4], "heat_ref"] = "nan"
    tr.loc[7, "heat_ref"] = ""          # missing value
    tr.loc[9, "heat_ref"] = "n/a"       # not a number
    tr.to_csv(d / "train.csv", index=False)
    va = pd.read_csv(src / "val.csv", dtype=str, keep_default_na=False).iloc[:8].copy()
    va.loc[0, "heat_ref"] = "NaN"
    va.to_csv(d / "val.csv", index=False)
    with pytest.raises(ValueError, match="no default property column") as info:
        train_property("nanset", root / "out0", root=root, max_epochs=1, progress=False, num_workers=1)
    from dpcdvae.cli.flags import flag_for
    assert info.value.arg == "prop" and info.value.render(flag_for).startswith("--prop is needed: ")
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = train_property("nanset", root / "out", prop="heat_ref", root=root, max_epochs=1, batch_size=8,
                             progress=False, num_workers=1)
    printed = capsys.readouterr().out
    assert res["n_train"] == 16 and res["n_val"] == 7
    assert res["exclusions"]["train"]["n_excluded_nan"] == 4 and res["exclusions"]["val"]["n_excluded_nan"] == 1
    assert res["n_excluded_nan"] == 5
    assert "16 of 20 rows used; excluded 4 with a NaN" in printed
    assert "7 of 8 rows used; excluded 1 with a NaN" in printed
    assert math.isfinite(res["best_val_mae"]) and res["units"] == "unknown"
    ck = json.loads((root / "out" / "summary.json").read_text())
    assert ck["exclusions"]["train"]["n_excluded_nan"] == 4


# ------------------------------------------------------------------------------------------------------ (d)
def test_cli_train_property(env, capsys):
    from dpcdvae.cli import main

    out = env["tmp"].mktemp("cli") / "run"
    rc = main(["train-property", "--dataset", "demo", "--data-root", str(env["root"]), "--max-epochs", "2",
               "--max-minutes", "1", "--batch-size", "8", "--limit-train", "16", "--limit-val", "8",
               "--num-workers", "1", "--no-progress", "--out", str(out)])
    assert rc == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["n_train"] == 16 and res["n_val"] == 8 and res["epochs"] <= 2
    assert res["dataset"] == DEMO_NAME and res["prop"] == "heat_ref"
    for name in ("best.pt", "metrics.jsonl", "summary.json"):
        assert (out / name).is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["command"].startswith("dpcdvae train-property --dataset demo")
    assert PropertyPredictor.from_checkpoint(out / "best.pt").prop == "heat_ref"


# ------------------------------------------------------------------------------------------------------ evaluate hook
def test_evaluate_gen_with_property_model(trained, env):
    """`dpcdvae evaluate --task gen --property-model`: W1(E_form) from the fresh predictor, recorded as such."""
    from scipy.stats import wasserstein_distance

    from dpcdvae.cli import main

    out_model, res = trained
    root = env["tmp"].mktemp("evalroot")
    d = root / "perov_5"  # the demo CSVs have perov_5's columns; the name gives evaluate its COV thresholds
    d.mkdir()
    shutil.copy(env["root"] / DEMO_NAME / "test.csv", d / "test.csv")
    samples = root / "gen"
    samples.mkdir()
    structs, _ = _val_structures(env["root"])
    for k, s in enumerate(structs[:6]):
        s.to(filename=str(samples / f"gen-{k}.cif"))
    out = root / "eval"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc = main(["evaluate", "--task", "gen", "--samples", str(samples), "--dataset", "perov_5",
                   "--data-root", str(root), "--out", str(out), "--n-workers", "1", "--quiet", "--no-cache",
                   "--property-model", str(out_model / "best.pt")])
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["property_model.source"].startswith("checkpoint")
    assert m["property_model.path"] == str((out_model / "best.pt").resolve())
    assert m["property_model.prop"] == "heat_ref" and len(m["property_model.sha256"]) == 64
    assert isinstance(m["w1_eform"], float)
    test_structs, _ = _val_structures(env["root"], "test")
    pred = PropertyPredictor.from_checkpoint(out_model / "best.pt")
    assert m["n_valid"] == 6 and m["n_property_samples"] == 6  # all samples enter the property comparison
    expect = wasserstein_distance(pred.predict(structs[:6], n_workers=1, progress=False),
                                  pred.predict(test_structs, n_workers=1, progress=False))
    assert m["w1_eform"] == pytest.approx(expect, rel=1e-6, abs=1e-9)
    with pytest.raises(ValueError, match=r"^property_model applies to task gen and baseline only \(got task recon\)$"):
        from dpcdvae.eval.evaluate import evaluate  # from Python the message names the argument, not --property-model

        evaluate("recon", "perov_5", samples=str(samples), data_root=str(root), property_model="x.pt")
