"""The public client: typed results, interactive job events, progress, and the sync facade."""

from __future__ import annotations

import socket
import threading
from typing import TYPE_CHECKING, Any

import attrs
import pytest
import trio

from pistond.client import (
    JobDone,
    JobExit,
    JobOutput,
    JobStage,
    PistonClient,
    SyncClient,
    default_socket_path,
    open_client,
)
from pistond.errors import InvalidParams, JobNotFound, RuntimeUnknown
from pistond.models import (
    JobResult,
    PackageInfo,
    PackageRef,
    PingResult,
    RuntimeInfo,
    StageName,
    StageStatus,
)
from pistond.rpc.server import serve_rpc
from pistond.testing import open_memory_rpc

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from pathlib import Path

    from pistond.rpc.connection import Peer

STAGE = {
    "stdout": "hi\n",
    "stderr": "",
    "output": "hi\n",
    "code": 0,
    "signal": None,
    "status": None,
    "message": None,
    "cpu_time": 3,
    "wall_time": 9,
    "memory": 4096,
}
EXIT = {k: v for k, v in STAGE.items() if k not in ("stdout", "stderr", "output")}


@attrs.define
class FakeDaemon:
    """Answers PROTOCOL.md methods with canned data and records what it was sent."""

    calls: list[tuple[str, dict[str, Any]]] = attrs.Factory(list)
    jobs: int = 0

    async def __call__(self, method: str, params: dict[str, Any], peer: Peer) -> Any:
        self.calls.append((method, params))
        if method == "ping":
            return {"version": "0.1.0", "protocol": 1}
        if method == "runtimes":
            return [
                {
                    "language": "python",
                    "version": "3.11.2",
                    "aliases": ["py"],
                    "runtime": None,
                    "compiled": False,
                }
            ]
        if method == "execute":
            if params["language"] == "cobol":
                raise RuntimeUnknown("cobol-* runtime is unknown")
            return {"language": "python", "version": "3.11.2", "compile": None, "run": STAGE}
        if method == "packages":
            return [
                {"language": "python", "version": "3.11.2", "installed": True, "source": "local"}
            ]
        if method == "packages.install":
            for line in ("building", "done"):
                await peer.notify("packages.progress", {**params, "line": line})
            await peer.notify(
                "packages.progress", {"language": "other", "version": "1", "line": "no"}
            )
            return {"language": params["language"], "version": "3.11.2"}
        if method == "job.start":
            return await self.start(params, peer)
        if method.startswith("job."):
            job = peer.state.get(params["job"])
            if job is None:
                raise JobNotFound(f"no job {params['job']!r} on this connection")
            await job.send((method, params))
            return {}
        raise InvalidParams(f"unexpected {method}")

    async def start(self, params: dict[str, Any], peer: Peer) -> dict[str, Any]:
        self.jobs += 1
        job_id = f"job-{self.jobs}"
        send, receive = trio.open_memory_channel[tuple[str, dict[str, Any]]](16)
        peer.state[job_id] = send
        # Sent before the reply: the client must not lose it.
        await peer.notify("job.stage", {"job": job_id, "stage": "run"})
        # Another job's event in between must not reach this job.
        await peer.notify("job.output", {"job": "job-other", "stream": "stdout", "data": b"x"})
        peer.nursery.start_soon(self.run_job, job_id, receive, peer)
        return {"job": job_id, "language": "python", "version": "3.11.2"}

    async def run_job(
        self,
        job_id: str,
        requests: trio.MemoryReceiveChannel[tuple[str, dict[str, Any]]],
        peer: Peer,
    ) -> None:
        status: dict[str, Any] = EXIT
        async for method, params in requests:
            if method == "job.write":
                await peer.notify(
                    "job.output", {"job": job_id, "stream": "stdout", "data": params["data"]}
                )
            elif method == "job.signal":
                await peer.notify(
                    "job.output",
                    {"job": job_id, "stream": "stderr", "data": params["signal"].encode()},
                )
            elif method in ("job.close_stdin", "job.kill"):
                if method == "job.kill":
                    status = {**EXIT, "code": None, "signal": "SIGKILL", "status": "SG"}
                break
        del peer.state[job_id]
        await peer.notify("job.exit", {"job": job_id, "stage": "run", **status})
        await peer.notify("job.done", {"job": job_id})


@pytest.fixture
async def client_pair() -> AsyncIterator[tuple[PistonClient, FakeDaemon]]:
    daemon = FakeDaemon()
    async with open_memory_rpc(daemon) as rpc:
        yield PistonClient(rpc), daemon


async def test_client_typed_results(client_pair: tuple[PistonClient, FakeDaemon]) -> None:
    """ping, runtimes and packages return typed records."""
    client, _ = client_pair
    assert await client.ping() == PingResult("0.1.0", 1)
    assert await client.runtimes() == [RuntimeInfo("python", "3.11.2", ("py",), None, False)]
    assert await client.packages() == [PackageInfo("python", "3.11.2", True, "local")]


async def test_client_execute_params_and_result(
    client_pair: tuple[PistonClient, FakeDaemon],
) -> None:
    """execute sends str files as text, bytes as bin, drops unset options, returns JobResult."""
    client, daemon = client_pair
    result = await client.execute(
        "py",
        "3.x",
        [
            "print('hi')",
            ("data.bin", b"\x00\xff"),
            {"name": "x.txt", "content": "x", "encoding": "utf8"},
        ],
        stdin=b"in",
        args=["a"],
        run_timeout=1000,
    )
    assert result == JobResult("python", "3.11.2", None, result.run)
    assert result.run is not None
    assert result.run.stdout == "hi\n"
    assert result.run.status is None
    assert daemon.calls[-1] == (
        "execute",
        {
            "language": "py",
            "version": "3.x",
            "files": [
                {"content": "print('hi')"},
                {"name": "data.bin", "content": b"\x00\xff"},
                {"name": "x.txt", "content": "x", "encoding": "utf8"},
            ],
            "args": ["a"],
            "stdin": b"in",
            "run_timeout": 1000,
        },
    )


async def test_client_errors_raised_as_classes(
    client_pair: tuple[PistonClient, FakeDaemon],
) -> None:
    """A daemon error reaches the caller as its PistondError class."""
    client, _ = client_pair
    with pytest.raises(RuntimeUnknown, match=r"^cobol-\* runtime is unknown$"):
        await client.execute("cobol", "*", ["x"])


async def test_client_interactive_job_events(client_pair: tuple[PistonClient, FakeDaemon]) -> None:
    """A job gets its own events, typed and in order, even those sent before the reply."""
    client, _ = client_pair
    async with client.start_job("python", "*", ["print(input())"]) as job:
        assert job.id == "job-1"
        await job.write("hello\n")
        await job.signal("SIGINT")
        await job.close_stdin()
        events = [event async for event in job.events()]
    assert events == [
        JobStage("job-1", StageName.RUN),
        JobOutput("job-1", "stdout", b"hello\n"),
        JobOutput("job-1", "stderr", b"SIGINT"),
        JobExit("job-1", StageName.RUN, 0, None, None, None, 3, 9, 4096),
        JobDone("job-1"),
    ]


async def test_client_leaving_job_block_kills_it(
    client_pair: tuple[PistonClient, FakeDaemon],
) -> None:
    """Leaving a job's block while it runs sends job.kill."""
    client, daemon = client_pair
    async with client.start_job("python", "*", ["x"]) as job:
        first = await job.next_event()
    assert first == JobStage("job-1", StageName.RUN)
    assert daemon.calls[-1] == ("job.kill", {"job": "job-1"})


async def test_client_job_kill_reports_signal(client_pair: tuple[PistonClient, FakeDaemon]) -> None:
    """After kill, the exit event carries the signal status."""
    client, _ = client_pair
    async with client.start_job("python", "*", ["x"]) as job:
        await job.kill()
        events = [event async for event in job.events()]
    exit_event = events[-2]
    assert isinstance(exit_event, JobExit)
    assert (exit_event.signal, exit_event.status) == ("SIGKILL", StageStatus.SIGNALED)
    assert events[-1] == JobDone("job-1")


async def test_client_install_package_progress(
    client_pair: tuple[PistonClient, FakeDaemon],
) -> None:
    """install_package reports this package's progress lines to the callback."""
    client, _ = client_pair
    lines: list[str] = []
    ref = await client.install_package("python", "3.x", progress=lines.append)
    assert ref == PackageRef("python", "3.11.2")
    assert lines == ["building", "done"]


def test_client_default_socket_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The socket defaults to $PISTON_SOCKET, else /run/pistond/pistond.sock."""
    monkeypatch.delenv("PISTON_SOCKET", raising=False)
    assert default_socket_path() == "/run/pistond/pistond.sock"
    monkeypatch.setenv("PISTON_SOCKET", "/tmp/elsewhere.sock")
    assert default_socket_path() == "/tmp/elsewhere.sock"


async def test_client_open_missing_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Connecting to a socket that does not exist raises FileNotFoundError."""
    monkeypatch.setenv("PISTON_SOCKET", str(tmp_path / "missing.sock"))
    with pytest.raises(FileNotFoundError):
        async with open_client():
            pass


@pytest.fixture
def threaded_daemon(tmp_path: Path) -> Iterator[Path]:
    """A FakeDaemon served on a Unix socket by a trio loop in a background thread."""
    path = tmp_path / "d.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen()
    started = threading.Event()
    token: list[trio.lowlevel.TrioToken] = []
    scope = trio.CancelScope()

    async def main() -> None:
        token.append(trio.lowlevel.current_trio_token())
        with scope:
            listener = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
            async with trio.open_nursery() as nursery:
                await nursery.start(
                    lambda task_status: serve_rpc(
                        [listener], FakeDaemon(), max_message_size=1 << 20, task_status=task_status
                    )
                )
                started.set()

    thread = threading.Thread(target=trio.run, args=(main,))
    thread.start()
    assert started.wait(10)
    try:
        yield path
    finally:
        trio.from_thread.run_sync(scope.cancel, trio_token=token[0])
        thread.join(10)


def test_client_sync_facade(threaded_daemon: Path) -> None:
    """SyncClient blocks for each call and iterates job events without async code."""
    with SyncClient(threaded_daemon) as client:
        assert client.ping() == PingResult("0.1.0", 1)
        result = client.execute("python", "*", ["print('hi')"])
        assert result.run is not None
        assert result.run.stdout == "hi\n"
        with pytest.raises(RuntimeUnknown):
            client.execute("cobol", "*", ["x"])
        with client.start_job("python", "*", ["x"]) as job:
            job.write(b"abc")
            job.close_stdin()
            events = list(job.events())
        assert events[1] == JobOutput(job.id, "stdout", b"abc")
        assert events[-1] == JobDone(job.id)
        assert client.call("ping") == {"version": "0.1.0", "protocol": 1}


def test_client_sync_facade_connect_error(tmp_path: Path) -> None:
    """SyncClient raises the connection error from its with statement."""
    with pytest.raises(FileNotFoundError), SyncClient(tmp_path / "missing.sock"):
        pass
