"""Issue 28, item 5c: ``relax`` headlines the volume and enthalpy changes (before any match rate), and Fig. S2 draws
no "mode" for fewer than 30 crystals."""
from __future__ import annotations

import numpy as np

from dpcdvae.cli import main


def _write_cu(folder, a_values):
    from pymatgen.core import Lattice, Structure

    folder.mkdir(parents=True, exist_ok=True)
    for k, a in enumerate(a_values):
        Structure(Lattice.cubic(a), ["Cu"] * 4, [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]).to(
            filename=str(folder / f"cu{k}.cif"))
    return folder


def test_relax_headlines_volume_and_enthalpy(tmp_path, capsys):
    src = _write_cu(tmp_path / "gen", [3.9, 3.95])  # EMT's Cu sits at a = 3.59 A: both cells shrink by ~20 %
    rc = main(["relax", str(src), "--calculator", "emt", "--no-batch", "--max-steps", "200", "--no-progress",
               "--out", str(tmp_path / "rel")])
    out = capsys.readouterr().out
    assert rc in (0, None), out
    lines = out.splitlines()
    head = next(i for i, ln in enumerate(lines) if ln.startswith("on relaxing 2 crystals: volume"))
    rate = next(i for i, ln in enumerate(lines) if ln.startswith("match rate"))
    assert head < rate, out
    pct = float(lines[head].split("volume ")[1].split(" %")[0])
    assert -35.0 < pct < -10.0, lines[head]
    assert "enthalpy H = E + pV" in lines[head] and "meV/atom" in lines[head]


def _texts(fig):
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def test_no_mode_for_a_handful():
    from dpcdvae.viz import MIN_N_FOR_MODE, plot_delta_e_vs_paper

    few = plot_delta_e_vs_paper({"ours": [10.0, 50.0, 70.0, 300.0]})
    assert not any(t.startswith("mode:") for t in _texts(few))
    assert any(f"n = 4 < {MIN_N_FOR_MODE}: no mode drawn" in t for t in _texts(few))
    many = plot_delta_e_vs_paper({"ours": list(np.random.default_rng(0).normal(100, 30, 40))})
    assert any(t.startswith("mode:") for t in _texts(many))
