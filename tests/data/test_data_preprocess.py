"""Preprocessing equals pymatgen's Niggli canonical form; Data fields follow docs/ARCHITECTURE.md."""
from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from dpcdvae.data import (CrystalDataset, DatasetNotFoundError, load_dataset_splits, load_split,
                          make_demo_dataset)


def _reference(cif: str, niggli: bool = True):
    """CDVAE preprocessing written out directly with pymatgen."""
    from pymatgen.core import Lattice, Structure

    s = Structure.from_str(cif, fmt="cif")
    if niggli:
        s = s.get_reduced_structure()
    lat = Lattice.from_parameters(*s.lattice.abc, *s.lattice.angles)
    c = Structure(lat, s.species, s.frac_coords, coords_are_cartesian=False)
    return np.array(c.lattice.abc), np.array(c.lattice.angles), np.mod(c.frac_coords, 1.0), [sp.Z for sp in c.species]


def _check_equal(ds, cifs, niggli=True):
    assert len(ds) == len(cifs)
    for i, cif in enumerate(cifs):
        lengths, angles, frac, z = _reference(cif, niggli)
        d = ds[i]
        np.testing.assert_allclose(d.lengths[0].numpy(), lengths, rtol=1e-6)
        np.testing.assert_allclose(d.angles[0].numpy(), angles, rtol=1e-6)
        assert d.atom_types.tolist() == z
        diff = d.frac_coords.double().numpy() - frac
        diff -= np.round(diff)  # 0.0 and 0.99999999 are the same position
        assert np.abs(diff).max() < 1e-5


def _write(path, structures, prop=None):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["", "material_id", "cif", "heat_ref"])
        for i, s in enumerate(structures):
            w.writerow([i, f"m{i}", s.to(fmt="cif"), 1.0 if prop is None else prop[i]])
    return path


def _skewed(seed: int):
    """Random triclinic crystals given in a deliberately non-reduced basis."""
    from pymatgen.core import Lattice, Structure

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(6):
        lat = Lattice.from_parameters(*(3 + 3 * rng.random(3)), *(70 + 40 * rng.random(3)))
        n = int(rng.integers(1, 7))
        while True:  # physical crystals: atoms at least 1 A apart (the row checks reject closer ones)
            s = Structure(lat, rng.choice(["C", "O", "Si", "Mg"], n).tolist(), rng.random((n, 3)))
            d = s.get_neighbor_list(1.0)[3]
            if not (d > 1e-8).any():
                break
        u = np.array([[1, 2, 0], [0, 1, 0], [1, 0, 1]])  # unimodular: same lattice, long skewed basis
        s2 = Structure(Lattice(u @ lat.matrix), s.species, s.cart_coords, coords_are_cartesian=True,
                       to_unit_cell=True)
        out.append(s2)
    return out


def test_equals_pymatgen_niggli_canonical_form(tmp_path):
    structures = _skewed(0)
    path = _write(tmp_path / "skewed.csv", structures)
    ds = CrystalDataset.from_csv(path, prop=None, graph="none", num_workers=1, progress=False, cache=False)
    _check_equal(ds, [s.to(fmt="cif") for s in structures])
    # the Niggli cell is shorter than the skewed input cell
    for i, s in enumerate(structures):
        assert float(ds.lengths[i].sum()) < sum(s.lattice.abc) + 1e-6
    raw = CrystalDataset.from_csv(path, prop=None, graph="none", niggli=False, num_workers=1, progress=False,
                                  cache=False)
    _check_equal(raw, [s.to(fmt="cif") for s in structures], niggli=False)


def test_data_fields_and_batching(tmp_path, srtio3):
    from torch_geometric.loader import DataLoader

    path = _write(tmp_path / "x.csv", [srtio3, srtio3 * (1, 1, 2)], prop=[1.5, 2.5])
    ds = CrystalDataset.from_csv(path, name="perov_like", prop="heat_ref", graph="none", num_workers=1,
                                 progress=False, cache=False)
    d = ds[0]
    assert d.frac_coords.dtype == torch.float32 and d.frac_coords.shape == (5, 3)
    assert ((d.frac_coords >= 0) & (d.frac_coords < 1)).all()
    assert d.atom_types.dtype == torch.long and sorted(d.atom_types.tolist()) == [8, 8, 8, 22, 38]
    assert d.lengths.shape == (1, 3) and d.angles.shape == (1, 3)
    assert d.num_atoms.dtype == torch.long and d.num_atoms.tolist() == [5]
    assert d.y.shape == (1,) and float(d.y) == 1.5
    assert d.material_id == "m0" and d.num_nodes == 5
    assert "edge_index" not in d
    batch = next(iter(DataLoader(ds, batch_size=2)))
    assert batch.num_atoms.tolist() == [5, 10] and batch.lengths.shape == (2, 3) and batch.y.shape == (2,)
    assert batch.material_id == ["m0", "m1"] and batch.batch.tolist() == [0] * 5 + [1] * 10
    # items are copies: editing one does not touch the dataset
    d.frac_coords += 0.25
    assert not torch.equal(ds[0].frac_coords, d.frac_coords)
    assert ds.get_structure(0).matches(srtio3)


def test_crystalnn_graph_convention(tmp_path, isolated_cache):
    from torch_geometric.loader import DataLoader

    root = make_demo_dataset(tmp_path, n=(4, 1, 1), distortion=0.0).parent
    ds = load_split("demo_synthetic_perovskites", "train", root=root, graph="crystalnn", num_workers=1,
                    progress=False)
    assert ds.has_graph
    for d in ds:
        e = d.edge_index.shape[1]
        assert d.edge_index.dtype == torch.long and d.to_jimages.dtype == torch.long
        assert d.to_jimages.shape == (e, 3) and d.num_bonds.tolist() == [e] and e > 0
        assert int(d.edge_index.max()) < d.num_nodes
        # vec = cart[j] + offset @ L - cart[i], with [0] = j (source), [1] = i (target): bonds are short
        from pymatgen.core import Lattice

        lat = torch.tensor(Lattice.from_parameters(*d.lengths[0].tolist(), *d.angles[0].tolist()).matrix,
                           dtype=torch.float64)
        cart = d.frac_coords.double() @ lat
        j, i = d.edge_index
        vec = cart[j] + d.to_jimages.double() @ lat - cart[i]
        dist = vec.norm(dim=1)
        assert float(dist.min()) > 1.5 and float(dist.max()) < 4.0
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert batch.edge_index.shape[1] == int(batch.num_bonds.sum())
    assert int(batch.edge_index.max()) < batch.num_nodes


# ------------------------------------------------------------------------------------------- real data (slices)

@pytest.mark.shared_data
def test_perov5_slice_matches_pymatgen(shared_data_dir, isolated_cache):
    import pandas as pd

    ds = load_split("perov_5", "test", root=shared_data_dir, graph="crystalnn", limit=24, num_workers=1,
                    progress=False)
    df = pd.read_csv(shared_data_dir / "perov_5" / "test.csv", nrows=24)
    _check_equal(ds, df["cif"].tolist())
    assert ds.material_ids == df["material_id"].astype(str).tolist()
    np.testing.assert_allclose(ds.y.numpy(), df["heat_ref"].to_numpy(), rtol=1e-6)
    assert ds.has_graph and int(ds.num_atoms.max()) == 5 and ds.settings.max_atoms == 20


@pytest.mark.shared_data
def test_carbon24_slice_matches_pymatgen(shared_data_dir, isolated_cache):
    import pandas as pd

    ds = load_split("carbon_24", "val", root=shared_data_dir, graph="none", limit=20, num_workers=1,
                    progress=False)
    df = pd.read_csv(shared_data_dir / "carbon_24" / "val.csv", nrows=20)
    _check_equal(ds, df["cif"].tolist())
    assert set(ds[0].atom_types.tolist()) == {6} and ds.prop == "energy_per_atom"
    assert ds.settings.max_atoms == 24


@pytest.mark.shared_data
def test_carbon24_train_on_val(shared_data_dir, isolated_cache, capsys):
    with pytest.raises(DatasetNotFoundError, match="train_split='val'"):
        load_dataset_splits("carbon_24", root=shared_data_dir, graph="none", limit=5, num_workers=1,
                            progress=False)
    sp = load_dataset_splits("carbon_24", train_split="val", root=shared_data_dir, graph="none", limit=8,
                             num_workers=1, progress=False)
    out = capsys.readouterr().out
    assert "absent: train (0 rows); training on 'val' as requested" in out
    assert sp.train is sp.val and sp.train_split == "val" and sp.absent == ["train"]
    assert len(sp.test) == 8 and sp.lattice_scaler.fitted
    assert sp.prop_scaler.fitted_on == 8
    # scalers are stored beside the training cache and reused
    again = load_dataset_splits("carbon_24", train_split="val", root=shared_data_dir, graph="none", limit=8,
                                num_workers=1, progress=False, verbose=False)
    assert "scalers loaded" in again.report
    assert torch.equal(again.lattice_scaler.loc, sp.lattice_scaler.loc)


def test_from_structures(srtio3):
    from pymatgen.core import Lattice, Structure

    bad = Structure(Lattice.cubic(3.0), ["Sr"], [[0, 0, 0]]) * (3, 3, 3)  # 27 atoms > max_atoms
    ds = CrystalDataset.from_structures([srtio3, srtio3 * (2, 1, 1)], y=[0.5, 1.0], material_ids=["a", "b"])
    assert len(ds) == 2 and ds.material_ids == ["a", "b"] and ds.y.tolist() == [0.5, 1.0]
    assert ds.num_atoms.tolist() == [5, 10]
    with pytest.raises(Exception, match="27 atoms > max_atoms=20"):
        CrystalDataset.from_structures([srtio3, bad], max_atoms=20)
    with pytest.warns(UserWarning, match="skipped 1 of 2"):
        ds = CrystalDataset.from_structures([srtio3, bad], max_atoms=20, on_error="skip")
    assert len(ds) == 1 and ds.skipped[0][:2] == (1, "structure-1")
