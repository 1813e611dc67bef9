"""execute and interactive jobs against a real daemon: every status, queueing, disconnects."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from pistond.client import JobDone, JobExit, JobOutput, JobStage, open_client
from pistond.errors import Overloaded, RuntimeUnknown
from pistond.models import StageStatus
from pistond.testing.daemon import DaemonProcess

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the daemon needs root")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    """A daemon with small limits and a python override from PISTON_LIMIT_OVERRIDES."""
    settings = {
        "PISTON_RUN_MEMORY_LIMIT": str(256 * 1024 * 1024),
        "PISTON_MAX_CONCURRENT_JOBS": "8",
        "PISTON_LIMIT_OVERRIDES": '{"bash": {"run_timeout": 1500}}',
    }
    with DaemonProcess.start(tmp_path_factory.mktemp("execute"), settings) as running:
        yield running


def box_processes(daemon: DaemonProcess) -> list[str]:
    """Host processes running as one of the daemon's box uids."""
    listing = subprocess.run(
        ["ps", "-eo", "uid=,pid=,comm="], capture_output=True, text=True, check=True
    ).stdout
    return [line for line in listing.splitlines() if int(line.split()[0]) in daemon.box_uids]


async def run(daemon: DaemonProcess, code: str, language: str = "python", **options: object):
    async with open_client(daemon.socket) as client:
        result = await client.execute(language, "*", [code], **options)
    assert result.run is not None
    return result.run


@pytest.mark.parametrize(
    ("code", "status", "message", "signal"),
    [
        ("print('ok')", None, None, None),
        ("import sys; sys.exit(4)", StageStatus.RUNTIME_ERROR, "Exited with error status 4", None),
        ("import os; os.abort()", StageStatus.SIGNALED, "Caught fatal signal 6", "SIGABRT"),
        (
            "import time; time.sleep(30)",
            StageStatus.TIMEOUT,
            "Time limit exceeded (wall clock)",
            "SIGKILL",
        ),
        ("while True: pass", StageStatus.TIMEOUT, "Time limit exceeded", "SIGKILL"),
        (
            "x = bytearray(1 << 30)\nfor i in range(0, len(x), 4096): x[i] = 1",
            StageStatus.MEMORY_LIMIT,
            "Memory limit exceeded",
            "SIGKILL",
        ),
        (
            "while True: print('spam')",
            StageStatus.STDOUT_LIMIT,
            "stdout length exceeded",
            "SIGKILL",
        ),
        (
            "import sys\nwhile True: sys.stderr.write('e' * 100)",
            StageStatus.STDERR_LIMIT,
            "stderr length exceeded",
            "SIGKILL",
        ),
    ],
    ids=["ok", "RE", "SG", "TO-wall", "TO-cpu", "ML", "OL", "EL"],
)
async def test_execute_every_status(
    daemon: DaemonProcess,
    code: str,
    status: StageStatus | None,
    message: str | None,
    signal: str | None,
) -> None:
    """Each way a program ends gets its status, message and signal (PROTOCOL.md Stage)."""
    cpu_bound = message == "Time limit exceeded"
    options = {
        # The CPU case gets a wide wall limit: on a loaded host a busy loop may get well under
        # one core, and it must reach its CPU limit before the wall clock ends it.
        "run_timeout": 3000 if cpu_bound else 1000,
        "run_cpu_time": 300 if cpu_bound else 1000,
        "run_memory_limit": 64 * 1024 * 1024,
    }
    stage = await run(daemon, code, **options)
    assert (stage.status, stage.message, stage.signal) == (status, message, signal)
    if cpu_bound:
        assert stage.cpu_time >= 300
    if status is StageStatus.TIMEOUT and message.endswith("(wall clock)"):
        assert 1000 <= stage.wall_time <= 1500
    if status is StageStatus.MEMORY_LIMIT:
        assert stage.memory <= 64 * 1024 * 1024
    if status is StageStatus.STDOUT_LIMIT:
        assert stage.stdout == ("spam\n" * 205)[:1024]
    assert not box_processes(daemon)


async def test_execute_compile_failure_has_no_run(daemon: DaemonProcess) -> None:
    """A C program that does not compile gets a compile stage and run nil."""
    async with open_client(daemon.socket) as client:
        result = await client.execute("c", "*", [("main.c", "int main( { return 0; }")])
    assert result.compile is not None
    assert result.compile.status is StageStatus.RUNTIME_ERROR
    assert "error" in result.compile.stderr
    assert result.run is None


async def test_execute_compiled_program_runs(daemon: DaemonProcess) -> None:
    """C compiles, then runs with its args and stdin."""
    source = (
        "#include <stdio.h>\nint main(int c, char **v) { char b[16]; fgets(b, 16, stdin);"
        ' printf("%s %s", v[1], b); return 0; }\n'
    )
    async with open_client(daemon.socket) as client:
        result = await client.execute("c", "*", [("m.c", source)], args=["arg"], stdin="in\n")
    assert result.compile is not None
    assert result.compile.code == 0
    assert result.run is not None
    assert result.run.stdout == "arg in\n"


async def test_execute_version_ranges(daemon: DaemonProcess) -> None:
    """Versions resolve as semver ranges; an unmatched range is runtime_unknown."""
    async with open_client(daemon.socket) as client:
        version = (await client.execute("python", "*", ["print(1)"])).version
        major, minor, _ = version.split(".")
        for wanted in (f"{major}.x", major, f">={major}.{minor}", version, f"~{major}.{minor}"):
            assert (await client.execute("py3", wanted, ["print(1)"])).version == version
        with pytest.raises(RuntimeUnknown, match=r"^python-99\.x runtime is unknown$"):
            await client.execute("python", "99.x", ["print(1)"])


async def test_execute_limit_overrides_from_configuration(daemon: DaemonProcess) -> None:
    """PISTON_LIMIT_OVERRIDES caps bash's run_timeout at 1500 ms."""
    async with open_client(daemon.socket) as client:
        result = await client.execute("bash", "*", ["sleep 5"])
        with pytest.raises(Exception, match="cannot exceed the configured limit of 1500"):
            await client.execute("bash", "*", ["sleep 5"], run_timeout=2000)
    assert result.run is not None
    assert result.run.status is StageStatus.TIMEOUT
    assert result.run.wall_time < 2500


async def test_execute_client_disconnect_kills_job(daemon: DaemonProcess) -> None:
    """A client that goes away mid-job leaves no sandbox process behind."""
    with trio.move_on_after(1):
        async with open_client(daemon.socket) as client:
            await client.execute("python", "*", ["import time; time.sleep(60)"], run_timeout=3000)
    await trio.sleep(0.5)
    assert not box_processes(daemon)
    async with open_client(daemon.socket) as client:
        assert (await client.status()).jobs.running == 0


async def test_interactive_stdin_eof(daemon: DaemonProcess) -> None:
    """Interactive: written stdin reaches the program, close_stdin gives it EOF."""
    code = (
        "import sys\nfor line in sys.stdin: print(line.strip().upper(), flush=True)\nprint('eof')"
    )
    events = []
    async with (
        open_client(daemon.socket) as client,
        client.start_job("python", "*", [code]) as job,
    ):
        await job.write("one\n")
        await job.write(b"two\n")
        await job.close_stdin()
        events = [event async for event in job.events()]
    assert isinstance(events[0], JobStage)
    assert events[0].stage == "run"
    output = b"".join(e.data for e in events if isinstance(e, JobOutput))
    assert output == b"ONE\nTWO\neof\n"
    exits = [e for e in events if isinstance(e, JobExit)]
    assert exits[0].code == 0
    assert isinstance(events[-1], JobDone)
    assert events[-1].error is None


async def test_interactive_signal_and_kill(daemon: DaemonProcess) -> None:
    """job.signal reaches the program's handler; job.kill ends a stubborn one."""
    code = (
        "import os, signal, time\n"
        "signal.signal(signal.SIGINT, lambda *a: os.write(1, b'got SIGINT\\n'))\n"
        "print('ready', flush=True)\n"
        "while True: time.sleep(0.05)\n"
    )
    async with (
        open_client(daemon.socket) as client,
        client.start_job("python", "*", [code], run_timeout=3000) as job,
    ):
        seen = b""
        killed = None
        async for event in job.events():
            if isinstance(event, JobOutput):
                seen += event.data
                if seen == b"ready\n":
                    await job.signal("SIGINT")
                elif b"got SIGINT" in seen and killed is None:
                    killed = True
                    await job.kill()
            if isinstance(event, JobExit):
                assert event.signal == "SIGKILL"
    assert seen == b"ready\ngot SIGINT\n"
    assert not box_processes(daemon)


async def test_interactive_output_cap(daemon: DaemonProcess) -> None:
    """Interactive output obeys the cap: the prefix only, then OL and SIGKILL."""
    async with (
        open_client(daemon.socket) as client,
        client.start_job("python", "*", ["while True: print('x' * 99)"]) as job,
    ):
        events = [event async for event in job.events()]
    output = b"".join(e.data for e in events if isinstance(e, JobOutput))
    assert output == (b"x" * 99 + b"\n") * 10 + b"x" * 24
    (exit_event,) = [e for e in events if isinstance(e, JobExit)]
    assert exit_event.status == "OL"
    assert exit_event.signal == "SIGKILL"


async def test_execute_queue_full_and_timeout(tmp_path: Path) -> None:
    """Beyond one slot and one queued job: overloaded; a queued job times out."""
    settings = {
        "PISTON_MAX_CONCURRENT_JOBS": "1",
        "PISTON_MAX_QUEUE_SIZE": "1",
        "PISTON_QUEUE_TIMEOUT": "700",
        "PISTON_HOST_RUNTIMES": "true",
    }
    with DaemonProcess.start(tmp_path, settings) as daemon:
        sleeper = "import time; time.sleep(2)"
        async with open_client(daemon.socket) as client, trio.open_nursery() as nursery:
            outcomes: list[str] = []

            async def job(name: str) -> None:
                try:
                    await client.execute("python", "*", [sleeper])
                    outcomes.append(f"{name} ran")
                except Overloaded as exc:
                    outcomes.append(f"{name} overloaded: {exc.message}")

            nursery.start_soon(job, "first")
            await trio.sleep(0.3)
            nursery.start_soon(job, "queued")
            await trio.sleep(0.2)
            with pytest.raises(Overloaded, match="job queue is full"):
                await client.execute("python", "*", [sleeper])
        assert sorted(outcomes) == [
            "first ran",
            "queued overloaded: no job slot became free within 0.7 s",
        ]
