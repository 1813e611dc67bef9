"""The pistond error hierarchy: each RPC-facing error carries a stable PROTOCOL.md code.

What happens to a program (timeout, OOM kill, signal, output cap) is a status in its
result, never an exception; these errors are about requests, packages and the daemon.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, ClassVar


class ErrorCode(StrEnum):
    """The error codes of PROTOCOL.md, as sent on the wire."""

    INVALID_REQUEST = "invalid_request"
    METHOD_NOT_FOUND = "method_not_found"
    INVALID_PARAMS = "invalid_params"
    RUNTIME_UNKNOWN = "runtime_unknown"
    OVERLOADED = "overloaded"
    PACKAGE_NOT_FOUND = "package_not_found"
    PACKAGE_ERROR = "package_error"
    JOB_NOT_FOUND = "job_not_found"
    FORBIDDEN = "forbidden"
    KILLED = "killed"
    INTERNAL = "internal"


class PistondError(Exception):
    """Base of every error that crosses the RPC boundary.

    Args:
        message: human text sent to the peer; never holds host paths or tracebacks.
        data: optional extra payload sent as the error's ``data``.
    """

    code: ClassVar[ErrorCode] = ErrorCode.INTERNAL

    def __init__(self, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data

    def to_wire(self) -> dict[str, Any]:
        """The PROTOCOL.md error map for this error."""
        wire: dict[str, Any] = {"code": str(self.code), "message": self.message}
        if self.data is not None:
            wire["data"] = self.data
        return wire


class InvalidRequest(PistondError):
    """Raised by the RPC layer when a message is not a valid msgpack-rpc request."""

    code = ErrorCode.INVALID_REQUEST


class MethodNotFound(PistondError):
    """Raised by the dispatcher when a request names a method it does not have."""

    code = ErrorCode.METHOD_NOT_FOUND


class InvalidParams(PistondError):
    """Raised by request validation when a field is missing, mistyped or out of range."""

    code = ErrorCode.INVALID_PARAMS


class RuntimeUnknown(PistondError):
    """Raised by runtime resolution when no installed runtime matches language and version."""

    code = ErrorCode.RUNTIME_UNKNOWN


class Overloaded(PistondError):
    """Raised by the job queue when it is full or a job waited longer than the queue timeout."""

    code = ErrorCode.OVERLOADED


class PackageNotFound(PistondError):
    """Raised by the package manager when no recipe or index entry matches a request."""

    code = ErrorCode.PACKAGE_NOT_FOUND


class PackageError(PistondError):
    """Raised by the package manager when a build, download, check or removal fails."""

    code = ErrorCode.PACKAGE_ERROR


class JobNotFound(PistondError):
    """Raised by interactive calls naming a job this connection does not own."""

    code = ErrorCode.JOB_NOT_FOUND


class Forbidden(PistondError):
    """Raised by the dispatcher when the peer's credentials may not call a method."""

    code = ErrorCode.FORBIDDEN


class JobKilled(PistondError):
    """Reported in ``job.done`` when an interactive job was killed before it finished.

    By ``job.kill``, or by the daemon when the job's client left too many of its notifications
    unread; the message says which.
    """

    code = ErrorCode.KILLED


class InternalError(PistondError):
    """Raised where a bug or a sandbox setup failure must reach the peer without internals."""

    code = ErrorCode.INTERNAL


class ConfigError(Exception):
    """Raised by configuration loading when a setting has a bad value.

    Args:
        variable: the setting's name as the user wrote it, e.g. ``PISTON_RUN_TIMEOUT``.
        reason: what is wrong with it, without a trailing period.
    """

    def __init__(self, variable: str, reason: str) -> None:
        super().__init__(f"{variable}: {reason}")
        self.variable = variable
        self.reason = reason


class SandboxError(Exception):
    """Raised by the sandbox when a stage could not be set up; jobs report it as status XX."""
