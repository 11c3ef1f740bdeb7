"""The CHGNet wrapper: :func:`load_chgnet` (the pretrained model, loaded once per process and device) and
:class:`CHGNetBatchPredictor` (batched energies, forces and stresses with one backward pass)."""
from __future__ import annotations

import contextlib
import io
import warnings
from typing import Any, Sequence

import numpy as np
import torch

from .io import _bare

# local: heavy / optional -- chgnet, ase and pymatgen are imported inside the functions (the workflows import this
# package; chgnet is optional)

__all__ = ["load_chgnet", "CHGNetBatchPredictor"]

_MODEL_CACHE: dict[tuple[str, str], Any] = {}


def load_chgnet(model_name: str = "0.3.0", device: str = "cpu"):
    """The pretrained CHGNet (weights from inside the ``chgnet`` wheel; never downloads), loaded once per process
    and ``(model_name, device)`` and reused (in eval mode; the model object is CHGNet's own, unmodified)."""
    key = (str(model_name), str(device))
    if key not in _MODEL_CACHE:
        from chgnet.model import CHGNet

        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = CHGNet.load(model_name=model_name, use_device=device, verbose=False)
        model.eval()
        _MODEL_CACHE[key] = model
    return _MODEL_CACHE[key]


class CHGNetBatchPredictor:
    """Batch predictor: ``predictor(list[ase.Atoms]) -> list[dict]`` with ``energy`` (eV, total), ``free_energy``,
    ``forces`` ([n, 3] eV/A) and ``stress`` (Voigt 6, eV/A^3, ASE convention) for every structure, from batched
    CHGNet calls of at most ``batch_size`` structures.

    ``fast=True`` (default) runs CHGNet's forward pass on the graph batch and ONE backward pass giving forces and
    stresses together, without ``create_graph`` (stock ``CHGNet.predict_graph`` does two backward passes that build
    a double-backward graph, needed for training only); same numbers to float32 round-off. It relies on CHGNet's
    ``BatchedGraph.from_graphs`` and ``CHGNet._compute`` (checked with chgnet 0.4.2) and falls back to the public
    ``predict_graph`` if they change. ``calls`` / ``n_evaluated`` count batched calls and structures evaluated.
    """

    def __init__(self, model=None, model_name: str = "0.3.0", device: str = "cpu", batch_size: int = 64,
                 fast: bool = True):
        self.model = model if model is not None else load_chgnet(model_name, device)
        self.device = device
        self.batch_size = int(batch_size)
        self.fast = bool(fast)
        self.calls = 0
        self.n_evaluated = 0
        version = getattr(self.model, "version", None) or model_name
        self.name = f"chgnet-{version}"

    def __repr__(self) -> str:
        return f"CHGNetBatchPredictor({self.name}, device={self.device}, fast={self.fast})"

    def _graphs(self, atoms_list):
        from pymatgen.io.ase import AseAtomsAdaptor

        graphs = []
        for a in atoms_list:
            s = AseAtomsAdaptor.get_structure(_bare(a))
            graphs.append(self.model.graph_converter(s).to(self.device))
        return graphs

    def _fast(self, graphs):
        from chgnet.model.model import BatchedGraph

        m = self.model
        with torch.enable_grad():
            bg = BatchedGraph.from_graphs(graphs, bond_basis_expansion=m.bond_basis_expansion,
                                          angle_basis_expansion=m.angle_basis_expansion, compute_stress=True)
            pred = m._compute(bg, compute_force=False, compute_stress=False)
            n_per = pred["atoms_per_graph"]
            e_model = pred["e"]  # eV/atom when the model is intensive (CHGNet is), before the AtomRef shift
            e_total = (e_model * n_per).sum() if m.is_intensive else e_model.sum()
            grads = torch.autograd.grad(e_total, [*bg.atom_positions, *bg.strains])
        k = len(graphs)
        comp = m.composition_model(graphs) if m.composition_model is not None else 0.0
        e = (e_model + comp).detach().cpu().numpy()
        out = []
        for i in range(k):
            stress_gpa = (grads[k + i] / bg.volumes[i] * 160.21766208).detach().cpu().numpy()
            out.append({"e": float(e[i]), "f": -grads[i].detach().cpu().numpy(), "s": stress_gpa})
        return out

    def _stock(self, graphs):
        preds = self.model.predict_graph(graphs, task="efs", batch_size=self.batch_size)
        if not isinstance(preds, list):
            preds = [preds]
        return [{"e": float(p["e"]), "f": p["f"], "s": p["s"]} for p in preds]

    def __call__(self, atoms_list: Sequence) -> list[dict]:
        from ase.stress import full_3x3_to_voigt_6_stress
        from ase.units import GPa

        atoms_list = list(atoms_list)
        out: list[dict] = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for start in range(0, len(atoms_list), self.batch_size):
                chunk = atoms_list[start:start + self.batch_size]
                graphs = self._graphs(chunk)
                preds = None
                if self.fast:
                    try:
                        preds = self._fast(graphs)
                    except (AttributeError, TypeError, KeyError):  # CHGNet internals changed: public API
                        self.fast = False
                if preds is None:
                    preds = self._stock(graphs)
                self.calls += 1
                self.n_evaluated += len(chunk)
                for a, p in zip(chunk, preds):
                    n = len(a)
                    energy = p["e"] * n if self.model.is_intensive else p["e"]
                    s = np.asarray(p["s"], dtype=float) * GPa
                    if s.shape == (3, 3):
                        s = full_3x3_to_voigt_6_stress(s)
                    out.append({"energy": float(energy), "free_energy": float(energy),
                                "forces": np.asarray(p["f"], dtype=float).reshape(n, 3), "stress": s})
        return out
