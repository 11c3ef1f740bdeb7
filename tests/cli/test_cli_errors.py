"""User mistakes on the command line end in one line naming the file or argument and exit status 2 (no traceback);
``--debug`` shows the traceback."""
from __future__ import annotations

import pytest

from dpcdvae.cli import main

OV = {"train.batch_size": 16, "train.limit_val": 8}


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, demo_root):
    from dpcdvae.train import train

    out = tmp_path_factory.mktemp("run")
    return train("demo_synthetic_perovskites", "tiny", out=out, overrides=OV, root=str(demo_root), max_epochs=1,
                 progress=False)["best"]


def _run(argv, capsys):
    rc = main(argv)
    err = capsys.readouterr().err
    return rc, err


@pytest.mark.parametrize("extra, needle", [
    (["--n", "-3"], "--n -3"),
    (["--n", "0"], "--n 0"),
    (["--sampler", "eq7", "--steps", "10"], "--steps 10"),
    (["--sampler", "eq6", "--steps", "10"], "--steps 10"),
    (["--sampler", "strided_eq7", "--steps", "0"], "--steps 0"),
    (["--sampler", "strided_eq7", "--steps", "5000"], "at most T"),
    (["--sampler", "langevin"], "--sampler langevin"),
])
def test_bad_sample_arguments(ckpt, tmp_path, capsys, extra, needle):
    rc, err = _run(["sample", "--checkpoint", ckpt, "--out", str(tmp_path / "o"), *extra], capsys)
    assert rc == 2
    assert err.startswith("dpcdvae: error:") and needle in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists(), "nothing is written for a refused command"


def test_missing_and_truncated_checkpoint(tmp_path, capsys, ckpt):
    rc, err = _run(["sample", "--checkpoint", str(tmp_path / "nope.ckpt"), "--out", str(tmp_path / "o")], capsys)
    assert rc == 2 and "nope.ckpt does not exist" in err
    cut = tmp_path / "cut.ckpt"
    data = open(ckpt, "rb").read()
    cut.write_bytes(data[: len(data) // 3])
    rc, err = _run(["sample", "--checkpoint", str(cut), "--out", str(tmp_path / "o")], capsys)
    assert rc == 2 and "cut.ckpt cannot be read" in err and "Traceback" not in err
    rc, err = _run(["sample", "--checkpoint", "pretrained:nope", "--out", str(tmp_path / "o")], capsys)
    assert rc == 2 and "no pretrained model 'nope'" in err


def test_debug_shows_the_traceback(tmp_path):
    from dpcdvae.models.pretrained import CheckpointError

    with pytest.raises(CheckpointError):
        main(["--debug", "sample", "--checkpoint", str(tmp_path / "nope.ckpt"), "--out", str(tmp_path / "o")])


def test_cdvae_checkpoint_refuses_ddpm_samplers(tmp_path, demo_root, capsys):
    from dpcdvae.train import train

    res = train("demo_synthetic_perovskites", "tiny", out=tmp_path / "cd", overrides={**OV, "model.model": "cdvae"},
                root=str(demo_root), max_epochs=1, progress=False)
    rc, err = _run(["sample", "--checkpoint", res["best"], "--sampler", "eq6", "--out", str(tmp_path / "o")], capsys)
    assert rc == 2 and "annealed Langevin only" in err
    rc, _ = _run(["sample", "--checkpoint", res["best"], "--n", "1", "--steps", "1", "--out", str(tmp_path / "ok")],
                 capsys)
    assert rc == 0  # the default sampler of a CDVAE checkpoint is langevin


@pytest.mark.parametrize("extra, line", [
    (["--limit", "0"], "--limit 0: must be >= 1"),
    (["--batch-size", "0"], "--batch-size 0: must be >= 1"),
    (["--raw-weights"], "--raw-weights: pretrained:carbon_24 is a shipped model, which holds one set of weights (its "
                        "card says which: `dpcdvae pretrained list`)"),
])
def test_workflow_argument_errors_print_the_flag(tmp_path, capsys, extra, line):
    """reconstruct_split raises ArgumentError naming its Python argument (limit=0, batch_size=0, ema); the command
    line prints the flag, the same line as before the workflows named arguments."""
    rc, err = _run(["reconstruct", "--checkpoint", "pretrained:carbon_24", *extra, "--out", str(tmp_path / "o")],
                   capsys)
    assert rc == 2 and err == f"dpcdvae: error: {line}\n"
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("extra, line", [
    (["--task", "gen", "--samples", "S", "--breakdown"], "--breakdown applies to --task recon only (got --task gen)"),
    (["--task", "recon", "--samples", "S", "--property-model", "x.pt"],
     "--property-model applies to --task gen and baseline only (got --task recon)"),
    (["--task", "gen", "--samples", "S", "--n-generated", "10"],
     "--n-generated applies to --task baseline only (got --task gen)"),
    (["--task", "gen"], "--samples is required for --task gen"),
])
def test_evaluate_argument_errors_print_the_flag(tmp_path, capsys, extra, line):
    """dpcdvae.eval.evaluate raises ArgumentError naming its Python arguments (breakdown, task, property_model,
    n_generated, samples); the command line prints the flags, the same line as before evaluate named arguments."""
    (tmp_path / "S").mkdir()
    extra = [str(tmp_path / "S") if a == "S" else a for a in extra]
    rc, err = _run(["evaluate", "--dataset", "perov_5", *extra, "--quiet", "--out", str(tmp_path / "o")], capsys)
    assert rc == 2 and err == f"dpcdvae: error: {line}\n"
    assert not (tmp_path / "o").exists()


def test_train_resume_without_checkpoint_prints_the_flag(tmp_path, demo_root, capsys):
    """dpcdvae.train raises a CheckpointArgumentError naming ``resume`` (from Python: ``resume: no last.ckpt ...
    (run without resume ...)``); the command line prints ``--resume``."""
    out = tmp_path / "none"
    rc, err = _run(["train", "--dataset", "demo", "--data-root", str(demo_root), "--config", "tiny", "--resume",
                    "--max-epochs", "1", "--out", str(out)], capsys)
    assert rc == 2 and err.splitlines()[-1] == (f"dpcdvae: error: --resume: no last.ckpt or best.ckpt in {out} to "
                                                f"resume from (run without --resume to start a new training there)")
    assert not (out / "last.ckpt").exists()
