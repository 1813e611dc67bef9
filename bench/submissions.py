"""Throughput of asynchronous submissions (SQLite and PostgreSQL) beside synchronous execute.

Starts a private daemon (host runtimes), a PostgreSQL server in a temporary directory (its
shipped durability: fsync and synchronous commit on), and two gateways in front of the daemon:
one with the default SQLite database, one with PostgreSQL. Each round, in turn:

1. **sync**: ``POST /api/v2/execute`` from ``--concurrency`` keep-alive clients, ``--jobs``
   requests in all;
2. **async sqlite** and **async postgresql**: the same ``--jobs`` submissions sent as batches
   of 100, then ``GET /api/v2/submissions/batch`` polled until every one is done; the
   gateways run ``--concurrency`` submissions at once (``PISTON_SUBMISSION_WORKERS``).

Jobs are trivial (bash ``echo``), so the figures are the overhead of each path. Each line gives
jobs per second (jobs over the wall time from the first request to the last result), and for
the async paths the time to accept all of them and the p50/p99 of created-to-finished. Run as
root::

    .venv/bin/python bench/submissions.py [--jobs 300] [--rounds 2] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import datetime
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import trio

from pistond.testing.daemon import DaemonProcess
from pistond.testing.gateway import GatewayProcess
from pistond.testing.postgres import PostgresServer

BATCH = 100


def job(n: int) -> dict[str, Any]:
    """The n-th trivial job."""
    return {"language": "bash", "version": "*", "files": [{"content": f"echo job-{n}"}]}


def percentile(samples: list[float], fraction: float) -> float:
    """The ``fraction`` quantile of ``samples`` (nearest rank)."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def expect(ok: bool, what: object) -> None:
    """Stop the benchmark when a job did not do what it should."""
    if not ok:
        raise RuntimeError(f"unexpected answer: {what}")


def seconds(text: str) -> float:
    """An API timestamp as seconds since the epoch."""
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def sync_round(url: str, jobs: int, concurrency: int) -> float:
    """Jobs per second of POST /api/v2/execute with ``concurrency`` clients."""
    queue = list(range(jobs))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def client(http: httpx.AsyncClient) -> None:
        while queue:
            n = queue.pop()
            answer = await http.post("/api/v2/execute", json=job(n))
            expect(answer.status_code == 200, answer.text)
            expect(answer.json()["run"]["stdout"] == f"job-{n}\n", answer.text)

    start = time.perf_counter()
    async with (
        httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http,
        trio.open_nursery() as nursery,
    ):
        for _ in range(concurrency):
            nursery.start_soon(client, http)
    return jobs / (time.perf_counter() - start)


async def async_round(url: str, jobs: int) -> tuple[float, float, list[float]]:
    """Jobs per second of batch submissions polled to completion; the seconds it took to have
    them all accepted; each submission's created-to-finished seconds."""
    async with httpx.AsyncClient(base_url=url, timeout=120) as http:
        start = time.perf_counter()
        tokens: list[str] = []
        for first in range(0, jobs, BATCH):
            bodies = [job(n) for n in range(first, min(first + BATCH, jobs))]
            answer = await http.post("/api/v2/submissions/batch", json={"submissions": bodies})
            expect(answer.status_code == 201, answer.text)
            tokens += [item["token"] for item in answer.json()]
        accepted = time.perf_counter() - start
        results: dict[str, dict[str, Any]] = {}
        while len(results) < jobs:
            pending = [token for token in tokens if token not in results]
            for first in range(0, len(pending), BATCH):
                chunk = ",".join(pending[first : first + BATCH])
                answer = await http.get("/api/v2/submissions/batch", params={"tokens": chunk})
                for item in answer.json():
                    if item is not None and item["state"] == "done":
                        results[item["token"]] = item
            if len(results) < jobs:
                await trio.sleep(0.05)
        elapsed = time.perf_counter() - start
    for n, token in enumerate(tokens):
        expect(results[token]["result"]["run"]["stdout"] == f"job-{n}\n", results[token])
    latencies = [
        seconds(item["finished_at"]) - seconds(item["created_at"]) for item in results.values()
    ]
    return jobs / elapsed, accepted, latencies


def main() -> None:
    """Run the benchmark and print one line per path and round, then the means."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench/submissions.py: run as root (the daemon builds sandboxes)")
    settings = {
        "PISTON_SUBMISSION_WORKERS": str(args.concurrency),
        "PISTON_SUBMISSION_POLL_INTERVAL": "100",
        "PISTON_SUBMISSION_MAX_PENDING": "0",
        "PISTON_LOG_LEVEL": "WARN",
        "PISTON_GATEWAY_MAX_JOBS_PER_CLIENT": "0",
    }
    with tempfile.TemporaryDirectory(prefix="pistond-bench-", dir="/tmp") as scratch:
        work = Path(scratch)
        with (
            DaemonProcess.start(work / "daemon", {"PISTON_LOG_LEVEL": "WARN"}) as daemon,
            PostgresServer.start(durable=True) as postgres,
        ):
            url = postgres.create_database("bench")
            with (
                GatewayProcess.start(work / "sqlite", daemon.socket, settings) as sqlite,
                GatewayProcess.start(
                    work / "postgresql", daemon.socket, {**settings, "PISTON_DATABASE_URL": url}
                ) as pg,
            ):
                print(
                    f"{args.jobs} trivial jobs (bash echo) per path and round, "
                    f"concurrency {args.concurrency}, load {os.getloadavg()[0]:.1f}"
                )
                totals: dict[str, list[float]] = {"sync": [], "sqlite": [], "postgresql": []}
                trio.run(async_round, sqlite.url, 20)  # warm up both databases and the daemon
                trio.run(async_round, pg.url, 20)
                for round_number in range(1, args.rounds + 1):
                    rate = trio.run(sync_round, sqlite.url, args.jobs, args.concurrency)
                    totals["sync"].append(rate)
                    print(f"round {round_number} sync execute      {rate:7.1f} jobs/s")
                    for name, gateway in (("sqlite", sqlite), ("postgresql", pg)):
                        rate, accepted, latencies = trio.run(async_round, gateway.url, args.jobs)
                        totals[name].append(rate)
                        print(
                            f"round {round_number} async {name:<11} {rate:7.1f} jobs/s | all "
                            f"accepted in {accepted * 1e3:6.0f} ms | created to finished p50 "
                            f"{percentile(latencies, 0.5) * 1e3:6.0f} ms, p99 "
                            f"{percentile(latencies, 0.99) * 1e3:6.0f} ms"
                        )
                print(
                    "mean: "
                    + ", ".join(
                        f"{name} {sum(rates) / len(rates):.1f} jobs/s"
                        for name, rates in totals.items()
                    )
                    + f" (load {os.getloadavg()[0]:.1f})"
                )


if __name__ == "__main__":
    main()
