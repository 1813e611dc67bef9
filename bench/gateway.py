"""Bash ``echo`` through ``pistond-gateway`` over HTTP, as Piston's users reach it.

Starts a private daemon (default settings, host runtimes) and a gateway on a free loopback port,
then posts Piston's ``/api/v2/execute`` with keep-alive clients (one connection each) at
concurrency 1, 4, 16 and 64, and prints jobs per second and p50/p99 latency per level, beside
the same jobs over the RPC socket at concurrency 1 for the gateway's own share.

Run as root::

    .venv/bin/python bench/gateway.py [--seconds 5]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import trio

from pistond.client import open_client
from pistond.testing.daemon import DaemonProcess

BODY = {
    "language": "bash",
    "version": "*",
    "files": [{"name": "echo.sh", "content": "echo hello\n"}],
}


def percentile(samples: list[float], fraction: float) -> float:
    """The ``fraction`` quantile of ``samples`` (nearest rank)."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_gateway(daemon: DaemonProcess, port: int) -> subprocess.Popen[bytes]:
    """A gateway on ``port`` calling ``daemon`` (as root: allowed for the benchmark)."""
    environ = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PISTON_SOCKET": str(daemon.socket),
        "PISTON_BIND_ADDRESS": f"127.0.0.1:{port}",
        "PISTON_LOG_LEVEL": "WARN",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "pistond.gateway", "--allow-root"],
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as client:
            if client.connect_ex(("127.0.0.1", port)) == 0:
                return process
        time.sleep(0.1)
    process.kill()
    raise RuntimeError("the gateway did not start")


async def http_level(url: str, concurrency: int, seconds: float) -> tuple[float, list[float]]:
    """Jobs per second over HTTP with ``concurrency`` keep-alive clients; their latencies."""
    latencies: list[float] = []
    deadline = trio.current_time() + seconds

    async def worker() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            while trio.current_time() < deadline:
                started = time.perf_counter()
                answer = await client.post("/api/v2/execute", json=BODY)
                latencies.append(time.perf_counter() - started)
                run = answer.json().get("run", {})
                if answer.status_code != 200 or run.get("stdout") != "hello\n":
                    raise RuntimeError(f"unexpected answer {answer.status_code}: {answer.text}")

    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(concurrency):
            nursery.start_soon(worker)
    return len(latencies) / (time.perf_counter() - started), latencies


async def rpc_level(daemon: DaemonProcess, seconds: float) -> list[float]:
    """Latencies of the same job over the RPC socket, one client."""
    latencies: list[float] = []
    deadline = trio.current_time() + seconds
    async with open_client(daemon.socket) as client:
        while trio.current_time() < deadline:
            started = time.perf_counter()
            await client.execute("bash", "*", [("echo.sh", "echo hello\n")])
            latencies.append(time.perf_counter() - started)
    return latencies


async def bench(daemon: DaemonProcess, url: str, seconds: float) -> None:
    """Every level, then the RPC baseline."""
    await http_level(url, 1, 1.0)  # warm-up: templates, connections
    print("bash echo over HTTP, keep-alive clients:")
    for concurrency in (1, 4, 16, 64):
        rate, latencies = await http_level(url, concurrency, seconds)
        print(
            f"  concurrency {concurrency:>2}: {rate:7.1f} jobs/s   p50 "
            f"{percentile(latencies, 0.5) * 1e3:7.2f} ms   p99 "
            f"{percentile(latencies, 0.99) * 1e3:7.2f} ms"
        )
    http = (await http_level(url, 1, seconds))[1]
    rpc = await rpc_level(daemon, seconds)
    print(
        f"concurrency 1, p50: HTTP {percentile(http, 0.5) * 1e3:.2f} ms, RPC socket "
        f"{percentile(rpc, 0.5) * 1e3:.2f} ms (the gateway's share "
        f"{(percentile(http, 0.5) - percentile(rpc, 0.5)) * 1e3:.2f} ms)"
    )


def main() -> None:
    """Parse arguments, start a daemon and a gateway, measure, stop them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per level")
    args = parser.parse_args()
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="pistond-bench-") as directory:
        settings = {"PISTON_LOG_LEVEL": "WARN"}
        with DaemonProcess.start(Path(directory) / "daemon", settings) as daemon:
            port = free_port()
            gateway = start_gateway(daemon, port)
            try:
                trio.run(bench, daemon, f"http://127.0.0.1:{port}", args.seconds)
            finally:
                gateway.terminate()
                gateway.wait(timeout=30)


if __name__ == "__main__":
    main()
