"""Every user-facing failure is an ``AbrlError``; the CLI prints it on one line and exits."""

from __future__ import annotations


class AbrlError(Exception):
    """Base class: a failure the user can act on. The message names the problem and the fix."""

    exit_code = 1


class ConfigError(AbrlError):
    """A configuration value is invalid or inconsistent."""

    exit_code = 2


class DatasetError(AbrlError):
    """A dataset directory is missing or does not follow the expected layout."""

    exit_code = 2


class UnsafePickleError(DatasetError):
    """A pickle asked for something other than the plain arrays and lists of its format."""


class RunDirError(AbrlError):
    """A run directory is missing, incomplete or would be overwritten without --force."""

    exit_code = 2


class TrainingError(AbrlError):
    """Training diverged or reached a state that cannot continue."""


class DependencyError(AbrlError):
    """An optional dependency is missing; the message gives the install command."""

    exit_code = 2


class ExportError(AbrlError):
    """An export failed a check; the message lists every failed check with its numbers."""


class InputError(AbrlError):
    """Images given to a model are not what it takes (rank, channels, dtype, values, files);
    ``abrl serve`` answers it with a 4xx."""

    exit_code = 2


class RuntimeBackendError(AbrlError):
    """A backend cannot run here, or does not run where it was asked to (no silent fallback)."""

    exit_code = 2


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of a third-party exception's message, to quote inside a one-line error."""
    return (str(exc).strip().splitlines() or [""])[0][:limit]
