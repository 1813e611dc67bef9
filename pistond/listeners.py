"""The daemon's RPC listeners: sockets systemd hands over (LISTEN_FDS), or our own Unix socket.

Under socket activation systemd owns the socket file, its mode and its group; pistond only adopts
the descriptors. Otherwise pistond creates ``config.socket`` itself, mode 0660 and group
``pistond`` (see :func:`pistond.config.resolve_socket_group`), and removes it at shutdown if the
file is still the one it created.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import socket
import stat
from collections.abc import Mapping, MutableMapping
from typing import TYPE_CHECKING, Final

import attrs
import trio

from pistond.config import DaemonConfig, resolve_socket_group

if TYPE_CHECKING:
    from pathlib import Path

logger = logging.getLogger(__name__)

SD_LISTEN_FDS_START: Final = 3
"""The first descriptor systemd passes (``SD_LISTEN_FDS_START`` of sd-daemon.h)."""
LISTEN_VARIABLES: Final = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")
"""The socket-activation variables, removed from the environment once read."""
SOCKET_MODE: Final = 0o660
DIRECTORY_MODE: Final = 0o755
_BIND_UMASK: Final = 0o177
_MAX_SOCKET_PATH: Final = 107
"""Bytes of a ``sun_path`` without its terminating NUL."""


class StartupError(Exception):
    """Raised by :func:`open_listeners` when the daemon cannot listen; the message is one line.

    The daemon prints it and exits: another daemon is running, the socket path is taken by
    something that is not a socket, or systemd passed descriptors that are not Unix stream
    listening sockets.
    """


@attrs.frozen
class SocketFile:
    """The socket file pistond created, identified by device and inode."""

    path: Path
    device: int
    inode: int

    def remove(self) -> bool:
        """Unlink the socket file if it is still the one we created.

        Returns:
            True if the file was removed; False if it is gone or was replaced by another file
            (another daemon's socket, say), which is then left alone.
        """
        try:
            info = os.lstat(self.path)
        except FileNotFoundError:
            return False
        if (info.st_dev, info.st_ino) != (self.device, self.inode) or not stat.S_ISSOCK(
            info.st_mode
        ):
            logger.info("not removing %s: it is no longer our socket", self.path)
            return False
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            return False
        return True


class Listeners(list[trio.SocketListener]):
    """The daemon's listeners: a plain list for ``serve_listeners``, plus the socket file it owns.

    ``socket_file`` is None under socket activation, where systemd owns the file.
    """

    socket_file: SocketFile | None

    def __init__(
        self, listeners: list[trio.SocketListener], socket_file: SocketFile | None
    ) -> None:
        super().__init__(listeners)
        self.socket_file = socket_file


def open_listeners(config: DaemonConfig, environ: Mapping[str, str]) -> Listeners:
    """Open the RPC listeners: systemd's sockets if we were socket-activated, else our own.

    Synchronous: every step is a quick local system call, so it may run before ``trio.run`` or
    inside it at startup. It changes the process umask for the duration of one ``bind``, so call
    it before the daemon starts threads that create files.

    Args:
        config: the daemon configuration (``socket``, ``socket_group``).
        environ: the process environment (``os.environ`` or a copy). The LISTEN_* variables are
            removed from ``os.environ``, and from ``environ`` if it is mutable, whether or not
            they were meant for us.

    Returns:
        The listeners (a list), with ``socket_file`` set when pistond created the socket itself.

    Raises:
        StartupError: a live daemon answers on the socket; the path is taken by something other
            than a socket; systemd passed a descriptor that is not a Unix stream listening socket;
            or the socket could not be created.
        ConfigError: ``PISTON_SOCKET_GROUP`` names a group that does not exist.
    """
    sockets = adopt_systemd_sockets(environ)
    if sockets:
        logger.info("using %d socket(s) passed by systemd", len(sockets))
        return Listeners([_to_listener(sock) for sock in sockets], None)
    gid = resolve_socket_group(config)
    sock, socket_file = bind_unix_socket(config.socket, gid)
    logger.info("listening on %s", config.socket)
    return Listeners([_to_listener(sock)], socket_file)


def remove_own_socket(listeners: Listeners) -> bool:
    """Remove the socket file ``open_listeners`` created, if it is still ours (same inode).

    Call it at shutdown. Under socket activation it does nothing: systemd owns the file.

    Returns:
        True if a file was removed.
    """
    if listeners.socket_file is None:
        return False
    return listeners.socket_file.remove()


def _to_listener(sock: socket.socket) -> trio.SocketListener:
    return trio.SocketListener(trio.socket.from_stdlib_socket(sock))


def adopt_systemd_sockets(
    environ: Mapping[str, str], *, first_fd: int = SD_LISTEN_FDS_START
) -> list[socket.socket]:
    """The listening sockets systemd passed, as ``sd_listen_fds(1)`` finds them.

    Adoption happens only when ``LISTEN_PID`` is our pid and ``LISTEN_FDS`` is at least 1. Each
    descriptor must be an AF_UNIX SOCK_STREAM socket in the listening state: the daemon trusts
    SO_PEERCRED, which a TCP socket would not give it. Adopted sockets are made non-blocking and
    close-on-exec. The LISTEN_* variables are removed from ``os.environ`` and, if it is
    mutable, from ``environ``.

    Args:
        environ: the environment to read (normally ``os.environ``).
        first_fd: the first passed descriptor; systemd always uses 3.

    Returns:
        The sockets, in descriptor order; empty when we were not socket-activated.

    Raises:
        StartupError: LISTEN_FDS is malformed or a descriptor is not a Unix stream listening
            socket (every passed descriptor is then closed).
    """
    values = {name: environ.get(name) for name in LISTEN_VARIABLES}
    for name in LISTEN_VARIABLES:
        if isinstance(environ, MutableMapping):
            environ.pop(name, None)
        os.environ.pop(name, None)
    listen_pid, listen_fds = values["LISTEN_PID"], values["LISTEN_FDS"]
    if listen_pid is None or listen_fds is None:
        return []
    if not listen_pid.isdigit() or int(listen_pid) != os.getpid():
        logger.debug("ignoring LISTEN_FDS meant for process %s", listen_pid)
        return []
    if not listen_fds.isdigit():
        raise StartupError(f"LISTEN_FDS must be a number, got {listen_fds!r}")
    count = int(listen_fds)
    fds = range(first_fd, first_fd + count)
    sockets: list[socket.socket] = []
    try:
        for fd in fds:
            sockets.append(_adopt_fd(fd))
    except BaseException:
        for sock in sockets:
            sock.close()
        for fd in fds[len(sockets) :]:
            with contextlib.suppress(OSError):
                os.close(fd)
        raise
    return sockets


def _adopt_fd(fd: int) -> socket.socket:
    """One passed descriptor as a checked, non-blocking, close-on-exec listening socket."""
    try:
        mode = os.fstat(fd).st_mode
    except OSError as exc:
        raise StartupError(f"systemd passed descriptor {fd}, which is not open") from exc
    if not stat.S_ISSOCK(mode):
        raise StartupError(f"systemd passed descriptor {fd}, which is not a socket")
    sock = socket.socket(fileno=fd)
    try:
        listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM or not listening:
            raise StartupError(
                f"systemd passed descriptor {fd}, which is not a listening Unix stream socket "
                "(use ListenStream=/path in the socket unit)"
            )
        sock.setblocking(False)
        sock.set_inheritable(False)
    except BaseException:
        sock.detach()
        raise
    return sock


def bind_unix_socket(path: Path, gid: int | None) -> tuple[socket.socket, SocketFile]:
    """Create our own listening socket at ``path``, mode 0660, group ``gid``.

    The socket is bound to a random name in the same directory with a restrictive umask, set to
    mode 0660 and group ``gid``, put into the listening state, then renamed over ``path``: no
    client ever sees it with other permissions, nor the path without a listener behind it.
    A socket file already at ``path`` is probed: if a daemon answers, we refuse to start; if the
    connection is refused it is stale and gets replaced. Anything else at ``path`` (a regular
    file, a directory, a symlink, whatever it points to) is an error and is left untouched.

    Args:
        path: absolute socket path; its directory is created with mode 0755 if missing.
        gid: group of the socket; None leaves the creator's group (root's).

    Returns:
        The non-blocking, close-on-exec listening socket, and the file's identity for
        :meth:`SocketFile.remove`.

    Raises:
        StartupError: see :func:`open_listeners`.
    """
    if len(os.fsencode(path)) > _MAX_SOCKET_PATH:
        raise StartupError(f"socket path {path} is longer than {_MAX_SOCKET_PATH} bytes")
    directory = path.parent
    _ensure_directory(directory)
    if _check_existing(path):
        logger.info("replacing stale socket %s", path)
    temporary = _temporary_name(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        _bind_private(sock, temporary)
        try:
            if gid is not None:
                os.chown(temporary, -1, gid, follow_symlinks=False)
            os.chmod(temporary, SOCKET_MODE)
            sock.listen(socket.SOMAXCONN)
            os.rename(temporary, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        info = os.lstat(path)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise StartupError(f"cannot create socket {path}: {exc.strerror or exc}") from exc
    except BaseException:
        sock.close()
        raise
    return sock, SocketFile(path=path, device=info.st_dev, inode=info.st_ino)


def _ensure_directory(directory: Path) -> None:
    """Create the socket's directory (0755) if missing; it must be a directory."""
    try:
        info = os.stat(directory)
    except FileNotFoundError:
        try:
            os.makedirs(directory, mode=DIRECTORY_MODE, exist_ok=True)
            os.chmod(directory, DIRECTORY_MODE)
        except OSError as exc:
            raise StartupError(f"cannot create directory {directory}: {exc.strerror}") from exc
        return
    except OSError as exc:
        raise StartupError(f"cannot use directory {directory}: {exc.strerror}") from exc
    if not stat.S_ISDIR(info.st_mode):
        raise StartupError(f"{directory} is not a directory")
    if info.st_mode & stat.S_IWOTH and not info.st_mode & stat.S_ISVTX:
        raise StartupError(f"refusing to create the socket in world-writable {directory}")
    if info.st_mode & stat.S_IWOTH:
        logger.warning("socket directory %s is world-writable; prefer /run/pistond", directory)


def _check_existing(path: Path) -> bool:
    """Whether a stale socket is at ``path``; raise if a daemon answers or it is no socket."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise StartupError(f"cannot inspect {path}: {exc.strerror}") from exc
    if not stat.S_ISSOCK(info.st_mode):
        raise StartupError(f"{path} exists and is not a socket; not replacing it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.setblocking(False)
        probe.connect(os.fspath(path))
    except (ConnectionRefusedError, FileNotFoundError):
        return True
    except BlockingIOError:
        pass  # a full accept queue: somebody is listening
    except OSError as exc:
        raise StartupError(f"cannot probe existing socket {path}: {exc.strerror}") from exc
    finally:
        probe.close()
    raise StartupError(f"another pistond is listening on {path}")


def _temporary_name(path: Path) -> Path:
    """A random name beside ``path`` that fits in ``sun_path``."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    if len(os.fsencode(temporary)) > _MAX_SOCKET_PATH:
        temporary = path.with_name(f".{secrets.token_hex(4)}")
    if len(os.fsencode(temporary)) > _MAX_SOCKET_PATH:
        raise StartupError(f"socket path {path} is too long to bind atomically")
    return temporary


def _bind_private(sock: socket.socket, temporary: Path) -> None:
    """Bind with umask 0177, so the new file is never accessible to anyone but us."""
    old_umask = os.umask(_BIND_UMASK)
    try:
        sock.bind(os.fspath(temporary))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise StartupError(f"temporary socket name {temporary} is taken") from exc
        raise
    finally:
        os.umask(old_umask)
