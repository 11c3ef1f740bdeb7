"""A cheap physical plausibility proxy for ranking candidate crystals without an ML potential: the bond-valence
**global instability index** (GII).

Bond-valence model (Brown; Brese & O'Keeffe 1991 parameters, as pymatgen's ``calculate_bv_sum`` uses them): the
bond valence of a cation-anion pair at distance R is ``exp((R0 - R) / 0.37 A)``; in a plausible ionic crystal the
bond valences around each ion add up to its oxidation state. The GII is the root-mean-square deviation

    GII = sqrt( mean_i (BVS_i - V_i)^2 )    (valence units, v.u.; both signed, negative for anions)

over all sites i (BVS_i: bond-valence sum over the neighbours within ``cutoff`` A, V_i: the oxidation state that
pymatgen's most probable guess assigns). Well-formed inorganic crystals have GII below about 0.2-0.3 v.u.; a cation on
a site of the wrong size is far over- or under-bonded: the cubic SrTiO3 perovskite scores 0.29 v.u., the same cell
with Sr and Ti exchanged (Ti in the 12-fold A site) 4.13 v.u. The proxy is **not an energy**: it knows nothing of
covalent or metallic bonding and is undefined for an element-only crystal (carbon) or where no oxidation states
can be guessed; :func:`global_instability_index` then returns None with the reason.
"""
from __future__ import annotations

import math
import warnings
from typing import Optional

__all__ = ["global_instability_index", "GII_UNITS", "GII_BASIS"]

GII_UNITS = "v.u. (valence units)"
#: One sentence naming the basis of a proxy ranking (written to ranking.json).
GII_BASIS = ("bond-valence global instability index (GII, v.u.): RMS deviation of each site's bond-valence sum "
             "(Brese-O'Keeffe parameters, neighbours within 3.5 A) from its guessed oxidation state; lower is more "
             "plausible for an ionic crystal. A geometric proxy, not an energy; `--rank chgnet` ranks by CHGNet "
             "energy instead")


def global_instability_index(structure, cutoff: float = 3.5) -> tuple[Optional[float], Optional[str]]:
    """``(GII in v.u., None)`` of a pymatgen ``Structure``, or ``(None, reason)`` when it cannot be computed (one
    element only, no oxidation-state guess, an element without bond-valence parameters, an isolated ion).
    ``cutoff``: neighbour search radius in Angstrom."""
    from pymatgen.analysis.bond_valence import BV_PARAMS, calculate_bv_sum
    from pymatgen.core import Element

    comp = structure.composition
    if len(comp.elements) < 2:
        return None, "one element only: no ionic bond valences"
    missing = [str(el) for el in comp.elements if Element(str(el)) not in BV_PARAMS]
    if missing:
        return None, f"no bond-valence parameters for {', '.join(missing)}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        guesses = comp.oxi_state_guesses(max_sites=-1)
        if not guesses:
            return None, "no oxidation states can be guessed for this composition"
        oxi = guesses[0]
        if all(v == 0 for v in oxi.values()):
            return None, "all guessed oxidation states are 0: no ionic bond valences"
        s = structure.copy()
        s.add_oxidation_state_by_element(oxi)
        dev = []
        for site in s:
            nn = s.get_neighbors(site, cutoff)
            if not nn:
                return None, f"a {site.specie} site has no neighbour within {cutoff} A"
            dev.append(calculate_bv_sum(site, nn) - site.specie.oxi_state)  # both signed (anions < 0)
    return math.sqrt(sum(d * d for d in dev) / len(dev)), None
