"""Soak: 500 mixed jobs at concurrency 32 against one daemon; nothing lost, nothing left."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import trio

from pistond.client import open_client
from pistond.config import DaemonConfig
from pistond.models import JobResult, StageStatus
from pistond.sandbox.service import jobs_group_name
from pistond.testing.daemon import DaemonProcess

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="the daemon needs root"),
    pytest.mark.slow,
]

JOBS = 500
CONCURRENCY = 32
KINDS = {
    "hello": ("print('hello')", {None}),
    "timeout": ("import time\ntime.sleep(30)", {StageStatus.TIMEOUT}),
    "fork-bomb": (
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
        # 32 forked interpreters may also exhaust the 64 MiB before the clock runs out.
        {StageStatus.TIMEOUT, StageStatus.MEMORY_LIMIT},
    ),
    "memory-hog": (
        "chunks = []\nwhile True: chunks.append(bytearray(8 << 20))",
        {StageStatus.MEMORY_LIMIT},
    ),
    "flood": ("while True: print('flood' * 20)", {StageStatus.STDOUT_LIMIT}),
}
MIX = ["hello"] * 6 + ["timeout", "fork-bomb", "memory-hog", "flood"]


def rss_kib(pid: int) -> int:
    """Resident memory of a process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def leftovers(daemon: DaemonProcess) -> list[str]:
    """Box-uid processes, box mounts and job cgroups holding a task that the daemon left behind."""
    found = []
    listing = subprocess.run(
        ["ps", "-eo", "uid=,pid="], capture_output=True, text=True, check=True
    ).stdout
    found += [
        f"process {line}"
        for line in listing.splitlines()
        if int(line.split()[0]) in daemon.box_uids
    ]
    mounts = Path("/proc/self/mountinfo").read_text()
    found += [
        f"mount {line}"
        for line in mounts.splitlines()
        if str(daemon.data_directory / "boxes") in line
    ]
    # Each box slot keeps its stage groups, empty, for its next job: a group holding a task is
    # what would be left behind.
    # Only this daemon's own jobs group: other daemons on the host have groups of their own.
    own = jobs_group_name(DaemonConfig(socket=daemon.socket))
    for hierarchy in ("pids", "unified"):
        for jobs in Path(f"/sys/fs/cgroup/{hierarchy}").glob(own):
            found += [
                f"cgroup {group}"
                for group in jobs.iterdir()
                if group.is_dir()
                and group.name.startswith("box-")
                and (group / "cgroup.procs").read_text().strip()
            ]
    return found


def test_soak_500_mixed_jobs(tmp_path: Path) -> None:
    """Every job gets its expected result, no XX; no process, mount or cgroup is left; RSS flat."""
    settings = {
        "PISTON_MAX_CONCURRENT_JOBS": str(CONCURRENCY),
        "PISTON_RUN_TIMEOUT": "1000",
        "PISTON_RUN_CPU_TIME": "1000",
        "PISTON_RUN_MEMORY_LIMIT": str(64 * 1024 * 1024),
        "PISTON_MAX_PROCESS_COUNT": "32",
        "PISTON_LOG_LEVEL": "WARN",
    }
    with DaemonProcess.start(tmp_path, settings) as daemon:
        outcomes: list[tuple[str, JobResult]] = []

        async def soak() -> None:
            async with open_client(daemon.socket) as client:
                for _ in range(10):  # warm up before the baseline
                    await client.execute("python", "*", [KINDS["hello"][0]])
            before = rss_kib(daemon.process.pid)
            queue = [MIX[i % len(MIX)] for i in range(JOBS)]

            async def worker() -> None:
                async with open_client(daemon.socket) as client:
                    while queue:
                        kind = queue.pop()
                        result = await client.execute("python", "*", [KINDS[kind][0]])
                        outcomes.append((kind, result))

            async with trio.open_nursery() as nursery:
                for _ in range(CONCURRENCY):
                    nursery.start_soon(worker)
            after = rss_kib(daemon.process.pid)
            assert after - before < 30 * 1024, f"daemon RSS grew from {before} to {after} KiB"

        trio.run(soak)
        assert len(outcomes) == JOBS
        wrong = [
            (kind, result.run)
            for kind, result in outcomes
            if result.run is None or result.run.status not in KINDS[kind][1]
        ]
        assert not wrong, wrong[:5]
        assert not leftovers(daemon)
