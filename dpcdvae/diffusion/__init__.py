"""dpcdvae.diffusion."""
