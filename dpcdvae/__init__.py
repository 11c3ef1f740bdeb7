"""dpcdvae: DP-CDVAE crystal structure generation (VAE + DDPM on fractional coordinates).

Paper: Pakornchote et al., "Diffusion probabilistic models enhance variational autoencoder for crystal structure
generative modeling" (2023). This package is an independent implementation.
"""
__version__ = "0.1.0"
