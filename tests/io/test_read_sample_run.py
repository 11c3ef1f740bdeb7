"""Reading a run folder written by ``dpcdvae sample`` (:func:`dpcdvae.io.read_sample_run`) back into a
``SampleOutput``, and the notebook helper that evaluates such a folder instead of generating
(:func:`dpcdvae.notebooks.load_generation`, ``run_generation(samples=...)``)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

pytest.importorskip("pymatgen")

from dpcdvae.structures.crystal import tensors_to_structures  # noqa: E402
from dpcdvae.utils.errors import UserError  # noqa: E402
from dpcdvae.io import SampleWriter, read_sample_run  # noqa: E402
from dpcdvae.models.output import SampleOutput  # noqa: E402

COMMAND = "/opt/venv/bin/dpcdvae sample --checkpoint pretrained:perov_5 --n 4 --seed 0 --out runs/x"


def _sample_output() -> SampleOutput:
    """Four crystals as a sampler returns them: a cubic SrTiO3, a triclinic BaTiO3 with two atoms 0.3 A apart
    (built but invalid), one not built (collapsed cell, flagged, 3 atoms) and one with N_a = 0."""
    rng = np.random.default_rng(1)
    frac = [[0, 0, 0], [.5, .5, .5], [.5, .5, 0], [.5, 0, .5], [0, .5, .5]]  # SrTiO3
    frac += rng.random((5, 3)).tolist()                                        # BaTiO3, random sites
    frac[9] = [frac[8][0] + 0.05, frac[8][1], frac[8][2]]                      # ~0.25 A from its neighbour
    frac += [[0.1, 0.2, 0.3], [0.4, 0.5, 0.6], [0.7, 0.8, 0.9]]                # not built
    types = [38, 22, 8, 8, 8, 56, 22, 8, 8, 8, 1, 1, 1]
    lengths = torch.tensor([[3.905, 3.905, 3.905], [4.1234567, 4.4321, 5.0101], [1e-3, 1e-3, 1e-3],
                            [4.0, 4.0, 4.0]], dtype=torch.float32)
    angles = torch.tensor([[90, 90, 90], [84.5, 97.25, 101.125], [90, 90, 90], [90, 90, 90]], dtype=torch.float32)
    num_atoms = torch.tensor([5, 5, 3, 0])
    fc, at = torch.tensor(frac, dtype=torch.float32), torch.tensor(types)
    structs = tensors_to_structures(fc, at, lengths, angles, num_atoms)
    flags = ["", "", "volume 1e-09 A^3 < 0.1", "N_a = 0"]
    assert structs[0] is not None and structs[1] is not None and structs[2] is None and structs[3] is None
    return SampleOutput(structures=structs, frac_coords=fc, atom_types=at, lengths=lengths, angles=angles,
                        num_atoms=num_atoms, flags=flags, ids=[f"gen-{i:05d}" for i in range(4)],
                        meta={"sampler": "eq7", "steps": None, "seed": 0})


def _write(tmp_path, out=None, interrupted=False):
    out = out or _sample_output()
    w = SampleWriter(tmp_path / "run", meta={"sampler": "eq7", "steps": None, "seed": 0, "command": COMMAND,
                                             "checkpoint": "pretrained:perov_5"})
    w.add(out)
    if interrupted:
        w.mark_interrupted()
    return w.dir, out


def _same_mod_1(a, b, tol=1e-6) -> bool:
    d = np.asarray(a, float) - np.asarray(b, float)
    return bool(np.all(np.abs(d - np.round(d)) < tol))


def test_round_trip(tmp_path):
    folder, ref = _write(tmp_path)
    got = read_sample_run(folder)
    assert got.ids == ref.ids and got.flags == ref.flags
    assert torch.equal(got.num_atoms, ref.num_atoms.long())
    assert torch.equal(got.lengths, ref.lengths) and torch.equal(got.angles, ref.angles)
    assert got.meta["read_from"] == str(folder) and got.meta["sampler"] == "eq7" and got.meta["command"] == COMMAND
    assert got.trajectory is None
    assert got.decoded_mask == ref.decoded_mask == [True, True, False, False]
    for s, r in zip(got.structures, ref.structures):
        if r is None:
            assert s is None
            continue
        assert [x.specie.symbol for x in s] == [x.specie.symbol for x in r]
        assert _same_mod_1(s.frac_coords, r.frac_coords)
        assert np.allclose(s.lattice.abc, r.lattice.abc, atol=1e-6, rtol=0)
        assert np.allclose(s.lattice.angles, r.lattice.angles, atol=1e-6, rtol=0)
        assert np.allclose(s.lattice.matrix, r.lattice.matrix, atol=1e-6, rtol=0)
    # the tensors: num_atoms rows per crystal; the built crystals' rows as sampled, NaN / 0 for the one not built
    assert got.frac_coords.shape == (13, 3) and got.atom_types.shape == (13,)
    assert got.frac_coords.dtype == torch.float32 and got.atom_types.dtype == torch.long
    assert _same_mod_1(got.frac_coords[:10], ref.frac_coords[:10])
    assert torch.equal(got.atom_types[:10], ref.atom_types[:10])
    assert torch.isnan(got.frac_coords[10:]).all() and (got.atom_types[10:] == 0).all()
    # validity as the run recorded it (the second crystal has two atoms too close)
    assert got.validity() == ref.validity()
    assert got.valid_mask[1] is False and "structure" in got.validity()[1]["reason"]


def test_interrupted_run_is_refused_unless_allowed(tmp_path):
    folder, _ = _write(tmp_path, interrupted=True)
    with pytest.raises(UserError) as exc:
        read_sample_run(folder)
    msg = str(exc.value)
    assert "interrupted" in msg and "holds 4 crystals" in msg and str(folder / "samples.json") in msg
    assert "\n" not in msg
    got = read_sample_run(folder, allow_interrupted=True)
    assert len(got) == 4 and got.meta["interrupted"] is True


def test_missing_files_are_named(tmp_path):
    with pytest.raises(UserError) as exc:
        read_sample_run(tmp_path / "nothing-here")
    assert str(tmp_path / "nothing-here" / "samples.json") in str(exc.value)
    folder, _ = _write(tmp_path)
    (folder / "cif" / "gen-00001.cif").unlink()
    with pytest.raises(UserError) as exc:
        read_sample_run(folder)
    msg = str(exc.value)
    assert str(folder / "cif" / "gen-00001.cif") in msg and "samples.json" in msg and "\n" not in msg


def test_unreadable_cif_becomes_an_invalid_crystal(tmp_path):
    folder, _ = _write(tmp_path)
    (folder / "cif" / "gen-00000.cif").write_text("garbage")
    got = read_sample_run(folder)
    assert got.structures[0] is None and got.flags[0].startswith("unreadable CIF")
    assert got.valid_mask[0] is False and "gen-00000" in got.meta["read_errors"]
    assert torch.isnan(got.frac_coords[:5]).all()


def test_notebook_helper_prints_the_read_line(tmp_path, capsys):
    import dpcdvae.notebooks as nb

    folder, ref = _write(tmp_path)
    got = nb.load_generation(folder, n=4, sampler="eq7", steps=None)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    n_valid = sum(ref.valid_mask)
    assert lines[0].startswith(f"read 4 crystals (Eq. 7, all T steps, seed 0) from {folder} written by "
                               f"`dpcdvae sample --checkpoint pretrained:perov_5 --n 4 --seed 0 --out runs/x`; "
                               f"2 built, {n_valid} valid")
    assert got.ids == ref.ids

    class _Model:  # what run_generation needs of a model when it reads a folder: T for the read line
        class cfg:
            timesteps = 1000

        def generate(self, *a, **k):
            raise AssertionError("nothing is generated when samples is given")

    got = nb.run_generation(_Model(), 10240, sampler="eq6", steps=None, seed=0, out_dir=tmp_path / "gen",
                            samples=folder)
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("read 4 crystals (Eq. 7, 1,000 calls, seed 0)")
    assert len(lines) == 2 and lines[1].startswith("note:")
    assert "n_generate=10240 (folder: 4)" in lines[1] and "sampler='eq6' (folder: 'eq7')" in lines[1]
    assert len(got) == 4 and not (tmp_path / "gen").exists()
    assert not math.isnan(float(got.lengths[0, 0]))
