"""The native launcher: its protocol, its robustness, and what it reuses, proven clean.

Rules: the launcher is the one the install built (a test fails if it was not); real sandboxes,
as root, skip with the reason where namespaces are absent. Reuse is proven by a job that
dirties what is reused (traffic and sockets in the network namespace, an OOM kill and a
cgroup kill in the stage group) and a second job in the same box slot that checks it sees
nothing of it.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
from typing import TYPE_CHECKING, Any

import attrs
import pytest
import trio

from pistond.config import DaemonConfig
from pistond.errors import SandboxError
from pistond.models import StageStatus
from pistond.sandbox import RootView, StageLimits, StageSpec, launch, launchspec
from pistond.sandbox import spawners as spawners_module
from pistond.sandbox.launchspec import FdRole
from pistond.sandbox.service import open_sandbox
from pistond.sandbox.spawn import ForkServer
from pistond.sandbox.spawners import LauncherSpawner, SpawnRequest
from pistond.sandbox.spec import SpawnSpec

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from pistond.sandbox.service import Sandbox

PYTHON = "/usr/bin/python3.11"
LIMITS = StageLimits(
    wall_time_ms=5000,
    cpu_time_ms=5000,
    memory_bytes=128 * 1024 * 1024,
    max_processes=32,
    max_open_files=128,
    max_file_size=10_000_000,
    output_max_size=65536,
)


def _spec(*argv: str, **limits: int) -> StageSpec:
    return StageSpec(
        argv=argv,
        env={"PATH": "/usr/bin:/bin"},
        root=RootView(),
        limits=attrs.evolve(LIMITS, **limits),
    )


def _py(code: str, **limits: int) -> StageSpec:
    return _spec(PYTHON, "-c", code, **limits)


@pytest.fixture
async def sandbox(tmp_path: Path, sandbox_capable: None) -> AsyncIterator[Sandbox]:
    """A sandbox on the native launcher, with its own jobs cgroup and data directory."""
    config = DaemonConfig(
        data_directory=tmp_path / "data", socket=tmp_path / "pistond.sock", max_concurrent_jobs=2
    )
    launcher = launch.start_built()
    try:
        async with open_sandbox(config, launcher) as opened:
            assert isinstance(opened.spawner, LauncherSpawner)
            yield opened
    finally:
        await launcher.aclose()


def test_launcher_is_built_and_speaks_this_protocol() -> None:
    """The install built the launcher, and it speaks the daemon's protocol version."""
    executable = launch.find_executable()
    assert executable is not None
    answer = subprocess.run(
        [str(executable), "--version"], capture_output=True, text=True, check=False
    )
    assert answer.stdout.strip() == f"pistond-launcher {launchspec.PROTOCOL_VERSION}"


def test_launcher_usage_errors_exit_2() -> None:
    """Wrong arguments: a usage line and exit status 2, nothing served."""
    executable = launch.find_executable()
    assert executable is not None
    for argv in ([], ["serve"], ["serve", "1"], ["bogus"]):
        answer = subprocess.run(
            [str(executable), *argv], capture_output=True, text=True, check=False
        )
        assert answer.returncode == 2
        assert "usage" in answer.stderr


def _raw_launcher() -> tuple[subprocess.Popen[bytes], socket.socket]:
    """A launcher on a plain socket pair, greeted with an empty filter."""
    executable = launch.find_executable()
    assert executable is not None
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    process = subprocess.Popen(
        [str(executable), "serve", str(theirs.fileno())], pass_fds=(theirs.fileno(),)
    )
    theirs.close()
    ours.settimeout(5)
    ours.send(launchspec.request(launchspec.MSG_HELLO, 1, b""))
    assert launchspec.decode_reply(ours.recv(4096)).result == 0
    return process, ours


def _ask(sock: socket.socket, message: bytes, fds: list[int] | None = None) -> launchspec.Reply:
    socket.send_fds(sock, [message], fds or [])
    data, received, _, _ = socket.recv_fds(sock, 65536, 1)
    for fd in received:
        os.close(fd)
    return launchspec.decode_reply(data)


def _field(tag: int, value: bytes) -> bytes:
    return tag.to_bytes(2, "big") + len(value).to_bytes(4, "big") + value


@pytest.mark.parametrize(
    ("payload", "nfds", "error"),
    [
        (b"\x00", 0, "truncated field header"),
        (_field(99, b""), 0, "unknown field"),
        (_field(1, b"/bin/t\x00rue"), 0, "string with a NUL byte"),
        (_field(5, b"\x00\x01"), 0, "uid size"),
        (_field(11, bytes([FdRole.STDIN, FdRole.STDIN])), 2, "descriptor role given twice"),
        (_field(11, bytes([FdRole.STDIN])), 2, "descriptor count"),
        (_field(11, bytes([42])), 1, "descriptor role"),
        (_field(1, b"/bin/true") + _field(5, b"\x00\x00\x00\x00"), 0, "the box uid must not be 0"),
        (_field(1, b"/bin/true") + _field(5, b"\x00\x00\xea\x60"), 0, "working directory"),
    ],
)
def test_launcher_refuses_bad_specs_and_goes_on(
    payload: bytes, nfds: int, error: str, sandbox_capable: None
) -> None:
    """A malformed spec gets an error reply naming the field; the launcher keeps serving."""
    process, sock = _raw_launcher()
    try:
        fds = [os.open("/dev/null", os.O_RDONLY) for _ in range(nfds)]
        try:
            reply = _ask(sock, launchspec.request(launchspec.MSG_SPAWN, 7, payload), fds)
        finally:
            for fd in fds:
                os.close(fd)
        assert (reply.request_id, reply.result) == (7, -1)
        assert error in reply.error
        assert _ask(sock, launchspec.request(b"Z", 8)).error == "launcher: unknown request"
        assert _ask(sock, b"S\x00").error == "launcher: malformed or truncated request"
        assert process.poll() is None
    finally:
        sock.close()
        assert process.wait(timeout=5) == 0


def test_launcher_exits_when_the_daemon_end_closes(sandbox_capable: None) -> None:
    """EOF on its socket stops the launcher cleanly."""
    process, sock = _raw_launcher()
    sock.close()
    assert process.wait(timeout=5) == 0


async def _run(sandbox: Sandbox, spec: StageSpec, slot: int = 0) -> Any:
    async with sandbox.open_box(slot) as box:
        with trio.fail_after(30):
            return await box.run_stage(spec)


async def test_launcher_killed_takes_its_sandboxes_and_is_restarted(sandbox: Sandbox) -> None:
    """kill -9 of the launcher ends every sandbox it started (their PID 1 has SIGKILL as
    parent-death signal); the next stage restarts it and runs."""
    assert isinstance(sandbox.spawner, LauncherSpawner)
    launcher = sandbox.spawner.launcher
    old = launcher.pid
    async with sandbox.open_box(0) as box, box.open_stage(_spec("/bin/sleep", "30")) as stage:
        await trio.sleep(0.2)
        os.kill(old, signal.SIGKILL)
        with trio.fail_after(10):
            result = await stage.wait()
    assert (result.status, result.message) == (
        StageStatus.INTERNAL_ERROR,
        "sandbox ended without reporting an exit",
    )
    again = await _run(sandbox, _spec("/bin/echo", "back"))
    assert (again.status, again.stdout) == (None, "back\n")
    assert launcher.pid != old


NET_DIRTY = """
import socket
server = socket.socket(); server.bind(("127.0.0.1", 4567)); server.listen()
client = socket.create_connection(("127.0.0.1", 4567)); peer, _ = server.accept()
client.sendall(b"x" * 1000); peer.recv(1000); client.close(); peer.close(); server.close()
unix = socket.socket(socket.AF_UNIX); unix.bind("\\0pistond-left-behind"); unix.listen()
print("dirty")
"""
NET_CHECK = """
import socket
lines = [line.split(":") for line in open("/proc/net/dev").read().splitlines()[2:]]
packets = {name.strip(): (int(c.split()[1]), int(c.split()[9])) for name, c in lines}
sockets = len(open("/proc/net/unix").read().splitlines()) - 1
tcp = len(open("/proc/net/tcp").read().splitlines()) - 1
probe = socket.socket(); probe.bind(("127.0.0.1", 4567)); probe.close()
print(packets["lo"], sockets, tcp)
"""


async def test_launcher_network_namespace_reused_only_when_clean(sandbox: Sandbox) -> None:
    """A stage that touches nothing keeps its slot's namespace for the next; one that sends
    traffic and leaves sockets has it replaced, and the slot's next stage sees nothing of it."""
    assert isinstance(sandbox.spawner, LauncherSpawner)
    pool = sandbox.spawner.network
    quiet = await _run(sandbox, _spec("/bin/true"))
    assert quiet.status is None
    assert (pool.made, pool.replaced) == (1, 0)
    assert (await _run(sandbox, _spec("/bin/true"))).status is None
    assert (pool.made, pool.replaced) == (1, 0)
    dirty = await _run(sandbox, _py(NET_DIRTY))
    assert (dirty.status, dirty.stdout) == (None, "dirty\n"), dirty.stderr
    assert pool.replaced == 1
    check = await _run(sandbox, _py(NET_CHECK))
    assert (check.status, check.stdout) == (None, "(0, 0) 0 0\n"), check.stderr
    assert pool.made == 2


MEMORY_HOG = "blocks = []\nwhile True: blocks.append(bytearray(8 * 1024 * 1024))"


async def test_launcher_stage_group_reused_clean_after_oom_and_kill(sandbox: Sandbox) -> None:
    """After an OOM kill, and after a timeout that kills the group, the slot's next stage is
    clean: its own status, small memory and CPU, nothing of the previous stage counted."""
    hog = await _run(sandbox, _py(MEMORY_HOG, memory_bytes=64 * 1024 * 1024))
    assert hog.status is StageStatus.MEMORY_LIMIT
    after_oom = await _run(sandbox, _spec("/bin/true"))
    assert (after_oom.status, after_oom.code) == (None, 0)
    assert after_oom.memory < 16 * 1024 * 1024
    spin = await _run(sandbox, _py("while True: pass", wall_time_ms=300))
    assert spin.status is StageStatus.TIMEOUT
    after_kill = await _run(sandbox, _spec("/bin/echo", "alive"))
    assert (after_kill.status, after_kill.stdout) == (None, "alive\n")
    assert after_kill.cpu_time < 100


async def test_launcher_templates_serve_many_and_expire(sandbox: Sandbox) -> None:
    """One template serves every stage of a root plan until it is old; then it is rebuilt."""
    assert isinstance(sandbox.spawner, LauncherSpawner)
    templates = sandbox.spawner.templates
    for _ in range(3):
        assert (await _run(sandbox, _spec("/bin/true"))).status is None
    assert templates.builds == 1
    templates.max_age = 0.0
    assert (await _run(sandbox, _spec("/bin/true"))).status is None
    assert templates.builds == 2
    templates.max_age = 60.0
    templates.forget()
    assert (await _run(sandbox, _spec("/bin/true"))).status is None
    assert templates.builds == 3


async def test_launcher_root_that_cannot_be_built_is_a_setup_error(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """A runtime root without its mount points is the stage's XX naming the mount point."""
    bare = tmp_path / "bare-root"
    bare.mkdir()
    spec = StageSpec(argv=("/bin/true",), env={}, root=RootView(path=str(bare)), limits=LIMITS)
    result = await _run(sandbox, spec)
    assert result.status is StageStatus.INTERNAL_ERROR
    assert (result.message or "").startswith("mounts: bind /box")
    assert str(tmp_path) not in (result.message or "")


async def test_launcher_timing_mode_stamps_each_process(sandbox: Sandbox) -> None:
    """With timing on, an exit carries the launcher's, PID 1's and the program's stamps."""
    assert isinstance(sandbox.spawner, LauncherSpawner)
    sandbox.spawner.launcher.timing = True
    async with sandbox.open_box(0) as box:
        group = sandbox.stage_group(0, "run", LIMITS)
        spec = SpawnSpec(stage=_spec("/bin/true"), box_path="/", uid=box.uid, cgroup_procs=())
        request = SpawnRequest(spec=spec, slot=0, box_fd=box.root_fd, group=group)
        null = os.open(os.devnull, os.O_RDWR)
        try:
            process = await sandbox.spawner.spawn(request, stdin=null, stdout=null, stderr=null)
            try:
                with trio.fail_after(10):
                    exit_ = await process.wait()
                    await process.wait_closed()
            finally:
                process.close()
        finally:
            os.close(null)
    assert exit_.exit_code == 0
    names = [name for name, _ in exit_.timings]
    for name in ("launcher.cloned", "init.mounts", "program.seccomp", "init.all reaped"):
        assert name in names, names
    assert names.index("init.mounts") < names.index("program.seccomp")


def test_start_spawner_falls_back_to_the_fork_server(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, sandbox_capable: None
) -> None:
    """Without a built launcher the daemon says so in one line and uses the fork server."""
    monkeypatch.setattr(spawners_module.launch, "find_executable", lambda: None)
    with caplog.at_level(logging.WARNING, logger="pistond.sandbox.spawners"):
        raw = spawners_module.start_spawner()
    try:
        assert isinstance(raw, ForkServer)
        lines = [r.getMessage() for r in caplog.records]
        assert lines == [
            "native launcher not built (no C compiler at install?): using the Python fork server"
        ]
    finally:
        trio.run(raw.aclose)


def test_start_spawner_falls_back_when_the_launcher_cannot_start(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
    sandbox_capable: None,
) -> None:
    """A launcher that does not start (here: not an executable of ours) also falls back."""
    fake = tmp_path / "pistond-launcher"
    fake.write_text("#!/bin/sh\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setattr(spawners_module.launch, "find_executable", lambda: fake)
    with caplog.at_level(logging.WARNING, logger="pistond.sandbox.spawners"):
        raw = spawners_module.start_spawner()
    try:
        assert isinstance(raw, ForkServer)
        assert len(caplog.records) == 1
        assert caplog.records[0].getMessage().startswith("native launcher unusable (")
    finally:
        trio.run(raw.aclose)


async def test_launcher_spawn_after_close_is_refused(sandbox_capable: None) -> None:
    """A closed launcher refuses to spawn with a clear error."""
    launcher = launch.start_built()
    await launcher.aclose()
    with pytest.raises(SandboxError, match="launcher is closed"):
        await launcher.network_namespace()
