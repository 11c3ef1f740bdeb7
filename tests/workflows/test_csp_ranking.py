"""Issue 28, item 5a: CSP candidates come ranked, with the ranking and its basis in the output: by CHGNet energy with
``--rank chgnet``, otherwise (default) by the bond-valence global instability index (GII), a stated geometric proxy
that puts the real SrTiO3 perovskite above the A/B-exchanged cell the shipped model mostly samples."""
from __future__ import annotations

import json

import pytest

from dpcdvae.cli import main
from dpcdvae.eval.plausibility import global_instability_index


def _perovskite(a_site: str, b_site: str, a: float = 3.905):
    from pymatgen.core import Lattice, Structure

    return Structure(Lattice.cubic(a), [a_site, b_site, "O", "O", "O"],
                     [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])


def test_gii_separates_the_perovskite_from_the_exchanged_cell():
    real, why = global_instability_index(_perovskite("Sr", "Ti"))
    swapped, _ = global_instability_index(_perovskite("Ti", "Sr"))
    assert why is None and real == pytest.approx(0.294, abs=0.01) and swapped == pytest.approx(4.13, abs=0.05)


def test_gii_says_why_it_cannot_rank():
    from pymatgen.core import Lattice, Structure

    gii, why = global_instability_index(Structure(Lattice.cubic(3.57), ["C", "C"], [[0, 0, 0], [0.25, 0.25, 0.25]]))
    assert gii is None and "one element" in why


class _Out:
    """The part of a SampleOutput that rank_by_proxy reads."""

    def __init__(self, structures, valid):
        self.structures, self.valid_mask = structures, valid
        self.ids = [f"c{i}" for i in range(len(structures))]

    def __len__(self):
        return len(self.structures)


def test_rank_by_proxy_orders_and_writes_the_basis(tmp_path):
    from dpcdvae.workflows import rank_by_proxy

    out = _Out([_perovskite("Ti", "Sr"), _perovskite("Sr", "Ti"), _perovskite("Sr", "Ti", a=3.0)], [True, True, False])
    table = rank_by_proxy(out, run_dir=tmp_path)
    assert [r["id"] for r in table] == ["c1", "c0", "c2"] and [r["rank"] for r in table] == [1, 2, None]
    data = json.loads((tmp_path / "ranking.json").read_text())
    assert data["rank_by"] == "gii" and "global instability index" in data["basis"] and "not an energy" in data["basis"]
    assert (tmp_path / "ranked" / "01_c1.cif").is_file() and data["candidates"][2]["error"].startswith("not valid")


def test_csp_cli_ranks_by_default(tmp_path, capsys):
    rc = main(["csp", "--checkpoint", "pretrained:perov_5", "--composition", "SrTiO3", "--n", "4", "--sampler",
               "strided_eq7", "--steps", "5", "--out", str(tmp_path / "r")])
    cap = capsys.readouterr()
    assert rc in (0, None), cap.err
    summary = json.loads(cap.out.strip().splitlines()[-1])
    assert summary["rank_by"] == "gii" and summary["ranking"].endswith("ranking.json")
    assert "ranked by bond-valence global instability index" in cap.err
    data = json.loads((tmp_path / "r" / "ranking.json").read_text())
    ranked = [c["gii"] for c in data["candidates"] if c["rank"] is not None]
    assert ranked == sorted(ranked) and len(ranked) == summary["n_ranked"]
    rc = main(["csp", "--checkpoint", "pretrained:perov_5", "--composition", "SrTiO3", "--n", "2", "--sampler",
               "strided_eq7", "--steps", "2", "--rank", "none", "--out", str(tmp_path / "n")])
    assert rc in (0, None) and not (tmp_path / "n" / "ranking.json").exists()
