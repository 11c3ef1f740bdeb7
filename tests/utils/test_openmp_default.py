"""The entry points' OpenMP waiting default (dpcdvae.utils.openmp.configure_openmp): a short spin on free cores,
PASSIVE on a fully loaded machine, nothing when the user chose or torch was imported first; and importing the
package changes no environment variable (the entry points apply it)."""
from __future__ import annotations

import os
import subprocess
import sys

from dpcdvae.utils import openmp


def test_short_spin_on_free_cores():
    env = {}
    assert openmp.configure_openmp(env, torch_loaded=False, load=0.3, cpus=2) == "GOMP_SPINCOUNT=3000"
    assert env == {"GOMP_SPINCOUNT": "3000"}


def test_passive_when_the_machine_is_fully_loaded():
    env = {}
    said = openmp.configure_openmp(env, torch_loaded=False, load=2.0, cpus=2)
    assert env == {"OMP_WAIT_POLICY": "PASSIVE"} and "PASSIVE" in said


def test_user_settings_and_an_earlier_torch_are_left_alone():
    for given in ({"OMP_WAIT_POLICY": "ACTIVE"}, {"GOMP_SPINCOUNT": "10"}):
        env = dict(given)
        assert "left to the environment" in openmp.configure_openmp(env, torch_loaded=False, load=0.0, cpus=2)
        assert env == given
    env = {}
    assert "torch was imported" in openmp.configure_openmp(env, torch_loaded=True, load=0.0, cpus=2)
    assert env == {}


def _child(code: str, **extra) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(extra)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_a_fresh_process_gets_the_default_before_torch_starts():
    out = _child("import os; from dpcdvae.utils import openmp; openmp.configure_openmp(); import torch; "
                 "print(openmp.OPENMP_WAIT, '|', os.environ.get('GOMP_SPINCOUNT'), '|', "
                 "os.environ.get('OMP_WAIT_POLICY'))")
    said, spin, policy = [x.strip() for x in out.split("|")]
    assert (said, spin, policy) in {("GOMP_SPINCOUNT=3000", "3000", "None"),
                                    ("OMP_WAIT_POLICY=PASSIVE (machine fully loaded at import)", "None", "PASSIVE")}
    out = _child("import os, torch; from dpcdvae.utils import openmp; openmp.configure_openmp(); "
                 "print(openmp.OPENMP_WAIT, '|', os.environ.get('GOMP_SPINCOUNT'))")
    assert out == "unchanged (torch was imported before dpcdvae) | None"
    out = _child("import os; from dpcdvae.utils import openmp; openmp.configure_openmp(); "
                 "print(os.environ.get('OMP_WAIT_POLICY'), os.environ.get('GOMP_SPINCOUNT'))",
                 OMP_WAIT_POLICY="PASSIVE")
    assert out == "PASSIVE None"


def test_decided_once_per_process():
    """A second entry point in the same process (the command line, then the notebooks' helpers) keeps the record of
    the first call instead of reporting its own setting as the user's."""
    out = _child("from dpcdvae.utils import openmp; a = openmp.configure_openmp(); b = openmp.configure_openmp(); "
                 "print(a == b == openmp.OPENMP_WAIT, a)")
    assert out.startswith("True ") and "left to the environment" not in out


_NO_CHANGE = r"""
import os, sys
writes = []  # (variable, file of the code that set it): torch itself sets a few (TORCHINDUCTOR_CACHE_DIR)
_set = type(os.environ).__setitem__

def spy(self, key, value):
    f = sys._getframe(1)
    while f is not None and os.path.basename(f.f_code.co_filename) in ("os.py", "_collections_abc.py"):
        f = f.f_back
    writes.append((key, f.f_code.co_filename if f is not None else "?"))
    _set(self, key, value)

type(os.environ).__setitem__ = spy
before = dict(os.environ)
import dpcdvae, dpcdvae.models, dpcdvae.structures.graph
from dpcdvae.utils import openmp
pkg = os.path.dirname(dpcdvae.__file__)
ours = [w for w in writes if os.path.abspath(w[1]).startswith(pkg)]
changed = {k for k in set(before) | set(os.environ) if before.get(k) != os.environ.get(k)}
others = {k for k, where in writes if not os.path.abspath(where).startswith(pkg)}
assert not ours, ours
assert changed <= others, (changed, writes)  # every change was made by a library dpcdvae imports, none by dpcdvae
assert "GOMP_SPINCOUNT" not in os.environ and "OMP_WAIT_POLICY" not in os.environ
print("same", openmp.OPENMP_WAIT)
"""


def test_importing_the_package_changes_no_environment_variable():
    """``import dpcdvae`` (and its models and graph builder) sets no environment variable: the OpenMP default is the
    entry points' (a variable torch sets itself while dpcdvae imports it is not dpcdvae's doing)."""
    assert _child(_NO_CHANGE) == "same None"


def test_the_command_line_entry_sets_the_default():
    """Importing the command line (what the ``dpcdvae`` script and ``python -m dpcdvae.cli`` do first) applies the
    default before torch is imported, when neither variable is set."""
    out = _child("import os, sys; import dpcdvae.cli; from dpcdvae.utils import openmp; "
                 "print(os.environ.get('GOMP_SPINCOUNT'), '|', os.environ.get('OMP_WAIT_POLICY'), '|', "
                 "openmp.OPENMP_WAIT, '|', 'torch' in sys.modules)")
    spin, policy, said, torch_loaded = [x.strip() for x in out.split("|")]
    assert (spin, policy) in {("3000", "None"), ("None", "PASSIVE")}
    assert said in {"GOMP_SPINCOUNT=3000", "OMP_WAIT_POLICY=PASSIVE (machine fully loaded at import)"}
    assert torch_loaded == "True"  # the command groups import torch: after the default was set
