"""Soak of a real daemon and gateway: mixed jobs through the socket and HTTP/WebSocket at once.

Used by ``tests/test_soak.py`` (a bounded run in CI) and runnable as a command for long soaks
(as root, from the repository)::

    .venv/bin/python tests/soak.py --jobs 10000

The mix, spread over four kinds of clients that run at the same time:

- ``execute`` over the RPC socket and ``POST /api/v2/execute`` through ``pistond-gateway``:
  hello worlds in bash, Python and C, a non-zero exit, a segfault, a sleep past its timeout,
  a fork bomb, a memory hog, a stdout flood, stdin upper-cased;
- interactive jobs over the socket (``job.start``) and WebSocket sessions through the gateway
  (``/api/v2/connect``): an echo program fed a line; half of them finish (EOF, exit 0), half are
  cut off mid-way (the client leaves while the program runs). The daemon's run timeout is 10 s
  so that a round trip through a loaded machine fits; batch kinds that must end by a wall limit
  ask for a short one.

Every result is checked against what its program must do; at the end no box process, box
mount or job cgroup of the daemon may be left, and the daemon's memory must not have grown
beyond a bound.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import attrs
import httpx
import trio
from trio_websocket import ConnectionClosed, open_websocket_url

from pistond.client import JobDone, JobExit, JobOutput, PistonClient, open_client
from pistond.config import load_config
from pistond.models import JobResult, StageStatus
from pistond.sandbox.service import jobs_group_name
from pistond.testing.daemon import DaemonProcess

if TYPE_CHECKING:
    from collections.abc import Collection, Iterator

DAEMON_SETTINGS: Final = {
    "PISTON_MAX_CONCURRENT_JOBS": "32",
    # Room for interactive round trips on a loaded machine; batch kinds that end by a wall
    # limit ask for a short one.
    "PISTON_RUN_TIMEOUT": "10000",
    "PISTON_RUN_MEMORY_LIMIT": str(64 * 1024 * 1024),
    "PISTON_MAX_PROCESS_COUNT": "32",
    "PISTON_LOG_LEVEL": "WARN",
}
HELLO_C: Final = '#include <stdio.h>\nint main(void) { puts("hello"); return 0; }\n'
ECHO: Final = "import sys\nfor line in sys.stdin:\n    print(line.strip().upper(), flush=True)\n"
RSS_GROWTH_KIB: Final = 40 * 1024


@attrs.frozen
class Kind:
    """One kind of batch job and what its result must be."""

    language: str
    source: str
    statuses: frozenset[StageStatus | None]
    stdout: str | None = None
    """The exact stdout, when the program's output is deterministic."""
    limits: dict[str, int] = attrs.field(factory=dict)
    stdin: str | None = None
    weight: int = 1


KINDS: Final = {
    "hello-bash": Kind("bash", "echo hello", frozenset({None}), "hello\n", weight=10),
    "hello-python": Kind("python", "print('hello')", frozenset({None}), "hello\n", weight=6),
    "hello-c": Kind("c", HELLO_C, frozenset({None}), "hello\n"),
    "stdin": Kind(
        "python",
        "import sys\nprint(sys.stdin.read().upper(), end='')",
        frozenset({None}),
        "PISTON\n",
        stdin="piston\n",
        weight=2,
    ),
    "exit-3": Kind("bash", "exit 3", frozenset({StageStatus.RUNTIME_ERROR})),
    "segfault": Kind("bash", "kill -SEGV $$", frozenset({StageStatus.SIGNALED})),
    "timeout": Kind(
        "bash", "sleep 10", frozenset({StageStatus.TIMEOUT}), limits={"run_timeout": 300}
    ),
    "fork-bomb": Kind(
        "python",
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
        # 32 forked interpreters may also exhaust the 64 MiB before the clock runs out.
        frozenset({StageStatus.TIMEOUT, StageStatus.MEMORY_LIMIT}),
        limits={"run_timeout": 500, "run_cpu_time": 500},
    ),
    "memory-hog": Kind(
        "python",
        "chunks = []\nwhile True: chunks.append(bytearray(8 << 20))",
        frozenset({StageStatus.MEMORY_LIMIT}),
        limits={"run_timeout": 5000},
    ),
    "flood": Kind(
        "bash", "yes flood", frozenset({StageStatus.STDOUT_LIMIT}), limits={"run_timeout": 2000}
    ),
}
MIX: Final = [name for name, kind in KINDS.items() for _ in range(kind.weight)]


@attrs.frozen
class Plan:
    """How many jobs of each client kind, and how many clients of each run at once."""

    socket_jobs: int
    http_jobs: int
    interactive_jobs: int
    websocket_sessions: int
    clients: int = 8
    """Concurrent clients of each of the four kinds."""

    @classmethod
    def of(cls, jobs: int) -> Plan:
        """A plan of about ``jobs`` jobs: 55 % socket, 35 % HTTP, 5 % each interactive kind."""
        interactive = max(jobs // 20, 2)
        http = jobs * 35 // 100
        return cls(jobs - http - 2 * interactive, http, interactive, interactive)

    @property
    def total(self) -> int:
        """Jobs in the plan."""
        return self.socket_jobs + self.http_jobs + self.interactive_jobs + self.websocket_sessions


@attrs.define
class Report:
    """What a soak did."""

    plan: Plan
    counts: Counter[str] = attrs.field(factory=Counter)
    failures: list[str] = attrs.field(factory=list)
    seconds: float = 0.0
    rss_before_kib: int = 0
    rss_after_kib: int = 0
    leftovers: list[str] = attrs.field(factory=list)

    @property
    def jobs(self) -> int:
        """Jobs that ran to a checked end."""
        return sum(self.counts.values())

    def summary(self) -> dict[str, Any]:
        """The figures, for people."""
        return {
            "jobs": self.jobs,
            "planned": self.plan.total,
            "seconds": round(self.seconds, 1),
            "jobs_per_second": round(self.jobs / self.seconds, 1) if self.seconds else 0,
            "failures": len(self.failures),
            "by_kind": dict(sorted(self.counts.items())),
            "daemon_rss_kib": [self.rss_before_kib, self.rss_after_kib],
            "leftovers": len(self.leftovers),
        }


def rss_kib(pid: int) -> int:
    """Resident memory of a process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def leftovers(daemon: DaemonProcess, pids: Collection[int] = ()) -> list[str]:
    """Box processes, box mounts and job cgroups of ``daemon``, and which of ``pids`` live."""
    listing = subprocess.run(
        ["ps", "-ww", "-eo", "pid=,uid=,args="], capture_output=True, text=True, check=True
    ).stdout
    found = []
    for line in listing.splitlines():
        pid, uid, *args = line.split(None, 2)
        if int(uid) in daemon.box_uids or int(pid) in pids:
            found.append(f"process {pid} uid {uid}: {(args or [''])[0][:60]}")
    boxes = str(daemon.data_directory / "boxes") + "/"
    with open("/proc/self/mountinfo", encoding="utf-8") as mounts:
        found += [f"mount {line.split()[4]}" for line in mounts if boxes in line.split()[4]]
    group = jobs_group_name(load_config(daemon.environ))
    # Each box slot keeps its stage groups, empty, for its next job: a group still holding a
    # task is what would be left behind.
    for jobs in Path("/sys/fs/cgroup").glob(f"**/{group}"):
        found += [
            f"cgroup {box}" for box in jobs.glob("box-*") if box.is_dir() and _holds_tasks(box)
        ]
    return found


def _holds_tasks(group: Path) -> bool:
    try:
        return bool((group / "cgroup.procs").read_text().strip())
    except FileNotFoundError:  # removed while looking
        return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def gateway_process(
    daemon: DaemonProcess | Path, settings: dict[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A ``pistond-gateway`` process on a free port in front of ``daemon`` (or a socket path),
    serving: the process and its base URL."""
    port = _free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PISTON_")}
    environ.update(
        PISTON_BIND_ADDRESS=f"127.0.0.1:{port}",
        PISTON_SOCKET=str(daemon if isinstance(daemon, Path) else daemon.socket),
        PISTON_GATEWAY_ALLOW_ROOT="true",
        PISTON_LOG_LEVEL="WARN",
        **(settings or {}),
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "pistond.gateway"],
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise RuntimeError("pistond-gateway did not start") from None
                time.sleep(0.05)
        yield process, url
    finally:
        if process.poll() is None:
            process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _check_result(name: str, result: JobResult | dict[str, Any], report: Report) -> None:
    kind = KINDS[name]
    if isinstance(result, dict):  # Piston JSON from the gateway
        run = result.get("run") or {}
        status = None if run.get("status") is None else StageStatus(run["status"])
        stdout = run.get("stdout")
        message = run.get("message")
    else:
        if result.run is None:
            report.failures.append(f"{name}: no run stage: {result}")
            return
        status, stdout, message = result.run.status, result.run.stdout, result.run.message
    if status not in kind.statuses:
        report.failures.append(
            f"{name}: status {status} ({message}), not one of {set(kind.statuses)}"
        )
    elif kind.stdout is not None and stdout != kind.stdout:
        report.failures.append(f"{name}: stdout {stdout!r}")
    else:
        report.counts[name] += 1


def _piston_body(kind: Kind) -> dict[str, Any]:
    body: dict[str, Any] = {
        "language": kind.language,
        "version": "*",
        "files": [{"content": kind.source}],
        **kind.limits,
    }
    if kind.stdin is not None:
        body["stdin"] = kind.stdin.rstrip("\n")  # the gateway adds Piston's newline
    return body


@attrs.define
class _Soak:
    daemon: DaemonProcess
    url: str
    plan: Plan
    report: Report
    _counter: int = 0

    def next_kind(self) -> str:
        self._counter += 1
        return MIX[self._counter % len(MIX)]

    async def socket_worker(self, jobs: list[None]) -> None:
        async with open_client(self.daemon.socket) as client:
            while jobs:
                jobs.pop()
                name = self.next_kind()
                kind = KINDS[name]
                result = await client.execute(
                    kind.language, "*", [kind.source], stdin=kind.stdin, **kind.limits
                )
                _check_result(name, result, self.report)

    async def http_worker(self, jobs: list[None]) -> None:
        async with httpx.AsyncClient(base_url=self.url, timeout=60) as http:
            while jobs:
                jobs.pop()
                name = self.next_kind()
                answer = await http.post("/api/v2/execute", json=_piston_body(KINDS[name]))
                if answer.status_code != 200:
                    self.report.failures.append(f"http {name}: {answer.status_code} {answer.text}")
                    continue
                _check_result(name, answer.json(), self.report)

    async def interactive_worker(self, jobs: list[None]) -> None:
        async with open_client(self.daemon.socket) as client:
            while jobs:
                jobs.pop()
                cut = len(jobs) % 2 == 0
                await self._interactive(client, cut=cut)

    async def _interactive(self, client: PistonClient, *, cut: bool) -> None:
        name = "interactive-cut" if cut else "interactive"
        async with client.start_job("python", "*", [ECHO]) as job:
            await job.write("piston\n")
            output = b""
            async for event in job.events():
                if isinstance(event, JobOutput):
                    output += event.data
                    if b"\n" in output:
                        if cut:
                            break  # leaving the block kills the running job
                        await job.close_stdin()
                elif isinstance(event, JobExit):
                    if event.code != 0:
                        self.report.failures.append(f"{name}: exit {event}")
                        return
                elif isinstance(event, JobDone) and event.error:
                    self.report.failures.append(f"{name}: {event.error}")
                    return
        if output != b"PISTON\n":
            self.report.failures.append(f"{name}: output {output!r}")
            return
        self.report.counts[name] += 1

    async def websocket_worker(self, sessions: list[None]) -> None:
        ws_url = self.url.replace("http://", "ws://") + "/api/v2/connect"
        while sessions:
            sessions.pop()
            cut = len(sessions) % 2 == 0
            name = "websocket-cut" if cut else "websocket"
            frames: list[dict[str, Any]] = []
            code = None
            async with open_websocket_url(ws_url) as ws:
                init = {"type": "init", "language": "python", "version": "*"}
                await ws.send_message(json.dumps({**init, "files": [{"content": ECHO}]}))
                await ws.send_message(
                    json.dumps({"type": "data", "stream": "stdin", "data": "x\n"})
                )
                try:
                    while True:
                        frames.append(json.loads(await ws.get_message()))
                        if frames[-1]["type"] == "data":
                            if cut:
                                break  # leaving the block cuts the session mid-way
                            await ws.send_message(json.dumps({"type": "eof"}))
                except ConnectionClosed as closed:
                    code = None if closed.reason is None else closed.reason.code
            echoed = "".join(f["data"] for f in frames if f["type"] == "data")
            if echoed != "X\n" or (not cut and code != 4999):
                self.report.failures.append(f"{name}: {frames} closed {code}")
                continue
            self.report.counts[name] += 1


async def run_soak(daemon: DaemonProcess, url: str, plan: Plan) -> Report:
    """Run ``plan`` against ``daemon`` (socket) and the gateway at ``url`` at once."""
    report = Report(plan)
    async with open_client(daemon.socket) as client:
        for _ in range(10):  # warm up before the memory baseline
            await client.execute("bash", "*", ["echo hello"])
    report.rss_before_kib = rss_kib(daemon.process.pid)
    soak = _Soak(daemon, url, plan, report)
    work = {
        soak.socket_worker: [None] * plan.socket_jobs,
        soak.http_worker: [None] * plan.http_jobs,
        soak.interactive_worker: [None] * plan.interactive_jobs,
        soak.websocket_worker: [None] * plan.websocket_sessions,
    }
    started = time.monotonic()
    async with trio.open_nursery() as nursery:
        for worker, jobs in work.items():
            for _ in range(plan.clients):
                nursery.start_soon(worker, jobs)
    report.seconds = time.monotonic() - started
    await trio.sleep(0.5)  # let the cut-off jobs finish their cleanup
    report.rss_after_kib = rss_kib(daemon.process.pid)
    for _ in range(50):  # cut-off jobs may still be cleaning up: up to 10 s
        report.leftovers = leftovers(daemon)
        if not report.leftovers:
            break
        await trio.sleep(0.2)
    return report


def main(argv: list[str] | None = None) -> int:
    """``tests/soak.py --jobs N``: a soak against a fresh daemon and gateway; prints figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients per kind")
    args = parser.parse_args(argv)
    plan = attrs.evolve(Plan.of(args.jobs), clients=args.clients)
    with (
        tempfile.TemporaryDirectory(prefix="pistond-soak-") as directory,
        DaemonProcess.start(Path(directory), DAEMON_SETTINGS) as daemon,
        gateway_process(daemon, {"PISTON_GATEWAY_MAX_JOBS_PER_CLIENT": "0"}) as (_, url),
    ):
        report = trio.run(run_soak, daemon, url, plan)
        log = daemon.log_text()
    print(json.dumps(report.summary(), indent=2))
    for failure in report.failures[:20]:
        print("failure:", failure, file=sys.stderr)
    for left in report.leftovers[:20]:
        print("left behind:", left, file=sys.stderr)
    ok = not report.failures and not report.leftovers and report.jobs == plan.total
    if not ok and log:
        print("daemon log:", *log.splitlines()[-40:], sep="\n", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
