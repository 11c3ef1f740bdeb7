"""Resumable generation: batch files (save_batch / load_batch) and ``generate_to_folder(..., resume=True)`` /
``dpcdvae sample --resume``: a run stopped part-way ends with the same crystals as one uninterrupted run."""
from __future__ import annotations

import copy
import json

import pytest
import torch

from dpcdvae.config import load_config
from dpcdvae.utils.errors import UserError
from dpcdvae.models import build_model
from dpcdvae.models.output import load_batch, save_batch
from dpcdvae.workflows import generate_to_folder, model_fingerprint


@pytest.fixture(scope="module")
def tiny_ckpt(demo_root, tmp_path_factory):
    from dpcdvae.train import train

    return train("demo_synthetic_perovskites", "tiny", out=tmp_path_factory.mktemp("run"), root=str(demo_root),
                 max_epochs=1, progress=False, overrides={"train.batch_size": 16, "train.limit_val": 8})["best"]


@pytest.fixture(scope="module")
def tiny(tiny_ckpt):
    from dpcdvae.models import load_model

    return load_model(tiny_ckpt).eval()


def _gen(model, run, resume=False, seed=5, n=7):
    return generate_to_folder(model, n, run, sampler="strided_eq7", steps=3, seed=seed, batch_size=3,
                              progress=False, reseed_batches=True, resume=resume)


def test_batch_file_round_trip_keeps_tensors_flags_ids_and_structures(tiny, tmp_path):
    out = tiny.generate(4, sampler="strided_eq7", steps=3, seed=1, num_atoms=[3, 0, 4, 2])
    assert out.flags[1]  # N_a = 0: a crystal that is not built
    save_batch(out, tmp_path / "b.pt")
    # tensors and strings only: readable without unpickling arbitrary objects
    state = torch.load(tmp_path / "b.pt", weights_only=True)
    assert set(state) >= {"frac_coords", "atom_types", "lengths", "angles", "num_atoms", "flags", "ids"}
    back = load_batch(tmp_path / "b.pt")
    for key in ("frac_coords", "atom_types", "lengths", "angles", "num_atoms"):
        assert torch.equal(getattr(back, key), getattr(out, key)), key
    assert back.flags == out.flags and back.ids == out.ids and back.meta == out.meta
    assert back.structures[1] is None
    for a, b in zip(out.structures, back.structures):
        if a is None:
            assert b is None
            continue
        assert a == b  # same lattice, species and coordinates
    assert back.valid_mask == out.valid_mask
    assert not list(tmp_path.glob("*.tmp*"))  # written through a temporary name, renamed whole


def test_load_batch_names_a_file_that_is_not_a_batch(tmp_path):
    bad = tmp_path / "batch_000001.pt"
    bad.write_bytes(b"half a file")
    with pytest.raises(ValueError, match="batch_000001.pt"):
        load_batch(bad)
    torch.save({"version": 999}, bad)
    with pytest.raises(ValueError, match="version"):
        load_batch(bad)


def test_resumed_run_gives_the_crystals_of_an_uninterrupted_one_and_reads_back_finished_batches(tiny, tmp_path,
                                                                                              monkeypatch):
    full = _gen(tiny, tmp_path / "full").samples
    assert sorted(p.name for p in (tmp_path / "full" / "batches").glob("batch_*.pt")) == \
        ["batch_000000.pt", "batch_000001.pt", "batch_000002.pt"]
    # an interrupted run: the first two batches finished, the last one not, no samples.json written at the end
    part = tmp_path / "part"
    _gen(tiny, part)
    (part / "batches" / "batch_000002.pt").unlink()
    (part / "samples.json").unlink()
    calls = []
    real = type(tiny).generate

    def counting(self, n, **kw):
        calls.append((n, kw["seed"]))
        return real(self, n, **kw)

    monkeypatch.setattr(type(tiny), "generate", counting)
    res = _gen(tiny, part, resume=True)
    out = res.samples
    assert calls == [(1, 5 + 6)]  # only the missing batch (crystal 6, seeded seed + 6) was computed
    assert res.batches_read_back == 2 and res.meta["batches_read_back"] == 2 and res.n == 7 and res.out == part
    assert out.ids == full.ids == [f"gen-{i:05d}" for i in range(7)]
    assert torch.equal(out.frac_coords, full.frac_coords) and torch.equal(out.lengths, full.lengths)
    assert (part / "samples.extxyz").read_text() == (tmp_path / "full" / "samples.extxyz").read_text()
    rows = json.loads((part / "samples.json").read_text())["crystals"]
    assert [r["id"] for r in rows] == full.ids


def test_resume_refuses_other_settings_or_other_weights(tiny, tmp_path):
    _gen(tiny, tmp_path / "r")
    with pytest.raises(UserError, match="seed was 5, now 6"):
        _gen(tiny, tmp_path / "r", resume=True, seed=6)
    with pytest.raises(UserError, match="n was 7, now 8"):
        _gen(tiny, tmp_path / "r", resume=True, n=8)
    other = copy.deepcopy(tiny)
    with torch.no_grad():
        next(other.parameters()).add_(1.0)
    assert model_fingerprint(other) != model_fingerprint(tiny)
    with pytest.raises(UserError, match="weights differ"):
        _gen(other, tmp_path / "r", resume=True)
    with pytest.raises(UserError, match="spec.json not found"):
        _gen(tiny, tmp_path / "nothing_here", resume=True)


def test_model_fingerprint_depends_on_weights_only(tiny):
    twin = build_model(load_config("tiny")).eval()
    twin.load_state_dict(tiny.state_dict())
    assert model_fingerprint(twin) == model_fingerprint(tiny)
    assert len(model_fingerprint(tiny)) == 64


def test_cli_resume_without_an_earlier_run_is_one_line(tmp_path, capsys):
    from dpcdvae.cli import main

    rc = main(["sample", "--checkpoint", "pretrained:perov_5", "--n", "2", "--out", str(tmp_path / "none"),
               "--resume"])
    err = capsys.readouterr().err
    assert rc != 0 and "--resume" in err and "batches/spec.json" in err
    assert "Traceback" not in err


def test_sharded_resume_gives_the_same_crystals(tmp_path, tiny_ckpt):
    """Two CPU processes, one batch missing after a stop: the resumed run computes it and writes the same file."""
    from dpcdvae.cli import main

    args = ["sample", "--checkpoint", tiny_ckpt, "--n", "7", "--batch-size", "3", "--sampler", "strided_eq7", "--steps",
            "3", "--seed", "5", "--devices", "2"]
    assert main(args + ["--out", str(tmp_path / "a")]) == 0
    first = (tmp_path / "a" / "samples.extxyz").read_text()
    (tmp_path / "a" / "batches" / "batch_000001.pt").unlink()
    (tmp_path / "a" / "samples.json").unlink()
    assert main(args + ["--out", str(tmp_path / "a"), "--resume"]) == 0
    assert (tmp_path / "a" / "samples.extxyz").read_text() == first
    meta = json.loads((tmp_path / "a" / "samples.json").read_text())["meta"]
    assert meta["batches_read_back"] == 2


def test_resume_refuses_other_sampler_options_and_keeps_default_specs_unchanged(tiny, tmp_path):
    """A DDIM run with eta 0.5 records its options; a resume with eta 0 is refused. A default sampler's spec has no
    options key, so runs started before options were recorded still resume."""
    from dpcdvae.diffusion.samplers import get_sampler

    def run(folder, eta, resume=False):
        return generate_to_folder(tiny, 4, folder, sampler=get_sampler("ddim", eta=eta), steps=3, seed=2,
                                  batch_size=2, progress=False, reseed_batches=True, resume=resume)

    run(tmp_path / "d", 0.5)
    spec = json.loads((tmp_path / "d" / "batches" / "spec.json").read_text())
    assert spec["sampler_options"] == {"eta": 0.5}
    with pytest.raises(UserError, match="sampler_options"):
        run(tmp_path / "d", 0.0, resume=True)
    _gen(tiny, tmp_path / "e")
    assert "sampler_options" not in json.loads((tmp_path / "e" / "batches" / "spec.json").read_text())
