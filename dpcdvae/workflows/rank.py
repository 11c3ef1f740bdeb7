"""Ranking candidate crystals (CSP mode, ``dpcdvae csp --rank``): by their energy under an ML potential
(:func:`rank_candidates`, CHGNet by default) or by the bond-valence global instability index (:func:`rank_by_proxy`),
lowest first; the ranked CIFs and ``ranking.json`` written beside them."""
from __future__ import annotations

from pathlib import Path

from ..eval.ground_state import relax_structures
from ..eval.relax import CHGNetBatchPredictor
from ..structures.crystal import structure_to_atoms, write_cif
from ..utils.fileio import atomic_write_text, strict_json_dumps

__all__ = ["rank_candidates", "rank_by_proxy"]


def rank_candidates(out, run_dir: str | None = None, relax_steps: int = 0, pressure_gpa: float = 0.0,
                    calculator="chgnet", fmax: float = 0.05, progress: bool = True) -> list[dict]:
    """Rank candidate crystals (a :class:`~dpcdvae.models.SampleOutput`, e.g. from CSP mode) by their energy per
    atom under an ML potential (CHGNet by default), lowest first.

    ``relax_steps = 0``: the static energy of each candidate as sampled (fast; a generated structure is not at its
    minimum, so this ranks the sampler's geometry too). ``relax_steps > 0``: each candidate is first relaxed (cell
    and positions, FIRE, at most ``relax_steps`` steps, ``pressure_gpa`` GPa, ``fmax`` eV/A) and ranked by its
    relaxed enthalpy per atom ``(E + pV) / N``. Only candidates valid in the paper's sense are ranked (an
    overlapping or non-neutral crystal's energy means little); the others get ``rank`` None and stay in the list.

    ``calculator``: ``"chgnet"`` or a batch predictor ``f(list[ase.Atoms]) -> list[dict(energy eV, ...)]``.
    ``run_dir``: if given, writes ``<run_dir>/ranking.json`` and the ranked CIFs ``<run_dir>/ranked/NN_<id>.cif``
    (relaxed structures when relaxed).

    Returns one dict per candidate, ranked ones first: ``id``, ``rank`` (1 = lowest), ``energy_per_atom`` (eV/atom;
    the relaxed enthalpy per atom when relaxed), ``relaxed``, ``converged`` (when relaxed), ``steps``,
    ``formula``, ``valid``, ``error``.
    """
    relax_steps = int(relax_steps)
    if relax_steps < 0:
        raise ValueError(f"relax_steps must be >= 0, got {relax_steps}")
    valid = out.valid_mask
    idx = [i for i, v in enumerate(valid) if v]
    rows = {i: {"id": str(out.ids[i]), "rank": None, "energy_per_atom": None, "relaxed": False, "steps": 0,
                "formula": out.structures[i].composition.reduced_formula if out.structures[i] is not None else None,
                "valid": bool(valid[i]), "error": None if valid[i] else "not valid: not ranked"}
            for i in range(len(out))}
    final = {}
    if idx and relax_steps > 0:
        res = relax_structures([out.structures[i] for i in idx], ids=[str(out.ids[i]) for i in idx],
                               pressure_gpa=pressure_gpa, calculator=calculator, fmax=fmax, max_steps=relax_steps,
                               progress=progress)
        for i, r in zip(idx, res):
            rows[i].update(relaxed=r.error is None, converged=bool(r.converged), steps=int(r.steps or 0), error=r.error,
                           energy_per_atom=None if r.error else float(r.relaxed_enthalpy_per_atom))
            final[i] = r.relaxed_structure if r.error is None else out.structures[i]
    elif idx:
        pred = CHGNetBatchPredictor() if calculator == "chgnet" else calculator
        if not callable(pred):
            raise ValueError(f"calculator {calculator!r}: 'chgnet' or a batch predictor (callable) for static "
                             "ranking; use relax_steps > 0 for other named calculators")
        preds = pred([structure_to_atoms(out.structures[i]) for i in idx])
        for i, p in zip(idx, preds):
            n = len(out.structures[i])
            rows[i]["energy_per_atom"] = float(p["energy"]) / n
            final[i] = out.structures[i]
    ranked, table = _rank_rows(rows, "energy_per_atom", len(out))
    if run_dir is not None:
        d = Path(run_dir)
        _write_ranked_cifs(rows, ranked, final, d)
        measure = (f"relaxed enthalpy per atom at {pressure_gpa:g} GPa (FIRE, <= {relax_steps} steps, fmax {fmax} "
                   "eV/A)" if relax_steps > 0 else "static energy per atom of the structure as sampled")
        name = calculator if isinstance(calculator, str) else type(calculator).__name__
        atomic_write_text(d / "ranking.json", strict_json_dumps(
            {"rank_by": "chgnet" if calculator == "chgnet" else "calculator", "calculator": name,
             "basis": f"{name} {measure}, lowest first (valid candidates only)",
             "measure": measure, "units": "eV/atom", "candidates": table}, indent=1))
    return table


def _rank_rows(rows: dict, key: str, n: int) -> tuple[list[int], list[dict]]:
    """Rank the candidates ``rows[i]`` (``i`` in ``0..n-1``) by ``rows[i][key]``, lowest first (ties by index; rows
    whose value is None get no rank); sets ``rows[i]["rank"]`` (1-based) and returns ``(ranked indices, table)``
    with the ranked rows first, then the others in index order."""
    ranked = sorted((i for i in rows if rows[i][key] is not None), key=lambda i: (rows[i][key], i))
    for r, i in enumerate(ranked, 1):
        rows[i]["rank"] = r
    return ranked, [rows[i] for i in ranked] + [rows[i] for i in range(n) if rows[i]["rank"] is None]


def _write_ranked_cifs(rows: dict, ranked: list[int], structures, run_dir: Path) -> None:
    """Write ``run_dir/ranked/<rank>_<id>.cif`` for every ranked candidate (``structures[i]``) and record the path
    in ``rows[i]["cif"]``."""
    (run_dir / "ranked").mkdir(parents=True, exist_ok=True)
    width = max(2, len(str(len(ranked))))
    for i in ranked:
        name = f"{rows[i]['rank']:0{width}d}_{rows[i]['id']}.cif"
        write_cif(structures[i], run_dir / "ranked" / name, symprec=None)
        rows[i]["cif"] = str(Path("ranked") / name)


def rank_by_proxy(out, run_dir: str | None = None) -> list[dict]:
    """Rank candidate crystals without an ML potential, by the bond-valence global instability index (GII, v.u.;
    :mod:`dpcdvae.eval.plausibility`), lowest first: how far each site's bond-valence sum is from its guessed
    oxidation state. Separates, e.g., the real SrTiO3 perovskite (0.29 v.u.) from the cell with Sr and Ti exchanged
    (4.13 v.u.). Only valid candidates (paper's validity) are ranked; a candidate whose GII cannot be computed
    (element-only crystals such as carbon, no oxidation-state guess) gets ``rank`` None and the reason in ``error``.

    ``run_dir``: writes ``ranking.json`` (``rank_by: "gii"``, ``basis``: one sentence, ``units``, ``candidates``)
    and ``ranked/NN_<id>.cif``. Returns one dict per candidate, ranked ones first: ``id``, ``rank``, ``gii``,
    ``formula``, ``valid``, ``error``."""
    from ..eval.plausibility import GII_BASIS, GII_UNITS, global_instability_index

    valid = out.valid_mask
    rows = {}
    for i in range(len(out)):
        s = out.structures[i]
        rows[i] = {"id": str(out.ids[i]), "rank": None, "gii": None,
                   "formula": s.composition.reduced_formula if s is not None else None, "valid": bool(valid[i]),
                   "error": None if valid[i] else "not valid: not ranked"}
        if valid[i]:
            gii, why = global_instability_index(s)
            rows[i].update(gii=None if gii is None else round(float(gii), 4), error=why)
    ranked, table = _rank_rows(rows, "gii", len(out))
    if run_dir is not None:
        d = Path(run_dir)
        _write_ranked_cifs(rows, ranked, out.structures, d)
        basis = GII_BASIS if ranked else ("no ranking: " + (table[0]["error"] if table and table[0]["error"]
                                                             else "no valid candidate") + "; " + GII_BASIS)
        atomic_write_text(d / "ranking.json", strict_json_dumps(
            {"rank_by": "gii", "basis": basis, "units": GII_UNITS, "n_ranked": len(ranked), "candidates": table},
            indent=1))
    return table
