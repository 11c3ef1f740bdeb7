"""dpcdvae: DP-CDVAE crystal structure generation (VAE + DDPM on fractional coordinates).

Paper: Pakornchote et al., "Diffusion probabilistic models enhance variational autoencoder for crystal structure
generative modeling" (2023). This package is an independent implementation.
"""
import os as _os

# Measured here: on a busy machine, OpenMP's default busy-waiting made small torch ops ~10-100x slower;
# passive waiting fixes it. Only a default (set before torch is imported); export OMP_WAIT_POLICY to override.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
