"""What a trained model has seen: its training dataset, the elements of its training crystals, the cell sizes
(atoms per cell) and ``max_atoms``; and the checks that refuse or warn when a request falls outside.

Where the facts come from, first found wins:

1. a checkpoint written by ``dpcdvae train`` stores them in ``hyper_parameters["training_data"]``
   (``{"dataset", "train_split", "elements", "cell_sizes", "max_atoms"}``; also in the run's ``config.json``);
   :func:`~dpcdvae.models.load_model` puts them on the model as ``model.training_data``;
2. a shipped model's card names its ``dataset`` and ``train_split``; ``config.json`` beside an older checkpoint
   names its dataset;
3. the elements and cell sizes of a built-in dataset (Perov-5: 56 elements, 5-atom cells; Carbon-24: C, 6-24
   atoms) come from the dataset registry (:class:`~dpcdvae.data.registry.DatasetSpec` ``elements`` /
   ``cell_sizes``).

``max_atoms`` is always the model's own (``model.cfg.max_atoms``: the largest cell its N_a head can predict).

:func:`check_composition` refuses (one line, :class:`OutOfScopeError`) a CSP request with an element the model never
saw in training or more atoms per cell than ``max_atoms``; :func:`cell_size_warning` warns when none of the cell
sizes a request allows occurs in training; :func:`dataset_mismatch` is the one warning line of ``reconstruct`` /
``evaluate`` on another dataset than the model's.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from ..utils.errors import UserError

__all__ = ["OutOfScopeError", "model_scope", "check_composition",
           "cell_size_warning", "dataset_mismatch", "training_data_of"]

#: Elements the composition heads can represent: Z = 1..MAX_ATOMIC_NUM (as :data:`dpcdvae.structures.crystal.MAX_ATOMIC_NUM`).
_MAX_Z = 100


class OutOfScopeError(UserError):
    """A request the model cannot answer (an element it never saw, a cell larger than ``max_atoms``); one line."""


def training_data_of(dataset: str, train_split: str, train_ds, max_atoms: Optional[int]) -> dict:
    """The facts :func:`dpcdvae.train.train` stores in a checkpoint: ``dataset``, ``train_split``, ``elements``
    (symbols of the training crystals' elements, by Z), ``cell_sizes`` (atoms per cell that occur), ``max_atoms``
    (the model's). ``train_ds``: the training :class:`~dpcdvae.data.CrystalDataset`."""
    from pymatgen.core import Element

    return {"dataset": str(dataset), "train_split": str(train_split),
            "elements": [Element.from_Z(z).symbol for z in train_ds.atomic_numbers],
            "cell_sizes": list(train_ds.cell_sizes),
            "max_atoms": None if max_atoms is None else int(max_atoms)}


def _config_json_dataset(checkpoint) -> Optional[dict]:
    info = Path(str(checkpoint)).parent / "config.json"
    if not info.is_file():
        return None
    try:
        meta = json.loads(info.read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def model_scope(model, checkpoint=None) -> dict:
    """What ``model`` was trained on: ``{"dataset", "train_split", "elements" (symbols, or None: unknown),
    "cell_sizes" (atoms per cell seen, or None), "max_atoms" (int, the model's), "source"}``; see the module
    docstring for the order in which the facts are looked up. ``checkpoint``: the path it was loaded from (finds
    ``config.json`` of an older run)."""
    from ..data.registry import find_spec

    out = {"dataset": None, "train_split": None, "elements": None, "cell_sizes": None, "max_atoms": None,
           "source": None}
    td = getattr(model, "training_data", None)
    if isinstance(td, dict) and td.get("dataset"):
        out.update({k: td.get(k) for k in ("dataset", "train_split", "elements", "cell_sizes")}, source="checkpoint")
    else:
        card = getattr(model, "card", None)
        if isinstance(card, dict) and card.get("dataset"):
            out.update(dataset=card["dataset"], train_split=card.get("train_split"),
                       elements=card.get("elements"), cell_sizes=card.get("cell_sizes"), source="model card")
        elif checkpoint is not None:
            meta = _config_json_dataset(checkpoint)
            if meta is not None and meta.get("dataset"):
                out.update(dataset=meta["dataset"], train_split=meta.get("train_split"), source="config.json")
    if out["dataset"] and (out["elements"] is None or out["cell_sizes"] is None):
        spec = find_spec(out["dataset"])
        if spec is not None:
            if out["elements"] is None and spec.elements is not None:
                out["elements"] = list(spec.elements)
            if out["cell_sizes"] is None and spec.cell_sizes is not None:
                out["cell_sizes"] = list(spec.cell_sizes)
    cfg = getattr(model, "cfg", None)
    ma = getattr(cfg, "max_atoms", None)
    out["max_atoms"] = int(ma) if ma is not None else None
    return out


def _written_atoms(composition) -> tuple[float, list[str]]:
    """(atoms in the formula as written, element symbols) of a formula / pymatgen ``Composition`` / dict."""
    import warnings

    from pymatgen.core import Composition

    with warnings.catch_warnings():  # pymatgen warns about elements without electronegativity (Og, ...)
        warnings.simplefilter("ignore", UserWarning)
        comp = Composition(composition)
        return float(comp.num_atoms), [str(el) for el in comp.elements]


def check_composition(scope: dict, composition, num_atoms: Optional[int] = None) -> None:
    """Refuse a CSP request outside what the model was trained on, in one line naming everything that is outside:

    * an element with Z > 100 (outside the composition heads);
    * an element that never occurs in the training crystals (``scope["elements"]``; not checked when unknown);
    * more atoms per cell than ``scope["max_atoms"]``: the formula as written (``Na100Cl100`` asks for 200 atoms;
      ``SrTiO3`` for 5, whose multiples are then tried) or ``num_atoms``.

    Raises :class:`OutOfScopeError`; returns None when the request is inside."""
    from pymatgen.core import Element

    n_written, symbols = _written_atoms(composition)
    label = composition if isinstance(composition, str) else str(composition)
    problems = []
    big = [s for s in symbols if Element(s).Z > _MAX_Z]
    if big:
        problems.append(f"{', '.join(big)} (Z > {_MAX_Z}) outside the model's element vocabulary Z = 1..{_MAX_Z}")
    seen = scope.get("elements")
    if seen is not None:
        unseen = [s for s in symbols if s not in set(seen) and s not in big]
        if unseen:
            problems.append(f"{', '.join(unseen)} never occur{'s' if len(unseen) == 1 else ''} in the training data "
                            f"({scope.get('dataset') or 'unknown dataset'}: {len(seen)} element"
                            f"{'s' if len(seen) != 1 else ''}, {' '.join(seen)})")
    max_atoms = scope.get("max_atoms")
    if max_atoms is not None:
        if n_written > max_atoms:
            problems.append(f"{n_written:g} atoms per cell as written, more than the model's max_atoms {max_atoms}")
        elif num_atoms is not None and num_atoms > max_atoms:
            problems.append(f"num_atoms {num_atoms} > the model's max_atoms {max_atoms}")
    if problems:
        raise OutOfScopeError(f"composition {label}: the model cannot build it: " + "; ".join(problems))


def cell_size_warning(scope: dict, allowed: list[int]) -> Optional[str]:
    """One warning line when none of the atom counts ``allowed`` for a request occurs among the training cell sizes
    (e.g. NaCl on Perov-5, whose cells all have 5 atoms), else None."""
    sizes = scope.get("cell_sizes")
    if not sizes or not allowed or set(allowed) & set(sizes):
        return None
    shown = ", ".join(str(n) for n in sorted(sizes)[:12]) + (", ..." if len(sizes) > 12 else "")
    want = ", ".join(str(n) for n in allowed[:12]) + (", ..." if len(allowed) > 12 else "")
    return (f"warning: the model saw only cells of {shown} atoms in training ({scope.get('dataset')}); this request "
            f"allows {want}: its cells are outside what it learned")


def _canonical(name: Optional[str]) -> Optional[str]:
    if not name:
        return None
    from ..data.registry import find_spec

    spec = find_spec(str(name))
    return spec.name if spec is not None else str(name)


def dataset_mismatch(model_dataset: Optional[str], dataset: Optional[str], what: str = "model") -> Optional[str]:
    """The one warning line when a model trained on ``model_dataset`` is used on ``dataset`` (names compared after
    resolving aliases; None when they agree or either is unknown)."""
    a, b = _canonical(model_dataset), _canonical(dataset)
    if a is None or b is None or a == b:
        return None
    return (f"warning: the {what} was trained on {a}, not {b}: its predictions are {a}-like crystals and the metrics "
            f"on {b} measure that mismatch, not the {what}'s quality")
