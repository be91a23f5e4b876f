"""Exceptions raised by rnnlab.

Every error a user can cause derives from :class:`RnnlabError`, so the CLI can turn it into one
line on stderr and exit code 2. Errors about a bad value are also ``ValueError``s, so plain Python
code that catches ``ValueError`` keeps working.
"""


class RnnlabError(Exception):
    """Base class of the errors rnnlab raises on purpose."""


class ConfigError(RnnlabError, ValueError):
    """A parameter has a value that is not allowed; the message names it and what is allowed."""


class BackendError(RnnlabError, RuntimeError):
    """The requested array backend cannot be used here (not installed, or no GPU visible)."""


class DivergenceError(RnnlabError, RuntimeError):
    """Training produced a non-finite loss or gradient norm; the last good checkpoint is kept."""


class CheckpointError(RnnlabError, OSError):
    """A checkpoint is missing, unreadable or does not match the run being resumed."""


class SinkError(RnnlabError, OSError):
    """A run's records or checkpoint could not be written (full disk, unusable folder, a folder
    in use by another run); what was written before is intact."""

