"""pistond.gateway.stream: head, body and keep-alive deadlines, through a real gateway.

Rules: the ``tight`` gateway (0.5 s deadlines, fake daemon) on 127.0.0.1, raw sockets, every
exchange under ``fail_after``.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

import pytest
import trio

from pistond.gateway.guard import Refusal
from pistond.gateway.stream import refusal_response

from .raw import open_raw, read_until_close

if TYPE_CHECKING:
    from .conftest import GatewayStack

GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def _execute(source: str) -> bytes:
    body = json.dumps(
        {"language": "python", "version": "*", "files": [{"content": source}]}
    ).encode()
    return (
        b"POST /api/v2/execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )


def test_stream_refusal_response_is_json_and_closes() -> None:
    """A refusal is a complete HTTP/1.1 answer with a JSON message that closes the connection."""
    answer = refusal_response(Refusal(429, "slow down", (("Retry-After", "1"),)))
    head, body = answer.split(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 429 Too Many Requests\r\n")
    assert b"connection: close" in head
    assert b"Retry-After: 1" in head
    assert json.loads(body) == {"message": "slow down"}


async def test_stream_slow_head_gets_408(tight: GatewayStack) -> None:
    """A head trickling in byte by byte (slowloris) gets 408 once its deadline has passed."""
    with trio.fail_after(5):
        stream = await open_raw(tight.url)
        started = trio.current_time()
        async with stream:
            try:
                for byte in GET[:-4]:
                    await stream.send_all(bytes([byte]))
                    await trio.sleep(0.05)
            except trio.BrokenResourceError:
                pass
            answer = await read_until_close(stream, 3)
    assert answer.status == 408
    assert answer.closed
    assert b'{"message": "request head not received within 0.5 s"}' in answer.data
    assert trio.current_time() - started < 2


async def test_stream_slow_body_gets_408(
    tight: GatewayStack, caplog: pytest.LogCaptureFixture
) -> None:
    """A body that stops arriving gets 408 once the body deadline has passed (no error logged)."""
    with trio.fail_after(5), caplog.at_level(logging.ERROR):
        stream = await open_raw(tight.url)
        async with stream:
            await stream.send_all(_execute('print("hi")')[:-5])
            answer = await read_until_close(stream, 3)
    assert answer.status == 408
    assert b"request body not received within 0.5 s" in answer.data
    assert answer.closed
    await trio.sleep(0.2)
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]


async def test_stream_idle_keep_alive_connection_closes(tight: GatewayStack) -> None:
    """Once its requests are answered, a silent connection closes after the idle timeout."""
    with trio.fail_after(5):
        stream = await open_raw(tight.url)
        async with stream:
            await stream.send_all(GET)
            started = trio.current_time()
            answer = await read_until_close(stream, 3)
    assert answer.status == 200
    assert answer.closed
    assert 0.4 < trio.current_time() - started < 2


async def test_stream_slow_answer_is_not_an_idle_connection(tight: GatewayStack) -> None:
    """A client waiting for a long job is never cut off by the keep-alive timeout."""
    with trio.fail_after(5):
        stream = await open_raw(tight.url)
        async with stream:
            await stream.send_all(_execute("import time; time.sleep(1.2)"))
            answer = await read_until_close(stream, 3)
    assert answer.status == 200
    assert b'"stdout"' in answer.data


async def test_stream_pipelined_slow_head_is_refused_after_the_answer(
    tight: GatewayStack,
) -> None:
    """A request pipelined behind a stalled head gets its answer first, then the 408."""
    with trio.fail_after(5):
        stream = await open_raw(tight.url)
        async with stream:
            await stream.send_all(_execute("import time; time.sleep(0.8)") + GET[:10])
            answer = await read_until_close(stream, 3)
    first, _, rest = answer.data.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 200 ")
    assert b"HTTP/1.1 408 " in rest
    assert rest.index(b'"stdout"') < rest.index(b"HTTP/1.1 408 ")
