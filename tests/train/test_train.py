"""Training loop: Lightning fit, atomic best/last checkpoints, resume, CLI round trip, identical samples after a
checkpoint round trip, DDP with 2 CPU processes (gloo). Uses the self-built SYNTHETIC demo data."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from dpcdvae.data import make_demo_dataset
from dpcdvae.models import load_model
from dpcdvae.train import train

OV = {"train.batch_size": 16, "train.limit_val": 8}


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    make_demo_dataset(root, n=(32, 8, 8))
    return str(root)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, demo_root):
    out = tmp_path_factory.mktemp("run")
    res = train("demo_synthetic_perovskites", "tiny", out=out, overrides=OV, root=demo_root, max_epochs=2,
                progress=False)
    return res


def test_train_writes_checkpoints_and_curves(trained):
    assert os.path.isfile(trained["best"]) and os.path.isfile(trained["last"])
    rows = [json.loads(l) for l in open(os.path.join(trained["out"], "metrics.jsonl"))]
    assert [r["epoch"] for r in rows] == [0, 1]
    assert all("val_loss" in r and "train_loss" in r for r in rows)
    # no temporary checkpoint files left behind (atomic writes)
    assert not [f for f in os.listdir(trained["out"]) if f.endswith(".tmp")]


def test_checkpoint_round_trip_identical_samples(trained, tmp_path):
    m1 = load_model(trained["best"])
    m2 = load_model(trained["best"])
    a = m1.generate(3, sampler="strided", steps=10, seed=7, num_atoms=[5, 5, 5])
    b = m2.generate(3, sampler="strided", steps=10, seed=7, num_atoms=[5, 5, 5])
    assert torch.equal(a.frac_coords, b.frac_coords) and torch.equal(a.atom_types, b.atom_types)
    assert torch.equal(a.lengths, b.lengths)
    # a different seed gives different coordinates
    c = m1.generate(3, sampler="strided", steps=10, seed=8, num_atoms=[5, 5, 5])
    assert not torch.equal(a.frac_coords, c.frac_coords)
    # the lattice scaler came from the checkpoint, not refitted
    assert m1.lattice_scaler.fitted


def test_resume_continues_epochs(trained, demo_root):
    res = train("demo_synthetic_perovskites", "tiny", out=trained["out"], overrides=OV, root=demo_root,
                max_epochs=3, resume=True, progress=False)
    rows = [json.loads(l) for l in open(os.path.join(trained["out"], "metrics.jsonl"))]
    assert rows[-1]["epoch"] == 2 and res["epochs"] == 3


def test_resume_gets_a_fresh_wall_clock_budget(tmp_path, demo_root):
    """--max-minutes is the budget of each run: a resumed run trains again (Lightning's max_time Timer restored its
    elapsed time from the checkpoint and stopped a resumed run at once)."""
    out = tmp_path / "budget"
    kw = dict(overrides=OV, root=demo_root, max_epochs=10_000, max_minutes=0.05, progress=False)
    r1 = train("demo_synthetic_perovskites", "tiny", out=out, **kw)
    assert 1 <= r1["epochs"] < 10_000 and r1["wall_s"] >= 3.0  # stopped by the 3-s budget, not by max_epochs
    r2 = train("demo_synthetic_perovskites", "tiny", out=out, resume=True, **kw)
    assert r2["epochs"] > r1["epochs"] and r2["wall_s"] >= 3.0


def test_resume_without_checkpoint_fails_clearly(tmp_path, demo_root):
    from dpcdvae.utils.errors import CheckpointError

    with pytest.raises(CheckpointError, match="no last.ckpt or best.ckpt"):
        train("demo_synthetic_perovskites", "tiny", out=tmp_path / "none", overrides=OV, root=demo_root,
              max_epochs=1, resume=True, progress=False)


def test_cli_sample_never_overwrites(trained, tmp_path):
    out = tmp_path / "samples"
    cmd = [sys.executable, "-m", "dpcdvae.cli", "sample", "--checkpoint", trained["best"], "--n", "2",
           "--sampler", "strided", "--steps", "5", "--out", str(out)]
    for _ in range(2):
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-2000:]
    first = out / "samples.json"
    assert first.is_file()
    runs = [p for p in out.iterdir() if p.is_dir() and p.name.startswith("sample-")]
    assert len(runs) == 1 and (runs[0] / "samples.json").is_file()
    data = json.loads(first.read_text())
    assert data["n"] == 2 and len(list((out / "cif").glob("*.cif"))) == data["n_decoded"] >= data["n_valid"]


@pytest.mark.slow
def test_ddp_two_cpu_processes(tmp_path, demo_root):
    """Lightning DDP with 2 CPU processes (gloo backend) trains one epoch and writes checkpoints."""
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "dpcdvae.cli", "train", "--dataset", "demo", "--config", "tiny",
           "--data-root", demo_root, "--max-epochs", "1", "--out", str(out), "--accelerator", "cpu",
           "--devices", "2", "--strategy", "ddp", "--no-progress", "--set", "train.batch_size=8",
           "train.limit_val=8"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-3000:])
    assert (out / "last.ckpt").is_file()
    assert "GLOBAL_RANK: 1" in r.stderr + r.stdout or "world_size=2" in (r.stderr + r.stdout).replace(" ", "") \
        or "distributed_backend=gloo" in r.stderr + r.stdout


def test_demo_main_job_small(tmp_path, monkeypatch):
    """The README's main job, shrunk: synthetic data, tiny config, a few seconds of training."""
    from dpcdvae.workflows.demo import run_demo

    monkeypatch.setenv("DPCDVAE_CACHE", str(tmp_path / "cache"))
    s = run_demo(out=str(tmp_path / "demo"), train_minutes=0.1, dataset="demo", config="tiny", n_recon=4, n_gen=3,
                 steps=5, limit_train=32)
    assert s["synthetic"] is True and s["dataset"] == "demo_synthetic_perovskites"
    assert os.path.isfile(s["picture"]) and os.path.getsize(s["picture"]) > 1000
    assert s["recon_n"] == 4 and 0.0 <= s["recon_match_rate"] <= 100.0
    assert s["generated_n"] == 3


@pytest.mark.parametrize("variant", ["dpcdvae", "na", "gine", "na_gine"])
def test_each_variant_trains_an_epoch(tmp_path, demo_root, variant):
    res = train("demo_synthetic_perovskites", "tiny", out=tmp_path / variant,
                overrides={**OV, "model.variant": variant}, root=demo_root, max_epochs=1, progress=False)
    assert res["epochs"] == 1 and res["best_val_loss"] is not None and res["best_val_loss"] == res["best_val_loss"]
    m = load_model(res["best"])
    assert m.cfg.variant == variant


def test_crystalnn_encoder_graph_trains(tmp_path, demo_root):
    """The paper configuration's encoder graph (CrystalNN, stored in the preprocessed dataset)."""
    res = train("demo_synthetic_perovskites", "tiny", out=tmp_path / "cnn",
                overrides={**OV, "model.encoder.graph": "crystalnn", "train.limit_train": 16}, root=demo_root,
                max_epochs=1, progress=False)
    assert res["epochs"] == 1
    m = load_model(res["best"])
    assert m.cfg.encoder.graph == "crystalnn"


def test_cosine_schedule_runs_and_decays(tmp_path, demo_root):
    """train.lr_schedule=cosine: warm-up then decay to lr * cosine_final_factor by the end of max_epochs."""
    out = tmp_path / "cos"
    ov = {**OV, "train.lr_schedule": "cosine", "train.warmup_frac": 0.25, "train.cosine_final_factor": 0.01}
    train("demo_synthetic_perovskites", "tiny", out=out, overrides=ov, root=demo_root, max_epochs=4, progress=False)
    lrs = [json.loads(l)["lr"] for l in open(out / "metrics.jsonl")]
    assert len(lrs) == 4
    from dpcdvae.config import load_config

    lr0 = load_config("tiny").train.lr
    assert max(lrs) <= lr0 * 1.0001
    assert lrs[-1] < 0.2 * lr0, lrs  # near the end of the cosine
    assert lrs[1] > lrs[-1], lrs


def test_validation_loss_is_deterministic(trained, demo_root):
    """The validation noise is drawn from a fixed seed: the same weights give the same val_loss twice (before, one
    random t per crystal made val_loss, and so ReduceLROnPlateau and best.ckpt, partly luck)."""
    from torch_geometric.loader import DataLoader

    from dpcdvae.data import load_split
    from dpcdvae.train import DPCDVAEModule

    ck = torch.load(trained["best"], map_location="cpu", weights_only=False)
    module = DPCDVAEModule(**ck["hyper_parameters"])
    module.load_state_dict(ck["state_dict"])
    module.eval()
    logged = []
    module.log = lambda name, value, **kw: logged.append((name, float(value)))
    batch = next(iter(DataLoader(load_split("demo_synthetic_perovskites", "val", root=demo_root, graph="none",
                                            progress=False), batch_size=8)))
    with torch.no_grad():
        module.validation_step(batch, 0)
        first = dict(logged)
        logged.clear()
        module.validation_step(batch, 0)
        second = dict(logged)
        logged.clear()
        module.validation_step(batch, 1)  # another batch index draws other noise
        third = dict(logged)
    assert first["val_loss"] == second["val_loss"]
    assert first["val_loss"] != third["val_loss"]


def _nan_loss_at(monkeypatch, bad_calls):
    """Make the model's training forward return a NaN loss on the given (0-based) training calls."""
    from dpcdvae.models.dpcdvae import DPCDVAE

    orig = DPCDVAE.forward
    calls = {"n": 0}

    def forward(self, batch, epoch=0, generator=None):
        out = orig(self, batch, epoch=epoch, generator=generator)
        if self.training:
            k = calls["n"]
            calls["n"] += 1
            if bad_calls is None or k in bad_calls:
                out = {**out, "loss": out["loss"] * float("nan")}
        return out

    monkeypatch.setattr(DPCDVAE, "forward", forward)


def test_a_nonfinite_step_is_skipped_and_counted(tmp_path, demo_root, monkeypatch):
    _nan_loss_at(monkeypatch, {1, 2})
    res = train("demo_synthetic_perovskites", "tiny", out=tmp_path / "r", overrides=OV, root=demo_root,
                max_epochs=2, progress=False)
    assert res["nonfinite_steps"] == 2
    m = load_model(res["last"], ema=False)
    assert all(torch.isfinite(p).all() for p in m.parameters())


def test_training_that_stays_nonfinite_stops_with_one_clear_line(tmp_path, demo_root, monkeypatch, capsys):
    import dpcdvae.train as train_mod
    from dpcdvae.cli import main
    from dpcdvae.utils.errors import TrainingDiverged

    _nan_loss_at(monkeypatch, None)  # every step
    monkeypatch.setattr(train_mod, "MAX_NONFINITE_STEPS", 2)
    with pytest.raises(TrainingDiverged, match="2 optimizer steps in a row with non-finite gradients"):
        train("demo_synthetic_perovskites", "tiny", out=tmp_path / "a", overrides=OV, root=demo_root,
              max_epochs=2, progress=False)
    rc = main(["train", "--dataset", "demo_synthetic_perovskites", "--config", "tiny", "--max-epochs", "2",
               "--data-root", demo_root, "--out", str(tmp_path / "b"), "--set", "train.batch_size=16",
               "train.limit_val=8"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and err[0].startswith("dpcdvae: error: training diverged")
    assert "Traceback" not in "\n".join(err)
