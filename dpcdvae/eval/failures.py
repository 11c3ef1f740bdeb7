"""Why reconstructions miss: each unmatched crystal sorted into one cause.

The match rate of Table I says how many reconstructions match, not why the others do not. This module sorts every
target into exactly one category, in this order (the first that applies):

``matched``
    the reconstruction matches (species and geometry; ``StructureMatcher(stol=0.5, angle_tol=10, ltol=0.3)``).
``missing``
    no prediction for this target (a run over part of a split); left out of the percentages.
``invalid``
    an unreadable prediction, or one that fails the validity check of the match rate (it is never matched).
``composition``
    the prediction's composition differs from the target's (element counts, so N_a too).
``geometry``
    the composition is right, but even with the species ignored (pymatgen's ``FrameworkComparator``) the atoms do
    not sit on the target's sites: the coordinates (or the lattice) are wrong.
``swap``
    the composition and the framework are right, and exchanging the species of ONE pair of atoms makes the
    prediction match: two elements sit on each other's sites (in an ABX3 perovskite, A and B exchanged).
``assignment``
    the composition and the framework are right, but no single exchange repairs it (several atoms misplaced).

``swap`` and ``assignment`` are failures of the atom types, not of the coordinates: the model built the right
crystal and put the elements on the wrong sites. :func:`failure_breakdown` counts them and names the element pairs
that were exchanged.
"""
from __future__ import annotations

from collections import Counter
from functools import partial
from typing import Sequence

from .fingerprints import pack, parallel_map, unpack
from .reconstruction import MATCHER_KW

CATEGORIES = ("matched", "missing", "invalid", "composition", "geometry", "swap", "assignment")


def classify_miss(pred, target, stol: float = MATCHER_KW["stol"], angle_tol: float = MATCHER_KW["angle_tol"],
                  ltol: float = MATCHER_KW["ltol"]) -> tuple[str, tuple]:
    """Category of one valid, unmatched prediction (``composition``, ``geometry``, ``swap`` or ``assignment``) and,
    for ``swap``, the exchanged pair of element symbols (sorted); ``()`` otherwise.

    ``pred`` / ``target``: pymatgen ``Structure``. The species-blind comparison uses the same tolerances."""
    from pymatgen.analysis.structure_matcher import FrameworkComparator, StructureMatcher

    if len(pred) != len(target) or pred.composition != target.composition:
        return "composition", ()
    blind = StructureMatcher(stol=stol, angle_tol=angle_tol, ltol=ltol, comparator=FrameworkComparator())
    if not blind.fit(pred, target):
        return "geometry", ()
    exact = StructureMatcher(stol=stol, angle_tol=angle_tol, ltol=ltol)
    for i in range(len(pred)):
        for j in range(i + 1, len(pred)):
            a, b = pred[i].specie, pred[j].specie
            if a == b:
                continue
            q = pred.copy()
            q.replace(i, b)
            q.replace(j, a)
            if exact.fit(q, target):
                return "swap", tuple(sorted((str(a), str(b))))
    return "assignment", ()


def _classify_worker(pair, stol: float, angle_tol: float, ltol: float):
    """Worker: (packed pred, packed target) -> (category, swapped pair or (), error or None). Never raises."""
    try:
        cat, swap = classify_miss(unpack(pair[0]), unpack(pair[1]), stol=stol, angle_tol=angle_tol, ltol=ltol)
        return cat, swap, None
    except Exception as exc:
        return None, (), f"{type(exc).__name__}: {exc}"[:300]


def failure_breakdown(preds: Sequence, targets: Sequence, per_structure: Sequence[dict],
                      n_workers: int = 2, progress: bool = True, stol: float = MATCHER_KW["stol"],
                      angle_tol: float = MATCHER_KW["angle_tol"], ltol: float = MATCHER_KW["ltol"]) -> dict:
    """Sort every target of a reconstruction run into one of :data:`CATEGORIES`.

    ``preds`` / ``targets``: aligned lists of ``Structure`` (``None`` for a missing prediction), as given to
    :func:`dpcdvae.eval.reconstruction.reconstruction_metrics`; ``per_structure``: that function's per-target records
    (their ``valid`` and ``matched`` flags are reused, so the matches are not computed twice).

    Returns ``{"counts": {category: n}, "percent": {category: % of the targets that have a prediction},
    "n_targets": n, "n_with_prediction": n,
    "swapped_pairs": [[element, element, n], ...] (most frequent first), "n_errors": n, "per_structure":
    [{"category", "swapped"}]}``. A crystal whose classification raised is in no category (``None``) and is counted
    in ``n_errors``.
    """
    preds, targets = list(preds), list(targets)
    if not (len(preds) == len(targets) == len(per_structure)):
        raise ValueError(f"failure_breakdown: {len(preds)} predictions, {len(targets)} targets and "
                         f"{len(per_structure)} records; they must be aligned")
    cats: list = [None] * len(targets)
    swaps: list = [()] * len(targets)
    todo = []
    for i, rec in enumerate(per_structure):
        if rec["matched"]:
            cats[i] = "matched"
        elif preds[i] is None and str(rec.get("invalid_reason") or "").startswith("no prediction"):
            cats[i] = "missing"
        elif not rec["valid"] or preds[i] is None:
            cats[i] = "invalid"
        else:
            todo.append(i)
    pairs = [(pack(preds[i]), pack(targets[i])) for i in todo]
    res = parallel_map(partial(_classify_worker, stol=stol, angle_tol=angle_tol, ltol=ltol), pairs,
                       n_workers=n_workers, chunk_size=16, desc="why unmatched", progress=progress)
    n_err = 0
    for i, (cat, swap, err) in zip(todo, res):
        if err is not None:
            n_err += 1
            continue
        cats[i], swaps[i] = cat, tuple(swap)
    counts = {c: sum(1 for x in cats if x == c) for c in CATEGORIES}
    n = len(targets) - counts["missing"]
    pair_counts = Counter(s for s in swaps if s)
    return {
        "counts": counts,
        "percent": {c: 100.0 * k / n if n else float("nan") for c, k in counts.items() if c != "missing"},
        "n_targets": len(targets),
        "n_with_prediction": n,
        "swapped_pairs": [[a, b, k] for (a, b), k in pair_counts.most_common()],
        "n_errors": n_err,
        "per_structure": [{"category": c, "swapped": "-".join(s) if s else None} for c, s in zip(cats, swaps)],
    }


def render_breakdown(b: dict, top: int = 5) -> str:
    """A plain-text table of :func:`failure_breakdown`'s result (category, count, % of the targets with a
    prediction) and the ``top`` most exchanged element pairs."""
    lines = [f"{'why':<12} {'crystals':>8} {'%':>8}   (% of the {b['n_with_prediction']} targets with a prediction)"]
    for c in CATEGORIES:
        if c == "missing":
            continue
        lines.append(f"{c:<12} {b['counts'][c]:>8d} {b['percent'][c]:>7.2f}%")
    if b["counts"]["missing"]:
        lines.append(f"{'(missing)':<12} {b['counts']['missing']:>8d}   targets without a prediction")
    if b["n_errors"]:
        lines.append(f"{'(errors)':<12} {b['n_errors']:>8d}")
    if b["swapped_pairs"]:
        pairs = ", ".join(f"{x}<->{y} {k}" for x, y, k in b["swapped_pairs"][:top])
        lines.append(f"most exchanged pairs: {pairs}")
    return "\n".join(lines)
