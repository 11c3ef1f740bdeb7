"""Configuration dataclasses and YAML presets (``paper``, ``compact``, ``tiny``).

A configuration is plain data: ``Config(model=ModelConfig(...), train=TrainConfig(...))``. Presets live in
``dpcdvae/configs/<name>.yaml`` and are loaded with :func:`load_config`; any field can be overridden with a dotted
key (``load_config("compact", overrides={"train.max_epochs": 5})``), which is how papermill parameters and CLI flags
map onto configs. Configs are stored inside checkpoints (``Config.to_dict``), so loading a checkpoint needs no file.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from .data.resolve import DatasetHandle, dataset_spec
from .utils.errors import ConfigArgumentError, ConfigError, ConfigValueError, mention

CONFIG_DIR = Path(__file__).parent / "configs"
PRESETS = ("paper", "compact", "tiny")
VARIANTS = ("dpcdvae", "na", "gine", "na_gine")


@dataclass
class EncoderConfig:
    """DimeNet++ encoder (+ optional N_a / GINE branches). Lengths in Angstrom."""

    hidden_channels: int = 128
    num_blocks: int = 4
    int_emb_size: int = 64
    basis_emb_size: int = 8
    out_emb_channels: int = 256
    num_spherical: int = 7
    num_radial: int = 6
    cutoff: float = 7.0
    max_neighbors: int = 20
    envelope_exponent: int = 5
    num_before_skip: int = 1
    num_after_skip: int = 2
    num_output_layers: int = 3
    graph: str = "crystalnn"  # "crystalnn" (paper config, stored in the dataset) or "radius"
    na_encoder: str = "mlp"  # paper: MLP on N_a; "embedding" = the published code
    # init of the last linear layer of DimeNet++'s output blocks: "zeros" (PyG / the published code: the encoder's
    # feature starts at exactly 0, z = the heads' biases + noise) or "glorot_orthogonal" (ours, the trained compact
    # models: z depends on the crystal from the first step)
    output_init: str = "glorot_orthogonal"
    checkpoint_blocks: bool = False  # recompute each DimeNet++ block in the backward pass (less memory, slower)


@dataclass
class DecoderConfig:
    """GemNet-T denoiser. Lengths in Angstrom."""

    num_blocks: int = 3
    emb_size_atom: int = 128
    emb_size_edge: int = 128
    emb_size_trip: int = 64
    emb_size_rbf: int = 16
    emb_size_cbf: int = 16
    emb_size_bil_trip: int = 64
    num_spherical: int = 7
    num_radial: int = 128
    cutoff: float = 7.0
    max_neighbors: int = 20
    type_emb_dim: int = 128
    time_emb_dim: int = 128
    fourier_min: int = 3
    fourier_max: int = 8
    project_input: bool = True  # False = published code (548-wide atom embedding through every block)
    checkpoint_blocks: bool = False  # recompute each interaction block in the backward pass (less memory, slower)


@dataclass
class ModelConfig:
    model: str = "dpcdvae"  # "dpcdvae" | "cdvae" | "cdvae_fourier"
    variant: str = "dpcdvae"  # "dpcdvae" | "na" | "gine" | "na_gine" (Fig. S1)
    latent_dim: int = 256
    head_hidden: int = 256
    max_atoms: int = 20
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    # diffusion
    timesteps: int = 1000
    beta_schedule: str = "sigmoid"
    time_embedding: str = "integer"  # "integer" (ours) | "code" (t/T as the published code)
    recenter: bool = True  # remove the per-crystal mean of frac coords / noise, as the published code
    # coordinate loss (Eq. 10) reduction: "mean" (ours: mean over atoms x 3, every atom weighted alike) | "code" (the
    # published code: squared error summed over x, y, z, averaged per crystal, then over the batch)
    coord_loss: str = "mean"
    # frame of the predicted noise: "fractional" (ours: GemNet-T's Cartesian output mapped to fractional with L^-1) |
    # "code" (the published code: the Cartesian output regressed directly on the fractional noise)
    eps_frame: str = "fractional"
    # target of the noise prediction: "unwrapped" (paper and published code: the eps drawn in Eq. 2) | "wrapped" (ours:
    # the noise relative to the wrapped input, eps + m (1 - sqrt(abar_t)) / sqrt(1 - abar_t) with m = pi(x_t) - x_t,
    # for which Eq. 7's clean-sample estimate is exactly x0 modulo 1)
    eps_target: str = "unwrapped"
    # ours, not in the paper: Eq. 7-consistency augmentation. With this probability per crystal, the coordinate term
    # trains on the input Eq. 7 feeds the network (the clean crystal plus c * sigma_t noise, c ~ U[noise range], t ~
    # U[t range]) with the target that makes Eq. 7's clean-sample estimate return the crystal (modulo 1), so that the
    # truth is a fixed point of the Eq. 7 map. 0.0 = the paper.
    eq7_consistency_prob: float = 0.0
    eq7_consistency_t: list = field(default_factory=lambda: [300, 650])  # inclusive range of t
    eq7_consistency_noise: list = field(default_factory=lambda: [1.0, 2.0])  # range of c
    # atom-type perturbation (Eq. 9)
    type_sigma_begin: float = 5.0
    type_sigma_end: float = 0.01
    type_sigma_levels: int = 1000
    type_loss: str = "per_atom"  # "per_atom" (CE / sigma', paper intent) | "code" (published broadcast bug) | "ce"
    # ours, not in the paper: in training, with this probability per crystal, exchange the perturbed types of two
    # atoms whose true elements differ, so that the type head learns to repair a wrong site assignment (sampling
    # starts from Z_T with the right composition but its atoms at random sites). 0.0 = the paper.
    type_swap_prob: float = 0.0
    # initial types Z_T from the composition head: "round_residual" (published code: round(p N_a), shortfall drawn
    # from the residual probabilities) | "largest_remainder" (floor(p N_a), then the largest fractional parts)
    initial_types: str = "round_residual"
    # atom types during the reverse process: "argmax" (the paper: reset to argmax(A_theta) at every step) or "fixed"
    # (ours: keep Z_T from the composition head; the type head is not used in sampling)
    type_update: str = "argmax"
    lattice_scaler: str = "minmax"  # DP-CDVAE: min-max; CDVAE: "standard"
    # loss weights (Eq. S1)
    w_num_atoms: float = 1.0
    w_lattice: float = 100.0
    w_composition: float = 1.0
    w_kld: float = 0.01
    w_coord: float = 1.0
    w_type: float = 0.1
    coord_boost_epoch: int = 1000  # coordinate weight x coord_boost_factor from this epoch on
    coord_boost_factor: float = 10.0
    teacher_forcing_epochs: int = 400  # true lattice fed to the denoiser until this epoch
    # CDVAE baseline (model = cdvae / cdvae_fourier)
    cdvae_sigma_begin: float = 10.0
    cdvae_sigma_end: float = 0.01
    cdvae_num_levels: int = 50


@dataclass
class TrainConfig:
    batch_size: int = 512
    lr: float = 1e-3
    lr_factor: float = 0.6
    lr_patience: int = 30
    lr_min: float = 1e-4
    grad_clip_value: float = 0.5
    max_epochs: int = 3000
    early_stop_patience: int = 300
    max_minutes: Optional[float] = None
    ema_decay: Optional[float] = None  # e.g. 0.999; None = off
    # learning-rate schedule: "plateau" (ReduceLROnPlateau on val_loss: lr_factor, lr_patience, lr_min) or
    # "cosine" (linear warm-up over warmup_frac of the run, then cosine down to lr * cosine_final_factor at the end of
    # the run; the run's length is its wall-clock budget max_minutes when set, else max_epochs)
    lr_schedule: str = "plateau"
    warmup_frac: float = 0.02
    cosine_final_factor: float = 0.01
    seed: int = 42
    num_workers: int = 0
    val_every: int = 1
    limit_train: Optional[int] = None  # use only the first N training crystals (tests, demos)
    limit_val: Optional[int] = None


@dataclass
class Config:
    name: str = "paper"
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Config":
        """Build a config from :meth:`to_dict`'s form (values are not checked: see :func:`validate`). A key no
        dataclass has raises :class:`ConfigError` naming it."""
        d = copy.deepcopy(d)
        m = d.get("model", {})
        try:
            enc = EncoderConfig(**m.pop("encoder", {}))
            dec = DecoderConfig(**m.pop("decoder", {}))
            return cls(name=d.get("name", "custom"), model=ModelConfig(encoder=enc, decoder=dec, **m),
                       train=TrainConfig(**d.get("train", {})))
        except TypeError as exc:  # "__init__() got an unexpected keyword argument 'x'" or a section not a dict
            raise ConfigError(f"config: {exc}".replace("__init__() ", "")) from None

    def override(self, overrides: Optional[dict[str, Any]] = None) -> "Config":
        """Return a copy with dotted keys replaced, e.g. ``{"train.max_epochs": 5, "model.variant": "na"}``, checked
        by :func:`validate` (type, range, allowed values: a :class:`ConfigError` of one line names the key, the
        value and what is allowed; numbers given as text, e.g. YAML's ``1e-3``, are converted). An unknown key is a
        :class:`~dpcdvae.utils.errors.ConfigArgumentError` of ``overrides`` (``--set`` on the command line)."""
        d = self.to_dict()
        for key, value in (overrides or {}).items():
            node = d
            parts = key.split(".")
            for p in parts[:-1]:
                if p not in node or not isinstance(node[p], dict):
                    sections = sorted(k for k, v in d.items() if isinstance(v, dict))
                    raise ConfigArgumentError("overrides", f"unknown config key {key!r} ({mention('overrides')}); "
                                                           f"known sections: {sections}", lead=False)
                node = node[p]
            if parts[-1] not in node:
                raise ConfigArgumentError("overrides", f"unknown config key {key!r} ({mention('overrides')}); "
                                                       f"known at this level: {sorted(node)}", lead=False)
            if isinstance(node[parts[-1]], dict) and not isinstance(value, dict):
                raise ConfigValueError(f"{key}={_show(value)}: {key} is a section; set one of its keys, e.g. "
                                       f"{key}.{next(iter(node[parts[-1]]))}=...")
            node[parts[-1]] = value
        return validate(Config.from_dict(d))


# ------------------------------------------------------------------------------------------------------ schema
@dataclass(frozen=True)
class Range:
    """Allowed numbers: ``lo <= x`` (``lo < x`` when ``lo_open``) and ``x <= hi`` (``x < hi`` when ``hi_open``)."""

    lo: Optional[float] = None
    hi: Optional[float] = None
    lo_open: bool = False
    hi_open: bool = False

    def ok(self, x) -> bool:
        if self.lo is not None and not (x > self.lo if self.lo_open else x >= self.lo):
            return False
        if self.hi is not None and not (x < self.hi if self.hi_open else x <= self.hi):
            return False
        return True

    def __str__(self) -> str:
        if self.lo is not None and self.hi is not None:
            return f"in {'(' if self.lo_open else '['}{_num(self.lo)}, {_num(self.hi)}{')' if self.hi_open else ']'}"
        if self.lo is not None:
            return f"{'>' if self.lo_open else '>='} {_num(self.lo)}"
        return f"{'<' if self.hi_open else '<='} {_num(self.hi)}"


def _num(x) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


POSITIVE = Range(0, lo_open=True)
AT_LEAST_1 = Range(1)
NON_NEGATIVE = Range(0)
FRACTION = Range(0, 1)

#: dotted key -> allowed numbers (:class:`Range`) or allowed values (a tuple of strings). Integer fields of the
#: encoder and decoder not listed here must be >= 1 (sizes and counts); other numbers are only checked for type.
RULES: dict[str, Any] = {
    # model
    "model.model": ("dpcdvae", "cdvae", "cdvae_fourier"),
    "model.variant": VARIANTS,
    "model.latent_dim": AT_LEAST_1, "model.head_hidden": AT_LEAST_1, "model.max_atoms": AT_LEAST_1,
    "model.timesteps": AT_LEAST_1,
    "model.beta_schedule": ("sigmoid", "linear", "cosine"),
    "model.time_embedding": ("integer", "code"),
    "model.coord_loss": ("mean", "code"),
    "model.eps_frame": ("fractional", "code"),
    "model.eps_target": ("unwrapped", "wrapped"),
    "model.eq7_consistency_prob": FRACTION,
    "model.type_sigma_begin": POSITIVE, "model.type_sigma_end": POSITIVE, "model.type_sigma_levels": AT_LEAST_1,
    "model.type_loss": ("per_atom", "code", "ce"),
    "model.type_swap_prob": FRACTION,
    "model.initial_types": ("round_residual", "largest_remainder"),
    "model.type_update": ("argmax", "fixed"),
    "model.lattice_scaler": ("minmax", "standard"),
    "model.w_num_atoms": NON_NEGATIVE, "model.w_lattice": NON_NEGATIVE, "model.w_composition": NON_NEGATIVE,
    "model.w_kld": NON_NEGATIVE, "model.w_coord": NON_NEGATIVE, "model.w_type": NON_NEGATIVE,
    "model.coord_boost_epoch": NON_NEGATIVE, "model.coord_boost_factor": NON_NEGATIVE,
    "model.teacher_forcing_epochs": NON_NEGATIVE,
    "model.cdvae_sigma_begin": POSITIVE, "model.cdvae_sigma_end": POSITIVE, "model.cdvae_num_levels": AT_LEAST_1,
    # encoder / decoder
    "model.encoder.cutoff": POSITIVE, "model.decoder.cutoff": POSITIVE,
    "model.encoder.num_before_skip": NON_NEGATIVE, "model.encoder.num_after_skip": NON_NEGATIVE,
    "model.encoder.num_output_layers": NON_NEGATIVE,
    "model.encoder.graph": ("crystalnn", "radius"),
    "model.encoder.na_encoder": ("mlp", "embedding", "onehot_mlp"),
    "model.encoder.output_init": ("glorot_orthogonal", "zeros"),
    "model.decoder.fourier_min": NON_NEGATIVE, "model.decoder.fourier_max": NON_NEGATIVE,
    # train
    "train.batch_size": AT_LEAST_1,
    "train.lr": POSITIVE,
    "train.lr_factor": Range(0, 1, lo_open=True, hi_open=True),
    "train.lr_patience": NON_NEGATIVE,
    "train.lr_min": NON_NEGATIVE,
    "train.grad_clip_value": NON_NEGATIVE,
    "train.max_epochs": AT_LEAST_1,
    "train.early_stop_patience": NON_NEGATIVE,
    "train.max_minutes": POSITIVE,
    "train.ema_decay": Range(0, 1, lo_open=True, hi_open=True),
    "train.lr_schedule": ("plateau", "cosine"),
    "train.warmup_frac": Range(0, 1, hi_open=True),
    "train.cosine_final_factor": FRACTION,
    "train.seed": Range(0, 2 ** 32 - 1),
    "train.num_workers": NON_NEGATIVE,
    "train.val_every": AT_LEAST_1,
    "train.limit_train": AT_LEAST_1, "train.limit_val": AT_LEAST_1,
}

_NONE_WORDS = ("none", "null", "~")


def _show(value) -> str:
    return repr(value) if isinstance(value, str) and (not value or value != value.strip()) else str(value)


def _coerce(key: str, value, kind, rule):
    """``value`` as the field's type ``kind`` (int, float, bool, str, list; ``Optional[...]`` allows None), or a
    :class:`ConfigError` naming the key, the value and what is allowed."""
    import math
    import typing

    def bad(expected: str):
        extra = f" {rule}" if isinstance(rule, Range) else ""
        return ConfigValueError(f"{key}={_show(value)}: expected {expected}{extra}")

    args = typing.get_args(kind)
    if typing.get_origin(kind) is typing.Union and type(None) in args:
        if value is None or (isinstance(value, str) and value.strip().lower() in _NONE_WORDS):
            return None
        kind = next(a for a in args if a is not type(None))
        optional = " (or none)"
    else:
        optional = ""
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise bad("true or false" + optional)
    if kind is int:
        if isinstance(value, bool):
            raise bad("an integer" + optional)
        if isinstance(value, int):
            return value
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip().replace("_", ""))
            except ValueError:
                try:
                    f = float(value)
                    if math.isfinite(f) and f.is_integer():
                        return int(f)
                except ValueError:
                    pass
        raise bad("an integer" + optional)
    if kind is float:
        f = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            f = float(value)
        elif isinstance(value, str):
            try:
                f = float(value.strip())
            except ValueError:
                f = None
        if f is None or not math.isfinite(f):
            raise bad("a finite number" + optional)
        return f
    if kind is str:
        if isinstance(value, str):
            return value
        if isinstance(rule, tuple):
            raise ConfigValueError(f"{key}={_show(value)}: expected one of {', '.join(rule)}")
        raise bad("text" + optional)
    if kind is list or typing.get_origin(kind) is list:
        if isinstance(value, (list, tuple)):
            return list(value)
        raise bad("a list, e.g. [1, 2]" + optional)
    return value


def _field_types(cls) -> dict:
    import typing

    return typing.get_type_hints(cls)


def _check_section(obj, prefix: str) -> None:
    for f in dataclasses.fields(obj):
        key = f"{prefix}.{f.name}" if prefix else f.name
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            _check_section(value, key)
            continue
        kind = _field_types(type(obj))[f.name]
        rule = RULES.get(key)
        if rule is None and kind is int and prefix in ("model.encoder", "model.decoder"):
            rule = AT_LEAST_1
        given = value
        value = _coerce(key, value, kind, rule)
        if value is not None:
            if isinstance(rule, tuple) and value not in rule:
                raise ConfigValueError(f"{key}={_show(given)}: not an allowed value; allowed: {', '.join(rule)}")
            if isinstance(rule, Range) and not rule.ok(value):
                raise ConfigValueError(f"{key}={_show(given)}: out of range; allowed: {rule}")
        setattr(obj, f.name, value)


def validate(cfg: Config) -> Config:
    """Check every field of ``cfg`` against the schema and return ``cfg``.

    Type: from the dataclass annotations (int, float, bool, str, list; ``Optional`` allows ``None``, also written
    ``none``/``null``); numbers given as text (``"1e-3"``, which YAML reads as a string) and whole floats for an
    integer field are converted in place. Range and allowed values: :data:`RULES`. Across fields: the rules of the
    model's coordinate options (as ``dpcdvae.models.dpcdvae.check_coord_options``: ``model.eq7_consistency_t`` two
    integers with ``1 <= lo <= hi <= model.timesteps`` when ``model.eq7_consistency_prob > 0``,
    ``model.eq7_consistency_noise`` two numbers with ``0 <= lo <= hi``) and ``model.decoder.fourier_min <=
    model.decoder.fourier_max``. The first violation raises :class:`~dpcdvae.utils.errors.ConfigValueError` (a
    :class:`ConfigError` and a ``ValueError``), one line naming the key, the value and what is allowed."""
    _check_section(cfg, "")
    m = cfg.model
    t_range, noise = m.eq7_consistency_t, m.eq7_consistency_noise
    if len(t_range) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in t_range):
        raise ConfigValueError(f"model.eq7_consistency_t={t_range}: expected two integers [lo, hi], e.g. [300, 650]")
    if m.eq7_consistency_prob > 0 and not 1 <= t_range[0] <= t_range[1] <= m.timesteps:
        raise ConfigValueError(f"model.eq7_consistency_t={t_range}: expected [lo, hi] with 1 <= lo <= hi <= "
                               f"model.timesteps ({m.timesteps})")
    if len(noise) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in noise) \
            or not 0 <= noise[0] <= noise[1]:
        raise ConfigValueError(f"model.eq7_consistency_noise={noise}: expected two numbers [lo, hi] with "
                               f"0 <= lo <= hi, e.g. [1.0, 2.0]")
    d = m.decoder
    if d.fourier_min > d.fourier_max:
        raise ConfigValueError(f"model.decoder.fourier_min={d.fourier_min}: expected <= "
                               f"model.decoder.fourier_max ({d.fourier_max})")
    return cfg


def _deep_update(base: dict, upd: dict) -> dict:
    for k, v in upd.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _deep_update(base[k], v)
        else:
            base[k] = v
    return base


def load_config(name_or_path: str = "paper", overrides: Optional[dict[str, Any]] = None,
                dataset: Optional[Any] = None, root: Optional[str] = None) -> Config:
    """Load a preset (``paper``, ``compact``, ``tiny``) or a YAML file, then apply dotted-key ``overrides``.

    ``dataset`` (a name, a folder, a :class:`~dpcdvae.data.registry.DatasetSpec` or a
    :class:`~dpcdvae.data.resolve.DatasetHandle`, whose spec is used as it is) applies its settings from the
    dataset registry: ``max_atoms`` (Perov-5 20, Carbon-24 24, MP-20 20; a dataset of one's own, located under
    ``root`` like the loaders do: the largest crystal in its CSVs) and, for the ``paper`` config, the paper's batch
    size (Perov-5 512, Carbon-24 256, MP-20 256; others 256). The result is checked by :func:`validate` (type,
    range, allowed values; :class:`ConfigError`, one line, before any work).
    """
    path = Path(name_or_path)
    if not path.suffix:
        path = CONFIG_DIR / f"{name_or_path}.yaml"
    if not path.exists():
        raise FileNotFoundError(f"no config preset or file {name_or_path!r} (presets: {', '.join(PRESETS)}; "
                                f"looked at {path})")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ConfigValueError(f"config file {path}: expected a mapping of sections (model:, train:), got "
                               f"{type(raw).__name__}")
    d = _deep_update(Config().to_dict(), raw)
    d.setdefault("name", path.stem)
    cfg = Config.from_dict(d)
    if dataset is not None:
        spec = dataset_spec(dataset, root)
        key = (dataset.name if isinstance(dataset, DatasetHandle) else dataset if isinstance(dataset, str)
               else spec.name)
        per = raw.get("datasets", {}).get(key, {}) if isinstance(raw.get("datasets"), dict) else {}
        ds_over = {"model.max_atoms": spec.max_atoms}
        if cfg.name == "paper":
            ds_over["train.batch_size"] = spec.batch_size
        ds_over.update(per)
        cfg = cfg.override(ds_over)
    return cfg.override(overrides)
