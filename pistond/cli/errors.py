"""Errors of the ``piston`` command: its own, and finding the daemon's inside trio's groups."""

from __future__ import annotations

from typing import TypeVar

E = TypeVar("E", bound=BaseException)


class CliError(Exception):
    """Raised by ``piston``'s subcommands for a user-facing error; printed as one line."""


def find_error(error: BaseException, kind: type[E]) -> E | None:
    """``error`` itself, or the first ``kind`` inside its (nested) exception groups.

    Calls that run tasks in a nursery (an interactive job, an install with progress) raise the
    daemon's error wrapped in an exception group.
    """
    if isinstance(error, kind):
        return error
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            if (found := find_error(inner, kind)) is not None:
                return found
    return None
