"""Output attacks (reference/attacks.md cases 4 and 12, plus the further cases on invalid UTF-8
and a background child holding the pipes): the daemon-side output cap, then the cgroup kill."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

import trio
from trio_websocket import ConnectionClosed, open_websocket_url

from pistond.models import JobExit, JobOutput, StageResult, StageStatus

from .conftest import OUTPUT_MAX, PROGRAMS, RUN_TIMEOUT, Attack, program_files

if TYPE_CHECKING:
    from .conftest import Gateway


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def test_runaway_stdout_is_cut_at_the_cap(attack: Attack) -> None:
    """Case 4: endless stdout ends OL by SIGKILL with exactly the first 1024 bytes, quickly."""
    daemon_pid = attack.host.daemon.process.pid
    rss_before = _rss_kib(daemon_pid)
    results: list[StageResult] = []

    async def one() -> None:
        results.append(await attack.stage("runaway_stdout.py"))

    async with trio.open_nursery() as nursery:
        for _ in range(4):
            nursery.start_soon(one)
    stream = ("Piston is secure\n" * 100)[:OUTPUT_MAX]
    for run in results:
        assert (run.status, run.signal, run.message) == (
            StageStatus.STDOUT_LIMIT,
            "SIGKILL",
            "stdout length exceeded",
        )
        assert run.stdout == stream
        assert run.wall_time < RUN_TIMEOUT / 2
    assert _rss_kib(daemon_pid) - rss_before < 20 * 1024, "daemon RSS grew by over 20 MiB"


async def test_runaway_stdout_is_cut_at_the_cap_interactively(attack: Attack) -> None:
    """Case 4 through job.start: 1024 stdout bytes streamed, then an OL exit by SIGKILL."""
    version = attack.host.versions["python"]
    received = b""
    exits = []
    with trio.fail_after(10):
        async with attack.client.start_job(
            "python", version, program_files("runaway_stdout.py")
        ) as job:
            async for event in job.events():
                if isinstance(event, JobOutput) and event.stream == "stdout":
                    received += event.data
                elif isinstance(event, JobExit):
                    exits.append(event)
    assert received == ("Piston is secure\n" * 100).encode()[:OUTPUT_MAX]
    assert [(e.status, e.signal, e.message) for e in exits] == [
        (StageStatus.STDOUT_LIMIT, "SIGKILL", "stdout length exceeded")
    ]


async def test_runaway_stdout_is_cut_at_the_cap_over_websocket(
    attack: Attack, gateway: Gateway
) -> None:
    """Case 4 through the gateway WebSocket: 1024 stdout bytes, then an exit by SIGKILL."""
    init = {
        "type": "init",
        "language": "python",
        "version": attack.host.versions["python"],
        "files": [{"name": "main.py", "content": (PROGRAMS / "runaway_stdout.py").read_text()}],
    }
    stdout = ""
    exits = []
    with trio.fail_after(15):
        async with open_websocket_url(gateway.url) as websocket:
            await websocket.send_message(json.dumps(init))
            with contextlib.suppress(ConnectionClosed):
                while True:
                    frame = json.loads(await websocket.get_message())
                    if frame["type"] == "data" and frame["stream"] == "stdout":
                        stdout += frame["data"]
                    elif frame["type"] == "exit":
                        exits.append(frame)
    assert stdout == ("Piston is secure\n" * 100)[:OUTPUT_MAX]
    assert [(frame["stage"], frame["signal"]) for frame in exits] == [("run", "SIGKILL")]


async def test_stderr_flood_is_cut_at_the_cap(attack: Attack) -> None:
    """Case 12: an endless stderr ends EL with its first 1024 bytes; stdout stays intact."""
    run = await attack.stage("stderr_flood.py", "stderr")
    assert (run.status, run.signal, run.message) == (
        StageStatus.STDERR_LIMIT,
        "SIGKILL",
        "stderr length exceeded",
    )
    assert run.stderr == "x" * OUTPUT_MAX
    assert run.stdout == "hello\n"


async def test_stderr_flood_names_the_stream_that_crossed_first(attack: Attack) -> None:
    """Case 12, mixed: the status names whichever stream crossed its own cap first."""
    outcomes: dict[str, StageResult] = {}

    async def one(mode: str) -> None:
        outcomes[mode] = await attack.stage("stderr_flood.py", mode)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(one, "stdout-first")
        nursery.start_soon(one, "stderr-first")
    out_first = outcomes["stdout-first"]
    err_first = outcomes["stderr-first"]
    assert (out_first.status, out_first.message) == (
        StageStatus.STDOUT_LIMIT,
        "stdout length exceeded",
    )
    assert out_first.stdout == "a" * OUTPUT_MAX
    assert out_first.stderr == "b" * 600
    assert (err_first.status, err_first.message) == (
        StageStatus.STDERR_LIMIT,
        "stderr length exceeded",
    )
    assert err_first.stderr == "a" * OUTPUT_MAX
    assert err_first.stdout == "b" * 600


async def test_invalid_utf8_is_decoded_once_after_the_byte_cap(attack: Attack) -> None:
    """Further case: bytes are capped first, then decoded once with U+FFFD for invalid input."""
    run = await attack.stage("invalid_utf8.py")
    kept = b"\xff\xfe|nul\x00byte|\xe2\x82\xac|" + b"a" * 1007 + b"\xe2"
    assert len(kept) == OUTPUT_MAX
    assert run.stdout == kept.decode("utf-8", "replace")
    assert run.status == StageStatus.STDOUT_LIMIT


async def test_background_child_does_not_hold_the_job(attack: Attack) -> None:
    """Further case: sleepers holding stdout die with PID 1; the job returns at the main exit."""
    result = await attack.run("background_child.sh")
    run = result.run
    assert run is not None
    assert (run.status, run.code, run.stdout) == (None, 0, "main done\n")
    assert run.wall_time < 1000
