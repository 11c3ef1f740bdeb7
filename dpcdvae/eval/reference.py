"""The DP-CDVAE paper's published numbers (Tables I, S1, II and III), transcribed as plain dicts.

Source: Pakornchote et al., "Diffusion probabilistic models enhance variational autoencoder for crystal structure
generative modeling" (2023). Rows marked with the reference ``[8]`` in the paper (FTCP, G-SchNet, P-G-SchNet,
CDVAE in Tables I and II) are the paper quoting Xie et al. (CDVAE, ref. [8]); their ``SOURCE`` entry says so.

Layout
------
``REFERENCE[(table, dataset, model)] -> {metric: value}``

* ``table``: ``"I"`` (reconstruction, Eq. 7 sampler), ``"S1"`` (reconstruction, Eq. 6 sampler), ``"II"``
  (generation), ``"III"`` (ground state, Carbon-24 only).
* ``dataset``: ``"perov_5"``, ``"carbon_24"``, ``"mp_20"``.
* ``model``: ``"FTCP"``, ``"G-SchNet"``, ``"P-G-SchNet"``, ``"CDVAE"``, ``"CDVAE+Fourier"``, ``"DP-CDVAE"``,
  ``"DP-CDVAE+Na"``, ``"DP-CDVAE+GINE"``, ``"DP-CDVAE+Na+GINE"``.
* ``value``: a float, or ``None`` where the paper prints a dash (composition validity and number of elements for
  the single-element Carbon-24).

Metric keys and units (the same keys the metric functions of :mod:`dpcdvae.eval` return):

====================  =====================================================  ==============
key                   meaning                                                unit
====================  =====================================================  ==============
match_rate            StructureMatcher match rate                            % (0-100)
delta_rms             mean normalised RMS displacement over matches          dimensionless
struct_validity       structure validity                                     %
comp_validity         composition (SMACT) validity                           %
cov_r, cov_p          coverage recall / precision                            %
w1_density            Wasserstein-1 distance of density                      g/cm^3
w1_eform              Wasserstein-1 distance of predicted E_form             eV/atom
w1_n_elem             Wasserstein-1 distance of the number of elements       elements
dV_rms                RMS volume change on relaxation                        A^3/atom
dE_rms                RMS energy change on relaxation                        meV/atom
====================  =====================================================  ==============
"""
from __future__ import annotations

from ..data.registry import benchmark_datasets, get_spec
from ..utils.errors import UnknownDatasetError

CITATION = (
    'Pakornchote et al., "Diffusion probabilistic models enhance variational autoencoder for crystal structure '
    'generative modeling" (2023)'
)
QUOTED_FROM_CDVAE = "quoted from [8] via DP-CDVAE paper"
OWN_ROW = "DP-CDVAE paper"

#: The paper's datasets, in its tables' column order (from :mod:`dpcdvae.data.registry`).
DATASETS = benchmark_datasets()
TABLES = ("I", "S1", "II", "III")

#: metric keys per table, in the paper's column order
TABLE_METRICS: dict[str, tuple[str, ...]] = {
    "I": ("match_rate", "delta_rms"),
    "S1": ("match_rate", "delta_rms"),
    "II": ("struct_validity", "comp_validity", "cov_r", "cov_p", "w1_density", "w1_eform", "w1_n_elem"),
    "III": ("match_rate", "delta_rms", "dV_rms", "dE_rms"),
}

#: human-readable label, unit and the better direction ("up" / "down") of every metric key
METRIC_INFO: dict[str, dict[str, str]] = {
    "match_rate": {"label": "Match rate", "unit": "%", "better": "up"},
    "delta_rms": {"label": "<delta_rms>", "unit": "", "better": "down"},
    "struct_validity": {"label": "Valid. struc.", "unit": "%", "better": "up"},
    "comp_validity": {"label": "Valid. comp.", "unit": "%", "better": "up"},
    "cov_r": {"label": "COV-R", "unit": "%", "better": "up"},
    "cov_p": {"label": "COV-P", "unit": "%", "better": "up"},
    "w1_density": {"label": "W1 rho", "unit": "g/cm^3", "better": "down"},
    "w1_eform": {"label": "W1 E_form", "unit": "eV/atom", "better": "down"},
    "w1_n_elem": {"label": "W1 #elem", "unit": "", "better": "down"},
    "dV_rms": {"label": "dV_rms", "unit": "A^3/atom", "better": "down"},
    "dE_rms": {"label": "dE_rms", "unit": "meV/atom", "better": "down"},
}

_MODEL_ALIASES = {
    "dp-cdvae+n_a": "DP-CDVAE+Na",
    "dp-cdvae+na": "DP-CDVAE+Na",
    "dp-cdvae+gine": "DP-CDVAE+GINE",
    "dp-cdvae+n_a+gine": "DP-CDVAE+Na+GINE",
    "dp-cdvae+na+gine": "DP-CDVAE+Na+GINE",
    "dp-cdvae": "DP-CDVAE",
    "cdvae": "CDVAE",
    "cdvae+fourier": "CDVAE+Fourier",
    "ftcp": "FTCP",
    "g-schnet": "G-SchNet",
    "p-g-schnet": "P-G-SchNet",
}

def canonical_dataset(name: str) -> str:
    """Normalise the name of one of the paper's datasets (``"Perov-5"``, ``"perovskite"``, ``"perov_5"`` ...) to
    ``perov_5`` style (aliases: :mod:`dpcdvae.data.registry`). Any other name, the synthetic demo included, raises
    :class:`~dpcdvae.utils.errors.UnknownDatasetError` (a ``KeyError``)."""
    spec = get_spec(name)
    if spec.name not in DATASETS:
        raise UnknownDatasetError(f"dataset {name!r} has no numbers in the paper's tables; known: "
                                  f"{', '.join(DATASETS)}")
    return spec.name


def canonical_model(name: str) -> str:
    """Normalise a model name (``"DP-CDVAE+N_a"`` -> ``"DP-CDVAE+Na"``); unknown names are returned unchanged."""
    return _MODEL_ALIASES.get(str(name).strip().lower().replace(" ", ""), str(name))


def canonical_table(table: str) -> str:
    t = str(table).strip().upper().removeprefix("TABLE").strip()
    if t not in TABLES:
        raise KeyError(f"unknown table {table!r}; known: {', '.join(TABLES)}")
    return t


REFERENCE: dict[tuple[str, str, str], dict[str, float | None]] = {}
SOURCE: dict[tuple[str, str, str], str] = {}


def _add(table: str, model: str, source: str, per_dataset: dict[str, dict[str, float | None]]) -> None:
    for dataset, values in per_dataset.items():
        REFERENCE[(table, dataset, model)] = dict(values)
        SOURCE[(table, dataset, model)] = source


def _recon_rows(table: str, rows: list[tuple[str, str, tuple[float, float, float], tuple[float, float, float]]]):
    for model, source, match, rms in rows:
        _add(table, model, source, {
            ds: {"match_rate": m, "delta_rms": r} for ds, m, r in zip(DATASETS, match, rms)
        })


# --- Table I: reconstruction (Eq. 7 sampler). Columns: match rate (%) Perov-5, Carbon-24, MP-20; <delta_rms> ditto.
_recon_rows("I", [
    ("FTCP", QUOTED_FROM_CDVAE, (99.34, 62.28, 69.89), (0.0259, 0.2563, 0.1593)),
    ("CDVAE", QUOTED_FROM_CDVAE, (97.52, 55.22, 45.43), (0.0156, 0.1251, 0.0356)),
    ("DP-CDVAE", OWN_ROW, (90.04, 45.57, 32.42), (0.0212, 0.1513, 0.0383)),
    ("DP-CDVAE+Na", OWN_ROW, (91.86, 50.99, 36.17), (0.0149, 0.1612, 0.0560)),
    ("DP-CDVAE+GINE", OWN_ROW, (80.50, 49.02, 34.08), (0.0214, 0.1599, 0.0455)),
    ("DP-CDVAE+Na+GINE", OWN_ROW, (88.30, 38.28, 37.44), (0.0180, 0.1921, 0.0525)),
])

# --- Table S1: reconstruction with the Eq. 6 (standard DDPM) sampler.
_recon_rows("S1", [
    ("DP-CDVAE", OWN_ROW, (68.72, 35.86, 20.40), (0.0177, 0.2573, 0.0715)),
    ("DP-CDVAE+Na", OWN_ROW, (67.56, 38.13, 21.71), (0.0222, 0.2719, 0.0774)),
    ("DP-CDVAE+GINE", OWN_ROW, (49.56, 35.27, 19.98), (0.0822, 0.2683, 0.0620)),
    ("DP-CDVAE+Na+GINE", OWN_ROW, (64.12, 34.68, 24.43), (0.0250, 0.3212, 0.0697)),
])

# --- Table II: generation. Columns: validity struc., comp. (%); COV-R, COV-P (%); W1 rho, E_form, # elem.
_T2_KEYS = TABLE_METRICS["II"]
_T2 = {
    "perov_5": [
        ("G-SchNet", QUOTED_FROM_CDVAE, (99.92, 98.79, 0.18, 0.23, 1.625, 4.746, 0.0368)),
        ("P-G-SchNet", QUOTED_FROM_CDVAE, (79.63, 99.13, 0.37, 0.25, 0.2755, 1.388, 0.4552)),
        ("CDVAE", QUOTED_FROM_CDVAE, (100.0, 98.59, 99.45, 98.46, 0.1258, 0.0264, 0.0628)),
        ("DP-CDVAE", OWN_ROW, (100.0, 98.07, 99.52, 98.39, 0.1807, 0.0713, 0.0767)),
        ("DP-CDVAE+Na", OWN_ROW, (99.99, 97.34, 99.55, 97.22, 0.1027, 0.0287, 0.0437)),
        ("DP-CDVAE+GINE", OWN_ROW, (100.0, 96.11, 98.94, 95.63, 0.2114, 0.0832, 0.0498)),
        ("DP-CDVAE+Na+GINE", OWN_ROW, (100.0, 97.09, 99.52, 96.73, 0.1368, 0.0425, 0.0210)),
    ],
    "carbon_24": [
        ("G-SchNet", QUOTED_FROM_CDVAE, (99.94, None, 0.00, 0.00, 0.9427, 1.320, None)),
        ("P-G-SchNet", QUOTED_FROM_CDVAE, (48.39, None, 0.00, 0.00, 1.533, 134.7, None)),
        ("CDVAE", QUOTED_FROM_CDVAE, (100.0, None, 99.80, 83.08, 0.1407, 0.2850, None)),
        ("DP-CDVAE", OWN_ROW, (99.92, None, 99.56, 77.98, 0.1109, 0.2596, None)),
        ("DP-CDVAE+Na", OWN_ROW, (99.73, None, 99.61, 72.29, 0.1080, 0.3030, None)),
        ("DP-CDVAE+GINE", OWN_ROW, (99.50, None, 100.0, 68.13, 0.0977, 0.3623, None)),
        ("DP-CDVAE+Na+GINE", OWN_ROW, (98.61, None, 99.21, 65.13, 0.1267, 0.4136, None)),
    ],
    "mp_20": [
        ("G-SchNet", QUOTED_FROM_CDVAE, (99.65, 75.96, 38.33, 99.57, 3.034, 42.09, 0.6411)),
        ("P-G-SchNet", QUOTED_FROM_CDVAE, (77.51, 76.40, 41.93, 99.74, 4.04, 2.448, 0.6234)),
        ("CDVAE", QUOTED_FROM_CDVAE, (100.0, 86.70, 99.15, 99.49, 0.6875, 0.2778, 1.432)),
        ("DP-CDVAE", OWN_ROW, (99.59, 85.44, 98.93, 98.96, 0.4037, 0.1547, 0.9179)),
        ("DP-CDVAE+Na", OWN_ROW, (99.81, 84.95, 99.36, 99.33, 0.4889, 0.1800, 1.053)),
        ("DP-CDVAE+GINE", OWN_ROW, (99.82, 81.92, 99.48, 99.00, 0.2785, 0.0603, 0.5679)),
        ("DP-CDVAE+Na+GINE", OWN_ROW, (99.90, 83.89, 95.51, 99.27, 0.1790, 0.0522, 0.6909)),
    ],
}
for _ds, _rows in _T2.items():
    for _model, _source, _vals in _rows:
        _add("II", _model, _source, {_ds: dict(zip(_T2_KEYS, _vals))})

# --- Table III: ground state, 100 generated Carbon-24 structures per model relaxed with DFT at 10 GPa.
for _model, _vals in (
    ("CDVAE", (63.0, 0.0321, 0.0227, 468.8)),
    ("CDVAE+Fourier", (62.0, 0.0216, 0.0157, 494.4)),
    ("DP-CDVAE", (64.0, 0.0141, 0.0158, 400.7)),
):
    _add("III", _model, OWN_ROW, {"carbon_24": dict(zip(TABLE_METRICS["III"], _vals))})

del _ds, _rows, _model, _source, _vals

#: Fig. S2 (caption): the mode bin of Delta E (generated minus relaxed, meV/atom; the caption prints eV/atom, a typo)
#: of each Table III model, as printed: CDVAE's "19.2 - 32.0" and CDVAE+Fourier's "68.0 - 128" are not the 64 meV/atom
#: bins the caption states (transcribed unchanged); the text (line 138) gives DP-CDVAE's as 64 - 128 meV/atom.
FIG_S2_MODE_BINS: dict[str, tuple[float, float]] = {
    "CDVAE": (19.2, 32.0),
    "CDVAE+Fourier": (68.0, 128.0),
    "DP-CDVAE": (64.0, 128.0),
}


def get_reference(table: str, dataset: str, model: str) -> dict[str, float | None]:
    """The paper's numbers for one row: ``{metric: value}`` (a copy). Raises ``KeyError`` listing what exists."""
    key = (canonical_table(table), canonical_dataset(dataset), canonical_model(model))
    if key not in REFERENCE:
        have = models(key[0], key[1])
        raise KeyError(f"no row for model {model!r} in Table {key[0]} / {key[1]}; rows: {have}")
    return dict(REFERENCE[key])


def models(table: str, dataset: str) -> list[str]:
    """Model names with a row in ``table`` for ``dataset``, in the paper's row order."""
    t, d = canonical_table(table), canonical_dataset(dataset)
    return [m for (tt, dd, m) in REFERENCE if tt == t and dd == d]


def source(table: str, dataset: str, model: str) -> str:
    """Where a row comes from: ``"DP-CDVAE paper"`` or ``"quoted from [8] via DP-CDVAE paper"``."""
    return SOURCE[(canonical_table(table), canonical_dataset(dataset), canonical_model(model))]
