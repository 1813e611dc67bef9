"""Request attacks (reference/attacks.md further cases: huge argv, env and stdin, too many files,
filename traversal, concurrent burst): the daemon refuses bad requests before any box exists
and survives a burst of twice its job slots."""

from __future__ import annotations

import contextlib
import socket
from typing import Any

import msgpack
import pytest
import trio

from pistond.errors import InvalidParams, Overloaded
from pistond.models import JobResult

from .conftest import SLOTS, Attack

MAX_MESSAGE = 64 * 2**20
"""The daemon's default maximum RPC message size."""
BAD_NAMES = (
    "../x",
    "../../etc/passwd",
    "/etc/passwd",
    "a/../../x",
    ".",
    "x\0y",
    "n" * 5000,
    "/".join(["d"] * 1000) + "/x",
)


async def _job_totals(attack: Attack) -> tuple[int, int, int]:
    """Running, completed and failed jobs once no job is running: an earlier test's last job
    (the fixture's canary) gives its slot back in the background after its result."""
    deadline = trio.current_time() + 10
    while True:
        jobs = (await attack.client.status()).jobs
        if not jobs.running or trio.current_time() > deadline:
            return jobs.running, jobs.completed, jobs.failed
        await trio.sleep(0.02)


async def _refused(attack: Attack, files: list[Any], **options: Any) -> str:
    """The invalid_params message of an execute that must be refused."""
    with pytest.raises(InvalidParams) as caught:
        await attack.execute("python", files, **options)
    message = str(caught.value)
    assert str(attack.host.directory) not in message, "a host path in an error message"
    return message


async def test_huge_argv_is_refused_before_any_spawn(attack: Attack) -> None:
    """Further case: 100 000 args, one 1 MiB arg, an env field and 1001 files are each a clear
    invalid_params, and no job runs."""
    totals = await _job_totals(attack)
    main = [("main.py", "print('ran')\n")]
    await _refused(attack, main, args=["a"] * 100_000)
    await _refused(attack, main, args=["a" * 2**20])
    await _refused(attack, [*main, *((f"f{n}.txt", "x") for n in range(1001))])
    params = {
        "language": "python",
        "version": attack.host.versions["python"],
        "files": [{"name": "main.py", "content": "print('ran')"}],
        "env": {"X": "y" * 2**20},
    }
    with pytest.raises(InvalidParams):
        await attack.client.call("execute", params)
    assert await _job_totals(attack) == totals
    assert not attack.host.box_mounts()


async def test_oversized_message_is_refused_and_the_daemon_lives(attack: Attack) -> None:
    """Further case: stdin past the message maximum gets invalid_request on its msgid and the
    connection closes; stdin just under it is an ordinary job; never XX."""
    totals = await _job_totals(attack)
    request = [
        0,
        7,
        "execute",
        [
            {
                "language": "python",
                "version": attack.host.versions["python"],
                "files": [{"content": "print('ran')"}],
                "stdin": b"\0" * MAX_MESSAGE,
            }
        ],
    ]
    payload = msgpack.packb(request, use_bin_type=True)
    reply = await trio.to_thread.run_sync(_send_raw, str(attack.host.socket), payload)
    assert reply[:2] == [1, 7]
    assert reply[2]["code"] == "invalid_request"
    assert reply[3] is None
    assert await _job_totals(attack) == totals
    result = await attack.execute("python", ["print('ran')\n"], stdin=b"\0" * 16 * 2**20)
    assert result.run is not None
    assert (result.run.status, result.run.stdout) == (None, "ran\n")


def _read(path: str) -> str:
    with open(path) as file:
        return file.read()


def _send_raw(path: str, payload: bytes) -> Any:
    """Send ``payload`` on a new connection and read one reply (until the daemon closes)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(30)
        client.connect(path)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            client.sendall(payload)
        unpacker = msgpack.Unpacker(raw=False)
        while True:
            data = client.recv(65536)
            if not data:
                raise AssertionError("closed without a reply")
            unpacker.feed(data)
            for value in unpacker:
                return value


async def test_filename_traversal_is_refused(attack: Attack) -> None:
    """Further case: traversal, absolute, empty, NUL, over-long, over-deep and duplicate names
    are each invalid_params before any box exists; nothing is written outside."""
    totals = await _job_totals(attack)
    accepted = []
    for name in BAD_NAMES:
        try:
            await _refused(attack, [("main.py", "print(1)\n"), (name, "pwned")])
        except pytest.fail.Exception:
            accepted.append(name[:40])
    assert not accepted
    await _refused(attack, [("main.py", "print(1)\n"), ("main.py", "print(2)\n")])
    assert await _job_totals(attack) == totals
    assert not attack.host.box_mounts()
    data = attack.host.daemon.data_directory
    assert not list(data.parent.rglob("x")), "a traversal name was written"
    assert "pwned" not in _read("/etc/passwd")


async def test_empty_filename_is_refused(attack: Attack) -> None:
    """Further case: an empty file name is invalid_params (PROTOCOL.md ``execute``)."""
    await _refused(attack, [("main.py", "print(1)\n"), ("", "pwned")])


async def test_concurrent_burst_gets_results_or_overloaded(attack: Attack) -> None:
    """Further case: twice as many jobs as slots at once each get a result or overloaded; the
    daemon survives."""
    results: list[JobResult | str] = []

    async def one(index: int) -> None:
        try:
            result = await attack.execute(
                "python", [f"import time\ntime.sleep(0.3)\nprint({index})\n"]
            )
        except Overloaded:
            results.append("overloaded")
            return
        results.append(result)

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for index in range(2 * SLOTS):
                nursery.start_soon(one, index)
    assert len(results) == 2 * SLOTS
    for result in results:
        if isinstance(result, str):
            continue
        assert result.run is not None
        assert result.run.status is None, result.run
    await attack.client.ping()
