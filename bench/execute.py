"""End-to-end ``execute`` latency and throughput over the RPC socket, against bare runs.

Starts a private daemon (host runtimes), then in this one process:

1. python hello world: ``execute`` over the socket vs ``/usr/bin/python3.11 hello.py`` run bare;
2. C hello world: ``execute`` (compile + run) vs bare ``gcc`` then ``./a.out``;
3. throughput of trivial jobs (bash ``true``) at concurrency 1, 4 and 16.

Bare and sandboxed runs are interleaved so machine noise hits both alike. Run as root::

    .venv/bin/python bench/execute.py [--runs 100]
"""

from __future__ import annotations

import argparse
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
HELLO_PY = "print('hello')\n"
HELLO_C = '#include <stdio.h>\nint main(void) { puts("hello"); return 0; }\n'


def expect(ok: bool, result: object) -> None:
    """Stop the benchmark when a job did not do what it should."""
    if not ok:
        raise RuntimeError(f"unexpected result: {result}")


def percentile(samples: list[float], fraction: float) -> float:
    """The ``fraction`` quantile of ``samples`` (nearest rank)."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def report(name: str, sandboxed: list[float], bare: list[float]) -> None:
    """Print p50/p99 of both series, in ms, and their ratio."""
    s50, s99 = percentile(sandboxed, 0.5) * 1e3, percentile(sandboxed, 0.99) * 1e3
    b50, b99 = percentile(bare, 0.5) * 1e3, percentile(bare, 0.99) * 1e3
    print(
        f"{name:<10} pistond p50 {s50:7.2f} ms p99 {s99:7.2f} ms | bare p50 {b50:7.2f} ms "
        f"p99 {b99:7.2f} ms | ratio p50 {s50 / b50:5.2f}x, overhead {s50 - b50:6.2f} ms"
    )


async def timed(call: Callable[[], Awaitable[object]]) -> float:
    """Seconds one awaited call takes."""
    start = time.perf_counter()
    await call()
    return time.perf_counter() - start


async def latency(client: PistonClient, work: Path, runs: int) -> None:
    """Python and C hello worlds, sandboxed and bare, interleaved."""
    (work / "hello.py").write_text(HELLO_PY)
    (work / "hello.c").write_text(HELLO_C)

    async def python_job() -> None:
        result = await client.execute("python", "*", [("hello.py", HELLO_PY)])
        expect(result.run is not None and result.run.stdout == "hello\n", result)

    async def python_bare() -> None:
        await trio.run_process([PYTHON, str(work / "hello.py")], capture_stdout=True)

    async def c_job() -> None:
        result = await client.execute("c", "*", [("hello.c", HELLO_C)])
        expect(result.run is not None and result.run.stdout == "hello\n", result)

    async def c_bare() -> None:
        await trio.run_process(
            ["gcc", "-std=c11", "-O0", "-o", str(work / "a.out"), str(work / "hello.c"), "-lm"],
            cwd=work,
        )
        await trio.run_process([str(work / "a.out")], capture_stdout=True)

    for name, job, bare, count in (
        ("python", python_job, python_bare, runs),
        ("c", c_job, c_bare, max(runs // 4, 10)),
    ):
        await job()
        await bare()
        sandboxed, plain = [], []
        for _ in range(count):
            sandboxed.append(await timed(job))
            plain.append(await timed(bare))
        report(name, sandboxed, plain)


async def throughput(socket: Path, concurrency: int, seconds: float) -> float:
    """Trivial jobs per second with ``concurrency`` clients, each on its own connection."""
    done = 0
    deadline = trio.current_time() + seconds

    async def worker() -> None:
        nonlocal done
        async with open_client(socket) as client:
            while trio.current_time() < deadline:
                result = await client.execute("bash", "*", [("job.sh", "true\n")])
                expect(result.run is not None and result.run.code == 0, result)
                done += 1

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(concurrency):
            nursery.start_soon(worker)
    return done / (time.perf_counter() - start)


async def bench(socket: Path, work: Path, runs: int, seconds: float) -> None:
    """All measurements against the daemon on ``socket``."""
    async with open_client(socket) as client:
        await latency(client, work, runs)
    for concurrency in (1, 4, 16):
        rate = await throughput(socket, concurrency, seconds)
        print(f"throughput concurrency {concurrency:>2}: {rate:7.1f} trivial jobs/s")


def main() -> None:
    """Parse arguments, start a daemon, measure, stop it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100, help="python hello runs (C: a quarter)")
    parser.add_argument("--seconds", type=float, default=5.0, help="per throughput level")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pistond-bench-") as directory:
        settings = {"PISTON_MAX_CONCURRENT_JOBS": "16", "PISTON_LOG_LEVEL": "WARN"}
        with DaemonProcess.start(Path(directory) / "daemon", settings) as daemon:
            trio.run(bench, daemon.socket, Path(directory), args.runs, args.seconds)


if __name__ == "__main__":
    main()
