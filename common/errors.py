"""Errors a user can act on: bad input and bad configuration, each with a one-line message."""


class AlprError(Exception):
    """Base of the errors the command line reports as one line, without a traceback."""


class InputError(AlprError):
    """A source, image or job that cannot be used: missing file, corrupt video, unreachable URL."""


class ConfigError(AlprError):
    """A setting or cameras file that fails validation; the message names the field."""


class OutputError(AlprError):
    """An output that could not be written whole (a full disk, a failing encoder); the message names it."""


def where_raised(error: BaseException, frames: int = 4) -> str:
    """An error told by its type and where it was raised (its innermost `frames` frames: file, line, function),
    never its text, which may quote a URL's token or a plate: what a DEBUG line may carry where the text may not
    (a traceback's last line is the text)."""
    import traceback

    stack = traceback.extract_tb(error.__traceback__)[-frames:]
    return f"{type(error).__name__} at " + " <- ".join(f"{f.filename}:{f.lineno} ({f.name})" for f in reversed(stack))
