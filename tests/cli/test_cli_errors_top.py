"""One error path at the top of ``dpcdvae`` (issue 28, item 2): ``--set`` values checked against the config schema
before any work; Ctrl-C, ``OSError`` and a missing optional package each end in one line (rc 130, 2, 2), a
traceback only with ``--debug``; an interrupted sampling run leaves a samples.json that says so."""
from __future__ import annotations

import errno
import json
import os
import re
import sys

import pytest

from dpcdvae.cli import main
from dpcdvae.config import PRESETS, RULES, Config, load_config, validate
from dpcdvae.utils.errors import ConfigError

OV = {"train.batch_size": 16, "train.limit_val": 8}


def _one_line(err: str) -> str:
    """The one message line of stderr (progress-bar lines, which a sampling command draws there, aside)."""
    lines = [ln for ln in err.strip().splitlines() if not re.search(r"\|.*\d+/\d+ \[", ln)]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


# ------------------------------------------------------------------------------------------ --set against the schema
@pytest.mark.parametrize("item, needles", [
    ("model.latent_dim=abc", ["model.latent_dim=abc", "integer"]),
    ("train.lr=-1", ["train.lr=-1", "> 0"]),
    ("train.batch_size=0", ["train.batch_size=0", ">= 1"]),
    ("model.type_loss=foo", ["model.type_loss=foo", "per_atom, code, ce"]),
    ("model.coord_loss=sum", ["model.coord_loss=sum", "mean, code"]),
    ("train.ema_decay=1.5", ["train.ema_decay=1.5", "(0, 1)"]),
    ("model.recenter=maybe", ["model.recenter=maybe", "true or false"]),
    ("train.lr_schedule=step", ["train.lr_schedule=step", "plateau, cosine"]),
    ("model.encoder=3", ["model.encoder", "section"]),
    ("model.eq7_consistency_prob=0.5", ["model.eq7_consistency_t", "model.timesteps"]),  # tiny: T = 100
    ("model.nope=1", ["model.nope"]),
    ("train.lr=[1,", ["--set train.lr=[1,", "YAML"]),
    ("novalue", ["key=value"]),
])
def test_bad_set_values_stop_before_any_work(tmp_path, capsys, monkeypatch, item, needles):
    import dpcdvae.train

    def no_work(*a, **k):
        raise AssertionError("training started with a bad --set value")

    monkeypatch.setattr(dpcdvae.train, "train", no_work)
    out = tmp_path / "o"
    rc = main(["train", "--dataset", "demo", "--config", "tiny", "--out", str(out), "--set", item])
    line = _one_line(capsys.readouterr().err)
    assert rc == 2 and line.startswith("dpcdvae: error:")
    for n in needles:
        assert n in line, line
    assert not out.exists()


@pytest.mark.parametrize("flag, value, needle", [("--max-epochs", "0", "--max-epochs 0"),
                                                 ("--max-minutes", "-5", "--max-minutes -5"),
                                                 ("--seed", "-1", "--seed -1")])
def test_bad_train_numbers(tmp_path, capsys, monkeypatch, flag, value, needle):
    import dpcdvae.train

    monkeypatch.setattr(dpcdvae.train, "train", lambda *a, **k: pytest.fail("trained"))
    rc = main(["train", "--dataset", "demo", "--config", "tiny", "--out", str(tmp_path / "o"), flag, value])
    line = _one_line(capsys.readouterr().err)
    assert rc == 2 and needle in line


def test_good_set_values_are_converted(tmp_path, monkeypatch):
    import dpcdvae.train

    seen = {}
    monkeypatch.setattr(dpcdvae.train, "train", lambda **k: seen.update(k))
    rc = main(["train", "--dataset", "demo", "--config", "tiny", "--out", str(tmp_path / "o"),
               "--set", "train.lr=1e-3", "train.ema_decay=none", "model.latent_dim=16"])
    assert rc == 0 and seen["overrides"]["train.lr"] == "1e-3"
    cfg = load_config("tiny", overrides=seen["overrides"])
    assert cfg.train.lr == pytest.approx(1e-3) and isinstance(cfg.train.lr, float)  # YAML reads 1e-3 as text
    assert cfg.train.ema_decay is None and cfg.model.latent_dim == 16


def test_every_preset_and_dataset_is_valid():
    for name in PRESETS:
        for ds in (None, "perov_5", "carbon_24", "mp_20"):
            validate(load_config(name, dataset=ds))


def test_rules_name_real_fields():
    keys = set()

    def walk(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict):
                walk(v, f"{prefix}{k}.")
            else:
                keys.add(f"{prefix}{k}")

    walk(Config().to_dict())
    assert set(RULES) <= keys, set(RULES) - keys


def test_validate_errors_are_value_errors_too():
    with pytest.raises(ValueError, match="train.batch_size=0"):
        load_config("tiny", overrides={"train.batch_size": 0})
    with pytest.raises(ConfigError):
        load_config("tiny", overrides={"model.latent_dim": True})  # a bool is not an integer here
    assert load_config("tiny", overrides={"model.latent_dim": 32.0}).model.latent_dim == 32


def test_a_config_file_with_an_unknown_key(tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text("model:\n  latent_dimm: 8\n")
    with pytest.raises(ConfigError, match="latent_dimm"):
        load_config(str(f))


# ------------------------------------------------------------------------------------------ Ctrl-C, OSError, imports
def _raise_in(monkeypatch, module, name, exc):
    def boom(a):
        raise exc

    monkeypatch.setattr(module, name, boom)


def test_ctrl_c_is_one_line_and_130(monkeypatch, capsys):
    from dpcdvae.cli import models

    _raise_in(monkeypatch, models, "_cmd_sample", KeyboardInterrupt())
    rc = main(["sample", "--checkpoint", "pretrained:perov_5", "--out", "x"])
    line = _one_line(capsys.readouterr().err)
    assert rc == 130 and "interrupted" in line and "sample" in line
    with pytest.raises(KeyboardInterrupt):
        main(["--debug", "sample", "--checkpoint", "pretrained:perov_5", "--out", "x"])


@pytest.mark.parametrize("exc, needles", [
    (OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/data/run/cif/gen-00001.cif"),
     ["No space left on device", "/data/run/cif/gen-00001.cif"]),
    (PermissionError(errno.EACCES, os.strerror(errno.EACCES), "/read-only/out"),
     ["Permission denied", "/read-only/out"]),
    (OSError(errno.EXDEV, os.strerror(errno.EXDEV), "/a/x.tmp", None, "/b/x"), ["/a/x.tmp -> /b/x"]),
])
def test_oserror_is_one_line_naming_the_path(monkeypatch, capsys, exc, needles):
    from dpcdvae.cli import models

    _raise_in(monkeypatch, models, "_cmd_reconstruct", exc)
    rc = main(["reconstruct", "--checkpoint", "pretrained:perov_5", "--out", "x"])
    line = _one_line(capsys.readouterr().err)
    assert rc == 2 and line.startswith("dpcdvae: error:")
    for n in needles:
        assert n in line
    with pytest.raises(OSError):
        main(["--debug", "reconstruct", "--checkpoint", "pretrained:perov_5", "--out", "x"])


def test_missing_optional_package_names_the_extra(monkeypatch, capsys):
    from dpcdvae.cli import relax

    _raise_in(monkeypatch, relax, "_cmd_relax", ModuleNotFoundError("No module named 'chgnet'", name="chgnet"))
    rc = main(["relax", "somewhere", "--out", "x"])
    line = _one_line(capsys.readouterr().err)
    assert rc == 2 and "chgnet" in line and "pip install 'dpcdvae[relax]'" in line
    with pytest.raises(ModuleNotFoundError):
        main(["--debug", "relax", "somewhere", "--out", "x"])


def test_relax_without_chgnet_for_real(monkeypatch, tmp_path, capsys, srtio3):
    """The real path: chgnet not importable (hidden from ``sys.modules``), ``dpcdvae relax`` on one CIF."""
    import dpcdvae.eval.relax.chgnet as relax_mod  # load_chgnet reads _MODEL_CACHE there

    for name in [m for m in sys.modules if m == "chgnet" or m.startswith("chgnet.")] + ["chgnet"]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setattr(relax_mod, "_MODEL_CACHE", {})
    (tmp_path / "in").mkdir()
    srtio3.to(filename=str(tmp_path / "in" / "a.cif"))
    rc = main(["relax", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--no-progress"])
    line = _one_line(capsys.readouterr().err)
    assert rc == 2 and "pip install 'dpcdvae[relax]'" in line


def test_other_errors_keep_their_traceback(monkeypatch):
    """A bug (not the user's) is not hidden: it propagates as before."""
    from dpcdvae.cli import models

    _raise_in(monkeypatch, models, "_cmd_sample", ZeroDivisionError("bug"))
    with pytest.raises(ZeroDivisionError):
        main(["sample", "--checkpoint", "pretrained:perov_5", "--out", "x"])


# ------------------------------------------------------------------------------------------ interrupted sampling
def test_interrupted_sample_marks_samples_json(monkeypatch, tmp_path, capsys):
    """Ctrl-C in the second batch of ``dpcdvae sample``: rc 130, one line; samples.json lists the first batch and
    says ``"interrupted": true``."""
    from dpcdvae.models.dpcdvae import DPCDVAE

    real = DPCDVAE.generate
    calls = {"n": 0}

    def generate(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(self, *a, **k)

    monkeypatch.setattr(DPCDVAE, "generate", generate)
    out = tmp_path / "gen"
    rc = main(["sample", "--checkpoint", "pretrained:perov_5", "--n", "4", "--batch-size", "2", "--sampler",
               "strided_eq7", "--steps", "5", "--out", str(out)])
    line = _one_line(capsys.readouterr().err)
    assert rc == 130 and "interrupted" in line
    (js,) = out.rglob("samples.json")
    assert f"--resume --out {js.parent}" in line  # the one line says how to continue
    data = json.loads(js.read_text())
    assert data["interrupted"] is True and data["n"] == 2 and len(data["crystals"]) == 2
