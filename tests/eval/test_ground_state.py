"""Ground state without DFT (dpcdvae.eval.ground_state): relaxation under pressure, resume, batching, Table III
metrics, Fig. S2 histogram, the ``relax`` CLI.

CHGNet runs on 2-atom diamond cells only (its weights ship inside the chgnet wheel: nothing is downloaded); the
resume / failure / CLI tests use ASE's EMT on tiny Cu cells. torch runs single-threaded here (2-thread torch ops are
very slow on a loaded 2-core machine).
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

pytest.importorskip("ase")
from ase.build import bulk  # noqa: E402

from dpcdvae.eval import ground_state as gs  # noqa: E402

A_DIAMOND = 3.567


@pytest.fixture(scope="module", autouse=True)
def _single_thread():
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def diamond(scale: float = 1.0):
    """2-atom primitive diamond cell, lattice scaled by ``scale`` (1.03: +3 % strain, +9.3 % volume)."""
    return bulk("C", "diamond", a=A_DIAMOND * scale)


def copper(n: int, a: float = 3.61):
    """``n``-atom Cu cell (fcc primitive cell repeated n times along a), slightly rattled."""
    at = bulk("Cu", "fcc", a=a).repeat((n, 1, 1))
    at.rattle(0.03, seed=n)
    return at


class EMTBatch:
    """A batch predictor built on ASE's EMT that records the size of every structure it evaluates."""

    name = "emt-batch"

    def __init__(self, fail_on_natoms=None, interrupt_on_natoms=None):
        from ase.calculators.emt import EMT

        self.calc = EMT()
        self.seen: list[int] = []
        self.calls = 0
        self.fail_on_natoms = fail_on_natoms
        self.interrupt_on_natoms = interrupt_on_natoms

    def __call__(self, atoms_list):
        self.calls += 1
        out = []
        for a in atoms_list:
            n = len(a)
            if n == self.interrupt_on_natoms:
                raise KeyboardInterrupt("simulated interruption")
            if n == self.fail_on_natoms:
                raise RuntimeError("simulated calculator failure")
            self.seen.append(n)
            b = a.copy()
            b.calc = self.calc
            e = b.get_potential_energy()
            out.append({"energy": e, "forces": b.get_forces(), "stress": b.get_stress()})
        return out


# ----------------------------------------------------------------------------------------------------- CHGNet
@pytest.fixture(scope="module")
def chgnet_available():
    pytest.importorskip("chgnet")
    return gs.load_chgnet()


@pytest.fixture(scope="module")
def relaxed_0gpa(chgnet_available):
    """Batched CHGNet relaxation at 0 GPa of the unstrained (reference) and the 3 %-strained diamond cell."""
    return gs.relax_structures([diamond(1.0), diamond(1.03)], ids=["ref", "strained"], pressure_gpa=0.0,
                               fmax=0.005, max_steps=300, progress=False)


def test_strained_diamond_relaxes_back_to_chgnet_optimum(relaxed_0gpa):
    ref, strained = relaxed_0gpa
    assert ref.error is None and strained.error is None
    assert ref.converged and strained.converged
    assert strained.batched and ref.calculator.startswith("chgnet")
    v_opt = ref.relaxed_volume_per_atom
    assert 5.3 < v_opt < 6.0  # CHGNet diamond: ~5.70 A^3/atom (experiment 5.67)
    assert strained.initial_volume_per_atom == pytest.approx(1.03 ** 3 * diamond().get_volume() / 2, rel=1e-9)
    assert abs(strained.relaxed_volume_per_atom / v_opt - 1) < 0.01
    # it went downhill: at 0 GPa enthalpy == energy
    assert strained.relaxed_energy_per_atom < strained.initial_energy_per_atom
    assert strained.relaxed_enthalpy_per_atom == pytest.approx(strained.relaxed_energy_per_atom, abs=1e-12)
    assert strained.relaxed_structure.composition.reduced_formula == "C"


def test_pressure_compresses_and_enthalpy_is_e_plus_pv(relaxed_0gpa):
    from ase.units import GPa

    r10 = gs.relax_structure(diamond(1.0), pressure_gpa=10.0, fmax=0.02, max_steps=200)
    assert r10.error is None and r10.converged
    assert r10.relaxed_volume_per_atom < relaxed_0gpa[0].relaxed_volume_per_atom
    pv = 10.0 * GPa * r10.relaxed_volume_per_atom
    assert r10.relaxed_enthalpy_per_atom == pytest.approx(r10.relaxed_energy_per_atom + pv, abs=1e-9)
    # the relaxation minimises H: H went down, E went up (compression)
    assert r10.relaxed_enthalpy_per_atom < r10.initial_enthalpy_per_atom
    assert r10.relaxed_energy_per_atom > r10.initial_energy_per_atom


def test_batched_equals_one_by_one(relaxed_0gpa):
    """Lock-step batched CHGNet (single-backward kernel) vs the stock CHGNetCalculator + ASE Optimizer.run."""
    single = gs.relax_structures([diamond(1.03)], ids=["strained"], fmax=0.005, max_steps=300, batch=False,
                                 progress=False)[0]
    batched = relaxed_0gpa[1]
    assert not single.batched and single.converged
    assert single.relaxed_energy_per_atom == pytest.approx(batched.relaxed_energy_per_atom, abs=5e-4)
    assert single.initial_energy_per_atom == pytest.approx(batched.initial_energy_per_atom, abs=1e-4)
    assert single.relaxed_volume_per_atom == pytest.approx(batched.relaxed_volume_per_atom, rel=3e-3)


def test_fast_kernel_matches_stock_chgnet(chgnet_available):
    a = diamond(1.02)
    a.rattle(0.05, seed=3)
    fast = gs.CHGNetBatchPredictor(fast=True)([a])[0]
    stock = gs.CHGNetBatchPredictor(fast=False)([a])[0]
    assert fast["energy"] == pytest.approx(stock["energy"], abs=1e-4)
    np.testing.assert_allclose(fast["forces"], stock["forces"], atol=1e-4)
    np.testing.assert_allclose(fast["stress"], stock["stress"], atol=1e-5)  # eV/A^3
    assert fast["stress"].shape == (6,)


# ------------------------------------------------------------------------------------------ resume / failures
def test_interrupted_run_resumes_without_redoing_finished(tmp_path):
    structs = [copper(n) for n in (1, 2, 3, 4)]
    ids = ["a", "b", "c", "d"]
    kw = dict(ids=ids, pressure_gpa=2.0, fmax=0.05, max_steps=100, out_dir=tmp_path, progress=False)
    # run 1: one at a time, interrupted when the third structure (3 atoms) is first evaluated
    with pytest.raises(KeyboardInterrupt):
        gs.relax_structures(structs, calculator=EMTBatch(interrupt_on_natoms=3), batch=False, **kw)
    assert sorted(p.name for p in tmp_path.glob("*.json")) == ["a.json", "b.json"]
    assert (tmp_path / "a.cif").is_file() and not list(tmp_path.glob(".tmp-*"))
    mtimes = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.json")}
    # run 2: same out_dir, batched: only c and d are computed
    pred = EMTBatch()
    res = gs.relax_structures(structs, calculator=pred, batch=True, **kw)
    assert [r.id for r in res] == ids
    assert [r.resumed for r in res] == [True, True, False, False]
    assert set(pred.seen) == {3, 4}
    assert all(r.error is None and r.converged for r in res)
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("[ab].json")} == mtimes
    # resumed results carry the structures
    assert res[0].relaxed_structure is not None and len(res[0].initial_structure) == 1
    # a third run does nothing; other settings are refused instead of mixed in
    pred3 = EMTBatch()
    gs.relax_structures(structs, calculator=pred3, **kw)
    assert pred3.calls == 0
    with pytest.raises(ValueError, match="pressure"):
        gs.relax_structures(structs, calculator=pred3, **{**kw, "pressure_gpa": 5.0})


def test_lockstep_makes_one_call_per_step():
    pred = EMTBatch()
    res = gs.relax_structures([copper(1), copper(2), copper(4)], pressure_gpa=1.0, calculator=pred,
                              fmax=0.05, max_steps=100, progress=False)
    assert all(r.converged for r in res)
    assert pred.calls == max(r.steps for r in res) + 1
    assert len(pred.seen) == sum(r.steps + 1 for r in res)


def test_workers_give_the_same_results_in_input_order(tmp_path):
    """workers=2: two spawned processes share the structures; results and files as with one process."""
    structs = [copper(n) for n in (1, 2, 3, 4, 2)]
    ids = ["a", "b", "c", "d", "e"]
    kw = dict(ids=ids, pressure_gpa=2.0, fmax=0.05, max_steps=100, progress=False, calculator="emt")
    one = gs.relax_structures(structs, **kw)
    two = gs.relax_structures(structs, workers=2, out_dir=tmp_path, **kw)
    assert [r.id for r in two] == ids
    for a, b in zip(one, two):
        assert b.error is None and b.converged and a.steps == b.steps
        assert b.relaxed_enthalpy_per_atom == pytest.approx(a.relaxed_enthalpy_per_atom, abs=1e-10)
    assert sorted(p.name for p in tmp_path.glob("*.json")) == [f"{i}.json" for i in ids]
    with pytest.raises(ValueError, match="by name"):
        gs.relax_structures(structs, calculator=EMTBatch(), workers=2, progress=False)
    with pytest.raises(ValueError, match="workers must be >= 1"):
        gs.relax_structures(structs, calculator="emt", workers=0, progress=False)


@pytest.mark.parametrize("optimizer", ["FIRE", "BFGS"])
def test_lockstep_reproduces_ase_run_exactly(optimizer):
    """Same calculator (EMT), lock-step batched loop vs ASE's own Optimizer.run: same steps, same result."""
    structs = [copper(2), copper(3)]
    kw = dict(pressure_gpa=3.0, optimizer=optimizer, fmax=0.02, max_steps=100, progress=False)
    lock = gs.relax_structures(structs, calculator=EMTBatch(), **kw)
    ref = gs.relax_structures(structs, calculator="emt", **kw)
    for a, b in zip(lock, ref):
        assert a.batched and not b.batched and a.converged and b.converged
        assert a.steps == b.steps
        assert a.relaxed_enthalpy_per_atom == pytest.approx(b.relaxed_enthalpy_per_atom, abs=1e-10)
        assert a.relaxed_volume_per_atom == pytest.approx(b.relaxed_volume_per_atom, rel=1e-10)


def test_failures_are_recorded_not_raised(tmp_path):
    pred = EMTBatch(fail_on_natoms=3)
    res = gs.relax_structures([copper(1), copper(3), None, copper(2)], ids=["ok1", "bad", "none", "ok2"],
                              calculator=pred, fmax=0.05, max_steps=50, out_dir=tmp_path, progress=False)
    by = {r.id: r for r in res}
    assert by["ok1"].error is None and by["ok2"].error is None
    assert "simulated calculator failure" in by["bad"].error
    assert by["none"].error and not by["none"].ok
    stored = json.loads((tmp_path / "bad.json").read_text())
    assert "simulated" in stored["error"]
    m = gs.ground_state_metrics(res)
    assert m["n"] == 4 and m["n_failed"] == 2 and m["n_relaxed"] == 2


# ----------------------------------------------------------------------------------------------------- metrics
def _hand_result(sid, structure, e0, e1, v0=None, v1=None, p=0.0, relaxed=None, error=None):
    n = len(structure)
    v = structure.volume / n
    from ase.units import GPa

    v0 = v if v0 is None else v0
    v1 = v if v1 is None else v1
    return gs.RelaxResult(id=sid, n_atoms=n, pressure_gpa=p, initial_energy_per_atom=e0, relaxed_energy_per_atom=e1,
                          initial_enthalpy_per_atom=e0 + p * GPa * v0, relaxed_enthalpy_per_atom=e1 + p * GPa * v1,
                          initial_volume_per_atom=v0, relaxed_volume_per_atom=v1, converged=True, error=error,
                          initial_structure=structure, relaxed_structure=structure if relaxed is None else relaxed)


def test_metrics_identical_structures():
    from pymatgen.io.ase import AseAtomsAdaptor

    s = AseAtomsAdaptor.get_structure(bulk("C", "diamond", a=A_DIAMOND, cubic=True))
    res = [_hand_result(f"x{i}", s, -9.0, -9.0) for i in range(3)]
    m = gs.ground_state_metrics(res)
    assert m["match_rate"] == 100.0 and m["n_matched"] == 3
    assert m["delta_rms"] == pytest.approx(0.0, abs=1e-8)
    assert m["dE_rms"] == 0.0 and m["dV_rms"] == 0.0
    # a failed relaxation is a miss; dE in meV/atom, enthalpy by default
    res.append(gs.RelaxResult(id="fail", error="boom", initial_structure=s))
    res[0] = _hand_result("x0", s, -8.9, -9.0, v0=6.0, v1=5.5, p=10.0)
    m = gs.ground_state_metrics(res)
    assert m["match_rate"] == pytest.approx(75.0)
    assert m["n_failed"] == 1 and m["n_relaxed"] == 3
    from ase.units import GPa

    dh = 100.0 + 1000 * 10 * GPa * 0.5
    assert m["dE_rms"] == pytest.approx(math.sqrt(dh ** 2 / 3))
    assert m["dE_rms_energy"] == pytest.approx(math.sqrt(100.0 ** 2 / 3))
    assert m["dV_rms"] == pytest.approx(math.sqrt(0.25 / 3))
    assert gs.ground_state_metrics(res, energy="energy")["dE_rms"] == pytest.approx(m["dE_rms_energy"])


def test_histogram_bins_are_64_mev():
    from pymatgen.io.ase import AseAtomsAdaptor

    s = AseAtomsAdaptor.get_structure(bulk("C", "diamond", a=A_DIAMOND))
    des = [10.0, 70.0, 100.0, 130.0, -5.0, 64.0]
    res = [_hand_result(f"x{i}", s, -9.0 + d / 1000, -9.0) for i, d in enumerate(des)]
    counts, edges = gs.delta_e_histogram(res)
    np.testing.assert_allclose(np.diff(edges), 64.0)
    assert np.all(np.mod(edges, 64.0) == 0)
    assert edges[0] == -64.0 and edges[-1] == 192.0
    assert counts.tolist() == [1, 1, 3, 1]  # 64.0 falls in [64, 128)
    assert counts.sum() == len(des)
    c32, e32 = gs.delta_e_histogram(res, bin_mev=32)
    np.testing.assert_allclose(np.diff(e32), 32.0)
    m = gs.ground_state_metrics(res)
    assert m["dE_mode_bin"] == [64.0, 128.0]


def test_plot_and_table3(tmp_path):
    from pymatgen.io.ase import AseAtomsAdaptor

    s = AseAtomsAdaptor.get_structure(bulk("C", "diamond", a=A_DIAMOND))
    res_a = [_hand_result(f"a{i}", s, -9.0 + d / 1000, -9.0) for i, d in enumerate([10, 80, 90, 300])]
    res_b = [_hand_result(f"b{i}", s, -9.0 + d / 1000, -9.0) for i, d in enumerate([5, 20])]
    from dpcdvae.viz import plot_delta_e_vs_paper

    de = {"DP-CDVAE": [r.delta_energy_mev() for r in res_a], "CDVAE": [r.delta_energy_mev() for r in res_b]}
    fig = plot_delta_e_vs_paper(de, path=tmp_path / "s2.png")
    assert (tmp_path / "s2.png").stat().st_size > 1000
    assert len(fig.axes) == 2
    ours = {"DP-CDVAE": gs.ground_state_metrics(res_a), "CDVAE": gs.ground_state_metrics(res_b)}
    df = gs.table3(ours)
    assert list(df["source"]) == [gs.DFT_PAPER_LABEL] * 3 + [gs.OURS_LABEL] * 2
    assert df.loc[df["source"] == gs.DFT_PAPER_LABEL, "dE_rms"].tolist() == [468.8, 494.4, 400.7]
    assert df.loc[df["source"] == gs.DFT_PAPER_LABEL, "match_rate"].tolist() == [63.0, 62.0, 64.0]
    assert "CHGNet" in df.attrs["footer"] and "49 meV/atom" in df.attrs["footer"]
    text = gs.render_table3(df)
    assert "DFT (paper)" in text and "CHGNet (ours)" in text and "Caveat" in text


# ----------------------------------------------------------------------------------------------------- inputs/CLI
def test_cli_relax_folder_and_extxyz(tmp_path, capsys):
    import argparse

    import ase.io
    from pymatgen.io.ase import AseAtomsAdaptor
    from pymatgen.io.cif import CifWriter

    from dpcdvae.cli.relax import add_parser

    cifs = tmp_path / "cifs"
    cifs.mkdir()
    for n in (1, 2):
        CifWriter(AseAtomsAdaptor.get_structure(copper(n))).write_file(cifs / f"cu{n}.cif")
    (cifs / "broken.cif").write_text("not a cif")
    parser = argparse.ArgumentParser(prog="dpcdvae")
    add_parser(parser.add_subparsers(dest="command", required=True))
    out = tmp_path / "out"
    a = parser.parse_args(["relax", str(cifs), "--pressure", "3", "--calculator", "emt", "--out", str(out),
                           "--no-progress", "--max-steps", "100"])
    assert a.func(a) == 0
    text = capsys.readouterr().out
    assert "cu1" in text and "match rate" in text
    summary = json.loads((out / "summary.json").read_text())
    assert summary["metrics"]["n"] == 3 and summary["metrics"]["n_failed"] == 1
    assert {r["id"] for r in summary["results"]} == {"cu1", "cu2", "broken"}
    assert (out / "cu2.cif").is_file() and (out / "cu2.json").is_file()
    assert summary["wall_s_total"] == summary["wall_s"] > 0
    # a second call resumes everything; the total keeps the first run's time
    assert a.func(a) == 0
    again = json.loads((out / "summary.json").read_text())
    assert again["n_resumed"] == 3 and again["wall_s_total"] >= summary["wall_s_total"] + again["wall_s"] - 0.01

    frames = []
    for n, mid in ((1, "mp-1"), (2, "mp-2")):
        at = copper(n)
        at.info["material_id"] = mid
        frames.append(at)
    ase.io.write(tmp_path / "gen.extxyz", frames, format="extxyz")
    res = gs.relax_structures(tmp_path / "gen.extxyz", calculator="emt", max_steps=100, progress=False)
    assert [r.id for r in res] == ["mp-1", "mp-2"] and all(r.error is None for r in res)


def test_ground_state_study_two_models(tmp_path):
    """`dpcdvae ground-state`: generate with a DP-CDVAE and a CDVAE checkpoint, relax, one Table III with both."""
    import json as _json

    from dpcdvae.data import make_demo_dataset
    from dpcdvae.workflows import run_ground_state_study
    from dpcdvae.train import train

    root = make_demo_dataset(tmp_path / "demo", n=(16, 4, 4)).parent
    cks = []
    for model in ("dpcdvae", "cdvae"):
        res = train("demo_synthetic_perovskites", "tiny", out=tmp_path / model, root=str(root), max_epochs=1,
                    overrides={"model.model": model, "train.batch_size": 8}, progress=False)
        cks.append(res["best"])
    s = run_ground_state_study(cks, str(tmp_path / "study"), n=2, pressure_gpa=10.0, steps=2, max_steps=3,
                               progress=False)
    assert set(s.models) == {"DP-CDVAE", "CDVAE"}
    assert "DFT (paper)" in s.table and "CHGNet" in s.table
    study = _json.loads((tmp_path / "study" / "study.json").read_text())
    assert all(m["n"] == 2 for m in study["models"].values())
    assert (tmp_path / "study" / "delta_e_hist.png").is_file()
