"""What the jobs return (ReconstructionResult, GenerationResult: the fields their docstrings promise, on a tiny model;
RelaxRunResult, GroundStateStudyResult: the relaxations and the record written, no private key),
the one JSON sanitiser (dpcdvae.utils.fileio.jsonable; no second one in the package) and the one process-pool helper
(dpcdvae.utils.pool.process_pool)."""
from __future__ import annotations

import ast
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dpcdvae.utils.fileio import jsonable, strict_json_dumps
from dpcdvae.utils.pool import default_start_method, process_pool

PKG = Path(__file__).resolve().parents[2] / "dpcdvae"
DEMO_SIZES = (16, 4, 6)  # conftest's demo_root


# ------------------------------------------------------------------------------------------------ result objects
@pytest.fixture(scope="module")
def tiny_model(demo_train):
    from dpcdvae.config import load_config
    from dpcdvae.data.scalers import LatticeScaler
    from dpcdvae.models import build_model

    cfg = load_config("tiny")
    torch.manual_seed(0)
    return build_model(cfg, LatticeScaler(cfg.model.lattice_scaler).fit(demo_train)).eval()


def test_reconstruction_result_fields_are_what_the_docstring_says(tiny_model, demo_root, tmp_path):
    from pymatgen.core import Structure

    from dpcdvae.workflows import ReconstructionResult, reconstruct_split

    res = reconstruct_split(tiny_model, tmp_path / "recon", dataset="demo_synthetic_perovskites", root=str(demo_root),
                            limit=5, batch_size=3, sampler="strided_eq7", steps=2, n_workers=1, progress=False,
                            keep_structures=True, breakdown=True)
    assert isinstance(res, ReconstructionResult)
    assert isinstance(res.out, Path) and (res.out / "metrics.json").is_file() and (res.out / "cif").is_dir()
    assert res.n == 5 and len(res.ids) == 5 and all(isinstance(i, str) for i in res.ids)
    assert isinstance(res.sample_wall_s, float) and res.sample_wall_s >= 0
    assert (res.sampler, res.steps, res.latent, res.devices) == ("strided_eq7", 2, "sample", 1)
    assert res.dataset == "demo_synthetic_perovskites" and res.skipped_rows == []
    # metrics: the full reconstruction_metrics dict, per crystal in the order of ids
    assert [r["material_id"] for r in res.metrics["per_structure"]] == res.ids
    assert res.match_rate == res.metrics["match_rate"] and 0.0 <= res.match_rate <= 100.0
    assert res.delta_rms == res.metrics["delta_rms"] or (math.isnan(res.delta_rms) and res.metrics["n_matched"] == 0)
    assert set(res.failures) >= {"counts", "percent"} and "per_structure" not in res.failures
    assert len(res.preds) == len(res.targets) == 5
    assert all(isinstance(t, Structure) for t in res.targets)
    assert all(p is None or isinstance(p, Structure) for p in res.preds)
    # summary(): the record metrics.json holds (and the command line prints), scalar metrics only
    s = res.summary()
    assert json.loads((res.out / "metrics.json").read_text()) == json.loads(strict_json_dumps(s))
    assert list(s)[:12] == ["out", "n", "sample_wall_s", "sampler", "steps", "latent", "initial_types",
                            "type_update", "weights", "devices", "dataset", "model_dataset"]
    assert s["out"] == str(res.out) and s["match_rate"] == res.match_rate and s["failures"] == res.failures
    assert not any(isinstance(v, list) for v in s.values()) and "per_structure" not in s and "preds" not in s

    bare = reconstruct_split(tiny_model, None, dataset="demo_synthetic_perovskites", root=str(demo_root), limit=2,
                             sampler="strided_eq7", steps=2, metrics=False, progress=False)
    assert bare.out is None and bare.metrics is None and bare.match_rate is None and bare.failures is None
    assert bare.preds is None and bare.targets is None and len(bare.ids) == 2
    assert "match_rate" not in bare.summary() and "failures" not in bare.summary()


def test_generation_result_fields_are_what_the_docstring_says(tiny_model, tmp_path):
    from dpcdvae.models import SampleOutput
    from dpcdvae.workflows import GenerationResult, generate_to_folder

    res = generate_to_folder(tiny_model, 5, tmp_path / "gen", sampler="strided_eq7", steps=2, seed=1, batch_size=2,
                             progress=False, reseed_batches=True)
    assert isinstance(res, GenerationResult) and isinstance(res.samples, SampleOutput)
    assert res.out == tmp_path / "gen" and res.cif_dir == res.out / "cif"
    assert res.n == len(res.samples) == 5 and res.batches_read_back == 0
    written = json.loads((res.out / "samples.json").read_text())
    assert res.n_decoded == sum(res.samples.decoded_mask) == len(list(res.cif_dir.glob("*.cif")))
    assert res.n_valid == sum(res.samples.valid_mask) <= res.n_decoded
    assert [c["id"] for c in written["crystals"]] == res.samples.ids
    assert res.meta["sampler"] == "strided_eq7" and res.meta["seed"] == 1


def _relaxed(id_, resumed=False, failed=False):
    """A RelaxResult without running a relaxation (two-atom Cu cells; energies in eV/atom, volumes in A^3/atom)."""
    from ase.build import bulk
    from pymatgen.io.ase import AseAtomsAdaptor

    from dpcdvae.eval.relax import RelaxResult

    s = AseAtomsAdaptor.get_structure(bulk("Cu", "fcc", a=3.61).repeat((2, 1, 1)))
    return RelaxResult(id=id_, n_atoms=2, formula="Cu2", pressure_gpa=10.0, initial_energy_per_atom=-3.5,
                       relaxed_energy_per_atom=-3.6, initial_enthalpy_per_atom=-3.4, relaxed_enthalpy_per_atom=-3.5,
                       initial_volume_per_atom=11.8, relaxed_volume_per_atom=11.7, steps=3, converged=True,
                       error="boom" if failed else None, initial_structure=s,
                       relaxed_structure=None if failed else s.copy(), resumed=resumed)


def test_relax_run_result_is_what_summary_json_holds(tmp_path):
    """run_relax returns a RelaxRunResult: the RelaxResults themselves, and summary() is summary.json (the keys of
    before, no private key)."""
    import ase.io
    from ase.build import bulk

    from dpcdvae.eval.relax import RelaxResult
    from dpcdvae.workflows import RelaxRunResult, run_relax

    frames = []
    for n, mid in ((1, "cu-1"), (2, "cu-2")):
        at = bulk("Cu", "fcc", a=3.61).repeat((n, 1, 1))
        at.rattle(0.03, seed=n)
        at.info["material_id"] = mid
        frames.append(at)
    ase.io.write(tmp_path / "gen.extxyz", frames, format="extxyz")
    out = tmp_path / "relaxed"
    res = run_relax(str(tmp_path / "gen.extxyz"), str(out), pressure_gpa=1.0, calculator="emt", max_steps=20,
                    progress=False, command="test")
    assert isinstance(res, RelaxRunResult) and res.out == out and res.plot is None
    assert [r.id for r in res.results] == ["cu-1", "cu-2"] and all(isinstance(r, RelaxResult) for r in res.results)
    assert [p["id"] for p in res.per_structure] == ["cu-1", "cu-2"] and "per_structure" not in res.metrics
    assert res.settings["pressure_gpa"] == 1.0 and res.settings["calculator"] == "emt" and res.n_resumed == 0
    assert res.wall_s_total == res.wall_s >= 0 and res.command == "test"
    s = res.summary()
    assert list(s) == ["command", "date", "input", "settings", "wall_s", "wall_s_total", "n_resumed", "metrics",
                       "results"]
    assert not any(k.startswith("_") for k in s)
    assert json.loads((out / "summary.json").read_text()) == json.loads(strict_json_dumps(s))
    assert s["results"][0]["id"] == "cu-1" and s["results"][0]["resumed"] is False and "dE_meV" in s["results"][0]
    assert "relaxed_structure" not in s["results"][0] and s["metrics"]["n"] == 2
    again = run_relax(str(tmp_path / "gen.extxyz"), str(out), pressure_gpa=1.0, calculator="emt", max_steps=20,
                      progress=False)
    assert again.n_resumed == 2 and again.summary()["n_resumed"] == 2


def test_ground_state_study_result_holds_each_models_relaxations(tmp_path):
    from dpcdvae.workflows import GroundStateStudyResult, RelaxRunResult

    runs = {"DP-CDVAE": [_relaxed("a"), _relaxed("b", failed=True)], "CDVAE": [_relaxed("c", resumed=True)]}
    rows = {"DP-CDVAE": {"checkpoint": "a.ckpt", "sampler": "eq7", "match_rate": 50.0, "n_generated": 3,
                         "n_degenerate": 1, "relax_wall_s": 1.5},
            "CDVAE": {"checkpoint": "b.ckpt", "sampler": "langevin", "match_rate": 100.0, "n_generated": 3,
                      "n_degenerate": 2, "relax_wall_s": 0.5}}
    study = GroundStateStudyResult(out=tmp_path, n=3, pressure_gpa=10.0, seed=0, models=rows, results=runs,
                                   table="| model |", wall_s=2.0, command="dpcdvae ground-state", date="2026-01-01")
    assert study.results["DP-CDVAE"] is runs["DP-CDVAE"] and [r.id for r in study.results["CDVAE"]] == ["c"]
    assert list(study.results) == list(study.models)
    s = study.summary()
    assert list(s) == ["command", "date", "n", "pressure_gpa", "seed", "wall_s", "models"]
    assert not any(k.startswith("_") for k in s) and "table" not in s and "results" not in s
    json.loads(strict_json_dumps(s))  # JSON-ready
    study.plot = tmp_path / "delta_e_hist.png"
    assert study.summary()["plot"] == str(tmp_path / "delta_e_hist.png")

    run = RelaxRunResult(out=tmp_path, input="gen.extxyz", settings={}, results=runs["DP-CDVAE"],
                         metrics={"n": 2}, per_structure=[{"id": r.id, "matched": True, "rms_dist": 0.0, "dV": 0.1,
                                                          "dE_meV": 1.0} for r in runs["DP-CDVAE"]],
                         wall_s=1.0, wall_s_total=3.0)
    assert run.n_resumed == 0 and [row["id"] for row in run.summary()["results"]] == ["a", "b"]
    assert run.summary()["results"][1]["error"] == "boom" and "plot" not in run.summary()


# ------------------------------------------------------------------------------------------------ the sanitiser
def test_jsonable_documented_conversions(tmp_path):
    v = {"f32": np.float32(0.5), "i64": np.int64(3), "b": np.bool_(True), "arr": np.array([[1, 2], [3, 4]]),
         "t": torch.tensor([1.5, float("nan")]), "t0": torch.tensor(2), "p": tmp_path / "x.json",
         "nan": float("nan"), "inf": np.float64("inf"), 7: (1, None)}
    got = jsonable(v)
    assert got == {"f32": 0.5, "i64": 3, "b": True, "arr": [[1, 2], [3, 4]], "t": [1.5, None], "t0": 2,
                   "p": str(tmp_path / "x.json"), "nan": None, "inf": None, "7": [1, None]}
    assert type(got["i64"]) is int and type(got["b"]) is bool and type(got["f32"]) is float
    json.dumps(got, allow_nan=False)
    kept = jsonable(v, nonfinite="keep")  # the property head's metadata: NaN stays a float
    assert math.isnan(kept["nan"]) and kept["inf"] == math.inf and math.isnan(kept["t"][1])
    assert json.dumps(kept["nan"]) == "NaN"
    with pytest.raises(ValueError, match="nonfinite"):
        jsonable(1.0, nonfinite="str")


NUMPY_SCALAR_TYPES = {"floating", "integer", "number", "generic", "bool_", "float32", "float64", "int32", "int64"}


def second_sanitisers(source: str, where: str) -> list[str]:
    """Functions of ``source`` that look like a JSON sanitiser of their own: in a module that uses ``json``, an
    ``isinstance`` check against a numpy scalar type; and any ``json.dump(s)(..., default=...)`` (an ad-hoc
    fallback instead of :func:`jsonable`)."""
    tree = ast.parse(source)
    uses_json = any(isinstance(n, ast.Import) and any(a.name == "json" for a in n.names) for n in ast.walk(tree))
    found = []
    for fn in (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
        for node in ast.walk(fn):
            if not isinstance(node, ast.Call):
                continue
            if uses_json and isinstance(node.func, ast.Name) and node.func.id == "isinstance" and len(node.args) == 2:
                names = {a.attr for a in ast.walk(node.args[1]) if isinstance(a, ast.Attribute)}
                if names & NUMPY_SCALAR_TYPES:
                    found.append(f"{where}:{fn.name}:{node.lineno} isinstance against numpy scalar types")
            if (isinstance(node.func, ast.Attribute) and node.func.attr in ("dump", "dumps")
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "json"
                    and any(k.arg == "default" for k in node.keywords)):
                found.append(f"{where}:{fn.name}:{node.lineno} json.{node.func.attr}(default=...)")
    return sorted(set(found))


#: not sanitisers: a cache key hashed from plain settings (its bytes must not change, or cached results are lost)
ALLOWED = {"notebooks/choice.py:_key"}


def test_no_second_json_sanitiser_in_the_package():
    bad = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG).as_posix()
        if rel == "utils/fileio.py":
            continue
        bad += [f for f in second_sanitisers(path.read_text(), rel) if ":".join(f.split(":")[:2]) not in ALLOWED]
    assert not bad, ("JSON sanitising outside dpcdvae.utils.fileio (use jsonable / strict_json_dumps):\n"
                     + "\n".join(bad))


def test_the_sanitiser_check_sees_a_planted_copy():
    planted = ("import json\nimport numpy as np\n\ndef _clean(v):\n    if isinstance(v, (np.floating, float)):\n"
               "        return float(v)\n    return v\n\ndef write(d, f):\n    f.write(json.dumps(d, default=str))\n")
    got = second_sanitisers(planted, "eval/x.py")
    assert [g.split(" ")[0] for g in got] == ["eval/x.py:_clean:5", "eval/x.py:write:10"]


# ------------------------------------------------------------------------------------------------ the pool helper
def _square(x):
    return x * x


_TAG = None


def _set_tag(tag):
    global _TAG
    _TAG = tag


def _tagged(x):
    return (_TAG, x, os.getpid())


def test_process_pool_runs_a_function_in_two_workers():
    with process_pool(2) as pool:
        assert list(pool.map(_square, range(10))) == [x * x for x in range(10)]


def test_process_pool_runs_the_initializer_in_each_worker():
    with process_pool(2, initializer=_set_tag, initargs=("ready",)) as pool:
        got = list(pool.map(_tagged, range(6)))
    assert [(t, x) for t, x, _ in got] == [("ready", x) for x in range(6)]
    assert all(pid != os.getpid() for _, _, pid in got)
    assert _TAG is None  # the initializer ran in the workers, not here


def test_process_pool_start_methods():
    assert default_start_method() == ("fork" if sys.platform.startswith("linux") else "spawn")
    with process_pool(2, start_method="spawn") as pool:  # what the relaxations ask for
        assert pool._mp_context.get_start_method() == "spawn"
        assert sorted(pool.map(math.factorial, [3, 4])) == [6, 24]
    with pytest.raises(ValueError, match="start_method"):
        process_pool(2, start_method="thread")
    with pytest.raises(ValueError, match="workers"):
        process_pool(0)
