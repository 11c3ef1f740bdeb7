"""Samplers as objects end to end: the DDIM alias, the scheduler's public coefficient API, one-step samplers refuse
strides, a name is resolved once per public call, and every DDPM sampler's loop checked against formulas written
out by hand (independent of the scheduler's tables)."""
from __future__ import annotations

import math

import pytest
import torch

from dpcdvae.diffusion import DDPMScheduler, sample_loop
from dpcdvae.diffusion import samplers as samplers_mod
from dpcdvae.diffusion.samplers import DDIMSampler, Sampler, get_sampler, resolve_sampler, sampler_aliases, sampler_names

DT = torch.float64


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def test_strided_is_an_alias_of_ddim():
    a, b = get_sampler("strided", eta=0.7), get_sampler("ddim", eta=0.7)
    assert type(a) is DDIMSampler and type(b) is DDIMSampler
    assert (a.name, a.label, b.label) == ("ddim", "strided", "ddim")
    assert sampler_aliases() == {"strided": "ddim"}
    assert "strided" in sampler_names("ddpm") and "strided" not in sampler_names("ddpm", aliases=False)
    sch = DDPMScheduler(50, "sigmoid")
    x, e, z = (torch.randn(7, 3, generator=_gen(i), dtype=DT) for i in range(3))
    t, tp = torch.tensor(40), torch.tensor(25)
    sa, sb = a.step(sch, e, t, x, z, t_prev=tp), b.step(sch, e, t, x, z, t_prev=tp)
    assert torch.equal(sa.prev_sample, sb.prev_sample) and torch.equal(sa.pred_original_sample,
                                                                      sb.pred_original_sample)
    # eta is the object's option: another eta, another step
    assert not torch.equal(get_sampler("ddim").step(sch, e, t, x, z, t_prev=tp).prev_sample, sa.prev_sample)
    assert resolve_sampler(a) is a
    with pytest.raises(TypeError):
        get_sampler("eq7", eta=0.5)  # only DDIM has eta
    with pytest.raises(TypeError):
        resolve_sampler(a, eta=0.1)


def test_scheduler_coef_is_what_its_docstring_says():
    T = 30
    sch = DDPMScheduler(T, "sigmoid")
    betas = sch.betas
    t = torch.tensor([0, 1, 2, 17, T])
    like = torch.zeros(5, 3, dtype=torch.float32)
    for name in ("abar", "alpha", "beta", "posterior_var"):
        c = sch.coef(name, t, like)
        assert c.shape == (5, 1) and c.dtype == torch.float32
    assert sch.coef("abar", 7, like).shape == (1, 1)
    assert torch.equal(sch.coef("abar", t, like.double())[:, 0], sch.alpha_bar(t))
    assert torch.allclose(sch.coef("posterior_var", t[1:], like.double())[:, 0], sch.posterior_std(t[1:]) ** 2)
    for k, tk in enumerate(t.tolist()):
        abar = math.prod(1.0 - float(b) for b in betas[:tk])  # empty product at t = 0: 1
        beta = float(betas[tk - 1]) if tk else 0.0
        abar_prev = math.prod(1.0 - float(b) for b in betas[:tk - 1]) if tk else 1.0
        var = (1 - abar_prev) / (1 - abar) * beta if tk else 0.0
        d = like.double()
        assert float(sch.coef("abar", tk, d)) == pytest.approx(abar, rel=1e-12)
        assert float(sch.coef("beta", tk, d)) == pytest.approx(beta, rel=1e-12)
        assert float(sch.coef("alpha", tk, d)) == pytest.approx(1.0 - beta, rel=1e-12)
        assert float(sch.coef("posterior_var", tk, d)) == pytest.approx(var, rel=1e-9, abs=1e-300)
    with pytest.raises(ValueError, match="unknown coefficient"):
        sch.coef("sigma", 3, like)
    assert sch.as_timesteps([3, 4]).dtype == torch.long
    with pytest.raises(ValueError):
        sch.as_timesteps(T + 1)
    with pytest.raises(ValueError):
        sch.as_timesteps(0, 1)
    with pytest.raises(TypeError):
        sch.as_timesteps(torch.tensor(2.0))


@pytest.mark.parametrize("name", ["eq7", "eq6"])
def test_one_step_samplers_refuse_a_stride(name):
    sch = DDPMScheduler(20, "sigmoid")
    x, e, z = (torch.randn(4, 3, generator=_gen(i), dtype=DT) for i in range(3))
    smp = get_sampler(name)
    t = torch.tensor(10)
    same = smp.step(sch, e, t, x, z, t_prev=torch.tensor(9)).prev_sample
    assert torch.equal(same, smp.step(sch, e, t, x, z).prev_sample)
    for bad in (8, 10, 0):
        with pytest.raises(ValueError, match="t -> t - 1"):
            smp.step(sch, e, t, x, z, t_prev=torch.tensor(bad))
    with pytest.raises(ValueError, match="needs all 20 steps"):
        smp.timesteps(sch, 5)
    assert smp.timesteps(sch, 5, strict=False) == list(range(20, 0, -1))


def test_a_name_is_resolved_once_per_generate(demo_train, monkeypatch):
    """One ``generate`` over several batches and one ``reconstruct`` build the sampler object once; an object given
    by the caller is never rebuilt."""
    from torch_geometric.loader import DataLoader

    from dpcdvae.config import load_config
    from dpcdvae.data import LatticeScaler
    from dpcdvae.models import DPCDVAE

    calls = []
    real = samplers_mod.get_sampler

    def counting(name, **options):
        calls.append(name)
        return real(name, **options)

    monkeypatch.setattr(samplers_mod, "get_sampler", counting)
    cfg = load_config("tiny")
    torch.manual_seed(0)
    model = DPCDVAE(cfg.model, LatticeScaler(cfg.model.lattice_scaler).fit(demo_train)).eval()
    out = model.generate(3, sampler="strided", steps=3, seed=0, batch_size=1)
    assert calls == ["strided"] and out.meta["sampler"] == "strided" and out.meta["steps"] == 3
    calls.clear()
    batch = next(iter(DataLoader(demo_train, batch_size=2)))
    model.reconstruct(batch, sampler="strided_eq7", steps=2, seed=0)
    assert calls == ["strided_eq7"]
    calls.clear()
    smp = real("ddim", eta=0.5)
    out = model.generate(2, sampler=smp, steps=2, seed=0, batch_size=1)
    assert calls == [] and out.meta["sampler"] == "ddim"


# --------------------------------------------------------------------------------------------------------- by hand
BETAS = [0.02, 0.2, 0.35, 0.5]  # T = 4, written out so that the expected values do not use the scheduler's tables


def _abar(t):
    return math.prod(1.0 - b for b in BETAS[:t])


def _sigma2(t):  # posterior variance of step t (0 at t = 0)
    return (1 - _abar(t - 1)) / (1 - _abar(t)) * BETAS[t - 1] if t else 0.0


def _wrap(x):
    return x - torch.floor(x)


def _eps(xw, t):
    return torch.tanh(1.7 * xw - 0.4) * (0.5 + 0.1 * t)


def _by_hand(name, steps, x_T, seed, eta=0.0):
    """The reverse loop of sampler ``name`` written out with the formulas of dpcdvae.diffusion.ddpm's docstring."""
    g = _gen(seed)
    x = x_T
    for t, tp in zip(steps, steps[1:] + [0]):
        e = _eps(_wrap(x), t)
        z = torch.randn(x.shape, generator=g, dtype=x.dtype)
        ab = _abar(t)
        x0 = (_wrap(x) - math.sqrt(1 - ab) * e) / math.sqrt(ab)
        if name == "eq7":
            x = x0 + math.sqrt(_sigma2(t)) * z
        elif name == "eq6":
            beta = BETAS[t - 1]
            x = (x - beta / math.sqrt(1 - ab) * e) / math.sqrt(1 - beta) + math.sqrt(_sigma2(t)) * z
        elif name == "strided_eq7":
            x = x0 + (math.sqrt(_sigma2(tp + 1)) if tp > 0 else 0.0) * z
        elif name in ("ddim", "strided"):
            abp = _abar(tp)
            s2 = eta ** 2 * (1 - abp) / (1 - ab) * (1 - ab / abp)
            x = math.sqrt(abp) * x0 + math.sqrt(max(1 - abp - s2, 0.0)) * e + math.sqrt(s2) * z
        else:
            raise AssertionError(name)
    return _wrap(x)


@pytest.mark.parametrize("name,steps,eta", [("eq7", None, 0.0), ("eq6", None, 0.0), ("strided_eq7", [4, 2], 0.0),
                                            ("strided_eq7", [4, 3, 1], 0.0), ("ddim", [4, 2], 0.0),
                                            ("ddim", [4, 3, 1], 0.6), ("strided", [3, 1], 1.0)])
def test_sample_loop_matches_the_formulas_by_hand(name, steps, eta):
    sch = DDPMScheduler(len(BETAS), torch.tensor(BETAS, dtype=DT))
    x_T = 1.5 * torch.randn(9, 3, generator=_gen(11), dtype=DT)
    smp = get_sampler(name, eta=eta) if name in ("ddim", "strided") else get_sampler(name)
    got = sample_loop(sch, x_T, lambda xw, t: _eps(xw, int(t[0])), sampler=smp, steps=steps, generator=_gen(5))
    want = _by_hand(name, steps or list(range(len(BETAS), 0, -1)), x_T, 5, eta)
    assert torch.allclose(got, want, atol=1e-12, rtol=0), (got - want).abs().max()
    # the state moved: a loop that returned x_T (or skipped a step) would fail above
    assert not torch.allclose(got, _wrap(x_T), atol=1e-3)


def test_every_sampler_object_reports_its_name():
    for n in sampler_names():
        smp = get_sampler(n)
        assert isinstance(smp, Sampler) and smp.label == n and n in (smp.name, *smp.aliases)


def test_models_refuse_an_object_of_the_other_family():
    from dpcdvae.models import CDVAE, DPCDVAE
    from dpcdvae.utils.errors import SamplerError

    with pytest.raises(SamplerError):
        CDVAE.resolve_sampler(get_sampler("ddim"))
    with pytest.raises(SamplerError):
        DPCDVAE.resolve_sampler(get_sampler("langevin"))
    smp = get_sampler("strided", eta=0.2)
    assert DPCDVAE.resolve_sampler(smp) is smp and DPCDVAE.check_sampler(smp) == "strided"
