"""The README's main job, `dpcdvae demo`, end to end on the synthetic demo data with a tiny budget: it trains,
reconstructs, generates, writes CIFs, a PNG picture and a summary with the match rate."""
from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.mark.slow
def test_demo_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("DPCDVAE_CACHE", str(tmp_path / "cache"))
    from dpcdvae.cli import main

    out = tmp_path / "demo"
    rc = main(["demo", "--out", str(out), "--dataset", "demo", "--config", "tiny", "--train-minutes", "0.1",
               "--n-recon", "4", "--n-gen", "3", "--steps", "5"])
    assert rc == 0
    summaries = list(out.rglob("summary.json"))
    summary = json.loads([p for p in summaries if p.parent.parent == out or p.parent == out][0].read_text())
    assert summary["synthetic"] is True and summary["sampler"] == "strided_eq7" and summary["steps"] == 5
    assert summary["recon_n"] == 4 and summary["generated_n"] == 3
    assert 0.0 <= summary["recon_match_rate"] <= 100.0
    assert Path(summary["picture"]).is_file() and Path(summary["picture"]).stat().st_size > 1000
    n_cifs = sum(len(list(Path(d).glob("*.cif"))) for d in summary["cif_dirs"])
    assert n_cifs >= 1


# ------------------------------------------------------------------------------------------------------------------
# what the demo's picture, its headline and its progress bars count (issue "One line for every mistake ...")
# ------------------------------------------------------------------------------------------------------------------
def _output(structures, flags=None):
    """A SampleOutput of pymatgen structures (``None``: a crystal that could not be built, with its flag)."""
    import torch

    from dpcdvae.models import SampleOutput

    n = len(structures)
    flags = list(flags or ["" if s is not None else "no atoms" for s in structures])
    cells = [s.lattice for s in structures if s is not None][0]
    return SampleOutput(structures=list(structures), frac_coords=torch.zeros(0, 3), atom_types=torch.zeros(0),
                        lengths=torch.tensor([(s.lattice if s else cells).abc for s in structures]),
                        angles=torch.tensor([(s.lattice if s else cells).angles for s in structures]),
                        num_atoms=torch.tensor([len(s) if s else 0 for s in structures]), flags=flags,
                        ids=[f"gen-{i}" for i in range(n)])


def _twelve_generated():
    """12 'generated' crystals: the third could not be built, the fifth has atoms 0.003 A apart (invalid)."""
    from pymatgen.core import Lattice, Structure

    good = Structure(Lattice.cubic(3.905), ["Sr", "Ti", "O", "O", "O"],
                     [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    close = Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.0005, 0, 0]])
    crystals = [good.copy() for _ in range(12)]
    crystals[2] = None
    crystals[4] = close
    return _output(crystals)


def test_picture_title_says_what_is_drawn_and_what_validity_counts():
    """plot_samples' docstring: the title says how many crystals are drawn of how many, and the validity over all
    of them ("8 of 32 generated crystals shown; 28/32 valid"), computed from the output."""
    import matplotlib

    matplotlib.use("Agg")
    from dpcdvae.viz import plot_samples

    out = _twelve_generated()
    n_valid = sum(v["valid"] for v in out.validity())
    assert n_valid == 10  # 12 - not built - too close
    fig = plot_samples(out, 8, suptitle="shipped model pretrained:perov_5", what="generated crystals")
    title = fig._suptitle.get_text()
    assert "8 of 12 generated crystals shown (the first 8 built)" in title, title
    assert f"; {n_valid}/12 valid" in title and title.startswith("shipped model pretrained:perov_5: ")
    assert len(fig.axes) == 8  # what the title says is drawn
    # every crystal built and fewer than n: all are drawn, and the title says so (no "first ... built")
    fig = plot_samples(_output([s for s in out.structures if s is not None][:3]), 8)
    assert fig._suptitle.get_text().startswith("3 of 3 crystals shown; ") and len(fig.axes) == 3


def test_draw_cell_draws_solid_grey_edges():
    """draw_cell's docstring (and notebook 00's text): the 12 cell edges are thin solid grey lines by default."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from dpcdvae.viz import draw_cell

    fig = plt.figure()
    ax = fig.add_subplot(projection="3d")
    draw_cell(ax, np.eye(3) * 4.0)
    assert len(ax.lines) == 12 and {ln.get_linestyle() for ln in ax.lines} == {"-"}
    draw_cell(ax, np.eye(3), ls="--")
    assert {ln.get_linestyle() for ln in ax.lines[12:]} == {"--"}
    plt.close(fig)


def test_whole_split_reference_comes_from_the_card():
    from dpcdvae.workflows.demo import whole_split_reference
    from dpcdvae.models.pretrained import pretrained_card

    card = pretrained_card("perov_5")
    full = {m["key"]: m for m in card["metrics"]}
    ref = whole_split_reference(card, "perov_5", "eq7", None)
    assert ref == {"match_rate": full["recon_full_eq7"]["value"], "n": full["recon_full_eq7"]["n"],
                   "key": "recon_full_eq7"} and ref["n"] > 3000
    assert whole_split_reference(card, "perov_5", "strided_eq7", 100)["key"] == "recon_full_s100"
    # no figure of the same protocol: nothing rather than a wrong one
    assert whole_split_reference(card, "perov_5", "strided_eq7", 30) is None
    assert whole_split_reference(card, "perov_5", "eq7", None, latent="mean") is None
    assert whole_split_reference(card, "carbon_24", "eq7", None) is None
    assert whole_split_reference(None, "perov_5", "eq7", None) is None


def test_demo_picture_and_headline_say_what_they_count(tmp_path, monkeypatch, capsys):
    """run_demo with its model, reconstruction and generation replaced by stand-ins (no sampling): the picture's
    title says how many of the generated crystals it draws and over how many the validity counts; the headline
    match rate names the crystals it counts and stands beside the card's whole-split figure."""
    from types import SimpleNamespace

    import matplotlib

    matplotlib.use("Agg")
    from dpcdvae.workflows import GenerationResult, ReconstructionResult, demo
    from dpcdvae.models.pretrained import pretrained_card

    gen = _twelve_generated()
    n_valid = sum(v["valid"] for v in gen.validity())
    card = pretrained_card("perov_5")
    model = SimpleNamespace(card=card, config=SimpleNamespace(name="compact"), cfg=SimpleNamespace(timesteps=1000))
    monkeypatch.setattr(demo, "load_model", lambda ck: model)
    monkeypatch.setattr(demo, "checkpoint_dataset", lambda ck, m: "perov_5")
    monkeypatch.setattr(demo, "available_splits", lambda name: ["train", "val", "test"])
    recon = ReconstructionResult(out=None, n=32, sample_wall_s=1.0, sampler="eq7", steps=1000, latent="sample",
                                 initial_types="round_residual", type_update="argmax", weights="ema", devices=1,
                                 dataset="perov_5", model_dataset="perov_5",
                                 metrics={"match_rate": 87.5, "delta_rms": 0.05})
    monkeypatch.setattr(demo, "reconstruct_split", lambda *a, **k: recon)
    monkeypatch.setattr(demo, "generate_to_folder",
                        lambda *a, **k: GenerationResult(samples=gen, out=tmp_path / "demo" / "generated", n=len(gen),
                                                         n_decoded=11, n_valid=n_valid))
    figs = []
    draw = demo.plot_samples
    monkeypatch.setattr(demo, "plot_samples", lambda *a, **k: figs.append(draw(*a, **k)) or figs[-1])
    summary = demo.run_demo(out=str(tmp_path / "demo"), n_recon=32, n_gen=12)
    title = figs[0]._suptitle.get_text()
    assert f"8 of 12 generated crystals shown (the first 8 built); {n_valid}/12 valid" in title, title
    assert len(figs[0].axes) == 8 and Path(summary["picture"]).is_file()
    said = capsys.readouterr().out.strip().splitlines()[-1]
    whole = {m["key"]: m for m in card["metrics"]}["recon_full_eq7"]
    assert "match rate on the first 32 perov_5 test crystals: 87.5 %" in said, said
    assert f"whole test split, {whole['n']} crystals" in said and f"{whole['value']:.2f} %" in said, said
    assert summary["recon_whole_split"]["n"] == whole["n"]


def test_matcher_count_line_says_what_the_bar_counted():
    from dpcdvae.workflows import matcher_count_line

    line = matcher_count_line({"n_valid": 30, "n_matched": 28}, 32)
    assert line == ("StructureMatcher compared the 30 valid reconstructions of 32 crystals (2 invalid count as "
                    "unmatched): 28/32 matched = 87.5 %")


DEMO_SIZES = (8, 4, 6)


def test_reconstruction_progress_counts_crystals(demo_root, monkeypatch, capsys):
    """The reconstruction bar counts crystals (not batches); the StructureMatcher bar, which counts the valid
    predictions only, is followed by a line saying so, with the count over all crystals."""
    import re

    from dpcdvae.workflows import reconstruct_split

    monkeypatch.setenv("DPCDVAE_PROGRESS_INTERVAL", "0")  # a line per update in a captured (non-terminal) stream
    r = reconstruct_split("pretrained:perov_5", None, dataset="demo_synthetic_perovskites", root=str(demo_root),
                          limit=6, batch_size=4, sampler="strided_eq7", steps=2, n_workers=1, progress=True)
    err = capsys.readouterr().err
    recon = [ln for ln in err.splitlines() if ln.startswith("reconstructing:")]
    assert recon and "6/6" in recon[-1] and "crystal/s" in recon[-1], err[-2000:]
    matcher = [ln for ln in err.splitlines() if ln.startswith("StructureMatcher (valid pairs)")]
    m = r.metrics
    if m["n_valid"]:  # the bar counts the valid predictions ...
        assert re.search(rf"\b{m['n_valid']}/{m['n_valid']}\b", matcher[-1]), matcher[-1]
    # ... and the next line says what it counted, over all 6
    assert f"StructureMatcher compared the {m['n_valid']} valid reconstructions of 6 crystals" in err
    assert f"{m['n_matched']}/6 matched" in err
