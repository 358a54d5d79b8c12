"""Errors a user can cause: reported as one line on stderr with exit code 2."""


class UserError(Exception):
    """Bad input (a missing file, a model that does not load, a shape that does not fit)."""
