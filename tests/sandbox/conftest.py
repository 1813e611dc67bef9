"""Shared fixtures of the sandbox tests: the root check, a mounted box tmpfs, the spawners.

Tests that build real sandboxes need root (namespaces, mounts); they skip, with the reason,
where that is absent. ``run_box`` runs each test twice, once per spawner: the native launcher
(with its templates and pooled network namespaces, as the daemon uses it) and the Python fork
server (the fallback). Every fixture undoes what it made: the box tmpfs is unmounted and the
spawner stopped (which SIGKILLs any sandbox still alive).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from pistond.sandbox import launch, libc
from pistond.sandbox.launch import Launcher, StageHandles
from pistond.sandbox.netpool import NetworkPool
from pistond.sandbox.spawn import ForkServer, SandboxExit, SandboxProcess
from pistond.sandbox.spawners import FailedSandbox
from pistond.sandbox.spec import RootView, SpawnSpec, StageLimits, StageSpec, root_plan
from pistond.sandbox.templates import RootUnavailable, Templates

BOX_UID = 61234
"""Box uid of the tests' sandboxes (no other process uses it)."""
PYTHON = "/usr/bin/python3.11"
PROGRAMS = Path(__file__).parent / "programs"
RUN_TIMEOUT = 10
"""Seconds a test sandbox may run."""


def _sandbox_unavailable() -> str | None:
    """Why real sandboxes cannot be built here, or None."""
    if os.geteuid() != 0:
        return "needs root to build sandboxes (namespaces, mounts)"
    pid = os.fork()
    if pid == 0:
        try:
            libc.unshare(libc.CLONE_NEWNS | libc.CLONE_NEWPID | libc.CLONE_NEWNET)
        except OSError:
            os._exit(1)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        return "the kernel refuses new mount, pid and net namespaces here"
    if not os.path.exists(PYTHON):
        return f"{PYTHON} is needed inside the sandbox"
    return None


SANDBOX_UNAVAILABLE = _sandbox_unavailable()


@pytest.fixture
def sandbox_capable() -> None:
    """Skip the test, with the reason, where real sandboxes cannot be built."""
    if SANDBOX_UNAVAILABLE is not None:
        pytest.skip(SANDBOX_UNAVAILABLE)


@pytest.fixture
def box_uid() -> int:
    """The uid (and gid) of the tests' sandboxes."""
    return BOX_UID


@pytest.fixture
def box(tmp_path: Path, sandbox_capable: None) -> Iterator[Path]:
    """A 16 MiB box tmpfs owned by BOX_UID, with an empty ``submission`` directory."""
    path = tmp_path / "box"
    path.mkdir()
    libc.mount(
        "tmpfs",
        str(path),
        "tmpfs",
        libc.MS_NOSUID | libc.MS_NODEV,
        f"size=16m,nr_inodes=1024,mode=0755,uid={BOX_UID},gid={BOX_UID}",
    )
    try:
        (path / "submission").mkdir()
        os.chown(path / "submission", BOX_UID, BOX_UID)
        yield path
    finally:
        libc.umount2(str(path), libc.MNT_DETACH)


@pytest.fixture
async def fork_server(sandbox_capable: None) -> AsyncIterator[ForkServer]:
    """A started fork server, stopped after the test."""
    server = ForkServer.start()
    try:
        yield server
    finally:
        await server.aclose()


@attrs.define(eq=False)
class LauncherHarness:
    """The native launcher as the daemon drives it, for specs built by path: it opens the box
    (never through a link), takes the plan's template and the slot's network namespace."""

    launcher: Launcher
    templates: Templates
    network: NetworkPool
    _slots: itertools.count[int] = attrs.field(factory=itertools.count)

    async def spawn(self, spec: SpawnSpec, *, stdin: int, stdout: int, stderr: int) -> Any:
        try:
            template = await self.templates.get(root_plan(spec, shared=True))
        except RootUnavailable as exc:
            return FailedSandbox(setup_error=f"mounts: {exc}")
        slot = next(self._slots)  # as the daemon's, live sandboxes never share a slot
        netns = -1 if spec.stage.network else await self.network.acquire(slot)
        box = os.open(spec.box_path, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            handles = StageHandles(box=box, mount_namespace=template, network_namespace=netns)
            process = await self.launcher.spawn(
                spec, handles, stdin=stdin, stdout=stdout, stderr=stderr
            )
        finally:
            os.close(box)
        if netns >= 0:
            process.on_closed = lambda clean: self.network.release(slot, netns, clean)
        return process

    async def aclose(self) -> None:
        self.templates.close()
        self.network.close()
        await self.launcher.aclose()


@pytest.fixture(params=["native", "python"])
async def spawner(request: pytest.FixtureRequest, sandbox_capable: None) -> AsyncIterator[Any]:
    """Each spawner in turn: the native launcher, then the Python fork server."""
    if request.param == "python":
        server = ForkServer.start()
        try:
            yield server
        finally:
            await server.aclose()
        return
    launcher = launch.start_built()
    async with trio.open_nursery() as nursery:
        harness = LauncherHarness(
            launcher=launcher,
            templates=Templates(nursery=nursery),
            network=NetworkPool(make=launcher.network_namespace),
        )
        try:
            yield harness
        finally:
            await harness.aclose()
            nursery.cancel_scope.cancel()


@pytest.fixture
def put_program(box: Path) -> Callable[[str], str]:
    """``put_program(name)`` copies ``programs/<name>`` into the box; returns its sandbox path."""

    def put(name: str) -> str:
        shutil.copyfile(PROGRAMS / name, box / name)
        os.chmod(box / name, 0o755)
        return f"/box/{name}"

    return put


def _make_limits(**changes: Any) -> StageLimits:
    """Small stage limits for tests."""
    values: dict[str, Any] = {
        "wall_time_ms": 5000,
        "cpu_time_ms": 3000,
        "memory_bytes": None,
        "max_processes": 32,
        "max_open_files": 128,
        "max_file_size": 1_000_000,
        "output_max_size": 65536,
    }
    values.update(changes)
    return StageLimits(**values)


def _make_spec(
    box: Path,
    argv: tuple[str, ...],
    *,
    env: Mapping[str, str] | None = None,
    root: RootView | None = None,
    cwd: str = "/box/submission",
    network: bool = False,
    limits: StageLimits | None = None,
    cgroup_procs: tuple[str, ...] = (),
    box_path: str | None = None,
) -> SpawnSpec:
    """A spawn spec over ``box`` for the test uid."""
    return SpawnSpec(
        stage=StageSpec(
            argv=argv,
            env={"PATH": "/usr/bin:/bin", "HOME": "/box"} if env is None else env,
            root=RootView() if root is None else root,
            limits=_make_limits() if limits is None else limits,
            cwd=cwd,
            network=network,
        ),
        box_path=str(box) if box_path is None else box_path,
        uid=BOX_UID,
        cgroup_procs=cgroup_procs,
        hostname="pistond-test",
    )


During = Callable[[SandboxProcess, bytearray], Awaitable[None]]
"""Runs while the sandbox is alive, with its stdout so far; stdin closes after it."""


@attrs.frozen
class Ran:
    """A finished sandbox: how it ended and what it wrote."""

    exit: SandboxExit
    stdout: bytes
    stderr: bytes


async def _drain(fd: int, sink: bytearray) -> None:
    async with trio.lowlevel.FdStream(fd) as stream:
        while chunk := await stream.receive_some():
            sink += chunk


async def run_spec(
    server: ForkServer | LauncherHarness,
    spec: SpawnSpec,
    *,
    stdin: bytes = b"",
    during: During | None = None,
) -> Ran:
    """Spawn ``spec``, feed ``stdin``, collect output; ``during`` runs while it is alive."""
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        process = await server.spawn(spec, stdin=in_r, stdout=out_w, stderr=err_w)
    except BaseException:
        for fd in (in_w, out_r, err_r):
            os.close(fd)
        raise
    finally:
        for fd in (in_r, out_w, err_w):
            os.close(fd)
    stdout, stderr = bytearray(), bytearray()
    try:
        with trio.fail_after(RUN_TIMEOUT):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_drain, out_r, stdout)
                nursery.start_soon(_drain, err_r, stderr)
                async with trio.lowlevel.FdStream(in_w) as stdin_stream:
                    with contextlib.suppress(trio.BrokenResourceError):
                        if stdin:
                            await stdin_stream.send_all(stdin)
                        if during is not None:
                            await during(process, stdout)
                result = await process.wait()
        with trio.fail_after(RUN_TIMEOUT):
            await process.wait_closed()
    finally:
        process.kill()
        process.close()
    return Ran(result, bytes(stdout), bytes(stderr))


def _runner(server: Any, box: Path) -> Callable[..., Awaitable[Ran]]:
    async def run(
        argv: tuple[str, ...],
        *,
        stdin: bytes = b"",
        during: During | None = None,
        **options: Any,
    ) -> Ran:
        return await run_spec(server, _make_spec(box, argv, **options), stdin=stdin, during=during)

    return run


@pytest.fixture
def run_box(spawner: Any, box: Path) -> Callable[..., Awaitable[Ran]]:
    """``await run_box(argv, stdin=..., during=..., **spec_options)`` in a fresh sandbox, once
    through each spawner."""
    return _runner(spawner, box)


@pytest.fixture
def run_box_python(fork_server: ForkServer, box: Path) -> Callable[..., Awaitable[Ran]]:
    """``run_box`` through the Python fork server only (for what only its path does)."""
    return _runner(fork_server, box)


@pytest.fixture
def make_spec(box: Path) -> Callable[..., SpawnSpec]:
    """``make_spec(argv, **options)``: a spawn spec over the test's box."""

    def make(argv: tuple[str, ...], **options: Any) -> SpawnSpec:
        return _make_spec(box, argv, **options)

    return make
