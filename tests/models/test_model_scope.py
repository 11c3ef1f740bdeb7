"""Issue 28, item 3: refuse or warn on what the model cannot do. A checkpoint stores its training dataset, elements,
cell sizes and max_atoms; CSP refuses elements outside the training data and cells above max_atoms in one line;
``reconstruct`` / ``evaluate`` on another dataset than the model's print one warning line."""
from __future__ import annotations

import json

import pytest
import torch

from dpcdvae.cli import main
from dpcdvae.models.scope import (OutOfScopeError, cell_size_warning, check_composition, dataset_mismatch,
                                  model_scope)

OV = {"train.batch_size": 16, "train.limit_val": 8}


def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("dpcdvae: error: "), lines[0]
    return lines[0]


# ---------------------------------------------------------------------------------------------------- CSP
def test_csp_refuses_an_element_beyond_the_vocabulary(tmp_path, capsys):
    rc = main(["csp", "--checkpoint", "pretrained:perov_5", "--composition", "Og2", "--n", "1",
               "--out", str(tmp_path / "x")])
    line = _one_error_line(capsys.readouterr().err)
    assert rc == 2 and "Og" in line and "Og2" in line, line
    assert not (tmp_path / "x").exists()


def test_csp_refuses_unseen_element_and_too_many_atoms(tmp_path, capsys):
    """Na100Cl100 on Perov-5: Cl never occurs in Perov-5, and 200 atoms > max_atoms 20; both are named."""
    rc = main(["csp", "--checkpoint", "pretrained:perov_5", "--composition", "Na100Cl100", "--n", "1",
               "--out", str(tmp_path / "x")])
    line = _one_error_line(capsys.readouterr().err)
    assert rc == 2, line
    assert "Cl never occurs in the training data (perov_5" in line, line
    assert "200 atoms per cell" in line and "max_atoms 20" in line, line
    assert "Na never" not in line  # Na occurs in Perov-5


def test_library_refuses_too(tmp_path):
    from dpcdvae import load_pretrained

    model = load_pretrained("perov_5")
    scope = model_scope(model)
    assert scope["dataset"] == "perov_5" and scope["max_atoms"] == 20 and scope["cell_sizes"] == [5]
    assert "Cl" not in scope["elements"] and {"Sr", "Ti", "O"} <= set(scope["elements"])
    with pytest.raises(OutOfScopeError, match=r"composition NaCl: .*Cl never occurs"):
        model.predict_structure("NaCl", n=1, sampler="strided_eq7", steps=2, search_steps=1)
    check_composition(scope, "SrTiO3")  # inside: no error
    check_composition(scope, "Sr4Ti4O12")  # 20 atoms as written: inside
    with pytest.raises(OutOfScopeError, match="25 atoms per cell as written"):
        check_composition(scope, "Sr5Ti5O15")
    with pytest.raises(OutOfScopeError, match="num_atoms 25"):
        check_composition(scope, "SrTiO3", num_atoms=25)


def test_cell_size_warning():
    scope = {"dataset": "perov_5", "cell_sizes": [5]}
    assert cell_size_warning(scope, [5, 10, 15, 20]) is None
    line = cell_size_warning(scope, [2, 4, 6])
    assert line and "only cells of 5 atoms" in line and "\n" not in line
    assert cell_size_warning({"cell_sizes": None}, [2]) is None


# ---------------------------------------------------------------------------------------------------- checkpoints
def test_training_stores_what_it_trained_on(demo_root, tmp_path):
    from dpcdvae.models import load_model
    from dpcdvae.train import train

    out = tmp_path / "run"
    train("demo_synthetic_perovskites", "tiny", out=out, overrides=OV, root=str(demo_root), max_epochs=1,
          progress=False)
    ck = torch.load(out / "best.ckpt", map_location="cpu", weights_only=True)
    td = ck["hyper_parameters"]["training_data"]
    assert td["dataset"] == "demo_synthetic_perovskites" and td["train_split"] == "train"
    assert td["cell_sizes"] == [5] and td["max_atoms"] == 20
    assert "O" in td["elements"] and len(td["elements"]) >= 3
    assert json.loads((out / "config.json").read_text())["training_data"] == td
    model = load_model(out / "best.ckpt")
    scope = model_scope(model)
    assert scope["source"] == "checkpoint" and scope["elements"] == td["elements"]
    # an older checkpoint without training_data: config.json beside it still names the dataset
    del ck["hyper_parameters"]["training_data"]
    old = out / "old.ckpt"
    torch.save(ck, old)
    assert model_scope(load_model(old))["dataset"] == "demo_synthetic_perovskites"


# ---------------------------------------------------------------------------------------------------- reconstruct / evaluate
def test_dataset_mismatch_line():
    assert dataset_mismatch("perov_5", "Perov-5") is None  # aliases resolve
    assert dataset_mismatch(None, "perov_5") is None
    line = dataset_mismatch("carbon_24", "perov_5")
    assert "trained on carbon_24, not perov_5" in line and "\n" not in line


def test_reconstruct_and_evaluate_warn_on_another_dataset(tmp_path, srtio3, capsys, isolated_cache):
    """pretrained:carbon_24 on (a one-crystal) perov_5: one warning line in reconstruct, and again in evaluate."""
    from conftest import write_perov5_csvs

    root = write_perov5_csvs(tmp_path, {"srtio3": srtio3})
    rc = main(["reconstruct", "--checkpoint", "pretrained:carbon_24", "--dataset", "perov_5", "--data-root",
               str(root), "--split", "test", "--sampler", "strided_eq7", "--steps", "2", "--no-metrics",
               "--out", str(tmp_path / "recon")])
    cap = capsys.readouterr()
    assert rc in (0, None), cap.err
    warn = [ln for ln in cap.err.splitlines() if "warning" in ln]
    assert len(warn) == 1 and "trained on carbon_24, not perov_5" in warn[0], cap.err
    res = json.loads(cap.out.strip().splitlines()[-1])
    assert res["model_dataset"] == "carbon_24" and "trained on carbon_24" in res["warning"]
    samples = json.loads((next((tmp_path / "recon").rglob("samples.json"))).read_text())
    assert samples["meta"]["model_dataset"] == "carbon_24"

    from dpcdvae.cli.evaluate import samples_model_dataset

    run = next((tmp_path / "recon").rglob("samples.json")).parent
    assert samples_model_dataset(run / "cif") == "carbon_24" == samples_model_dataset(run)
    rc = main(["evaluate", "--task", "recon", "--samples", str(run / "cif"), "--dataset", "perov_5", "--data-root",
               str(root), "--no-eform", "--n-workers", "1", "--quiet", "--out", str(tmp_path / "ev")])
    cap = capsys.readouterr()
    warn = [ln for ln in cap.err.splitlines() if "warning" in ln]
    assert len(warn) == 1 and "trained on carbon_24, not perov_5" in warn[0], cap.err
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert "trained on carbon_24" in metrics["warning"]


def test_same_dataset_no_warning(tmp_path, srtio3, capsys, isolated_cache):
    from conftest import write_perov5_csvs

    root = write_perov5_csvs(tmp_path, {"srtio3": srtio3})
    rc = main(["reconstruct", "--checkpoint", "pretrained:perov_5", "--data-root", str(root), "--split", "test",
               "--sampler", "strided_eq7", "--steps", "2", "--no-metrics", "--out", str(tmp_path / "recon")])
    cap = capsys.readouterr()
    assert rc in (0, None) and "warning" not in cap.err, cap.err
