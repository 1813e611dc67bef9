"""pistond.gateway.errors: each daemon error code as an HTTP status and {"message"} body."""

from __future__ import annotations

import pytest

from pistond.errors import (
    Forbidden,
    InternalError,
    InvalidParams,
    InvalidRequest,
    JobNotFound,
    MethodNotFound,
    Overloaded,
    PackageError,
    PackageNotFound,
    PistondError,
    RuntimeUnknown,
)
from pistond.gateway.errors import from_rpc_error


@pytest.mark.parametrize(
    ("error", "status", "message"),
    [
        (
            InvalidParams("run_timeout must be non-negative"),
            400,
            "run_timeout must be non-negative",
        ),
        (RuntimeUnknown("x-1 runtime is unknown"), 400, "x-1 runtime is unknown"),
        (Overloaded("queue full"), 503, "queue full"),
        (Forbidden("root only"), 403, "root only"),
        (PackageError("Already installed"), 500, "Already installed"),
        (InternalError("internal error in job 12"), 500, "internal error in job 12"),
        (InternalError(""), 500, "internal error"),
        (InvalidRequest("bad message"), 500, "internal error"),
        (MethodNotFound("no method"), 500, "internal error"),
        (JobNotFound("no job"), 500, "internal error"),
    ],
)
def test_errors_rpc_codes_map_to_http(error: PistondError, status: int, message: str) -> None:
    """Each PROTOCOL.md code has its HTTP status; the message is never empty."""
    answer = from_rpc_error(error)
    assert (answer.status, answer.message) == (status, message)


def test_errors_overloaded_has_retry_after() -> None:
    """overloaded answers 503 with a positive Retry-After."""
    assert int(from_rpc_error(Overloaded("busy")).headers["Retry-After"]) > 0


def test_errors_package_not_found_uses_pistons_message() -> None:
    """package_not_found answers 404 with Piston's text naming the request."""
    answer = from_rpc_error(PackageNotFound("no recipe"), package=("node", "99"))
    assert (answer.status, answer.message) == (404, "Requested package node-99 does not exist")


def test_errors_uninstall_of_a_package_not_installed_is_a_404() -> None:
    """DELETE of nothing installed: Piston's text `<language>-<version> is not installed`, 404."""
    error = from_rpc_error(
        PackageNotFound("lua-5.4.4 is not installed"), package=("lua", "5.4.4"), uninstall=True
    )
    assert (error.status, error.message) == (404, "lua-5.4.4 is not installed")
