"""The dataset registry (dpcdvae.data.registry): aliases, errors, a user's own folder, the demo, and the facts the
evaluation reads. Tiny synthetic CSVs written here; no shared data needed."""
from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from dpcdvae.data import registry
from dpcdvae.data.registry import (DEMO_NAME, DatasetSpec, get_spec, known_datasets, register_dataset,
                                   scoring_spec, spec_for_folder)
from dpcdvae.utils.errors import UnknownDatasetError, UserError

REPO = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------------------------------------ a user's folder
def _structures():
    from pymatgen.core import Lattice, Structure

    seven = Structure(Lattice.cubic(6.0), ["Na", "Cl", "Na", "Cl", "Na", "Cl", "K"],
                      [[0, 0, 0], [0.5, 0, 0], [0, 0.5, 0], [0, 0, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5],
                       [0.5, 0.5, 0.5]])
    five = Structure(Lattice.cubic(3.905), ["Sr", "Ti", "O", "O", "O"],
                     [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    two = Structure(Lattice.cubic(4.1), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    three = Structure(Lattice.hexagonal(3.0, 5.0), ["Mg", "B", "B"],
                      [[0, 0, 0], [1 / 3, 2 / 3, 0.5], [2 / 3, 1 / 3, 0.5]])
    return seven, five, two, three


def _write_csv(path: Path, rows) -> None:
    from pymatgen.io.cif import CifWriter

    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["", "material_id", "cif", "energy"])
        for i, (mid, s, symprec) in enumerate(rows):
            w.writerow([i, mid, str(CifWriter(s, symprec=symprec)), f"{-1.0 - i:.3f}"])


@pytest.fixture
def user_folder(tmp_path, isolated_cache):
    """``<tmp>/data/my_crystals/{train,val,test}.csv``: the largest crystal (7 atoms) only in test.csv; one CIF
    with symmetry operations (Pm-3m CsCl), so the atom count needs the full CIF parser for it."""
    seven, five, two, three = _structures()
    d = tmp_path / "data" / "my_crystals"
    d.mkdir(parents=True)
    _write_csv(d / "train.csv", [("u-0", five, None), ("u-1", two, 0.1), ("u-2", three, None)])
    _write_csv(d / "val.csv", [("u-3", five, None), ("u-4", three, None)])
    _write_csv(d / "test.csv", [("u-5", two, None), ("u-6", seven, None)])
    return d


def test_user_folder_max_atoms_is_computed(user_folder, isolated_cache):
    spec = spec_for_folder(user_folder)
    assert spec.max_atoms == 7  # from test.csv, not a default of 20
    assert spec.name == "my_crystals" and spec.prop is None and spec.cov_cutoffs is None
    assert spec.property_model is None and spec.scored_as is None and not spec.synthetic
    assert spec.folder == str(user_folder)
    assert spec_for_folder(user_folder, name="x", prop="energy").prop == "energy"
    # cached per CSV content: a second process-level lookup reads the cache files, not the CIFs
    cached = sorted((isolated_cache / "datasets" / "atom_counts").glob("*.json"))
    assert len(cached) == 3
    registry._ATOMS_MEMO.clear()
    assert spec_for_folder(user_folder).max_atoms == 7
    # a changed CSV is counted again
    seven, five, *_ = _structures()
    _write_csv(user_folder / "test.csv", [("u-5", five, None)])
    assert spec_for_folder(user_folder).max_atoms == 5


def test_user_folder_config_through_train_command(user_folder, monkeypatch):
    """`dpcdvae train --dataset <folder>` (and --data-root + name) builds its config with max_atoms from the data."""
    import dpcdvae.train as train_mod
    from dpcdvae.cli import main

    seen = []

    class Stop(Exception):
        pass

    def capture(dataset, cfg, **kwargs):
        seen.append((dataset, cfg))
        raise Stop

    monkeypatch.setattr(train_mod, "CrystalDataModule", capture)
    with pytest.raises(Stop):
        main(["train", "--dataset", str(user_folder), "--config", "tiny", "--out", str(user_folder.parent / "r1")])
    with pytest.raises(Stop):
        main(["train", "--dataset", "my_crystals", "--data-root", str(user_folder.parent), "--config", "paper",
              "--out", str(user_folder.parent / "r2")])
    assert [cfg.model.max_atoms for _, cfg in seen] == [7, 7]
    assert seen[1][1].train.batch_size == registry.DEFAULT_BATCH_SIZE


def test_config_of_registered_and_unknown_datasets(tmp_path, monkeypatch):
    from dpcdvae.config import load_config
    from dpcdvae.data import DatasetNotFoundError

    paper = {d: load_config("paper", dataset=d) for d in ("perov_5", "carbon_24", "mp_20", DEMO_NAME)}
    assert {d: (c.model.max_atoms, c.train.batch_size) for d, c in paper.items()} == {
        "perov_5": (20, 512), "carbon_24": (24, 256), "mp_20": (20, 256), DEMO_NAME: (20, 256)}
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DPCDVAE_DATA", raising=False)
    with pytest.raises(DatasetNotFoundError):  # never a silent max_atoms = 20
        load_config("tiny", dataset="no_such_dataset_here", root=tmp_path)


# ------------------------------------------------------------------------------------------------ names
@pytest.mark.parametrize("alias,name", [
    ("perov_5", "perov_5"), ("Perov-5", "perov_5"), ("perovskite", "perov_5"), ("PEROV5", "perov_5"),
    ("Carbon-24", "carbon_24"), ("carbon", "carbon_24"), ("mp20", "mp_20"), ("MP-20", "mp_20"), ("mp", "mp_20"),
    ("demo", DEMO_NAME), ("Demo", DEMO_NAME), (DEMO_NAME, DEMO_NAME),
])
def test_aliases_resolve(alias, name):
    assert get_spec(alias).name == name


def test_unknown_name_is_a_one_line_user_error(capsys):
    with pytest.raises(UnknownDatasetError) as info:
        get_spec("qm9")
    exc = info.value
    assert isinstance(exc, UserError) and isinstance(exc, KeyError) and isinstance(exc, ValueError)
    msg = str(exc)
    assert "\n" not in msg and "'qm9'" in msg and "perov_5" in msg and "demo" in msg and not msg.startswith('"')

    from dpcdvae.cli import main

    assert main(["evaluate", "--task", "baseline", "--dataset", "qm9"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "qm9" in err


def test_paper_only_names_keep_their_errors():
    from dpcdvae.eval import property as prop
    from dpcdvae.eval.reference import canonical_dataset

    assert canonical_dataset("Perov-5") == "perov_5"
    with pytest.raises(KeyError):
        canonical_dataset("demo")  # the demo has no numbers in the paper's tables
    with pytest.raises(ValueError, match="no pretrained property model"):
        prop._canonical_dataset("demo")


def test_register_dataset(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(registry, "_INDEX", dict(registry._INDEX))
    spec = DatasetSpec(name="my_set", description="test", aliases=("mine",), prop="y", prop_units="eV",
                       max_atoms=12, scored_as="mp_20")
    register_dataset(spec)
    assert get_spec("Mine") is spec and "my_set" in known_datasets()
    assert scoring_spec("my_set") is get_spec("mp_20") and spec.units_of("y") == "eV"
    with pytest.raises(UserError, match="already registered"):
        register_dataset(spec)
    with pytest.raises(UserError, match="already names"):
        register_dataset(DatasetSpec(name="other", description="x", aliases=("perovskite",)))
    with pytest.raises(UserError, match="not registered"):
        register_dataset(DatasetSpec(name="other2", description="x", scored_as="nope"))
    from dpcdvae.config import load_config

    assert load_config("tiny", dataset="my_set").model.max_atoms == 12


# ------------------------------------------------------------------------------------------------ facts for eval
def test_every_registered_dataset_has_what_the_evaluation_needs():
    from dpcdvae.eval.generation import COV_CUTOFFS
    from dpcdvae.eval.property import PROPERTY_MODELS
    from dpcdvae.eval.reference import DATASETS, REFERENCE, canonical_dataset

    assert DATASETS == ("perov_5", "carbon_24", "mp_20")
    assert set(known_datasets()) >= {*DATASETS, DEMO_NAME}
    for name in known_datasets():
        spec = get_spec(name)
        assert spec.description and "\n" not in spec.description
        assert isinstance(spec.max_atoms, int) and spec.max_atoms > 0 and spec.batch_size > 0
        assert spec.prop and spec.units_of(spec.prop) != "unknown"
        ref = scoring_spec(name)
        assert ref.benchmark and canonical_dataset(ref.name) == ref.name
        d_struct, d_comp = ref.cov_cutoffs
        assert d_struct > 0 and d_comp > 0
        assert ref.property_model is not None and ref.property_model.dataset == ref.name
        assert ref.property_model.prop == ref.prop
        assert any(key[1] == ref.name for key in REFERENCE)
        if not spec.synthetic:
            assert spec.download_url and "{name}" in spec.download_url and "{split}" in spec.download_url
    # the module-level tables are views of the registry
    assert COV_CUTOFFS == {n: get_spec(n).cov_cutoffs for n in DATASETS}
    assert PROPERTY_MODELS == {n: get_spec(n).property_model for n in DATASETS}
    assert get_spec("mp_20").units_of("band_gap") == "eV" and get_spec("perov_5").batch_size == 512


def test_demo_scores_as_perov_5(tmp_path, isolated_cache, monkeypatch):
    from dpcdvae.data.locator import locate_dataset
    from dpcdvae.data.paths import DatasetNotFoundError
    from dpcdvae.data.resolve import dataset_dir
    from dpcdvae.eval.evaluate import resolve_eval_dataset
    from dpcdvae.eval.property_train import property_units

    spec = get_spec("demo")
    assert spec.synthetic and spec.scored_as == "perov_5" and spec.download_url is None
    assert scoring_spec("demo") is get_spec("perov_5")
    assert property_units(DEMO_NAME, "heat_ref") == "dimensionless (SYNTHETIC)"
    assert property_units("perov_5", "heat_ref") == "eV/atom"

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DPCDVAE_DATA", raising=False)
    monkeypatch.setattr("dpcdvae.data.locator._REPO_ROOT", tmp_path / "nowhere")
    with pytest.raises(DatasetNotFoundError):
        locate_dataset(DEMO_NAME)  # the locator only locates ...
    assert not any(isolated_cache.iterdir())
    d = dataset_dir(DEMO_NAME)  # ... the resolve layer generates the synthetic data on first use
    assert d == isolated_cache / "demo" / DEMO_NAME and (d / "test.csv").is_file()
    assert resolve_eval_dataset("demo") == (DEMO_NAME, "perov_5", str(d.parent))
    assert resolve_eval_dataset("demo", "/x") == (DEMO_NAME, "perov_5", "/x")

    from dpcdvae.notebooks import resolve_dataset

    choice = resolve_dataset("demo")
    assert choice.name == DEMO_NAME and choice.synthetic and choice.paper_dataset == "perov_5"


# ------------------------------------------------------------------------------------------------ structure
def test_no_import_cycle_between_locator_and_demo():
    code = ("import sys, dpcdvae.data.{a}; bad = [m for m in sys.modules if m.startswith('dpcdvae.data.{b}')]; "
            "assert not bad, bad")
    for a, b in (("locator", "demo"), ("demo", "locator"), ("registry", "locator"), ("registry", "demo")):
        res = subprocess.run([sys.executable, "-c", code.format(a=a, b=b)], cwd=REPO, capture_output=True, text=True)
        assert res.returncode == 0, f"dpcdvae.data.{a} imports dpcdvae.data.{b}: {res.stderr[-300:]}"


def test_one_canonicaliser(srtio3):
    import numpy as np

    from dpcdvae.structures import crystal, validity
    from dpcdvae.data import csvio
    from dpcdvae.eval import io

    assert crystal.canonicalize_structure is csvio.canonicalize_structure is validity.canonicalize_structure
    s = srtio3.copy()
    s.translate_sites([1], [1.25, -0.5, 0.0], frac_coords=True, to_unit_cell=False)
    raw = csvio.canonicalize_structure(s)
    wrapped = csvio.canonicalize_structure(s, wrap=True)
    assert ((wrapped.frac_coords >= 0) & (wrapped.frac_coords < 1)).all()
    assert np.allclose(raw.frac_coords % 1.0, wrapped.frac_coords)
    from pymatgen.io.cif import CifWriter

    parsed = io._parse_canonical(str(CifWriter(srtio3)))
    assert np.allclose(parsed.lattice.abc, csvio.canonicalize_structure(srtio3).lattice.abc)
    assert io._parse_canonical("not a cif") is None
