"""What the jobs return: :class:`ReconstructionResult` (:func:`~dpcdvae.workflows.reconstruct_split`),
:class:`GenerationResult` (:func:`~dpcdvae.workflows.generate_to_folder`), :class:`RelaxRunResult`
(:func:`~dpcdvae.workflows.run_relax`) and :class:`GroundStateStudyResult`
(:func:`~dpcdvae.workflows.run_ground_state_study`). Plain dataclasses with documented fields; the JSON record a
job writes (``metrics.json``, ``summary.json``, ``study.json``) and the command line prints is the result's
``summary()``."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

__all__ = ["ReconstructionResult", "GenerationResult", "RelaxRunResult", "GroundStateStudyResult"]


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


@dataclass
class RelaxRunResult:
    """One relaxation run into a folder (Table III for one set of structures; ``dpcdvae relax``).

    * ``out``: the output folder (``<id>.json`` + ``<id>.cif`` per structure, ``summary.json``);
    * ``input``: the CIF file, folder of CIFs or extxyz file relaxed, as given;
    * ``settings``: ``pressure_gpa`` (GPa), ``calculator``, ``optimizer``, ``fmax`` (eV/A), ``max_steps``,
      ``batch``, ``batch_size``, ``device``, ``workers``, ``energy_measure`` (``"enthalpy"`` or ``"energy"``);
    * ``results``: one :class:`~dpcdvae.eval.relax.RelaxResult` per structure, in the input's order (energies and
      enthalpies in eV/atom, volumes in A^3/atom; ``resumed`` for those read back from ``out``);
    * ``metrics``: the Table III metrics of :func:`~dpcdvae.eval.ground_state.ground_state_metrics` without their
      per-structure rows (``match_rate`` in %, ``delta_rms`` dimensionless, ``dV_rms`` in A^3/atom, ``dE_rms`` in
      meV/atom, counts ``n``, ``n_relaxed``, ``n_converged``, ``n_failed``, ...);
    * ``per_structure``: those rows (``id``, ``matched``, ``rms_dist``, ``dV`` in A^3/atom, ``dE_meV`` in
      meV/atom), in the order of ``results``;
    * ``wall_s``: seconds this run took; ``wall_s_total``: with the earlier runs into ``out`` that it resumed (both
      rounded to 0.01 s);
    * ``command``: the command line recorded; ``date``: when the run ended (ISO 8601, seconds);
    * ``plot``: the Fig. S2 histogram written (``out / "delta_e_hist.png"``), or ``None``.
    """

    out: Path
    input: str
    settings: dict
    results: list
    metrics: dict
    per_structure: list
    wall_s: float
    wall_s_total: float
    command: str = ""
    date: str = ""
    plot: Optional[Path] = None

    @property
    def n_resumed(self) -> int:
        """Structures whose stored result was read back from ``out`` instead of relaxed again."""
        return sum(1 for r in self.results if r.resumed)

    def summary(self) -> dict:
        """The run's record as a JSON-ready dict, what ``summary.json`` holds: ``command``, ``date``, ``input``,
        ``settings``, ``wall_s``, ``wall_s_total``, ``n_resumed``, ``metrics`` and ``results`` (one row per
        structure: the relaxation without its structures, ``resumed``, and ``matched``, ``rms_dist``, ``dV``,
        ``dE_meV``), and ``plot`` when it was drawn."""
        d: dict[str, Any] = {
            "command": self.command, "date": self.date, "input": self.input, "settings": self.settings,
            "wall_s": self.wall_s, "wall_s_total": self.wall_s_total, "n_resumed": self.n_resumed,
            "metrics": self.metrics,
            "results": [{**r.to_dict(structures=False), "resumed": r.resumed,
                         **{k: p[k] for k in ("matched", "rms_dist", "dV", "dE_meV")}}
                        for r, p in zip(self.results, self.per_structure)],
        }
        if self.plot is not None:
            d["plot"] = str(self.plot)
        return d


@dataclass
class GroundStateStudyResult:
    """Table III over several models (``dpcdvae ground-state``): each model generated ``n`` crystals, relaxed.

    * ``out``: the study folder (``<model label>/{generated,relaxed}``, ``table3.md``, ``study.json``);
    * ``n``: crystals generated per model; ``pressure_gpa``: the relaxation pressure (GPa); ``seed``: of the
      generation;
    * ``models``: ``{label: row}``, one row per model as ``study.json`` holds it: ``checkpoint``, ``sampler``, the
      metrics of :class:`RelaxRunResult` (``match_rate`` in %, ``dV_rms`` in A^3/atom, ``dE_rms`` in meV/atom,
      counts, ...), ``n_generated``, ``n_degenerate`` (generated crystals that were not built into a structure,
      hence not relaxed) and ``relax_wall_s`` (s);
    * ``results``: ``{label: [RelaxResult]}``, each model's relaxations (:class:`~dpcdvae.eval.relax.RelaxResult`;
      eV/atom, A^3/atom), in the order of ``models``;
    * ``table``: Table III as Markdown, the paper's DFT rows beside ours (what ``table3.md`` holds);
    * ``wall_s``: seconds the study took (rounded to 0.1 s); ``command``: the command line recorded; ``date``: when
      it ended (ISO 8601, seconds);
    * ``plot``: the Fig. S2 histograms written (``out / "delta_e_hist.png"``), or ``None``.
    """

    out: Path
    n: int
    pressure_gpa: float
    seed: int
    models: dict
    results: dict
    table: str
    wall_s: float
    command: str = ""
    date: str = ""
    plot: Optional[Path] = None

    def summary(self) -> dict:
        """The study's record as a JSON-ready dict, what ``study.json`` holds: ``command``, ``date``, ``n``,
        ``pressure_gpa``, ``seed``, ``wall_s``, ``models``, and ``plot`` when it was drawn (not the relaxations,
        not the table)."""
        d: dict[str, Any] = {"command": self.command, "date": self.date, "n": self.n, "pressure_gpa": self.pressure_gpa,
                             "seed": self.seed, "wall_s": self.wall_s, "models": self.models}
        if self.plot is not None:
            d["plot"] = str(self.plot)
        return d
