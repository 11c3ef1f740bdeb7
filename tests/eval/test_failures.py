"""Why reconstructions miss (dpcdvae.eval.failures): each category on hand-made perovskites, the breakdown end to
end, and the command-line options. No real data needed."""
import json
import warnings

import pandas as pd
import pytest

pytest.importorskip("pymatgen")
pytest.importorskip("smact")
from pymatgen.core import Lattice, Structure  # noqa: E402

from dpcdvae.eval.failures import CATEGORIES, classify_miss, failure_breakdown, render_breakdown  # noqa: E402
from dpcdvae.eval.reconstruction import reconstruction_metrics  # noqa: E402

from conftest import write_perov5_csvs  # noqa: E402

SITES = [[0, 0, 0], [.5, .5, .5], [.5, .5, 0], [.5, 0, .5], [0, .5, .5]]  # A, B, X, X, X


def perovskite(species=("Sr", "Ti", "O", "O", "O"), a=3.9, coords=SITES):
    return Structure(Lattice.cubic(a), list(species), coords)


@pytest.fixture(autouse=True)
def _quiet(tmp_path, monkeypatch):
    monkeypatch.setenv("DPCDVAE_CACHE", str(tmp_path / "cache"))
    warnings.filterwarnings("ignore")


def test_a_and_b_exchanged_is_a_swap_and_names_the_pair():
    cat, pair = classify_miss(perovskite(("Ti", "Sr", "O", "O", "O")), perovskite())
    assert cat == "swap" and pair == ("Sr", "Ti")


def test_a_cation_on_an_anion_site_is_a_swap():
    target = perovskite(("Sr", "Ti", "N", "O", "F"))
    pred = perovskite(("N", "Ti", "Sr", "O", "F"))  # Sr and N exchanged
    assert classify_miss(pred, target) == ("swap", ("N", "Sr"))


def test_a_three_cycle_is_an_assignment_failure_not_a_swap():
    target = perovskite(("Sr", "Ti", "N", "O", "F"))
    pred = perovskite(("Ti", "N", "Sr", "O", "F"))  # Sr -> B site, Ti -> X site, N -> A site
    assert classify_miss(pred, target) == ("assignment", ())


def test_wrong_element_or_count_is_composition():
    assert classify_miss(perovskite(("Ba", "Ti", "O", "O", "O")), perovskite()) == ("composition", ())
    four = Structure(Lattice.cubic(3.9), ["Sr", "Ti", "O", "O"], SITES[:4])
    assert classify_miss(four, perovskite()) == ("composition", ())


def test_right_composition_on_the_wrong_sites_is_geometry():
    scrambled = [[0, 0, 0], [.1, .2, .3], [.5, .1, .7], [.8, .6, .2], [.3, .9, .55]]
    assert classify_miss(perovskite(coords=scrambled), perovskite()) == ("geometry", ())


def test_breakdown_counts_every_target_once_and_percent_over_the_predicted():
    target = perovskite(("Sr", "Ti", "N", "O", "F"))
    overlapping = perovskite(coords=[[0, 0, 0], [0.01, 0, 0], [.5, .5, 0], [.5, 0, .5], [0, .5, .5]])
    preds = [target.copy(), perovskite(("Ti", "Sr", "N", "O", "F")), perovskite(("Ba", "Ti", "N", "O", "F")),
             overlapping, None]
    targets = [target] * 5
    m = reconstruction_metrics(preds, targets, n_workers=1, progress=False,
                               read_errors=[None, None, None, None, "no prediction for this material_id"])
    b = failure_breakdown(preds, targets, m["per_structure"], n_workers=1, progress=False)
    assert set(b["counts"]) == set(CATEGORIES)
    assert b["counts"]["matched"] == 1 and b["counts"]["swap"] == 1 and b["counts"]["composition"] == 1
    assert b["counts"]["invalid"] == 1 and b["counts"]["missing"] == 1
    assert sum(b["counts"].values()) == 5 and b["n_with_prediction"] == 4
    assert b["percent"]["swap"] == pytest.approx(25.0) and "missing" not in b["percent"]
    assert b["swapped_pairs"] == [["Sr", "Ti", 1]]
    assert [r["category"] for r in b["per_structure"]] == ["matched", "swap", "composition", "invalid", "missing"]
    text = render_breakdown(b)
    assert "swap" in text and "Sr<->Ti 1" in text and "(missing)" in text


def test_breakdown_refuses_unaligned_lists():
    with pytest.raises(ValueError, match="aligned"):
        failure_breakdown([None], [perovskite(), perovskite()], [{}], n_workers=1, progress=False)


@pytest.fixture()
def tiny_dataset(tmp_path):
    write_perov5_csvs(tmp_path, {"p-1": perovskite(), "p-2": perovskite(("Ba", "Zr", "O", "O", "O"), a=4.2)})
    return tmp_path


def test_evaluate_breakdown_writes_categories(tiny_dataset, capsys):
    from dpcdvae.cli.evaluate import main

    samples = tiny_dataset / "recon"
    samples.mkdir()
    perovskite().to(filename=str(samples / "p-1.cif"))
    perovskite(("Zr", "Ba", "O", "O", "O"), a=4.2).to(filename=str(samples / "p-2.cif"))
    out = tiny_dataset / "out"
    rc = main(["evaluate", "--task", "recon", "--samples", str(samples), "--dataset", "perov_5", "--data-root",
               str(tiny_dataset / "data"), "--out", str(out), "--n-workers", "1", "--quiet", "--breakdown"])
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["failures.counts.matched"] == 1 and m["failures.counts.swap"] == 1
    assert m["failures.swapped_pairs"] == "Ba-Zr:1"
    assert all(not isinstance(v, (dict, list)) for v in m.values())
    per = pd.read_csv(out / "per_structure.csv")
    assert per.set_index("material_id").loc["p-2", "category"] == "swap"
    assert "why the unmatched crystals miss" in capsys.readouterr().out


@pytest.mark.parametrize("command, needle", [
    (["evaluate", "--task", "gen", "--dataset", "perov_5", "--breakdown", "--quiet", "--samples", "DATA"],
     "--breakdown applies to --task recon only"),
    (["reconstruct", "--checkpoint", "pretrained:perov_5", "--breakdown", "--no-metrics"], "drop --no-metrics"),
])
def test_breakdown_is_refused_where_it_means_nothing(tiny_dataset, capsys, command, needle):
    from dpcdvae.cli import main

    out = tiny_dataset / "o"
    argv = [str(tiny_dataset) if a == "DATA" else a for a in command]
    rc = main([*argv, "--data-root", str(tiny_dataset / "data"), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and needle in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists(), "nothing is written for a refused command"
