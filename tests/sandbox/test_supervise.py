"""supervise: limits become verdicts, and every stage ends killed, reaped and cleaned.

The first half drives the supervisor with a scripted sandbox process and cgroup (no root):
the test plays the program by writing into the pipes the supervisor made. The second half runs
real programs through the fork server, as root with cgroups, and skips where those are absent.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING

import attrs
import pytest
import trio

from pistond.capacity import StageGate
from pistond.errors import SandboxError
from pistond.models import StageStatus
from pistond.sandbox.output import OutputCapture
from pistond.sandbox.spawners import SpawnRequest
from pistond.sandbox.spec import RootView, SpawnSpec, StageLimits, StageSpec
from pistond.sandbox.supervise import (
    CPU_POLL_INTERVAL,
    DRAIN_TIMEOUT,
    KillReason,
    Measurements,
    open_supervised_stage,
    verdict,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from pistond.config import DaemonConfig
    from pistond.models import StageResult
    from pistond.sandbox.service import Sandbox


def _limits(**changes: int | None) -> StageLimits:
    values: dict[str, int | None] = {
        "wall_time_ms": 2000,
        "cpu_time_ms": 2000,
        "memory_bytes": 128 * 1024 * 1024,
        "max_processes": 32,
        "max_open_files": 64,
        "max_file_size": 1_000_000,
        "output_max_size": 1024,
    }
    values.update(changes)
    return StageLimits(**values)  # type: ignore[arg-type]


def _spawn_spec(**changes: int | None) -> SpawnSpec:
    stage = StageSpec(argv=("/bin/true",), env={}, root=RootView(), limits=_limits(**changes))
    return SpawnSpec(stage=stage, box_path="/nonexistent", uid=60_000, cgroup_procs=())


def _request(group: FakeGroup, **changes: int | None) -> SpawnRequest:
    return SpawnRequest(spec=_spawn_spec(**changes), slot=0, box_fd=-1, group=group)  # type: ignore[arg-type]


# ---------------------------------------------------------------- scripted process and group


@attrs.frozen
class FakeExit:
    program_status: int | None
    setup_error: str | None = None
    complete: bool = False


@attrs.define(eq=False)
class FakeProcess:
    """Plays PID 1: holds the program's ends of the pipes until it 'exits' or is killed."""

    stdin: int
    stdout: int
    stderr: int
    pid: int = 4242
    status: int | None = None
    setup_error: str | None = None
    killed: int = 0
    closed: bool = False
    waits: int = 0
    signals: list[int] = attrs.field(factory=list)
    exited: trio.Event = attrs.field(factory=trio.Event)

    def exit(self, raw_status: int | None, setup_error: str | None = None) -> None:
        if not self.exited.is_set():
            self.status, self.setup_error = raw_status, setup_error
            for fd in (self.stdin, self.stdout, self.stderr):
                _close_quietly(fd)
            self.exited.set()

    async def wait(self) -> FakeExit:
        self.waits += 1
        await self.exited.wait()
        return FakeExit(self.status, self.setup_error)

    async def wait_closed(self) -> bool:
        await self.exited.wait()
        return False

    def kill(self) -> None:
        self.killed += 1
        self.exit(signal.SIGKILL)

    def signal_program(self, signum: int) -> None:
        self.signals.append(signum)

    def close(self) -> None:
        self.closed = True


@attrs.define(eq=False)
class FakeSpawner:
    fail: bool = False
    processes: list[FakeProcess] = attrs.field(factory=list)

    async def spawn(
        self, request: SpawnRequest, *, stdin: int, stdout: int, stderr: int
    ) -> FakeProcess:
        await trio.lowlevel.checkpoint()
        if self.fail:
            raise OSError(32, "fork server gone")
        process = FakeProcess(stdin=os.dup(stdin), stdout=os.dup(stdout), stderr=os.dup(stderr))
        self.processes.append(process)
        return process


@attrs.define(eq=False)
class FakeGroup:
    cpu_ns: int = 5_000_000
    memory: int = 3_000_000
    oom: bool = False
    tasks: bool = False
    kills: int = 0
    removed: bool = False

    def cpu_time_ns(self) -> int:
        return self.cpu_ns

    def memory_peak(self) -> int:
        return self.memory

    def oom_killed(self) -> bool:
        return self.oom

    def populated(self) -> bool:
        return self.tasks

    def kill(self) -> None:
        self.kills += 1
        self.tasks = False

    def remove(self) -> None:
        self.removed = True


def _close_quietly(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


async def _run(
    program: object, group: FakeGroup | None = None, **limits: int | None
) -> tuple[StageResult, FakeProcess, FakeGroup]:
    """Run a scripted stage: ``program(process)`` plays the program; returns everything."""
    group = group or FakeGroup()
    spawner = FakeSpawner()
    async with trio.open_nursery() as nursery:
        async with open_supervised_stage(
            spawner=spawner, request=_request(group, **limits)
        ) as stage:
            process = spawner.processes[0]
            nursery.start_soon(program, process)  # type: ignore[arg-type]
            with trio.fail_after(10):
                result = await stage.wait()
        nursery.cancel_scope.cancel()
    return result, process, group


async def test_supervise_clean_exit_collects_output_and_cleans() -> None:
    """Exit 0: nil status, output kept, cgroup measured and emptied (kept), pidfd closed."""

    async def program(process: FakeProcess) -> None:
        os.write(process.stdout, b"hi\n")
        os.write(process.stderr, b"warn\n")
        process.exit(0)

    result, process, group = await _run(program)
    assert (result.status, result.code, result.signal, result.message) == (None, 0, None, None)
    assert (result.stdout, result.stderr) == ("hi\n", "warn\n")
    assert result.output in ("hi\nwarn\n", "warn\nhi\n")
    assert (result.cpu_time, result.memory) == (5, 3_000_000)
    assert not group.tasks
    assert not group.removed  # kept: the slot's next stage reuses it
    assert process.closed


async def test_supervise_nonzero_exit_is_runtime_error() -> None:
    """A non-zero exit is RE with Piston's message."""

    async def program(process: FakeProcess) -> None:
        process.exit(3 << 8)

    result, _, _ = await _run(program)
    assert (result.status, result.code, result.message) == (
        StageStatus.RUNTIME_ERROR,
        3,
        "Exited with error status 3",
    )


async def test_supervise_fatal_signal_is_sg_with_name() -> None:
    """Death by a signal is SG with the signal's name and no code."""

    async def program(process: FakeProcess) -> None:
        process.exit(signal.SIGSEGV)

    result, _, _ = await _run(program)
    assert (result.status, result.code, result.signal, result.message) == (
        StageStatus.SIGNALED,
        None,
        "SIGSEGV",
        "Caught fatal signal 11",
    )


async def test_supervise_oom_kill_is_ml() -> None:
    """An OOM kill in the cgroup is ML with SIGKILL, over SG."""

    async def program(process: FakeProcess) -> None:
        process.exit(signal.SIGKILL)

    result, _, _ = await _run(program, FakeGroup(oom=True))
    assert (result.status, result.signal, result.message) == (
        StageStatus.MEMORY_LIMIT,
        "SIGKILL",
        "Memory limit exceeded",
    )


async def test_supervise_setup_error_is_xx() -> None:
    """A sandbox that could not be built is XX with the child's short reason."""

    async def program(process: FakeProcess) -> None:
        process.exit(None, "mount /box: No such file or directory")

    result, _, _ = await _run(program)
    assert (result.status, result.message) == (
        StageStatus.INTERNAL_ERROR,
        "mount /box: No such file or directory",
    )


async def test_supervise_stdout_overflow_kills_with_exact_prefix() -> None:
    """Crossing the stdout cap kills at once: OL, SIGKILL, exactly the first cap bytes kept."""

    async def program(process: FakeProcess) -> None:
        os.write(process.stdout, b"a" * 1000 + b"b" * 100)
        await process.exited.wait()

    result, process, _ = await _run(program, output_max_size=1024)
    assert (result.status, result.signal, result.code) == (
        StageStatus.STDOUT_LIMIT,
        "SIGKILL",
        None,
    )
    assert result.message == "stdout length exceeded"
    assert result.stdout == "a" * 1000 + "b" * 24
    assert process.killed >= 1


async def test_supervise_stderr_overflow_is_el() -> None:
    """Crossing the stderr cap first is EL; stdout stays intact."""

    async def program(process: FakeProcess) -> None:
        os.write(process.stdout, b"ok")
        await trio.sleep(0.05)
        os.write(process.stderr, b"x" * 2000)
        await process.exited.wait()

    result, _, _ = await _run(program, output_max_size=1024)
    assert (result.status, result.message) == (StageStatus.STDERR_LIMIT, "stderr length exceeded")
    assert result.stdout == "ok"
    assert result.stderr == "x" * 1024


async def test_supervise_wall_limit_kills() -> None:
    """A program that never ends is killed at the wall limit: TO (wall clock), SIGKILL."""

    async def program(process: FakeProcess) -> None:
        await process.exited.wait()

    result, process, _ = await _run(program, wall_time_ms=200)
    assert (result.status, result.signal, result.message) == (
        StageStatus.TIMEOUT,
        "SIGKILL",
        "Time limit exceeded (wall clock)",
    )
    assert 200 <= result.wall_time < 400
    assert process.killed >= 1


async def test_supervise_cpu_limit_kills() -> None:
    """CPU time over the limit, polled from the cgroup, is TO without '(wall clock)'."""
    group = FakeGroup()

    async def program(process: FakeProcess) -> None:
        await trio.sleep(0.05)
        group.cpu_ns = 600_000_000
        await process.exited.wait()

    result, _, _ = await _run(program, group, cpu_time_ms=500)
    assert (result.status, result.message, result.signal) == (
        StageStatus.TIMEOUT,
        "Time limit exceeded",
        "SIGKILL",
    )
    assert result.wall_time < 500


@attrs.define(eq=False)
class BurstGroup(FakeGroup):
    """Two CPUs busy until ``stop_ns`` of CPU time, then idle; counts the reads."""

    stop_ns: int = 0
    started: float = attrs.field(factory=trio.current_time)
    reads: list[float] = attrs.field(factory=list)

    def cpu_time_ns(self) -> int:
        now = trio.current_time()
        self.reads.append(now)
        return min(int((now - self.started) * 2e9), self.stop_ns)


async def test_supervise_cpu_poll_slows_down_again_when_the_stage_stops_near_its_limit() -> None:
    """A stage that burns close to its CPU limit and then waits is read about once a period,
    not at the short interval used while its limit was near."""
    group = BurstGroup(stop_ns=499_000_000)

    async def program(process: FakeProcess) -> None:
        await trio.sleep(0.6)
        process.exit(0)

    result, _, _ = await _run(program, group, cpu_time_ms=500)
    assert result.status is None
    idle_reads = [at for at in group.reads if at - group.started > 0.3]
    assert len(idle_reads) <= 0.3 / CPU_POLL_INTERVAL + 5


async def test_supervise_exit_does_not_wait_for_pipe_holders() -> None:
    """A leftover holding stdout does not delay the result beyond the short drain."""
    holders: list[int] = []

    async def program(process: FakeProcess) -> None:
        holders.append(os.dup(process.stdout))
        os.write(process.stdout, b"done\n")
        process.exit(0)

    started = trio.current_time()
    try:
        result, _, _ = await _run(program)
    finally:
        for fd in holders:
            os.close(fd)
    assert result.status is None
    assert result.stdout == "done\n"
    assert trio.current_time() - started < DRAIN_TIMEOUT + 0.2


async def test_supervise_outside_cancellation_kills_and_cleans() -> None:
    """Cancelling the stage from outside kills, reaps, empties the cgroup and re-raises."""
    group = FakeGroup(tasks=True)
    spawner = FakeSpawner()
    with trio.move_on_after(0.1) as scope:
        async with open_supervised_stage(spawner=spawner, request=_request(group)) as stage:
            await stage.wait()
    assert scope.cancelled_caught
    process = spawner.processes[0]
    assert process.killed >= 1
    assert process.exited.is_set()
    assert process.closed
    assert group.kills >= 1
    assert not group.tasks
    assert not group.removed  # kept: the slot's next stage reuses it


async def test_supervise_leaving_block_kills_running_stage() -> None:
    """Leaving the block without waiting kills the stage; its result is SG SIGKILL."""
    spawner = FakeSpawner()
    group = FakeGroup()
    async with open_supervised_stage(spawner=spawner, request=_request(group)) as stage:
        pass
    assert stage.result is not None
    assert (stage.result.status, stage.result.signal) == (StageStatus.SIGNALED, "SIGKILL")
    assert not group.tasks
    assert not group.removed  # kept: the slot's next stage reuses it


async def test_supervise_spawn_failure_raises_and_empties_group() -> None:
    """A failed spawn is a SandboxError, and the cgroup is left empty (kept for reuse)."""
    group = FakeGroup()
    with pytest.raises(SandboxError):
        async with open_supervised_stage(spawner=FakeSpawner(fail=True), request=_request(group)):
            pass
    assert not group.tasks
    assert not group.removed  # kept: the slot's next stage reuses it


async def test_supervise_interactive_stdin_output_and_signal() -> None:
    """Interactive: stdin reaches the program, output streams live, signals are forwarded."""
    spawner = FakeSpawner()
    async with open_supervised_stage(
        spawner=spawner, request=_request(FakeGroup()), live=True
    ) as stage:
        process = spawner.processes[0]
        await stage.write(b"ping")
        await stage.close_stdin()
        assert os.read(process.stdin, 10) == b"ping"
        assert os.read(process.stdin, 10) == b""
        stage.signal(signal.SIGINT)
        os.write(process.stdout, b"pong")
        chunks = []
        async for chunk in stage.output():
            chunks.append(chunk)
            process.exit(0)
        result = await stage.wait()
    assert chunks == [("stdout", b"pong")]
    assert process.signals == [signal.SIGINT]
    assert result.stdout == "pong"


async def test_supervise_unread_stdin_does_not_block_the_end() -> None:
    """stdin larger than the pipe, never read, does not outlive the wall limit."""
    spawner = FakeSpawner()
    with trio.fail_after(5):
        async with open_supervised_stage(
            spawner=spawner, request=_request(FakeGroup(), wall_time_ms=200)
        ) as stage:
            await stage.write(b"x" * (4 * 1024 * 1024))
            await stage.close_stdin()
            result = await stage.wait()
    assert (result.status, result.message) == (
        StageStatus.TIMEOUT,
        "Time limit exceeded (wall clock)",
    )


def test_verdict_limit_kill_wins_over_program_exit() -> None:
    """A stage killed for a limit reports that limit even if the program also exited."""
    result = verdict(
        capture=OutputCapture(limit=10),
        sandbox_exit=FakeExit(0),
        killed_for=KillReason.STDOUT_LIMIT,
        measurements=Measurements(cpu_time_ns=0, memory_bytes=0, oom_killed=True, wall_time_s=0.01),
        cpu_limit_ms=100,
    )
    assert (result.status, result.signal, result.code) == (
        StageStatus.STDOUT_LIMIT,
        "SIGKILL",
        None,
    )


# ---------------------------------------------------------------- the real sandbox

PYTHON = "/usr/bin/python3.11"


def _real_sandbox_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root for namespaces, mounts and cgroups"
    if importlib.util.find_spec("pistond.sandbox.spawn") is None:
        return "the fork server (pistond.sandbox.spawn) is not in the tree yet"
    if not os.path.exists(PYTHON):
        return f"{PYTHON} is not installed"
    return None


real = pytest.mark.skipif(_real_sandbox_reason() is not None, reason=str(_real_sandbox_reason()))


@pytest.fixture(params=["native", "python"])
def fork_server(request: pytest.FixtureRequest) -> object:
    """A fresh spawner per test, each kind in turn: the native launcher, then the Python fork
    server (the fallback). Started outside trio and bound to one trio run."""
    reason = _real_sandbox_reason()
    if reason is not None:
        pytest.skip(reason)
    if request.param == "python":
        from pistond.sandbox.spawn import ForkServer  # noqa: PLC0415

        return ForkServer.start()
    from pistond.sandbox import launch  # noqa: PLC0415

    return launch.start_built()


@pytest.fixture
def config(tmp_path: Path) -> DaemonConfig:
    from pistond.config import DaemonConfig  # noqa: PLC0415

    # Its own socket path gives this daemon its own jobs cgroup, apart from concurrent runs.
    return DaemonConfig(
        data_directory=tmp_path / "data", socket=tmp_path / "pistond.sock", max_concurrent_jobs=4
    )


@pytest.fixture
async def sandbox(config: DaemonConfig, fork_server: object) -> AsyncIterator[Sandbox]:
    from pistond.sandbox.service import open_sandbox  # noqa: PLC0415

    jobs_dirs: tuple[str, ...] = ()
    try:
        async with open_sandbox(config, fork_server) as opened:  # type: ignore[arg-type]
            jobs_dirs = tuple(map(str, getattr(opened.cgroups, "jobs_dirs", ())))
            yield opened
    finally:
        await fork_server.aclose()  # type: ignore[attr-defined]
        for directory in reversed(jobs_dirs):
            with contextlib.suppress(OSError):
                os.rmdir(directory)


def _spec(argv: tuple[str, ...], **limits: int | None) -> StageSpec:
    return StageSpec(
        argv=argv,
        env={"PATH": "/usr/bin:/bin", "HOME": "/tmp"},
        root=RootView(),
        limits=_limits(**limits),
    )


def _py(code: str, **limits: int | None) -> StageSpec:
    return _spec((PYTHON, "-c", code), **limits)


def _box_uid_processes(uid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    found.append(int(entry))
            except FileNotFoundError:
                continue
    return found


def _mounted(prefix: str) -> bool:
    with open("/proc/self/mountinfo", encoding="utf-8") as info:
        return prefix in info.read()


def _leftover_cgroups(sandbox: Sandbox) -> list[str]:
    """Stage groups of this sandbox that still hold a task (empty ones are kept for reuse)."""
    found = []
    for directory in getattr(sandbox.cgroups, "jobs_dirs", ()):
        for entry in os.scandir(directory):
            procs = os.path.join(entry.path, "cgroup.procs")
            if entry.is_dir() and Path(procs).read_text(encoding="ascii").strip():
                found.append(entry.name)
    return found


async def _run_real(sandbox: Sandbox, spec: StageSpec, stdin: bytes = b"") -> StageResult:
    async with sandbox.open_box(0) as box:
        with trio.fail_after(30):
            return await box.run_stage(spec, stdin)


@real
async def test_real_exit_zero_with_stdin(sandbox: Sandbox) -> None:
    """A program reading stdin and exiting 0 gets nil status and its output."""
    result = await _run_real(
        sandbox, _py("import sys; print(sys.stdin.read().upper())"), stdin=b"hello"
    )
    assert (result.status, result.code, result.stdout) == (None, 0, "HELLO\n")
    assert result.wall_time > 0


@real
async def test_real_runtime_error(sandbox: Sandbox) -> None:
    """exit(3) is RE with code 3."""
    result = await _run_real(sandbox, _py("import sys; sys.exit(3)"))
    assert (result.status, result.code) == (StageStatus.RUNTIME_ERROR, 3)


@real
async def test_real_fatal_signal(sandbox: Sandbox) -> None:
    """os.abort() is SG SIGABRT."""
    result = await _run_real(sandbox, _py("import os; os.abort()"))
    assert (result.status, result.signal, result.code) == (StageStatus.SIGNALED, "SIGABRT", None)


@real
async def test_real_runaway_stdout(sandbox: Sandbox) -> None:
    """Runaway stdout is OL long before the wall limit, with exactly the first cap bytes."""
    result = await _run_real(
        sandbox, _py("while True: print('Piston is secure')", wall_time_ms=5000)
    )
    assert (result.status, result.signal) == (StageStatus.STDOUT_LIMIT, "SIGKILL")
    assert result.stdout == ("Piston is secure\n" * 100)[:1024]
    assert result.wall_time < 2000


@real
async def test_real_stderr_flood(sandbox: Sandbox) -> None:
    """A stderr flood is EL."""
    result = await _run_real(sandbox, _py("import sys\nwhile True: sys.stderr.write('x' * 4096)"))
    assert (result.status, result.message) == (StageStatus.STDERR_LIMIT, "stderr length exceeded")
    assert result.stderr == "x" * 1024


@real
async def test_real_signal_resistant_wall_limit(sandbox: Sandbox) -> None:
    """Ignoring signals does not help: TO (wall clock) within the limit + 200 ms."""
    code = (
        "import signal, time\n"
        "for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):\n"
        "    signal.signal(s, signal.SIG_IGN)\n"
        "while True: time.sleep(1)\n"
    )
    result = await _run_real(sandbox, _py(code, wall_time_ms=1000))
    assert (result.status, result.message, result.signal) == (
        StageStatus.TIMEOUT,
        "Time limit exceeded (wall clock)",
        "SIGKILL",
    )
    assert 1000 <= result.wall_time <= 1200


@real
async def test_real_cpu_limit_multiprocessing(sandbox: Sandbox) -> None:
    """Busy loops in several processes hit the CPU limit: TO, not the wall clock."""
    code = (
        "import multiprocessing as mp\n"
        "def spin():\n"
        "    while True: pass\n"
        "ps = [mp.Process(target=spin) for _ in range(4)]\n"
        "[p.start() for p in ps]\n"
        "spin()\n"
    )
    result = await _run_real(sandbox, _py(code, cpu_time_ms=500, wall_time_ms=10_000))
    assert (result.status, result.message) == (StageStatus.TIMEOUT, "Time limit exceeded")
    assert result.cpu_time >= 500
    assert result.wall_time < 5000


@real
async def test_real_memory_limit(sandbox: Sandbox) -> None:
    """A memory hog under a 64 MiB cgroup limit is ML."""
    code = "chunks = []\nwhile True: chunks.append(bytearray(10 * 1024 * 1024))"
    result = await _run_real(sandbox, _py(code, memory_bytes=64 * 1024 * 1024))
    assert (result.status, result.signal, result.message) == (
        StageStatus.MEMORY_LIMIT,
        "SIGKILL",
        "Memory limit exceeded",
    )
    assert result.memory <= 64 * 1024 * 1024


@real
async def test_real_background_child_holding_pipes(sandbox: Sandbox) -> None:
    """A sleeper holding stdout does not delay the result; it dies with the namespace."""
    spec = _spec(("/bin/sh", "-c", "sleep 60 & echo started"))
    started = time.monotonic()
    result = await _run_real(sandbox, spec)
    assert (result.status, result.stdout) == (None, "started\n")
    assert time.monotonic() - started < 1.5
    assert _box_uid_processes(sandbox.config.box_uid_base) == []


@real
async def test_real_cancellation_kills_and_cleans(sandbox: Sandbox) -> None:
    """Cancelling run_stage from outside leaves no process, cgroup or mount behind."""
    uid = sandbox.config.box_uid_base
    with trio.move_on_after(0.5) as scope:
        async with sandbox.open_box(0) as box:
            await box.run_stage(_spec(("/bin/sh", "-c", "sleep 60 & sleep 60")))
    assert scope.cancelled_caught
    assert _box_uid_processes(uid) == []
    assert not _mounted(str(sandbox.config.data_directory))
    assert _leftover_cgroups(sandbox) == []


@real
async def test_real_interactive_stage_streams(sandbox: Sandbox) -> None:
    """An interactive stage gets stdin as written and streams its output live."""
    async with sandbox.open_box(0) as box, box.open_stage(_spec(("/bin/cat",))) as stage:
        await stage.write(b"one\n")
        chunks = []
        with trio.fail_after(10):
            async for stream, data in stage.output():
                chunks.append((stream, data))
                if b"".join(d for _, d in chunks) == b"one\n":
                    await stage.close_stdin()
            result = await stage.wait()
    assert chunks == [("stdout", b"one\n")]
    assert (result.status, result.stdout) == (None, "one\n")


@real
async def test_real_missing_program_is_not_silent(sandbox: Sandbox) -> None:
    """A program that cannot be executed ends with a non-nil status and no host path."""
    result = await _run_real(sandbox, _spec(("/nonexistent/program",)))
    assert result.status in (StageStatus.INTERNAL_ERROR, StageStatus.RUNTIME_ERROR)
    assert str(sandbox.config.data_directory) not in (result.message or "") + result.output


@real
async def test_real_idle_stage_gives_its_admission_back(sandbox: Sandbox) -> None:
    """A stage that computes keeps its place at the stage gate; once it waits (idle for about
    a tenth of a second) it gives the place back, so the next stage starts."""
    gate = StageGate(1)
    ticket = await gate.admit(deadline=trio.current_time() + 5)
    busy_then_idle = _py(
        "import time\nend = time.time() + 0.5\nwhile time.time() < end: pass\ntime.sleep(5)"
    )
    async with (
        sandbox.open_box(0) as box,
        box.open_stage(busy_then_idle, admission=ticket) as stage,
    ):
        with trio.move_on_after(0.35) as busy:
            await gate.admit(deadline=trio.current_time() + 5)
        assert busy.cancelled_caught, "a computing stage gave its place away"
        with trio.fail_after(3):
            second = await gate.admit(deadline=trio.current_time() + 5)
        second.release()
        stage.kill()
        result = await stage.wait()
    assert result.signal == "SIGKILL"
    assert gate.running == 0
