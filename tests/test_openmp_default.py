"""The package's OpenMP waiting default (dpcdvae._openmp_default): a short spin on free cores, PASSIVE on a fully
loaded machine, nothing when the user chose or torch was imported first."""
from __future__ import annotations

import os
import subprocess
import sys

import dpcdvae


def test_short_spin_on_free_cores():
    env = {}
    assert dpcdvae._openmp_default(env, torch_loaded=False, load=0.3, cpus=2) == "GOMP_SPINCOUNT=3000"
    assert env == {"GOMP_SPINCOUNT": "3000"}


def test_passive_when_the_machine_is_fully_loaded():
    env = {}
    said = dpcdvae._openmp_default(env, torch_loaded=False, load=2.0, cpus=2)
    assert env == {"OMP_WAIT_POLICY": "PASSIVE"} and "PASSIVE" in said


def test_user_settings_and_an_earlier_torch_are_left_alone():
    for given in ({"OMP_WAIT_POLICY": "ACTIVE"}, {"GOMP_SPINCOUNT": "10"}):
        env = dict(given)
        assert "left to the environment" in dpcdvae._openmp_default(env, torch_loaded=False, load=0.0, cpus=2)
        assert env == given
    env = {}
    assert "torch was imported" in dpcdvae._openmp_default(env, torch_loaded=True, load=0.0, cpus=2)
    assert env == {}


def _child(code: str, **extra) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(extra)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_a_fresh_process_gets_the_default_before_torch_starts():
    out = _child("import os, dpcdvae, torch; print(dpcdvae.OPENMP_WAIT, '|', os.environ.get('GOMP_SPINCOUNT'), '|', "
                 "os.environ.get('OMP_WAIT_POLICY'))")
    said, spin, policy = [x.strip() for x in out.split("|")]
    assert (said, spin, policy) in {("GOMP_SPINCOUNT=3000", "3000", "None"),
                                    ("OMP_WAIT_POLICY=PASSIVE (machine fully loaded at import)", "None", "PASSIVE")}
    out = _child("import os, torch, dpcdvae; print(dpcdvae.OPENMP_WAIT, '|', os.environ.get('GOMP_SPINCOUNT'))")
    assert out == "unchanged (torch was imported before dpcdvae) | None"
    out = _child("import os, dpcdvae; print(os.environ.get('OMP_WAIT_POLICY'), os.environ.get('GOMP_SPINCOUNT'))",
                 OMP_WAIT_POLICY="PASSIVE")
    assert out == "PASSIVE None"
