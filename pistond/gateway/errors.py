"""RPC errors and gateway failures as HTTP statuses with Piston's ``{"message"}`` body."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import attrs

from pistond.errors import ErrorCode, PistondError

if TYPE_CHECKING:
    from collections.abc import Mapping

RETRY_AFTER_SECONDS: Final = 5
"""``Retry-After`` sent with 503 answers."""
DAEMON_UNAVAILABLE: Final = "the execution daemon is unavailable, try again later"
INTERNAL: Final = "internal error"


@attrs.frozen
class HttpError(Exception):
    """Raised by request handlers for an HTTP error answer with a JSON ``{"message"}`` body."""

    status: int
    message: str
    headers: Mapping[str, str] = attrs.field(factory=dict)

    def __str__(self) -> str:
        return f"{self.status} {self.message}"


class DaemonUnavailable(Exception):
    """Raised by the daemon connection when the RPC socket cannot be reached or drops."""


def bad_request(message: str) -> HttpError:
    """A 400 with Piston's validation message."""
    return HttpError(400, message)


def unavailable(message: str = DAEMON_UNAVAILABLE) -> HttpError:
    """A 503 with ``Retry-After``."""
    return HttpError(503, message, {"Retry-After": str(RETRY_AFTER_SECONDS)})


_STATUS: Final = {
    ErrorCode.INVALID_PARAMS: 400,
    ErrorCode.RUNTIME_UNKNOWN: 400,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.PACKAGE_NOT_FOUND: 404,
    ErrorCode.PACKAGE_ERROR: 500,
    ErrorCode.JOB_NOT_FOUND: 500,
    ErrorCode.INTERNAL: 500,
    ErrorCode.INVALID_REQUEST: 500,
    ErrorCode.METHOD_NOT_FOUND: 500,
}


def from_rpc_error(
    error: PistondError,
    *,
    package: tuple[str, str] | None = None,
    uninstall: bool = False,
) -> HttpError:
    """The HTTP answer for a daemon error reply.

    Args:
        error: the error the RPC client raised.
        package: language and version of a package request, for Piston's 404 message.
        uninstall: the request was a package removal, which pistond resolves against the
            installed packages (D11): nothing installed matching gets Piston's text
            ``<language>-<version> is not installed``, as a 404 (a client error, not a server
            failure: Piston's 500 here is one of its defects).

    Returns:
        400 for ``invalid_params`` and ``runtime_unknown``, 503 with ``Retry-After`` for
        ``overloaded``, 403 for ``forbidden``, 404 for ``package_not_found``, else 500; the body
        is the daemon's message (never empty), or Piston's text where Piston has one.
    """
    code = error.code
    message = error.message if isinstance(error.message, str) and error.message else INTERNAL
    if code is ErrorCode.OVERLOADED:
        return unavailable(message)
    if code is ErrorCode.PACKAGE_NOT_FOUND and package is not None and uninstall:
        return HttpError(404, f"{package[0]}-{package[1]} is not installed")
    if code is ErrorCode.PACKAGE_NOT_FOUND and package is not None:
        message = f"Requested package {package[0]}-{package[1]} does not exist"
    if code in (ErrorCode.INVALID_REQUEST, ErrorCode.METHOD_NOT_FOUND, ErrorCode.JOB_NOT_FOUND):
        message = INTERNAL
    return HttpError(_STATUS.get(code, 500), message)
