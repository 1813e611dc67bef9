"""Fuzz targets: the entry points that read untrusted bytes, each as ``target(data: bytes)``.

A target raises only when it finds a bug: an exception other than the documented refusal, a
broken invariant, or two parsers disagreeing about where a request ends. The same functions
run under atheris (coverage-guided, ``run.py``) and under hypothesis (``test_fuzz.py``).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Final

import h11
import wsproto
import wsproto.events
from wsproto.frame_protocol import CloseReason

from pistond.config import Limits
from pistond.errors import InvalidParams, RuntimeUnknown
from pistond.gateway import v2
from pistond.gateway.guard import Phase, RequestGuard
from pistond.rpc.framing import FramingError, MessageDecoder, pack
from pistond.rpc.messages import MalformedMessage, parse_message, to_wire
from pistond.validation import validate_execute

if TYPE_CHECKING:
    from collections.abc import Callable

MAX_MESSAGE: Final = 4096
"""The framing target's message size limit (small, to reach MessageTooLarge often)."""


def _splits(data: bytes) -> tuple[bytes, list[bytes]]:
    """The first byte chooses read sizes, the rest is the stream, cut into those reads."""
    if not data:
        return b"", []
    size, stream = data[0] % 64 + 1, data[1:]
    return stream, [stream[i : i + size] for i in range(0, len(stream), size)]


def framing(data: bytes) -> None:
    """Bytes read off the RPC socket in arbitrary pieces: values or one FramingError, then
    each value parsed as a message or refused as MalformedMessage; never more buffered than a
    message's maximum plus one read."""
    _, pieces = _splits(data)
    decoder = MessageDecoder(MAX_MESSAGE)
    for piece in pieces:
        decoder.feed(piece)
        try:
            values = list(decoder)
        except FramingError as error:
            if error.msgid is not None and not 0 <= error.msgid < 2**32:
                raise AssertionError(f"bad msgid {error.msgid}") from error
            return
        if decoder.pending > MAX_MESSAGE + len(piece):
            raise AssertionError(f"{decoder.pending} bytes buffered")
        for value in values:
            try:
                message = parse_message(value)
            except MalformedMessage:
                continue
            pack(to_wire(message))


def http_framing(data: bytes) -> None:
    """A client's bytes through the request guard, then h11 as the gateway's server runs it:
    h11 must never see a request the guard did not hand on, nor fail otherwise than with a
    protocol error."""
    stream, pieces = _splits(data)
    guard = RequestGuard(max_head_size=2048)
    connection = h11.Connection(h11.SERVER, max_incomplete_event_size=4096)
    seen = 0
    for piece in pieces:
        guard.receive(piece)
        passed = guard.take()
        if len(passed) > len(stream) + 64:
            raise AssertionError("the guard made up bytes")
        if not passed:
            continue  # receive_data(b"") would tell h11 the client closed
        connection.receive_data(passed)
        try:
            seen += _serve_h11(connection)
        except h11.RemoteProtocolError:
            return
        if seen > guard.requests:
            raise AssertionError(f"h11 saw {seen} requests, the guard handed on {guard.requests}")
        if guard.phase is Phase.CLOSED or guard.phase is Phase.UPGRADING:
            return


def _serve_h11(connection: h11.Connection) -> int:
    """Answer every complete request as the server does; the number of requests seen."""
    seen = 0
    while True:
        event = connection.next_event()
        if event is h11.NEED_DATA or event is h11.PAUSED:
            if event is h11.PAUSED and connection.our_state is h11.DONE:
                connection.start_next_cycle()
                continue
            return seen
        if isinstance(event, h11.Request):
            seen += 1
        elif isinstance(event, h11.EndOfMessage):
            connection.send(h11.Response(status_code=204, headers=[]))
            connection.send(h11.EndOfMessage())
            if connection.their_state is not h11.DONE or connection.our_state is not h11.DONE:
                return seen  # the connection closes after this response
            connection.start_next_cycle()
        elif isinstance(event, h11.ConnectionClosed):
            return seen


def websocket_frames(data: bytes) -> None:
    """Frames a client sends after the handshake, as the gateway's server decodes them: only
    messages, control frames or a close with an RFC 6455 code."""
    _, pieces = _splits(data)
    server = wsproto.WSConnection(wsproto.ConnectionType.SERVER)
    server.initiate_upgrade_connection(
        [
            (b"host", b"x"),
            (b"upgrade", b"websocket"),
            (b"connection", b"Upgrade"),
            (b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ=="),
            (b"sec-websocket-version", b"13"),
        ],
        b"/api/v2/connect",
    )
    server.send(wsproto.events.AcceptConnection())
    for piece in pieces:
        server.receive_data(piece)
        for event in server.events():
            if isinstance(event, wsproto.events.CloseConnection):
                if event.code not in set(CloseReason) and not 3000 <= event.code < 5000:
                    raise AssertionError(f"close code {event.code}")
                return


_KEYS: Final = (
    "language", "version", "files", "name", "content", "encoding", "stdin", "args", "main",
    "run_timeout", "compile_timeout", "run_cpu_time", "compile_memory_limit", "run_memory_limit",
    "output_max_size", "type",
)  # fmt: skip
_TEXTS: Final = (
    "python",
    "py",
    "*",
    "3.x",
    "",
    "utf8",
    "base64",
    "hex",
    "a/../b",
    "/etc",
    "\ud800",
)


class _Bytes:
    """Reads choices off fuzz input; past its end every choice is 0."""

    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def take(self, modulo: int) -> int:
        byte = self.data[self.at] if self.at < len(self.data) else 0
        self.at += 1
        return byte % modulo


def json_value(source: _Bytes, depth: int = 0) -> Any:
    """A JSON value built from fuzz input: objects with Piston's keys, lists, odd scalars."""
    kind = source.take(9 if depth < 4 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return bool(source.take(2))
    if kind == 2:
        return (source.take(256) - 128) * 10 ** source.take(25)
    if kind == 3:
        return source.take(256) / 7 - 18
    if kind in (4, 5):
        text = _TEXTS[source.take(len(_TEXTS))]
        return text + chr(source.take(0x3000)) * source.take(3)
    if kind == 6:
        return [json_value(source, depth + 1) for _ in range(source.take(4))]
    return {
        _KEYS[source.take(len(_KEYS))]: json_value(source, depth + 1) for _ in range(source.take(6))
    }


def gateway_translation(data: bytes) -> None:
    """Any JSON body or init frame translates to params msgpack can carry, which the daemon's
    validation then accepts or refuses with invalid_params / runtime_unknown only."""
    body = json_value(_Bytes(data))
    if isinstance(body, dict) and body and data[:1] == b"{":
        body["files"] = [{"content": json_value(_Bytes(data[1:]))}]
    translated = [v2.execute_params(body)]
    if isinstance(body, dict):
        translated.append(v2.interactive_params(body))
    for params in translated:
        pack(params)
        with contextlib.suppress(InvalidParams, RuntimeUnknown):
            validate_execute(params, resolve=_resolve, runtime_limits=_limits)


class _Runtime:
    language = "python"


def _resolve(language: str, version: str) -> _Runtime:
    if language not in ("python", "py"):
        raise RuntimeUnknown(f"{language}-{version} runtime is unknown")
    return _Runtime()


def _limits(_runtime: _Runtime) -> Limits:
    return Limits()


def _masked(opcode: int, payload: bytes) -> bytes:
    key = b"\x01\x02\x03\x04"
    masked = bytes(byte ^ key[index % 4] for index, byte in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + key + masked


SEEDS: Final[dict[str, list[bytes]]] = {
    "framing": [
        b"\x10" + pack([0, 1, "execute", [{"language": "python", "files": [{"content": "x"}]}]]),
        b"\x03" + pack([2, "job.write", [{"job": "j1", "data": b"abc"}]]) + pack([1, 2, None, 1]),
    ],
    "http": [
        b"\x3f" + b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 2,
        b"\x07POST /api/v2/execute HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2;x=y\r\n{}\r\n0\r\nT: t\r\n\r\nGET / HTTP/1.0\r\n\r\n",
        b"\x3fPOST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
    ],
    "websocket": [
        b"\x05"
        + _masked(0x1, b'{"type":"init"}')
        + _masked(0x9, b"ping")
        + _masked(0x8, b"\x03\xe8"),
        b"\x3f" + _masked(0x2, b"\x00\xff") + _masked(0x0, b"more"),
    ],
    "translation": [bytes(range(7, 64)), b"{" + bytes(range(200, 255))],
}
"""Inputs each coverage-guided run starts from."""

TARGETS: Final[dict[str, Callable[[bytes], None]]] = {
    "framing": framing,
    "http": http_framing,
    "websocket": websocket_frames,
    "translation": gateway_translation,
}
