"""The exception every command turns into one ``error: ...`` line and exit status 2."""

__all__ = ["InputError"]


class InputError(Exception):
    """Bad user input (missing or malformed file or field). Scripts print it and exit non-zero."""
