"""Errors a user can act on: bad input and bad configuration, each with a one-line message."""


class AlprError(Exception):
    """Base of the errors the command line reports as one line, without a traceback."""


class InputError(AlprError):
    """A source, image or job that cannot be used: missing file, corrupt video, unreachable URL."""


class ConfigError(AlprError):
    """A setting or cameras file that fails validation; the message names the field."""


class OutputError(AlprError):
    """An output that could not be written whole (a full disk, a failing encoder); the message names it."""
