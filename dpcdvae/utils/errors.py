"""Exceptions shared by several modules (no imports, so every module may use them)."""


class CheckpointError(ValueError):
    """A checkpoint or shipped-model file that is missing, truncated or not written by dpcdvae (the message names
    the file)."""


class ConfigError(KeyError):
    """An unknown configuration key (``--set a.b=...``) or config name. A ``KeyError`` for old callers; its message
    prints without the quotes ``KeyError`` adds."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class ConfigValueError(ConfigError, ValueError):
    """A configuration value of the wrong type, out of range or not an allowed value (``--set train.lr=-1``): the
    message names the key, the value and what is allowed. Both a :class:`ConfigError` and a ``ValueError``."""


class UserError(ValueError):
    """A mistake in what the user asked for (argument, incompatible option, an empty or unreadable input): the
    command line prints it as one line and exits with status 2."""


class SamplerError(UserError):
    """A sampler name the model does not run (e.g. ``eq6`` on a CDVAE checkpoint, ``langevin`` on DP-CDVAE); the
    message lists the ones it does."""


class PretrainedNotFoundError(FileNotFoundError):
    """No shipped model of that name (``pretrained:<name>``)."""


class UnknownDatasetError(UserError, KeyError):
    """A dataset name that is neither registered (:mod:`dpcdvae.data.registry`) nor an alias of one. A
    ``ValueError``/:class:`UserError` (printed as one line) and, for old callers, a ``KeyError`` (printed without
    the quotes ``KeyError`` adds)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class TrainingDiverged(RuntimeError):
    """Training stopped because its gradients stayed non-finite (the message gives the step and where the last good
    weights are); ``dpcdvae train`` prints it as one line and exits with status 1."""
