"""Sandbox overhead: /bin/true spawned bare, under ``unshare -fpnmiu``, and through the sandbox.

Run as root: ``.venv/bin/python bench/sandbox_overhead.py [-n 500] [--breakdown] [--python]``.

In one loop, interleaved so that machine noise hits every series alike:

- bare: ``os.posix_spawn("/bin/true")`` and ``waitpid``;
- kernel floor: ``unshare -fpnmiu /bin/true`` (new PID, network, mount, IPC and UTS namespaces,
  nothing else), spawned the same way;
- sandboxed: ``Box.run_stage`` through the native launcher, as a job's stage runs (stage
  cgroup reset, pipes, the spawn request, namespaces, mounts, privilege drop, Landlock,
  seccomp, exec, the exit record, cgroup readings); with ``--python`` also through the
  Python fork server.

Prints p50/p99 of each, the sandbox's overhead over bare and over the floor, and the CPU each
sandboxed stage cost in the launcher's processes (PID 1 and the program). ``--breakdown`` runs
the launcher in timing mode and prints the median time of every step, the launcher's, PID 1's
and the program's, between the daemon's own stamps.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from pistond.config import DaemonConfig
from pistond.sandbox import RootView, StageLimits, StageSpec, launch
from pistond.sandbox.service import open_sandbox
from pistond.sandbox.spawn import ForkServer

if TYPE_CHECKING:
    from pistond.sandbox.service import Box

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
UNSHARE = shutil.which("unshare") or "/usr/bin/unshare"


def spawn_once(argv: list[str]) -> float:
    """Seconds to posix_spawn ``argv`` and reap it."""
    started = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, {})
    os.waitpid(pid, 0)
    return time.perf_counter() - started


def percentile(samples: list[float], fraction: float) -> float:
    """The ``fraction`` quantile (nearest rank)."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def report(name: str, samples: list[float]) -> float:
    """Print p50/p99 in ms; return p50 in ms."""
    p50, p99 = percentile(samples, 0.5) * 1000, percentile(samples, 0.99) * 1000
    print(f"{name:>30}: p50 {p50:7.3f} ms   p99 {p99:7.3f} ms")
    return p50


def child_ticks(pid: int) -> int:
    """CPU clock ticks of ``pid``'s reaped children (every sandbox's PID 1 and program)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[13]) + int(fields[14])


async def run_stage(box: Box) -> float:
    """Seconds one sandboxed /bin/true takes through ``box``."""
    started = time.perf_counter()
    result = await box.run_stage(SPEC)
    elapsed = time.perf_counter() - started
    if result.status is not None:
        sys.exit(f"sandboxed /bin/true failed: {result.status} {result.message}")
    return elapsed


async def compare(count: int, data: Path, python: bool) -> None:
    """The interleaved series and their ratios."""
    native = launch.start_built()
    fork_server = ForkServer.start() if python else None
    series: dict[str, list[float]] = {"bare": [], "floor": [], "native": [], "python": []}
    try:
        async with contextlib.AsyncExitStack() as stack:
            boxes = {"native": await _open_box(stack, data / "native", native)}
            if fork_server is not None:
                boxes["python"] = await _open_box(stack, data / "python", fork_server)
            for _ in range(20):
                for box in boxes.values():
                    await run_stage(box)
            ticks = child_ticks(native.pid)
            for _ in range(count):
                series["bare"].append(spawn_once(["/bin/true"]))
                series["floor"].append(spawn_once([UNSHARE, "-fpnmiu", "/bin/true"]))
                for kind, box in boxes.items():
                    series[kind].append(await run_stage(box))
            ticks = child_ticks(native.pid) - ticks
    finally:
        await native.aclose()
        if fork_server is not None:
            await fork_server.aclose()
    bare = report("bare posix_spawn", series["bare"])
    floor = report("unshare -fpnmiu (kernel floor)", series["floor"])
    sandboxed = report("sandboxed, native launcher", series["native"])
    if series["python"]:
        report("sandboxed, Python fork server", series["python"])
    print(
        f"{'native overhead':>30}: p50 {sandboxed - bare:7.3f} ms over bare"
        f" ({sandboxed / bare:4.2f}x), {sandboxed - floor:+7.3f} ms against the floor"
        f" (floor: {floor - bare:.3f} ms over bare)"
    )
    cpu_ms = ticks / os.sysconf("SC_CLK_TCK") / count * 1000
    print(f"{'CPU per stage, PID 1 + program':>30}: {cpu_ms:7.3f} ms")


async def _open_box(stack: contextlib.AsyncExitStack, data: Path, spawner: Any) -> Box:
    """Box 0 of a sandbox of its own over ``spawner``, closed with ``stack``."""
    config = DaemonConfig(data_directory=data, socket=data / "bench.sock", max_concurrent_jobs=2)
    sandbox = await stack.enter_async_context(open_sandbox(config, spawner))
    return await stack.enter_async_context(sandbox.open_box(0))


def now() -> int:
    """CLOCK_MONOTONIC in ns, the clock of the launcher's timing marks."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


async def breakdown(count: int, data: Path) -> None:
    """Median time of every step of a sandboxed /bin/true, in the order they happen."""
    launcher = launch.start_built(timing=True)
    config = DaemonConfig(data_directory=data / "t", socket=data / "t.sock", max_concurrent_jobs=2)
    runs: list[dict[str, int]] = []
    try:
        async with open_sandbox(config, launcher) as sandbox, sandbox.open_box(0) as box:
            spawner = sandbox.spawner
            inner = spawner.spawn

            async def stamped(request: Any, **stdio: int) -> Any:
                marks = {"daemon.spawn called": now()}
                process = await inner(request, **stdio)
                marks["daemon.spawn returned"] = now()
                return _StampedProcess(process, marks, runs)

            sandbox.spawner = _Stamped(spawner, stamped)  # type: ignore[assignment]
            for _ in range(20):
                await box.run_stage(SPEC)
            runs.clear()
            for _ in range(count):
                started = now()
                await box.run_stage(SPEC)
                runs[-1]["daemon.run_stage called"] = started
                runs[-1]["daemon.run_stage returned"] = now()
    finally:
        await launcher.aclose()
    deltas: dict[str, list[float]] = {}
    since: dict[str, list[float]] = {}
    order: dict[str, list[int]] = {}
    for run in runs:
        ordered = sorted(run.items(), key=lambda item: item[1])
        start = previous = ordered[0][1]
        for position, (name, stamp) in enumerate(ordered):
            deltas.setdefault(name, []).append((stamp - previous) / 1e6)
            since.setdefault(name, []).append((stamp - start) / 1e6)
            order.setdefault(name, []).append(position)
            previous = stamp
    print(f"\nsteps of a sandboxed /bin/true (native launcher), median of {len(runs)} runs:")
    print(f"{'step (time since the previous mark)':<40} {'p50 ms':>8} {'p90 ms':>8} {'at ms':>8}")
    for name in sorted(order, key=lambda key: statistics.median(order[key])):
        values = deltas[name]
        print(
            f"{name:<40} {percentile(values, 0.5):8.3f} {percentile(values, 0.9):8.3f}"
            f" {statistics.median(since[name]):8.3f}"
        )


class _StampedProcess:
    """A sandbox whose exit adds its timing marks, and the daemon's, to ``runs``."""

    def __init__(self, inner: Any, marks: dict[str, int], runs: list[dict[str, int]]) -> None:
        self._inner, self._marks, self._runs = inner, marks, runs

    async def wait(self) -> Any:
        exit_ = await self._inner.wait()
        self._marks["daemon.exit record read"] = now()
        self._marks.update(exit_.timings)
        self._runs.append(self._marks)
        return exit_

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _Stamped:
    """The sandbox's spawner with a stamping ``spawn``."""

    def __init__(self, inner: Any, spawn: Any) -> None:
        self._inner, self.spawn = inner, spawn

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def main() -> None:
    """Parse arguments and measure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--count", type=int, default=500)
    parser.add_argument("--breakdown", action="store_true", help="time every step")
    parser.add_argument("--python", action="store_true", help="also the Python fork server")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the sandbox needs namespaces, mounts and cgroups")
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="pistond-bench-") as data:
        trio.run(functools.partial(compare, args.count, Path(data), args.python))
        if args.breakdown:
            trio.run(breakdown, args.count, Path(data))


if __name__ == "__main__":
    main()
