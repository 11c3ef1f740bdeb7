"""Exceptions shared by several modules (no imports, so every module may use them)."""


class CheckpointError(ValueError):
    """A checkpoint or shipped-model file that is missing, truncated or not written by dpcdvae (the message names
    the file)."""
