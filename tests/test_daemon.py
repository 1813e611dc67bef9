"""The real daemon: start, CLI JSON, execute, sd_notify, socket activation, shutdown."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import pytest
import trio

from pistond.client import open_client
from pistond.rpc import ConnectionLost
from pistond.testing.daemon import DaemonProcess

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the daemon needs root")

HELLO = [{"name": "main.py", "content": "print('hello')"}]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    """One daemon for the module's read-only checks."""
    with DaemonProcess.start(tmp_path_factory.mktemp("daemon")) as running:
        yield running


def test_daemon_cli_ping_and_status_json(daemon: DaemonProcess) -> None:
    """`piston --json ping` and `status` print the daemon's answers as JSON."""
    ping = daemon.piston_json("ping")
    assert ping["protocol"] == 1
    assert isinstance(ping["version"], str)
    status = daemon.piston_json("status")
    assert set(status) == {"version", "uptime", "jobs", "sandbox", "limits", "compile_cache"}
    assert status["compile_cache"]["enabled"] is True
    assert status["sandbox"]["cgroup"] in {"v2", "hybrid", "v1", "none"}
    assert status["sandbox"]["seccomp"] is True
    assert status["limits"]["run_timeout"] == 3000


def test_daemon_runs_host_runtimes(daemon: DaemonProcess, tmp_path: Path) -> None:
    """The host runtimes are installed at start and run real programs."""
    runtimes = {r["language"] for r in daemon.piston_json("runtimes")}
    assert {"python", "bash", "c", "c++"} <= runtimes
    program = tmp_path / "hello.py"
    program.write_text("import sys\nprint(sys.stdin.read().upper())\nsys.exit(3)\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pistond.cli.piston",
            "--socket",
            str(daemon.socket),
            "run",
            "--json",
            "-i",
            "python",
            str(program),
        ],
        input=b"shout",
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 3
    job = json.loads(result.stdout)
    assert job["run"]["stdout"] == "SHOUT\n"
    assert job["run"]["status"] == "RE"


async def test_daemon_execute_over_the_socket(daemon: DaemonProcess) -> None:
    """execute through the typed client returns a clean run."""
    async with open_client(daemon.socket) as client:
        result = await client.execute("python", "*", HELLO)
    assert result.run is not None
    assert result.run.stdout == "hello\n"
    assert result.run.status is None
    assert result.run.memory > 0


def test_daemon_refuses_second_instance_on_live_socket(daemon: DaemonProcess) -> None:
    """A second daemon on a live socket exits 2 with one clear line."""
    result = subprocess.run(
        [sys.executable, "-m", "pistond"],
        env={**daemon.environ, "PISTON_DATA_DIRECTORY": str(daemon.data_directory) + "2"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == f"pistond: another pistond is listening on {daemon.socket}"


def test_daemon_replaces_stale_socket(tmp_path: Path) -> None:
    """A socket file left by a dead daemon is replaced."""
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(tmp_path / "pistond.sock"))
    stale.close()
    with DaemonProcess.start(tmp_path, {"PISTON_HOST_RUNTIMES": "false"}) as daemon:
        assert daemon.piston_json("ping")["protocol"] == 1


def test_daemon_sd_notify(tmp_path: Path) -> None:
    """With NOTIFY_SOCKET, the daemon sends READY=1 and STATUS, then STOPPING=1 on SIGTERM."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(tmp_path / "notify.sock"))
    listener.settimeout(30)
    daemon = DaemonProcess.start(
        tmp_path / "d",
        {"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "PISTON_HOST_RUNTIMES": "false"},
    )
    try:
        messages = [listener.recv(4096).decode()]
        while "READY=1" not in "".join(messages):
            messages.append(listener.recv(4096).decode())
        lines = [line for message in messages for line in message.splitlines()]
        assert "READY=1" in lines
        assert any(line.startswith("STATUS=serving") for line in lines)
    finally:
        assert daemon.stop() == 0
    rest = []
    listener.settimeout(1)
    try:
        while True:
            rest.append(listener.recv(4096).decode())
    except TimeoutError:
        pass
    assert any("STOPPING=1" in message.splitlines() for message in rest)
    listener.close()


def test_daemon_socket_activation(tmp_path: Path) -> None:
    """Under systemd-socket-activate the daemon serves the passed socket and makes no file."""
    activate = "/usr/bin/systemd-socket-activate"
    if not os.path.exists(activate):
        pytest.skip("systemd-socket-activate is not installed")
    path = tmp_path / "activated.sock"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PISTON_DATA_DIRECTORY": str(tmp_path / "data"),
        "PISTON_SOCKET": str(tmp_path / "unused.sock"),
        "PISTON_HOST_RUNTIMES": "false",
    }
    with subprocess.Popen(
        [
            activate,
            "-l",
            str(path),
            "-E",
            "PISTON_DATA_DIRECTORY",
            "-E",
            "PISTON_SOCKET",
            "-E",
            "PISTON_HOST_RUNTIMES",
            "-E",
            "PATH",
            sys.executable,
            "-m",
            "pistond",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    ) as activator:
        try:
            deadline = time.monotonic() + 20
            while not path.exists():
                assert time.monotonic() < deadline, "systemd-socket-activate did not listen"
                time.sleep(0.05)

            async def ping() -> dict[str, object]:
                async with open_client(path) as client:
                    return dict(await client.call("ping"))

            assert trio.run(ping)["protocol"] == 1
            assert not (tmp_path / "unused.sock").exists()
        finally:
            activator.send_signal(signal.SIGTERM)
            activator.wait(30)


def test_daemon_graceful_shutdown_lets_jobs_finish(tmp_path: Path) -> None:
    """SIGTERM waits for a running job to finish, then exits 0."""
    daemon = DaemonProcess.start(tmp_path, {"PISTON_SHUTDOWN_GRACE": "10000"})

    async def scenario() -> str:
        async with open_client(daemon.socket) as client, trio.open_nursery() as nursery:
            results: list[str] = []

            async def job() -> None:
                code = "import time\ntime.sleep(1)\nprint('finished')"
                result = await client.execute("python", "*", [code])
                assert result.run is not None
                results.append(result.run.stdout)

            nursery.start_soon(job)
            await trio.sleep(0.5)
            daemon.process.send_signal(signal.SIGTERM)
        return results[0]

    try:
        assert trio.run(scenario) == "finished\n"
        assert daemon.process.wait(30) == 0
    finally:
        daemon.kill()
    assert not daemon.socket.exists()


def test_daemon_forced_shutdown_kills_jobs(tmp_path: Path) -> None:
    """A second signal stops at once: the running job is killed and the daemon exits 1."""
    daemon = DaemonProcess.start(tmp_path, {"PISTON_SHUTDOWN_GRACE": "60000"})

    async def scenario() -> None:
        async with open_client(daemon.socket) as client, trio.open_nursery() as nursery:

            async def job() -> None:
                with pytest.raises(ConnectionLost):
                    await client.execute("python", "*", ["import time\ntime.sleep(30)"])

            nursery.start_soon(job)
            await trio.sleep(0.5)
            daemon.process.send_signal(signal.SIGTERM)
            await trio.sleep(0.5)
            assert daemon.process.poll() is None
            daemon.process.send_signal(signal.SIGINT)

    try:
        started = time.monotonic()
        trio.run(scenario)
        assert daemon.process.wait(30) == 1
        assert time.monotonic() - started < 15
    finally:
        daemon.kill()
    uids = {
        int(line)
        for line in subprocess.run(
            ["ps", "-eo", "uid="], capture_output=True, text=True, check=True
        ).stdout.split()
    }
    assert not uids & set(daemon.box_uids)
