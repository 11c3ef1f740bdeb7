"""dpcdvae.nets."""
