"""Crystal math in batched torch, plus conversion to and from pymatgen and ASE.

Conventions (see docs/ARCHITECTURE.md):

* ``lattice`` is ``[B, 3, 3]`` with the lattice vectors a, b, c as **rows**, in Angstrom (pymatgen's convention),
  so Cartesian = fractional @ lattice.
* lengths in Angstrom, angles in degrees (alpha = angle(b, c), beta = angle(a, c), gamma = angle(a, b)).
* ``batch [N]`` maps each atom to its crystal; ``num_atoms [B]`` counts atoms per crystal.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

# local: heavy -- pymatgen (and ase through it) is imported inside the converters; the models import this module
from ..utils.fileio import atomic_write_text
from .validity import canonicalize_structure  # noqa: F401 - the one canonicaliser (torch-free), re-exported

MAX_ATOMIC_NUM = 100

__all__ = [
    "MAX_ATOMIC_NUM",
    "lattice_params_to_matrix",
    "matrix_to_lattice_params",
    "frac_to_cart",
    "cart_to_frac",
    "wrap",
    "volume",
    "batch_from_num_atoms",
    "min_image_distance_matrix",
    "min_pair_distance",
    "structure_to_tensors",
    "tensors_to_structures",
    "structure_to_atoms",
    "atoms_to_structure",
    "write_cif",
    "canonicalize_structure",
]


def lattice_params_to_matrix(lengths: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Lattice parameters -> lattice matrix (rows = vectors), pymatgen's ``Lattice.from_parameters`` convention.

    Args:
        lengths: ``[B, 3]`` (or ``[3]``) a, b, c in Angstrom.
        angles: ``[B, 3]`` (or ``[3]``) alpha, beta, gamma in degrees.
    Returns:
        ``[B, 3, 3]`` (or ``[3, 3]``) lattice matrix in Angstrom; c is along z-ish as pymatgen builds it
        (a in the xz plane, c along z).
    """
    squeeze = lengths.dim() == 1
    if squeeze:
        lengths, angles = lengths[None], angles[None]
    rad = torch.deg2rad(angles)
    cos_a, cos_b, cos_g = torch.cos(rad).unbind(-1)
    sin_a, sin_b = torch.sin(rad[..., 0]), torch.sin(rad[..., 1])
    val = (cos_a * cos_b - cos_g) / (sin_a * sin_b)
    val = val.clamp(-1.0, 1.0)
    gamma_star = torch.arccos(val)
    a, b, c = lengths.unbind(-1)
    zero = torch.zeros_like(a)
    vec_a = torch.stack([a * sin_b, zero, a * cos_b], dim=-1)
    vec_b = torch.stack([-b * sin_a * torch.cos(gamma_star), b * sin_a * torch.sin(gamma_star), b * cos_a], dim=-1)
    vec_c = torch.stack([zero, zero, c], dim=-1)
    out = torch.stack([vec_a, vec_b, vec_c], dim=-2)
    return out[0] if squeeze else out


def matrix_to_lattice_params(lattice: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Lattice matrix ``[B,3,3]`` (rows = vectors, Angstrom) -> (lengths ``[B,3]`` A, angles ``[B,3]`` degrees)."""
    lengths = lattice.norm(dim=-1)
    a, b, c = lattice.unbind(-2)

    def _angle(u, v, nu, nv):
        cos = (u * v).sum(-1) / (nu * nv)
        return torch.rad2deg(torch.arccos(cos.clamp(-1.0, 1.0)))

    la, lb, lc = lengths.unbind(-1)
    angles = torch.stack([_angle(b, c, lb, lc), _angle(a, c, la, lc), _angle(a, b, la, lb)], dim=-1)
    return lengths, angles


def batch_from_num_atoms(num_atoms: torch.Tensor) -> torch.Tensor:
    """``[B]`` atom counts -> ``[N]`` batch vector (crystal index of every atom)."""
    return torch.repeat_interleave(torch.arange(num_atoms.numel(), device=num_atoms.device), num_atoms)


def frac_to_cart(frac: torch.Tensor, lattice: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
    """Fractional ``[N,3]`` -> Cartesian ``[N,3]`` (Angstrom) with per-atom lattice ``lattice[batch]``."""
    return torch.einsum("ni,nij->nj", frac, lattice.index_select(0, batch))


def cart_to_frac(cart: torch.Tensor, lattice: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
    """Cartesian ``[N,3]`` (Angstrom) -> fractional ``[N,3]`` (not wrapped)."""
    inv = torch.linalg.inv(lattice)
    return torch.einsum("ni,nij->nj", cart, inv.index_select(0, batch))


def wrap(x: torch.Tensor) -> torch.Tensor:
    """The periodic wrap pi(r) = r - floor(r) of the paper (Eq. 3): maps fractional coordinates into [0, 1).

    The package's one wrap of tensors (:func:`dpcdvae.diffusion.periodic_wrap` is this function). Any shape, dtype
    and device are kept; a result that rounds to 1.0 (``x`` a tiny negative number) is mapped to 0."""
    out = x - torch.floor(x)
    # floating point: x - floor(x) can round to exactly 1.0 for tiny negative x
    return torch.where(out >= 1.0, out - 1.0, out)


def volume(lattice: torch.Tensor) -> torch.Tensor:
    """Signed cell volume ``det(lattice)`` in Angstrom^3, shape ``[B]`` (positive for a right-handed cell)."""
    return torch.linalg.det(lattice)


def min_image_distance_matrix(frac: torch.Tensor, lattice: torch.Tensor, n_images: int | None = None
                              ) -> torch.Tensor:
    """Minimum-image distances between all atoms of ONE crystal.

    Args:
        frac: ``[n, 3]`` fractional coordinates (wrapped or not).
        lattice: ``[3, 3]`` lattice matrix (rows = vectors, Angstrom).
        n_images: images searched per direction (-n..n). ``None`` (default) picks, per direction, enough images for
            the result to be exact for any cell shape (needle-like and very oblique cells included).
    Returns:
        ``[n, n]`` distances in Angstrom; the diagonal holds the shortest *non-zero* self-image distance
        (the length of the shortest lattice vector).
    """
    n = frac.shape[0]
    diff = frac[None, :, :] - frac[:, None, :]  # [n,n,3] j - i
    diff = diff - torch.round(diff)  # in [-0.5, 0.5]
    if n_images is None:
        # every distance is at most `bound` (the n = 0 image of a pair, or a lattice vector for the diagonal), and
        # |(d + m) L| <= bound needs |d_k + m_k| <= bound / spacing_k, spacing_k = V / |a_l x a_m|
        lat = lattice.detach()
        bound = (diff.detach() @ lat).norm(dim=-1).max() if n else lat.new_zeros(())
        bound = torch.maximum(bound, lat.norm(dim=-1).min())
        a, b, c = lat.unbind(0)
        cross = torch.stack([torch.linalg.cross(b, c), torch.linalg.cross(c, a), torch.linalg.cross(a, b)])
        spacing = torch.linalg.det(lat).abs() / cross.norm(dim=-1)
        reach = torch.ceil(bound / spacing + 0.5).long().tolist()
    else:
        reach = [int(n_images)] * 3
    axes = [torch.arange(-k, k + 1, dtype=frac.dtype, device=frac.device) for k in reach]
    images = torch.cartesian_prod(*axes)  # [K,3]
    shifted = diff[:, :, None, :] + images[None, None]  # [n,n,K,3]
    d = (shifted @ lattice).norm(dim=-1)  # [n,n,K]
    eye = torch.eye(n, dtype=torch.bool, device=frac.device)
    zero_img = images.abs().sum(-1) == 0
    d = torch.where(eye[:, :, None] & zero_img[None, None], torch.full_like(d, float("inf")), d)
    return d.min(dim=-1).values


def min_pair_distance(frac: torch.Tensor, lattice: torch.Tensor, n_images: int | None = None) -> float:
    """Smallest periodic interatomic distance of one crystal (Angstrom), self-images included."""
    return float(min_image_distance_matrix(frac, lattice, n_images).min())


# ---------------------------------------------------------------------------------------------------------------
# pymatgen / ASE conversion
# ---------------------------------------------------------------------------------------------------------------

def structure_to_tensors(structure) -> dict:
    """pymatgen ``Structure`` -> dict of tensors: frac_coords [n,3], atom_types [n] (Z), lengths [3] (A), angles [3]
    (degrees)."""
    lat = structure.lattice
    return {
        "frac_coords": torch.tensor(np.asarray(structure.frac_coords), dtype=torch.float32),
        "atom_types": torch.tensor([site.specie.Z for site in structure], dtype=torch.long),
        "lengths": torch.tensor(lat.abc, dtype=torch.float32),
        "angles": torch.tensor(lat.angles, dtype=torch.float32),
    }


def tensors_to_structures(frac_coords, atom_types, lengths, angles, num_atoms, wrap_coords: bool = True,
                          strict: bool = False) -> list:
    """Batched tensors -> list of pymatgen ``Structure`` (one per crystal).

    Args:
        frac_coords ``[N,3]``, atom_types ``[N]`` (Z), lengths ``[B,3]`` (A), angles ``[B,3]`` (degrees),
        num_atoms ``[B]``: tensors or array-likes on any device. ``wrap_coords`` wraps the coordinates into [0, 1).

    A degenerate crystal (no atoms, non-finite numbers, non-positive lengths, angles that cannot close a cell,
    volume < 0.1 A^3, atomic number outside 1..100) gives ``None`` in its slot (or raises ``ValueError`` with
    ``strict=True``); the rest of the batch is unaffected. Inconsistent sizes (``num_atoms`` not summing to the
    number of atoms) raise ``ValueError``.
    """
    from pymatgen.core import Lattice, Structure

    frac_coords = torch.as_tensor(frac_coords).detach().cpu().double()
    atom_types = torch.as_tensor(atom_types).detach().cpu().long()
    lengths = torch.as_tensor(lengths).detach().cpu().double().reshape(-1, 3)
    angles = torch.as_tensor(angles).detach().cpu().double().reshape(-1, 3)
    num_atoms = torch.as_tensor(num_atoms).detach().cpu().long().reshape(-1)
    if num_atoms.numel() != lengths.shape[0] or num_atoms.numel() != angles.shape[0]:
        raise ValueError(f"{num_atoms.numel()} crystals in num_atoms but {lengths.shape[0]} lengths / "
                         f"{angles.shape[0]} angles")
    total = int(num_atoms.clamp(min=0).sum())
    if frac_coords.shape[0] != total or atom_types.shape[0] != total:
        raise ValueError(f"num_atoms sums to {total} but there are {frac_coords.shape[0]} coordinates and "
                         f"{atom_types.shape[0]} atom types")
    if wrap_coords:
        frac_coords = wrap(frac_coords)
    out = []
    start = 0
    for b, n in enumerate(num_atoms.tolist()):
        n = max(n, 0)
        fc = frac_coords[start:start + n]
        z = atom_types[start:start + n]
        start += n
        reason = None
        if n <= 0:
            reason = "no atoms"
        elif not (torch.isfinite(lengths[b]).all() and torch.isfinite(angles[b]).all() and torch.isfinite(fc).all()):
            reason = "non-finite lattice or coordinates"
        elif (lengths[b] <= 0).any():
            reason = "non-positive lattice length"
        elif ((z < 1) | (z > MAX_ATOMIC_NUM)).any():
            reason = "atomic number outside 1..100"
        else:
            # the three angles must be able to close a cell: V = abc sqrt(g), g > 0 (pymatgen would otherwise clamp
            # silently and build a cell with other angles)
            ca, cb, cg = torch.cos(torch.deg2rad(angles[b])).tolist()
            g = 1.0 - ca * ca - cb * cb - cg * cg + 2.0 * ca * cb * cg
            if not g > 1e-8:
                reason = f"angles {angles[b].tolist()} do not form a cell (volume factor {g:.3g})"
        if reason is None:
            try:
                lat = Lattice.from_parameters(*lengths[b].tolist(), *angles[b].tolist())
                if not np.isfinite(lat.volume) or lat.volume < 0.1:
                    reason = f"volume {lat.volume:.3g} A^3 < 0.1"
                else:
                    out.append(Structure(lat, z.tolist(), fc.numpy(), coords_are_cartesian=False))
                    continue
            except Exception as exc:  # pragma: no cover - pymatgen edge cases
                reason = f"pymatgen could not build the lattice: {exc}"
        if strict:
            raise ValueError(f"crystal {b} is degenerate: {reason}")
        out.append(None)
    return out


def structure_to_atoms(structure):
    """pymatgen ``Structure`` -> ASE ``Atoms`` (periodic in all three directions)."""
    from pymatgen.io.ase import AseAtomsAdaptor

    return AseAtomsAdaptor.get_atoms(structure)


def atoms_to_structure(atoms):
    """ASE ``Atoms`` -> pymatgen ``Structure``."""
    from pymatgen.io.ase import AseAtomsAdaptor

    return AseAtomsAdaptor.get_structure(atoms)


def write_cif(structure, path: str | os.PathLike, symprec: float | None = 0.1) -> Path:
    """Write a CIF, with the space group detected (pymatgen ``CifWriter(symprec=...)``), atomically.

    If symmetry detection fails (degenerate cells) a P1 CIF is written instead. Returns the path written.
    """
    from pymatgen.io.cif import CifWriter

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        text = str(CifWriter(structure, symprec=symprec)) if symprec else str(CifWriter(structure))
    except Exception:
        text = str(CifWriter(structure))
    return atomic_write_text(path, text)
