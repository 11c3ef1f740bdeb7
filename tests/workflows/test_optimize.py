"""Property-guided generation (dpcdvae.workflows.optimize, dpcdvae.eval.optimization): the success rates, the latent
optimiser, the property head on the frozen encoder, the whole task on a tiny model and the command's errors."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from dpcdvae.eval.optimization import CDVAE_SR_THRESHOLDS, split_thresholds, success_rates
from dpcdvae.workflows.optimize import (LatentPropertyHead, fit_property_head, load_head, optimize_latents, run_optimization,
                              save_head, shipped_head_path)

DEMO = "demo_synthetic_perovskites"


def test_success_rates_by_hand():
    # 3 saved steps x 4 starts; NaN = invalid crystal
    props = np.array([[0.9, np.nan, 0.2, np.nan],
                      [0.5, 0.7, np.nan, np.nan],
                      [0.6, 0.3, 0.8, np.nan]])
    sr = success_rates(props, (0.25, 0.5, 0.65))
    assert sr["SR5"] == 25.0      # start 2 (0.2)
    assert sr["SR10"] == 75.0     # starts 0 (0.5), 1 (0.3), 2
    assert sr["SR15"] == 75.0     # start 3 never valid: fails
    np.testing.assert_allclose(sr["best"][:3], [0.5, 0.3, 0.2])
    assert math.isnan(sr["best"][3])
    up = success_rates(props, (0.85, 0.75, 0.6), direction="max")
    assert up["SR5"] == 25.0 and up["SR10"] == 50.0 and up["SR15"] == 75.0
    with pytest.raises(ValueError):
        success_rates(np.zeros(3), (0, 0, 0))


def test_split_thresholds_and_cdvae_constants():
    v = np.arange(1, 101, dtype=float)
    assert split_thresholds(v) == pytest.approx((np.percentile(v, 5), np.percentile(v, 10), np.percentile(v, 15)))
    assert split_thresholds(v, "max")[0] == pytest.approx(np.percentile(v, 95))
    for t in CDVAE_SR_THRESHOLDS.values():
        assert t[0] < t[1] < t[2]


def test_optimiser_moves_the_head_and_saves_on_cdvae_schedule():
    torch.manual_seed(0)
    head = LatentPropertyHead(8, hidden=16, mean=1.0, std=2.0)
    z0 = torch.randn(5, 8)
    steps, zs = optimize_latents(head, z0, steps=200, lr=1e-2, direction="min", num_saved=5)
    assert steps == [1, 51, 101, 151, 200] and zs.shape == (5, 5, 8)
    with torch.no_grad():
        before, after = head.predict(z0).mean(), head.predict(zs[-1]).mean()
    assert after < before - 0.1
    _, up = optimize_latents(head, z0, steps=200, lr=1e-2, direction="max", num_saved=2)
    with torch.no_grad():
        assert head.predict(up[-1]).mean() > before + 0.1
    assert torch.equal(z0, z0.clone())  # the start is not modified in place
    # CDVAE's schedule: 5000 steps and 10 saves decode 11 latents
    s, _ = optimize_latents(head, z0[:1], steps=5000, lr=1e-3, num_saved=10)
    assert len(s) == 11 and s[0] == 1 and s[-1] == 5000


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, demo_root):
    from dpcdvae.models import load_model
    from dpcdvae.train import train

    out = tmp_path_factory.mktemp("tiny_opt")
    res = train(DEMO, "tiny", out=out, root=str(demo_root), max_epochs=2, progress=False,
                overrides={"train.batch_size": 16, "train.limit_val": 8})
    return load_model(res["best"])


def test_head_fit_save_load(tiny_model, demo_root, tmp_path):
    head, rep = fit_property_head(tiny_model, DEMO, root=str(demo_root), epochs=40, patience=40, progress=False)
    assert rep["n_train"] == 48 and rep["n_val"] == 8
    assert math.isfinite(rep["val_mae"]) and rep["val_mae"] >= 0 and rep["prop"] == "heat_ref"
    z = torch.randn(6, tiny_model.cfg.latent_dim)
    path = save_head(head, tmp_path / "h.pt")
    blob = torch.load(path, weights_only=True)  # plain tensors + JSON text
    assert blob["format"] == 1
    again = load_head(path)
    with torch.no_grad():
        assert torch.allclose(again.predict(z), head.predict(z))
    assert again.meta["dataset"] == DEMO


def test_whole_task_on_a_tiny_model(tiny_model, demo_root, tmp_path):
    head = LatentPropertyHead(tiny_model.cfg.latent_dim, hidden=16)
    res = run_optimization(tiny_model, head, DEMO, tmp_path / "opt", n=4, start="data", steps=30, lr=1e-2,
                           num_saved=3, sampler="strided_eq7", sampler_steps=2, root=str(demo_root),
                           evaluate=False, progress=False)
    assert res["num_saved"] == 3 and res["saved_steps"] == [1, 16, 30]
    assert res["head_pred_end_mean"] < res["head_pred_start_mean"]
    assert 0.0 <= res["validity_all"] <= 100.0
    written = json.loads((tmp_path / "opt" / "optimization.json").read_text())
    assert written["n"] == 4 and written["sampler"] == "strided_eq7"
    rows = (tmp_path / "opt" / "per_start.csv").read_text().strip().splitlines()
    assert len(rows) == 5  # header + one row per start
    n_best = len(list((tmp_path / "opt" / "best" / "cif").glob("*.cif")))
    assert n_best == res["n_starts_with_valid"]


def test_shipped_head_lookup():
    assert shipped_head_path("runs/x/best.ckpt") is None
    assert shipped_head_path("pretrained:no_such_model") is None
    for name, prop in (("perov_5", "heat_ref"), ("carbon_24", "energy_per_atom")):
        path = shipped_head_path(f"pretrained:{name}")
        assert path is not None and path.is_file()
        head = load_head(path)  # plain tensors, torch.load(weights_only=True)
        assert head.meta["prop"] == prop and head.meta["val_mae"] < head.meta["val_mae_constant"]
        with torch.no_grad():
            assert torch.isfinite(head.predict(torch.zeros(2, head.latent_dim))).all()


def test_shipped_heads_were_fitted_on_the_shipped_models():
    """A head is tied to its model's latent space: re-exporting a model without refitting its head (`dpcdvae
    pretrained fit-heads NAME`) would optimise a meaningless function of z."""
    import hashlib
    import json

    from dpcdvae.models import list_pretrained
    files = {c["name"]: c["file"] for c in list_pretrained()}
    for name in ("perov_5", "carbon_24"):
        card = json.loads(shipped_head_path(f"pretrained:{name}").with_suffix(".json").read_text())
        sha = hashlib.sha256(open(files[name], "rb").read()).hexdigest()
        assert card.get("model_sha256") == sha, f"heads/{name}: fitted on other weights than pretrained:{name}"


def test_command_errors(tmp_path, capsys):
    from dpcdvae.cli import main

    assert main(["optimize", "--checkpoint", "pretrained:perov_5", "--n", "0", "--out", str(tmp_path)]) == 2
    assert "--n 0" in capsys.readouterr().err
    assert main(["optimize", "--checkpoint", "pretrained:carbon_24_cdvae", "--out", str(tmp_path)]) == 2
    assert "needs a DP-CDVAE model" in capsys.readouterr().err
    assert main(["optimize", "--checkpoint", "pretrained:perov_5", "--head", str(tmp_path / "nope.pt"),
                 "--out", str(tmp_path)]) == 2
    assert "no such file" in capsys.readouterr().err
