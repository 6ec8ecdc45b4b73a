"""Errors meant for people: each names the problem and the place (file, line, config key)."""


class RecplatError(Exception):
    """Base class; the CLI prints these without a traceback and exits with status 2."""


class ConfigError(RecplatError):
    """A config file, key or value is wrong: the message names the file and the key."""


class DataError(RecplatError):
    """Input data is malformed or missing: the message names the file (and line, when known)."""
