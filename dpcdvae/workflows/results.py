"""What the reconstruction and generation jobs return: :class:`ReconstructionResult`
(:func:`~dpcdvae.workflows.reconstruct_split`) and :class:`GenerationResult`
(:func:`~dpcdvae.workflows.generate_to_folder`). Plain dataclasses with documented fields; the JSON record the command
line prints and writes (``metrics.json``) is :meth:`ReconstructionResult.summary`."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

__all__ = ["ReconstructionResult", "GenerationResult"]


@dataclass
class ReconstructionResult:
    """One reconstruction run (Table I / S1) of ``n`` crystals of a split.

    Fields (the first twelve are always set):

    * ``out``: the run folder written (``cif/``, ``samples.*``, ``metrics.json``, ``per_structure.csv``), or
      ``None`` when nothing was written (``out=None``);
    * ``n``: crystals reconstructed (the split's first ``limit`` rows, less the skipped ones);
    * ``sample_wall_s``: seconds spent reconstructing (encoding + reverse process + building the structures;
      rounded to 0.1 s; the StructureMatcher step is not included);
    * ``sampler``: the sampler's label (e.g. ``"eq7"``, ``"strided_eq7"``); ``steps``: network calls per crystal
      (the model's T when the sampler runs all steps);
    * ``latent``: ``"sample"`` (z drawn from the encoder posterior) or ``"mean"``; ``initial_types``,
      ``type_update``: the model settings used; ``weights``: which weights sampled (EMA, raw, or a shipped model's);
    * ``devices``: processes the batches were sharded over;
    * ``dataset``: the dataset's registered name; ``model_dataset``: what the model was trained on (``None`` if
      unknown);
    * ``warning``: one line when the two datasets differ, else ``None``;
    * ``skipped_rows``: ``[{"row", "material_id", "reason"}]``, the bad CSV rows skipped with ``on_error="skip"``
      (empty otherwise);
    * ``ids``: the material ids of the ``n`` crystals, in order (a list of ``str``);
    * ``metrics``: the full :func:`~dpcdvae.eval.reconstruction.reconstruction_metrics` dict (``match_rate`` in %,
      ``delta_rms`` dimensionless and NaN when nothing matched, counts, lattice RMSEs in A / deg / A^3 per atom,
      ``invalid_reasons``, and ``per_structure``: one dict per crystal in the order of ``ids``); ``None`` when the
      metrics were not computed (``metrics=False``);
    * ``failures``: the miss breakdown of :func:`~dpcdvae.eval.failures.failure_breakdown` without its
      per-crystal rows (``counts``, ``percent`` of the targets, ...), or ``None`` unless ``breakdown=True``;
    * ``preds`` / ``targets``: the ``n`` reconstructed (``Structure`` or ``None`` where not built) and ground-truth
      pymatgen structures, in the order of ``ids``; ``None`` unless ``keep_structures=True``.
    """

    out: Optional[Path]
    n: int
    sample_wall_s: float
    sampler: str
    steps: int
    latent: str
    initial_types: str
    type_update: str
    weights: str
    devices: int
    dataset: str
    model_dataset: Optional[str]
    warning: Optional[str] = None
    skipped_rows: list = field(default_factory=list)
    ids: list = field(default_factory=list)
    metrics: Optional[dict] = None
    failures: Optional[dict] = None
    preds: Optional[list] = None
    targets: Optional[list] = None

    @property
    def match_rate(self) -> Optional[float]:
        """Match rate in % over all ``n`` crystals (``None`` without metrics)."""
        return None if self.metrics is None else self.metrics["match_rate"]

    @property
    def delta_rms(self) -> Optional[float]:
        """Mean RMS distance of the matched pairs (normalised by (V/N)^(1/3), dimensionless; NaN when nothing
        matched; ``None`` without metrics)."""
        return None if self.metrics is None else self.metrics["delta_rms"]

    def summary(self) -> dict:
        """The run's record as a JSON-ready dict: the settings, ``warning`` and ``skipped_rows`` when there are any,
        the scalar metrics (every entry of ``metrics`` that is not a list or a dict) and ``failures`` when computed.
        It is what ``metrics.json`` holds and what ``dpcdvae reconstruct`` prints (through
        :func:`~dpcdvae.utils.fileio.strict_json_dumps`: NaN -> null)."""
        d: dict[str, Any] = {"out": None if self.out is None else str(self.out), "n": self.n,
                             "sample_wall_s": self.sample_wall_s, "sampler": self.sampler, "steps": self.steps,
                             "latent": self.latent, "initial_types": self.initial_types,
                             "type_update": self.type_update, "weights": self.weights, "devices": self.devices,
                             "dataset": self.dataset,
                             "model_dataset": self.model_dataset}
        if self.warning:
            d["warning"] = self.warning
        if self.skipped_rows:
            d["skipped_rows"] = list(self.skipped_rows)
        if self.metrics is not None:
            d.update({k: v for k, v in self.metrics.items() if not isinstance(v, (list, dict))})
        if self.failures is not None:
            d["failures"] = self.failures
        return d


@dataclass
class GenerationResult:
    """One generation run written into a folder (Table II; ``dpcdvae sample``).

    * ``samples``: all ``n`` crystals, in order (a :class:`~dpcdvae.models.SampleOutput`: tensors, structures,
      ids, flags, ``meta``);
    * ``out``: the run folder (``cif/``, ``samples.extxyz``, ``samples.json``, and ``batches/`` when the batches
      were kept);
    * ``n``: crystals generated; ``n_decoded``: those built into a structure (a ``.cif`` each); ``n_valid``: those
      valid in the paper's sense (structure + composition, as Table II and ``samples.json``);
    * ``batches_read_back``: finished batches read back from ``out/batches`` instead of computed (``resume=True``;
      0 otherwise);
    * ``meta``: the run's metadata as written into ``samples.json`` (sampler label, steps, seed, the caller's
      ``meta``).
    """

    samples: Any
    out: Path
    n: int
    n_decoded: int
    n_valid: int
    batches_read_back: int = 0
    meta: dict = field(default_factory=dict)

    @property
    def cif_dir(self) -> Path:
        """The folder of the built crystals' CIF files (``out / "cif"``)."""
        return self.out / "cif"
