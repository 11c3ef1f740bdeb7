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


#: marks an argument named inside an :class:`ArgumentError`'s detail (:func:`mention`); never part of a value or path
_MENTION = "\x1f"


def mention(arg: str) -> str:
    """Name another argument inside the detail of an :class:`ArgumentError`:
    ``f"...; use {mention('sampler')} ddim for fewer"`` reads ``sampler`` from Python and ``--sampler`` on the
    command line."""
    return f"{_MENTION}{arg}{_MENTION}"


class ArgumentError(UserError):
    """A bad value of one argument of a function, named by its Python name: ``ArgumentError("limit", f"{limit}:
    must be >= 1")`` reads ``limit=0: must be >= 1``; the command line prints the same message with the flag,
    ``--limit 0: must be >= 1`` (:meth:`render` with the flag of each argument, :func:`dpcdvae.cli.error_line`).

    ``detail`` is the text after the name: one that starts with ``":"`` or ``" "`` follows the name as it is
    (``ArgumentError("dataset", " is needed (...)")`` -> ``dataset is needed (...)``); any other starts with the
    value, after ``=`` (a space after a flag). Other arguments named in ``detail`` are written with :func:`mention`.
    ``lead=False``: the message is ``detail`` alone, which names the argument itself with :func:`mention` where it
    belongs (``ArgumentError("overrides", f"unknown config key 'a.b' ({mention('overrides')}); ...", lead=False)``
    reads ``(overrides)`` from Python and ``(--set)`` on the command line).
    ``.arg``: the argument's name; ``.detail``: the detail as given; ``.lead``: whether the message opens with the
    argument."""

    def __init__(self, arg: str, detail: str, lead: bool = True):
        self.arg, self.detail, self.lead = arg, detail, lead
        super().__init__(self.render())

    def __reduce__(self):  # picklable (e.g. raised in a worker process) although __init__ takes several arguments
        return type(self), (self.arg, self.detail, self.lead)

    def render(self, flag=None) -> str:
        """The message. ``flag``: ``None`` for the Python form (the argument's name, ``name=value``), or a function
        that gives the command-line flag of an argument name (``"batch_size"`` -> ``"--batch-size"``) for the form
        the command line prints (``--flag value``)."""
        name = flag or (lambda arg: arg)
        sep = "" if self.detail[:1] in (":", " ") else ("=" if flag is None else " ")
        text = f"{name(self.arg)}{sep}{self.detail}" if self.lead else self.detail
        parts = text.split(_MENTION)
        parts[1::2] = [name(arg) for arg in parts[1::2]]
        return "".join(parts)


class CheckpointArgumentError(ArgumentError, CheckpointError):
    """An :class:`ArgumentError` about the checkpoint an argument names (``resume``: no checkpoint to resume from):
    still a :class:`CheckpointError` for the callers that catch one."""


class ConfigArgumentError(ArgumentError, ConfigError):
    """An :class:`ArgumentError` about a configuration an argument brings (``init_from``: a checkpoint of another
    architecture): still a :class:`ConfigError` (a ``KeyError``) for the callers that catch one."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


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
