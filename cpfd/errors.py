"""User-facing errors: the CLI prints their message (no traceback) and exits non-zero."""


class CpfdError(Exception):
    """A problem with the user's input or environment, explained in the message."""


class ConfigError(CpfdError):
    """A config file or override is invalid."""


class DataContractError(CpfdError):
    """A table or frame file breaks the data contract; the message names file and column."""
