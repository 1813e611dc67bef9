"""Sans-IO check of HTTP/1.1 request framing, in front of the HTTP server's own parser.

:class:`RequestGuard` takes the bytes a client sends and hands on only what may reach the HTTP
server: a request head only once it is complete and has passed the checks below, then exactly
its body, then the next head. It is stricter than the parser behind it, so both agree on where
every request starts and ends (no request smuggling), and it knows at every moment what the
client owes (a head, a body, nothing), which the connection uses for its deadlines.

Refused (the first failure becomes :attr:`RequestGuard.refusal`, the connection is closed after
its answer):

- a head over ``max_head_size`` bytes (431); bare LF line ends, folded (obs-fold) or malformed
  header lines, control characters (400); an HTTP version other than 1.0 and 1.1 (505, so
  HTTP/2 prior knowledge never reaches the server);
- both ``Content-Length`` and ``Transfer-Encoding``, more than one ``Content-Length`` (also as
  a list), a ``Content-Length`` that is not a number, ``Transfer-Encoding`` in HTTP/1.0 (400,
  RFC 9112 §6.1 and §6.3); a transfer coding other than ``chunked`` (501); no ``Host`` in
  HTTP/1.1, or more than one (400, RFC 9112 §3.2); a malformed chunk (400);
- an upgrade request (``Upgrade`` header) with a body (400); a WebSocket handshake whose
  ``Sec-WebSocket-Key`` is not 16 bytes in base64 (400) or whose version is not 13 (426).

Upgrades: ``Upgrade: h2c`` is removed from the head (with ``HTTP2-Settings``), so the request is
served as HTTP/1.1. After any other upgrade request the guard holds every further byte until
the server has answered the handshake (:meth:`RequestGuard.upgrade_answered`): a client that
sends WebSocket frames before the ``101`` (RFC 6455 §4.1 says it must wait) has them delivered
after it, never into the middle of the handshake; after a refused upgrade nothing more is
delivered.
"""

from __future__ import annotations

import enum
import re
from typing import Final

import attrs

DEFAULT_MAX_HEAD_SIZE: Final = 16 * 1024
"""Largest request head (request line and headers), in bytes."""
MAX_CHUNK_LINE: Final = 1024
"""Longest chunk-size line (size and extensions), in bytes."""
MAX_LEADING_EMPTY_LINES: Final = 8
"""Empty lines tolerated before a request line (RFC 9112 §2.2 asks servers to skip some)."""

_TOKEN: Final = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_REQUEST_LINE: Final = re.compile(rb"(" + _TOKEN + rb") ([^\x00-\x20\x7f]+) HTTP/([0-9])\.([0-9])")
_REQUEST_LINE_START: Final = re.compile(
    rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]{0,64}"
    rb"( [^\x00-\x20\x7f]*( (H(T(T(P(/([0-9](\.[0-9]?)?)?)?)?)?)?)?)?)?"
)
"""What the start of a request line may look like while it is still arriving."""
_HEADER_LINE: Final = re.compile(rb"(" + _TOKEN + rb"):[ \t]*(.*?)[ \t]*")
_FORBIDDEN_IN_VALUE: Final = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_CHUNK_SIZE: Final = re.compile(rb"([0-9A-Fa-f]{1,15})[ \t]*(;[^\x00-\x08\x0a-\x1f\x7f]*)?")
_WEBSOCKET_KEY: Final = re.compile(rb"[A-Za-z0-9+/]{21}[AQgw]==")
"""Base64 of 16 bytes (RFC 6455 §4.2.1)."""
_CRLF: Final = b"\r\n"
_END_OF_HEAD: Final = b"\r\n\r\n"
_H2C_HEADERS: Final = frozenset({b"upgrade", b"http2-settings"})


class Phase(enum.Enum):
    """What the guard expects from the client next."""

    IDLE = "idle"
    """Between requests: nothing of the next head has arrived."""
    HEAD = "head"
    """Part of a request head has arrived."""
    BODY = "body"
    """The head was handed on; its body is still due."""
    UPGRADING = "upgrading"
    """An upgrade request was handed on; the server has not answered it yet."""
    TUNNEL = "tunnel"
    """The server accepted an upgrade: bytes are no longer HTTP and pass unchecked."""
    CLOSED = "closed"
    """Nothing more is delivered: a refusal, or a refused upgrade."""


@attrs.frozen
class Refusal:
    """Why a request is refused: the HTTP answer the client gets before the connection closes."""

    status: int
    message: str
    headers: tuple[tuple[str, str], ...] = ()
    """Extra response headers (``Sec-WebSocket-Version`` with a 426)."""


class _Body(enum.Enum):
    LENGTH = "length"
    CHUNK_SIZE = "chunk size"
    CHUNK_DATA = "chunk data"
    CHUNK_END = "chunk end"
    TRAILERS = "trailers"


@attrs.frozen
class _Head:
    """What the guard learnt from one request head."""

    data: bytes
    """The head as handed on (``h2c`` upgrade headers removed)."""
    content_length: int
    chunked: bool
    upgrade: bool


@attrs.define(eq=False)
class RequestGuard:
    """Checks a client's byte stream request by request; see the module docstring.

    Feed received bytes with :meth:`receive`, then call :meth:`take` for what may pass.
    """

    max_head_size: int = DEFAULT_MAX_HEAD_SIZE
    phase: Phase = Phase.IDLE
    refusal: Refusal | None = None
    """Set once a request is refused; :attr:`phase` is then CLOSED."""
    refused_in: Phase | None = None
    """The phase the refusal happened in: BODY when the refused request's head was handed on."""
    requests: int = 0
    """Request heads handed on so far."""
    _buffer: bytearray = attrs.field(factory=bytearray)
    _body: _Body = _Body.LENGTH
    _left: int = 0
    """Bytes of the body (LENGTH) or of the current chunk (CHUNK_DATA) still to pass."""
    _trailer_size: int = 0
    _leading_lines: int = 0

    @property
    def pending(self) -> int:
        """Received bytes not handed on yet."""
        return len(self._buffer)

    def receive(self, data: bytes) -> None:
        """Add bytes the client sent."""
        if self.phase is not Phase.CLOSED:
            self._buffer += data

    def take(self) -> bytes:
        """The bytes that may reach the server now (possibly none); may set :attr:`refusal`."""
        out = bytearray()
        while self._buffer and self.phase is not Phase.CLOSED:
            if self.phase is Phase.TUNNEL:
                out += self._buffer
                self._buffer.clear()
            elif self.phase in (Phase.IDLE, Phase.HEAD):
                if not self._take_head(out):
                    break
            elif self.phase is Phase.BODY:
                if not self._take_body(out):
                    break
            else:  # UPGRADING: held until the server answers
                break
        return bytes(out)

    def upgrade_answered(self, *, accepted: bool) -> None:
        """The server answered the pending upgrade: ``101`` (accepted) or anything else."""
        if self.phase is Phase.UPGRADING:
            self.phase = Phase.TUNNEL if accepted else Phase.CLOSED
            if not accepted:
                self._buffer.clear()

    def refuse(self, status: int, message: str, headers: tuple[tuple[str, str], ...] = ()) -> None:
        """Refuse the connection's current request (also used for the connection's deadlines)."""
        if self.refusal is None:
            self.refusal = Refusal(status, message, headers)
            self.refused_in = self.phase
        self.phase = Phase.CLOSED
        self._buffer.clear()

    # Heads

    def _take_head(self, out: bytearray) -> bool:
        if self.phase is Phase.IDLE:
            while self._buffer.startswith(_CRLF):
                self._leading_lines += 1
                if self._leading_lines > MAX_LEADING_EMPTY_LINES:
                    self.refuse(400, "too many empty lines before the request line")
                    return False
                del self._buffer[:2]
            if not self._buffer or self._buffer == b"\r":
                return False
            self.phase = Phase.HEAD
        first_line_end = self._buffer.find(_CRLF)
        start = self._buffer if first_line_end < 0 else self._buffer[:first_line_end]
        if first_line_end < 0 and _REQUEST_LINE_START.fullmatch(start.rstrip(b"\r")) is None:
            self.refuse(400, "malformed request line")
            return False
        end = self._buffer.find(_END_OF_HEAD)
        scan = len(self._buffer) if end < 0 else end + len(_END_OF_HEAD)
        if _has_bare_lf(self._buffer, min(scan, self.max_head_size + len(_END_OF_HEAD))):
            self.refuse(400, "request lines must end with CRLF")
            return False
        if end < 0 or end + len(_END_OF_HEAD) > self.max_head_size:
            if len(self._buffer) > self.max_head_size or end >= 0:
                self.refuse(431, "request header fields too large")
            return False
        raw = bytes(self._buffer[: end + len(_END_OF_HEAD)])
        head = self._parse_head(raw)
        if head is None:
            return False
        del self._buffer[: len(raw)]
        out += head.data
        self.requests += 1
        self._leading_lines = 0
        if head.upgrade:
            self.phase = Phase.UPGRADING
        elif head.chunked:
            self.phase, self._body = Phase.BODY, _Body.CHUNK_SIZE
        elif head.content_length:
            self.phase, self._body, self._left = Phase.BODY, _Body.LENGTH, head.content_length
        else:
            self.phase = Phase.IDLE
        return True

    def _parse_head(self, raw: bytes) -> _Head | None:
        checked = _check_head(raw)
        if isinstance(checked, Refusal):
            self.refuse(checked.status, checked.message, checked.headers)
            return None
        return checked

    # Bodies

    def _take_body(self, out: bytearray) -> bool:
        if self._body in (_Body.LENGTH, _Body.CHUNK_DATA):
            size = min(self._left, len(self._buffer))
            out += self._buffer[:size]
            del self._buffer[:size]
            self._left -= size
            if self._left:
                return False
            if self._body is _Body.LENGTH:
                self.phase = Phase.IDLE
            else:
                self._body = _Body.CHUNK_END
            return True
        if self._body is _Body.CHUNK_END:
            if len(self._buffer) < 2:
                return False
            if self._buffer[:2] != _CRLF:
                self.refuse(400, "malformed chunked body")
                return False
            out += _CRLF
            del self._buffer[:2]
            self._body = _Body.CHUNK_SIZE
            return True
        line = self._line(MAX_CHUNK_LINE)
        if line is None:
            return False
        if self._body is _Body.CHUNK_SIZE:
            match = _CHUNK_SIZE.fullmatch(line)
            if match is None:
                self.refuse(400, "malformed chunked body")
                return False
            out += line + _CRLF
            self._left = int(match[1], 16)
            self._body = _Body.CHUNK_DATA if self._left else _Body.TRAILERS
            self._trailer_size = 0
            return True
        self._trailer_size += len(line) + 2
        if self._trailer_size > self.max_head_size:
            self.refuse(431, "request trailer fields too large")
            return False
        if line and (_HEADER_LINE.fullmatch(line) is None or _FORBIDDEN_IN_VALUE.search(line)):
            self.refuse(400, "malformed trailer line")
            return False
        out += line + _CRLF
        if not line:
            self.phase = Phase.IDLE
        return True

    def _line(self, limit: int) -> bytes | None:
        """The next CRLF-terminated line (CRLF removed), or None until it is complete."""
        end = self._buffer.find(_CRLF, 0, limit + 2)
        if end < 0:
            if len(self._buffer) > limit + 1 or b"\n" in self._buffer[: limit + 2]:
                self.refuse(400, "malformed chunked body")
            return None
        line = bytes(self._buffer[:end])
        if b"\n" in line:
            self.refuse(400, "malformed chunked body")
            return None
        del self._buffer[: end + 2]
        return line


def _check_head(raw: bytes) -> _Head | Refusal:
    """Parse and check one complete request head (ending in CRLF CRLF)."""
    lines = raw[: -len(_END_OF_HEAD)].split(_CRLF)
    request = _REQUEST_LINE.fullmatch(lines[0])
    if request is None:
        return Refusal(400, "malformed request line")
    version = (int(request[3]), int(request[4]))
    if version not in ((1, 0), (1, 1)):
        return Refusal(505, "only HTTP/1.0 and HTTP/1.1 are supported")
    headers: list[tuple[bytes, bytes, bytes]] = []
    for line in lines[1:]:
        match = _HEADER_LINE.fullmatch(line)
        if match is None or _FORBIDDEN_IN_VALUE.search(match[2]):
            return Refusal(400, "malformed header line")
        headers.append((match[1].lower(), match[2], line))
    return _check_framing(lines[0], version, headers)


def _check_framing(
    request_line: bytes,
    version: tuple[int, int],
    headers: list[tuple[bytes, bytes, bytes]],
) -> _Head | Refusal:
    """The framing rules of the module docstring, on parsed ``(name, value, line)`` headers."""

    def values(name: bytes) -> list[bytes]:
        return [value for key, value, _ in headers if key == name]

    lengths, codings, hosts = (
        values(b"content-length"),
        values(b"transfer-encoding"),
        values(b"host"),
    )
    upgrades = [value.strip().lower() for value in values(b"upgrade")]
    if len(lengths) > 1 or any(b"," in value for value in lengths):
        return Refusal(400, "more than one Content-Length")
    if lengths and codings:
        return Refusal(400, "Content-Length together with Transfer-Encoding")
    if codings and version == (1, 0):
        return Refusal(400, "Transfer-Encoding in an HTTP/1.0 request")
    if len(codings) > 1 or (codings and codings[0].strip().lower() != b"chunked"):
        return Refusal(501, "only the chunked transfer coding is supported")
    if len(hosts) > 1 or (version == (1, 1) and not hosts):
        return Refusal(400, "an HTTP/1.1 request needs exactly one Host header")
    length = 0
    if lengths:
        if not lengths[0].isdigit() or len(lengths[0]) > 18:
            return Refusal(400, "invalid Content-Length")
        length = int(lengths[0])
    if upgrades == [b"h2c"]:
        headers = [header for header in headers if header[0] not in _H2C_HEADERS]
        upgrades = []
    if upgrades and (length or codings):
        return Refusal(400, "an upgrade request cannot have a body")
    if upgrades == [b"websocket"]:
        keys, versions = values(b"sec-websocket-key"), values(b"sec-websocket-version")
        if len(keys) != 1 or _WEBSOCKET_KEY.fullmatch(keys[0]) is None:
            return Refusal(400, "Sec-WebSocket-Key must be 16 bytes in base64")
        if versions != [b"13"]:
            return Refusal(
                426, "Sec-WebSocket-Version must be 13", (("Sec-WebSocket-Version", "13"),)
            )
    data = _CRLF.join([request_line, *(line for _, _, line in headers)]) + _END_OF_HEAD
    return _Head(data=data, content_length=length, chunked=bool(codings), upgrade=bool(upgrades))


def _has_bare_lf(buffer: bytearray, end: int) -> bool:
    """Whether ``buffer[:end]`` holds a LF not preceded by CR."""
    start = 0
    while True:
        index = buffer.find(b"\n", start, end)
        if index < 0:
            return False
        if index == 0 or buffer[index - 1] != 0x0D:
            return True
        start = index + 1
