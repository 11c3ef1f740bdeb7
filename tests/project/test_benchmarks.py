"""The speed benchmarks' harness: each case times the model's own sampler, stops it after the timed steps, and
reports the median of the repeats with their spread (benchmarks/bench_sampling.py)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _module(name: str):
    sys.path.insert(0, str(BENCH))
    try:
        path = next(d / f"{name}.py" for d in (BENCH, BENCH.parent / "experiments") if (d / f"{name}.py").exists())
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod
    finally:
        sys.path.remove(str(BENCH))


@pytest.mark.parametrize("config", ["compact", "published"])
def test_sampling_case_times_the_models_own_sampler(config):
    bench = _module("bench_sampling")
    import dpcdvae.nets.gemnet as gemnet_mod

    graph_fn = gemnet_mod.radius_graph_pbc
    r = bench.run_case(config, "perov", batch_size=2, warmup=1, steps=2, repeats=3, device="cpu")
    assert gemnet_mod.radius_graph_pbc is graph_fn  # the timing hook is removed afterwards
    assert r["repeats"] == 3 and r["steps_per_repeat"] == 2 and r["batch_size"] == 2
    assert r["min"] <= r["structure_steps_per_s"] <= r["max"]
    assert r["spread"] == pytest.approx((r["max"] - r["min"]) / r["structure_steps_per_s"])
    assert 0.0 < r["graph_frac"] < 1.0
    # the published architecture is the 548-wide one (project_input=false), the compact one is small
    if config == "published":
        assert r["decoder_parameters"] > 8_000_000
    else:
        assert r["decoder_parameters"] < 1_000_000



def test_sampling_anchor_is_the_figure_given():
    bench = _module("bench_sampling")
    r = bench.anchor_ratios({"perov_steps_per_s_published": 250.0}, {"perov": 100.0, "carbon": 67.5})
    assert r == {"perov_authors_anchor": 100.0, "perov_authors_anchor_is_reference_cpu": False,
                 "perov_published_vs_authors_anchor": 2.5}
    r = bench.anchor_ratios({"carbon_steps_per_s_published": 135.0}, dict(bench.AUTHORS))
    assert r["carbon_authors_anchor_is_reference_cpu"] is True and r["carbon_published_vs_authors_anchor"] == 2.0


def test_ab_swap_probe_counts_pairs_and_detects_an_echoing_head(demo_train):
    """The A-B pairs are found on synthetic perovskites; the counts are bounded by them; and a type head forced to
    echo its input (a stand-in for an untrained one) 'copies' every exchanged pair and 'repairs' none."""
    import torch
    from torch_geometric.loader import DataLoader

    from dpcdvae.config import load_config
    from dpcdvae.data import LatticeScaler
    from dpcdvae.models import DPCDVAE

    probe_mod = _module("probe_ab_swaps")
    batch = next(iter(DataLoader(demo_train, batch_size=16)))
    pairs = probe_mod.ab_pairs(batch.frac_coords, batch.ptr, batch.atom_types)
    assert pairs, "the synthetic perovskites have A-B pairs"
    for b, (i, j) in pairs.items():
        assert batch.ptr[b] <= i < j < batch.ptr[b + 1] and batch.atom_types[i] != batch.atom_types[j]
    cfg = load_config("tiny")
    torch.manual_seed(0)
    model = DPCDVAE(cfg.model, LatticeScaler(cfg.model.lattice_scaler).fit(demo_train))
    r = probe_mod.probe(model, batch, tsteps=(10, 50), draws=2)  # the tiny config has T = 100
    assert r["n_pairs"] == len(pairs)
    assert all(0 <= c <= len(pairs) for c in r["denoiser_prefers_true"].values())

    class Echo(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, frac, types, *args):
            eps, _ = self.inner(frac, types, *args)
            return eps, torch.nn.functional.one_hot(types - 1, 100).float() * 10.0

    model.decoder = Echo(model.decoder)
    r = probe_mod.probe(model, batch, tsteps=(10,), draws=1)
    assert r["head_copies"] == len(pairs) and r["head_repairs"] == 0 and r["head_keeps_true"] == len(pairs)


def test_ab_orientation_reads_the_a_and_b_cations(srtio3):
    data = _module("ab_orientation_data")
    assert data.a_b_elements(srtio3) == ("Sr", "Ti")
    swapped = srtio3.copy()
    swapped.replace(0, "Ti")
    swapped.replace(1, "Sr")
    assert data.a_b_elements(swapped) == ("Ti", "Sr")  # the octahedral site (anions at a/2) is B whatever sits there
    from pymatgen.core import Lattice, Structure

    assert data.a_b_elements(Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0, 0]])) is None


def test_displacement_probe_helpers_measure_what_they_say():
    """grid_offset is 0 for ideal perovskite sites whatever the origin and the displacement otherwise;
    normalised_rms is 0 for a shifted copy and the Cartesian RMS / (V/N)^(1/3) for a known displacement."""
    import torch

    probe_mod = _module("probe_displacements")
    ideal = torch.tensor([[0, 0, 0], [.5, .5, .5], [.5, .5, 0], [.5, 0, .5], [0, .5, .5]], dtype=torch.float64)
    moved = ideal.clone()
    moved[1, 0] += 0.13  # B cation displaced along a
    frac = torch.cat([(ideal + 0.37) % 1.0, moved])
    ptr = torch.tensor([0, 5, 10])
    off = probe_mod.grid_offset(frac, ptr)
    assert off[0] == pytest.approx(0.0, abs=1e-9) and off[1] == pytest.approx(0.13, abs=1e-9)
    lat = (4.0 * torch.eye(3, dtype=torch.float64)).expand(2, 3, 3)
    rms = probe_mod.normalised_rms(torch.cat([(ideal + 0.2) % 1.0, moved]), torch.cat([ideal, ideal]), lat, ptr)
    assert rms[0] == pytest.approx(0.0, abs=1e-9)
    # one atom off by 0.13 a; the best common shift moves all five by 0.13/5 along a
    d = torch.full((5,), -0.026, dtype=torch.float64)
    d[1] = 0.13 - 0.026
    expect = float((d * 4.0).pow(2).mean().sqrt() / (64.0 / 5) ** (1 / 3))
    assert rms[1] == pytest.approx(expect, rel=1e-6)


def test_displacement_probe_runs_on_a_tiny_model(demo_train):
    """The probe's counts are bounded by the crystals of each kind, and the synthetic (ideal) perovskites are all
    counted on the grid."""
    import torch
    from torch_geometric.loader import DataLoader

    from dpcdvae.config import load_config
    from dpcdvae.data import LatticeScaler
    from dpcdvae.models import DPCDVAE

    probe_mod = _module("probe_displacements")
    batch = next(iter(DataLoader(demo_train, batch_size=8)))
    cfg = load_config("tiny")
    torch.manual_seed(0)
    model = DPCDVAE(cfg.model, LatticeScaler(cfg.model.lattice_scaler).fit(demo_train))
    r = probe_mod.probe(model, batch, t0s=(5, 20))  # the tiny config has T = 100
    assert r["n_displaced"] + r["n_on_grid"] == 8
    for d in r["per_t0"].values():
        assert 0 <= d["displaced_kept"] <= r["n_displaced"] and 0 <= d["on_grid_displaced"] <= r["n_on_grid"]
        assert d["rms_sum_on_grid"] >= 0.0


def test_eq7_eq6_switch_experiment_is_eq7_above_and_eq6_below():
    """The experiment's sampler: Eq. 7 above the switch, the marginal re-noise at it, Eq. 6 below."""
    import torch

    from dpcdvae.diffusion import DDPMScheduler
    from dpcdvae.diffusion.samplers import SAMPLERS, get_sampler

    mod = _module("eq7_eq6_switch")
    name = mod.sampler_name(30)
    try:
        assert mod.sampler_name(0) == "eq7" and mod.sampler_name(30) == name
        smp = get_sampler(name)
        sch = DDPMScheduler(100, "sigmoid")
        g = torch.Generator().manual_seed(5)
        x, eps, noise = (torch.randn(7, 3, generator=g) for _ in range(3))
        for t, ref in ((60, "eq7"), (31, "eq7"), (29, "eq6"), (1, "eq6")):
            got = smp.step(sch, eps, torch.tensor(t), x, noise).prev_sample
            assert torch.equal(got, get_sampler(ref).step(sch, eps, torch.tensor(t), x, noise).prev_sample)
        out = smp.step(sch, eps, torch.tensor(30), x, noise)
        abar29 = float(sch.alpha_bar(29))
        assert torch.allclose(out.prev_sample, abar29 ** 0.5 * out.pred_original_sample + (1 - abar29) ** 0.5 * noise,
                              atol=1e-6)
    finally:
        SAMPLERS.pop(name, None)


def test_training_case_runs_the_published_network_with_constant_weights():
    """bench_train's default zero learning rate keeps the weights at their initial values (the published network
    diverges within a few steps at lr 1e-3 from random weights, which made the benchmark crash), while a real rate
    moves them."""
    bench = _module("bench_train")
    r = bench.run_case("published", batch_size=4, warmup=1, steps=3, device="cpu", overrides={})
    assert r["lr"] == 0.0 and r["max_weight_change"] == 0.0
    assert r["timed_steps"] == 3 and r["min"] <= r["structures_per_s"] <= r["max"]
    assert r["num_parameters"] > 10_000_000  # the 548-wide GemNet-T, not the projected one
    moved = bench.run_case("compact", batch_size=4, warmup=0, steps=1, device="cpu", overrides={}, lr=1e-3)
    assert moved["max_weight_change"] > 0.0


def test_full_sampling_run_times_every_batch_and_projects_when_stopped():
    bench = _module("full_sampling_run")
    r = bench.full_run("compact", "perov", n=5, batch_size=2, overrides={"model.timesteps": 2})
    assert r["n_sampled"] == 5 and len(r["per_batch_s"]) == 3 and not r["projected"]
    assert r["wall_s"] == pytest.approx(r["measured_s"])
    assert r["structure_steps_per_s"] == pytest.approx(5 * 2 / r["wall_s"])
    assert r["goal_met"] is False  # 2 steps and 5 crystals are not the goal's run
    stopped = bench.full_run("compact", "perov", n=5, batch_size=2, overrides={"model.timesteps": 2},
                             max_seconds=0.0)
    assert stopped["projected"] and stopped["n_sampled"] == 2
    assert stopped["wall_s"] == pytest.approx(stopped["measured_s"] * 5 / 2)


def test_gemm_benchmark_reports_every_shape_and_backend(capsys):
    from dpcdvae.nets.gemm import onednn_available

    out = _module("bench_gemm").main(["--threads", "1", "--repeats", "1", "--calls", "1"])
    assert [(c["rows"], c["in"], c["out"]) for c in out["cases"]] == _module("bench_gemm").SHAPES
    for c in out["cases"]:
        assert c["forward_torch"] > 0 and c["grad_input_torch"] > 0 and c["grad_weight_torch"] > 0
        assert ("forward_onednn" in c) == onednn_available()
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith('{"bench": "gemm"')


def test_protocol_projection_arithmetic():
    bench = _module("bench_protocol")
    s = bench._stage(2.0, 4, 10_240, True, 2)
    assert s["per_item_ms"] == pytest.approx(500.0) and s["one_core_s"] == pytest.approx(5120.0)
    assert s["workers_s"] == pytest.approx(2560.0) and s["how"] == "projected"
    s = bench._stage(2.0, 4, 10_240, False, 2)          # a serial stage is not divided among the workers
    assert s["workers_s"] == s["one_core_s"]
    assert bench._stage(1.0, 8, 8, True, 1)["how"] == "measured"


def test_protocol_table2_times_every_stage(shared_data_dir, monkeypatch):
    monkeypatch.setenv("DPCDVAE_DATA", str(shared_data_dir))
    bench = _module("bench_protocol")
    import torch

    with torch.no_grad():
        r = bench.table2("perov_5", 2, 2)
    assert set(r["stages"]) == {"sampling", "validity", "fingerprints_generated", "magpie_generated",
                                "eform_generated", "cov"}
    assert r["stages"]["sampling"]["target_n"] == 10_240 and r["stages"]["eform_generated"]["target_n"] == 1_000
    assert r["reference"]["parse_split"]["n"] == 3785
    assert r["total_workers_cold_s"] >= r["total_workers_warm_s"] > 0
    assert r["goal_s"] == 1200 and r["goal_met"] == (r["total_workers_warm_s"] <= 1200)
    rates = r["fingerprints_per_s_one_core"]
    assert rates["default"] in rates and rates[rates["default"]] > 0
