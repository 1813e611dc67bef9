"""output: exactly the first cap bytes per stream and of output; the first overflow decides."""

from __future__ import annotations

import os

import trio

from pistond.sandbox.output import OutputCapture, StreamName


def _pipe() -> tuple[trio.lowlevel.FdStream, int]:
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    return trio.lowlevel.FdStream(read_fd), write_fd


def test_capture_keeps_exact_prefix_and_reports_overflow() -> None:
    """A chunk crossing the cap keeps exactly the bytes up to the cap; the stream is flagged."""
    flagged: list[StreamName] = []
    capture = OutputCapture(limit=10, on_overflow=flagged.append)
    assert capture.feed("stdout", b"12345") == (b"12345", False)
    assert capture.feed("stdout", b"6789abcdef") == (b"6789a", True)
    assert bytes(capture.stdout) == b"123456789a"
    assert flagged == ["stdout"]
    assert capture.overflow == "stdout"


def test_capture_exactly_at_cap_is_no_overflow() -> None:
    """Writing exactly the cap is allowed; one more byte crosses it."""
    capture = OutputCapture(limit=4)
    assert capture.feed("stderr", b"abcd") == (b"abcd", False)
    assert capture.overflow is None
    assert capture.feed("stderr", b"e") == (b"", True)
    assert capture.overflow == "stderr"


def test_capture_first_stream_to_cross_decides() -> None:
    """The first stream over its cap decides; a later overflow does not change it."""
    flagged: list[StreamName] = []
    capture = OutputCapture(limit=3, on_overflow=flagged.append)
    capture.feed("stderr", b"xxxx")
    capture.feed("stdout", b"yyyy")
    assert capture.overflow == "stderr"
    assert flagged == ["stderr"]


def test_capture_output_interleaves_under_same_cap() -> None:
    """output holds both streams in arrival order, cut at the same cap."""
    capture = OutputCapture(limit=6)
    capture.feed("stdout", b"ab")
    capture.feed("stderr", b"CD")
    capture.feed("stdout", b"ef")
    capture.feed("stderr", b"GH")
    assert bytes(capture.output) == b"abCDef"
    assert capture.text().stdout == "abef"
    assert capture.text().stderr == "CDGH"


def test_capture_decodes_invalid_utf8_with_replacement() -> None:
    """Invalid bytes become U+FFFD; NUL bytes are kept."""
    capture = OutputCapture(limit=100)
    capture.feed("stdout", b"\xff\xfeok\x00")
    assert capture.text().stdout == "\ufffd\ufffdok\x00"


def test_capture_joins_multibyte_split_across_chunks() -> None:
    """A character split across two reads decodes whole, as decoding happens once."""
    capture = OutputCapture(limit=100)
    euro = "€".encode()
    capture.feed("stdout", euro[:1])
    capture.feed("stdout", euro[1:])
    assert capture.text().stdout == "€"


def test_capture_cap_cuts_multibyte_character() -> None:
    """The cap counts bytes: a character cut at the cap becomes one U+FFFD."""
    capture = OutputCapture(limit=2)
    capture.feed("stdout", "a€".encode())
    assert bytes(capture.stdout) == b"a\xe2"
    assert capture.text().stdout == "a\ufffd"


async def test_pump_reads_until_eof_and_streams_chunks() -> None:
    """pump reads a pipe to EOF and hands each kept chunk to on_output."""
    seen: list[tuple[StreamName, bytes]] = []

    async def on_output(stream: StreamName, data: bytes) -> None:
        seen.append((stream, data))

    capture = OutputCapture(limit=100, on_output=on_output)
    read, write_fd = _pipe()
    os.write(write_fd, b"hello ")
    os.write(write_fd, b"world")
    os.close(write_fd)
    with trio.fail_after(5):
        await capture.pump("stdout", read)
    assert bytes(capture.stdout) == b"hello world"
    assert b"".join(data for _, data in seen) == b"hello world"


async def test_pump_stops_reading_at_cap_and_closes_pipe() -> None:
    """After the cap is crossed nothing more is read: the writer gets EPIPE, memory is bounded."""
    capture = OutputCapture(limit=1024)
    read, write_fd = _pipe()
    os.set_blocking(write_fd, False)
    os.write(write_fd, b"x" * 4096)
    with trio.fail_after(5):
        await capture.pump("stdout", read)
    assert len(capture.stdout) == 1024
    assert capture.overflow == "stdout"
    try:
        os.write(write_fd, b"more")
        broken = False
    except BrokenPipeError:
        broken = True
    finally:
        os.close(write_fd)
    assert broken


async def test_pump_live_chunks_never_exceed_cap() -> None:
    """The live callback receives only bytes within the cap."""
    seen: list[bytes] = []

    async def on_output(_stream: StreamName, data: bytes) -> None:
        seen.append(data)

    capture = OutputCapture(limit=5, on_output=on_output)
    read, write_fd = _pipe()
    os.write(write_fd, b"0123456789")
    os.close(write_fd)
    with trio.fail_after(5):
        await capture.pump("stderr", read)
    assert b"".join(seen) == b"01234"
