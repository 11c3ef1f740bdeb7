"""``dpcdvae csp-match`` (the CSP benchmark, dpcdvae.workflows.csp) and ``dpcdvae pretrained fit-heads`` (the shipped
property heads, dpcdvae.workflows.optimize.fit_shipped_head), which were scripts in benchmarks/ (kept there as
aliases): a user mistake is one line naming the flag, and a tiny real run on a model and data the test makes."""
from __future__ import annotations

import hashlib
import json
import runpy
import sys
from pathlib import Path

import pytest

from dpcdvae.cli import main
from dpcdvae.utils.errors import ArgumentError

DEMO = "demo_synthetic_perovskites"
DEMO_SIZES = (24, 8, 6)  # conftest's demo_root
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, demo_root):
    """A tiny model trained for one epoch on the demo data; its test split is made of training crystals here, so
    that every element of a test composition is one the model saw (CSP refuses the others)."""
    import pandas as pd

    from dpcdvae.train import train

    folder = demo_root / DEMO
    pd.read_csv(folder / "train.csv", index_col=0).head(DEMO_SIZES[2]).to_csv(folder / "test.csv")
    out = tmp_path_factory.mktemp("run")
    return train(DEMO, "tiny", out=out, root=str(demo_root), max_epochs=1, progress=False,
                 overrides={"train.batch_size": 16, "train.limit_val": 8})["best"]


def _one_error_line(rc, err) -> str:
    assert rc == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith("dpcdvae: error: ")
    return err.strip()[len("dpcdvae: error: "):]


@pytest.mark.parametrize("extra, line", [
    (["--samples", "0"], "--samples 0: the number of candidates per crystal must be >= 1"),
    (["--limit", "0"], "--limit 0: must be >= 1"),
    (["--batch-size", "0"], "--batch-size 0: must be >= 1"),
    (["--n-workers", "0"], "--n-workers 0: must be >= 1"),
    (["--raw-weights"], "--raw-weights: pretrained:perov_5 is a shipped model, which holds one set of weights"),
    (["--dataset", "perov_7"], "--dataset perov_7: unknown dataset 'perov_7'"),
])
def test_csp_match_argument_errors_are_one_line_naming_the_flag(capsys, extra, line):
    """Refused before the model is loaded."""
    rc = main(["csp-match", "--checkpoint", "pretrained:perov_5", *extra])
    assert _one_error_line(rc, capsys.readouterr().err).startswith(line)


def test_csp_match_model_errors_name_the_flag(ckpt, demo_root, capsys):
    from dpcdvae.cli import error_line
    from dpcdvae.config import load_config
    from dpcdvae.models import build_model
    from dpcdvae.workflows import csp_match

    cdvae = build_model(load_config("tiny", overrides={"model.model": "cdvae"})).eval()
    with pytest.raises(ArgumentError) as exc:
        csp_match(cdvae, dataset=DEMO, root=str(demo_root))
    assert str(exc.value) == "checkpoint=(a loaded model): CSP mode needs a DP-CDVAE model (this is cdvae)"
    assert error_line(exc.value) == "--checkpoint (a loaded model): CSP mode needs a DP-CDVAE model (this is cdvae)"
    rc = main(["csp-match", "--checkpoint", ckpt, "--dataset", DEMO, "--data-root", str(demo_root), "--sampler", "eq7",
               "--steps", "5"])
    assert _one_error_line(rc, capsys.readouterr().err).startswith("--steps 5: --sampler eq7 always runs all")


def test_csp_match_from_python_names_the_argument():
    from dpcdvae.workflows import csp_match

    for kwargs, arg, message in [({"samples": 0}, "samples", "samples=0: the number of candidates"),
                                 ({"n_workers": 0}, "n_workers", "n_workers=0: must be >= 1"),
                                 ({"forced_types": "x"}, "forced_types", "forced_types='x': expected assign or fixed"),
                                 ({"ema": False}, "ema", "ema: pretrained:perov_5 is a shipped model")]:
        with pytest.raises(ArgumentError) as exc:
            csp_match("pretrained:perov_5", **kwargs)
        assert exc.value.arg == arg and str(exc.value).startswith(message) and "--" not in str(exc.value)


def test_csp_match_tiny_run(ckpt, demo_root, capsys):
    argv = ["csp-match", "--checkpoint", ckpt, "--dataset", DEMO, "--data-root", str(demo_root), "--limit", "3",
            "--samples", "2", "--sampler", "strided_eq7", "--steps", "2", "--seed", "3"]
    assert main(argv) in (0, None)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and lines[0].startswith("sample 1/2: match rate this sample ")
    assert lines[1].startswith("sample 2/2: ") and ", best of 2 " in lines[1]
    res = json.loads(lines[-1])
    assert (res["checkpoint"], res["dataset"], res["n_targets"], res["samples"], res["sampler"], res["steps"],
            res["seed"], res["latent"], res["forced_types"]) == (ckpt, DEMO, 3, 2, "strided_eq7", 2, 3, "search",
                                                                  "assign")
    assert res["weights"] == "ema (when the run had EMA)" and res["validity_1"] <= 100.0
    assert 0.0 <= res["match_rate_1"] <= res["match_rate_best_2"] <= 100.0 and "rms_best_2" in res
    assert res["matcher"] == "StructureMatcher(stol=0.5, angle_tol=10, ltol=0.3)"
    assert "match_rate_chgnet_top1" not in res
    # the same crystals again (the seeds are fixed): the numbers repeat
    assert main(argv) in (0, None)
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {k: v for k, v in again.items() if k != "wall_s"} == {k: v for k, v in res.items() if k != "wall_s"}


def test_csp_match_ranked_by_a_calculator(ckpt, demo_root):
    """rank="chgnet" with a stand-in batch predictor: the lowest-energy candidate's match rate is reported."""
    from dpcdvae.models import load_model
    from dpcdvae.workflows import csp_match

    calls = []

    def predictor(atoms_list):
        calls.append(len(atoms_list))
        return [{"energy": float(a.get_volume())} for a in atoms_list]

    res = csp_match(load_model(ckpt), dataset=DEMO, root=str(demo_root), limit=2, samples=2, sampler="strided_eq7",
                    steps=2, rank="chgnet", calculator=predictor, progress=False)
    assert res["checkpoint"] == "(a loaded model)" and res["n_targets"] == 2
    assert 0.0 <= res["match_rate_chgnet_top1"] <= res["match_rate_best_2"]
    assert len(calls) <= 2 and res["chgnet_ranked"] <= 2  # one call per round that has a valid candidate
    assert (res["chgnet_ranked"] == 0) == (calls == [])


def test_fit_heads_unknown_name_is_one_line(capsys):
    rc = main(["pretrained", "fit-heads", "perov_7"])
    assert _one_error_line(rc, capsys.readouterr().err).startswith("no pretrained model 'perov_7' (shipped: ")


def test_fit_heads_tiny_run(ckpt, demo_root, tmp_path, capsys):
    from dpcdvae.models import load_model
    from dpcdvae.models.pretrained import export_pretrained
    from dpcdvae.workflows.optimize import load_head

    weights = tmp_path / "weights"
    export_pretrained(load_model(ckpt), "tiny_demo", {"description": "test"}, weights_dir=weights, checkpoint=ckpt)
    assert main(["pretrained", "fit-heads", "tiny_demo", "--weights-dir", str(weights), "--data-root",
                 str(demo_root), "--seed", "1"]) in (0, None)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    card = json.loads(lines[0])
    assert json.loads((weights / "heads" / "tiny_demo.json").read_text()) == card
    assert (card["model"], card["dataset"], card["prop"], card["seed"], card["train_split"], card["val_split"]) == \
        ("pretrained:tiny_demo", DEMO, "heat_ref", 1, "train", "val")
    assert card["model_sha256"] == hashlib.sha256((weights / "tiny_demo.pt").read_bytes()).hexdigest()
    assert card["command"] == "dpcdvae pretrained fit-heads tiny_demo --seed 1"
    assert json.loads(lines[1]) == {"heads": {"tiny_demo": {"val_mae": card["val_mae"], "val_r2": card["val_r2"]}}}
    head = load_head(weights / "heads" / "tiny_demo.pt")
    assert head.meta["dataset"] == DEMO and head.meta["val_mae"] == pytest.approx(card["val_mae"])


@pytest.mark.parametrize("script, argv, line", [
    ("csp_match.py", ["--checkpoint", "pretrained:perov_5", "--samples", "0"], "--samples 0: "),
    ("fit_property_heads.py", ["perov_7"], "no pretrained model 'perov_7'"),
])
def test_the_old_script_paths_are_aliases(monkeypatch, capsys, script, argv, line):
    monkeypatch.setattr(sys, "argv", [script, *argv])
    with pytest.raises(SystemExit) as exc:
        runpy.run_path(str(REPO / "benchmarks" / script), run_name="__main__")
    assert _one_error_line(exc.value.code, capsys.readouterr().err).startswith(line)
