"""Sans-IO framing: any split of valid input decodes; garbage and oversize are refused early."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pistond.rpc.framing import (
    FramingError,
    MessageDecoder,
    MessageTooLarge,
    pack,
    peek_request_id,
)

MESSAGES = [
    [0, 1, "execute", [{"language": "python", "files": [{"content": b"\x00\xff"}]}]],
    [1, 1, None, {"run": {"stdout": "hé"}}],
    [2, "job.output", [{"job": "j", "data": b"x" * 300}]],
    [0, 2**32 - 1, "ping", []],
]
STREAM = b"".join(pack(message) for message in MESSAGES)


def _decode_in_chunks(decoder: MessageDecoder, data: bytes, sizes: list[int]) -> list[object]:
    out: list[object] = []
    position = 0
    for size in sizes:
        decoder.feed(data[position : position + size])
        position += size
        out.extend(decoder)
    decoder.feed(data[position:])
    out.extend(decoder)
    return out


@given(st.lists(st.integers(min_value=0, max_value=40), max_size=60))
@settings(max_examples=200, deadline=None)
def test_framing_any_split_decodes_the_same(sizes: list[int]) -> None:
    """However the bytes are split into reads, the same messages come out in order."""
    decoder = MessageDecoder(max_message_size=1024)
    assert _decode_in_chunks(decoder, STREAM, sizes) == MESSAGES
    assert decoder.pending == 0


def test_framing_truncated_input_waits() -> None:
    """A truncated message yields nothing and waits for the rest."""
    data = pack(MESSAGES[0])
    decoder = MessageDecoder(max_message_size=1024)
    decoder.feed(data[:-1])
    assert list(decoder) == []
    assert decoder.pending == len(data) - 1
    decoder.feed(data[-1:])
    assert list(decoder) == [MESSAGES[0]]


def test_framing_garbage_is_an_error() -> None:
    """A byte that starts no msgpack value is a FramingError without a msgid."""
    decoder = MessageDecoder(max_message_size=1024)
    decoder.feed(b"\xc1garbage")
    with pytest.raises(FramingError) as info:
        list(decoder)
    assert info.value.msgid is None
    assert str(info.value) == "invalid msgpack: unknown type byte"


def test_framing_garbage_inside_request_keeps_msgid() -> None:
    """Garbage after a complete message and a request header reports that request's msgid."""
    decoder = MessageDecoder(max_message_size=1024)
    decoder.feed(pack([0, 5, "ping", []]) + b"\x94\x00\xce\x00\x01\x00\x00\xc1")
    assert next(decoder) == [0, 5, "ping", []]
    with pytest.raises(FramingError) as info:
        next(decoder)
    assert info.value.msgid == 65536


def test_framing_error_is_sticky() -> None:
    """After a framing error the decoder raises again: the stream cannot resynchronise."""
    decoder = MessageDecoder(max_message_size=1024)
    decoder.feed(b"\xc1")
    with pytest.raises(FramingError):
        list(decoder)
    decoder.feed(pack([0, 1, "ping", []]))
    with pytest.raises(FramingError):
        list(decoder)


def test_framing_oversized_message_detected_within_maximum() -> None:
    """An oversized message fails once the maximum is buffered, reporting its msgid."""
    maximum = 500
    data = pack([0, 42, "execute", [{"stdin": "x" * 100_000}]])
    decoder = MessageDecoder(max_message_size=maximum)
    fed = 0

    def feed_all() -> None:
        nonlocal fed
        for start in range(0, len(data), 100):
            decoder.feed(data[start : start + 100])
            fed += 100
            list(decoder)

    with pytest.raises(MessageTooLarge) as info:
        feed_all()
    assert info.value.msgid == 42
    assert fed <= maximum + 100
    assert str(info.value) == "message exceeds the maximum size of 500 bytes"


def test_framing_oversized_in_one_read() -> None:
    """One read holding a huge message is refused without handing it all to msgpack."""
    decoder = MessageDecoder(max_message_size=64)
    decoder.feed(pack([2, "job.output", [{"data": b"x" * 10_000}]]))
    with pytest.raises(MessageTooLarge) as info:
        list(decoder)
    assert info.value.msgid is None
    assert decoder.pending <= 64


def test_framing_message_of_exactly_maximum_size() -> None:
    """A message exactly as large as the maximum is accepted, as is the one after it."""
    message = [0, 1, "m", [{"s": "y" * 100}]]
    size = len(pack(message))
    decoder = MessageDecoder(max_message_size=size)
    decoder.feed(pack(message) + pack(message))
    assert list(decoder) == [message, message]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (
            pack([0, 9, "m", [msgpack.ExtType(3, b"ab")]]),
            "invalid msgpack: msgpack ext type 3 is not allowed",
        ),
        (pack([0, 9, "m", [{1: 2}]]), "invalid msgpack: map keys must be strings"),
        (b"\xa2\xff\xfe", "invalid msgpack: a str is not valid UTF-8"),
        (b"\x91" * 2000, "invalid msgpack: nested too deeply"),
    ],
)
def test_framing_refuses_invalid_values(data: bytes, reason: str) -> None:
    """Ext types, non-str map keys, bad UTF-8 and deep nesting are framing errors."""
    decoder = MessageDecoder(max_message_size=4096)
    decoder.feed(data)
    with pytest.raises(FramingError) as info:
        list(decoder)
    assert str(info.value) == reason


def test_framing_container_length_capped() -> None:
    """An array longer than max_container_len is refused."""
    decoder = MessageDecoder(max_message_size=4096, max_container_len=10)
    decoder.feed(pack([0] * 11))
    with pytest.raises(FramingError):
        list(decoder)


@pytest.mark.parametrize(
    ("head", "msgid"),
    [
        (pack([0, 7, "m", []])[:4], 7),
        (b"\x94\x00\xce\xff\xff\xff\xff", 2**32 - 1),
        (pack([1, 7, None, None]), None),
        (pack([0, -1, "m", []]), None),
        (pack([0, True, "m", []]), None),
        (pack([0, 7, "m"]), None),
        (b"\x94\x00", None),
        (b"", None),
    ],
)
def test_framing_peek_request_id(head: bytes, msgid: int | None) -> None:
    """Only a request header with a uint32 msgid gives a msgid."""
    assert peek_request_id(head) == msgid


def test_framing_pack_bytes_as_bin_and_str_as_str() -> None:
    """bytes are packed as bin and str as str, tuples as arrays."""
    assert pack(b"a") == b"\xc4\x01a"
    assert pack("a") == b"\xa1a"
    assert pack(("a",)) == b"\x91\xa1a"
