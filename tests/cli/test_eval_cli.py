"""`dpcdvae evaluate` end to end on a tiny hand-made dataset (no real data needed)."""
import json
import warnings

import pandas as pd
import pytest

pytest.importorskip("pymatgen")
from pymatgen.core import Lattice, Structure  # noqa: E402

from dpcdvae.cli.evaluate import main  # noqa: E402

from conftest import write_perov5_csvs  # noqa: E402


def _structs():
    return {
        "p-1": Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        "p-2": Structure(Lattice.cubic(4.12), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        "p-3": Structure(Lattice.cubic(3.9), ["Sr", "Ti", "O", "O", "O"],
                         [[0, 0, 0], [.5, .5, .5], [.5, .5, 0], [.5, 0, .5], [0, .5, .5]]),
    }


@pytest.fixture()
def tiny_dataset(tmp_path, monkeypatch):
    warnings.filterwarnings("ignore")
    monkeypatch.setenv("DPCDVAE_CACHE", str(tmp_path / "cache"))
    write_perov5_csvs(tmp_path, _structs())
    return tmp_path


def test_cli_recon(tiny_dataset, capsys):
    samples = tiny_dataset / "recon"
    samples.mkdir()
    s = _structs()
    s["p-1"].to(filename=str(samples / "p-1.cif"))
    s["p-3"].to(filename=str(samples / "p-3.cif"))
    (samples / "p-2.cif").write_text("garbage")
    out = tiny_dataset / "out"
    rc = main(["evaluate", "--task", "recon", "--samples", str(samples), "--dataset", "perov_5",
               "--data-root", str(tiny_dataset / "data"), "--out", str(out), "--n-workers", "1", "--quiet"])
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["n_targets"] == 3 and m["n_matched"] == 2
    assert m["match_rate"] == pytest.approx(200 / 3)
    assert m["delta_rms"] == pytest.approx(0.0, abs=1e-6)
    assert m["command"].startswith("dpcdvae evaluate --task recon")
    assert "version_pymatgen" in m and "version_smact" in m and "version_matminer" in m and "date" in m
    assert all(not isinstance(v, (dict, list)) for v in m.values())  # flat
    per = pd.read_csv(out / "per_structure.csv")
    assert len(per) == 3
    assert "Match rate (%)" in capsys.readouterr().out
    # never overwrite silently
    assert main(["evaluate", "--task", "recon", "--samples", str(samples), "--dataset", "perov_5",
                 "--data-root", str(tiny_dataset / "data"), "--out", str(out), "--quiet"]) == 2


def test_cli_gen(tiny_dataset):
    samples = tiny_dataset / "gen"
    samples.mkdir()
    for k, s in _structs().items():
        s.to(filename=str(samples / f"g{k}.cif"))
    out = tiny_dataset / "out_gen"
    rc = main(["evaluate", "--task", "gen", "--samples", str(samples), "--dataset", "perov_5",
               "--data-root", str(tiny_dataset / "data"), "--out", str(out), "--n-workers", "1", "--quiet",
               "--no-eform"])
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["struct_validity"] == 100.0 and m["cov_r"] == 100.0 and m["cov_p"] == 100.0
    assert m["w1_density"] == pytest.approx(0.0, abs=1e-9)
    assert m["w1_eform"].startswith("unavailable")
    assert "CDVAE" in m["comp_scaler"]  # the default standardiser: CDVAE constants (comparable with the papers)
    assert (out / "table.md").exists()


def test_cli_gen_with_scaler_file(tiny_dataset):
    samples = tiny_dataset / "gen2"
    samples.mkdir()
    for k, s in _structs().items():
        s.to(filename=str(samples / f"g{k}.cif"))
    sc = tiny_dataset / "scaler.json"
    sc.write_text(json.dumps({"mean": [0.0] * 132, "std": [1.0] * 132, "fitted_on": "identity scaler"}))
    out = tiny_dataset / "out_gen2"
    assert main(["evaluate", "--task", "gen", "--samples", str(samples), "--dataset", "perov_5",
                 "--data-root", str(tiny_dataset / "data"), "--out", str(out), "--n-workers", "1", "--quiet",
                 "--no-eform", "--comp-scaler", str(sc)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["comp_scaler"] == "fitted on identity scaler" and m["cov_r"] == 100.0
