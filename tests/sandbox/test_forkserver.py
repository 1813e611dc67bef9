"""The fork server and its daemon side (``spawn.py``): concurrency, failures, restarts, cleanup.

Rules: real fork servers and sandboxes, as root (skipped with the reason otherwise); each test
stops what it started, and checks that no sandbox process outlives it.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import pytest
import trio

from pistond.errors import SandboxError
from pistond.sandbox.recipe import TIMING_ENV
from pistond.sandbox.spawn import ForkServer

if TYPE_CHECKING:
    from pistond.sandbox.spawn import SandboxProcess

SLEEPER = ("/bin/sh", "-c", "echo ready; exec sleep 30")


def _fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


async def _spawn(server: ForkServer, spec: Any) -> SandboxProcess:
    null = os.open("/dev/null", os.O_RDWR)
    try:
        return await server.spawn(spec, stdin=null, stdout=null, stderr=null)
    finally:
        os.close(null)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


async def test_forkserver_concurrent_spawns_get_their_own_sandboxes(
    fork_server: ForkServer, make_spec: Any
) -> None:
    """Many spawns in flight at once each get their own PID 1 and their own exit status."""
    results: dict[int, tuple[int, int | None]] = {}

    async def one(code: int) -> None:
        process = await _spawn(fork_server, make_spec(("/bin/sh", "-c", f"exit {code}")))
        try:
            results[code] = (process.pid, (await process.wait()).exit_code)
        finally:
            process.close()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for code in range(8):
                nursery.start_soon(one, code)
    assert {code: status for code, (_, status) in results.items()} == {c: c for c in range(8)}
    assert len({pid for pid, _ in results.values()}) == 8


async def test_forkserver_setup_failure_raises_and_server_survives(
    fork_server: ForkServer, make_spec: Any, tmp_path: Path
) -> None:
    """A failing early step raises SandboxError naming the step, no host path; spawns go on."""
    missing = str(tmp_path / "no-cgroup" / "cgroup.procs")
    with pytest.raises(SandboxError) as caught:
        await _spawn(fork_server, make_spec(("/bin/true",), cgroup_procs=(missing,)))
    assert str(caught.value) == ("sandbox setup failed: cgroup join: No such file or directory")
    process = await _spawn(fork_server, make_spec(("/bin/true",)))
    try:
        assert (await process.wait()).exit_code == 0
    finally:
        process.close()


async def test_forkserver_joins_the_given_cgroup_procs_files(
    fork_server: ForkServer, make_spec: Any, tmp_path: Path
) -> None:
    """The setup child writes its own pid into every cgroup.procs file before anything else."""
    files = (tmp_path / "a.procs", tmp_path / "b.procs")
    for file in files:
        file.write_text("")
    process = await _spawn(
        fork_server, make_spec(("/bin/true",), cgroup_procs=tuple(map(str, files)))
    )
    try:
        assert (await process.wait()).exit_code == 0
    finally:
        process.close()
    written = {file.read_text() for file in files}
    assert len(written) == 1
    assert written.pop().isdigit()


async def test_forkserver_rejects_uid_zero(fork_server: ForkServer, make_spec: Any) -> None:
    """A spawn spec with uid 0 is refused before anything is forked."""
    spec = attrs.evolve(make_spec(("/bin/true",)), uid=0)
    with pytest.raises(SandboxError, match="box uid must not be 0"):
        await _spawn(fork_server, spec)


async def test_forkserver_survives_a_killed_sandbox(
    fork_server: ForkServer, make_spec: Any
) -> None:
    """A sandbox whose PID 1 is SIGKILLed reports no status, and the server keeps spawning."""
    process = await _spawn(fork_server, make_spec(SLEEPER))
    try:
        os.kill(process.pid, signal.SIGKILL)
        with trio.fail_after(5):
            result = await process.wait()
        assert (result.program_status, result.setup_error) == (None, None)
    finally:
        process.close()
    again = await _spawn(fork_server, make_spec(("/bin/sh", "-c", "exit 4")))
    try:
        assert (await again.wait()).exit_code == 4
    finally:
        again.close()


async def test_forkserver_restarts_after_being_killed(
    fork_server: ForkServer, make_spec: Any
) -> None:
    """A dead fork server is replaced on the next spawn, which succeeds."""
    old = fork_server.pid
    first = await _spawn(fork_server, make_spec(("/bin/true",)))
    first.close()
    os.kill(old, signal.SIGKILL)
    with trio.fail_after(5):
        while _alive(old):  # noqa: ASYNC110 - the kernel has no event for another's child
            await trio.sleep(0.01)
    process = await _spawn(fork_server, make_spec(("/bin/sh", "-c", "exit 5")))
    try:
        assert (await process.wait()).exit_code == 5
    finally:
        process.close()
    assert fork_server.pid != old


async def test_forkserver_close_kills_live_sandboxes(
    fork_server: ForkServer, make_spec: Any
) -> None:
    """Closing the fork server SIGKILLs every sandbox still running and ends the server."""
    process = await _spawn(fork_server, make_spec(SLEEPER))
    try:
        server_pid = fork_server.pid
        await fork_server.aclose()
        with trio.fail_after(5):
            result = await process.wait()
        assert result.program_status is None
        assert not _alive(server_pid)
    finally:
        process.close()


async def test_forkserver_spawn_leaks_no_descriptors(
    fork_server: ForkServer, make_spec: Any
) -> None:
    """After a sandbox is waited for and closed, the daemon holds no extra descriptor."""
    warm = await _spawn(fork_server, make_spec(("/bin/true",)))
    await warm.wait()
    warm.close()
    before = _fd_count()
    for _ in range(3):
        process = await _spawn(fork_server, make_spec(("/bin/true",)))
        await process.wait()
        process.close()
        process.close()
    assert _fd_count() == before


async def test_forkserver_signal_program_checks_the_number(
    fork_server: ForkServer, make_spec: Any
) -> None:
    """signal_program refuses non-signals; kill and signal after close are no-ops."""
    process = await _spawn(fork_server, make_spec(SLEEPER))
    try:
        with pytest.raises(ValueError, match="not a signal number"):
            process.signal_program(0)
        with pytest.raises(ValueError, match="not a signal number"):
            process.signal_program(signal.NSIG)
        process.kill()
        assert (await process.wait()).program_status is None
    finally:
        process.close()
    process.kill()
    process.signal_program(signal.SIGINT)


def _uid_processes(uid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    found.append(int(entry))
            except FileNotFoundError:
                continue
    return found


async def test_forkserver_cancelled_spawn_leaves_no_sandbox(
    fork_server: ForkServer, make_spec: Any, box_uid: int
) -> None:
    """A spawn cancelled at any moment leaves no sandbox process and no descriptor behind."""
    warm = await _spawn(fork_server, make_spec(("/bin/true",)))
    await warm.wait()
    warm.close()
    before = _fd_count()
    for delay in (0, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.05):
        with trio.move_on_after(delay):
            process = await _spawn(fork_server, make_spec(SLEEPER))
            try:
                process.kill()
                await process.wait()
            finally:
                process.close()
        assert _fd_count() == before
    with trio.fail_after(3):
        while _uid_processes(box_uid):  # noqa: ASYNC110 - the kernel has no event for this
            await trio.sleep(0.01)


def _namespaces_of(ran_stdout: bytes) -> tuple[str, str]:
    mnt, net = ran_stdout.decode().split()
    return mnt, net


NS_PROBE = ("/bin/sh", "-c", "readlink /proc/self/ns/mnt /proc/self/ns/net")


async def test_forkserver_prepared_namespaces_serve_one_sandbox_each(run_box: Any) -> None:
    """Live sandboxes with the same root view never share a mount or network namespace."""
    for _ in range(2):  # from now on a helper prepares namespaces ahead
        assert (await run_box(NS_PROBE)).exit.exit_code == 0
        await trio.sleep(0.05)
    count = 6
    seen: list[tuple[str, str]] = []
    all_up = trio.Event()

    async def hold_until_all_up(_process: SandboxProcess, stdout: bytearray) -> None:
        while stdout.count(b"\n") < 2:  # noqa: ASYNC110 - output arrives in another task
            await trio.sleep(0.005)
        seen.append(_namespaces_of(bytes(stdout)))
        if len(seen) == count:
            all_up.set()
        await all_up.wait()

    async def one() -> None:
        probe = (*NS_PROBE[:2], NS_PROBE[2] + "; read line; exit 0")
        ran = await run_box(probe, during=hold_until_all_up)
        assert ran.exit.exit_code == 0, ran.stderr

    async with trio.open_nursery() as nursery:
        for _ in range(count):
            nursery.start_soon(one)
    assert len({mnt for mnt, _ in seen}) == count
    assert len({net for _, net in seen}) == count


def _processes_in_mount_namespace(link: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink(f"/proc/{entry}/ns/mnt") == link:
                    found.append(int(entry))
            except OSError:
                continue
    return found


async def test_forkserver_close_leaves_no_prepared_namespace_holder(
    fork_server: ForkServer, run_box_python: Any
) -> None:
    """Once the fork server is closed, no helper process holds a sandbox's mount namespace."""
    links = []
    for _ in range(3):
        ran = await run_box_python(NS_PROBE)
        links.append(_namespaces_of(ran.stdout)[0])
        await trio.sleep(0.05)
    await fork_server.aclose()
    with trio.fail_after(3):
        while any(_processes_in_mount_namespace(link) for link in links):  # noqa: ASYNC110
            await trio.sleep(0.01)


async def test_forkserver_timing_mode_stamps_every_process(
    make_spec: Any, monkeypatch: pytest.MonkeyPatch, sandbox_capable: None
) -> None:
    """With PISTOND_SANDBOX_TIMING=1 the exit carries ordered stamps of each step; else none."""
    monkeypatch.setenv(TIMING_ENV, "1")
    timed = ForkServer.start()
    monkeypatch.delenv(TIMING_ENV)
    try:
        process = await _spawn(timed, make_spec(("/bin/true",)))
        try:
            with trio.fail_after(10):
                result = await process.wait()
        finally:
            process.close()
    finally:
        await timed.aclose()
    assert result.exit_code == 0
    names = [name for name, _ in result.timings]
    stamps = [stamp for _, stamp in result.timings]
    assert stamps == sorted(stamps)
    for step in ("forkserver.request received", "init.mounts", "program.seccomp"):
        assert step in names
    assert names.index("init.mounts") < names.index("program.seccomp")
    assert names[-1] == "init.program reaped"


async def test_forkserver_timing_mode_is_off_by_default(run_box_python: Any) -> None:
    """Without the variable, a sandbox's exit carries no timings."""
    ran = await run_box_python(("/bin/true",))
    assert ran.exit.exit_code == 0
    assert ran.exit.timings == ()
