"""The latent space of a trained model: encode a split, draw it in 2-D, walk a path between two crystals and decode
it (notebook 07, the latent-space explorer).

* :func:`encode_split`: a split through the encoder -> ``z [n, latent_dim]`` (posterior means) with each crystal's
  id, N_a, property value, elements and Structure.
* :func:`project_2d`: ``z`` -> ``[n, 2]`` (PCA by SVD, deterministic signs; or a seeded t-SNE).
* :func:`pick_pair`, :func:`interpolate`: two crystals and the straight line (or great circle) between their z.
* :func:`decode_path`: each point of a path decoded by the reverse diffusion, beside what the heads predict from z
  alone (N_a, lattice, composition), so one sees where decoding jumps.

The latent coordinates are dimensionless (the encoder's posterior means, prior N(0, I)). Lengths are in Angstrom,
angles in degrees, properties in the dataset's units (``heat_ref``: eV/atom on Perov-5). The pictures are in
:mod:`dpcdvae.viz` (``plot_latent_map``, ``plot_latent_panels``, ``plot_path_structures``, ``plot_path_heads``).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np

__all__ = ["Projection", "PathDecode", "encode_split", "latent_summary", "project_2d", "pick_pair", "describe_pair",
           "interpolate", "decode_path", "path_changes", "path_points", "path_report"]


# ================================================================================================================
# encoding a split
# ================================================================================================================
def _main_element(structure) -> str:
    """The element with the most atoms in the cell (ties: the heavier one, so the answer is deterministic)."""
    counts = Counter(site.specie.symbol for site in structure)
    from pymatgen.core import Element

    return max(counts, key=lambda e: (counts[e], Element(e).Z))


def encode_split(model, dataset, split: str = "test", limit: Optional[int] = None, batch_size: int = 256,
                 use_mean: bool = True, seed: int = 0, root: Optional[str] = None) -> dict:
    """Encode the crystals of one split of ``dataset`` with ``model``'s encoder.

    Args:
        model: a DP-CDVAE / CDVAE model (``encode(batch) -> (mu, logvar)``), in eval mode.
        dataset: a dataset name (``"perov_5"``, ``"demo_synthetic_perovskites"``, a folder) or anything with a
            ``.name`` (the notebooks' ``DataChoice``).
        split: ``"train"``, ``"val"`` or ``"test"``; ``limit``: the first ``limit`` crystals (None: all).
        use_mean: z = the posterior mean mu (default); False draws z = mu + sigma * eps (seeded by ``seed``).

    Returns a dict (``n`` crystals, in the split's order):
        ``z`` float32 ``[n, latent_dim]`` (dimensionless), ``sigma`` float32 ``[n, latent_dim]`` (posterior standard
        deviation exp(logvar / 2)), ``material_id`` list[str], ``num_atoms`` int ``[n]`` (atoms per cell),
        ``y`` float ``[n]`` (the property column, NaN without one), ``prop`` (its column name or None),
        ``prop_units`` (e.g. ``"eV/atom"``), ``formula`` list[str] (reduced), ``elements`` list[tuple[str]] (sorted
        element symbols of each crystal), ``main_element`` list[str] (the element with most atoms),
        ``structures`` list of pymatgen ``Structure``, ``dataset``, ``split``, ``synthetic`` (bool).
    """
    import torch

    from ..data.registry import find_spec
    from .common import encode_posterior

    name = getattr(dataset, "name", dataset)
    post = encode_posterior(model, name, split, root=root, limit=limit, batch_size=batch_size)
    ds = post["dataset"]
    gen = torch.Generator(device=model.device).manual_seed(int(seed))
    mu, logvar = post["mu"], post["logvar"]
    z = mu if use_mean else model.reparameterize(mu.to(model.device), logvar.to(model.device), gen).cpu()
    structures = [ds.get_structure(i) for i in range(len(ds))]
    spec = find_spec(name)
    return {
        "z": z.float().numpy(),
        "sigma": torch.exp(0.5 * logvar).float().numpy(),
        "material_id": ds.material_ids,
        "num_atoms": ds.num_atoms.numpy().astype(int).reshape(-1),
        "y": ds.y.double().numpy().reshape(-1),
        "prop": ds.prop,
        "prop_units": spec.units_of(ds.prop) if spec is not None else "unknown",
        "formula": [s.composition.reduced_formula for s in structures],
        "elements": [tuple(sorted({site.specie.symbol for site in s})) for s in structures],
        "main_element": [_main_element(s) for s in structures],
        "structures": structures,
        "dataset": str(name),
        "split": split,
        "synthetic": bool(getattr(ds, "synthetic", False) or (spec is not None and spec.synthetic)),
    }


def latent_summary(enc: dict, threshold: float = 0.01) -> "Any":
    """One-row DataFrame about an encoded split: crystals, latent dimensions, *active* dimensions (those whose
    posterior mean varies across crystals, Var_x(mu) > ``threshold``; the others carry no information about the
    crystal: the KL term pulled them onto the prior), mean |z| (the prior's typical norm is sqrt(latent_dim)) and
    the mean posterior standard deviation sigma (1 = the prior's)."""
    import pandas as pd

    z, sig = np.asarray(enc["z"], dtype=float), np.asarray(enc["sigma"], dtype=float)
    var = z.var(0)
    return pd.DataFrame([{"crystals": len(z), "latent dim": z.shape[1],
                          f"active dims (Var mu > {threshold:g})": int((var > threshold).sum()),
                          "mean |mu|": float(np.linalg.norm(z, axis=1).mean()),
                          "sqrt(latent dim)": float(np.sqrt(z.shape[1])), "mean sigma": float(sig.mean()),
                          "dataset": enc["dataset"] + (" (SYNTHETIC)" if enc.get("synthetic") else "")}]
                        ).set_index("dataset").round(3)


# ================================================================================================================
# 2-D maps
# ================================================================================================================
@dataclass
class Projection:
    """A 2-D picture of latent vectors.

    ``xy [n, 2]``: the projected points; ``explained [2]``: for PCA, the fraction of the total variance of z along
    each of the two axes (sorted, descending; their sum <= 1), None for t-SNE; ``method``; ``mean [latent_dim]``
    and ``components [2, latent_dim]`` (PCA only): ``xy = (z - mean) @ components.T``; ``extra_xy [m, 2]``: the
    ``extra`` points given to :func:`project_2d` (a path) in the same picture, or None.
    Unpacks as ``xy, explained = project_2d(z)``.
    """

    xy: np.ndarray
    explained: Optional[np.ndarray]
    method: str
    mean: Optional[np.ndarray] = None
    components: Optional[np.ndarray] = None
    extra_xy: Optional[np.ndarray] = None

    def __iter__(self):
        return iter((self.xy, self.explained))

    def transform(self, z) -> np.ndarray:
        """More latent vectors ``[m, latent_dim]`` -> ``[m, 2]`` on the same PCA axes (PCA only: a t-SNE map has no
        such map; pass the points as ``extra`` to :func:`project_2d` instead)."""
        if self.components is None:
            raise ValueError("transform() needs a PCA projection; for t-SNE pass the points as project_2d(extra=...)")
        return (np.asarray(z, dtype=np.float64) - self.mean) @ self.components.T

    def axis_labels(self) -> tuple[str, str]:
        """Axis labels: ``"PC 1 (41.2 % of the variance of z)"`` (PCA) or ``"t-SNE 1"``."""
        if self.explained is None:
            return f"{self.method} 1", f"{self.method} 2"
        return tuple(f"PC {i + 1} ({100 * r:.1f} % of the variance of z)" for i, r in enumerate(self.explained))


def project_2d(z, method: str = "pca", seed: int = 0, extra=None, perplexity: float = 30.0) -> Projection:
    """Project latent vectors ``z [n, latent_dim]`` to 2-D (a :class:`Projection`, ``xy [n, 2]``).

    ``method="pca"``: principal components by SVD of the centred z (numpy), each axis's sign fixed so that its
    largest-magnitude loading is positive (the same z always gives the same picture); ``explained`` is the
    explained-variance ratio of the two axes. ``method="tsne"``: scikit-learn's t-SNE (PCA initialisation,
    ``random_state=seed``; ``perplexity`` capped below n); no explained variance. ``extra [m, latent_dim]`` (e.g. a
    path): placed in the same picture (PCA: projected on the axes fitted to ``z`` only; t-SNE: embedded together
    with ``z``), returned as ``extra_xy``.
    """
    Z = np.asarray(z, dtype=np.float64)
    if Z.ndim != 2 or Z.shape[0] < 2:
        raise ValueError(f"project_2d needs z of shape [n >= 2, latent_dim], got {Z.shape}")
    E = None if extra is None else np.asarray(extra, dtype=np.float64).reshape(-1, Z.shape[1])
    if method == "pca":
        mean = Z.mean(0)
        _, s, vt = np.linalg.svd(Z - mean, full_matrices=False)
        var = s ** 2
        total = var.sum()
        comps = vt[:2].copy()
        if comps.shape[0] < 2:  # latent_dim == 1
            comps = np.vstack([comps, np.zeros_like(comps)])
        for k in range(2):
            j = int(np.argmax(np.abs(comps[k])))
            if comps[k, j] < 0:
                comps[k] = -comps[k]
        ratio = np.zeros(2)
        if total > 0:
            ratio[:min(2, len(var))] = var[:2] / total
        p = Projection((Z - mean) @ comps.T, ratio, "pca", mean, comps)
        if E is not None:
            p.extra_xy = p.transform(E)
        return p
    if method == "tsne":
        from sklearn.manifold import TSNE

        both = Z if E is None else np.vstack([Z, E])
        perp = float(min(perplexity, max(1.0, (len(both) - 1) / 3)))
        xy = TSNE(n_components=2, perplexity=perp, init="pca", random_state=int(seed)).fit_transform(both)
        return Projection(xy[:len(Z)], None, "t-SNE", extra_xy=None if E is None else xy[len(Z):])
    raise ValueError(f"method must be 'pca' or 'tsne', got {method!r}")


# ================================================================================================================
# paths
# ================================================================================================================
def pick_pair(enc: dict, index_a: int = 0, index_b: Optional[int] = None) -> tuple[int, int]:
    """Two crystals of an :func:`encode_split` result to walk between: ``index_a`` and ``index_b`` as given, or for
    ``index_b=None`` the crystal farthest from ``index_a`` in z (Euclidean) among those whose most common element
    differs (else whose formula differs; else any other), so the default path crosses compositions."""
    n = len(enc["z"])
    if not 0 <= index_a < n:
        raise IndexError(f"index_a = {index_a}: only {n} crystals were encoded (0..{n - 1})")
    if index_b is not None:
        if not 0 <= index_b < n:
            raise IndexError(f"index_b = {index_b}: only {n} crystals were encoded (0..{n - 1})")
        return int(index_a), int(index_b)
    d = np.linalg.norm(enc["z"] - enc["z"][index_a], axis=1)
    for key in ("main_element", "formula"):
        other = np.array([v != enc[key][index_a] for v in enc[key]])
        if other.any():
            return int(index_a), int(np.argmax(np.where(other, d, -np.inf)))
    d[index_a] = -np.inf
    return int(index_a), int(np.argmax(d))


def describe_pair(enc: dict, index_a: int, index_b: int) -> "Any":
    """The two ends of a path as a two-row DataFrame (``A``, ``B``): index, material id, formula, N_a, property
    value (dataset units), most common element, |mu|; plus the distance |mu_A - mu_B| beside the median distance
    between two encoded crystals (how far apart the pair is, in the latent space's own terms), as a sentence in
    ``df.attrs["note"]`` (numbers in ``attrs["distance"]``, ``attrs["median distance"]``)."""
    import pandas as pd

    z = np.asarray(enc["z"], dtype=float)
    prop = f"{enc.get('prop') or 'property'} ({enc.get('prop_units', 'unknown')})"
    rows = {}
    for name, i in (("A", index_a), ("B", index_b)):
        rows[name] = {"index": int(i), "material_id": enc["material_id"][i], "formula": enc["formula"][i],
                      "N_a": int(enc["num_atoms"][i]), prop: float(enc["y"][i]),
                      "most common element": enc["main_element"][i], "|mu|": float(np.linalg.norm(z[i]))}
    df = pd.DataFrame(rows).T
    rng = np.random.default_rng(0)
    m = min(len(z), 400)
    sub = z[rng.choice(len(z), m, replace=False)] if len(z) > m else z
    d = np.linalg.norm(sub[:, None] - sub[None], axis=-1)[np.triu_indices(len(sub), 1)]
    df.index.name = "end"
    df.attrs["distance"] = float(np.linalg.norm(z[index_a] - z[index_b]))
    df.attrs["median distance"] = float(np.median(d)) if d.size else float("nan")
    df.attrs["note"] = (f"|mu_A - mu_B| = {df.attrs['distance']:.2f} (median distance between two encoded "
                        f"crystals: {df.attrs['median distance']:.2f})")
    return df


def path_points(n_points: int) -> np.ndarray:
    """The path parameter of :func:`interpolate`: ``s = 0, 1/(n-1), ..., 1`` (``[n_points]``)."""
    if n_points < 1:
        raise ValueError(f"n_points must be >= 1, got {n_points}")
    return np.linspace(0.0, 1.0, n_points) if n_points > 1 else np.zeros(1)


def interpolate(z_a, z_b, n_points: int, kind: str = "linear") -> np.ndarray:
    """``n_points`` latent vectors ``[n_points, latent_dim]`` from ``z_a`` to ``z_b`` (both ``[latent_dim]``),
    endpoints included (row 0 is ``z_a``, the last row ``z_b``, exactly).

    ``kind="linear"``: the straight line ``(1 - s) z_a + s z_b`` at ``s = 0, 1/(n-1), ..., 1``. ``kind="slerp"``:
    the great-circle arc (constant angular speed, norms interpolated linearly), which keeps the points about as far
    from the origin as the endpoints, where the N(0, I) prior puts its mass in many dimensions; it falls back to
    the straight line when the two directions are (anti)parallel."""
    a = np.asarray(z_a, dtype=np.float64).reshape(-1)
    b = np.asarray(z_b, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"z_a {a.shape} and z_b {b.shape} differ in shape")
    s = path_points(n_points)[:, None]
    out = (1 - s) * a + s * b
    if kind == "slerp":
        na, nb = np.linalg.norm(a), np.linalg.norm(b)
        if na > 0 and nb > 0:
            cos = float(np.clip(a @ b / (na * nb), -1.0, 1.0))
            omega = np.arccos(cos)
            if 1e-6 < omega < np.pi - 1e-6:
                ua, ub = a / na, b / nb
                direction = (np.sin((1 - s) * omega) * ua + np.sin(s * omega) * ub) / np.sin(omega)
                out = direction * ((1 - s) * na + s * nb)
    elif kind != "linear":
        raise ValueError(f"kind must be 'linear' or 'slerp', got {kind!r}")
    out[0], out[-1] = a, b
    return out.astype(np.result_type(np.asarray(z_a).dtype, np.float32))


# ================================================================================================================
# decoding a path
# ================================================================================================================
@dataclass
class PathDecode:
    """What :func:`decode_path` returns.

    ``out``: the model's ``SampleOutput`` (one crystal per point, in path order); ``table``: a pandas DataFrame,
    one row per point (see :func:`decode_path`); ``heads``: what the heads predict from z alone, numpy arrays
    ``na_probs [n, max_atoms + 1]`` (softmax of the N_a head), ``lengths [n, 3]`` (A), ``angles [n, 3]`` (deg),
    ``comp_probs [n, 100]`` (composition head, class = Z - 1); ``s [n]``: the path parameter (0 .. 1);
    ``meta``: sampler, steps, seed.
    """

    out: Any
    table: Any
    heads: dict
    s: np.ndarray
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.out)


def _top_elements(p: np.ndarray, k: int = 3) -> str:
    from pymatgen.core import Element

    idx = np.argsort(-p)[:k]
    return ", ".join(f"{Element.from_Z(int(i) + 1).symbol} {p[i]:.2f}" for i in idx)


def decode_path(model, zs, sampler="strided_eq7", steps: Optional[int] = 50, seed: int = 0,
                same_noise: bool = True, s: Optional[Sequence[float]] = None) -> PathDecode:
    """Decode latent vectors ``zs [n, latent_dim]`` (a path) into crystals and read the heads at each point.

    Decoding is ``model.sample_from_latent(z, sampler, steps, generator=torch.Generator().manual_seed(seed))``.
    ``same_noise=True`` (default) decodes each point on its own with the same seed, so every point starts from the
    same random numbers (the same r_T and initial-type draws wherever N_a agrees): what changes along the path is
    z's doing. ``same_noise=False`` decodes all points as one batch (faster; each point gets different noise).
    ``steps``: network calls of the strided samplers (ignored by ``eq7``/``eq6``, which take all T).
    ``sampler``: a name or a sampler object, resolved once for all points.

    ``table`` columns, one row per point: ``s`` (path parameter, 0 = start, 1 = end), ``N_a`` (atoms in the
    decoded crystal = the N_a head's argmax), ``p(N_a)`` (that head's probability), ``formula`` (reduced formula of
    the decoded crystal, or why it was not built), ``valid`` (the paper's validity: distances >= 0.5 A and charge
    neutral), ``invalid because``, ``a/b/c (A)`` and ``alpha/beta/gamma (deg)`` (the lattice heads' prediction from
    z, which is the decoded cell), ``volume (A^3)`` and ``composition head`` (its three most likely elements with
    their predicted fractions).
    """
    import pandas as pd
    import torch

    from ..models.output import concat_outputs

    Z = torch.as_tensor(np.asarray(zs, dtype=np.float32), device=model.device).reshape(len(zs), -1)
    n = Z.shape[0]
    if n == 0:
        raise ValueError("decode_path needs at least one latent vector")
    ids = [f"path-{i}" for i in range(n)]
    sampler = model.resolve_sampler(sampler)
    with torch.no_grad():
        if same_noise:
            out = concat_outputs([model.sample_from_latent(Z[i:i + 1], sampler=sampler, steps=steps,
                                                           generator=torch.Generator(device=model.device)
                                                           .manual_seed(int(seed)), ids=ids[i:i + 1])
                                  for i in range(n)])
        else:
            out = model.sample_from_latent(Z, sampler=sampler, steps=steps, ids=ids,
                                           generator=torch.Generator(device=model.device).manual_seed(int(seed)))
        na_logits, na, lengths, angles, _, comp_logits = model.decode_stats(Z)
        na_probs = torch.softmax(na_logits, -1).cpu().numpy()
        comp_probs = torch.softmax(comp_logits, -1).cpu().numpy()
        lengths, angles, na = lengths.cpu().numpy(), angles.cpu().numpy(), na.cpu().numpy()
    s = path_points(n) if s is None else np.asarray(s, dtype=float)
    validity = out.validity()
    from ..structures.crystal import lattice_params_to_matrix

    vol = torch.linalg.det(lattice_params_to_matrix(torch.as_tensor(lengths, dtype=torch.float64),
                                                    torch.as_tensor(angles, dtype=torch.float64))).numpy()
    rows = []
    for i in range(n):
        st = out.structures[i]
        rows.append({"s": round(float(s[i]), 3), "N_a": int(na[i]), "p(N_a)": float(na_probs[i, na[i]]),
                     "formula": st.composition.reduced_formula if st is not None else f"({out.flags[i]})",
                     "valid": bool(validity[i]["valid"]), "invalid because": validity[i]["reason"] or "",
                     "a (A)": float(lengths[i, 0]), "b (A)": float(lengths[i, 1]), "c (A)": float(lengths[i, 2]),
                     "alpha (deg)": float(angles[i, 0]), "beta (deg)": float(angles[i, 1]),
                     "gamma (deg)": float(angles[i, 2]),
                     "volume (A^3)": float(vol[i]), "composition head": _top_elements(comp_probs[i])})
    table = pd.DataFrame(rows, index=pd.Index(range(n), name="point")).round(3)
    heads = {"na_probs": na_probs, "lengths": lengths, "angles": angles, "comp_probs": comp_probs}
    return PathDecode(out, table, heads, s, {"sampler": out.meta.get("sampler", sampler.label),
                                             "steps": out.meta.get("steps", steps), "seed": seed,
                                             "same_noise": same_noise})


def path_changes(dec: PathDecode) -> "Any":
    """Where decoding changes along a path: a DataFrame with one row per pair of neighbouring points whose N_a,
    formula, validity or most likely element of the composition head differ (``from``, ``to``: point indices;
    ``s``: where, ``what``: which changed, ``before``, ``after``), plus the largest step of the predicted lattice
    between neighbours (``max |d length| (A)``). Empty when the whole path decodes alike."""
    import pandas as pd

    t = dec.table
    top = [_top_elements(p, 1).split()[0] for p in dec.heads["comp_probs"]]
    rows = []
    for i in range(len(t) - 1):
        j = i + 1
        dl = float(np.abs(dec.heads["lengths"][j] - dec.heads["lengths"][i]).max())
        for what, before, after in (("N_a", t["N_a"].iloc[i], t["N_a"].iloc[j]),
                                    ("formula", t["formula"].iloc[i], t["formula"].iloc[j]),
                                    ("valid", t["valid"].iloc[i], t["valid"].iloc[j]),
                                    ("top element of the composition head", top[i], top[j])):
            if before != after:
                rows.append({"from": i, "to": j, "s": f"{t['s'].iloc[i]:.2f} -> {t['s'].iloc[j]:.2f}",
                             "what": what, "before": str(before), "after": str(after),
                             "max |d length| (A)": round(dl, 3)})
    return pd.DataFrame(rows, columns=["from", "to", "s", "what", "before", "after", "max |d length| (A)"])


def path_report(dec: PathDecode, targets: Optional[Sequence[str]] = None) -> str:
    """A few lines of markdown on a decoded path: how many points decode into valid crystals, whether N_a stays
    put, where the formula changes (:func:`path_changes`), and, given ``targets = (formula A, formula B)``, whether
    the endpoints decode back into their crystals' formulas."""
    t = dec.table
    n = len(t)
    ch = path_changes(dec)
    lines = [f"- **{int(t['valid'].sum())}/{n}** points decode into valid crystals "
             f"(sampler `{dec.meta.get('sampler')}`, {dec.meta.get('steps')} network calls, seed {dec.meta.get('seed')})."]
    na = sorted(set(int(v) for v in t["N_a"]))
    if len(na) == 1:
        lines.append(f"- N_a stays **{na[0]}** along the whole path (smallest head probability "
                     f"{float(t['p(N_a)'].min()):.2f}).")
    else:
        jumps = ch[ch["what"] == "N_a"]
        lines.append("- N_a **jumps**: " + "; ".join(f"{r['before']} -> {r['after']} between s = {r['s']}"
                                                       for _, r in jumps.iterrows()) + ".")
    form = ch[ch["what"] == "formula"]
    if form.empty:
        lines.append(f"- the decoded formula stays **{t['formula'].iloc[0]}**.")
    else:
        lines.append(f"- the decoded formula changes **{len(form)}** times: "
                     + "; ".join(f"{r['before']} -> {r['after']} (s = {r['s']})" for _, r in form.iterrows()) + ".")
    if targets is not None:
        for name, k, target in (("A", 0, targets[0]), ("B", n - 1, targets[1])):
            got = t["formula"].iloc[k]
            lines.append(f"- endpoint {name} decodes into **{got}** ("
                         + ("its own formula" if got == target else f"the encoded crystal is {target}") + ").")
    vol = np.asarray(t["volume (A^3)"], dtype=float)
    lines.append(f"- the predicted cell volume goes from {vol[0]:.1f} to {vol[-1]:.1f} A^3 (largest step between "
                 f"neighbours {float(np.abs(np.diff(vol)).max()) if n > 1 else 0.0:.1f} A^3).")
    return "\n".join(lines)
