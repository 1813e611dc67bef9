"""msgpack-rpc message shapes: valid arrays become records; invalid ones keep a known msgid."""

from __future__ import annotations

from typing import Any

import pytest

from pistond.errors import InvalidParams, InvalidRequest
from pistond.rpc.messages import (
    MalformedMessage,
    Notification,
    Request,
    Response,
    parse_message,
    to_wire,
)


def test_messages_parse_request() -> None:
    """A request's params are the one map of its params array."""
    assert parse_message([0, 3, "execute", [{"language": "py"}]]) == Request(
        3, "execute", {"language": "py"}
    )


def test_messages_empty_params_is_empty_map() -> None:
    """`[]` and `[{}]` both mean no fields."""
    assert parse_message([0, 1, "ping", []]).params == {}  # type: ignore[union-attr]
    assert parse_message([0, 1, "ping", [{}]]).params == {}  # type: ignore[union-attr]


def test_messages_parse_response_and_notification() -> None:
    """Responses keep error and result; notifications unwrap their params."""
    error = {"code": "internal", "message": "x"}
    assert parse_message([1, 9, error, None]) == Response(9, error, None)
    assert parse_message([1, 9, None, [1]]) == Response(9, None, [1])
    assert parse_message([2, "job.done", [{"job": "a"}]]) == Notification("job.done", {"job": "a"})


@pytest.mark.parametrize(
    "message",
    [
        Request(0, "ping", {}),
        Request(2**32 - 1, "execute", {"files": [b"x"]}),
        Response(5, None, {"ok": True}),
        Response(5, {"code": "forbidden", "message": "no"}),
        Notification("job.output", {"data": b"\x00"}),
    ],
)
def test_messages_round_trip(message: Any) -> None:
    """to_wire then parse_message gives the same record."""
    assert parse_message(to_wire(message)) == message


@pytest.mark.parametrize(
    ("value", "msgid", "error", "text"),
    [
        ([0, 7, "m"], 7, InvalidRequest, "request must be a 4-element array"),
        ([0, 7, "m", [], 1], 7, InvalidRequest, "request must be a 4-element array"),
        ([0, 7, 5, []], 7, InvalidRequest, "method must be a string"),
        ([0, 7, "", []], 7, InvalidRequest, "method must be 1 to 256 characters"),
        ([0, 7, "m", {}], 7, InvalidRequest, "params must be an array holding exactly one map"),
        (
            [0, 7, "m", [{}, {}]],
            7,
            InvalidRequest,
            "params must be an array holding exactly one map",
        ),
        ([0, 7, "m", [5]], 7, InvalidRequest, "params must be an array holding exactly one map"),
        ([0, 7, "m", [{b"k": 1}]], 7, InvalidParams, "params keys must be strings"),
        ([0, -1, "m", []], None, InvalidRequest, "msgid must be a uint32"),
        ([0, 2**32, "m", []], None, InvalidRequest, "msgid must be a uint32"),
        ([0, True, "m", []], None, InvalidRequest, "msgid must be a uint32"),
        ([0, "7", "m", []], None, InvalidRequest, "msgid must be a uint32"),
        ([3, 7, "m", []], None, InvalidRequest, "unknown message type 3"),
        ([True, 7, "m", []], None, InvalidRequest, "message must be a msgpack-rpc array"),
        ({"0": 1}, None, InvalidRequest, "message must be a msgpack-rpc array"),
        ([], None, InvalidRequest, "message must be a msgpack-rpc array"),
        ("ping", None, InvalidRequest, "message must be a msgpack-rpc array"),
        ([1, 7, None], None, InvalidRequest, "response must be [1, msgid, error, result]"),
        (
            [1, 7, "bad", None],
            7,
            InvalidRequest,
            "error must be nil or a map with str code and message",
        ),
        ([2, "m"], None, InvalidRequest, "notification must be a 3-element array"),
        ([2, "m", [1]], None, InvalidRequest, "params must be an array holding exactly one map"),
    ],
)
def test_messages_malformed(value: Any, msgid: int | None, error: type, text: str) -> None:
    """Each malformed shape has its error class and text, and the msgid where it is known."""
    with pytest.raises(MalformedMessage) as info:
        parse_message(value)
    assert type(info.value.error) is error
    assert info.value.error.message == text
    assert info.value.msgid == msgid
