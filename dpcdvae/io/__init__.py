"""Writers and readers of the package's output folders: :mod:`.samples` (a fresh run folder per call,
:class:`SampleWriter`: CIFs as they come, one extxyz, ``samples.json``; :func:`read_sample_run` reads such a folder
back). The names are re-exported here: ``from dpcdvae.io import SampleWriter``. (Reading the splits and sample files
an evaluation compares is :mod:`dpcdvae.eval.io`.)"""
from .samples import (VALIDITY_NOTE, SampleWriter, atomic_write_text, new_run_dir, read_sample_run,
                      spacegroup_symbol, strict_json_dumps, write_samples)

__all__ = ["new_run_dir", "SampleWriter", "write_samples", "read_sample_run", "strict_json_dumps", "VALIDITY_NOTE",
           "spacegroup_symbol", "atomic_write_text"]
