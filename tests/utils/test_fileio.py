"""dpcdvae.utils.fileio: atomic writes leave the old file or the complete new one, and no temporary file; the one JSON
sanitiser (jsonable, strict_json_dumps)."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from dpcdvae.utils.fileio import atomic_open, atomic_write_bytes, atomic_write_text, jsonable, strict_json_dumps


def test_atomic_write_text_and_bytes(tmp_path):
    p = tmp_path / "sub" / "a.json"
    assert atomic_write_text(p, '{"x": 1}') == p
    assert p.read_text() == '{"x": 1}'
    atomic_write_bytes(p, b"new", fsync=True)
    assert p.read_bytes() == b"new"
    assert [f.name for f in p.parent.iterdir()] == ["a.json"]


def test_interrupted_write_keeps_old_file(tmp_path):
    p = tmp_path / "ckpt.pt"
    p.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="crash"):
        with atomic_open(p, "wb") as fh:
            fh.write(b"half of the new")
            raise RuntimeError("crash mid-write")
    assert p.read_bytes() == b"old"
    assert [f.name for f in tmp_path.iterdir()] == ["ckpt.pt"]


def test_bad_mode(tmp_path):
    with pytest.raises(ValueError, match="mode"):
        with atomic_open(tmp_path / "x", "a"):
            pass


# ------------------------------------------------------------------------------------------- the JSON sanitiser
def _refuse(c):
    raise ValueError(f"bare {c} in the JSON text")


def test_jsonable_non_finite_numbers_become_none():
    for v in (math.nan, math.inf, -math.inf, np.float64("nan"), np.float32("inf"), np.float16("-inf"),
              torch.tensor(float("nan")), torch.tensor(float("-inf"), dtype=torch.float64), np.array(np.nan)):
        assert jsonable(v) is None, v
    assert jsonable(np.array([1.5, np.nan, np.inf])) == [1.5, None, None]
    assert jsonable(torch.tensor([[0.5, float("inf")]])) == [[0.5, None]]


def test_jsonable_scalars_become_plain_python_types():
    cases = [(np.float64(0.1), float, 0.1), (np.float32(2.5), float, 2.5), (np.int64(3), int, 3),
             (np.int8(-2), int, -2), (np.uint16(7), int, 7), (np.bool_(True), bool, True),
             (np.bool_(False), bool, False), (torch.tensor(4), int, 4), (torch.tensor(True), bool, True),
             (torch.tensor(1.5), float, 1.5), (np.array(5), int, 5), (1.25, float, 1.25), (7, int, 7),
             (True, bool, True), ("NaN", str, "NaN")]
    for v, kind, want in cases:
        got = jsonable(v)
        assert type(got) is kind and got == want, (v, got)
    assert jsonable(None) is None


def test_jsonable_containers():
    got = jsonable({"a": (1, np.int64(2), [np.float32(0.5), None]), 3: {"b": np.array([True, False])},
                    np.int64(4): (), "s": "text"})
    assert got == {"a": [1, 2, [0.5, None]], "3": {"b": [True, False]}, "4": [], "s": "text"}
    assert all(type(k) is str for k in got)
    assert type(got["a"][1]) is int and type(got["3"]["b"][0]) is bool


def test_jsonable_other_objects_become_their_str():
    assert jsonable(Path("/tmp/x")) == str(Path("/tmp/x"))
    assert jsonable({"p": Path("a")}) == {"p": "a"}

    class Thing:
        def __str__(self):
            return "a thing"

    assert jsonable([Thing()]) == ["a thing"]


def test_strict_json_dumps_writes_standard_json_and_passes_options():
    obj = {"x": np.float64("nan"), "y": [np.int64(1), np.float32(0.25), np.inf], "z": (np.bool_(True),)}
    text = strict_json_dumps(obj, sort_keys=True)
    assert json.loads(text, parse_constant=_refuse) == {"x": None, "y": [1, 0.25, None], "z": [True]}
    assert text == json.dumps(jsonable(obj), sort_keys=True)
    assert strict_json_dumps({"a": 1}, indent=1) == '{\n "a": 1\n}'
    # a finite float keeps its shortest repr, numpy's float64 included
    assert strict_json_dumps([0.1, np.float64(0.1), 1e-300]) == "[0.1, 0.1, 1e-300]"


def test_the_writers_use_the_one_sanitiser():
    """evaluate's flat metrics and a relaxation record are sanitised by jsonable (NaN -> None, numpy -> Python)."""
    from dpcdvae.eval.evaluate import flatten
    from dpcdvae.eval.relax import RelaxResult

    flat = flatten({"match_rate": np.float64(55.5), "rms": np.float32("nan"), "n": np.int64(3),
                    "ok": np.bool_(True), "arr": np.array([1.0, np.inf]), "nested": {"a": np.float64("inf")},
                    "per_structure": [1, 2]})
    assert flat == {"match_rate": 55.5, "rms": None, "n": 3, "ok": True, "arr": [1.0, None], "nested.a": None}
    assert type(flat["match_rate"]) is float and type(flat["n"]) is int and type(flat["ok"]) is bool
    d = RelaxResult(id="x", n_atoms=np.int64(5), relaxed_energy_per_atom=np.float64(-1.5), converged=np.bool_(True),
                    final_fmax=np.float32("nan")).to_dict(structures=False)
    assert d["n_atoms"] == 5 and type(d["n_atoms"]) is int
    assert d["relaxed_energy_per_atom"] == -1.5 and type(d["relaxed_energy_per_atom"]) is float
    assert d["converged"] is True and d["final_fmax"] is None and d["initial_energy_per_atom"] is None
    assert d["error"] is None and d["id"] == "x"
