"""msgpack-rpc messages: typed records for ``[0, ...]``, ``[1, ...]`` and ``[2, ...]`` arrays.

This layer sits on :mod:`pistond.rpc.framing` (decoded values in) and exposes
:class:`Request`, :class:`Response` and :class:`Notification` with :func:`parse_message` and
:func:`to_wire`. Shapes are PROTOCOL.md's: ``msgid`` a uint32, ``method`` a str, ``params`` an
array holding exactly one map with str keys (or empty, meaning no fields).
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any, Final

import attrs

from pistond.errors import InvalidParams, InvalidRequest, PistondError

MAX_MSGID: Final = 2**32 - 1
MAX_METHOD_LENGTH: Final = 256


class MessageType(IntEnum):
    """The first element of every msgpack-rpc message."""

    REQUEST = 0
    RESPONSE = 1
    NOTIFICATION = 2


@attrs.frozen
class Request:
    """A call that expects a :class:`Response` with the same msgid."""

    msgid: int
    method: str
    params: dict[str, Any]
    """The fields of the one-element params array; ``{}`` for ``[]``."""


@attrs.frozen
class Response:
    """The answer to the request with the same msgid."""

    msgid: int
    error: dict[str, Any] | None
    """PROTOCOL.md's error map, or None on success."""
    result: Any = None


@attrs.frozen
class Notification:
    """A one-way message; nothing answers it."""

    method: str
    params: dict[str, Any]


Message = Request | Response | Notification


class MalformedMessage(Exception):
    """Raised by :func:`parse_message` when a decoded value is not a valid message.

    Args:
        error: the PistondError to answer with (``invalid_request`` or ``invalid_params``).
        msgid: the request's msgid when it could be read, so the error can be answered.
    """

    def __init__(self, error: PistondError, msgid: int | None) -> None:
        super().__init__(error.message)
        self.error = error
        self.msgid = msgid


def _is_int(value: object) -> bool:
    return type(value) is int


def _valid_msgid(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_MSGID


def _check_method(value: object, msgid: int | None) -> str:
    if not isinstance(value, str):
        raise MalformedMessage(InvalidRequest("method must be a string"), msgid)
    if not value or len(value) > MAX_METHOD_LENGTH:
        raise MalformedMessage(
            InvalidRequest(f"method must be 1 to {MAX_METHOD_LENGTH} characters"), msgid
        )
    return value


def _check_params(value: object, msgid: int | None) -> dict[str, Any]:
    if not isinstance(value, list) or len(value) > 1:
        raise MalformedMessage(
            InvalidRequest("params must be an array holding exactly one map"), msgid
        )
    if not value:
        return {}
    fields = value[0]
    if not isinstance(fields, dict):
        raise MalformedMessage(
            InvalidRequest("params must be an array holding exactly one map"), msgid
        )
    if not all(isinstance(key, str) for key in fields):
        raise MalformedMessage(InvalidParams("params keys must be strings"), msgid)
    return fields


def _check_error(value: object, msgid: int) -> dict[str, Any] | None:
    if value is None:
        return None
    if (
        not isinstance(value, dict)
        or not isinstance(value.get("code"), str)
        or not isinstance(value.get("message"), str)
    ):
        raise MalformedMessage(
            InvalidRequest("error must be nil or a map with str code and message"), msgid
        )
    return value


def parse_message(value: Any) -> Message:
    """The typed message a decoded msgpack value holds.

    Raises:
        MalformedMessage: the value is not a valid msgpack-rpc message; its ``msgid`` is set
            when the value is a request whose msgid could be read.
    """
    if not isinstance(value, list) or not value or not _is_int(value[0]):
        raise MalformedMessage(InvalidRequest("message must be a msgpack-rpc array"), None)
    kind = value[0]
    if kind == MessageType.REQUEST:
        msgid = value[1] if len(value) > 1 and _valid_msgid(value[1]) else None
        if len(value) != 4:
            raise MalformedMessage(InvalidRequest("request must be a 4-element array"), msgid)
        if msgid is None:
            raise MalformedMessage(InvalidRequest("msgid must be a uint32"), None)
        method = _check_method(value[2], msgid)
        return Request(msgid, method, _check_params(value[3], msgid))
    if kind == MessageType.RESPONSE:
        if len(value) != 4 or not _valid_msgid(value[1]):
            raise MalformedMessage(
                InvalidRequest("response must be [1, msgid, error, result]"), None
            )
        msgid = value[1]
        return Response(msgid, _check_error(value[2], msgid), value[3])
    if kind == MessageType.NOTIFICATION:
        if len(value) != 3:
            raise MalformedMessage(InvalidRequest("notification must be a 3-element array"), None)
        method = _check_method(value[1], None)
        return Notification(method, _check_params(value[2], None))
    raise MalformedMessage(InvalidRequest(f"unknown message type {kind}"), None)


def to_wire(message: Message) -> list[Any]:
    """The msgpack-rpc array of a message, ready for :func:`pistond.rpc.framing.pack`."""
    if isinstance(message, Request):
        return [MessageType.REQUEST.value, message.msgid, message.method, [message.params]]
    if isinstance(message, Response):
        return [MessageType.RESPONSE.value, message.msgid, message.error, message.result]
    return [MessageType.NOTIFICATION.value, message.method, [message.params]]
