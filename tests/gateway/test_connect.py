"""piston-v2.md §2 as tests: every WebSocket frame and close code of /api/v2/connect.

Rules: a real gateway on 127.0.0.1 (port 0) in front of the fake daemon, a trio-websocket
client, every exchange under ``fail_after``; the server closes first in every test but the
disconnect one.
"""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import pytest
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

from pistond.errors import Overloaded

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from .conftest import GatewayStack
    from .fake_daemon import FakeDaemon

ECHO = "import sys; sys.stdout.write(sys.stdin.read())"


def init(content: str = 'print("hi")', **fields: Any) -> dict[str, Any]:
    frame: dict[str, Any] = {
        "type": "init",
        "language": "python",
        "version": "3.x",
        "files": [{"content": content}],
    }
    frame.update(fields)
    return frame


@asynccontextmanager
async def connect(url: str) -> AsyncIterator[WebSocketConnection]:
    async with open_websocket_url(url) as ws:
        yield ws


async def send(ws: WebSocketConnection, frame: dict[str, Any] | str) -> None:
    await ws.send_message(frame if isinstance(frame, str) else json.dumps(frame))


async def until_close(ws: WebSocketConnection) -> tuple[list[dict[str, Any]], int, str]:
    """Frames received until the server closes, then the close code and reason."""
    frames: list[dict[str, Any]] = []
    with trio.fail_after(10):
        try:
            while True:
                frames.append(json.loads(await ws.get_message()))
        except ConnectionClosed as closed:
            reason = closed.reason
    assert reason is not None
    return frames, reason.code, reason.reason or ""


async def next_frame(ws: WebSocketConnection) -> dict[str, Any]:
    with trio.fail_after(10):
        frame: dict[str, Any] = json.loads(await ws.get_message())
        return frame


def stdout_of(frames: list[dict[str, Any]]) -> str:
    return "".join(f["data"] for f in frames if f["type"] == "data" and f["stream"] == "stdout")


async def test_connect_full_flow_ends_with_4999(gateway: GatewayStack, fake: FakeDaemon) -> None:
    """init → runtime → stage → data → exit → close 4999 "Job Completed"."""
    async with connect(gateway.ws_url) as ws:
        await send(ws, init(language="py"))
        frames, code, reason = await until_close(ws)
    assert frames == [
        {"type": "runtime", "language": "python", "version": "3.12.0"},
        {"type": "stage", "stage": "run"},
        {"type": "data", "stream": "stdout", "data": "hi\n"},
        {"type": "exit", "stage": "run", "code": 0, "signal": None},
    ]
    assert (code, reason) == (4999, "Job Completed")


async def test_connect_compiled_runtime_has_two_stages(
    gateway: GatewayStack, fake: FakeDaemon
) -> None:
    """A compiled runtime reports the compile stage and its exit before the run stage."""
    async with connect(gateway.ws_url) as ws:
        await send(ws, init(language="c", version="*"))
        frames, code, _ = await until_close(ws)
    kinds = [(f["type"], f.get("stage")) for f in frames]
    assert kinds[:4] == [("runtime", None), ("stage", "compile"), ("exit", "compile"),
                         ("stage", "run")]  # fmt: skip
    assert code == 4999


async def test_connect_init_timeout_is_4001(gateway: GatewayStack) -> None:
    """No accepted init within 1 s closes with 4001 "Initialization Timeout"."""
    async with connect(gateway.ws_url) as ws:
        started = trio.current_time()
        frames, code, reason = await until_close(ws)
    assert frames == []
    assert (code, reason) == (4001, "Initialization Timeout")
    assert 0.9 <= trio.current_time() - started < 3


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "data", "stream": "stdin", "data": "x"},
        {"type": "signal", "signal": "SIGINT"},
        {"type": "eof"},
    ],
)
async def test_connect_frames_before_init_are_4003(
    gateway: GatewayStack, frame: dict[str, Any]
) -> None:
    """data, signal (and eof) before init close with 4003 "Not yet initialized"."""
    async with connect(gateway.ws_url) as ws:
        await send(ws, frame)
        frames, code, reason = await until_close(ws)
    assert frames == []
    assert (code, reason) == (4003, "Not yet initialized")


async def test_connect_invalid_json_is_error_then_4002(gateway: GatewayStack) -> None:
    """A frame that is not JSON gets an error frame, then close 4002 "Notified Error"."""
    async with connect(gateway.ws_url) as ws:
        await send(ws, "{not json")
        frames, code, reason = await until_close(ws)
    assert frames == [{"type": "error", "message": "Invalid JSON frame"}]
    assert (code, reason) == (4002, "Notified Error")


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (init(language=None), "language is required as a string"),
        (init(files="x"), "files is required as an array"),
        (init(language="cobol", version="1"), "cobol-1 runtime is unknown"),
        (init(run_timeout=99999), "run_timeout cannot exceed the configured limit of 3000"),
    ],
)
async def test_connect_invalid_init_is_error_then_4002(
    gateway: GatewayStack, frame: dict[str, Any], message: str
) -> None:
    """An init failing validation gets Piston's message in an error frame, then 4002."""
    async with connect(gateway.ws_url) as ws:
        await send(ws, frame)
        frames, code, _ = await until_close(ws)
    assert frames == [{"type": "error", "message": message}]
    assert code == 4002


async def test_connect_unknown_frame_types_are_ignored(gateway: GatewayStack) -> None:
    """Frames of unknown type (and JSON that is not an object) are ignored."""
    async with connect(gateway.ws_url) as ws:
        await send(ws, {"type": "hello"})
        await send(ws, "[1, 2]")
        await send(ws, init())
        frames, code, _ = await until_close(ws)
    assert stdout_of(frames) == "hi\n"
    assert code == 4999


async def test_connect_second_init_is_4000(gateway: GatewayStack) -> None:
    """A second init closes with 4000 "Already Initialized"."""
    async with connect(gateway.ws_url) as ws:
        await send(ws, init(ECHO))
        assert (await next_frame(ws))["type"] == "runtime"
        await send(ws, init(ECHO))
        _, code, reason = await until_close(ws)
    assert (code, reason) == (4000, "Already Initialized")


async def test_connect_data_for_other_stream_is_4004(gateway: GatewayStack) -> None:
    """data for a stream other than stdin closes with 4004 "Can only write to stdin"."""
    async with connect(gateway.ws_url) as ws:
        await send(ws, init(ECHO))
        await next_frame(ws)
        await send(ws, {"type": "data", "stream": "stdout", "data": "x"})
        _, code, reason = await until_close(ws)
    assert (code, reason) == (4004, "Can only write to stdin")


@pytest.mark.parametrize("name", ["SIGNOPE", "", 9, "sigint"])
async def test_connect_invalid_signal_is_4005(gateway: GatewayStack, name: object) -> None:
    """A signal name outside Piston's table closes with 4005 "Invalid signal"."""
    async with connect(gateway.ws_url) as ws:
        await send(ws, init(ECHO))
        await next_frame(ws)
        await send(ws, {"type": "signal", "signal": name})
        _, code, reason = await until_close(ws)
    assert (code, reason) == (4005, "Invalid signal")


async def test_connect_stdin_data_and_eof(gateway: GatewayStack) -> None:
    """init.stdin and data frames reach the program; the eof frame closes its stdin (D6)."""
    async with connect(gateway.ws_url) as ws:
        await send(ws, init(ECHO, stdin="first\n"))
        await send(ws, {"type": "data", "stream": "stdin", "data": "second\n"})
        await send(ws, {"type": "eof"})
        frames, code, _ = await until_close(ws)
    assert stdout_of(frames) == "first\nsecond\n"
    assert frames[-1] == {"type": "exit", "stage": "run", "code": 0, "signal": None}
    assert code == 4999


async def test_connect_signal_reaches_the_program(gateway: GatewayStack, fake: FakeDaemon) -> None:
    """D5: a signal frame is delivered through job.signal; the exit names the signal."""
    async with connect(gateway.ws_url) as ws:
        await send(ws, init(ECHO))
        await next_frame(ws)
        await send(ws, {"type": "signal", "signal": "SIGINT"})
        frames, code, _ = await until_close(ws)
    assert fake.signals == ["SIGINT"]
    assert frames[-1] == {"type": "exit", "stage": "run", "code": None, "signal": "SIGINT"}
    assert code == 4999


async def test_connect_output_cap_applies(gateway: GatewayStack) -> None:
    """D4: over the output cap only the capped prefix is sent and the exit is SIGKILL."""
    async with connect(gateway.ws_url) as ws:
        await send(ws, init('print("x" * 5000)'))
        frames, code, _ = await until_close(ws)
    assert stdout_of(frames) == "x" * 1024
    assert frames[-1] == {"type": "exit", "stage": "run", "code": None, "signal": "SIGKILL"}
    assert code == 4999


async def test_connect_daemon_error_is_error_then_4002(
    gateway: GatewayStack, fake: FakeDaemon
) -> None:
    """A daemon error (here overloaded) gets an error frame with its message, then 4002."""
    fake.errors["job.start"] = Overloaded("job queue is full")
    async with connect(gateway.ws_url) as ws:
        await send(ws, init())
        frames, code, _ = await until_close(ws)
    assert frames == [{"type": "error", "message": "job queue is full"}]
    assert code == 4002


async def test_connect_daemon_unreachable_is_error_then_4002(gateway: GatewayStack) -> None:
    """With the daemon unreachable an init gets an error frame, then 4002."""
    url = gateway.down_url.replace("http://", "ws://") + "/api/v2/connect"
    async with connect(url) as ws:
        await send(ws, init())
        frames, code, _ = await until_close(ws)
    assert frames == [
        {"type": "error", "message": "the execution daemon is unavailable, try again later"}
    ]
    assert code == 4002


async def test_connect_client_leaving_ends_the_job(gateway: GatewayStack, fake: FakeDaemon) -> None:
    """When the client disconnects mid-job, the RPC connection closes and the job ends."""
    async with connect(gateway.ws_url) as ws:
        await send(ws, init(ECHO))
        await next_frame(ws)
        assert fake.ended == []
    with trio.fail_after(5):
        while not fake.ended:  # noqa: ASYNC110  (the fake lives in another thread's trio loop)
            await trio.sleep(0.01)
