"""Structures: one crystal and its graphs. :mod:`.crystal` (lattice math, conversions, CIF writing),
:mod:`.validity` (the paper's validity of a crystal, CDVAE's canonical form), :mod:`.crystalnn` (CrystalNN from
one tessellation) and :mod:`.graph` (periodic radius and CrystalNN graphs, triplets). Imports nothing: each
submodule is imported by name (:mod:`.crystal` and :mod:`.validity` without torch's graph code)."""
