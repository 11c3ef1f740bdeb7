"""Pretrained models shipped inside the package (``dpcdvae/weights/<name>.pt`` + ``<name>.json``).

Each shipped file holds plain tensors and JSON-able data only, so it loads with ``torch.load(weights_only=True)``:
a user never runs pickled code to use it. What a file holds::

    {"format": 1, "name": str, "config": <Config.to_dict()>, "state_dict": {key: tensor}, "card_json": str}

The weights are the sampling weights of the training run (the EMA average when the run used EMA). The model card
(``<name>.json``, also inside the ``.pt``) says how the model was made and what it measured: training command,
commit, date, machine, data split, parameters, and metrics with the commands that produced them.

Use ``dpcdvae.load_pretrained("perov_5")``, or ``--checkpoint pretrained:perov_5`` wherever the command line takes a
checkpoint; ``dpcdvae pretrained list`` prints the cards.
"""
from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Optional

import torch

from ..utils.fileio import atomic_open, atomic_write_text, strict_json_dumps
from ..config import Config
from ..utils.errors import CheckpointError, PretrainedNotFoundError
from .registry import build_model
from .safeload import refusal_message

__all__ = ["PREFIX", "WEIGHTS_DIR", "is_pretrained", "list_pretrained", "pretrained_card", "load_pretrained",
           "export_pretrained", "PretrainedNotFoundError", "CheckpointError"]

PREFIX = "pretrained:"
WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
FORMAT = 1




def is_pretrained(ref) -> bool:
    """True for ``"pretrained:<name>"`` references."""
    return isinstance(ref, str) and ref.startswith(PREFIX)


def _name(ref: str) -> str:
    return ref[len(PREFIX):] if is_pretrained(ref) else ref


def _available(weights_dir: Path) -> list[str]:
    return sorted(p.stem for p in weights_dir.glob("*.pt") if (weights_dir / f"{p.stem}.json").is_file())


def _path(name: str, weights_dir: Optional[Path] = None) -> Path:
    d = Path(weights_dir) if weights_dir is not None else WEIGHTS_DIR
    p = d / f"{name}.pt"
    if not p.is_file():
        have = ", ".join(_available(d)) or "none"
        raise PretrainedNotFoundError(f"no pretrained model {name!r} (shipped: {have}; see `dpcdvae pretrained list`)")
    return p


def list_pretrained(weights_dir: Optional[Path] = None) -> list[dict]:
    """The model cards of every shipped model (one dict each, with ``name`` and ``file``)."""
    d = Path(weights_dir) if weights_dir is not None else WEIGHTS_DIR
    out = []
    for name in _available(d):
        card = json.loads((d / f"{name}.json").read_text())
        card.setdefault("name", name)
        card["file"] = str(d / f"{name}.pt")
        card["file_mb"] = round((d / f"{name}.pt").stat().st_size / 1e6, 2)
        out.append(card)
    return out


def pretrained_card(ref: str, weights_dir: Optional[Path] = None) -> dict:
    """The model card of ``"perov_5"`` or ``"pretrained:perov_5"``."""
    name = _name(ref)
    p = _path(name, weights_dir)
    card = json.loads(p.with_suffix(".json").read_text())
    card.setdefault("name", name)
    return card


def load_pretrained(ref: str = "perov_5", map_location: str = "cpu", weights_dir: Optional[Path] = None):
    """Load a shipped model by name (``"perov_5"``, ``"carbon_24"``, ``"carbon_24_cdvae"``; a ``pretrained:``
    prefix is accepted). Returns the model in eval mode, with ``.config`` (:class:`Config`) and ``.card`` (dict).

    Loaded with ``torch.load(weights_only=True)``: the file holds tensors and plain data only."""
    name = _name(ref)
    p = _path(name, weights_dir)
    try:
        blob = torch.load(p, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:  # names a global torch's weights-only reader refuses: nothing was run
        raise CheckpointError(refusal_message(p, str(exc), "pretrained file")) from None
    except Exception as exc:  # a truncated or foreign file
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise CheckpointError(f"{p}: not a readable dpcdvae pretrained file ({type(exc).__name__}: {first})") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT or "state_dict" not in blob:
        raise CheckpointError(f"{p}: not a dpcdvae pretrained file of format {FORMAT}")
    cfg = Config.from_dict(blob["config"])
    model = build_model(cfg)
    model.load_state_dict(blob["state_dict"])  # the lattice scaler comes back through the model's extra state
    model.eval()
    model.config = cfg
    model.card = json.loads(blob.get("card_json") or "{}")
    return model


def export_pretrained(model, name: str, card: dict, weights_dir: Optional[Path] = None,
                      checkpoint: Optional[str | os.PathLike] = None) -> Path:
    """Write a loaded model's weights (``dpcdvae.train.load_model(ckpt, ema=...)``; ``checkpoint`` names its file,
    whose run folder's ``config.json`` fills ``dataset``/``train_split``) as a shipped model ``<weights_dir>/<name>.pt`` and its
    card ``<name>.json``. Only tensors and JSON-able data are stored (checked by re-loading with
    ``weights_only=True``). ``card`` should hold: train_command, commit, date, machine, metrics; ``dataset`` and
    ``train_split`` are read from the run's ``config.json`` when the card does not give them."""
    d = Path(weights_dir) if weights_dir is not None else WEIGHTS_DIR
    d.mkdir(parents=True, exist_ok=True)
    card = dict(card)
    info = Path(checkpoint).parent / "config.json" if checkpoint is not None else None  # written by train()
    if info is not None and info.is_file():
        meta = json.loads(info.read_text())
        card.setdefault("dataset", meta.get("dataset"))
        card.setdefault("train_split", meta.get("train_split"))
    td = getattr(model, "training_data", None)  # dpcdvae.models.scope: what the run trained on
    if isinstance(td, dict):
        for key in ("dataset", "train_split", "elements", "cell_sizes"):
            if td.get(key) is not None:
                card.setdefault(key, td[key])
    card.setdefault("name", name)
    card["model"] = model.cfg.model
    card["config_name"] = model.config.name
    card["parameters"] = int(sum(p.numel() for p in model.parameters()))
    sd = {k: (v.detach().cpu().contiguous() if torch.is_tensor(v) else v) for k, v in model.state_dict().items()}
    blob = {"format": FORMAT, "name": name, "config": model.config.to_dict(), "state_dict": sd,
            "card_json": strict_json_dumps(card)}
    path = d / f"{name}.pt"
    with atomic_open(path, "wb") as fh:
        torch.save(blob, fh)
    atomic_write_text(d / f"{name}.json", strict_json_dumps(card, indent=1) + "\n")
    torch.load(path, weights_only=True)  # fails here, not at a user's, if anything non-plain slipped in
    return path
