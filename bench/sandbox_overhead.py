"""Sandbox overhead: /bin/true spawned bare and through the full sandbox, interleaved.

Run as root: ``.venv/bin/python bench/sandbox_overhead.py [-n 200] [--breakdown]``.
Bare is ``os.posix_spawn`` plus ``waitpid``; sandboxed is ``Box.run_stage`` (cgroup, pipes,
fork server, namespaces, mounts, pivot_root, privilege drop, seccomp, exec, reap, cgroup
removal), in one box, as a job's stage runs. Prints p50 and p99 of each, and the overhead.
With ``--breakdown`` it also times the daemon-side steps on their own, and runs the fork server
in timing mode (``PISTOND_SANDBOX_TIMING=1``) to print the median time of every recipe step of a
sandboxed stage (fork server, setup child, PID 1, program) between the daemon's own stamps.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import trio

from pistond.config import DaemonConfig
from pistond.sandbox import RootView, SpawnSpec, StageLimits, StageSpec, open_sandbox
from pistond.sandbox.cgroups import CgroupLimits
from pistond.sandbox.recipe import TIMING_ENV
from pistond.sandbox.spawn import ForkServer, SandboxExit, SandboxProcess
from pistond.sandbox.supervise import open_supervised_stage

if TYPE_CHECKING:
    from pistond.sandbox import Box

LIMITS = StageLimits(
    wall_time_ms=5000,
    cpu_time_ms=5000,
    memory_bytes=256 * 1024 * 1024,
    max_processes=32,
    max_open_files=64,
    max_file_size=1_000_000,
    output_max_size=1024,
)
SPEC = StageSpec(argv=("/bin/true",), env={"PATH": "/usr/bin:/bin"}, root=RootView(), limits=LIMITS)


def bare_once() -> float:
    started = time.perf_counter()
    pid = os.posix_spawn("/bin/true", ["/bin/true"], {})
    os.waitpid(pid, 0)
    return time.perf_counter() - started


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))
    return ordered[index]


def report(name: str, samples: list[float]) -> tuple[float, float]:
    p50, p99 = percentile(samples, 0.5) * 1000, percentile(samples, 0.99) * 1000
    mean = statistics.mean(samples) * 1000
    print(f"{name:>24}: p50 {p50:7.2f} ms   p99 {p99:7.2f} ms   mean {mean:7.2f} ms")
    return p50, p99


async def run(count: int, data: Path, server: ForkServer, timed: ForkServer | None) -> None:
    # Its own socket path gives the benchmark its own jobs cgroup.
    config = DaemonConfig(data_directory=data, socket=data / "bench.sock", max_concurrent_jobs=2)
    bare: list[float] = []
    boxed: list[float] = []
    async with open_sandbox(config, server) as sandbox, sandbox.open_box(0) as box:
        for _ in range(10):  # warm-up: imports, fork server, page cache
            await box.run_stage(SPEC)
            bare_once()
        for _ in range(count):
            bare.append(bare_once())
            started = time.perf_counter()
            result = await box.run_stage(SPEC)
            boxed.append(time.perf_counter() - started)
            if result.status is not None:
                sys.exit(f"sandboxed /bin/true failed: {result.status} {result.message}")
        bare_p50, bare_p99 = report("bare posix_spawn", bare)
        box_p50, box_p99 = report("sandboxed run_stage", boxed)
        print(
            f"{'overhead':>24}: p50 {box_p50 - bare_p50:7.2f} ms   p99 {box_p99 - bare_p99:7.2f} ms"
            f"   ratio p50 {box_p50 / bare_p50:5.1f}x"
        )
        if timed is not None:
            await steps(sandbox, count)
    if timed is not None:
        recorder = Recorder(timed)
        async with open_sandbox(config, recorder) as sandbox, sandbox.open_box(0) as box:
            await recipe_steps(box, recorder, count)
    async with open_sandbox(config, server) as sandbox:
        mounts: list[float] = []
        for _ in range(count):
            started = time.perf_counter()
            async with sandbox.open_box(1):
                pass
            mounts.append(time.perf_counter() - started)
        report("box mount+unmount", mounts)
        for directory in reversed(getattr(sandbox.cgroups, "jobs_dirs", ())):
            with contextlib.suppress(OSError):
                os.rmdir(directory)


@attrs.frozen
class BareExit:
    program_status: int | None
    setup_error: str | None = None


@attrs.define(eq=False)
class BareProcess:
    """/bin/true without a sandbox, behind the SandboxProcess interface."""

    pid: int
    pidfd: int

    async def wait(self) -> BareExit:
        await trio.lowlevel.wait_readable(self.pidfd)
        _, status = os.waitpid(self.pid, 0)  # noqa: ASYNC222 (pidfd readable: reaps at once)
        return BareExit(status)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)

    def signal_program(self, signum: int) -> None:
        signal.pidfd_send_signal(self.pidfd, signum)

    def close(self) -> None:
        trio.lowlevel.notify_closing(self.pidfd)
        os.close(self.pidfd)


class BareSpawner:
    """posix_spawn with the stage's pipes as stdio: the supervisor's cost without the sandbox."""

    async def spawn(self, spec: SpawnSpec, *, stdin: int, stdout: int, stderr: int) -> BareProcess:
        await trio.lowlevel.checkpoint()
        actions = [
            (os.POSIX_SPAWN_DUP2, fd, target) for target, fd in enumerate((stdin, stdout, stderr))
        ]
        argv = list(spec.stage.argv)
        pid = os.posix_spawn(argv[0], argv, {}, file_actions=actions)  # noqa: ASYNC221 (timed)
        return BareProcess(pid, os.pidfd_open(pid))


def now() -> int:
    """CLOCK_MONOTONIC in ns, the clock of the recipe's timing marks."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


@attrs.define(eq=False)
class RecordedProcess:
    """A sandbox whose wait() keeps the recipe's timing marks and the daemon's own."""

    inner: SandboxProcess
    marks: dict[str, int]
    runs: list[dict[str, int]]

    @property
    def pid(self) -> int:
        return self.inner.pid

    async def wait(self) -> SandboxExit:
        result = await self.inner.wait()
        self.marks["daemon.wait returned"] = now()
        self.marks.update(result.timings)
        self.runs.append(self.marks)
        return result

    def kill(self) -> None:
        self.inner.kill()

    def signal_program(self, signum: int) -> None:
        self.inner.signal_program(signum)

    def close(self) -> None:
        self.inner.close()


@attrs.define(eq=False)
class Recorder:
    """The fork server, stamping when each spawn was asked for and answered."""

    server: ForkServer
    runs: list[dict[str, int]] = attrs.Factory(list)

    async def spawn(self, spec: SpawnSpec, *, stdin: int, stdout: int, stderr: int) -> Any:
        called = now()
        process = await self.server.spawn(spec, stdin=stdin, stdout=stdout, stderr=stderr)
        marks = {"daemon.spawn called": called, "daemon.spawn returned": now()}
        return RecordedProcess(process, marks, self.runs)


async def recipe_steps(box: Box, recorder: Recorder, count: int) -> None:
    """Median duration of every step of a sandboxed /bin/true, in the order they happen."""
    for _ in range(10):
        await box.run_stage(SPEC)
    recorder.runs.clear()
    for _ in range(count):
        started = now()
        await box.run_stage(SPEC)
        finished = now()
        recorder.runs[-1]["daemon.run_stage called"] = started
        recorder.runs[-1]["daemon.run_stage returned"] = finished
    if not recorder.runs or len(recorder.runs[0]) <= 5:
        print("no recipe timings: the fork server did not run in timing mode")
        return
    deltas: dict[str, list[float]] = {}
    since: dict[str, list[float]] = {}
    order: dict[str, list[int]] = {}
    for run in recorder.runs:
        ordered = sorted(run.items(), key=lambda item: item[1])
        start = ordered[0][1]
        previous = start
        for position, (name, stamp) in enumerate(ordered):
            deltas.setdefault(name, []).append((stamp - previous) / 1e6)
            since.setdefault(name, []).append((stamp - start) / 1e6)
            order.setdefault(name, []).append(position)
            previous = stamp
    print(f"\nrecipe steps of a sandboxed /bin/true, median of {len(recorder.runs)} runs:")
    print(f"{'step (time since the previous mark)':<44} {'p50 ms':>8} {'p90 ms':>8} {'at ms':>8}")
    for name in sorted(order, key=lambda key: statistics.median(order[key])):
        values = deltas[name]
        print(
            f"{name:<44} {percentile(values, 0.5):8.3f} {percentile(values, 0.9):8.3f}"
            f" {statistics.median(since[name]):8.3f}"
        )


async def steps(sandbox: object, count: int) -> None:
    """Time the daemon-side steps alone: cgroup create+remove, pipes, the supervisor."""
    backend = sandbox.cgroups  # type: ignore[attr-defined]
    supervised: list[float] = []
    for index in range(count):
        started = time.perf_counter()
        group = backend.create(f"bench-sup-{os.getpid()}-{index}", CgroupLimits(256 << 20, 32))
        spec = SpawnSpec(stage=SPEC, box_path="/", uid=60_000, cgroup_procs=group.procs_files)
        async with open_supervised_stage(spawner=BareSpawner(), group=group, spec=spec) as stage:
            await stage.close_stdin()
            await stage.wait()
        supervised.append(time.perf_counter() - started)
    report("supervised bare spawn", supervised)
    groups: list[float] = []
    for index in range(count):
        started = time.perf_counter()
        group = backend.create(f"bench-{os.getpid()}-{index}", CgroupLimits(256 << 20, 32))
        group.remove()
        groups.append(time.perf_counter() - started)
    report("cgroup create+remove", groups)
    pipes: list[float] = []
    for _ in range(count):
        started = time.perf_counter()
        fds = [*os.pipe2(os.O_CLOEXEC), *os.pipe2(os.O_CLOEXEC), *os.pipe2(os.O_CLOEXEC)]
        for fd in fds:
            os.close(fd)
        pipes.append(time.perf_counter() - started)
    report("3 pipes", pipes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--count", type=int, default=200)
    parser.add_argument("--breakdown", action="store_true")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the sandbox needs namespaces, mounts and cgroups")
    server = ForkServer.start()
    timed = None
    if args.breakdown:
        os.environ[TIMING_ENV] = "1"
        timed = ForkServer.start()
        del os.environ[TIMING_ENV]
    with tempfile.TemporaryDirectory(prefix="pistond-bench-") as data:
        trio.run(_run_and_close, args.count, Path(data), server, timed)


async def _run_and_close(
    count: int, data: Path, server: ForkServer, timed: ForkServer | None
) -> None:
    try:
        await run(count, data, server, timed)
    finally:
        await server.aclose()
        if timed is not None:
            await timed.aclose()


if __name__ == "__main__":
    main()
