"""Evaluation suite: the paper's reconstruction (Tables I, S1) and generation (Table II) metrics, the paper's own
numbers for comparison, and readers for samples.

Quick use::

    from dpcdvae.eval import read_samples, load_split_structures, generation_metrics, compare_table, render_text
    ids, gen = read_samples("runs/x/gen_cifs")
    _, test = load_split_structures("perov_5", "test")
    m = generation_metrics(gen, test, "perov_5", n_workers=2)
    print(render_text(compare_table(m, table="II", dataset="perov_5", model="DP-CDVAE")))

Submodules are imported lazily (pymatgen / matminer load only when a metric is used).
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    # reconstruction
    "reconstruction_metrics": "reconstruction",
    # two runs compared crystal by crystal
    "paired_difference": "compare", "compare_runs": "compare", "read_per_structure": "compare",
    # generation
    "generation_metrics": "generation", "data_vs_data": "generation", "load_generated_split": "generation",
    "structure_validity": "generation",
    "structure_invalid_reason": "generation", "composition_validity": "generation",
    "composition_invalid_reason": "generation", "validity": "generation", "coverage": "generation",
    "property_statistics": "generation", "wasserstein": "generation", "COV_CUTOFFS": "generation",
    # fingerprints
    "structure_fingerprints": "fingerprints", "composition_fingerprints": "fingerprints",
    "crystalnn_fingerprint": "fingerprints", "magpie_fingerprint": "fingerprints", "CompScaler": "fingerprints",
    "parallel_map": "fingerprints",
    # reference / tables
    "REFERENCE": "reference", "SOURCE": "reference", "CITATION": "reference", "get_reference": "reference",
    "compare_table": "tables", "paper_table": "tables", "render_text": "tables", "render_markdown": "tables",
    # io
    "read_samples": "io", "read_samples_with_errors": "io", "load_split_structures": "io", "align_by_id": "io",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        mod = importlib.import_module(f".{_EXPORTS[name]}", __name__)
        return getattr(mod, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
