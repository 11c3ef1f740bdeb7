"""Validity of one crystal, the paper's (CDVAE's) definitions: a usable cell, interatomic distances, SMACT charge
neutrality; and CDVAE's canonical form of a structure (:func:`canonicalize_structure`). Low-level (pymatgen / SMACT only): used by the models' outputs (:meth:`SampleOutput.validity`), the
sample writers and the Table II metrics (:mod:`dpcdvae.eval.generation`, where the definitions are spelled out).

Units: Angstrom, A^3.
"""
from __future__ import annotations

import itertools
from functools import lru_cache
from math import gcd

import numpy as np

# local: heavy, keeps the CLI start fast (pymatgen, smact: the command line imports this module at start)

__all__ = ["canonicalize_structure", "DIST_CUTOFF", "MIN_VOLUME", "degenerate_reason", "composition_key", "structure_invalid_reason",
           "structure_validity", "composition_validity", "composition_invalid_reason", "crystal_validity"]

DIST_CUTOFF = 0.5  # A, minimum allowed interatomic distance
MIN_VOLUME = 0.1  # A^3: below it a cell is degenerate (CDVAE's construction check)


def degenerate_reason(structure) -> str | None:
    """CDVAE's construction check plus finiteness: ``None`` if the cell can be used, else why not.

    Invalid: ``None``; no sites; disordered sites; non-finite lattice or coordinates; a lattice length <= 0 A;
    a volume < 0.1 A^3.
    """
    if structure is None:
        return "no structure"
    try:
        if len(structure) == 0:
            return "no atoms"
        if not structure.is_ordered:
            return "disordered sites"
        m = np.asarray(structure.lattice.matrix, dtype=float)
        if not np.all(np.isfinite(m)) or not np.all(np.isfinite(structure.frac_coords)):
            return "non-finite lattice or coordinates"
        if min(structure.lattice.abc) <= 0:
            return "non-positive lattice length"
        vol = abs(float(np.linalg.det(m)))
        if not vol >= MIN_VOLUME:
            return f"volume {vol:.3g} A^3 < {MIN_VOLUME}"
    except Exception as exc:  # any pymatgen oddity on a broken structure
        return f"unusable structure: {type(exc).__name__}: {exc}"
    return None


def composition_key(structure_or_comp) -> tuple[tuple[str, int], ...] | None:
    """``((symbol, count // gcd), ...)`` sorted by symbol: the reduced composition, or ``None`` if unavailable."""
    from pymatgen.core import Composition, Structure

    if structure_or_comp is None:
        return None
    if isinstance(structure_or_comp, Structure):
        if len(structure_or_comp) == 0 or not structure_or_comp.is_ordered:
            return None
        counts: dict[str, int] = {}
        for site in structure_or_comp:
            sym = site.specie.symbol if hasattr(site.specie, "symbol") else str(site.specie)
            counts[sym] = counts.get(sym, 0) + 1
    else:
        comp = Composition(structure_or_comp)
        counts = {}
        for el, amt in comp.element_composition.items():
            if abs(amt - round(amt)) > 1e-6:
                return tuple(sorted((str(e), float(a)) for e, a in comp.element_composition.items()))  # type: ignore
            counts[str(el)] = int(round(amt))
    counts = {k: v for k, v in counts.items() if v > 0}
    if not counts:
        return None
    g = 0
    for v in counts.values():
        g = gcd(g, v)
    return tuple(sorted((k, v // g) for k, v in counts.items()))


# ----------------------------------------------------------------------------------------------------------------
# structure validity
# ----------------------------------------------------------------------------------------------------------------
def structure_invalid_reason(structure, cutoff: float = DIST_CUTOFF, self_images: bool = True) -> str | None:
    """``None`` if ``structure`` is structurally valid, else a short reason.

    Checks, in order: usable cell (:func:`~dpcdvae.eval.fingerprints.degenerate_reason`: finite, lengths > 0 A,
    volume >= 0.1 A^3, ordered, non-empty); minimum-image distance between distinct atoms >= ``cutoff`` (A);
    with ``self_images`` also the distance from each atom to its own periodic images (shortest lattice vector).
    Never raises.
    """
    reason = degenerate_reason(structure)
    if reason is not None:
        return reason
    try:
        n = len(structure)
        if n > 1:
            dm = np.array(structure.distance_matrix, dtype=float)
            dm[np.diag_indices(n)] = np.inf
            dmin = float(dm.min())
            if not dmin >= cutoff:
                return f"atoms {dmin:.3g} A apart (< {cutoff} A)"
        if self_images:
            pts = structure.lattice.get_points_in_sphere(np.zeros((1, 3)), np.zeros(3), cutoff)
            short = [float(p[1]) for p in pts if float(p[1]) > 1e-8]
            if short:
                return f"lattice vector {min(short):.3g} A (< {cutoff} A): atom too close to its own image"
    except Exception as exc:
        return f"distance check failed: {type(exc).__name__}: {exc}"[:300]
    return None


def structure_validity(structure, cutoff: float = DIST_CUTOFF, self_images: bool = True) -> bool:
    """True if all pairwise periodic distances are >= ``cutoff`` (A) and the cell is usable (volume >= 0.1 A^3)."""
    return structure_invalid_reason(structure, cutoff, self_images) is None


# ----------------------------------------------------------------------------------------------------------------
# composition validity (SMACT)
# ----------------------------------------------------------------------------------------------------------------
@lru_cache(maxsize=65536)
def _smact_valid(symbols: tuple[str, ...], counts: tuple[int, ...], use_pauling_test: bool = True,
                 include_alloys: bool = True) -> bool:
    import smact
    from smact.screening import pauling_test

    if len(set(symbols)) == 1:
        return True
    if include_alloys and all(s in smact.metals for s in symbols):
        return True
    space = smact.element_dictionary(symbols)
    elems = [space[s] for s in symbols]
    enegs = [e.pauling_eneg for e in elems]
    ox_lists = [list(e.oxidation_states or []) for e in elems]
    threshold = int(max(counts))
    stoichs = [(int(c),) for c in counts]
    for ox_states in itertools.product(*ox_lists):
        ratios = smact.neutral_ratios(ox_states, stoichs=stoichs, threshold=threshold)
        # SMACT >= 3 returns the list of neutral ratios; SMACT 2 returned (exists, ratios)
        if isinstance(ratios, tuple) and len(ratios) == 2 and isinstance(ratios[0], bool):
            ratios = ratios[1] if ratios[0] else []
        if not ratios:
            continue
        if not use_pauling_test or any(x is None for x in enegs):
            return True
        try:
            if pauling_test(ox_states, enegs):
                return True
        except TypeError:
            return True
    return False


def composition_validity(structure_or_comp, use_pauling_test: bool = True, include_alloys: bool = True) -> bool:
    """SMACT charge-neutrality + electronegativity validity (CDVAE's definition) of a ``Structure``,
    ``Composition``, formula string or ``{element: count}`` dict. ``None`` / empty / unknown elements -> False."""
    return composition_invalid_reason(structure_or_comp, use_pauling_test, include_alloys) is None


def composition_invalid_reason(structure_or_comp, use_pauling_test: bool = True,
                               include_alloys: bool = True) -> str | None:
    """``None`` if the composition is SMACT-valid, else a short reason. Never raises."""
    try:
        key = composition_key(structure_or_comp)
    except Exception as exc:
        return f"unreadable composition: {type(exc).__name__}: {exc}"[:300]
    if key is None:
        return "no composition"
    symbols = tuple(k for k, _ in key)
    counts = tuple(v for _, v in key)
    if any(not isinstance(c, int) for c in counts):
        return "non-integer composition"
    try:
        ok = _smact_valid(symbols, counts, bool(use_pauling_test), bool(include_alloys))
    except Exception as exc:
        return f"SMACT failed: {type(exc).__name__}: {exc}"[:300]
    return None if ok else "not charge neutral with SMACT oxidation states + Pauling test"


def crystal_validity(structure, not_decoded: str = "not decoded") -> dict:
    """The paper's (CDVAE's) validity of one crystal, the one Table II counts: ``{"valid", "struct_valid",
    "comp_valid", "reason"}``. ``struct_valid``: :func:`structure_invalid_reason` is None (usable cell, every
    interatomic distance >= 0.5 A, periodic images included); ``comp_valid``: SMACT charge neutrality with the
    Pauling test (:func:`composition_invalid_reason`); ``valid`` = both. ``reason`` is None when valid, else
    ``"structure: ..."`` and/or ``"composition: ..."``. ``None`` (a crystal the sampler could not build) is invalid
    with ``not_decoded`` as reason. Never raises."""
    if structure is None:
        return {"valid": False, "struct_valid": False, "comp_valid": False, "reason": not_decoded}
    sr = structure_invalid_reason(structure)
    cr = composition_invalid_reason(structure)
    reason = "; ".join(r for r in ((f"structure: {sr}" if sr else None), (f"composition: {cr}" if cr else None))
                       if r) or None
    return {"valid": sr is None and cr is None, "struct_valid": sr is None, "comp_valid": cr is None,
            "reason": reason}


def canonicalize_structure(structure, niggli: bool = True, wrap: bool = False):
    """CDVAE's canonical form: Niggli-reduced lattice (primitive cell search off), rebuilt from lattice parameters.

    The package's only canonicaliser (the data loader, the evaluation's reference splits and the property models
    all call it; :mod:`dpcdvae.structures.crystal` and :mod:`dpcdvae.data.csvio` re-export it). Needs pymatgen, not torch. Returns a new ``Structure``
    whose lattice is ``Lattice.from_parameters(a, b, c, alpha, beta, gamma)`` (lengths in Angstrom, angles in
    degrees) and whose fractional coordinates are those of the reduced structure: as they are (``wrap=False``,
    what the evaluation and the property models use), or wrapped into [0, 1) (``wrap=True``, what the data loader
    stores: ``x - floor(x)``, and a value that rounds to 1.0 becomes 0).
    """
    from pymatgen.core import Lattice, Structure

    s = structure.get_reduced_structure() if niggli else structure
    lat = Lattice.from_parameters(*s.lattice.abc, *s.lattice.angles)
    c = Structure(lat, s.species, s.frac_coords, coords_are_cartesian=False)
    if not wrap:
        return c
    frac = np.asarray(c.frac_coords, dtype=float)
    frac = frac - np.floor(frac)
    frac[frac >= 1.0] = 0.0
    return Structure(c.lattice, c.species, frac, coords_are_cartesian=False)
