"""Vectorised local structure order parameters for the CrystalNN 'ops' fingerprint (``method="vector"``).

matminer's ``CrystalNNFingerprint.from_preset("ops")`` site feature is, for each coordination number CN = 1..24,
the CrystalNN weight ``wt`` of that CN followed by ``wt * op`` for the order parameters (OPs) listed for that CN
(61 numbers in all). matminer evaluates every OP with pymatgen's ``LocalStructOrderParams.get_order_parameters``,
whose pure-Python loops over neighbour pairs (j, k) and triples (j, k, m) take most of the fingerprint time. This
module evaluates the same OP definitions with numpy on all pairs / triples at once:

* the per-neighbour unit vectors, the pair angles theta_jk, the Gram-Schmidt "x axes" of each pair and the
  azimuths phi_jkm are computed once per site for its longest neighbour list (at most 12 neighbours carry OPs) and
  sliced for each CN, since CrystalNN's neighbour list of CN n is the first n entries of the site's weight-sorted
  neighbour list (checked per site; otherwise each CN gets its own geometry);
* the dot products are formed in the same order as pymatgen's ``np.inner`` / ``np.linalg.norm`` of 3-vectors
  ((x0*y0 + x1*y1) + x2*y2) so that the angles entering the branch tests are the same floating-point numbers on
  common BLAS builds; sums over neighbours are taken in numpy's order (differences ~1e-16 relative).

OP types implemented (those the 'ops' preset uses, see :data:`SUPPORTED`): ``sgl_bd``, ``bent``, ``tri_plan_max``,
``tet_max``, ``T``, ``sq_plan_max``, ``see_saw_rect``, ``tri_bipyr``, ``tri_pyr``, ``pent_plan_max``, ``sq_pyr``,
``hex_plan_max``, ``oct_max``, ``pent_pyr``, ``hex_pyr``, ``pent_bipyr``, ``bcc``, ``hex_bipyr``, ``cuboct_max``,
``q2``, ``q4``, ``q6``. Their parameters are read from the featurizer's own ``LocalStructOrderParams`` objects,
so they are the ones matminer uses.

Explicit fallback (never silent)
--------------------------------
Several OP definitions switch branch at a threshold (an angle against ``min_SPP``, pi/2 for ``bcc``, the 75 / 105
degree bands of ``cuboct_max``, phi < 3 pi/4 for ``see_saw_rect``, the 1e-12 A "parallel vectors" test, the
1 - 1e-12 "on the z axis" test of q_l). A value within :data:`ANGLE_GUARD` (or the corresponding band) of such a
threshold could land on the other side in another evaluation order, and the OP would jump. Such an OP of such a site
is evaluated by the featurizer's pymatgen object exactly as matminer does (:class:`AmbiguousGeometry` is raised by
the vector code and caught by :func:`site_fingerprint`), and so is an OP type outside :data:`SUPPORTED` and a site
with a neighbour closer than :data:`MIN_NEIGHBOUR_DIST`. Every such evaluation is counted in :data:`COUNTERS`
(with its reason); see :func:`counters`.

Units: neighbour positions and distances in Angstrom, angles in radians; every OP and fingerprint entry is
dimensionless.
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Any, Sequence

import numpy as np

__all__ = ["SUPPORTED", "AmbiguousGeometry", "NeighbourGeometry", "order_parameter", "site_fingerprint",
           "counters", "reset_counters", "featurizer_plan"]

#: OP types with a vectorised implementation here
SUPPORTED = frozenset({
    "sgl_bd", "bent", "tri_plan_max", "tet_max", "T", "tri_pyr", "sq_pyr", "pent_pyr", "hex_pyr",
    "sq_plan_max", "see_saw_rect", "tri_bipyr", "oct_max", "pent_bipyr", "hex_bipyr", "hex_plan_max",
    "pent_plan_max", "bcc", "cuboct_max", "q2", "q4", "q6",
})

#: radians: an angle this close to a branch threshold is treated as ambiguous (pymatgen path for that OP); the
#: angles here differ from pymatgen's by ~1e-15 rad at most, so the guard is wide by a factor of ~1e6
ANGLE_GUARD = 1e-9
#: pymatgen's "very small" length (A) below which a Gram-Schmidt vector counts as zero (parallel neighbours)
_VERY_SMALL = 1e-12
#: a Gram-Schmidt norm in [_VERY_SMALL / 2, 2 * _VERY_SMALL] (A) is treated as ambiguous
_FLAG_BAND = (0.5e-12, 2e-12)
#: pymatgen's q_l computes an azimuth only for |z| < 1 - 1e-12; |z| within this of that bound is ambiguous
_Z_GUARD = 1e-14
#: A: a site with a neighbour closer than this goes to the pymatgen path (pymatgen divides by the distance)
MIN_NEIGHBOUR_DIST = 1e-6
#: at most this many neighbours carry OPs in the 'ops' preset (CN 12)
_MAX_OP_CN = 12

_IPI = 1.0 / math.pi
_PIOVER2 = math.pi / 2.0
_FAC_BCC = 1.0 / math.exp(-0.5)
_ASIN_THIRD = math.asin(1.0 / 3.0)

_PYR = frozenset({"T", "tri_pyr", "sq_pyr", "pent_pyr", "hex_pyr"})
_BIPYR = frozenset({"tri_bipyr", "sq_bipyr", "pent_bipyr", "hex_bipyr", "oct_max", "sq_plan_max", "hex_plan_max",
                    "see_saw_rect"})
_TRI_TET = frozenset({"tri_plan_max", "tet_max"})

#: counts of the last runs: sites, OP evaluations done here, OP evaluations sent to pymatgen and why
COUNTERS: dict[str, Any] = {"sites": 0, "ops_vector": 0, "ops_fallback": 0, "fallback_reasons": Counter()}


def reset_counters() -> None:
    """Zero :data:`COUNTERS`."""
    COUNTERS.update(sites=0, ops_vector=0, ops_fallback=0, fallback_reasons=Counter())


def counters() -> dict:
    """A copy of :data:`COUNTERS`: ``sites`` featurised, ``ops_vector`` OP values computed here, ``ops_fallback`` OP
    values computed by pymatgen's ``LocalStructOrderParams`` (ambiguous geometry, unsupported type, too-close
    neighbour) and ``fallback_reasons`` (reason -> count)."""
    out = dict(COUNTERS)
    out["fallback_reasons"] = dict(COUNTERS["fallback_reasons"])
    return out


class AmbiguousGeometry(ValueError):
    """A branch test of an OP definition is too close to its threshold to be decided reliably here."""


def _dot3(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Dot products over the last axis (length 3) in the order (a0*b0 + a1*b1) + a2*b2 (that of ``np.inner`` on
    3-vectors with the usual BLAS kernels), broadcasting the leading axes."""
    return (a[..., 0] * b[..., 0] + a[..., 1] * b[..., 1]) + a[..., 2] * b[..., 2]


def _gauss(x: np.ndarray) -> np.ndarray:
    """exp(-x^2 / 2), with pymatgen's operation order."""
    return np.exp(-0.5 * x * x)


class NeighbourGeometry:
    """Angles of one neighbour set around a centre, for all pairs and triples at once.

    ``rel``: ``float64 [n, 3]`` neighbour positions minus the centre position (A). Attributes (indices j, k, m are
    neighbours; j is the "north pole", k spans the prime meridian, m is the third neighbour):

    * ``dist [n]`` (A), ``unit [n, 3]`` unit vectors;
    * ``theta [n, n]`` = arccos(u_j . u_k) in [0, pi] (rad), the diagonal is meaningless;
    * ``xnorm [n, n]``: length (A-free, unit vectors) of the Gram-Schmidt part of u_k orthogonal to u_j;
      ``flag [n, n]`` = ``xnorm < 1e-12`` (u_k parallel to u_j: no prime meridian);
    * ``phi [n, n, n]`` = angle (rad) between the Gram-Schmidt parts of u_k and u_m about u_j (0 where that of u_m
      vanishes).

    :meth:`sub` gives the geometry of the first ``n'`` neighbours by slicing (no recomputation).
    """

    __slots__ = ("n", "dist", "unit", "theta", "xnorm", "flag", "phi", "memo")

    def __init__(self, rel: np.ndarray | None = None, *, _parts: tuple | None = None):
        self.memo: dict = {}  # derived arrays shared by the OPs of one neighbour set (masks, cos(fac * phi)^e)
        if _parts is not None:
            self.n, self.dist, self.unit, self.theta, self.xnorm, self.flag, self.phi = _parts
            return
        rel = np.asarray(rel, dtype=np.float64).reshape(-1, 3)
        n = rel.shape[0]
        self.n = n
        self.dist = np.sqrt(_dot3(rel, rel))
        if n and float(self.dist.min()) < MIN_NEIGHBOUR_DIST:
            raise AmbiguousGeometry("neighbour closer than MIN_NEIGHBOUR_DIST")
        u = rel / self.dist[:, None]
        self.unit = u
        dots = _dot3(u[:, None, :], u[None, :, :])  # dots[j, k] = u_j . u_k
        self.theta = np.arccos(np.clip(dots, -1.0, 1.0))
        # Gram-Schmidt of u_k against u_j: u_k - (u_k . u_j / u_j . u_j) u_j
        coef = dots / np.diagonal(dots)[:, None]  # (u_k . u_j) / (u_j . u_j); the product is commutative bit-wise
        x = u[None, :, :] - coef[:, :, None] * u[:, None, :]
        self.xnorm = np.sqrt(_dot3(x, x))
        self.flag = self.xnorm < _VERY_SMALL
        xn = x / np.where(self.flag, 1.0, self.xnorm)[:, :, None]
        # phi[j, k, m]: angle between the unit Gram-Schmidt vectors of m and of k (both about j)
        cphi = _dot3(xn[:, None, :, :], xn[:, :, None, :])
        phi = np.arccos(np.clip(cphi, -1.0, 1.0))
        self.phi = np.where(self.flag[:, None, :], 0.0, phi)

    def sub(self, n: int) -> "NeighbourGeometry":
        """The geometry of the first ``n`` neighbours (``n <= self.n``)."""
        if n == self.n:
            return self
        return NeighbourGeometry(_parts=(n, self.dist[:n], self.unit[:n], self.theta[:n, :n], self.xnorm[:n, :n],
                                         self.flag[:n, :n], self.phi[:n, :n, :n]))


def _near(values: np.ndarray, threshold: float, guard: float = ANGLE_GUARD) -> bool:
    return bool(values.size) and bool(np.any(np.abs(values - threshold) < guard))


_INDEX_MASKS: dict[int, tuple] = {}


def _index_masks(n: int) -> tuple:
    """(offdiag [n,n]: j != k, distinct [n,n,n]: j, k, m pairwise different, upper [n,n]: j < k), cached per n."""
    m = _INDEX_MASKS.get(n)
    if m is None:
        eye = np.eye(n, dtype=bool)
        offdiag = ~eye
        distinct = offdiag[:, :, None] & ~(eye[:, None, :] | eye[None, :, :])  # m != j (eye[j, m]), m != k
        m = _INDEX_MASKS[n] = (offdiag, distinct, np.triu(np.ones((n, n), dtype=bool), 1))
    return m


def _masks(g: NeighbourGeometry):
    """(offdiag [n,n], triple [n,n,n], triple_ang [n,n,n], upper [n,n], off-diagonal thetas [n(n-1)]): j != k;
    m not in {j, k} with a prime meridian for (j, k) (pymatgen's m loop); and additionally a Gram-Schmidt vector for
    (j, m) (its angular terms); j < k. Raises :class:`AmbiguousGeometry` when a Gram-Schmidt norm sits at the
    1e-12 threshold. Memoised on ``g``."""
    m = g.memo.get("masks")
    if m is None:
        offdiag, distinct, upper = _index_masks(g.n)
        lo, hi = _FLAG_BAND
        xn = g.xnorm[offdiag]
        if xn.size and np.any((xn >= lo) & (xn <= hi)):
            m = AmbiguousGeometry("Gram-Schmidt norm near 1e-12")
        else:
            triple = distinct & ~g.flag[:, :, None]
            m = (offdiag, triple, triple & ~g.flag[:, None, :], upper, g.theta[offdiag])
        g.memo["masks"] = m
    if isinstance(m, Exception):
        raise m
    return m


def _cos_pow(g: NeighbourGeometry, fac: float, expo: float) -> np.ndarray:
    """cos(fac * phi)^expo over the triples of ``g`` (memoised)."""
    key = ("cos", fac, expo)
    v = g.memo.get(key)
    if v is None:
        c = np.cos(fac * g.phi)
        v = g.memo[key] = c * c if expo == 2 else np.power(c, expo)
    return v


def _max_ratio(q: np.ndarray, norm: np.ndarray, offdiag: np.ndarray) -> float:
    """max over j != k of q/norm (0 where norm <= 1e-12): the "max" OPs' normalisation."""
    r = np.where(norm > 1e-12, q / np.where(norm > 1e-12, norm, 1.0), 0.0)
    return float(r[offdiag].max())


def _boop(g: NeighbourGeometry, ls: Sequence[int]) -> dict[int, float]:
    """Steinhardt q_l for l in ``ls`` (each of 2, 4, 6): sqrt(4 pi / (2l + 1) * sum_m |mean_j Y_lm(u_j)|^2) with
    the polar angle from the z axis and the azimuth from the x axis (set to 0 when |z| >= 1 - 1e-12)."""
    u = g.unit
    z = u[:, 2]
    if np.any(np.abs(np.abs(z) - (1.0 - 1e-12)) < _Z_GUARD):
        raise AmbiguousGeometry("neighbour at the q_l polar-axis threshold")
    theta = np.arccos(np.clip(z, -1.0, 1.0))
    off_axis = (z > -(1.0 - 1e-12)) & (z < 1.0 - 1e-12)
    rho = np.sqrt(u[:, 0] * u[:, 0] + u[:, 1] * u[:, 1])
    cphi = np.clip(u[:, 0] / np.where(off_axis, rho, 1.0), -1.0, 1.0)
    phi = np.arccos(cphi)
    phi = np.where(u[:, 1] < 0.0, -phi, phi)
    phi = np.where(off_axis, phi, 0.0)
    s, c = np.sin(theta), np.cos(theta)
    n = len(z)
    out = {}
    for l in ls:
        # [K_lm * P_l^|m|(cos theta)] for m = 0..l (the Condon-Shortley sign drops out of |.|^2)
        if l == 2:
            c2 = c * c
            pre = [0.25 * math.sqrt(5 / math.pi) * (3 * c2 - 1.0),
                   0.5 * math.sqrt(15 / (2 * math.pi)) * s * c,
                   0.25 * math.sqrt(15 / (2 * math.pi)) * s * s]
        elif l == 4:
            c2 = c * c
            c3, c4 = c2 * c, c2 * c2
            s2 = s * s
            pre = [(3 / 16) * math.sqrt(1 / math.pi) * (35 * c4 - 30 * c2 + 3.0),
                   (3 / 8) * math.sqrt(5 / math.pi) * s * (7 * c3 - 3 * c),
                   (3 / 8) * math.sqrt(5 / (2 * math.pi)) * s2 * (7 * c2 - 1.0),
                   (3 / 8) * math.sqrt(35 / math.pi) * s2 * s * c,
                   (3 / 16) * math.sqrt(35 / (2 * math.pi)) * s2 * s2]
        elif l == 6:
            c2 = c * c
            c3, c4, c5, c6 = c2 * c, c2 * c2, c2 * c2 * c, c2 * c2 * c2
            s2 = s * s
            s3, s4 = s2 * s, s2 * s2
            pre = [(1 / 32) * math.sqrt(13 / math.pi) * (231 * c6 - 315 * c4 + 105 * c2 - 5.0),
                   (1 / 16) * math.sqrt(273 / (2 * math.pi)) * s * (33 * c5 - 30 * c3 + 5 * c),
                   (1 / 64) * math.sqrt(1365 / math.pi) * s2 * (33 * c4 - 18 * c2 + 1.0),
                   (1 / 32) * math.sqrt(1365 / math.pi) * s3 * (11 * c3 - 3 * c),
                   (3 / 32) * math.sqrt(91 / (2 * math.pi)) * s4 * (11 * c2 - 1.0),
                   (3 / 32) * math.sqrt(1001 / math.pi) * s4 * s * c,
                   (1 / 64) * math.sqrt(3003 / math.pi) * s3 * s3]
        else:  # pragma: no cover - only 2, 4, 6 are requested
            raise ValueError(f"q{l} is not implemented")
        acc = float(np.sum(pre[0])) ** 2
        for m in range(1, l + 1):
            re = float(np.sum(pre[m] * np.cos(m * phi)))
            im = float(np.sum(pre[m] * np.sin(m * phi)))
            acc += 2.0 * (re * re + im * im)  # Y_l,-m and Y_l,m have the same modulus of their sums
        out[l] = math.sqrt(4 * math.pi * acc / ((2 * l + 1) * float(n * n)))
    return out


def order_parameter(kind: str, params: dict | None, geom: NeighbourGeometry) -> float | None:
    """One OP of type ``kind`` (a pymatgen ``LocalStructOrderParams`` type in :data:`SUPPORTED`) with its parameter
    dict ``params`` (as held by that object: angles in radians or fractions of pi as pymatgen defines them) for the
    neighbour set ``geom``. Returns what ``LocalStructOrderParams([kind], [params]).get_order_parameters(...)[0]``
    returns for the same neighbours (a dimensionless float, or ``None`` where pymatgen gives ``None``: too few
    neighbours, zero normalisation), to floating-point noise. Raises :class:`AmbiguousGeometry` when a branch test
    is within the guard of its threshold, ``ValueError`` for an unsupported ``kind``."""
    n = geom.n
    p = params or {}
    if kind == "sgl_bd":
        if n == 1:
            return 1.0
        if n > 1:
            d = np.sort(geom.dist)
            return float(1.0 - d[0] / d[1])
        return 0.0
    if kind in ("q2", "q4", "q6"):
        return _boop(geom, [int(kind[1])])[int(kind[1])] if n > 0 else None
    if kind not in SUPPORTED:
        raise ValueError(f"order parameter type {kind!r} has no vectorised implementation")

    th = geom.theta
    thk = th[:, :, None]  # theta_jk over the triple axes
    thm = th[:, None, :]  # theta_jm
    phi = geom.phi

    if kind == "bent":
        offdiag = _index_masks(n)[0]
        cnt = n * (n - 1)
        return float(_gauss(p["IGW_TA"] * (th[offdiag] * _IPI - p["TA"])).sum()) / float(cnt) if cnt else None

    if n <= 1 and kind != "bcc":
        return None  # pymatgen: no pair of neighbours
    if n <= 3 and kind == "bcc":
        return None  # pymatgen: bcc needs more than 3 neighbours
    # the remaining types use the prime meridian of each pair
    offdiag, triple, triple_ang, upper, th_off = _masks(geom)

    if kind in _TRI_TET or kind in _PYR or kind == "pent_plan_max":
        if kind in _TRI_TET:
            q = _gauss(p["IGW_TA"] * (th * _IPI - p["TA"]))
            t = _gauss(p["IGW_TA"] * (thm * _IPI - p["TA"])) * _cos_pow(geom, p["fac_AA"], p["exp_cos_AA"])
        elif kind in _PYR:
            q = _gauss(p["IGW_EP"] * (th * _IPI - 0.5))
            t = _cos_pow(geom, p["fac_AA"], p["exp_cos_AA"]) * _gauss(p["IGW_EP"] * (thm * _IPI - 0.5))
        else:  # pent_plan_max: target 0.4 pi below TA*pi, 0.8 pi above (continuous at TA*pi = 0.6 pi)
            ta = p["TA"] * math.pi
            q = _gauss(p["IGW_TA"] * (th * _IPI - np.where(th <= ta, 0.4, 0.8)))
            cp = np.cos(phi)
            t = _gauss(p["IGW_TA"] * (thm * _IPI - np.where(thm <= ta, 0.4, 0.8))) * (cp * cp)
        q = q + np.where(triple_ang, t, 0.0).sum(axis=2)
        norm = 1.0 + triple_ang.sum(axis=2)
        return _max_ratio(q, norm, offdiag)

    if kind in _BIPYR:
        spp = p["min_SPP"]
        if _near(th_off, spp):
            raise AmbiguousGeometry(f"{kind}: angle at min_SPP")
        if kind == "hex_plan_max":
            def h(x):
                return p["IGW_TA"] * (np.abs(x * _IPI - 0.5) - p["TA"])
        else:
            def h(x):
                return p["IGW_EP"] * (x * _IPI - 0.5)
        pair = th < spp
        q = np.where(pair, _gauss(h(th)), 0.0)
        norm = pair.astype(np.float64)
        south = triple & (thm >= spp)
        q = q + np.where(south, _gauss(p["IGW_SPP"] * (thm * _IPI - 1.0)), 0.0).sum(axis=2)
        norm = norm + south.sum(axis=2)
        ang = triple_ang & (thm < spp) & (thk < spp)
        if kind == "see_saw_rect":
            if _near(phi[ang], 0.75 * math.pi):
                raise AmbiguousGeometry("see_saw_rect: azimuth at 3 pi / 4")
            ang = ang & (phi < 0.75 * math.pi)
        t = _cos_pow(geom, p["fac_AA"], p["exp_cos_AA"]) * _gauss(h(thm))
        q = q + np.where(ang, t, 0.0).sum(axis=2)
        norm = norm + ang.sum(axis=2)
        return _max_ratio(q, norm, offdiag)

    if kind == "bcc":
        spp = p["min_SPP"]
        if _near(th[upper], spp):
            raise AmbiguousGeometry("bcc: angle at min_SPP")
        pair = upper & (th >= spp)
        total = float(np.where(pair, p["w_SPP"] * _gauss(p["IGW_SPP"] * (th * _IPI - 1.0)), 0.0).sum())
        ang = triple_ang & upper[:, :, None] & (thk < spp)
        if _near(np.broadcast_to(thk, ang.shape)[ang], _PIOVER2):
            raise AmbiguousGeometry("bcc: angle at pi / 2")
        fac = np.where(thk > _PIOVER2, 1.0, -1.0)
        tt = (thm - _PIOVER2) / _ASIN_THIRD
        t = fac * np.cos(3 * phi) * _FAC_BCC * tt * _gauss(tt)
        total += float(np.where(ang, t, 0.0).sum())
        return total / float(0.5 * float(n * (6 + (n - 2) * (n - 3))))

    if kind == "cuboct_max":
        spp, lo, hi = p["min_SPP"], p[4], p[2]
        if _near(th_off, spp) or _near(th_off, lo) or _near(th_off, hi):
            raise AmbiguousGeometry("cuboct_max: angle at a band edge")
        pair = th >= spp
        q = np.where(pair, p["w_SPP"] * _gauss(p["IGW_SPP"] * (th * _IPI - 1.0)), 0.0)
        norm = np.where(pair, p["w_SPP"], 0.0)
        base = triple_ang & (thm < spp) & (thk > lo) & (thk < hi)
        band = base & (thm > lo) & (thm < hi)
        low = base & (thm < lo)
        high = base & (thm > hi)
        cp = np.cos(phi)
        t_band = cp * cp * _gauss(p[5] * (thm * _IPI - 0.5))
        sp = _gauss(0.0556 * (np.cos(phi - 0.5 * math.pi) - 0.81649658))
        t_low = sp * _gauss(p[6] * (thm * _IPI - 1.0 / 3.0))
        t_high = sp * _gauss(p[6] * (thm * _IPI - 2.0 / 3.0))
        q = q + (np.where(band, t_band, 0.0) + np.where(low, t_low, 0.0) + np.where(high, t_high, 0.0)).sum(axis=2)
        norm = norm + (band | low | high).sum(axis=2)
        return _max_ratio(q, norm, offdiag)

    raise ValueError(f"order parameter type {kind!r} has no vectorised implementation")  # pragma: no cover


# ----------------------------------------------------------------------------------------------------------------
# the CrystalNNFingerprint site feature
# ----------------------------------------------------------------------------------------------------------------
_PLANS: dict[int, tuple] = {}


def featurizer_plan(featurizer) -> tuple:
    """The output layout of a matminer ``CrystalNNFingerprint`` as ``((cn, [entry, ...]), ...)`` for CN = 1..max,
    where an entry is ``None`` for the ``wt`` feature and ``(kind, params, op_object)`` for an OP (``op_object``
    is the featurizer's ``LocalStructOrderParams``, used for the explicit fallback). Cached per featurizer."""
    key = id(featurizer)
    plan = _PLANS.get(key)
    if plan is not None and plan[0] is featurizer:
        return plan[1]
    if getattr(featurizer, "chem_info", None) is not None:
        raise ValueError("chem_info fingerprints are not supported by the vector path")
    max_cn = sorted(featurizer.op_types)[-1]
    layout = []
    for cn in range(1, max_cn + 1):
        if cn not in featurizer.ops:
            continue
        entries = []
        for op in featurizer.ops[cn]:
            if isinstance(op, str) and op == "wt":
                entries.append(None)
            else:
                if op.num_ops != 1:
                    raise ValueError("expected one order parameter per LocalStructOrderParams object")
                params = op.get_parameters(0)
                entries.append((op.get_type(0), None if params is None else dict(params), op))
        layout.append((cn, entries))
    layout = tuple(layout)
    _PLANS[key] = (featurizer, layout)
    return layout


def _pymatgen_op(op, structure, idx: int, neigh_sites: list) -> float:
    """matminer's own evaluation of one OP (the explicit fallback): ``op.get_order_parameters`` on the centre and
    its CN neighbours, ``None`` -> 0."""
    val = op.get_order_parameters([structure[idx]] + neigh_sites, 0,
                                  indices_neighs=list(range(1, len(neigh_sites) + 1)))[0]
    return val or 0


def site_fingerprint(featurizer, structure, idx: int, nndata=None) -> list[float]:
    """``featurizer.featurize(structure, idx)`` for a matminer ``CrystalNNFingerprint`` without ``chem_info`` (e.g.
    ``from_preset("ops")``: 61 dimensionless numbers), with the OPs computed by :func:`order_parameter`.

    The CrystalNN data come from ``featurizer.cnn.get_nn_data(structure, idx)`` (or ``nndata`` if given); for each
    CN = 1..max the ``wt`` entry is the CN's CrystalNN weight (0 if absent) and each OP entry is ``wt * op`` (0 when
    ``wt == 0``; an OP of ``None`` counts as 0), as in matminer. OPs that the vector code declines
    (:class:`AmbiguousGeometry`, unsupported type) are computed by the featurizer's pymatgen object and counted in
    :data:`COUNTERS`."""
    plan = featurizer_plan(featurizer)
    if nndata is None:
        nndata = featurizer.cnn.get_nn_data(structure, idx)
    weights = nndata.cn_weights
    nninfo = nndata.cn_nninfo
    COUNTERS["sites"] += 1

    # one geometry for the longest neighbour list that carries OPs, sliced per CN when the lists are its prefixes
    needed = [cn for cn, entries in plan if weights.get(cn, 0) != 0 and any(e is not None for e in entries)]
    centre = np.asarray(structure[idx].coords, dtype=np.float64)
    geoms: dict[int, NeighbourGeometry | Exception] = {}
    if needed:
        top = max(needed)
        top_sites = [d["site"] for d in nninfo[top]]
        prefix = all(len(nninfo[cn]) == cn and all(a is b for a, b in zip(nninfo[cn], nninfo[top])) for cn in needed)
        if prefix:
            try:
                full = NeighbourGeometry(np.array([s.coords for s in top_sites], dtype=np.float64) - centre)
                for cn in needed:
                    geoms[cn] = full.sub(cn)
            except AmbiguousGeometry as exc:
                for cn in needed:
                    geoms[cn] = exc
        else:
            for cn in needed:
                try:
                    geoms[cn] = NeighbourGeometry(
                        np.array([d["site"].coords for d in nninfo[cn]], dtype=np.float64) - centre)
                except AmbiguousGeometry as exc:
                    geoms[cn] = exc

    out: list[float] = []
    for cn, entries in plan:
        wt = weights.get(cn, 0)
        for entry in entries:
            if entry is None:
                out.append(wt)
                continue
            if wt == 0:
                out.append(wt)
                continue
            kind, params, op = entry
            geom = geoms[cn]
            reason = None
            val = None
            if isinstance(geom, Exception):
                reason = str(geom)
            elif kind not in SUPPORTED:
                reason = f"unsupported type {kind}"
            else:
                try:
                    val = order_parameter(kind, params, geom)
                except AmbiguousGeometry as exc:
                    reason = str(exc)
            if reason is not None:
                COUNTERS["ops_fallback"] += 1
                COUNTERS["fallback_reasons"][reason] += 1
                val = _pymatgen_op(op, structure, idx, [d["site"] for d in nninfo[cn]])
            else:
                COUNTERS["ops_vector"] += 1
            out.append(wt * (val or 0))
    return out
