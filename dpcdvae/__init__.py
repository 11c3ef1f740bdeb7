"""dpcdvae: DP-CDVAE crystal structure generation (VAE + DDPM on fractional coordinates).

Paper: Pakornchote et al., "Diffusion probabilistic models enhance variational autoencoder for crystal structure
generative modeling" (2023). This package is an independent implementation.

Importing it changes nothing in the process (no environment variable, no allocator setting): the entry points
(the ``dpcdvae`` command line, :func:`dpcdvae.train.train`, the notebooks' helpers) apply the process tuning of
:mod:`dpcdvae.utils.openmp` and :mod:`dpcdvae.utils.alloc`.
"""
from ._version import __version__  # noqa: F401


def load_pretrained(name: str = "perov_5", map_location: str = "cpu"):
    """Load a model shipped with the package (``"perov_5"``, ``"carbon_24"``, ``"carbon_24_cdvae"``); see
    :mod:`dpcdvae.models.pretrained` and ``dpcdvae pretrained list``."""
    # local: the root package is the public facade (importing any submodule imports it first, so it stays light)
    from .models.pretrained import load_pretrained as _load

    return _load(name, map_location=map_location)
