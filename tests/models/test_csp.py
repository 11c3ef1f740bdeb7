"""Structure prediction from a composition (CSP mode): the output always has the requested composition."""
from __future__ import annotations

import json

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dpcdvae.cli import main
from dpcdvae.models.csp import allowed_num_atoms, parse_composition


@pytest.fixture(scope="module")
def model():
    from dpcdvae import load_pretrained

    return load_pretrained("perov_5")


def test_parse_composition_reduces_and_refuses_bad_formulas():
    assert parse_composition("Sr2Ti2O6") == {38: 1, 22: 1, 8: 3}
    assert parse_composition({"C": 8}) == {6: 1}
    for bad in ("SrTiO3.5", "", "Xx2"):
        with pytest.raises(ValueError):
            parse_composition(bad)


def test_allowed_num_atoms():
    assert allowed_num_atoms({38: 1, 22: 1, 8: 3}, 20) == [5, 10, 15, 20]
    assert allowed_num_atoms({6: 1}, 4) == [1, 2, 3, 4]
    assert allowed_num_atoms({38: 1, 22: 1, 8: 3}, 20, num_atoms=10) == [10]
    for n in (7, 25, 0):
        with pytest.raises(ValueError):
            allowed_num_atoms({38: 1, 22: 1, 8: 3}, 20, num_atoms=n)


def _perov5_elements() -> list[int]:
    from pymatgen.core import Element

    from dpcdvae.data.registry import get_spec

    return [Element(s).Z for s in get_spec("perov_5").elements]


ELEMENTS = _perov5_elements()  # what the perov_5 model saw in training (others are refused, tests/models/test_model_scope.py)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(comp=st.dictionaries(st.sampled_from(ELEMENTS), st.integers(1, 3), min_size=1, max_size=3),
       latent=st.sampled_from(["prior", "search"]), seed=st.integers(0, 10_000))
def test_candidates_have_exactly_the_requested_composition(model, comp, latent, seed):
    from pymatgen.core import Composition, Element

    formula = Composition({Element.from_Z(z).symbol: c for z, c in comp.items()})
    counts = parse_composition(formula)
    allowed = allowed_num_atoms(counts, model.cfg.max_atoms)
    out = model.predict_structure(formula, n=3, latent=latent, sampler="strided_eq7", steps=2, seed=seed,
                                  search_steps=5)
    n_f = sum(counts.values())
    assert len(out) == 3 and out.meta["csp"]["latent"] == latent
    start = 0
    for b, n in enumerate(out.num_atoms.tolist()):
        assert n in allowed
        types = out.atom_types[start:start + n].tolist()
        start += n
        assert sorted(types) == sorted(z for z, c in counts.items() for _ in range(c * (n // n_f)))
        s = out.structures[b]
        if s is not None:
            assert s.composition.reduced_composition == formula.reduced_composition


def test_search_lowers_the_composition_cross_entropy_and_is_seeded(model):
    a = model.predict_structure("BaTiO3", n=6, latent="search", sampler="strided_eq7", steps=2, seed=3)
    b = model.predict_structure("BaTiO3", n=6, latent="search", sampler="strided_eq7", steps=2, seed=3)
    c = a.meta["csp"]
    assert all(e < s for s, e in zip(c["comp_ce_start"], c["comp_ce_end"]))
    assert all(e >= 0.9502 for e in c["comp_ce_end"])  # never below the entropy of (0.2, 0.2, 0.6)
    assert torch.equal(a.frac_coords, b.frac_coords) and a.meta["csp"] == b.meta["csp"]


def test_num_atoms_is_forced(model):
    out = model.predict_structure("SrTiO3", n=2, num_atoms=10, latent="prior", sampler="strided_eq7", steps=2)
    assert out.num_atoms.tolist() == [10, 10]


def test_cli_csp_writes_candidates_and_refuses_bad_requests(tmp_path, capsys):
    rc = main(["csp", "--checkpoint", "pretrained:perov_5", "--composition", "KNbO3", "--n", "3",
               "--sampler", "strided_eq7", "--steps", "2", "--out", str(tmp_path / "o")])
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rc == 0 and res["composition"] == "KNbO3" and res["n"] == 3
    data = json.loads((tmp_path / "o" / "samples.json").read_text())
    assert data["meta"]["csp"]["composition"] == "KNbO3" and data["n"] == 3
    for argv, needle in [(["--composition", "KNbO3.5"], "fractional"), (["--composition", "KNbO3", "--num-atoms", "6"],
                                                                        "multiple"),
                         (["--composition", "KNbO3", "--n", "0"], "--n 0")]:
        rc = main(["csp", "--checkpoint", "pretrained:perov_5", "--out", str(tmp_path / "x"), *argv])
        err = capsys.readouterr().err
        assert rc == 2 and needle in err and "Traceback" not in err


def test_batched_requests_keep_each_composition(model):
    from dpcdvae.models.csp import predict_structures

    comps, sizes = ["SrTiO3", "KNbO3", "Si", "NaF"], [5, 10, 4, None]
    out = predict_structures(model, comps, sizes, latent="search", sampler="strided_eq7", steps=2, seed=1,
                             search_steps=3, batch_size=3, ids=["a", "b", "c", "d"])
    assert out.ids == ["a", "b", "c", "d"] and out.num_atoms.tolist()[:3] == [5, 10, 4]
    assert out.meta["csp"]["composition"] == ["SrTiO3", "KNbO3", "Si", "NaF"]
    for s, c in zip(out.structures, comps):
        assert s is None or s.composition.reduced_formula == c
    with pytest.raises(ValueError, match=r"Og \(Z > 100\)"):
        predict_structures(model, ["Og2"], latent="prior", sampler="strided_eq7", steps=2)


def test_forced_lattice_is_kept_and_needs_both_parts(model):
    """sample_from_latent(lengths=, angles=): the crystals have exactly that lattice; N_a forced too."""
    g = torch.Generator().manual_seed(0)
    z = torch.randn(3, model.cfg.latent_dim, generator=g)
    lengths = torch.tensor([[3.9, 3.9, 3.9], [4.1, 4.2, 4.3], [5.0, 5.0, 7.5]])
    angles = torch.tensor([[90.0, 90.0, 90.0], [88.0, 91.0, 95.0], [90.0, 90.0, 120.0]])
    out = model.sample_from_latent(z, sampler="strided_eq7", steps=5, generator=g, num_atoms=torch.tensor([5, 5, 10]),
                                   lengths=lengths, angles=angles)
    assert torch.equal(out.lengths, lengths) and torch.equal(out.angles, angles)
    assert out.num_atoms.tolist() == [5, 5, 10]
    for s, ln in zip(out.structures, lengths.tolist()):
        assert s.lattice.abc == pytest.approx(ln, abs=1e-4)
    with pytest.raises(ValueError, match="both lengths and angles"):
        model.sample_from_latent(z, sampler="strided_eq7", steps=2, lengths=lengths)


class _VolumePredictor:
    """A stand-in batch predictor: energy = -(volume per atom) per atom, so the ranking is known in advance."""

    def __call__(self, atoms_list):
        return [{"energy": -a.get_volume(), "forces": None, "stress": None} for a in atoms_list]


def test_rank_candidates_orders_valid_candidates_by_energy(model, tmp_path):
    from dpcdvae.workflows import rank_candidates

    out = model.predict_structure("SrTiO3", n=6, sampler="strided_eq7", steps=5, seed=1)
    out.structures[2] = None  # an undecoded candidate: never ranked
    out.flags[2] = "N_a = 0"
    out._validity = None
    table = rank_candidates(out, run_dir=tmp_path, calculator=_VolumePredictor(), progress=False)
    ranked = [r for r in table if r["rank"] is not None]
    assert [r["rank"] for r in ranked] == list(range(1, len(ranked) + 1))
    energies = [r["energy_per_atom"] for r in ranked]
    assert energies == sorted(energies)
    vols = {str(i): s.volume / len(s) for i, s in zip(out.ids, out.structures) if s is not None}
    for r in ranked:
        assert r["energy_per_atom"] == pytest.approx(-vols[r["id"]], rel=1e-9)
    unranked = [r for r in table if r["rank"] is None]
    assert "csp-2" in [r["id"] for r in unranked] and all(not r["valid"] for r in unranked)
    saved = json.loads((tmp_path / "ranking.json").read_text())
    assert [c["id"] for c in saved["candidates"]] == [r["id"] for r in table]
    assert sorted(p.name for p in (tmp_path / "ranked").glob("*.cif")) == [
        f"{r['rank']:02d}_{r['id']}.cif" for r in ranked]
    with pytest.raises(ValueError, match="relax_steps"):
        rank_candidates(out, relax_steps=-1)


def test_csp_cli_relax_steps_needs_rank(tmp_path, capsys):
    code = main(["csp", "--checkpoint", "pretrained:perov_5", "--composition", "SrTiO3", "--n", "2",
                 "--relax-steps", "5", "--out", str(tmp_path / "x")])
    assert code == 2
    assert "--relax-steps 5" in capsys.readouterr().err


def test_csp_cli_ranks_with_chgnet(tmp_path, capsys):
    pytest.importorskip("chgnet", reason="CHGNet is an optional dependency (the [relax] extra)")
    code = main(["csp", "--checkpoint", "pretrained:perov_5", "--composition", "SrTiO3", "--n", "3",
                 "--sampler", "strided_eq7", "--steps", "5", "--rank", "chgnet", "--out", str(tmp_path / "r")])
    assert code in (0, None)
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    ranking = json.loads((tmp_path / "r" / "ranking.json").read_text())
    ranked = [c for c in ranking["candidates"] if c["rank"] is not None]
    assert summary["n_ranked"] == len(ranked) >= 1 and summary["best"] == ranked[0]["id"]
    e = [c["energy_per_atom"] for c in ranked]
    assert e == sorted(e) and all(-20.0 < x < 5.0 for x in e)  # eV/atom, a sane range for an oxide
