"""End-to-end ``execute`` latency and throughput over the RPC socket, against bare runs.

Starts a private daemon with the default settings (host runtimes, 64 job slots), then in this
one process:

1. latency, sandboxed against bare, interleaved so that machine noise hits both alike: python
   hello world (goal 1.15x), bash ``echo`` (goal 3x), C hello world compile + run (goal 1.3x);
2. throughput of trivial jobs (bash ``true``) at concurrency 1, 4, 16 and 64 (``--curve`` adds
   2, 8 and 32), each client on its own connection, with p50 and p99 latency;
3. the CPU each trivial job cost, by consumer: the daemon, the launcher, the sandboxes' own
   processes (PID 1 and the program), and this client;
4. with ``--rss-jobs N``, the daemon's resident memory idle and after N more jobs.

Run as root::

    .venv/bin/python bench/execute.py [--runs 100] [--seconds 5] [--curve] [--rss-jobs 10000]
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from pistond.client import PistonClient, open_client
from pistond.testing.daemon import DaemonProcess

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

PYTHON = "/usr/bin/python3.11"
BASH = "/bin/bash"
HELLO_PY = "print('hello')\n"
ECHO_SH = "echo hello\n"
HELLO_C = '#include <stdio.h>\nint main(void) { puts("hello"); return 0; }\n'
TICK = os.sysconf("SC_CLK_TCK")


def expect(ok: bool, result: object) -> None:
    """Stop the benchmark when a job did not do what it should."""
    if not ok:
        raise RuntimeError(f"unexpected result: {result}")


def percentile(samples: list[float], fraction: float) -> float:
    """The ``fraction`` quantile of ``samples`` (nearest rank)."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def report(name: str, sandboxed: list[float], bare: list[float], goal: float) -> None:
    """Print p50/p99 of both series, in ms, their ratio and the goal."""
    s50, s99 = percentile(sandboxed, 0.5) * 1e3, percentile(sandboxed, 0.99) * 1e3
    b50, b99 = percentile(bare, 0.5) * 1e3, percentile(bare, 0.99) * 1e3
    ratio = s50 / b50
    print(
        f"{name:<10} pistond p50 {s50:7.2f} ms p99 {s99:7.2f} ms | bare p50 {b50:7.2f} ms "
        f"p99 {b99:7.2f} ms | ratio p50 {ratio:5.2f}x (goal {goal}x), "
        f"overhead {s50 - b50:6.2f} ms"
    )


async def timed(call: Callable[[], Awaitable[object]]) -> float:
    """Seconds one awaited call takes."""
    start = time.perf_counter()
    await call()
    return time.perf_counter() - start


async def latency(client: PistonClient, work: Path, runs: int) -> None:
    """Python, bash and C hello worlds, sandboxed and bare, interleaved."""
    (work / "hello.py").write_text(HELLO_PY)
    (work / "echo.sh").write_text(ECHO_SH)
    (work / "hello.c").write_text(HELLO_C)

    async def python_job() -> None:
        result = await client.execute("python", "*", [("hello.py", HELLO_PY)])
        expect(result.run is not None and result.run.stdout == "hello\n", result)

    async def python_bare() -> None:
        await trio.run_process([PYTHON, str(work / "hello.py")], capture_stdout=True)

    async def bash_job() -> None:
        result = await client.execute("bash", "*", [("echo.sh", ECHO_SH)])
        expect(result.run is not None and result.run.stdout == "hello\n", result)

    async def bash_bare() -> None:
        await trio.run_process([BASH, str(work / "echo.sh")], capture_stdout=True)

    async def c_job() -> None:
        # Compiled every time, as the bare gcc is: the compile cache would skip the compile.
        result = await client.execute("c", "*", [("hello.c", HELLO_C)], compile_cache=False)
        expect(result.run is not None and result.run.stdout == "hello\n", result)

    async def c_bare() -> None:
        await trio.run_process(
            ["gcc", "-std=c11", "-O0", "-o", str(work / "a.out"), str(work / "hello.c"), "-lm"],
            cwd=work,
        )
        await trio.run_process([str(work / "a.out")], capture_stdout=True)

    for name, job, bare, count, goal in (
        ("python", python_job, python_bare, runs, 1.15),
        ("bash echo", bash_job, bash_bare, runs, 3.0),
        ("c", c_job, c_bare, max(runs // 4, 10), 1.3),
    ):
        await job()
        await bare()
        sandboxed, plain = [], []
        for _ in range(count):
            sandboxed.append(await timed(job))
            plain.append(await timed(bare))
        report(name, sandboxed, plain, goal)


def cpu_ticks(pid: int) -> tuple[int, int]:
    """(own, reaped children's) CPU clock ticks of ``pid``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14])


def rss_kib(pid: int) -> int:
    """Resident memory of ``pid`` in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def launcher_pid(daemon: DaemonProcess) -> int | None:
    """The daemon's launcher process, if it runs one."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
            if (
                int(parent) == daemon.process.pid
                and b"pistond-launcher" in (entry / "cmdline").read_bytes()
            ):
                return int(entry.name)
        except (OSError, IndexError, ValueError):
            continue
    return None


async def throughput(
    socket: Path, concurrency: int, seconds: float
) -> tuple[float, list[float], int]:
    """Trivial jobs per second with ``concurrency`` clients; their latencies; how many."""
    latencies: list[float] = []
    deadline = trio.current_time() + seconds

    async def worker() -> None:
        async with open_client(socket) as client:
            while trio.current_time() < deadline:
                started = time.perf_counter()
                result = await client.execute("bash", "*", [("job.sh", "true\n")])
                latencies.append(time.perf_counter() - started)
                expect(result.run is not None and result.run.code == 0, result)

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(concurrency):
            nursery.start_soon(worker)
    return len(latencies) / (time.perf_counter() - start), latencies, len(latencies)


def client_cpu() -> float:
    """This process's CPU seconds."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def bench(daemon: DaemonProcess, work: Path, args: argparse.Namespace) -> None:
    """All measurements against ``daemon``."""
    async with open_client(daemon.socket) as client:
        await latency(client, work, args.runs)
    launcher = launcher_pid(daemon)
    levels = (1, 2, 4, 8, 16, 32, 64) if args.curve else (1, 4, 16, 64)
    print("\ntrivial jobs (bash true), each client on its own connection:")
    totals = {"daemon": 0, "launcher": 0, "sandboxes": 0, "client": 0.0, "jobs": 0}
    for concurrency in levels:
        daemon_before = cpu_ticks(daemon.process.pid)[0]
        launcher_before = cpu_ticks(launcher) if launcher else (0, 0)
        client_before = client_cpu()
        rate, latencies, count = await throughput(daemon.socket, concurrency, args.seconds)
        daemon_after = cpu_ticks(daemon.process.pid)[0]
        launcher_after = cpu_ticks(launcher) if launcher else (0, 0)
        totals["daemon"] += daemon_after - daemon_before
        totals["launcher"] += launcher_after[0] - launcher_before[0]
        totals["sandboxes"] += launcher_after[1] - launcher_before[1]
        totals["client"] += client_cpu() - client_before
        totals["jobs"] += count
        print(
            f"  concurrency {concurrency:>2}: {rate:7.1f} jobs/s   p50 "
            f"{percentile(latencies, 0.5) * 1e3:7.2f} ms   p99 "
            f"{percentile(latencies, 0.99) * 1e3:7.2f} ms"
        )
    jobs = max(int(totals["jobs"]), 1)
    per_job = {
        name: totals[name] / TICK / jobs * 1e3 for name in ("daemon", "launcher", "sandboxes")
    }
    client_ms = totals["client"] / jobs * 1e3
    print(
        f"\nCPU per trivial job: daemon {per_job['daemon']:.2f} ms, launcher "
        f"{per_job['launcher']:.2f} ms, sandbox processes (PID 1 + bash) "
        f"{per_job['sandboxes']:.2f} ms, this client {client_ms:.2f} ms"
    )
    if args.rss_jobs:
        await trio.sleep(1)
        idle = rss_kib(daemon.process.pid)
        done = 0
        async with open_client(daemon.socket) as client:
            while done < args.rss_jobs:
                result = await client.execute("bash", "*", [("job.sh", "true\n")])
                expect(result.run is not None and result.run.code == 0, result)
                done += 1
        await trio.sleep(1)
        print(
            f"daemon RSS: {idle / 1024:.1f} MiB idle, {rss_kib(daemon.process.pid) / 1024:.1f} "
            f"MiB after {done} more jobs"
        )


def main() -> None:
    """Parse arguments, start a daemon, measure, stop it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100, help="hello world runs (C: a quarter)")
    parser.add_argument("--seconds", type=float, default=5.0, help="per throughput level")
    parser.add_argument("--curve", action="store_true", help="concurrency 1, 2, 4, ..., 64")
    parser.add_argument("--rss-jobs", type=int, default=0, help="jobs between the RSS readings")
    args = parser.parse_args()
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="pistond-bench-") as directory:
        settings = {"PISTON_LOG_LEVEL": "WARN"}
        with DaemonProcess.start(Path(directory) / "daemon", settings) as daemon:
            trio.run(bench, daemon, Path(directory), args)


if __name__ == "__main__":
    main()
