"""No pickled code runs (issue 28, item 1): every checkpoint dpcdvae writes loads with
``torch.load(weights_only=True)``; a file that needs full unpickling is refused in one line (nothing in it runs) by
every loader and command; ``dpcdvae convert`` makes a weights-only copy of a file the user trusts."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dpcdvae.cli import main
from dpcdvae.utils.errors import CheckpointError

OV = {"train.batch_size": 16, "train.limit_val": 8}
REPO = Path(__file__).resolve().parents[2]


class _Payload:
    """Unpickling this calls ``open(marker, "w")``: the file appearing is the proof that code from the file ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def run(tmp_path_factory, demo_root):
    """A 1-epoch tiny training run (plateau schedule, no EMA): its folder."""
    from dpcdvae.train import train

    out = tmp_path_factory.mktemp("run")
    train("demo_synthetic_perovskites", "tiny", out=out, overrides=OV, root=str(demo_root), max_epochs=1,
          progress=False)
    return out


def _malicious(src: Path, dst: Path, marker: Path) -> Path:
    """A copy of the real checkpoint ``src`` with a payload in its hyper-parameters (loads fine otherwise)."""
    ck = torch.load(src, weights_only=True)
    ck["hyper_parameters"]["note"] = _Payload(marker)
    torch.save(ck, dst)
    return dst


@pytest.fixture
def bad(run, tmp_path):
    marker = tmp_path / "PWNED"
    return _malicious(run / "best.ckpt", tmp_path / "bad.ckpt", marker), marker


def _one_line_refusal(text: str, path) -> None:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    assert "Traceback" not in text
    assert str(path) in lines[0] and "refused" in lines[0] and "dpcdvae convert" in lines[0], lines[0]


# ------------------------------------------------------------------------------------------ what we write is safe
def test_the_payload_is_live(run, tmp_path):
    """Control: the crafted file does run its code under a full unpickling (so the refusals below mean something)."""
    marker = tmp_path / "control"
    _malicious(run / "best.ckpt", tmp_path / "control.ckpt", marker)
    assert not marker.exists()
    torch.load(tmp_path / "control.ckpt", weights_only=False)
    assert marker.exists()


def test_training_checkpoints_load_weights_only(run):
    from dpcdvae.models import load_model

    for name in ("best.ckpt", "last.ckpt"):
        ck = torch.load(run / name, map_location="cpu", weights_only=True)
        assert isinstance(ck["hyper_parameters"]["config"], dict)
        assert "optimizer_states" in ck and "callbacks" in ck  # what --resume needs is kept
        model = load_model(run / name)
        assert model.cfg.latent_dim == ck["hyper_parameters"]["config"]["model"]["latent_dim"]


def test_ema_and_cosine_checkpoints_load_weights_only(demo_root, tmp_path):
    from dpcdvae.models import load_model
    from dpcdvae.train import train

    res = train("demo_synthetic_perovskites", "tiny", out=tmp_path / "ema", root=str(demo_root), max_epochs=1,
                overrides={**OV, "train.ema_decay": 0.9, "train.lr_schedule": "cosine"}, progress=False)
    ck = torch.load(res["last"], weights_only=True)
    assert any(k.startswith("ema.") for k in ck["state_dict"])
    load_model(res["last"])


def test_resume_loads_weights_only(run, demo_root, tmp_path):
    from dpcdvae.train import train

    out = tmp_path / "resumed"
    shutil.copytree(run, out)
    res = train("demo_synthetic_perovskites", "tiny", out=out, overrides=OV, root=str(demo_root), max_epochs=2,
                resume=True, progress=False)
    assert res["epochs"] == 2
    torch.load(out / "last.ckpt", weights_only=True)


def test_shipped_weights_load():
    import dpcdvae
    from dpcdvae.models.pretrained import list_pretrained

    cards = list_pretrained()
    assert cards, "no shipped weights found"
    for card in cards:
        blob = torch.load(card["file"], map_location="cpu", weights_only=True)
        assert blob["format"] == 1
        model = dpcdvae.load_pretrained(card["name"])
        assert model.card["name"] == card["name"]


# ------------------------------------------------------------------------------------------ a malicious file is refused
def test_load_model_refuses_without_running(bad):
    from dpcdvae.models import load_model

    path, marker = bad
    with pytest.raises(CheckpointError) as info:
        load_model(path)
    assert not marker.exists()
    _one_line_refusal(str(info.value), path)
    assert "io.open" in str(info.value)  # says what the file refers to


@pytest.mark.parametrize("argv", [
    ["sample", "--n", "1"],
    ["reconstruct"],
    ["csp", "--composition", "SrTiO3", "--n", "1"],
    ["optimize", "--n", "1", "--no-eval"],
    ["demo"],
])
def test_every_command_refuses(bad, tmp_path, capsys, argv):
    path, marker = bad
    rc = main([*argv, "--checkpoint", str(path), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2
    assert not marker.exists()
    assert err.startswith("dpcdvae: error:")
    _one_line_refusal(err, path)


def test_cli_process_refuses(bad, tmp_path):
    """The real command in a fresh process: rc 2, one line on stderr, no marker."""
    path, marker = bad
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    p = subprocess.run([sys.executable, "-m", "dpcdvae.cli", "sample", "--checkpoint", str(path), "--n", "1",
                        "--out", str(tmp_path / "o")], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 2, p.stderr
    assert not marker.exists()
    assert p.stderr.startswith("dpcdvae: error:")
    _one_line_refusal(p.stderr, path)
    assert not (tmp_path / "o").exists()


def test_resume_refuses_before_any_work(run, demo_root, tmp_path, monkeypatch):
    from dpcdvae import train as train_mod

    out = tmp_path / "r"
    shutil.copytree(run, out)
    marker = tmp_path / "PWNED"
    _malicious(run / "last.ckpt", out / "last.ckpt", marker)

    def no_data(*a, **k):
        raise AssertionError("data were loaded before the checkpoint was checked")

    monkeypatch.setattr(train_mod.CrystalDataModule, "setup", no_data)
    with pytest.raises(CheckpointError) as info:
        train_mod.train("demo_synthetic_perovskites", "tiny", out=out, overrides=OV, root=str(demo_root),
                        max_epochs=2, resume=True, progress=False)
    assert not marker.exists()
    _one_line_refusal(str(info.value), out / "last.ckpt")


def test_pretrained_file_refused(tmp_path):
    from dpcdvae.models.pretrained import WEIGHTS_DIR, load_pretrained

    marker = tmp_path / "PWNED"
    d = tmp_path / "weights"
    d.mkdir()
    blob = torch.load(WEIGHTS_DIR / "perov_5.pt", weights_only=True)
    blob["extra"] = _Payload(marker)
    torch.save(blob, d / "evil.pt")
    shutil.copy(WEIGHTS_DIR / "perov_5.json", d / "evil.json")
    with pytest.raises(CheckpointError) as info:
        load_pretrained("evil", weights_dir=d)
    assert not marker.exists()
    _one_line_refusal(str(info.value), d / "evil.pt")


def test_property_head_and_notebook_summary_refuse(bad, tmp_path):
    from dpcdvae.notebooks import checkpoint_summary
    from dpcdvae.workflows.optimize import load_head

    path, marker = bad
    for fn in (load_head, checkpoint_summary):
        with pytest.raises(CheckpointError) as info:
            fn(path)
        assert not marker.exists()
        _one_line_refusal(str(info.value), path)


def test_notebook_summary_of_a_good_checkpoint(run):
    from dpcdvae.notebooks import checkpoint_summary

    df = checkpoint_summary(run / "best.ckpt")
    assert df.iloc[0]["config"] == "tiny"


# ------------------------------------------------------------------------------------------ convert
def test_convert_makes_a_weights_only_copy(bad, tmp_path, capsys):
    from dpcdvae.models import load_model

    path, marker = bad
    out = tmp_path / "safe.ckpt"
    rc = main(["convert", str(path), str(out)])
    cap = capsys.readouterr()
    assert rc == 0
    assert marker.exists()  # the user asked for a full read of a file they trust: its code ran, once, here
    res = json.loads(cap.out)
    assert res["was_weights_only"] is False and res["kind"] == "training checkpoint"
    assert any(d.startswith("hyper_parameters.note") for d in res["dropped"])
    assert "runs code stored in it" in cap.err
    ck = torch.load(out, weights_only=True)
    assert "note" not in ck["hyper_parameters"] and "optimizer_states" in ck
    load_model(out)
    # an existing OUT is never overwritten
    rc = main(["convert", str(path), str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "exists already" in err and len(err.strip().splitlines()) == 1


def test_convert_a_foreign_checkpoint_with_a_config_object(run, tmp_path):
    """A checkpoint that stores the config as a dataclass (not plain data) is refused; converted, it loads."""
    from dpcdvae.config import Config
    from dpcdvae.models import load_model
    from dpcdvae.models.checkpoint import convert_checkpoint

    ck = torch.load(run / "best.ckpt", weights_only=True)
    ck["hyper_parameters"]["config"] = Config.from_dict(ck["hyper_parameters"]["config"])
    ck["hyper_parameters"]["run_dir"] = Path(run)
    torch.save(ck, tmp_path / "foreign.ckpt")
    with pytest.raises(CheckpointError, match="refused"):
        load_model(tmp_path / "foreign.ckpt")
    res = convert_checkpoint(tmp_path / "foreign.ckpt", tmp_path / "plain.ckpt")
    assert res["dropped"] == []
    ck2 = torch.load(tmp_path / "plain.ckpt", weights_only=True)
    assert ck2["hyper_parameters"]["run_dir"] == str(run)
    assert load_model(tmp_path / "plain.ckpt").cfg.latent_dim == ck["hyper_parameters"]["config"].model.latent_dim


def test_convert_refuses_what_is_not_a_dpcdvae_checkpoint(tmp_path, capsys):
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    rc = main(["convert", str(tmp_path / "other.pt"), str(tmp_path / "o.ckpt")])
    err = capsys.readouterr().err
    assert rc == 2 and "not a dpcdvae checkpoint" in err
    assert not (tmp_path / "o.ckpt").exists()
