"""The training options of the Eq. 7 stability work (model.coord_loss, model.eps_frame, the Eq. 7-consistency
augmentation), explicit strided steps, and the stability screen's functions (dpcdvae.eval.stability).

Everything runs on the self-built synthetic demo perovskites or on tensors built here (no shared data needed)."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch_geometric.loader import DataLoader

from dpcdvae.config import load_config
from dpcdvae.structures.crystal import lattice_params_to_matrix, wrap
from dpcdvae.data import LatticeScaler
from dpcdvae.diffusion.ddpm import DDPMScheduler
from dpcdvae.diffusion.samplers import get_sampler
from dpcdvae.eval.stability import band_timesteps, fixed_point_probe, min_image_rms, select_indices
from dpcdvae.models import DPCDVAE
from dpcdvae.models.dpcdvae import check_coord_options, coord_loss, eq7_consistency_inputs


def _tiny_model(ds, **over):
    cfg = load_config("tiny", overrides={**over})
    torch.manual_seed(0)
    return DPCDVAE(cfg.model, LatticeScaler(cfg.model.lattice_scaler).fit(ds)), cfg


# ----------------------------------------------------------------------------------------------- coord_loss
def test_coord_loss_mean_is_the_entry_mean():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(7, 3, generator=g), torch.randn(7, 3, generator=g)
    batch = torch.tensor([0, 0, 0, 1, 1, 1, 1])
    assert float(coord_loss(a, b, batch, 2, "mean")) == pytest.approx(float(((a - b) ** 2).mean()))


def test_coord_loss_code_weighs_every_crystal_alike():
    # crystal 0: one atom with error 1 on x; crystal 1: three atoms without error
    pred = torch.zeros(4, 3)
    pred[0, 0] = 1.0
    true = torch.zeros(4, 3)
    batch = torch.tensor([0, 1, 1, 1])
    # code: per crystal sum over xyz then mean over atoms -> (1, 0); mean over crystals -> 0.5
    assert float(coord_loss(pred, true, batch, 2, "code")) == pytest.approx(0.5)
    # mean: 1 / 12 entries
    assert float(coord_loss(pred, true, batch, 2, "mean")) == pytest.approx(1.0 / 12.0)


def test_coord_loss_code_is_three_times_mean_for_equal_counts():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(10, 3, generator=g), torch.randn(10, 3, generator=g)
    batch = torch.arange(2).repeat_interleave(5)
    assert float(coord_loss(a, b, batch, 2, "code")) == pytest.approx(3.0 * float(coord_loss(a, b, batch, 2)))


def test_coord_loss_code_ignores_empty_crystals():
    a, b = torch.ones(2, 3), torch.zeros(2, 3)
    batch = torch.tensor([0, 2])  # crystal 1 has no atom
    assert float(coord_loss(a, b, batch, 3, "code")) == pytest.approx(3.0)


def test_coord_loss_unknown_reduction():
    with pytest.raises(ValueError, match="model.coord_loss"):
        coord_loss(torch.zeros(1, 3), torch.zeros(1, 3), torch.zeros(1, dtype=torch.long), 1, "sum")


# ----------------------------------------------------------------------------------------------- eq7 consistency
def _x0(n_per=(4, 6), seed=0):
    g = torch.Generator().manual_seed(seed)
    batch = torch.arange(len(n_per)).repeat_interleave(torch.tensor(n_per))
    x0 = torch.rand(int(sum(n_per)), 3, generator=g, dtype=torch.float64)
    return x0, batch


def test_eq7_consistency_makes_the_truth_a_fixed_point_of_eq7():
    """The docstring's promise: Eq. 7's clean-sample estimate from the new input and target is x0 modulo 1."""
    sched = DDPMScheduler(1000)
    x0, batch = _x0()
    B = 2
    eps = torch.randn_like(x0)
    t = torch.tensor([10, 20])
    frac_t = wrap(sched.add_noise(x0, t[batch], eps))
    g = torch.Generator().manual_seed(3)
    r, target, t_new = eq7_consistency_inputs(sched, x0, frac_t, eps, t, batch, 1.0, (300, 650), (1.0, 2.0),
                                              generator=g)
    assert bool(((t_new >= 300) & (t_new <= 650)).all())
    assert bool(((r >= 0) & (r < 1)).all())
    x0_hat = sched.predict_x0(target, t_new[batch], r)
    d = x0_hat - x0
    assert torch.allclose(d, torch.round(d), atol=1e-9)
    # the input is the crystal plus c * sigma_t noise, c in [1, 2]
    sig = sched.posterior_std(t_new[batch])[:, None]
    dev = r - x0
    dev = dev - torch.round(dev)
    assert float(dev.abs().max()) > 0.0
    assert bool((dev.abs() <= 2.0 * sig * 6.0).all())  # 6 standard deviations at most


def test_eq7_consistency_probability_zero_and_one():
    sched = DDPMScheduler(1000)
    x0, batch = _x0()
    eps = torch.randn_like(x0)
    t = torch.tensor([10, 900])
    frac_t = wrap(sched.add_noise(x0, t[batch], eps))
    r, e, tn = eq7_consistency_inputs(sched, x0, frac_t, eps, t, batch, 0.0, (300, 650), (1.0, 2.0))
    assert r is frac_t and e is eps and tn is t
    # with a share of the crystals drawn, the others are unchanged
    g = torch.Generator().manual_seed(0)
    x0, batch = _x0(n_per=(3,) * 40)
    eps = torch.randn_like(x0)
    t = torch.full((40,), 999)
    frac_t = wrap(sched.add_noise(x0, t[batch], eps))
    r, e, tn = eq7_consistency_inputs(sched, x0, frac_t, eps, t, batch, 0.5, (300, 650), (1.0, 2.0), generator=g)
    changed = tn != 999
    assert 0 < int(changed.sum()) < 40
    same = ~changed[batch]
    assert torch.equal(r[same], frac_t[same]) and torch.equal(e[same], eps[same])


def test_eq7_consistency_argument_checks():
    sched = DDPMScheduler(1000)
    x0, batch = _x0()
    args = (sched, x0, x0, x0, torch.tensor([1, 1]), batch)
    with pytest.raises(ValueError, match="eq7_consistency_prob"):
        eq7_consistency_inputs(*args, 1.5, (300, 650), (1.0, 2.0))
    with pytest.raises(ValueError, match="eq7_consistency_t"):
        eq7_consistency_inputs(*args, 0.5, (650, 300), (1.0, 2.0))
    with pytest.raises(ValueError, match="eq7_consistency_noise"):
        eq7_consistency_inputs(*args, 0.5, (300, 650), (2.0, 1.0))


def test_check_coord_options_names_the_key(demo_train):
    cfg = load_config("tiny").model
    for key, value, match in (("coord_loss", "sum", "model.coord_loss"), ("eps_frame", "cart", "model.eps_frame"),
                              ("eq7_consistency_prob", 2.0, "eq7_consistency_prob"),
                              ("eq7_consistency_noise", ["a", 1], "eq7_consistency")):
        with pytest.raises(ValueError, match=match):  # refused when the config is made (dpcdvae.config.validate)
            load_config("tiny", overrides={f"model.{key}": value})
        bad = dataclasses.replace(cfg, **{key: value})  # a config made without the check, e.g. by hand
        with pytest.raises(ValueError, match=match):
            check_coord_options(bad)
    check_coord_options(cfg)
    # the t range is checked only when the augmentation is on (the tiny preset has T = 100)
    check_coord_options(load_config("tiny", overrides={"model.eq7_consistency_t": [300, 650]}).model)
    with pytest.raises(ValueError, match="eq7_consistency_t"):
        check_coord_options(load_config("tiny", overrides={"model.eq7_consistency_t": [300, 650],
                                                           "model.eq7_consistency_prob": 0.5}).model)
    with pytest.raises(ValueError, match="model.coord_loss"):
        _tiny_model(demo_train, **{"model.coord_loss": "sum"})


def test_training_step_with_every_option(demo_train):
    """Each option trains (finite loss, gradients) and the augmentation changes the coordinate loss."""
    batch = next(iter(DataLoader(demo_train, batch_size=8)))
    losses = {}
    for name, over in {"ours": {}, "code_loss": {"model.coord_loss": "code"},
                       "code_frame": {"model.eps_frame": "code"},
                       "aug": {"model.eq7_consistency_prob": 1.0, "model.eq7_consistency_t": [30, 65]}}.items():
        model, _ = _tiny_model(demo_train, **over)
        model.train()
        out = model(batch, generator=torch.Generator().manual_seed(5))
        assert torch.isfinite(out["loss"]), name
        out["loss"].backward()
        assert model.decoder.type_head.weight.grad is not None
        losses[name] = float(out["coord"].detach())
    assert losses["aug"] != pytest.approx(losses["ours"])
    assert losses["code_loss"] != pytest.approx(losses["ours"])


def test_augmentation_is_off_in_evaluation(demo_train):
    batch = next(iter(DataLoader(demo_train, batch_size=8)))
    a, _ = _tiny_model(demo_train)
    b, _ = _tiny_model(demo_train, **{"model.eq7_consistency_prob": 1.0, "model.eq7_consistency_t": [30, 65]})
    a.eval(), b.eval()
    with torch.no_grad():
        la = float(a(batch, generator=torch.Generator().manual_seed(2))["coord"])
        lb = float(b(batch, generator=torch.Generator().manual_seed(2))["coord"])
    assert la == pytest.approx(lb)


# ----------------------------------------------------------------------------------------------- eps_frame
def test_eps_frame_code_returns_the_cartesian_vector(demo_train):
    """``code`` returns F, ``fractional`` F @ inv(L): the same weights give eps_code = eps_frac @ L."""
    frac_m, _ = _tiny_model(demo_train)
    code_m, _ = _tiny_model(demo_train, **{"model.eps_frame": "code"})
    code_m.load_state_dict(frac_m.state_dict())
    batch = next(iter(DataLoader(demo_train, batch_size=4)))
    L = lattice_params_to_matrix(batch.lengths, batch.angles)
    z = torch.randn(batch.num_graphs, frac_m.cfg.latent_dim)
    t = torch.full((batch.num_graphs,), 5)
    with torch.no_grad():
        ef, _ = frac_m.decoder(batch.frac_coords, batch.atom_types, z, t, L, batch.batch, batch.num_atoms)
        ec, _ = code_m.decoder(batch.frac_coords, batch.atom_types, z, t, L, batch.batch, batch.num_atoms)
    back = torch.bmm(ef.unsqueeze(1), L.index_select(0, batch.batch)).squeeze(1)
    assert torch.allclose(back, ec, atol=1e-4)
    assert not torch.allclose(ef, ec, atol=1e-3)


def test_eps_frame_unknown_value():
    from dpcdvae.nets.gemnet import GemNetTDenoiser
    with pytest.raises(ValueError, match="eps_frame"):
        GemNetTDenoiser(latent_dim=8, num_blocks=1, emb_size_atom=8, emb_size_edge=8, emb_size_trip=4,
                        emb_size_rbf=4, emb_size_cbf=4, emb_size_bil_trip=4, num_radial=4, type_emb_dim=4,
                        time_emb_dim=4, fit_scales=False, eps_frame="cart")


# ----------------------------------------------------------------------------------------------- explicit steps
def test_strided_sampler_takes_an_explicit_list():
    sched = DDPMScheduler(1000)
    smp = get_sampler("strided_eq7")
    assert smp.timesteps(sched, [5, 700, 5, 300]) == [700, 300, 5]
    assert smp.timesteps(sched, 10) == sched.make_timesteps(10)
    with pytest.raises(ValueError, match="1..1000"):
        smp.timesteps(sched, [0, 10])
    with pytest.raises(ValueError):
        get_sampler("eq7").timesteps(sched, 10)


def test_sample_from_latent_with_explicit_steps(demo_train):
    model, _ = _tiny_model(demo_train)
    model.eval()
    z = torch.randn(3, model.cfg.latent_dim, generator=torch.Generator().manual_seed(0))
    out = model.sample_from_latent(z, sampler="strided_eq7", steps=[90, 50, 10], generator=torch.Generator())
    assert out.meta["steps"] == 3
    # the explicit evenly spaced list is the strided sampler with that count, noise for noise
    T = model.scheduler.num_train_timesteps
    ts = model.scheduler.make_timesteps(4)
    a = model.sample_from_latent(z, sampler="strided_eq7", steps=ts, generator=torch.Generator().manual_seed(1))
    b = model.sample_from_latent(z, sampler="strided_eq7", steps=4, generator=torch.Generator().manual_seed(1))
    assert T == 100 and torch.equal(a.frac_coords, b.frac_coords)


# ----------------------------------------------------------------------------------------------- the screen
def test_band_timesteps():
    sched = DDPMScheduler(1000)
    base = band_timesteps(sched, 100, None)
    assert base == sched.make_timesteps(100)
    banded = band_timesteps(sched, 100, (350, 450))
    assert set(base) <= set(banded) and set(range(351, 451)) <= set(banded)
    assert len(banded) == 100 + 100 - 10  # ten of the strided steps lie in the band already
    assert banded == sorted(banded, reverse=True)
    with pytest.raises(ValueError, match="band"):
        band_timesteps(sched, 100, (450, 350))


def test_select_indices():
    assert select_indices([4, 20, 6, 12, 13, 2], 3, 12) == [0, 2, 3]
    assert select_indices([4, 20, 6], 5, None) == [0, 1, 2]
    assert select_indices([20, 24], 3, 12) == []


def test_min_image_rms_known_displacement_and_translation():
    L = torch.diag(torch.tensor([4.0, 5.0, 10.0]))[None].repeat(2, 1, 1)
    batch = torch.tensor([0, 0, 0, 1, 1])
    a = torch.tensor([[0.1, 0.2, 0.3], [0.5, 0.5, 0.5], [0.9, 0.95, 0.0], [0.2, 0.2, 0.2], [0.7, 0.7, 0.7]])
    # a rigid translation by almost half a cell (and across the boundary) is no drift
    b = wrap(a + torch.tensor([0.49, -0.3, 0.5]))
    assert torch.allclose(min_image_rms(a, b, L, batch, 2), torch.zeros(2), atol=1e-5)
    # crystal 1: its two atoms move +-0.01 along x (4 A cell): 0.04 A each, no net translation
    c = a.clone()
    c[3, 0] += 0.01
    c[4, 0] -= 0.01
    r = min_image_rms(a, c, L, batch, 2)
    assert float(r[0]) == pytest.approx(0.0, abs=1e-6) and float(r[1]) == pytest.approx(0.04, rel=1e-3)


class _OracleDecoder(torch.nn.Module):
    """Stands in for GemNet-T: returns the noise that makes Eq. 7's estimate the given truth (or zero)."""

    def __init__(self, sched, truth, zero=False):
        super().__init__()
        self.sched, self.truth, self.zero = sched, truth, zero

    def forward(self, frac, types, z, t, lattice, batch, num_atoms):
        if self.zero:
            return torch.zeros_like(frac), None
        abar = self.sched.alpha_bar(t[batch]).to(frac)[:, None]
        d = frac - self.truth
        x0p = self.truth + torch.round(d)  # the image of the truth nearest the input
        return (frac - abar.sqrt() * x0p) / (1 - abar).sqrt(), None


def test_fixed_point_probe_oracle_keeps_and_zero_noise_breaks(demo_train):
    """An oracle denoiser keeps the truth (100 % matched, drift ~ sigma_t); a zero prediction at a step where
    1 / sqrt(abar_t) is far from 1 scales the crystal away (drift grows with the repeats)."""
    from torch_geometric.data import Batch

    from dpcdvae.models.dpcdvae import _recenter

    model, _ = _tiny_model(demo_train)
    model.eval()
    items = [demo_train[i] for i in range(4)]
    batch = Batch.from_data_list(items)
    targets = [demo_train.get_structure(i) for i in range(4)]
    x0 = _recenter(batch.frac_coords, batch.batch, batch.num_graphs)
    model.decoder = _OracleDecoder(model.scheduler, wrap(x0))
    res = fixed_point_probe(model, batch, targets, t=20, repeats=(1, 5))
    assert set(res) == {1, 5}
    sig = float(model.scheduler.posterior_std(20))
    for k in (1, 5):
        assert res[k]["match_rate"] == 100.0
        assert res[k]["coordination"] == res[k]["coordination_truth"]
    assert res[5]["rms_drift_A"] < 10 * sig * 10.0  # cells of a few A; drift of the order of sigma_t x length
    model.decoder = _OracleDecoder(model.scheduler, None, zero=True)
    bad = fixed_point_probe(model, batch, targets, t=90, repeats=(1, 5))
    assert bad[5]["rms_drift_A"] > bad[1]["rms_drift_A"] > res[1]["rms_drift_A"]
    with pytest.raises(ValueError, match="t must lie"):
        fixed_point_probe(model, batch, targets, t=0)
    assert math.isfinite(bad[5]["rms_drift_A"])


# ----------------------------------------------------------------------------------------------- eps_target
def test_wrapped_eps_target_makes_eq7_exact_and_the_paper_target_does_not():
    """The docstring's promise: Eq. 7's estimate from eps_w is x0 modulo 1 at every t; from the paper's unwrapped
    eps it is off by m (1 / sqrt(abar_t) - 1) wherever the noisy point crossed the boundary."""
    from dpcdvae.models.dpcdvae import wrapped_eps_target

    sched = DDPMScheduler(1000)
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(400, 3, generator=g, dtype=torch.float64) - 0.5  # recentred-like coordinates
    eps = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    for tv in (1, 350, 600, 1000):
        t = torch.full((400,), tv)
        x_t = sched.add_noise(x0, t, eps)
        frac = wrap(x_t)
        ew = wrapped_eps_target(sched, eps, x_t, frac, t)
        d = sched.predict_x0(ew, t, frac) - x0
        assert torch.allclose(d, torch.round(d), atol=1e-9), tv
        m = torch.round(frac - x_t)
        assert torch.equal(ew[m == 0], eps[m == 0])
        d_paper = sched.predict_x0(eps, t, frac) - x0
        off = d_paper - torch.round(d_paper)
        expect = m * (1.0 / sched.alpha_bar(t)[:, None].sqrt() - 1.0)
        expect = expect - torch.round(expect)
        assert torch.allclose(off, expect, atol=1e-9), tv
        if tv >= 350:
            assert float(off.abs().max()) > 1e-3


def test_eps_target_option_changes_the_training_target(demo_train):
    batch = next(iter(DataLoader(demo_train, batch_size=8)))
    vals = {}
    for target in ("unwrapped", "wrapped"):
        model, _ = _tiny_model(demo_train, **{"model.eps_target": target})
        vals[target] = float(model(batch, generator=torch.Generator().manual_seed(4))["coord"].detach())
    assert vals["wrapped"] != pytest.approx(vals["unwrapped"])
    with pytest.raises(ValueError, match="eps_target"):
        load_config("tiny", overrides={"model.eps_target": "cartesian"})
