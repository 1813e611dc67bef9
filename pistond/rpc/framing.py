"""Sans-IO msgpack framing: bytes in, decoded values out, with a maximum message size.

This layer wraps ``msgpack.Unpacker`` and ``msgpack.Packer`` and knows nothing of msgpack-rpc
beyond how to peek at a request's msgid for error replies. The layer above
(:mod:`pistond.rpc.messages`) turns decoded values into typed messages.

Resource handling:
    A message is never buffered beyond ``max_message_size`` bytes: input is fed to the
    unpacker in pieces no larger than the room left for the pending message, so an oversized
    message is detected once ``max_message_size`` of its bytes have arrived, holding at most
    that plus the one read being fed. Containers are capped at ``max_container_len``
    elements each.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import attrs
import msgpack

if TYPE_CHECKING:
    from collections.abc import Iterator

DEFAULT_MAX_MESSAGE_SIZE: Final = 64 * 1024 * 1024
"""PROTOCOL.md's default maximum message size, in bytes."""
DEFAULT_MAX_CONTAINER_LEN: Final = 1 << 20
"""Most elements of one array or map; far above what any method takes."""
_HEAD_SIZE: Final = 16
"""Bytes kept from the start of the pending message: enough for ``[0, msgid`` and more."""


class FramingError(Exception):
    """Raised by :class:`MessageDecoder` when the byte stream is not valid msgpack.

    Args:
        reason: what is wrong, safe to send to the peer.
        msgid: the msgid of the broken message, when its start reads as ``[0, msgid, ...``.
    """

    def __init__(self, reason: str, msgid: int | None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.msgid = msgid


class MessageTooLarge(FramingError):
    """Raised by :class:`MessageDecoder` when a message exceeds the maximum size."""


def _refuse_ext(code: int, data: bytes) -> Any:
    raise ValueError(f"msgpack ext type {code} is not allowed")


@attrs.define(eq=False)
class MessageDecoder:
    """Decode a stream of msgpack values, never holding more than one message's maximum.

    Feed it bytes with :meth:`feed`, then iterate it for every complete value; iteration
    stops when more bytes are needed. After a :class:`FramingError` the decoder is broken and
    raises the same error again: the stream cannot be resynchronised.
    """

    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    max_container_len: int = DEFAULT_MAX_CONTAINER_LEN
    _unpacker: msgpack.Unpacker = attrs.field(init=False)
    _input: memoryview = attrs.field(init=False, factory=lambda: memoryview(b""))
    _fed: int = attrs.field(init=False, default=0)
    _message_start: int = attrs.field(init=False, default=0)
    """Stream offset where the pending message begins (the unpacker's tell() moves inside it)."""
    _head: bytes = attrs.field(init=False, default=b"")
    _head_start: int = attrs.field(init=False, default=0)
    _last_piece: memoryview = attrs.field(init=False, factory=lambda: memoryview(b""))
    _last_start: int = attrs.field(init=False, default=0)
    _error: FramingError | None = attrs.field(init=False, default=None)

    def __attrs_post_init__(self) -> None:
        if self.max_message_size <= 0:
            raise ValueError("max_message_size must be positive")
        containers = min(self.max_container_len, self.max_message_size)
        self._unpacker = msgpack.Unpacker(
            raw=False,
            strict_map_key=True,
            use_list=True,
            max_buffer_size=self.max_message_size,
            max_str_len=self.max_message_size,
            max_bin_len=self.max_message_size,
            max_array_len=containers,
            max_map_len=containers,
            max_ext_len=self.max_message_size,
            ext_hook=_refuse_ext,
        )

    @property
    def pending(self) -> int:
        """Bytes of the incomplete message received so far, plus input not yet decoded."""
        return self._fed - self._message_start + len(self._input)

    @property
    def message_start(self) -> int:
        """Stream offset where the pending (incomplete) message begins."""
        return self._message_start

    def pending_msgid(self) -> int | None:
        """The msgid of the pending message, when its first bytes read as ``[0, msgid, ...``."""
        start = self._message_start
        head = self._head if start == self._head_start else self._tail_head(start)
        return peek_request_id(head)

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Queue received bytes; iterate the decoder to get the values they complete."""
        if len(self._input):
            self._input = memoryview(bytes(self._input) + data)
        else:
            self._input = memoryview(data)

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        if self._error is not None:
            raise self._error
        while True:
            try:
                value = self._unpacker.unpack()
            except msgpack.OutOfData:
                pass
            except (ValueError, TypeError, msgpack.UnpackException) as exc:
                raise self._fail(FramingError(f"invalid msgpack: {_describe(exc)}", None)) from None
            else:
                self._message_start = self._unpacker.tell()
                return value
            if not len(self._input):
                raise StopIteration
            self._feed_piece()

    def _feed_piece(self) -> None:
        """Move at most the pending message's remaining room from the input to the unpacker."""
        start = self._message_start
        room = self.max_message_size - (self._fed - start)
        if room <= 0:
            raise self._fail(
                MessageTooLarge(
                    f"message exceeds the maximum size of {self.max_message_size} bytes", None
                )
            )
        piece, self._input = self._input[:room], self._input[room:]
        if start != self._head_start:
            # Messages completed inside the last piece: the pending one starts in it.
            self._head, self._head_start = self._tail_head(start), start
        if len(self._head) < _HEAD_SIZE:
            self._head += bytes(piece[: _HEAD_SIZE - len(self._head)])
        self._last_piece, self._last_start = piece, self._fed
        self._unpacker.feed(piece)
        self._fed += len(piece)

    def _tail_head(self, start: int) -> bytes:
        """The first bytes fed from stream offset ``start`` on, found in the last piece."""
        offset = start - self._last_start
        if offset < 0:
            return b""
        return bytes(self._last_piece[offset : offset + _HEAD_SIZE])

    def _fail(self, error: FramingError) -> FramingError:
        error.msgid = self.pending_msgid()
        self._error = error
        self._input = memoryview(b"")
        return error


def _describe(exc: BaseException) -> str:
    """A short reason for a decoding failure, without internals."""
    if isinstance(exc, msgpack.StackError):
        return "nested too deeply"
    if isinstance(exc, UnicodeDecodeError):
        return "a str is not valid UTF-8"
    if isinstance(exc, msgpack.FormatError):
        return "unknown type byte"
    text = str(exc)
    if "map key" in text:
        return "map keys must be strings"
    return text if len(text) <= 120 else text[:117] + "..."


def peek_request_id(head: bytes) -> int | None:
    """The msgid of a request whose first bytes are ``head``, or None if they do not say.

    Only ``[0, msgid, ...`` with a uint32 msgid counts: a response or notification has no
    msgid to answer.
    """
    unpacker = msgpack.Unpacker(max_buffer_size=_HEAD_SIZE * 2, max_array_len=8)
    unpacker.feed(head)
    try:
        if unpacker.read_array_header() != 4:
            return None
        kind = unpacker.unpack()
        msgid = unpacker.unpack()
    except (ValueError, TypeError, msgpack.UnpackException, msgpack.OutOfData):
        return None
    if type(kind) is not int or kind != 0 or type(msgid) is not int:
        return None
    return msgid if 0 <= msgid < 2**32 else None


def pack(value: Any) -> bytes:
    """Encode one message: str as msgpack str, bytes as bin, tuples as arrays.

    Raises:
        TypeError: the value holds something msgpack cannot encode.
    """
    result: bytes = msgpack.packb(value, use_bin_type=True, datetime=False)
    return result
