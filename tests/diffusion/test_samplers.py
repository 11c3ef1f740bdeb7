"""Sampler objects and their registry (dpcdvae.diffusion.samplers): one source of names, one class per algorithm,
a new sampler is one class plus one registration, and the models refuse samplers of the other family."""
from __future__ import annotations

import pytest
import torch

from dpcdvae.cli import build_parser, error_line
from dpcdvae.config import load_config
from dpcdvae.diffusion import DDPMScheduler, sample_loop
from dpcdvae.diffusion.samplers import (SAMPLERS, Eq7Sampler, Sampler, StepOutput, get_sampler, register_sampler,
                                        sampler_names)
from dpcdvae.utils.errors import ArgumentError, SamplerError, UserError
from dpcdvae.models import CDVAE, DPCDVAE, build_model
from dpcdvae.workflows import check_sampling_args, sampler_for


def _eps_fn(W):
    return lambda x, t: torch.tanh(x @ W) * (t[:, None].to(x.dtype) / 1000.0)


def test_registry_names_and_families():
    assert sampler_names("ddpm")[:5] == ("eq7", "eq6", "strided_eq7", "ddim", "strided")
    assert sampler_names("ddpm", aliases=False)[:4] == ("eq7", "eq6", "strided_eq7", "ddim")
    assert sampler_names("langevin") == ("langevin",)
    assert get_sampler("strided_eq7").strided and not get_sampler("eq7").strided
    with pytest.raises(ValueError, match="unknown sampler 'euler'.*eq7"):
        get_sampler("euler")
    with pytest.raises(ValueError, match="already registered"):
        @register_sampler
        class Clash(Eq7Sampler):  # noqa: F811 - a second class under an existing name
            name = "eq7"


def test_cli_choices_come_from_the_registry():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for cmd in ("sample", "reconstruct"):
        act = next(a for a in sub.choices[cmd]._actions if a.dest == "sampler")
        assert tuple(act.choices) == sampler_names()
    act = next(a for a in sub.choices["csp"]._actions if a.dest == "sampler")
    assert tuple(act.choices) == sampler_names("ddpm")


def test_step_output_and_eq7_formula():
    sch = DDPMScheduler(100, "sigmoid")
    x = torch.randn(6, 3, generator=torch.Generator().manual_seed(0))
    eps = torch.randn(6, 3, generator=torch.Generator().manual_seed(1))
    noise = torch.randn(6, 3, generator=torch.Generator().manual_seed(2))
    t = torch.tensor(40)
    out = get_sampler("eq7").step(sch, eps, t, x, noise)
    assert isinstance(out, StepOutput)
    abar = float(sch.alpha_bar(40))
    x0 = ((x - torch.floor(x)) - (1 - abar) ** 0.5 * eps) / abar ** 0.5
    assert torch.allclose(out.pred_original_sample, x0, atol=1e-6)
    assert torch.allclose(out.prev_sample, x0 + float(sch.posterior_std(40)) * noise, atol=1e-6)
    # t_prev = t - 1 given explicitly is the same step
    assert torch.equal(get_sampler("eq7").step(sch, eps, t, x, noise, t_prev=torch.tensor(39)).prev_sample,
                       out.prev_sample)
    with pytest.raises(ValueError, match="t -> t - 1"):
        get_sampler("eq6").step(sch, eps, t, x, noise, t_prev=torch.tensor(30))


def test_a_new_sampler_is_one_class_and_one_registration():
    """A deterministic "jump to x0_hat" sampler on a sub-sequence of steps, registered here, runs through the
    model-agnostic loop and the model's checks without any other edit."""

    @register_sampler
    class X0Jump(Sampler):
        name = "test_x0_jump"
        strided = True
        description = "jump to the clean-sample estimate, no noise (test only)"

        def step(self, scheduler, eps_pred, t, x_t, noise, t_prev=None):
            x0 = self._x0_hat(scheduler, eps_pred, t, x_t)
            return StepOutput(x0, x0)

    try:
        assert "test_x0_jump" in sampler_names("ddpm")
        sch = DDPMScheduler(200, "sigmoid")
        W = torch.randn(3, 3, generator=torch.Generator().manual_seed(3))
        x_T = torch.randn(10, 3, generator=torch.Generator().manual_seed(4))
        got = sample_loop(sch, x_T, _eps_fn(W), sampler="test_x0_jump", steps=5)
        # the same loop written out by hand
        x = x_T
        for t in sch.make_timesteps(5):
            tv = torch.full((10,), t, dtype=torch.long)
            e = _eps_fn(W)(sch.wrap(x), tv)
            abar = float(sch.alpha_bar(t))
            x = (sch.wrap(x) - (1 - abar) ** 0.5 * e) / abar ** 0.5
        assert torch.allclose(got, sch.wrap(x), atol=1e-6)
        assert DPCDVAE.check_sampler("test_x0_jump") == "test_x0_jump"
        with pytest.raises(SamplerError):
            CDVAE.check_sampler("test_x0_jump")
    finally:
        SAMPLERS.pop("test_x0_jump", None)
    assert "test_x0_jump" not in sampler_names()


@pytest.fixture(scope="module")
def models():
    cfg = load_config("tiny")
    out = {}
    for kind in ("dpcdvae", "cdvae"):
        cfg.model.model = kind
        out[kind] = build_model(cfg)
    return out


def test_models_refuse_the_other_family(models):
    dp, cd = models["dpcdvae"], models["cdvae"]
    assert dp.supported_samplers == sampler_names("ddpm") and cd.supported_samplers == ("langevin",)
    assert dp.check_sampler(None) == "eq7" and cd.check_sampler(None) == "langevin"
    with pytest.raises(SamplerError, match="eq7"):
        dp.check_sampler("langevin")
    for name in sampler_names("ddpm"):
        with pytest.raises(SamplerError, match="langevin"):
            cd.check_sampler(name)
    # the check names the argument: its Python name from Python, the flag on the command line (error_line)
    with pytest.raises(UserError, match="^sampler=eq6: ") as exc:
        check_sampling_args(cd, "eq6", None)
    assert isinstance(exc.value, ArgumentError) and exc.value.arg == "sampler"
    assert error_line(exc.value).startswith("--sampler eq6: ") and "(--sampler langevin, --steps = " in \
        error_line(exc.value) and "(sampler langevin, steps = " in str(exc.value)
    with pytest.raises(UserError, match="^steps=5: sampler eq7 always runs all") as exc:
        check_sampling_args(dp, "eq7", 5)
    assert error_line(exc.value).startswith("--steps 5: --sampler eq7 always runs all") and "--" not in str(exc.value)
    smp = check_sampling_args(dp, "strided_eq7", 5)  # the command line's edge: the name becomes an object
    assert isinstance(smp, Sampler) and smp.label == "strided_eq7"
    assert check_sampling_args(dp, smp, 5) is smp  # an object goes through as it is


def test_sampler_for_a_mixed_study_says_what_it_replaced(models):
    smp, steps, note = sampler_for(models["dpcdvae"], "strided_eq7", 10)
    assert (smp.label, steps, note) == ("strided_eq7", 10, "")
    smp, steps, note = sampler_for(models["cdvae"], "strided_eq7", 10)
    assert (smp.label, steps) == ("langevin", None) and "does not run 'strided_eq7'" in note


def test_sharded_sampling_gives_the_same_crystals_whatever_the_number_of_processes(tmp_path, demo_root):
    """`dpcdvae sample --devices 2` (two CPU processes) writes the crystals of a one-process run, in its order."""
    import json

    from dpcdvae.cli import main
    from dpcdvae.train import train

    ck = train("demo_synthetic_perovskites", "tiny", out=tmp_path / "run", root=str(demo_root), max_epochs=1,
               progress=False, overrides={"train.batch_size": 16, "train.limit_val": 8})["best"]
    outs = {}
    for devices in (1, 2):
        d = tmp_path / f"gen{devices}"
        assert main(["sample", "--checkpoint", ck, "--n", "7", "--batch-size", "3", "--sampler", "strided_eq7",
                     "--steps", "3", "--seed", "5", "--devices", str(devices), "--out", str(d)]) == 0
        outs[devices] = json.loads((d / "samples.json").read_text())
    a, b = outs[1], outs[2]
    rows_a, rows_b = a["crystals"], b["crystals"]
    assert len(rows_a) == len(rows_b) == 7
    assert [r["id"] for r in rows_a] == [r["id"] for r in rows_b] == [f"gen-{i:05d}" for i in range(7)]
    for ra, rb in zip(rows_a, rows_b):
        assert (ra.get("formula"), ra["lengths"], ra["angles"]) == (rb.get("formula"), rb["lengths"], rb["angles"])
    xa = (tmp_path / "gen1" / "samples.extxyz").read_text()
    xb = (tmp_path / "gen2" / "samples.extxyz").read_text()
    assert xa == xb
    # reconstruction: the same crystals and the same match rate with 2 processes
    rec = {}
    for devices in (1, 2):
        d = tmp_path / f"rec{devices}"
        assert main(["reconstruct", "--checkpoint", ck, "--dataset", "demo", "--data-root", str(demo_root),
                     "--batch-size", "3", "--sampler", "strided_eq7", "--steps", "3", "--devices", str(devices),
                     "--out", str(d)]) == 0
        rec[devices] = (json.loads((d / "metrics.json").read_text()), (d / "samples.extxyz").read_text())
    assert rec[1][1] == rec[2][1]
    assert rec[1][0]["match_rate"] == rec[2][0]["match_rate"] and rec[2][0]["devices"] == 2
