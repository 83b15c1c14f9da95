"""The app's own error types; each maps to an exit code."""

from __future__ import annotations


class SyftBgError(Exception):
    """An error with a message meant for the person at the terminal."""

    exit_code = 1


class ConfigError(SyftBgError):
    """Bad configuration or usage: exit 2, nothing changed."""

    exit_code = 2


class UsageError(SyftBgError):
    exit_code = 2


class NotFoundError(SyftBgError):
    """A job or peer named on the command line does not exist (or is ambiguous)."""

    exit_code = 2


class AmbiguousError(NotFoundError):
    """A short name that fits more than one job: the person must name one."""


class BusyError(SyftBgError):
    """Another pass holds the app lock for longer than a command may wait."""

    exit_code = 1
