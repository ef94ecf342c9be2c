"""Errors that mean "the user's input or environment is wrong", as opposed to a bug.

The command line prints these as one line on stderr and exits with code 2; anything else is a bug
and keeps its traceback.
"""


class ArtExtractError(Exception):
    """Bad input, bad usage or an environment problem that the user can fix; the message says how."""


class ConfigError(ArtExtractError, ValueError):
    """An unknown config key or a value of the wrong type."""


class DataError(ArtExtractError, ValueError):
    """Input files that cannot be used (unrecognisable CSV, missing images folder, ...)."""
