"""dpcdvae._alloc.tune_allocator: freed memory is reused without new page faults; the opt-out works."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

_PROBE = r"""
import json, resource, sys
import torch
from dpcdvae._alloc import tune_allocator

def faults_of_loop():
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):  # a step's temporary: 64 MiB, written, freed
        x = torch.empty(16 * 2 ** 20)
        x.fill_(1.0)
        del x
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0

state = tune_allocator() if sys.argv[1] == "tune" else {"applied": False, "reason": "not called"}
faults_of_loop()  # the first round may map the memory once
print(json.dumps({"state": state, "faults": faults_of_loop()}))
"""


def _probe(mode: str, env_extra: dict | None = None) -> dict:
    env = {**os.environ, **(env_extra or {})}
    for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "DPCDVAE_TUNE_MALLOC"):
        if k not in (env_extra or {}):
            env.pop(k, None)
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc (Linux) only")
def test_tuned_allocator_reuses_freed_memory():
    default = _probe("default")
    tuned = _probe("tune")
    if not tuned["state"]["applied"]:
        pytest.skip(f"not glibc here: {tuned['state']['reason']}")
    # 10 x 64 MiB written = 163,840 pages: the default unmaps each block on free and faults it in again
    assert default["faults"] > 100_000, default
    assert tuned["faults"] < 0.05 * default["faults"], (tuned, default)


def test_opt_out_by_environment():
    res = _probe("tune", {"DPCDVAE_TUNE_MALLOC": "0"})
    assert res["state"] == {"applied": False, "reason": "disabled by DPCDVAE_TUNE_MALLOC"}


def test_idempotent_and_reported():
    from dpcdvae._alloc import allocator_state, tune_allocator

    first = tune_allocator()
    assert tune_allocator() == first == allocator_state()
    assert set(first) == {"applied", "reason"}
