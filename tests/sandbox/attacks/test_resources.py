"""Resource attacks (reference/attacks.md cases 1, 2, 7, 8, 13, 26, 27, 28 and the decompression
bomb): the cgroup limits, rlimits and tmpfs caps end them, and the host does not notice."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import trio

from pistond.models import StageResult, StageStatus

from .conftest import (
    DISK_INODES,
    DISK_SIZE,
    MAX_FILE_SIZE,
    MAX_PROCESSES,
    MEMORY_LIMIT,
    RUN_TIMEOUT,
    Attack,
    table,
)

WALL_SLACK = 200
"""Milliseconds a wall-clock kill may take past the limit (attacks.md case 16)."""
CPU_POLL_MS = 15
"""The daemon's CPU polling period."""
CORES = os.cpu_count() or 1
CPU_LIMIT = 500
"""run_cpu_time of the CPU attacks (milliseconds): reached well before the wall limit even on
a busy 2-core host."""


def _free_bytes(path: Path) -> int:
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


def _free_inodes(path: Path) -> int:
    return os.statvfs(path).f_favail


def _read(path: str) -> str:
    with open(path) as file:
        return file.read()


async def _gather(*calls: tuple[object, ...], **options: object) -> list[StageResult]:
    """Run ``fn(*args, **options)`` for each ``(fn, *args)`` concurrently; results in order."""
    results: list[StageResult | None] = [None] * len(calls)

    async def one(index: int, fn: object, args: tuple[object, ...]) -> None:
        results[index] = await fn(*args, **options)  # type: ignore[operator]

    async with trio.open_nursery() as nursery:
        for index, (fn, *args) in enumerate(calls):
            nursery.start_soon(one, index, fn, tuple(args))
    return [result for result in results if result is not None]


async def test_fork_bomb_is_stopped_by_pids_max(attack: Attack) -> None:
    """Case 1: a fork bomb ends TO within the limits after hitting pids.max; a canary runs."""
    hits: list[int] = []
    done = trio.Event()

    async def watch_pids_events() -> None:
        while not done.is_set():
            for group in attack.host.job_groups():
                events = group / "pids.events"
                try:
                    hits.append(int(events.read_text().split()[1]))
                except (OSError, IndexError, ValueError):
                    continue
            await trio.sleep(0.05)

    async def bomb() -> StageResult:
        try:
            return await attack.stage("fork_bomb.py")
        finally:
            done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch_pids_events)
        run = await attack.canary_during(bomb)
    assert run.status == StageStatus.TIMEOUT
    assert run.signal == "SIGKILL"
    assert run.wall_time <= RUN_TIMEOUT + WALL_SLACK
    assert max(hits, default=0) > 0, "pids.events never recorded a refused fork"


async def test_disk_fill_stops_at_the_file_size_and_box_caps(attack: Attack) -> None:
    """Case 2: big writes stop at max_file_size (EFBIG, RE), many files at the box size
    (ENOSPC); host free space is unchanged."""
    before = _free_bytes(attack.host.directory), _free_bytes(Path("/tmp"))
    big, fallocate, many = await _gather(
        (attack.stage, "disk_fill.py", "big"),
        (attack.stage, "disk_fill.py", "fallocate"),
        (attack.stage, "disk_fill.py", "many"),
    )
    assert big.status == StageStatus.RUNTIME_ERROR
    assert table(big.stdout) == {"write": "EFBIG", "size": str(MAX_FILE_SIZE)}
    assert "File too large" in big.stderr
    assert fallocate.status is None
    assert table(fallocate.stdout) == {"fallocate": "EFBIG", "size": "0"}
    rows = table(many.stdout)
    assert rows["many"] == "ENOSPC"
    assert DISK_SIZE - 4 * 2**20 <= int(rows["bytes"]) <= DISK_SIZE
    after = _free_bytes(attack.host.directory), _free_bytes(Path("/tmp"))
    for was, now in zip(before, after, strict=True):
        assert was - now < 32 * 2**20, "host free space dropped"


async def test_disk_fill_kills_a_c_writer_with_sigxfsz(attack: Attack) -> None:
    """Case 2, C writer: a write past max_file_size kills the program with SIGXFSZ (SG)."""
    run = await attack.stage("disk_fill.c")
    assert (run.status, run.signal) == (StageStatus.SIGNALED, "SIGXFSZ"), run


async def test_memory_exhaustion_ends_ml_at_the_limit(attack: Attack) -> None:
    """Case 7: every allocation pattern ends ML by SIGKILL with peak memory at most the limit
    (the /dev/shm variant may end RE with ENOSPC first); a concurrent canary runs."""
    results = await attack.canary_during(
        _gather,
        (attack.stage, "memory.py", "list"),
        (attack.stage, "memory.py", "big"),
        (attack.stage, "memory.py", "mmap"),
        (attack.stage, "memory.py", "shm"),
    )
    for run in results:
        assert "survived" not in run.stdout
        if run.status == StageStatus.RUNTIME_ERROR:
            assert "No space left on device" in run.stderr, run
            continue
        assert (run.status, run.signal, run.message) == (
            StageStatus.MEMORY_LIMIT,
            "SIGKILL",
            "Memory limit exceeded",
        ), run
        assert MEMORY_LIMIT * 3 // 4 <= run.memory <= MEMORY_LIMIT, run.memory


async def test_inode_exhaustion_stops_at_the_tmpfs_inode_cap(attack: Attack) -> None:
    """Case 8: creating files ends ENOSPC at the box's and /tmp's inode caps; host inode counts
    are unchanged; the box is gone within a second of the result."""
    before = _free_inodes(attack.host.directory), _free_inodes(Path("/tmp"))
    run = await attack.stage("inodes.py")
    finished = trio.current_time()
    while attack.host.box_mounts():
        assert trio.current_time() - finished < 1, "the box outlived its job by a second"
        await trio.sleep(0.02)
    rows = {name: value.split() for name, value in table(run.stdout).items()}
    assert rows["workdir"][0] == "ENOSPC"
    assert DISK_INODES - 64 <= int(rows["workdir"][1]) <= DISK_INODES
    assert rows["tmp"][0] == "ENOSPC"
    assert int(rows["tmp"][1]) > 1000
    assert run.status is None
    after = _free_inodes(attack.host.directory), _free_inodes(Path("/tmp"))
    for was, now in zip(before, after, strict=True):
        assert was - now < 1000, "host inodes were used"


async def test_cpu_exhaustion_ends_to_at_the_cpu_limit(attack: Attack) -> None:
    """Case 13: busy processes or threads on every core end TO (CPU) once cpu_time reaches the
    limit, over it by at most a poll period per core; a concurrent canary runs."""
    limit = CPU_LIMIT
    results = await attack.canary_during(
        partial(_gather, run_cpu_time=limit),
        (attack.stage, "cpu_burn.py"),
        (attack.stage, "cpu_burn.c"),
        delay=0.1,
    )
    for run in results:
        assert (run.status, run.signal, run.message) == (
            StageStatus.TIMEOUT,
            "SIGKILL",
            "Time limit exceeded",
        ), run
        assert limit <= run.cpu_time <= limit + CPU_POLL_MS * CORES, run.cpu_time


async def test_thread_bomb_is_refused_at_pids_max(attack: Attack) -> None:
    """Case 26: thread creation fails (EAGAIN) at pids.max, since threads are tasks; the job
    ends RE or TO; a concurrent canary runs."""
    python, c = await attack.canary_during(
        _gather, (attack.stage, "thread_bomb.py"), (attack.stage, "thread_bomb.c")
    )
    for run in (python, c):
        assert run.status in (StageStatus.RUNTIME_ERROR, StageStatus.TIMEOUT), run
    count, error = python.stdout.split(" ", 2)[1:]
    assert 0 < int(count) < MAX_PROCESSES
    assert error.strip() == "can't start new thread"
    assert table(c.stdout)["threads"].split()[1] == "EAGAIN"
    assert 0 < int(table(c.stdout)["threads"].split()[0]) < MAX_PROCESSES


async def test_fd_exhaustion_stops_at_max_open_files(attack: Attack) -> None:
    """Case 27: descriptors run out with EMFILE at max_open_files in each process; the host's
    file table stays far from file-max; the daemon keeps accepting connections."""
    limit = attack.host.limits["max_open_files"]
    samples: list[int] = []
    done = trio.Event()

    async def sample_file_nr() -> None:
        while not done.is_set():
            samples.append(int(_read("/proc/sys/fs/file-nr").split()[0]))
            await attack.ping_fresh()
            await trio.sleep(0.1)

    async def exhaust() -> StageResult:
        try:
            return await attack.stage("fd_exhaust.py")
        finally:
            done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sample_file_nr)
        run = await exhaust()
    rows = {name: value.split() for name, value in table(run.stdout).items()}
    assert rows["devnull"] == ["EMFILE", str(limit)]
    for kind in ("pipe", "socketpair"):
        assert rows[kind][0] == "EMFILE"
        assert int(rows[kind][1]) in (limit - 1, limit)
    assert rows["fork"] == ["EAGAIN"]
    file_max = int(_read("/proc/sys/fs/file-max"))
    assert max(samples) < min(file_max // 10, 10 * MAX_PROCESSES * limit)
    assert len(attack.pings) >= 2


async def test_pipe_buffers_are_bounded(attack: Attack) -> None:
    """Case 28: growing and filling pipes and socket buffers stops (EPERM at the per-user pipe
    limit) or ends ML; host memory returns to its baseline; a concurrent canary runs."""
    baseline = attack.host.jobs_memory()
    run = await attack.canary_during(attack.stage, "pipe_exhaust.py")
    assert run.status in (None, StageStatus.MEMORY_LIMIT), run
    if run.status is None:
        assert "setpipe EPERM" in table(run.stdout)["parent"], run.stdout
    await attack.wait_clean()
    assert attack.host.jobs_memory() - baseline < 4 * 2**20, "job memory was not given back"


async def test_decompression_bomb_stops_at_the_caps(attack: Attack) -> None:
    """Further case: inflating 1 GiB of zeros into /tmp or the box stops at the file size cap
    (EFBIG, RE) or the memory limit (ML)."""
    before = _free_bytes(attack.host.directory)
    results = await _gather(
        (attack.stage, "decompression_bomb.py", "/tmp"),
        (attack.stage, "decompression_bomb.py", "."),
    )
    for run in results:
        if run.status == StageStatus.MEMORY_LIMIT:
            continue
        assert run.status == StageStatus.RUNTIME_ERROR, run
        assert table(run.stdout)["inflate"] == f"EFBIG {MAX_FILE_SIZE}"
    assert before - _free_bytes(attack.host.directory) < 32 * 2**20
