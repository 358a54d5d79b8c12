"""Errors a user can cause: reported as one line on stderr with exit code 2."""


class UserError(Exception):
    """Bad input (a missing file, a model that does not load, a shape that does not fit)."""


def first_line(error: BaseException) -> str:
    """The first line of an exception's message, or its type when it has none."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
