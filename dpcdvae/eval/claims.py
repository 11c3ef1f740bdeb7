"""The paper's claims, checked against what we measured: one row per check of a claim of its text, the paper's
numbers, ours, the difference with its uncertainty, and whether the claim holds here.

Source of the claims: Pakornchote et al. (2023), the Markdown transcription ``dp-cdvae-paper.md`` (line numbers
below are that file's). Each :class:`Claim` quotes the paper's words (its mathematics in ASCII: ``<delta_rms>``,
``N_a``, ``rho``, ``Delta E_rms``; ``[...]`` marks a cut); its :class:`Check` rows split it by dataset
(Table III: by statement); each check compares numbers of the paper's tables (:class:`Comparison`: metric ``a`` of
one (table, dataset, model) against metric ``b`` of another, or against a threshold). A claim about several models
("all DP-CDVAE models ...") holds only if it holds for each of them.

Our numbers (:class:`Figures`) come, never hard-coded, from

* the runs of ``dpcdvae reproduce --paper``: ``<reports>/paper_runs/<job>.json``, whose ``metrics`` are the tables
  each notebook saved (``nb.save_table``); Tables I / S1 hold each crystal's outcome (``per_crystal``: id, matched,
  rms), Table III each relaxed structure's dV and dE (``per_structure``); runs on the SYNTHETIC demo data are left
  out;
* the shipped models' cards (``dpcdvae/weights/<name>.json``, ``metrics``): ``recon<full|N>_<eq7|eq6|lN>`` (Table I
  with Eq. 7, or annealed Langevin for a CDVAE model; Table S1 with Eq. 6; match rate and ``delta_rms`` over ``n``
  crystals), ``table2_*`` (Table II; the figures are read from its protocol text: ``structure 100.00 %, composition
  96.70 %, COV-R 51.55 %, COV-P 97.00 %, W1 rho 0.167 g/cm^3, W1 E_form 0.200 eV/atom, W1 #elem 0.152``),
  ``gen<N>_struct`` / ``gen<N>_comp`` (validity over N generated crystals), or any entry with ``"table"`` and a
  ``"values"`` mapping (metric key -> number).

Where both give a number, the one over more crystals wins (then the one with per-crystal records). A new shipped
model (``perov_5_na`` is DP-CDVAE+Na on Perov-5: :data:`MODEL_SUFFIX`, or the card's ``paper_model``) and its
measured tables enter the claims table by themselves.

**Uncertainty** of a difference ``d = ours_a - ours_b`` (``SE``, the same unit as the metric):

* match rates of the same crystals with per-crystal records on both sides: the paired standard error of
  :func:`dpcdvae.eval.compare.paired_difference` over the crystals both hold;
* other rates (%; match rate without per-crystal records, validity, COV-R, COV-P): the unpaired binomial SE
  ``100 sqrt(p_a (1 - p_a) / n_a + p_b (1 - p_b) / n_b)`` with ``p = (k + 1) / (n + 2)`` (``k`` the count behind the
  rate: 0 % and 100 % keep a non-zero SE);
* ``delta_rms`` with per-crystal records (paired by crystal), Table III's ``dV_rms`` / ``dE_rms`` / ``delta_rms``
  with per-structure values (independent sets): the standard deviation of :data:`BOOTSTRAP` bootstrap resamples
  (seed 0);
* otherwise (W1 distances, ``delta_rms`` from a card, the mode of dE): "no uncertainty available"; the verdict then
  rests on the point estimates.

**Verdict** of a comparison, with ``Z = 2`` standard errors: ``a < b`` holds when ``d + Z SE < 0``, does not hold
when ``d - Z SE > 0``, else "inconclusive" (within noise). ``comparable`` (tolerance ``t``): holds when
``|d| + Z SE <= t``, does not hold when ``|d| - Z SE > t``. ``range [lo, hi]``: does not hold when ``d +- Z SE``
misses ``[lo, hi]``, holds when ``d`` lies in it and ``d +- Z SE`` excludes 0. ``at_least x``: holds when
``a - Z SE >= x``, does not hold when ``a + Z SE < x``. "not measured" says why: the dataset's data are absent, no
model of that name is shipped, or the shipped model's table was not measured yet. A check over several comparisons
does not hold if one does not; holds if all that were measured hold (saying which were not measured).

Use::

    from dpcdvae.eval.claims import claims_report
    print(claims_report("docs/reports"))          # Markdown (``fmt="html"`` / ``"json"``)

or ``dpcdvae reproduce --claims [--out docs/reports] [--format markdown|html|json]``. ``dpcdvae reproduce
--paper`` writes the same table into its summary page and ``<out>/claims.json``.
"""
from __future__ import annotations

import html as _html
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

from ..utils.errors import ArgumentError
from ..utils.fileio import jsonable, strict_json_dumps

__all__ = [
    "MODEL_SUFFIX", "LANGEVIN_MODELS", "Z", "BOOTSTRAP", "HOLDS", "FAILS", "INCONCLUSIVE", "NOT_MEASURED",
    "Ref", "Comparison", "Check", "Claim", "CLAIMS", "Measure", "Figures", "shipped_models", "paper_model_of",
    "shipped_for", "figures_from_reports", "figures_from_cards", "collect_figures", "judge", "binomial_se",
    "claim_rows", "verdict_counts", "render_markdown", "render_html", "claims_report", "FORMATS",
]

#: the paper's model names and the suffix of the shipped model that is that model on a dataset (``perov_5_na``)
MODEL_SUFFIX: dict[str, str] = {
    "DP-CDVAE": "",
    "DP-CDVAE+Na": "_na",
    "DP-CDVAE+GINE": "_gine",
    "DP-CDVAE+Na+GINE": "_na_gine",
    "CDVAE": "_cdvae",
    "CDVAE+Fourier": "_cdvae_fourier",
}
#: models that sample with annealed Langevin (CDVAE's sampler): their Table I figure is a Langevin reconstruction
LANGEVIN_MODELS = ("CDVAE", "CDVAE+Fourier")

Z = 2.0  #: standard errors within which a difference is noise ("inconclusive")
BOOTSTRAP = 1000  #: bootstrap resamples (seed 0)

HOLDS, FAILS, INCONCLUSIVE, NOT_MEASURED = "holds", "does not hold", "inconclusive", "not measured"

#: rates in %, whose SE is binomial (or paired, for match rates of the same crystals)
RATE_METRICS = ("match_rate", "struct_validity", "comp_validity", "cov_r", "cov_p")
#: metrics with a bootstrap SE when per-item values are there: metric -> (item key, statistic)
ITEM_METRICS = {"delta_rms": ("rms", "mean_matched"), "dV_rms": ("dV", "rms"), "dE_rms": ("dE", "rms")}
#: extra metric keys of the claims (not columns of the paper's tables): the upper edge of the Fig. S2 mode bin
EXTRA_METRICS = {"dE_mode_upper": {"label": "dE mode (upper bin edge)", "unit": "meV/atom", "better": "down"}}

DATASET_LABEL = {"perov_5": "Perov-5", "carbon_24": "Carbon-24", "mp_20": "MP-20"}


# ================================================================================================================
# the claims, as data
# ================================================================================================================
@dataclass(frozen=True)
class Ref:
    """One number of the paper's tables: ``metric`` (a key of :data:`dpcdvae.eval.reference.METRIC_INFO`, or
    ``dE_mode_upper``) of ``model`` on ``dataset`` in ``table`` (I, S1, II, III)."""

    table: str
    dataset: str
    model: str
    metric: str


@dataclass(frozen=True)
class Comparison:
    """``a`` against ``b`` (``None``: against a threshold). ``relation``: ``"lt"`` (a < b), ``"gt"``, ``"comparable"``
    (``|a - b| <= bound[0]``; ``relative``: ``bound[0]`` is a fraction of ``b``), ``"range"`` (``bound[0] <= a - b
    <= bound[1]``), ``"at_least"`` (``a >= bound[0]``). Bounds are in the metric's unit (percentage points for
    rates)."""

    a: Ref
    b: Optional[Ref]
    relation: str
    bound: tuple = ()
    relative: bool = False

    @property
    def label(self) -> str:
        if self.b is None:
            return self.a.model
        if self.a.model == self.b.model:
            return f"{self.a.model} (Table {self.a.table} vs {self.b.table})"
        return f"{self.a.model} vs {self.b.model}"


@dataclass(frozen=True)
class Check:
    """One row of the claims table: ``id`` (``"1a"``), the dataset, the comparisons that must all hold and the
    check in words."""

    id: str
    dataset: str
    text: str
    comparisons: tuple


@dataclass(frozen=True)
class Claim:
    """A claim of the paper's text: ``quote`` (its words), ``lines`` (of ``dp-cdvae-paper.md``), the checks, and a
    ``note`` shown with it."""

    id: str
    quote: str
    lines: tuple
    checks: tuple
    note: str = ""


_DP = "DP-CDVAE"
_NA, _GINE, _NAGINE = "DP-CDVAE+Na", "DP-CDVAE+GINE", "DP-CDVAE+Na+GINE"
_CD, _FOURIER = "CDVAE", "CDVAE+Fourier"
_DP_ALL = (_DP, _NA, _GINE, _NAGINE)
_DS = ("perov_5", "carbon_24", "mp_20")
_REL = 0.30  #: "comparable" for ratios: within 30 % of the reference (the paper calls 0.1921 vs 0.1513 comparable)
_PTS = 2.0  #: "comparable" / "similar" for rates: within 2 percentage points


def _vs(table: str, metric: str, dataset: str, models: Iterable[str], other: str, relation: str, bound=(),
        relative: bool = False) -> tuple:
    return tuple(Comparison(Ref(table, dataset, m, metric), Ref(table, dataset, other, metric), relation,
                            tuple(bound), relative) for m in models)


def _check(cid: str, dataset: str, text: str, *comparisons) -> Check:
    flat: list = []
    for c in comparisons:
        flat.extend(c if isinstance(c, tuple) else (c,))
    return Check(cid, dataset, text, tuple(flat))


def _per_dataset(cid: str, datasets: Sequence[str], text: str, build: Callable[[str], tuple]) -> tuple:
    return tuple(_check(f"{cid}{'abc'[i]}", ds, f"{DATASET_LABEL[ds]}: {text}", build(ds))
                 for i, ds in enumerate(datasets))


CLAIMS: tuple[Claim, ...] = (
    Claim("1", "the additional encoding of N_a into the model leads to improved match rates for all datasets, "
               "with an increase of 2-5%", (60,),
          _per_dataset("1", _DS, "match rate (Table I), DP-CDVAE+Na minus DP-CDVAE between +2 and +5 points "
                                 "(rounded: 1.5 to 5.5)",
                       lambda ds: _vs("I", "match_rate", ds, [_NA], _DP, "range", (1.5, 5.5)))),
    Claim("2", "in terms of <delta_rms>, only the Perov-5 dataset shows an improvement, with a value of 0.0149. "
               "On the other hand, for the Carbon-24 and MP-20 datasets, the <delta_rms> values are higher "
               "compared to the DP-CDVAE model", (60,),
          (_check("2a", "perov_5", "Perov-5: <delta_rms> (Table I), DP-CDVAE+Na < DP-CDVAE",
                  _vs("I", "delta_rms", "perov_5", [_NA], _DP, "lt")),)
          + tuple(_check(f"2{x}", ds, f"{DATASET_LABEL[ds]}: <delta_rms> (Table I), DP-CDVAE+Na > DP-CDVAE",
                         _vs("I", "delta_rms", ds, [_NA], _DP, "gt")) for x, ds in (("b", "carbon_24"),
                                                                                    ("c", "mp_20")))),
    Claim("3", "the additional encoding of GINE into the models leads to a substantial drop in match rates "
               "compared to the DP-CDVAE model, particularly for the Perov-5 and Carbon-24 datasets", (62,),
          _per_dataset("3", _DS[:2], "match rate (Table I), DP-CDVAE+GINE and DP-CDVAE+Na+GINE each < DP-CDVAE",
                       lambda ds: _vs("I", "match_rate", ds, [_GINE, _NAGINE], _DP, "lt"))),
    Claim("4", "In contrast, there is a moderate increase in the match rates for the MP-20 dataset", (62,),
          (_check("4a", "mp_20", "MP-20: match rate (Table I), DP-CDVAE+GINE and DP-CDVAE+Na+GINE each > DP-CDVAE",
                  _vs("I", "match_rate", "mp_20", [_GINE, _NAGINE], _DP, "gt")),)),
    Claim("5", "The <delta_rms> values for the Perov-5 and Carbon-24 datasets are comparable to those of the "
               "DP-CDVAE model", (62,),
          _per_dataset("5", _DS[:2], "<delta_rms> (Table I), DP-CDVAE+GINE and DP-CDVAE+Na+GINE each within 30 % "
                                     "of DP-CDVAE's",
                       lambda ds: _vs("I", "delta_rms", ds, [_GINE, _NAGINE], _DP, "comparable", (_REL,), True))),
    Claim("6", "for the MP-20 dataset, the <delta_rms> is noticeably higher in the models with GINE encoder "
               "compared to the DP-CDVAE model", (62, 64),
          (_check("6a", "mp_20", "MP-20: <delta_rms> (Table I), DP-CDVAE+GINE and DP-CDVAE+Na+GINE each > DP-CDVAE",
                  _vs("I", "delta_rms", "mp_20", [_GINE, _NAGINE], _DP, "gt")),)),
    Claim("7", "For the Perov-5 dataset, the DP-CDVAE model achieves a match rate of 90.04% [...] This "
               "performance is slightly lower than the CDVAE model", (51,),
          (_check("7a", "perov_5", "Perov-5: match rate (Table I), DP-CDVAE < CDVAE",
                  _vs("I", "match_rate", "perov_5", [_DP], _CD, "lt")),)),
    Claim("8", "the DP-CDVAE model achieves a value of 0.0212, comparable to the FTCP model, but slightly higher "
               "than the CDVAE model", (51, 58),
          (_check("8a", "perov_5", "Perov-5: <delta_rms> (Table I), DP-CDVAE > CDVAE",
                  _vs("I", "delta_rms", "perov_5", [_DP], _CD, "gt")),),
          note="FTCP is quoted by the paper, not implemented here"),
    Claim("9", "The corresponding <delta_rms> values for Carbon-24 and MP-20 are 0.1513 and 0.0383, respectively, "
               "comparable to the CDVAE model", (58,),
          _per_dataset("9", _DS[1:], "<delta_rms> (Table I), DP-CDVAE within 30 % of CDVAE's",
                       lambda ds: _vs("I", "delta_rms", ds, [_DP], _CD, "comparable", (_REL,), True))),
    Claim("10", "the reconstruction performance of the DP-CDVAE model may be slightly lower than the CDVAE model in "
                "terms of match rate", (66,),
          _per_dataset("10", _DS[1:], "match rate (Table I), DP-CDVAE < CDVAE (Perov-5: claim 7)",
                       lambda ds: _vs("I", "match_rate", ds, [_DP], _CD, "lt"))),
    Claim("11", "the final reconstruction performance is considerably improved when we impose the periodic "
                "boundary condition on the fractional coordinate at every time step [Eq. (7)] [...] The model "
                "performance using Eq. (6) is shown in Table S1, whereas the performance using Eq. (7) is shown in "
                "Table I", (179, 185),
          _per_dataset("11", _DS, "match rate, Eq. 7 (Table I) > Eq. 6 (Table S1), each DP-CDVAE model on the "
                                  "same crystals",
                       lambda ds: tuple(Comparison(Ref("I", ds, m, "match_rate"), Ref("S1", ds, m, "match_rate"),
                                                   "gt") for m in _DP_ALL))),
    Claim("12", "the DP-CDVAE model achieves a validity rate of 100% for the Perov-5 dataset and close to 100% for "
                "the Carbon-24 and MP-20 datasets in terms of structure", (85,),
          (_check("12a", "perov_5", "Perov-5: structure validity (Table II) of DP-CDVAE >= 99.5 % (rounds to 100)",
                  Comparison(Ref("II", "perov_5", _DP, "struct_validity"), None, "at_least", (99.5,))),)
          + tuple(_check(f"12{x}", ds, f"{DATASET_LABEL[ds]}: structure validity (Table II) of DP-CDVAE >= 99 % "
                                       "(close to 100)",
                         Comparison(Ref("II", ds, _DP, "struct_validity"), None, "at_least", (99.0,)))
                  for x, ds in (("b", "carbon_24"), ("c", "mp_20")))),
    Claim("13", "The validity rate for composition is comparable to that of the CDVAE model", (85,),
          tuple(_check(f"13{x}", ds, f"{DATASET_LABEL[ds]}: composition validity (Table II), DP-CDVAE within "
                                     "2 points of CDVAE",
                       _vs("II", "comp_validity", ds, [_DP], _CD, "comparable", (_PTS,)))
                for x, ds in (("a", "perov_5"), ("b", "mp_20"))),
          note="Carbon-24 has one element: no composition validity"),
    Claim("14", "The DP-CDVAE model also demonstrates comparable COV-R values to the CDVAE model across all three "
                "datasets", (85,),
          _per_dataset("14", _DS, "COV-R (Table II), DP-CDVAE within 2 points of CDVAE",
                       lambda ds: _vs("II", "cov_r", ds, [_DP], _CD, "comparable", (_PTS,)))),
    Claim("15", "the DP-CDVAE models with N_a and/or GINE encoders exhibit similar Validity and COV-R metrics to "
                "those of the DP-CDVAE model", (85,),
          _per_dataset("15", _DS, "structure validity and COV-R (Table II) of DP-CDVAE+Na, +GINE, +Na+GINE each "
                                  "within 2 points of DP-CDVAE's",
                       lambda ds: _vs("II", "struct_validity", ds, _DP_ALL[1:], _DP, "comparable", (_PTS,))
                       + _vs("II", "cov_r", ds, _DP_ALL[1:], _DP, "comparable", (_PTS,)))),
    Claim("16", "for COV-P, all DP-CDVAE models yield lower values compared to CDVAE", (85,),
          _per_dataset("16", _DS, "COV-P (Table II), each DP-CDVAE model < CDVAE",
                       lambda ds: _vs("II", "cov_p", ds, _DP_ALL, _CD, "lt"))),
    Claim("17", "For the Carbon-24 dataset, our models also exhibit a smaller Wasserstein distance for rho "
                "compared to the CDVAE model", (87, 101),
          (_check("17a", "carbon_24", "Carbon-24: W1 rho (Table II), each DP-CDVAE model < CDVAE",
                  _vs("II", "w1_density", "carbon_24", _DP_ALL, _CD, "lt")),)),
    Claim("18", "In the case of the MP-20 dataset, the DP-CDVAE models, particularly those with the GINE encoder, "
                "yield substantially smaller Wasserstein distances for rho, E_form, and the number of elements "
                "compared to other models", (87, 101),
          tuple(_check(f"18{x}", "mp_20", f"MP-20: {label} (Table II), each DP-CDVAE model < CDVAE",
                       _vs("II", metric, "mp_20", _DP_ALL, _CD, "lt"))
                for x, metric, label in (("a", "w1_density", "W1 rho"), ("b", "w1_eform", "W1 E_form"),
                                         ("c", "w1_n_elem", "W1 #elem"))),
          note="'other models' read as CDVAE (the G-SchNets are quoted, not implemented here)"),
    Claim("19", "the distribution of the number of elements in the unit cells is relatively similar to that of "
                "the data in the test set, particularly in the results from the models with GINE encoder", (136,),
          tuple(_check(f"19{x}", ds, f"{DATASET_LABEL[ds]}: W1 #elem (Table II), DP-CDVAE+GINE and "
                                     "DP-CDVAE+Na+GINE each < DP-CDVAE",
                       _vs("II", "w1_n_elem", ds, [_GINE, _NAGINE], _DP, "lt"))
                for x, ds in (("a", "perov_5"), ("b", "mp_20")))),
    Claim("20", "In Table III, the DP-CDVAE model achieves the highest match rate and the lowest <delta_rms> and "
                "Delta E_rms", (97,),
          (_check("20a", "carbon_24", "Table III match rate, DP-CDVAE > CDVAE and > CDVAE+Fourier",
                  _vs("III", "match_rate", "carbon_24", [_DP], _CD, "gt"),
                  _vs("III", "match_rate", "carbon_24", [_DP], _FOURIER, "gt")),
           _check("20b", "carbon_24", "Table III <delta_rms>, DP-CDVAE < CDVAE and < CDVAE+Fourier",
                  _vs("III", "delta_rms", "carbon_24", [_DP], _CD, "lt"),
                  _vs("III", "delta_rms", "carbon_24", [_DP], _FOURIER, "lt")),
           _check("20c", "carbon_24", "Table III dE_rms, DP-CDVAE < CDVAE and < CDVAE+Fourier",
                  _vs("III", "dE_rms", "carbon_24", [_DP], _CD, "lt"),
                  _vs("III", "dE_rms", "carbon_24", [_DP], _FOURIER, "lt"))),
          note="ours relax with CHGNet at 10 GPa (DFT not available here)"),
    Claim("21", "Although the CDVAE+Fourier model achieves the lowest Delta V_rms, the DP-CDVAE model demonstrates "
                "the Delta V_rms that is comparable to that of the CDVAE+Fourier model", (97,),
          (_check("21a", "carbon_24", "Table III dV_rms, CDVAE+Fourier < CDVAE and < DP-CDVAE",
                  _vs("III", "dV_rms", "carbon_24", [_FOURIER], _CD, "lt"),
                  _vs("III", "dV_rms", "carbon_24", [_FOURIER], _DP, "lt")),
           _check("21b", "carbon_24", "Table III dV_rms, DP-CDVAE within 30 % of CDVAE+Fourier's",
                  _vs("III", "dV_rms", "carbon_24", [_DP], _FOURIER, "comparable", (_REL,), True))),
          note="ours relax with CHGNet at 10 GPa (DFT not available here)"),
    Claim("22", "The Delta V_rms of the DP-CDVAE model presented in Table III is significantly lower than that of "
                "the original CDVAE. [...] The DP-CDVAE model also demonstrates significantly smaller <delta_rms> "
                "than the original CDVAE", (101, 136),
          (_check("22a", "carbon_24", "Table III dV_rms, DP-CDVAE < CDVAE",
                  _vs("III", "dV_rms", "carbon_24", [_DP], _CD, "lt")),
           _check("22b", "carbon_24", "Table III <delta_rms>, DP-CDVAE < CDVAE",
                  _vs("III", "delta_rms", "carbon_24", [_DP], _CD, "lt"))),
          note="ours relax with CHGNet at 10 GPa (DFT not available here)"),
    Claim("23", "our model achieves the Delta E_rms value of 400.7 meV/atom which is about 68.1 meV/atom lower than "
                "the Delta E_rms of CDVAE", (15, 138),
          (_check("23a", "carbon_24", "Table III dE_rms, DP-CDVAE < CDVAE (the paper: 68.1 meV/atom lower)",
                  _vs("III", "dE_rms", "carbon_24", [_DP], _CD, "lt")),),
          note="the paper's 68.1 meV/atom is a DFT figure; ours relax with CHGNet at 10 GPa (DFT not available "
               "here), so only the sign is checked"),
    Claim("24", "The mode of Delta E of our model is 64 - 128 meV/atom, which is lower than its root-mean-square "
                "value", (138,),
          (_check("24a", "carbon_24", "Fig. S2: DP-CDVAE's dE mode bin lies below its dE_rms (upper bin edge < "
                                      "dE_rms)",
                  Comparison(Ref("III", "carbon_24", _DP, "dE_mode_upper"), Ref("III", "carbon_24", _DP, "dE_rms"),
                             "lt")),),
          note="ours relax with CHGNet at 10 GPa (DFT not available here)"),
)


# ================================================================================================================
# our numbers
# ================================================================================================================
@dataclass
class Measure:
    """One number of ours: ``value`` (the metric's unit), ``n`` (the count a rate is over: crystals, generated
    samples, test crystals for COV-R; ``None`` unknown), where it comes from (``source``, ``protocol``), ``items``
    (per-item values for a paired SE or a bootstrap: ``{"id", "matched", "rms"}`` per crystal, or ``{"dV", "dE"}``
    per relaxed structure), ``samples`` (generated crystals behind a Table II figure: COV-R depends on it),
    ``synthetic`` (measured on the SYNTHETIC demo data) and ``note`` (shown with it)."""

    value: Optional[float]
    n: Optional[int] = None
    source: str = ""
    protocol: str = ""
    items: Optional[dict] = None
    samples: Optional[int] = None
    synthetic: bool = False
    note: str = ""

    def rank(self) -> tuple:
        return (self.n or 0, self.items is not None)


class Figures:
    """Our numbers by ``(table, dataset, model, metric)`` (:class:`Measure`), the better of two kept (more crystals,
    then per-crystal records); numbers measured only on SYNTHETIC data, or given as text ("unavailable: ..."), are
    kept apart to say why a claim is not measured. ``sources``: what was read (lines)."""

    def __init__(self):
        self.measures: dict[tuple, Measure] = {}
        self.synthetic: dict[tuple, Measure] = {}
        self.unavailable: dict[tuple, str] = {}
        self.sources: list[str] = []

    def add(self, table: str, dataset: str, model: str, metric: str, measure: Measure) -> None:
        key = (table, dataset, model, metric)
        v = measure.value
        if isinstance(v, str):
            self.unavailable.setdefault(key, v)
            return
        if v is None or not math.isfinite(float(v)):
            return
        measure.value = float(v)
        if measure.synthetic:
            self.synthetic.setdefault(key, measure)
            return
        old = self.measures.get(key)
        if old is None or measure.rank() > old.rank():
            self.measures[key] = measure

    def get(self, ref: Ref) -> Optional[Measure]:
        return self.measures.get((ref.table, ref.dataset, ref.model, ref.metric))

    def merge(self, other: "Figures") -> "Figures":
        for key, m in other.measures.items():
            self.add(*key, m)
        for key, m in other.synthetic.items():
            self.synthetic.setdefault(key, m)
        for key, t in other.unavailable.items():
            self.unavailable.setdefault(key, t)
        self.sources.extend(other.sources)
        return self

    def __len__(self) -> int:
        return len(self.measures)


def _weights_dir() -> Path:
    return Path(__file__).resolve().parents[1] / "weights"


def shipped_models(weights_dir=None) -> dict[str, dict]:
    """The shipped models' cards (``dpcdvae/weights/<name>.json`` with its ``<name>.pt``), read as JSON (no torch):
    ``{name: card}``."""
    d = Path(weights_dir) if weights_dir is not None else _weights_dir()
    out = {}
    for p in sorted(d.glob("*.json")):
        if p.with_suffix(".pt").is_file():
            card = json.loads(p.read_text())
            card.setdefault("name", p.stem)
            out[p.stem] = card
    return out


def paper_model_of(card: dict) -> Optional[str]:
    """The paper model a shipped model is: its card's ``paper_model``, else from its name (``<dataset><suffix>`` of
    :data:`MODEL_SUFFIX`); ``None`` when neither says."""
    if card.get("paper_model"):
        from .reference import canonical_model

        return canonical_model(card["paper_model"])
    dataset, name = card.get("dataset") or "", card.get("name") or ""
    if not dataset or not name.startswith(dataset):
        return None
    suffix = name[len(dataset):]
    return next((m for m, s in MODEL_SUFFIX.items() if s == suffix), None)


def shipped_for(cards: dict[str, dict]) -> dict[tuple[str, str], str]:
    """``(dataset, paper model) -> shipped name`` (the first in name order when several are the same model)."""
    out: dict[tuple[str, str], str] = {}
    for name, card in cards.items():
        model = paper_model_of({**card, "name": name})
        if model and card.get("dataset"):
            out.setdefault((card["dataset"], model), name)
    return out


def _per_crystal_items(saved: dict) -> Optional[dict]:
    pc = saved.get("per_crystal")
    if not isinstance(pc, dict) or not pc.get("id") or len(pc.get("matched") or []) != len(pc["id"]):
        return None
    rms = pc.get("rms") or [None] * len(pc["id"])
    return {"id": [str(i) for i in pc["id"]], "matched": [bool(x) for x in pc["matched"]], "rms": list(rms)}


_PROTOCOL_KEYS = ("checkpoint", "sampler", "samplers", "steps", "n_test", "n_generate", "n_property_samples",
                  "calculator", "pressure_gpa", "max_steps", "fmax", "seed")


def figures_from_reports(reports) -> Figures:
    """Our numbers from the runs of ``dpcdvae reproduce --paper`` into ``reports``: each ``paper_runs/<job>.json``
    that ended ``ok`` gives the metrics its notebook saved for each of its rows (per-crystal records for Tables I /
    S1, per-structure dV / dE for Table III). A folder without runs gives none."""
    from .reference import TABLE_METRICS

    figs = Figures()
    folder = Path(reports) / "paper_runs"
    records = sorted(folder.glob("*.json")) if folder.is_dir() else []
    used = 0
    for p in records:
        try:
            rec = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        if not rec.get("ok"):
            continue
        used += 1
        params = rec.get("parameters") or {}
        protocol = f"notebook {rec.get('notebook')}: " + ", ".join(
            f"{k}={params[k]}" for k in _PROTOCOL_KEYS if params.get(k) is not None)
        source = f"`dpcdvae reproduce --paper` job {rec.get('stem', p.stem)} ({p})"
        metrics = rec.get("metrics") or {}
        for row in rec.get("rows") or []:
            table, dataset, model = (str(x) for x in row)
            saved = metrics.get(table)
            if not isinstance(saved, dict):
                continue
            ours = saved.get("ours") or {}
            details: dict = {}
            if table == "III":
                ours = ours.get(model) or {}
                details = (saved.get("per_structure") or {}).get(model) or {}
            if not isinstance(ours, dict):
                continue
            synthetic = bool(saved.get("synthetic") or ours.get("synthetic"))
            n = ours.get("n")
            items = _per_crystal_items(saved) if table in ("I", "S1") else (
                {k: list(details[k]) for k in ("dV", "dE") if isinstance(details.get(k), list)} or None)
            note = ""
            if table == "III":
                calc = str(saved.get("calculator") or "chgnet")
                note = f"{'CHGNet' if calc.lower() == 'chgnet' else calc} relaxations (not DFT)"
            for metric in TABLE_METRICS[table]:
                count = saved.get("n_test") if metric == "cov_r" else n
                figs.add(table, dataset, model, metric, Measure(
                    ours.get(metric), n=count, source=source, protocol=protocol,
                    items=items if metric in ("match_rate",) + tuple(ITEM_METRICS) else None,
                    samples=n if table == "II" else None, synthetic=synthetic, note=note))
            mode = details.get("dE_mode_bin") if table == "III" else None
            if isinstance(mode, (list, tuple)) and len(mode) == 2:
                figs.add(table, dataset, model, "dE_mode_upper", Measure(
                    mode[1], n=n, source=source, protocol=protocol, synthetic=synthetic, note=note))
    figs.sources.append(f"{used} `dpcdvae reproduce --paper` job record(s) in {folder}")
    return figs


_RECON_KEY = re.compile(r"recon_?(full|\d+)_(eq7|eq6|l\d+)")
_GEN_KEY = re.compile(r"gen(\d+)_(struct|comp)")
#: Table II figures in a card's protocol text: metric -> pattern of its number
_TABLE2_TEXT = {
    "struct_validity": r"\bstructure\s+([-\d.]+)\s*%",
    "comp_validity": r"\bcomposition\s+([-\d.]+)\s*%",
    "cov_r": r"\bCOV-R\s+([-\d.]+)\s*%",
    "cov_p": r"\bCOV-P\s+([-\d.]+)\s*%",
    "w1_density": r"\bW1 rho\s+([-\d.]+)",
    "w1_eform": r"\bW1 E_form\s+([-\d.]+)",
    "w1_n_elem": r"\bW1 #elem\s+([-\d.]+)",
}


def _count(pattern: str, text: str) -> Optional[int]:
    m = re.search(pattern, text)
    return int(m.group(1).replace(",", "")) if m else None


def _card_measures(name: str, model: str, entry: dict) -> list[tuple[str, str, Measure]]:
    """``(table, metric, Measure)`` of one entry of a card's ``metrics`` (see the module docstring)."""
    key = str(entry.get("key") or "")
    source = f"card {name}: {key}" if key else f"card {name}"
    protocol = str(entry.get("protocol") or "")
    what = str(entry.get("what") or "")
    n = entry.get("n")
    out = []
    if entry.get("table") and isinstance(entry.get("values"), dict):
        from .reference import canonical_table

        t = canonical_table(entry["table"])
        for metric, v in entry["values"].items():
            out.append((t, metric, Measure(v, n=n, source=source, protocol=protocol)))
        return out
    m = _RECON_KEY.fullmatch(key)
    if m:
        how = m.group(2)
        table = {"eq7": "I", "eq6": "S1"}.get(how, "I" if model in LANGEVIN_MODELS else None)
        if table is None:
            return out
        out.append((table, "match_rate", Measure(entry.get("value"), n=n, source=source, protocol=protocol)))
        out.append((table, "delta_rms", Measure(entry.get("delta_rms"), n=n, source=source, protocol=protocol)))
        return out
    m = _GEN_KEY.fullmatch(key)
    if m:
        metric = "struct_validity" if m.group(2) == "struct" else "comp_validity"
        count = int(m.group(1))
        out.append(("II", metric, Measure(entry.get("value"), n=count, source=source, protocol=protocol,
                                          samples=count)))
        return out
    if key.startswith("table2"):
        n_gen = _count(r"(\d[\d,]*) generated", what) or _count(r"(\d[\d,]*) generated", protocol)
        n_test = _count(r"(\d[\d,]*) test crystals", what) or _count(r"(\d[\d,]*) test crystals", protocol)
        for metric, pat in _TABLE2_TEXT.items():
            hit = re.search(pat, protocol)
            if hit:
                out.append(("II", metric, Measure(float(hit.group(1)), n=n_test if metric == "cov_r" else n_gen,
                                                  source=source, protocol=protocol, samples=n_gen)))
    return out


def figures_from_cards(weights_dir=None) -> Figures:
    """Our numbers from the shipped models' cards (``metrics`` entries; see the module docstring for which)."""
    figs = Figures()
    cards = shipped_models(weights_dir)
    for name, card in cards.items():
        model = paper_model_of({**card, "name": name})
        dataset = card.get("dataset")
        if not model or not dataset:
            continue
        for entry in card.get("metrics") or []:
            if isinstance(entry, dict):
                for table, metric, measure in _card_measures(name, model, entry):
                    figs.add(table, dataset, model, metric, measure)
    figs.sources.append(f"the cards of {len(cards)} shipped model(s) ({', '.join(cards) or 'none'}) in "
                        f"{Path(weights_dir) if weights_dir is not None else 'dpcdvae/weights'}")
    return figs


def collect_figures(reports=None, weights_dir=None, cards: bool = True) -> Figures:
    """Our numbers: the ``reproduce --paper`` runs in ``reports`` (if given) and the shipped models' cards (unless
    ``cards=False``)."""
    figs = Figures()
    if reports is not None:
        figs.merge(figures_from_reports(reports))
    if cards:
        figs.merge(figures_from_cards(weights_dir))
    return figs


# ================================================================================================================
# uncertainty and verdicts
# ================================================================================================================
def binomial_se(rate: float, n: int) -> float:
    """Standard error (percentage points) of a rate ``rate`` (%) over ``n`` items, with ``p = (k + 1) / (n + 2)``
    (``k = round(rate n / 100)``) so that 0 % and 100 % keep a non-zero SE."""
    k = round(float(rate) * int(n) / 100.0)
    p = (k + 1.0) / (int(n) + 2.0)
    return 100.0 * math.sqrt(p * (1.0 - p) / int(n))


def judge(relation: str, d: float, se: Optional[float] = None, bound: Sequence[float] = ()) -> str:
    """The verdict (:data:`HOLDS`, :data:`FAILS` or :data:`INCONCLUSIVE`) of one comparison whose difference is
    ``d`` (``a - b``; for ``at_least``: ``a - bound[0]``) with standard error ``se`` (``None``: no uncertainty, the
    point estimate decides), by the rules of the module docstring (``Z`` standard errors). ``bound``: ``(lo, hi)``
    for ``range``, ``(tolerance,)`` for ``comparable`` (already absolute)."""
    s = 0.0 if se is None else Z * float(se)
    d = float(d)
    if relation == "lt":
        relation, d = "gt", -d
    if relation in ("gt", "at_least"):
        if (d - s > 0) if relation == "gt" else (d - s >= 0):
            return HOLDS
        if d + s < 0:
            return FAILS
        return INCONCLUSIVE
    if relation == "comparable":
        tol = float(bound[0])
        if abs(d) + s <= tol:
            return HOLDS
        if abs(d) - s > tol:
            return FAILS
        return INCONCLUSIVE
    if relation == "range":
        lo, hi = float(bound[0]), float(bound[1])
        if d + s < lo or d - s > hi:
            return FAILS
        clear = (d - s > 0) if lo > 0 else ((d + s < 0) if hi < 0 else True)
        return HOLDS if lo <= d <= hi and clear else INCONCLUSIVE
    raise ValueError(f"unknown relation {relation!r}")


def _bootstrap_stat(values, stat: str, idx):
    """Statistic over resampled rows ``idx`` [B, n] of ``values``: ``rms`` (root mean square) or ``mean_matched``
    (mean over finite values)."""
    import numpy as np

    v = np.asarray(values, dtype=float)[idx]
    finite = np.isfinite(v)
    cnt = finite.sum(axis=1)
    tot = np.where(finite, v ** 2 if stat == "rms" else v, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = tot / cnt
    return np.sqrt(mean) if stat == "rms" else mean


def _bootstrap_se(a_vals, b_vals, stat: str, paired: bool) -> Optional[float]:
    """SE of ``stat(a) - stat(b)`` (``b_vals`` None: of ``stat(a)``) from :data:`BOOTSTRAP` resamples (seed 0);
    ``paired``: the same rows drawn on both sides."""
    import numpy as np

    rng = np.random.default_rng(0)
    na = len(a_vals)
    if na < 2:
        return None
    ia = rng.integers(0, na, size=(BOOTSTRAP, na))
    ra = _bootstrap_stat(a_vals, stat, ia)
    if b_vals is None:
        rb = 0.0
    else:
        nb = len(b_vals)
        if nb < 2:
            return None
        ib = ia if paired else rng.integers(0, nb, size=(BOOTSTRAP, nb))
        rb = _bootstrap_stat(b_vals, stat, ib)
    diff = np.asarray(ra - rb, dtype=float)
    diff = diff[np.isfinite(diff)]
    return float(diff.std(ddof=1)) if diff.size > 1 else None


def _rms_values(items: dict) -> list:
    return [float("nan") if (r is None or not m) else float(r) for r, m in zip(items["rms"], items["matched"])]


def _uncertainty(cmp: Comparison, ma: Measure, mb: Optional[Measure]) -> dict:
    """``{"d", "se", "method", "note"}`` for one measured comparison (``d``: ``a - b``, or ``a`` alone against a
    threshold before the threshold is taken off)."""
    metric = cmp.a.metric
    d = ma.value - (mb.value if mb is not None else 0.0)
    out = {"d": d, "se": None, "method": "no uncertainty available", "note": ""}
    a_items, b_items = ma.items, (mb.items if mb is not None else None)
    paired_ids = (a_items and b_items and "id" in a_items and "id" in b_items)
    if metric in RATE_METRICS:
        if metric == "match_rate" and paired_ids:
            from .compare import paired_difference

            pos_b = {i: k for k, i in enumerate(b_items["id"])}
            common = [(k, pos_b[i]) for k, i in enumerate(a_items["id"]) if i in pos_b]
            if common:
                res = paired_difference([a_items["matched"][k] for k, _ in common],
                                        [b_items["matched"][j] for _, j in common])
                out.update(d=res["diff_points"], se=res["se_points"],
                           method=f"paired SE over {res['n']} common crystals")
                if res["n"] != ma.n or res["n"] != mb.n:
                    out["note"] = f"difference over the {res['n']} crystals both reconstructed"
                return out
        if mb is None:
            if ma.n:
                out.update(se=binomial_se(ma.value, ma.n), method=f"binomial SE (n {ma.n})")
            else:
                out["method"] = "no uncertainty available (count unknown)"
            return out
        if ma.n and mb.n:
            same = cmp.a.dataset == cmp.b.dataset and cmp.a.table in ("I", "S1") and cmp.b.table in ("I", "S1")
            out.update(se=math.sqrt(binomial_se(ma.value, ma.n) ** 2 + binomial_se(mb.value, mb.n) ** 2),
                       method="unpaired binomial SE" + (" (no per-crystal records)" if same else ""))
        else:
            out["method"] = "no uncertainty available (count unknown)"
        return out
    if metric in ITEM_METRICS:
        key, stat = ITEM_METRICS[metric]
        if metric == "delta_rms" and paired_ids:
            pos_b = {i: k for k, i in enumerate(b_items["id"])}
            common = [(k, pos_b[i]) for k, i in enumerate(a_items["id"]) if i in pos_b]
            va, vb = _rms_values(a_items), _rms_values(b_items)
            va, vb = [va[k] for k, _ in common], [vb[j] for _, j in common]
            se = _bootstrap_se(va, vb, "mean_matched", paired=True)
            if se is not None:
                import warnings

                import numpy as np

                with warnings.catch_warnings():  # a side without a match on the common crystals: NaN
                    warnings.simplefilter("ignore", RuntimeWarning)
                    d = float(np.nanmean(va) - np.nanmean(vb))
                if not math.isfinite(d):
                    return out
                out.update(d=d, se=se, method=f"paired bootstrap SE ({BOOTSTRAP} resamples of {len(common)} "
                                               "common crystals)")
            return out
        if a_items and key in a_items and (mb is None or (b_items and key in b_items)):
            se = _bootstrap_se(a_items[key], None if mb is None else b_items[key], stat, paired=False)
            if se is not None:
                out.update(se=se, method=f"bootstrap SE ({BOOTSTRAP} resamples, independent sets)")
            return out
        out["method"] = "no uncertainty available (no per-crystal values)"
    return out


# ================================================================================================================
# rows
# ================================================================================================================
def _tolerance(cmp: Comparison, b_value: Optional[float]) -> Optional[float]:
    if cmp.relation != "comparable":
        return None
    if cmp.relative:
        return None if b_value is None else abs(float(b_value)) * float(cmp.bound[0])
    return float(cmp.bound[0])


def _verdict_of(cmp: Comparison, d: float, se: Optional[float], b_value: Optional[float]) -> str:
    if cmp.relation == "comparable":
        return judge("comparable", d, se, (_tolerance(cmp, b_value),))
    if cmp.relation == "at_least":
        return judge("at_least", d - float(cmp.bound[0]), se)
    return judge(cmp.relation, d, se, cmp.bound)


def _paper_value(ref: Ref) -> Optional[float]:
    from .reference import FIG_S2_MODE_BINS, REFERENCE

    if ref.metric == "dE_mode_upper":
        b = FIG_S2_MODE_BINS.get(ref.model) if ref.dataset == "carbon_24" else None
        return None if b is None else float(b[1])
    v = REFERENCE.get((ref.table, ref.dataset, ref.model), {}).get(ref.metric)
    return None if v is None else float(v)


def _missing(ref: Ref, figures: Figures, shipped: dict, present: Callable[[str], bool]) -> list[tuple]:
    """Why ``ref`` has no number of ours: ``[(kind, key, detail)]``; kinds: ``data`` (the dataset's data are absent
    here; said alone), ``model`` (no shipped model of that name), ``todo`` (the shipped model's table not measured
    yet; key: (table, dataset)), ``other`` (a sentence)."""
    if not present(ref.dataset):
        return [("data", None, DATASET_LABEL.get(ref.dataset, ref.dataset))]
    name = shipped.get((ref.dataset, ref.model))
    if name is None:
        suffix = MODEL_SUFFIX.get(ref.model)
        return [("model", None, f"{ref.dataset}{suffix}" if suffix is not None else ref.model)]
    key = (ref.table, ref.dataset, ref.model, ref.metric)
    if key in figures.synthetic:
        return [("other", None, f"{name}: Table {ref.table} measured only on the SYNTHETIC demo data (CI)")]
    if key in figures.unavailable:
        return [("other", None, f"{name}: {figures.unavailable[key]}")]
    if ref.table == "I" and ref.model in LANGEVIN_MODELS:
        return [("other", None, f"{name}: no Table I figure (notebook 03 runs the DDPM samplers only; a card "
                                "metric recon<N>_l<steps> gives one)")]
    return [("todo", (ref.table, ref.dataset), name)]


def _reason_text(reasons: Iterable[tuple]) -> str:
    """The reasons in words, grouped: ``MP-20 data absent; no shipped model perov_5_na, perov_5_gine; Table II not
    measured yet for carbon_24 (`dpcdvae reproduce --paper --only II:carbon_24`)``."""
    groups: dict[tuple, list] = {}
    for kind, key, detail in reasons:
        bucket = groups.setdefault((kind, key), [])
        if detail not in bucket:
            bucket.append(detail)
    parts = []
    for (kind, key), details in groups.items():
        if kind == "data":
            parts.append(f"{', '.join(details)} data absent")
        elif kind == "model":
            parts.append(f"no shipped model {', '.join(details)}")
        elif kind == "todo":
            table, dataset = key
            how = f"`dpcdvae reproduce --paper --only {table}:{dataset}`"
            if table == "III":
                how += ": CHGNet at 10 GPa, DFT not available here"
            parts.append(f"Table {table} not measured yet for {', '.join(details)} ({how})")
        else:
            parts.extend(details)
    return "; ".join(parts)


def _compare(cmp: Comparison, figures: Figures, shipped: dict, present: Callable[[str], bool]) -> dict:
    pa, pb = _paper_value(cmp.a), (_paper_value(cmp.b) if cmp.b is not None else None)
    paper = {"a": pa, "b": pb, "d": None, "holds": None}
    if pa is not None and (cmp.b is None or pb is not None):
        pd = pa - (pb or 0.0)
        paper.update(d=pd, holds=_verdict_of(cmp, pd, None, pb))
    out = {"label": cmp.label, "a": jsonable(cmp.a.__dict__), "b": None if cmp.b is None else jsonable(cmp.b.__dict__),
           "relation": cmp.relation, "bound": list(cmp.bound), "relative": cmp.relative, "paper": paper,
           "ours": None, "verdict": NOT_MEASURED, "reasons": []}
    ma = figures.get(cmp.a)
    mb = figures.get(cmp.b) if cmp.b is not None else None
    reasons = [] if ma is not None else _missing(cmp.a, figures, shipped, present)
    if cmp.b is not None and mb is None:
        reasons += [r for r in _missing(cmp.b, figures, shipped, present) if r not in reasons]
    if (not reasons and cmp.a.metric == "cov_r" and mb is not None and ma.samples and mb.samples
            and ma.samples != mb.samples):
        reasons.append(("other", None, f"COV-R measured with different sample counts ({ma.samples} vs "
                                       f"{mb.samples} generated): not comparable"))
    if reasons:
        out["reasons"] = reasons
        return out
    u = _uncertainty(cmp, ma, mb)
    verdict = _verdict_of(cmp, u["d"], u["se"], None if mb is None else mb.value)
    notes = [x for x in (u["note"], ma.note, mb.note if mb is not None else "") if x]
    if (mb is not None and ma.n and mb.n and ma.n != mb.n and cmp.a.table in ("I", "S1")
            and not u["method"].startswith("paired")):
        notes.append("different crystal sets")
    tol = _tolerance(cmp, None if mb is None else mb.value)
    out["ours"] = {"a": ma.value, "b": None if mb is None else mb.value, "n_a": ma.n,
                   "n_b": None if mb is None else mb.n, "d": u["d"], "se": u["se"], "method": u["method"],
                   "tolerance": tol, "notes": list(dict.fromkeys(notes)),
                   "sources": [{"source": m.source, "protocol": m.protocol, "n": m.n, "value": m.value,
                                "ref": jsonable(r.__dict__)}
                               for r, m in ((cmp.a, ma), (cmp.b, mb)) if m is not None]}
    out["verdict"] = verdict
    return out


def claim_rows(figures: Optional[Figures] = None, shipped: Optional[dict] = None,
               present: Optional[Callable[[str], bool]] = None, claims: Sequence[Claim] = CLAIMS,
               weights_dir=None) -> list[dict]:
    """One dict per check of ``claims``: ``claim``, ``quote``, ``lines``, ``note``, ``check``, ``dataset``,
    ``text``, ``comparisons`` (each with the paper's numbers and whether they satisfy the check, ours with ``d``,
    ``se``, ``method``, ``sources``, the comparison's verdict and, when not measured, its ``reasons``),
    ``verdict`` (:data:`HOLDS`, :data:`FAILS`, :data:`INCONCLUSIVE`, :data:`NOT_MEASURED`), ``why`` (the reasons /
    the scope in words) and ``partial`` (some comparisons measured, some not).

    ``figures``: our numbers (default: :func:`collect_figures` of the shipped cards only); ``shipped``:
    ``(dataset, model) -> shipped name`` (default: the cards in ``weights_dir``); ``present``: dataset -> whether
    its test split is on disk (default: the data locator)."""
    if figures is None:
        figures = collect_figures(weights_dir=weights_dir)
    if shipped is None:
        shipped = shipped_for(shipped_models(weights_dir))
    if present is None:
        from ..data.locator import available_splits

        present = lambda ds: "test" in available_splits(ds)  # noqa: E731
    cache: dict[str, bool] = {}

    def present_once(ds: str) -> bool:
        if ds not in cache:
            cache[ds] = bool(present(ds))
        return cache[ds]

    rows = []
    for claim in claims:
        for check in claim.checks:
            cmps = [_compare(c, figures, shipped, present_once) for c in check.comparisons]
            measured = [c for c in cmps if c["verdict"] != NOT_MEASURED]
            missing = [c for c in cmps if c["verdict"] == NOT_MEASURED]
            reasons = _reason_text(r for c in missing for r in c["reasons"])
            if not measured:
                verdict, why = NOT_MEASURED, reasons
            else:
                verdicts = [c["verdict"] for c in measured]
                if FAILS in verdicts:
                    verdict = FAILS
                elif all(v == HOLDS for v in verdicts):
                    verdict = HOLDS
                else:
                    verdict = INCONCLUSIVE
                bits = []
                if verdict == FAILS and len(cmps) > 1:
                    bits.append("for " + ", ".join(c["label"] for c in measured if c["verdict"] == FAILS))
                elif verdict == INCONCLUSIVE:
                    bits.append(f"within {Z:g} SE")
                if any(c["ours"]["se"] is None for c in measured):
                    bits.append("on point estimates: no uncertainty available")
                why = ", ".join(bits)
                if missing:
                    scope = (f"measured for {', '.join(c['label'] for c in measured)}; not measured for "
                             f"{', '.join(c['label'] for c in missing)} ({reasons})")
                    why = f"{why}; {scope}" if why else scope
            paper_bad = [c for c in cmps if c["paper"]["holds"] not in (None, HOLDS)]
            rows.append({"claim": claim.id, "quote": claim.quote, "lines": list(claim.lines), "note": claim.note,
                         "check": check.id, "dataset": check.dataset, "text": check.text, "comparisons": cmps,
                         "verdict": verdict, "why": why, "partial": bool(measured and missing),
                         "paper_disagrees": [c["label"] for c in paper_bad]})
    return rows


def verdict_counts(rows: Sequence[dict]) -> dict[str, int]:
    """How many checks got each verdict."""
    out = {v: 0 for v in (HOLDS, FAILS, INCONCLUSIVE, NOT_MEASURED)}
    for r in rows:
        out[r["verdict"]] += 1
    return out


# ================================================================================================================
# rendering
# ================================================================================================================
def _unit(metric: str) -> str:
    from .reference import METRIC_INFO

    return (METRIC_INFO.get(metric) or EXTRA_METRICS.get(metric) or {}).get("unit", "")


def _fmt(v: Optional[float], metric: str, sign: bool = False) -> str:
    if v is None:
        return "-"
    if metric in RATE_METRICS:
        spec = ".2f"
    elif metric in ("dE_rms", "dE_mode_upper"):
        spec = ".1f"
    else:
        spec = ".4f"
    return format(float(v), ("+" if sign else "") + spec)


def _pair_text(a: Optional[float], b: Optional[float], d: Optional[float], metric: str) -> str:
    if b is None:
        return _fmt(a, metric)
    return f"{_fmt(a, metric)} vs {_fmt(b, metric)} ({_fmt(d, metric, sign=True)})"


class _Notes:
    """Footnote numbers of the measurements a table cites (one per source and number)."""

    def __init__(self):
        self.items: dict[tuple, int] = {}
        self.text: list[str] = []

    def ref(self, src: dict) -> int:
        r = src["ref"]
        key = (r["table"], r["dataset"], r["model"], r["metric"], src["source"])
        if key not in self.items:
            self.items[key] = len(self.items) + 1
            unit = _unit(r["metric"])
            n = f" over {src['n']}" if src.get("n") else ""
            proto = f"; {src['protocol']}" if src.get("protocol") else ""
            self.text.append(f"[{self.items[key]}] Table {r['table']}, {DATASET_LABEL.get(r['dataset'], r['dataset'])}"
                             f", {r['model']}, {r['metric']} = {_fmt(src['value'], r['metric'])}"
                             f"{(' ' + unit) if unit else ''}{n}: {src['source']}{proto}")
        return self.items[key]


def _cells(row: dict, notes: _Notes) -> dict:
    """The text of one row's cells: paper, ours, difference, verdict."""
    many = len(row["comparisons"]) > 1
    paper, ours, diff = [], [], []
    for c in row["comparisons"]:
        metric = c["a"]["metric"]
        label = f"{c['label']}: " if many else ""
        p = c["paper"]
        threshold = c["bound"][0] if c["relation"] == "at_least" else None
        ptxt = _pair_text(p["a"], p["b"], p["d"], metric) if p["a"] is not None else "-"
        if p["holds"] not in (None, HOLDS):
            ptxt += f" [the paper's own numbers: {p['holds']}]"
        paper.append(label + ptxt)
        o = c["ours"]
        if o is None:
            continue
        refs = "".join(f"[{notes.ref(s)}]" for s in o["sources"])
        otxt = _pair_text(o["a"], o["b"], o["a"] - (o["b"] or 0.0), metric) + f" {refs}"
        n = [x for x in (o["n_a"], o["n_b"]) if x]
        if n:
            otxt += f" (n {' / '.join(str(x) for x in n)})"
        if o["notes"]:
            otxt += f"; {'; '.join(o['notes'])}"
        ours.append(label + otxt)
        se = "" if o["se"] is None else f" +- {_fmt(o['se'], metric)}"
        tol = "" if o["tolerance"] is None else f", tolerance {_fmt(o['tolerance'], metric)}"
        dval = o["d"] - (threshold or 0.0) if threshold is not None else o["d"]
        what = f"{'value - ' + format(threshold, 'g') + ': ' if threshold is not None else ''}"
        diff.append(f"{label}{what}{_fmt(dval, metric, sign=True)}{se} ({o['method']}{tol}) -> {c['verdict']}")
    why = row["why"]
    verdict = row["verdict"] + ((f": {why}" if row["verdict"] == NOT_MEASURED else f" ({why})") if why else "")
    return {"paper": "; ".join(paper) or "-", "ours": "; ".join(ours) or "-", "diff": "; ".join(diff) or "-",
            "verdict": verdict}


_HEAD = ("#", "claim (paper's words, line)", "check", "paper", "ours", "difference +- SE", "verdict")


def _claim_cell(row: dict, first: bool) -> str:
    if not first:
        return ""
    lines = ", ".join(str(x) for x in row["lines"])
    text = f"\"{row['quote']}\" (l. {lines})"
    return text + (f" [{row['note']}]" if row["note"] else "")


def _intro(rows: Sequence[dict], sources: Sequence[str]) -> str:
    c = verdict_counts(rows)
    return (f"{len(rows)} checks of {len({r['claim'] for r in rows})} claims of the paper's text: "
            f"{c[HOLDS]} hold, {c[FAILS]} do not hold, {c[INCONCLUSIVE]} inconclusive (within {Z:g} standard "
            f"errors), {c[NOT_MEASURED]} not measured. A difference is ours_a - ours_b in the metric's unit "
            "(percentage points for rates); SE: paired over the same crystals where both sides have per-crystal "
            "records, else unpaired binomial or bootstrap, or none. Our numbers: "
            + ("; ".join(sources) if sources else "none") + ". Rules: dpcdvae/eval/claims.py.")


def _escape_md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(rows: Sequence[dict], sources: Sequence[str] = (), heading: Optional[str] = None) -> str:
    """The claims table as Markdown (one row per check, the claim's words on its first row), a line of verdict
    counts above it and the numbered sources of our numbers below it. ``heading``: a ``## ...`` line to start
    with (none by default)."""
    notes = _Notes()
    lines = ([heading, ""] if heading else []) + [_intro(rows, sources), "",
                                                  "| " + " | ".join(_HEAD) + " |", "|" + "---|" * len(_HEAD)]
    last = None
    for r in rows:
        cells = _cells(r, notes)
        lines.append("| " + " | ".join(_escape_md(x) for x in (
            r["check"], _claim_cell(r, r["claim"] != last), r["text"], cells["paper"], cells["ours"], cells["diff"],
            cells["verdict"])) + " |")
        last = r["claim"]
    if notes.text:
        lines += ["", "Sources of our numbers:", ""] + [f"- {t}" for t in notes.text]
    return "\n".join(lines) + "\n"


_VERDICT_COLOUR = {HOLDS: "#dff0d8", FAILS: "#f2dede", INCONCLUSIVE: "#fcf8e3", NOT_MEASURED: "#f5f5f5"}


def render_html(rows: Sequence[dict], sources: Sequence[str] = ()) -> str:
    """The claims table as an HTML fragment (``<p>`` intro, ``<table class="claims">``, sources list): what the
    summary page of ``reproduce --paper`` embeds."""
    e = _html.escape
    notes = _Notes()
    trs = ["<tr>" + "".join(f"<th>{e(h)}</th>" for h in _HEAD) + "</tr>"]
    last = None
    for r in rows:
        cells = _cells(r, notes)
        colour = _VERDICT_COLOUR[r["verdict"]]
        tds = [r["check"], _claim_cell(r, r["claim"] != last), r["text"], cells["paper"], cells["ours"], cells["diff"]]
        trs.append("<tr>" + "".join(f"<td>{e(x)}</td>" for x in tds)
                   + f"<td style=\"background:{colour}\">{e(cells['verdict'])}</td></tr>")
        last = r["claim"]
    src = "".join(f"<li>{e(t)}</li>" for t in notes.text)
    return (f"<p>{e(_intro(rows, sources))}</p><table class=\"claims\">{''.join(trs)}</table>"
            + (f"<p>Sources of our numbers:</p><ul>{src}</ul>" if src else ""))


FORMATS = ("markdown", "html", "json")


def claims_report(reports="docs/reports", fmt: str = "markdown", weights_dir=None,
                  present: Optional[Callable[[str], bool]] = None, heading: Optional[str] = None) -> str:
    """The claims table from the ``reproduce --paper`` runs in ``reports`` (a folder without runs: none) and the
    shipped models' cards, as ``fmt`` (``markdown``, ``html`` fragment or ``json``: ``{"rows", "counts",
    "sources"}``). ``fmt`` not one of :data:`FORMATS` is an :class:`~dpcdvae.utils.errors.ArgumentError`."""
    if fmt not in FORMATS:
        raise ArgumentError("fmt", f"{fmt}: must be one of {', '.join(FORMATS)}")
    figs = collect_figures(reports, weights_dir)
    rows = claim_rows(figs, present=present, weights_dir=weights_dir)
    if fmt == "json":
        return strict_json_dumps({"rows": rows, "counts": verdict_counts(rows), "sources": figs.sources}, indent=1)
    if fmt == "html":
        return render_html(rows, figs.sources)
    return render_markdown(rows, figs.sources, heading=heading)
