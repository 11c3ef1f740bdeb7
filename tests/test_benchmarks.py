"""The speed benchmarks' harness: each case times the model's own sampler, stops it after the timed steps, and
reports the median of the repeats with their spread (benchmarks/bench_sampling.py)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _module(name: str):
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
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
