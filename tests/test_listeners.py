"""Rules for pistond.listeners: our own socket (mode, group, stale, live, wrong file type) and
systemd socket activation, in process and for real under ``systemd-socket-activate``.

Every test works in pytest's private tmp_path; sockets and descriptors are closed, and child
processes killed, before the test ends.
"""

from __future__ import annotations

import contextlib
import grp
import os
import shutil
import socket
import stat
import subprocess
import sys
import textwrap
import time
from typing import TYPE_CHECKING

import pytest
import trio

from pistond.config import DaemonConfig, load_config
from pistond.errors import ConfigError
from pistond.listeners import (
    LISTEN_VARIABLES,
    Listeners,
    StartupError,
    adopt_systemd_sockets,
    bind_unix_socket,
    open_listeners,
    remove_own_socket,
)

if TYPE_CHECKING:
    from collections.abc import Iterator, MutableMapping
    from pathlib import Path

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another group needs root")


@pytest.fixture
def group_gid() -> int:
    """The gid of the existing non-root group ``daemon`` used as the socket group."""
    try:
        return grp.getgrnam("daemon").gr_gid
    except KeyError:
        pytest.skip("this host has no 'daemon' group to own the test socket")


@pytest.fixture
def socket_path(tmp_path: Path) -> Path:
    return tmp_path / "run" / "pistond.sock"


@pytest.fixture
def config(socket_path: Path) -> DaemonConfig:
    """The configuration the daemon builds from PISTON_SOCKET and PISTON_SOCKET_GROUP."""
    environ = {"PISTON_SOCKET": os.fspath(socket_path), "PISTON_SOCKET_GROUP": "daemon"}
    return load_config(environ)


@pytest.fixture
def clean_listen_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*LISTEN_VARIABLES, "PISTON_SOCKET_GROUP"):
        monkeypatch.delenv(name, raising=False)


@contextlib.contextmanager
def opened(config: DaemonConfig, environ: MutableMapping[str, str]) -> Iterator[Listeners]:
    listeners = open_listeners(config, environ)
    try:
        yield listeners
    finally:
        remove_own_socket(listeners)
        for listener in listeners:
            os.close(listener.socket.detach())


def stale_socket(path: Path) -> None:
    """Leave a socket file at ``path`` with nobody listening, as a crashed daemon would."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(os.fspath(path))


def free_fds(count: int) -> int:
    """The first of ``count`` consecutive unused descriptor numbers."""
    start = 64
    while True:
        fds = range(start, start + count)
        if not any(_is_open(fd) for fd in fds):
            return start
        start += count


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


@contextlib.contextmanager
def passed_fds(*objects: socket.socket | int) -> Iterator[int]:
    """Place sockets or raw fds at consecutive numbers, as systemd would at 3; yield the first."""
    first = free_fds(len(objects))
    for offset, obj in enumerate(objects):
        fd = obj if isinstance(obj, int) else obj.fileno()
        os.dup2(fd, first + offset)
    try:
        yield first
    finally:
        for offset in range(len(objects)):
            with contextlib.suppress(OSError):
                os.close(first + offset)


def unix_listener(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(os.fspath(path))
    sock.listen()
    return sock


@needs_root
@pytest.mark.usefixtures("clean_listen_env")
def test_listeners_socket_mode_0660_and_group(
    config: DaemonConfig, socket_path: Path, group_gid: int
) -> None:
    """Our own socket is a socket file with mode 0660 owned by root and the configured group."""
    with opened(config, {}) as listeners:
        info = os.lstat(socket_path)
        assert stat.S_ISSOCK(info.st_mode)
        assert stat.S_IMODE(info.st_mode) == 0o660
        assert (info.st_uid, info.st_gid) == (os.geteuid(), group_gid)
        assert len(listeners) == 1
        assert listeners.socket_file is not None
        assert listeners.socket_file.inode == info.st_ino


@pytest.mark.usefixtures("clean_listen_env")
def test_listeners_directory_created_0755(tmp_path: Path) -> None:
    """A missing socket directory is created with mode 0755, whatever the umask."""
    path = tmp_path / "a" / "b" / "pistond.sock"
    old_umask = os.umask(0o077)
    try:
        with opened(DaemonConfig(socket=path), {}):
            assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o755
    finally:
        os.umask(old_umask)


@pytest.mark.usefixtures("clean_listen_env")
def test_listeners_no_temporary_file_left(socket_path: Path) -> None:
    """The atomic bind leaves only the final socket in the directory, and nothing at removal."""
    with opened(DaemonConfig(socket=socket_path), {}):
        assert os.listdir(socket_path.parent) == [socket_path.name]
    assert os.listdir(socket_path.parent) == []


@pytest.mark.usefixtures("clean_listen_env")
def test_listeners_umask_restored(socket_path: Path) -> None:
    """Binding changes the umask only for the bind itself."""
    old_umask = os.umask(0o022)
    try:
        with opened(DaemonConfig(socket=socket_path), {}):
            assert os.umask(0o022) == 0o022
    finally:
        os.umask(old_umask)


async def test_listeners_accept_and_answer(socket_path: Path, clean_listen_env: None) -> None:
    """A client connecting to the socket path reaches the returned trio listener."""
    with trio.fail_after(5), opened(DaemonConfig(socket=socket_path), {}) as listeners:
        client = await trio.open_unix_socket(os.fspath(socket_path))
        server = await listeners[0].accept()
        await server.send_all(b"pong")
        assert await client.receive_some(4) == b"pong"
        await client.aclose()
        await server.aclose()


@pytest.mark.usefixtures("clean_listen_env")
def test_listeners_stale_socket_replaced(socket_path: Path) -> None:
    """A socket file with nobody listening is replaced by a new, working socket."""
    stale_socket(socket_path)
    stale_inode = os.lstat(socket_path).st_ino
    with opened(DaemonConfig(socket=socket_path), {}) as listeners:
        assert listeners.socket_file is not None
        assert os.lstat(socket_path).st_ino == listeners.socket_file.inode != stale_inode
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect(os.fspath(socket_path))


@pytest.mark.usefixtures("clean_listen_env")
def test_listeners_live_socket_refused(socket_path: Path) -> None:
    """A socket a daemon still listens on makes startup fail with one clear line."""
    socket_path.parent.mkdir()
    with unix_listener(socket_path):
        inode = os.lstat(socket_path).st_ino
        with pytest.raises(StartupError) as caught:
            open_listeners(DaemonConfig(socket=socket_path), {})
        assert str(caught.value) == f"another pistond is listening on {socket_path}"
        assert os.lstat(socket_path).st_ino == inode
        assert os.listdir(socket_path.parent) == [socket_path.name]


@pytest.mark.usefixtures("clean_listen_env")
def test_listeners_full_backlog_counts_as_live(socket_path: Path) -> None:
    """A listener whose accept queue is full is still a live daemon."""
    socket_path.parent.mkdir()
    with unix_listener(socket_path) as server, contextlib.ExitStack() as clients:
        server.listen(0)
        for _ in range(4):
            client = clients.enter_context(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
            client.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                client.connect(os.fspath(socket_path))
        with pytest.raises(StartupError, match="another pistond is listening"):
            open_listeners(DaemonConfig(socket=socket_path), {})


@pytest.mark.usefixtures("clean_listen_env")
def test_listeners_regular_file_refused(socket_path: Path) -> None:
    """A regular file at the socket path is an error and is left untouched."""
    socket_path.parent.mkdir()
    socket_path.write_text("precious")
    with pytest.raises(StartupError, match="exists and is not a socket"):
        open_listeners(DaemonConfig(socket=socket_path), {})
    assert socket_path.read_text() == "precious"
    assert os.listdir(socket_path.parent) == [socket_path.name]


@pytest.mark.usefixtures("clean_listen_env")
def test_listeners_symlink_refused(tmp_path: Path, socket_path: Path) -> None:
    """A symlink at the socket path is refused; neither it nor its target (a stale socket) moves."""
    target = tmp_path / "target.sock"
    stale_socket(target)
    socket_path.parent.mkdir()
    socket_path.symlink_to(target)
    target_inode = os.lstat(target).st_ino
    with pytest.raises(StartupError, match="exists and is not a socket"):
        open_listeners(DaemonConfig(socket=socket_path), {})
    assert socket_path.is_symlink()
    assert os.readlink(socket_path) == os.fspath(target)
    assert os.lstat(target).st_ino == target_inode


@pytest.mark.usefixtures("clean_listen_env")
def test_listeners_directory_at_path_refused(socket_path: Path) -> None:
    """A directory at the socket path is refused and left in place."""
    socket_path.mkdir(parents=True)
    with pytest.raises(StartupError, match="exists and is not a socket"):
        open_listeners(DaemonConfig(socket=socket_path), {})
    assert socket_path.is_dir()


@pytest.mark.usefixtures("clean_listen_env")
def test_listeners_world_writable_directory_refused(tmp_path: Path) -> None:
    """A socket directory anyone may write to (without the sticky bit) is refused."""
    directory = tmp_path / "open"
    directory.mkdir()
    directory.chmod(0o777)
    with pytest.raises(StartupError, match="world-writable"):
        open_listeners(DaemonConfig(socket=directory / "pistond.sock"), {})
    assert os.listdir(directory) == []


@pytest.mark.usefixtures("clean_listen_env")
def test_listeners_too_long_path_refused(tmp_path: Path) -> None:
    """A socket path longer than sun_path allows is a clear error, not a truncated bind."""
    path = tmp_path / ("x" * 120)
    with pytest.raises(StartupError, match="longer than 107 bytes"):
        open_listeners(DaemonConfig(socket=path), {})


@pytest.mark.usefixtures("clean_listen_env")
def test_listeners_unknown_group_refused(socket_path: Path) -> None:
    """A socket group that does not exist stops startup before any file is created."""
    config = DaemonConfig(socket=socket_path, socket_group="no-such-group-pistond")
    with pytest.raises(ConfigError, match="no such group"):
        open_listeners(config, {})
    assert not socket_path.parent.exists()


def test_listeners_remove_only_own_socket(socket_path: Path) -> None:
    """Shutdown removes our socket, but not a file that replaced it meanwhile."""
    sock, socket_file = bind_unix_socket(socket_path, None)
    with sock:
        assert socket_file.remove()
        assert not socket_path.exists()
        assert not socket_file.remove()
    sock, socket_file = bind_unix_socket(socket_path, None)
    with sock:
        os.unlink(socket_path)
        socket_path.write_text("someone else's")
        assert not socket_file.remove()
        assert socket_path.read_text() == "someone else's"


def test_listeners_adopt_passed_sockets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_listen_env: None
) -> None:
    """With LISTEN_PID = our pid, passed Unix listeners are adopted, non-blocking and CLOEXEC."""
    monkeypatch.setenv("LISTEN_FDS", "2")
    environ = {"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "2", "LISTEN_FDNAMES": "a:b"}
    with (
        unix_listener(tmp_path / "a.sock") as a,
        unix_listener(tmp_path / "b.sock") as b,
        passed_fds(a, b) as first,
    ):
        sockets = adopt_systemd_sockets(environ, first_fd=first)
        try:
            assert [s.fileno() for s in sockets] == [first, first + 1]
            assert [s.getsockname() for s in sockets] == [
                os.fspath(tmp_path / "a.sock"),
                os.fspath(tmp_path / "b.sock"),
            ]
            assert all(not s.getblocking() and not s.get_inheritable() for s in sockets)
        finally:
            for sock in sockets:
                sock.close()
    assert environ == {}
    assert not set(LISTEN_VARIABLES) & set(os.environ)


def test_listeners_other_pid_ignored(
    socket_path: Path, monkeypatch: pytest.MonkeyPatch, clean_listen_env: None
) -> None:
    """LISTEN_FDS meant for another process is ignored (and unset); we bind our own socket."""
    monkeypatch.setenv("LISTEN_PID", "1")
    monkeypatch.setenv("LISTEN_FDS", "1")
    with opened(DaemonConfig(socket=socket_path), os.environ) as listeners:
        assert listeners.socket_file is not None
        assert stat.S_ISSOCK(os.lstat(socket_path).st_mode)
    assert not set(LISTEN_VARIABLES) & set(os.environ)


def _wrong_sockets(tmp_path: Path) -> Iterator[tuple[str, socket.socket | int]]:
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.bind(("127.0.0.1", 0))
    tcp.listen()
    yield "tcp", tcp
    datagram = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    datagram.bind(os.fspath(tmp_path / "dgram.sock"))
    yield "datagram", datagram
    idle = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    idle.bind(os.fspath(tmp_path / "idle.sock"))
    yield "not listening", idle


@pytest.mark.parametrize("kind", ["tcp", "datagram", "not listening", "pipe"])
def test_listeners_wrong_passed_socket_refused(
    tmp_path: Path, kind: str, clean_listen_env: None
) -> None:
    """A passed fd that is not a listening Unix stream socket stops startup; all are closed."""
    candidates = dict(_wrong_sockets(tmp_path))
    read_end, write_end = os.pipe()
    try:
        with unix_listener(tmp_path / "good.sock") as good:
            wrong = read_end if kind == "pipe" else candidates[kind]
            with passed_fds(good, wrong) as first:
                environ = {"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "2"}
                with pytest.raises(StartupError, match=f"descriptor {first + 1}"):
                    adopt_systemd_sockets(environ, first_fd=first)
                assert not _is_open(first)
                assert not _is_open(first + 1)
    finally:
        os.close(read_end)
        os.close(write_end)
        for candidate in candidates.values():
            if isinstance(candidate, socket.socket):
                candidate.close()


def test_listeners_malformed_listen_fds_refused(clean_listen_env: None) -> None:
    """A LISTEN_FDS that is not a number is a startup error."""
    environ = {"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "three"}
    with pytest.raises(StartupError, match="LISTEN_FDS must be a number"):
        adopt_systemd_sockets(environ)


_ACTIVATED_PROGRAM = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    import trio
    from pistond.config import DaemonConfig, load_config
    from pistond.listeners import open_listeners

    async def main():
        listeners = open_listeners(DaemonConfig(socket=Path(sys.argv[1])), os.environ)
        leaked = sorted(n for n in os.environ if n.startswith("LISTEN_"))
        with trio.fail_after(10):
            stream = await listeners[0].accept()
            reply = f"{len(listeners)} {listeners.socket_file} {leaked}"
            await stream.send_all(reply.encode())
            await stream.aclose()

    trio.run(main)
    """
)


def test_listeners_systemd_socket_activate(tmp_path: Path) -> None:
    """Under systemd-socket-activate the daemon adopts fd 3, unsets LISTEN_*, binds nothing."""
    activate = shutil.which("systemd-socket-activate")
    if activate is None:
        pytest.skip("systemd-socket-activate is not installed")
    path = tmp_path / "activated.sock"
    unused = tmp_path / "unused" / "pistond.sock"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LISTEN_", "NOTIFY_"))}
    argv = [activate, "-l", os.fspath(path), sys.executable, "-c", _ACTIVATED_PROGRAM]
    with subprocess.Popen(
        [*argv, os.fspath(unused)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as process:
        try:
            deadline = time.monotonic() + 10
            while not path.exists():
                assert process.poll() is None, process.stderr.read() if process.stderr else ""
                assert time.monotonic() < deadline, "systemd-socket-activate never listened"
                time.sleep(0.02)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
                client.settimeout(10)
                client.connect(os.fspath(path))
                reply = b""
                while chunk := client.recv(1024):
                    reply += chunk
            _, stderr = process.communicate(timeout=10)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert process.returncode == 0, stderr.decode()
    assert reply.decode() == "1 None []"
    assert not unused.parent.exists()


def test_listeners_activation_owns_no_file() -> None:
    """Under socket activation there is no socket file of ours to remove at shutdown."""
    assert not remove_own_socket(Listeners([], None))
