"""Crash recovery: kill -9 of the daemon, the gateway or the fork server leaves nothing behind.

Rules: real daemons (root, host runtimes) on private sockets and data directories, the real
``pistond-gateway`` process in front of them on a free port; every wait is bounded. After each
crash no process, cgroup or box mount of the dead process may remain once its successor (or
the daemon, for a gateway) has dealt with it, and the service answers again.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
import trio
from soak import gateway_process, leftovers

from pistond.client import JobOutput, JobStage, open_client
from pistond.rpc import ConnectionLost
from pistond.testing.daemon import DaemonProcess

if TYPE_CHECKING:
    from collections.abc import Collection

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="real daemons need root"),
    pytest.mark.slow,
]

SLEEPER = "import time\nprint('running', flush=True)\ntime.sleep(30)\n"
SLOW_COMPILE = "\n".join(
    [
        "template <int N> struct X { long f(long x) { return x * N + N % 7; } };",
        *(f"template struct X<{n}>;" for n in range(4000)),
        "int main() {}",
    ]
)
"""A C++ program with 4000 explicit instantiations: seconds of compiling."""
UNAVAILABLE = {"message": "the execution daemon is unavailable, try again later"}


def _processes() -> list[tuple[int, int, int, str]]:
    listing = subprocess.run(
        ["ps", "-ww", "-eo", "pid=,ppid=,uid=,args="], capture_output=True, text=True, check=True
    ).stdout
    rows = []
    for line in listing.splitlines():
        pid, ppid, uid, *args = line.split(None, 3)
        rows.append((int(pid), int(ppid), int(uid), args[0] if args else ""))
    return rows


def _family(pid: int) -> set[int]:
    """``pid`` and its children (the daemon and its fork server)."""
    return {pid} | {child for child, parent, _, _ in _processes() if parent == pid}


def _fork_server(daemon: DaemonProcess) -> int:
    servers = [
        pid
        for pid, parent, _, args in _processes()
        if parent == daemon.process.pid and "forkserver" in args
    ]
    assert len(servers) == 1, servers
    return servers[0]


def _wait_until_clean(daemon: DaemonProcess, pids: Collection[int], seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while left := leftovers(daemon, pids):
        assert time.monotonic() < deadline, left
        time.sleep(0.1)


def _restart(daemon: DaemonProcess) -> DaemonProcess:
    """A new daemon on the dead one's socket, data directory and settings."""
    settings = {k: v for k, v in daemon.environ.items() if k.startswith("PISTON_")}
    return DaemonProcess.start(daemon.socket.parent, settings)


async def _hello(daemon: DaemonProcess) -> str:
    async with open_client(daemon.socket) as client:
        result = await client.execute("python", "*", ["print('hello')"])
    assert result.run is not None
    return result.run.stdout


async def _kill_during(daemon: DaemonProcess, language: str, source: str, stage: str) -> None:
    """Run an interactive job and kill -9 the daemon once ``stage`` is under way."""
    async with (
        open_client(daemon.socket) as client,
        client.start_job(language, "*", [source]) as job,
    ):
        async for event in job.events():
            if stage == "run" and isinstance(event, JobOutput):
                break
            if stage == "compile" and isinstance(event, JobStage):
                await trio.sleep(1)
                break
        assert [uid for _, _, uid, _ in _processes() if uid in daemon.box_uids]
        daemon.kill()
        with pytest.raises(ConnectionLost):
            await job.next_event()


@pytest.mark.parametrize(
    ("language", "source", "stage"),
    [("python", SLEEPER, "run"), ("c++", SLOW_COMPILE, "compile")],
    ids=["run-stage", "compile-stage"],
)
def test_crash_daemon_killed_mid_stage(
    tmp_path: Path, language: str, source: str, stage: str
) -> None:
    """kill -9 of the daemon mid-stage: its client is told at once; the restarted daemon leaves
    no process, cgroup or box mount of the old one, and serves."""
    daemon = DaemonProcess.start(tmp_path)
    old = _family(daemon.process.pid)
    try:
        trio.run(_kill_during, daemon, language, source, stage)
    finally:
        daemon.kill()
        restarted = _restart(daemon)  # whatever happened, the successor cleans up
    try:
        _wait_until_clean(restarted, old)
        assert trio.run(_hello, restarted) == "hello\n"
    finally:
        restarted.stop()


def test_crash_fork_server_killed_daemon_recovers(tmp_path: Path) -> None:
    """kill -9 of the fork server: the job under way ends with a result, the next job runs on
    a new fork server, and nothing of the old one is left."""
    daemon = DaemonProcess.start(tmp_path)
    try:
        first = _fork_server(daemon)

        async def scenario() -> tuple[object, str]:
            async with open_client(daemon.socket) as client:
                with trio.fail_after(30):
                    async with trio.open_nursery() as nursery:
                        results: list[object] = []

                        async def job() -> None:
                            code = "import time\ntime.sleep(2)\nprint('done')"
                            results.append(await client.execute("python", "*", [code]))

                        nursery.start_soon(job)
                        await trio.sleep(1)
                        os.kill(first, 9)
                return results[0], await _hello(daemon)

        result, hello = trio.run(scenario)
        assert result is not None
        assert hello == "hello\n"
        assert _fork_server(daemon) != first
        _wait_until_clean(daemon, {first})
    finally:
        daemon.stop()


def _sleeping_execute(url: str) -> httpx.Response:
    body = {"language": "python", "version": "*", "files": [{"content": SLEEPER}]}
    return httpx.post(f"{url}/api/v2/execute", json=body, timeout=30)


async def _until_running(daemon: DaemonProcess, count: int = 1) -> None:
    async with open_client(daemon.socket) as client:
        for _ in range(400):
            if (await client.status()).jobs.running >= count:
                return
            await trio.sleep(0.05)
    raise AssertionError("the job did not start")


def test_crash_daemon_killed_under_the_gateway(tmp_path: Path) -> None:
    """The gateway's in-flight request gets a 503 with a message (no hang) when the daemon dies;
    while it is down every call is a 503; once it is back the same gateway serves again."""
    daemon = DaemonProcess.start(tmp_path)
    restarted: DaemonProcess | None = None
    try:
        with gateway_process(daemon) as (_, url):

            async def scenario() -> httpx.Response:
                with trio.fail_after(20):
                    async with trio.open_nursery() as nursery:
                        answers: list[httpx.Response] = []

                        async def request() -> None:
                            answers.append(await trio.to_thread.run_sync(_sleeping_execute, url))

                        nursery.start_soon(request)
                        await _until_running(daemon)
                        daemon.kill()
                        started = trio.current_time()
                    assert trio.current_time() - started < 5
                    return answers[0]

            try:
                in_flight = trio.run(scenario)
            finally:
                daemon.kill()
            assert in_flight.status_code == 503
            assert in_flight.json() == UNAVAILABLE
            down = httpx.get(f"{url}/api/v2/runtimes", timeout=5)
            assert (down.status_code, down.json()) == (503, UNAVAILABLE)
            assert down.headers["retry-after"] == "5"
            restarted = _restart(daemon)
            again = httpx.get(f"{url}/api/v2/runtimes", timeout=5)
            assert again.status_code == 200
            assert any(runtime["language"] == "python" for runtime in again.json())
        _wait_until_clean(restarted, ())
    finally:
        (restarted or daemon).stop()


def test_crash_gateway_killed_its_jobs_end(tmp_path: Path) -> None:
    """kill -9 of the gateway mid-request: the daemon kills the orphaned job at once, and a new
    gateway serves."""
    daemon = DaemonProcess.start(tmp_path)
    try:
        with gateway_process(daemon) as (gateway, url):

            async def scenario() -> None:
                with trio.fail_after(20):
                    async with trio.open_nursery() as nursery:

                        async def request() -> None:
                            with pytest.raises(httpx.TransportError):
                                await trio.to_thread.run_sync(_sleeping_execute, url)

                        nursery.start_soon(request)
                        await _until_running(daemon)
                        gateway.kill()

            trio.run(scenario)
        _wait_until_clean(daemon, (), seconds=5)
        with gateway_process(daemon) as (_, url):
            answer = httpx.post(
                f"{url}/api/v2/execute",
                json={"language": "python", "version": "*", "files": [{"content": "print(1)"}]},
                timeout=30,
            )
            assert answer.json()["run"]["stdout"] == "1\n"
    finally:
        daemon.stop()
