"""The attack suite's fixtures: one real pistond for the session, the common post-conditions.

One daemon (a ``python -m pistond`` subprocess, root, real sandboxes and cgroups) serves every
attack, with reference/attacks.md's small limits, its own box uid range and its own cgroup
root, so no other daemon on the host can be mistaken for it. Host runtimes (python, bash, gcc)
are the read-only host view the daemon installs at start.

After every test the ``attack`` fixture checks attacks.md's common post-conditions: the daemon
answers ``ping``; no process of a box uid is left on the host; no job cgroup holds a task (each
box slot's stage groups are kept, empty, for reuse; no other group exists) and no box mount is
left; the daemon and its fork server are the same processes as at start; a canary job
``print("ok")`` returns nil with output ``ok``. :meth:`Attack.run` also pings the daemon over a
fresh connection while the attack runs.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import attrs
import pytest
import trio

from pistond.client import InteractiveJob, PistonClient, SyncClient, open_client
from pistond.errors import PistondError
from pistond.models import JobExit, JobOutput
from pistond.testing.daemon import DaemonProcess

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator, Sequence

    from pistond.models import JobResult, StageResult

PROGRAMS: Final = Path(__file__).parents[1] / "programs" / "attacks"
"""The attack programs, one file per attacker (plus ``probe.py``, sent beside Python ones)."""
SLOTS: Final = 8
RUN_TIMEOUT: Final = 2000
MEMORY_LIMIT: Final = 128 * 2**20
MAX_PROCESSES: Final = 32
OUTPUT_MAX: Final = 1024
MAX_FILE_SIZE: Final = 1_000_000
COMPILE_TIMEOUT: Final = 5000
COMPILE_MEMORY: Final = 256 * 2**20
DISK_SIZE: Final = 64 * 2**20
DISK_INODES: Final = 16_384
CLEAN_TIMEOUT: Final = 2.0
"""Seconds a job's processes, cgroups and box may take to disappear after its result."""
PING_DELAY: Final = 0.3
"""Seconds into an attack when the daemon is pinged over a fresh connection."""
LANGUAGES: Final = {".py": "python", ".c": "c", ".cpp": "c++", ".sh": "bash"}
STAGE_KINDS: Final = ("compile", "run")
"""Each box slot keeps one cgroup per stage kind, emptied and reused job after job."""
CANARY: Final = 'print("ok")\n'


def table(text: str) -> dict[str, str]:
    """A probe table: each ``name result`` line of ``text`` as name -> result."""
    rows: dict[str, str] = {}
    for line in text.splitlines():
        name, _, result = line.partition(" ")
        rows[name] = result
    return rows


def _start_time(pid: int) -> int | None:
    """The start time (clock ticks) of ``pid``, or None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[19])


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def _process_uids() -> dict[int, int]:
    """Every host process's real uid, by pid."""
    uids = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("Uid:"):
                uids[int(entry.name)] = int(line.split()[1])
    return uids


def _cgroup_mounts() -> list[Path]:
    """Mount points of every cgroup and cgroup2 hierarchy."""
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        if right.split()[0] in ("cgroup", "cgroup2"):
            points.append(Path(left.split()[4]))
    return points


def _remove_tree(directory: Path) -> None:
    """rmdir a cgroup directory and its (empty) descendants, deepest first."""
    for root, dirs, _files in os.walk(directory, topdown=False):
        for name in dirs:
            with_retry(Path(root, name).rmdir)
    with_retry(directory.rmdir)


def with_retry(fn: Any) -> None:
    """Call ``fn`` a few times over a second: a cgroup is busy until its last task is reaped."""
    for attempt in range(20):
        try:
            fn()
        except FileNotFoundError:
            return
        except OSError:
            if attempt == 19:
                raise
            time.sleep(0.05)
        else:
            return


@attrs.define(eq=False)
class AttackHost:
    """The session's daemon and what the post-conditions compare against."""

    daemon: DaemonProcess
    directory: Path
    secret: str
    """PISTOND_TEST_SECRET in the daemon's environment (case 14)."""
    uid_base: int
    cgroup_roots: tuple[Path, ...]
    """The daemon's cgroup root in every hierarchy."""
    versions: dict[str, str]
    """Installed version of each language."""
    limits: dict[str, int]
    """The daemon's configured limits, as ``status`` reports them."""
    watched: dict[int, int]
    """Start time of the daemon and of its children (the fork server), by pid."""

    @property
    def socket(self) -> Path:
        """The daemon's RPC socket."""
        return self.daemon.socket

    @property
    def boxes(self) -> Path:
        """Where the daemon mounts boxes."""
        return self.daemon.data_directory / "boxes"

    @property
    def box_uids(self) -> range:
        """Every box slot's uid."""
        return range(self.uid_base, self.uid_base + SLOTS)

    def box_processes(self) -> list[int]:
        """Host pids running as a box uid."""
        return [pid for pid, uid in _process_uids().items() if uid in self.box_uids]

    def job_groups(self) -> list[Path]:
        """Job cgroups (``<root>/pistond-jobs*/<group>`` in every hierarchy) that hold a task,
        or that are not one of the box slots' reused stage groups."""
        reused = {f"box-{slot}-{stage}" for slot in range(SLOTS) for stage in STAGE_KINDS}
        groups = []
        for root in self.cgroup_roots:
            for jobs in root.glob("pistond-jobs*"):
                for entry in jobs.iterdir():
                    if entry.is_dir() and (
                        entry.name not in reused or (entry / "cgroup.procs").read_text().strip()
                    ):
                        groups.append(entry)
        return groups

    def box_mounts(self) -> list[str]:
        """Mount points under the boxes directory, in the daemon's mount namespace."""
        prefix = str(self.boxes) + "/"
        mountinfo = Path(f"/proc/{self.daemon.process.pid}/mountinfo").read_text()
        return [
            line.split()[4] for line in mountinfo.splitlines() if line.split()[4].startswith(prefix)
        ]

    def leftovers(self) -> list[str]:
        """What a finished job left behind: processes, cgroups, box mounts or directories."""
        found = [f"process {pid} of a box uid" for pid in self.box_processes()]
        found += [f"cgroup {group}" for group in self.job_groups()]
        found += [f"box mount {point}" for point in self.box_mounts()]
        boxes = str(self.boxes) + "/"
        found += [
            f"mount {point}"
            for point in _mounts_under(self.directory)
            if not point.startswith(boxes)
        ]
        if self.boxes.is_dir():
            # Each slot's mount point stays, empty, for its next job.
            found += [
                f"box directory {entry.name}"
                for entry in self.boxes.iterdir()
                if not entry.name.isdigit()
                or int(entry.name) >= SLOTS
                or entry.is_symlink()
                or any(entry.iterdir())
            ]
        return found

    def jobs_memory(self) -> int:
        """Bytes charged to the daemon's memory cgroup root: every job's memory, pipe buffers
        and tmpfs pages, and what is left of them once the jobs are gone."""
        for root in self.cgroup_roots:
            for name in ("memory.usage_in_bytes", "memory.current"):
                if (root / name).exists():
                    return int((root / name).read_text())
        raise AssertionError("no memory controller")

    def changed_processes(self) -> list[int]:
        """Watched pids (daemon, fork server) that died or were replaced."""
        return [pid for pid, start in self.watched.items() if _start_time(pid) != start]


def _settings(secret: str, uid_base: int, cgroup_root: str) -> dict[str, str]:
    return {
        "PISTON_RUN_TIMEOUT": str(RUN_TIMEOUT),
        "PISTON_RUN_MEMORY_LIMIT": str(MEMORY_LIMIT),
        "PISTON_MAX_PROCESS_COUNT": str(MAX_PROCESSES),
        "PISTON_OUTPUT_MAX_SIZE": str(OUTPUT_MAX),
        "PISTON_MAX_FILE_SIZE": str(MAX_FILE_SIZE),
        "PISTON_MAX_CONCURRENT_JOBS": str(SLOTS),
        "PISTON_COMPILE_TIMEOUT": str(COMPILE_TIMEOUT),
        "PISTON_COMPILE_CPU_TIME": str(COMPILE_TIMEOUT),
        "PISTON_COMPILE_MEMORY_LIMIT": str(COMPILE_MEMORY),
        "PISTON_DISK_SIZE": str(DISK_SIZE),
        "PISTON_DISK_INODES": str(DISK_INODES),
        "PISTON_BOX_UID_BASE": str(uid_base),
        "PISTON_CGROUP_ROOT": cgroup_root,
        "PISTON_LOG_LEVEL": "INFO",
        "PISTON_HOST_RUNTIMES": "true",
        "PISTOND_TEST_SECRET": secret,
    }


@pytest.fixture(scope="session")
def attack_host() -> Iterator[AttackHost]:
    """One real daemon for the whole attack suite, torn down with everything it made."""
    if os.geteuid() != 0:
        pytest.skip("the attack suite runs real sandboxes: it needs root")
    secret = secrets.token_hex(16)
    uid_base = 62_000 + 16 * secrets.randbelow(150)
    cgroup_root = f"pistond-attacks-{secrets.token_hex(4)}"
    directory = Path(tempfile.mkdtemp(prefix="pistond-attacks-"))
    daemon: DaemonProcess | None = None
    try:
        daemon = DaemonProcess.start(directory, _settings(secret, uid_base, cgroup_root))
        with SyncClient(daemon.socket) as client:
            versions = {runtime.language: runtime.version for runtime in client.runtimes()}
            limits = dict(client.status().limits)
        missing = {"python", "bash", "c"} - set(versions)
        assert not missing, f"host runtimes not installed: {missing}\n{daemon.log_text()}"
        pid = daemon.process.pid
        watched = {p: _start_time(p) for p in (pid, *_children(pid))}
        yield AttackHost(
            daemon=daemon,
            directory=directory,
            secret=secret,
            uid_base=uid_base,
            cgroup_roots=tuple(point / cgroup_root for point in _cgroup_mounts()),
            versions=versions,
            limits=limits,
            watched={p: start for p, start in watched.items() if start is not None},
        )
    finally:
        if daemon is not None:
            daemon.stop()
        for point in _cgroup_mounts():
            if (point / cgroup_root).is_dir():
                _remove_tree(point / cgroup_root)
        _remove_directory(directory)


def _mounts_under(directory: Path) -> list[str]:
    prefix = str(directory) + "/"
    points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    return sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True)


def _remove_directory(directory: Path) -> None:
    """Detach every mount left under ``directory``, then delete it, never crossing a mount."""
    for point in _mounts_under(directory):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)
    left = _mounts_under(directory)
    assert not left, f"mounts left under {directory}, not deleted: {left}"
    subprocess.run(["rm", "-rf", "--one-file-system", str(directory)], check=True)


@attrs.frozen
class Gateway:
    """A running ``pistond-gateway`` subprocess."""

    process: subprocess.Popen[bytes]
    url: str
    """Its WebSocket ``/api/v2/connect`` URL."""


@pytest.fixture
def gateway(attack_host: AttackHost) -> Iterator[Gateway]:
    """A pistond-gateway on a free loopback port, calling the session's daemon."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    environ = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PISTON_SOCKET": str(attack_host.socket),
        "PISTON_BIND_ADDRESS": f"127.0.0.1:{port}",
        "PISTON_GATEWAY_ALLOW_ROOT": "true",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "pistond.gateway"],
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            with socket.socket() as client:
                if client.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert process.poll() is None, "the gateway exited"
            assert time.monotonic() < deadline, "the gateway did not listen"
            time.sleep(0.05)
        yield Gateway(process, f"ws://127.0.0.1:{port}/api/v2/connect")
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def program_files(name: str) -> list[tuple[str, str]]:
    """The files of attack program ``name``: itself, plus ``probe.py`` for Python ones."""
    files = [(name, (PROGRAMS / name).read_text())]
    if name.endswith(".py"):
        files.append(("probe.py", (PROGRAMS / "probe.py").read_text()))
    return files


@attrs.define(eq=False)
class HeldJob:
    """What an interactive job (see :meth:`Attack.hold`) streamed so far."""

    stdout: bytes = b""
    stderr: bytes = b""
    exits: list[JobExit] = attrs.field(factory=list)
    done: trio.Event = attrs.field(factory=trio.Event)
    _changed: trio.Event = attrs.field(factory=trio.Event)

    @property
    def run(self) -> JobExit:
        """The run stage's exit (the job must be done)."""
        assert self.exits, "the job has not exited"
        return self.exits[-1]

    async def wait_change(self) -> None:
        """Wait for the next event."""
        await self._changed.wait()

    async def pump(self, job: InteractiveJob) -> None:
        """Collect the job's events until it is done."""
        async for event in job.events():
            if isinstance(event, JobOutput):
                if event.stream == "stdout":
                    self.stdout += event.data
                else:
                    self.stderr += event.data
            elif isinstance(event, JobExit):
                self.exits.append(event)
            self._changed.set()
            self._changed = trio.Event()
        self.done.set()
        self._changed.set()


@attrs.define(eq=False)
class Attack:
    """One test's handle on the daemon: run attack programs and canaries."""

    host: AttackHost
    client: PistonClient
    pings: list[float] = attrs.field(factory=list)
    """When (monotonic) the daemon answered a ping while an attack ran."""

    def language_of(self, name: str) -> str:
        """The language of a program file, from its extension."""
        return LANGUAGES[Path(name).suffix]

    async def execute(self, language: str, files: Sequence[Any], **options: Any) -> JobResult:
        """``execute`` on this test's connection, pinging the daemon while it runs."""
        version = self.host.versions[language]
        refused: PistondError | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._ping_later)
            try:
                result = await self.client.execute(language, version, list(files), **options)
            except PistondError as exc:  # re-raised outside the nursery, not in a group
                refused = exc
            nursery.cancel_scope.cancel()
        if refused is not None:
            raise refused
        return result

    async def run(self, name: str, *args: str, **options: Any) -> JobResult:
        """Run attack program ``name`` with ``args``; ``options`` as for ``execute``."""
        return await self.execute(
            self.language_of(name), program_files(name), args=list(args), **options
        )

    async def stage(self, name: str, *args: str, **options: Any) -> StageResult:
        """The run stage of :meth:`run` (it must exist)."""
        result = await self.run(name, *args, **options)
        assert result.run is not None, result
        return result.run

    @asynccontextmanager
    async def hold(self, name: str, *args: str, ready: str) -> AsyncIterator[HeldJob]:
        """Start program ``name`` interactively, wait until its stdout shows ``ready``, yield;
        on leaving, wait (at most 5 s) until it ends by itself."""
        language = self.language_of(name)
        files = program_files(name)
        held = HeldJob()
        job = self.client.start_job(language, self.host.versions[language], files, args=list(args))
        async with job, trio.open_nursery() as nursery:
            nursery.start_soon(held.pump, job)
            with trio.fail_after(5):
                while ready not in held.stdout.decode(errors="replace"):
                    await held.wait_change()
            yield held
            with trio.fail_after(5):
                await held.done.wait()

    async def canary(self) -> None:
        """attacks.md's canary: ``print("ok")`` returns nil with output ``ok``."""
        version = self.host.versions["python"]
        result = await self.client.execute("python", version, [CANARY])
        assert result.run is not None
        assert (result.run.status, result.run.stdout) == (None, "ok\n"), result.run

    async def canary_during(self, fn: Any, *args: Any, delay: float = 0.4) -> Any:
        """Run ``await fn(*args)`` and, ``delay`` seconds in, a concurrent canary; fn's result."""
        results: list[Any] = []

        async def attack() -> None:
            results.append(await fn(*args))

        async def canary() -> None:
            await trio.sleep(delay)
            await self.canary()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(attack)
            nursery.start_soon(canary)
        return results[0]

    async def ping_fresh(self) -> None:
        """Ping over a new connection (the daemon still accepts them)."""
        with trio.fail_after(5):
            async with open_client(self.host.socket) as other:
                await other.ping()
        self.pings.append(trio.current_time())

    async def _ping_later(self) -> None:
        await trio.sleep(PING_DELAY)
        await self.ping_fresh()

    async def wait_clean(self) -> None:
        """Wait until the finished jobs left nothing behind; fail with what is left."""
        deadline = trio.current_time() + CLEAN_TIMEOUT
        while leftovers := self.host.leftovers():
            if trio.current_time() > deadline:
                pytest.fail("left behind: " + "; ".join(leftovers))
            await trio.sleep(0.05)


@pytest.fixture
async def attack(attack_host: AttackHost) -> AsyncIterator[Attack]:
    """A connection to the session's daemon; afterwards, attacks.md's common post-conditions."""
    async with open_client(attack_host.socket) as client:
        handle = Attack(attack_host, client)
        yield handle
        with trio.fail_after(10):
            await client.ping()
            await handle.wait_clean()
            assert not attack_host.changed_processes(), "the daemon or its fork server changed"
            await handle.canary()
            await handle.wait_clean()


__all__ = ["Attack", "AttackHost", "program_files", "table"]
