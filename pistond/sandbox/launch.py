"""The daemon side of the native launcher: start it, spawn sandboxes, get network namespaces.

The launcher (``launcher/``, C, built at install time) is the fast spawner: one small
single-threaded process that forks each sandbox's PID 1 with clone3, directly into its new
namespaces and its stage's cgroup, from a complete spec this side builds
(:mod:`pistond.sandbox.launchspec`). Every policy decision stays here; the launcher carries
the spec out.

Many requests may be in flight: each carries an id and one reader task (a trio system task)
routes replies. If the launcher dies, it is restarted once per call (logged) and the call is
retried; sandboxes of the old one die with it (their PID 1 has SIGKILL as parent-death
signal).

What a stage needs besides its spec (:class:`StageHandles`) comes as descriptors: the box's
detached mount copy, the prepared root's mount namespace (:mod:`pistond.sandbox.templates`),
the slot's network namespace (:mod:`pistond.sandbox.netpool`) and the stage group's cgroup
handles.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import socket
import subprocess
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Final

import attrs
import trio

from pistond.errors import SandboxError
from pistond.sandbox import launchspec, libc, namespaces, recipe, seccomp
from pistond.sandbox.forkserver import configure_socket
from pistond.sandbox.launchspec import FdRole, Features, Reply

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from pistond.sandbox.spec import SpawnSpec

logger = logging.getLogger(__name__)

EXECUTABLE_NAME: Final = "pistond-launcher"
_STOP_TIMEOUT: Final = 5.0
_REPLY_TIMEOUT: Final = 30.0
_RECEIVE_SIZE: Final = 65536


def find_executable() -> Path | None:
    """The launcher built by the install, next to its sources; None if it was not built."""
    candidate = Path(str(resources.files("pistond.sandbox").joinpath("launcher", EXECUTABLE_NAME)))
    return candidate if os.access(candidate, os.X_OK) else None


def start_built(*, timing: bool = False) -> Launcher:
    """Start the launcher the install built, with the seccomp filter compiled now.

    Raises:
        SandboxError: it was not built, or it does not start.
    """
    executable = find_executable()
    if executable is None:
        raise SandboxError("the native launcher was not built (no C compiler at install)")
    return Launcher.start(executable, seccomp.build_filter(), timing=timing)


@attrs.frozen
class StageHandles:
    """Descriptors the daemon prepared for one stage (the caller keeps and closes them)."""

    box: int
    """The box's root directory (its mount is cloned for the sandbox with open_tree)."""
    mount_namespace: int
    """A mount namespace holding the stage's prepared root (a template)."""
    network_namespace: int = -1
    """The box slot's loopback-only network namespace; -1 for a fresh one (slower) or for a
    stage on the host's network."""
    cgroup2: int = -1
    """The stage group's cgroup2 directory (clone3 CLONE_INTO_CGROUP), or -1."""
    cgroup_v1: tuple[int, ...] = ()
    """Open ``tasks`` files of the stage group in each v1 hierarchy."""


@attrs.define(eq=False)
class _Pending:
    done: trio.Event = attrs.field(factory=trio.Event)
    reply: Reply | None = None
    fd: int | None = None


@attrs.define(eq=False)
class Launcher:
    """Handle on the launcher process and its socket."""

    executable: Path
    _filter: bytes = attrs.field(alias="filter")
    _process: subprocess.Popen[bytes] = attrs.field(alias="process")
    _sock: socket.socket = attrs.field(alias="sock")
    features: Features
    timing: bool = False
    """Ask for step timings (``bench/sandbox_overhead.py --breakdown``)."""
    _next_id: int = attrs.field(default=1, init=False)
    _pending: dict[int, _Pending] = attrs.field(factory=dict, init=False)
    _reader: trio.CancelScope | None = attrs.field(default=None, init=False)
    _dead: bool = attrs.field(default=False, init=False)
    _closed: bool = attrs.field(default=False, init=False)

    @classmethod
    def start(cls, executable: Path, seccomp_filter: bytes, *, timing: bool = False) -> Launcher:
        """Start the launcher and greet it (synchronously: call before or outside trio's loop).

        Raises:
            SandboxError: it could not be started, or speaks another protocol version.
        """
        process, sock, features = _launch(executable, seccomp_filter)
        return cls(
            executable=executable,
            filter=seccomp_filter,
            process=process,
            sock=sock,
            features=features,
            timing=timing,
        )

    @property
    def pid(self) -> int:
        """Pid of the current launcher process."""
        return self._process.pid

    async def spawn(
        self,
        spec: SpawnSpec,
        handles: StageHandles,
        *,
        stdin: int,
        stdout: int,
        stderr: int,
    ) -> LaunchedSandbox:
        """Start a sandbox running ``spec`` with the given stdio and ``handles``.

        The descriptors stay the caller's (the sandbox gets copies, and a fresh clone of the
        box mount). Cancellation: before the request is sent nothing happens; after, the reply
        is awaited shielded and a new sandbox is killed before ``Cancelled`` propagates.

        Raises:
            SandboxError: the launcher is gone, or the sandbox could not be started (the
                message holds no host paths).
        """
        if self._closed:
            raise SandboxError("launcher is closed")
        report_r, report_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        control_r, control_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        box = -1
        try:
            os.set_blocking(report_w, True)
            box = libc.open_tree(
                handles.box,
                "",
                libc.OPEN_TREE_CLONE | libc.OPEN_TREE_CLOEXEC | libc.AT_EMPTY_PATH,
                what="bind /box",
            )
            fds, roles = _stage_fds(
                handles,
                box=box,
                stdin=stdin,
                stdout=stdout,
                stderr=stderr,
                report=report_w,
                control=control_r,
            )
            payload = launchspec.encode_spawn(
                spec,
                roles=roles,
                writable=recipe.writable_paths(spec),
                device_writable=recipe.DEVICE_WRITABLE,
                timing=self.timing,
            )
            reply, pidfd = await self._call(launchspec.MSG_SPAWN, payload, fds)
        except BaseException:
            os.close(report_r)
            os.close(control_w)
            raise
        finally:
            for fd in (report_w, control_r, box):
                if fd >= 0:
                    os.close(fd)
        if reply.result <= 0 or pidfd is None:
            if pidfd is not None:
                os.close(pidfd)
            os.close(report_r)
            os.close(control_w)
            raise SandboxError(f"sandbox setup failed: {reply.error or 'no pidfd'}")
        process = LaunchedSandbox(
            pid=reply.result, pidfd=pidfd, report_fd=report_r, control_fd=control_w
        )
        try:
            await trio.lowlevel.checkpoint_if_cancelled()
        except BaseException:
            process.kill()
            process.close()
            raise
        return process

    async def network_namespace(self) -> int:
        """A new network namespace with loopback up (the caller owns the descriptor).

        Raises:
            SandboxError: the launcher could not make one.
        """
        reply, fd = await self._call(launchspec.MSG_NETNS, b"", [])
        if reply.result < 0 or fd is None:
            if fd is not None:
                os.close(fd)
            raise NetworkUnavailable(reply.error or "network: no namespace descriptor")
        return fd

    async def aclose(self) -> None:
        """Stop the launcher (it kills every sandbox still alive) and wait for it."""
        if self._closed:
            return
        self._closed = True
        self._stop_reader()
        self._fail_pending()
        trio.lowlevel.notify_closing(self._sock)
        self._sock.close()
        await _wait_exit(self._process)
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()

    async def _call(
        self, kind: bytes, payload: bytes, fds: Sequence[int]
    ) -> tuple[Reply, int | None]:
        if self._closed:
            raise SandboxError("launcher is closed")
        if self._dead or self._process.poll() is not None:
            self._restart()
        if self._reader is None:
            self._start_reader()
        request_id = self._next_id
        self._next_id = self._next_id % 0xFFFFFFFF + 1
        message = launchspec.request(kind, request_id, payload)
        pending = self._pending[request_id] = _Pending()
        try:
            try:
                await self._send(message, fds)
            except _LauncherGone:
                self._restart()
                self._start_reader()
                pending = self._pending[request_id] = _Pending()
                await self._send(message, fds)
        except BaseException:
            self._pending.pop(request_id, None)
            raise
        with trio.CancelScope(shield=True), trio.move_on_after(_REPLY_TIMEOUT):
            await pending.done.wait()
        self._pending.pop(request_id, None)
        if not pending.done.is_set():
            raise SandboxError("launcher did not answer")
        if pending.reply is None:
            raise SandboxError("launcher died during the request")
        return pending.reply, pending.fd

    async def _send(self, message: bytes, fds: Sequence[int]) -> None:
        while True:
            try:
                socket.send_fds(self._sock, [message], list(fds), socket.MSG_DONTWAIT)
                return
            except BlockingIOError:
                await trio.lowlevel.wait_writable(self._sock)
            except OSError as exc:
                self._mark_dead()
                raise _LauncherGone(errno.errorcode.get(exc.errno or 0, "EIO")) from None

    def _start_reader(self) -> None:
        scope = trio.CancelScope()
        self._reader = scope
        trio.lowlevel.spawn_system_task(
            self._read_replies, self._sock, scope, name="launcher-reader"
        )

    def _stop_reader(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            self._reader = None

    async def _read_replies(self, sock: socket.socket, scope: trio.CancelScope) -> None:
        """Route every reply to its pending request, until EOF."""
        with scope:
            while True:
                try:
                    await trio.lowlevel.wait_readable(sock)
                    data, fds, _, _ = socket.recv_fds(sock, _RECEIVE_SIZE, 1, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    continue
                except (OSError, trio.ClosedResourceError):
                    data, fds = b"", []
                if not data:
                    for fd in fds:
                        os.close(fd)
                    if sock is self._sock:
                        self._mark_dead()
                    return
                self._route(data, fds)

    def _route(self, data: bytes, fds: list[int]) -> None:
        try:
            reply = launchspec.decode_reply(data)
        except ValueError:
            logger.warning("malformed reply from the launcher")
            for fd in fds:
                os.close(fd)
            return
        pending = self._pending.get(reply.request_id)
        if pending is None:
            # Nobody waits for it any more (timed out): a sandbox it started must not run on.
            for fd in fds:
                with contextlib.suppress(OSError):
                    libc.pidfd_send_signal(fd, signal.SIGKILL)
                os.close(fd)
            return
        pending.reply = reply
        pending.fd = fds[0] if fds else None
        for fd in fds[1:]:
            os.close(fd)
        pending.done.set()

    def _mark_dead(self) -> None:
        if not self._dead:
            self._dead = True
            logger.error("launcher (pid %d) is gone", self._process.pid)
        self._reader = None
        self._fail_pending()

    def _fail_pending(self) -> None:
        for pending in self._pending.values():
            pending.done.set()

    def _restart(self) -> None:
        """Replace a dead launcher with a fresh one (one attempt)."""
        logger.warning("restarting the launcher (old pid %d)", self._process.pid)
        self._stop_reader()
        trio.lowlevel.notify_closing(self._sock)
        self._sock.close()
        with contextlib.suppress(OSError):
            self._process.kill()
        self._process.wait()
        self._process, self._sock, self.features = _launch(self.executable, self._filter)
        self._dead = False


class NetworkUnavailable(SandboxError):
    """Raised by :meth:`Launcher.network_namespace` when the kernel refused the namespace; the
    text names the step and the reason (``network: Operation not permitted``)."""


class _LauncherGone(SandboxError):
    """Raised by a send when the launcher's end of the socket is gone."""


@attrs.define(eq=False)
class LaunchedSandbox:
    """A running sandbox of the launcher, seen through its PID 1.

    :meth:`wait` returns as soon as PID 1 reports the program's exit: by then every process of
    the sandbox is gone, so the result is final (the short exit path). PID 1's own exit, which
    tears the namespaces down, is awaited by :meth:`wait_closed`.
    """

    pid: int
    pidfd: int
    _report_fd: int = attrs.field(alias="report_fd")
    _control_fd: int = attrs.field(alias="control_fd")
    on_closed: Callable[[bool], None] | None = None
    """Called by :meth:`wait_closed` with whether the network namespace may be reused."""
    _reader: namespaces.ReportReader = attrs.field(factory=namespaces.ReportReader, init=False)
    _closed: bool = attrs.field(default=False, init=False)

    async def wait(self) -> namespaces.SandboxExit:
        """Wait for PID 1's exit record (or its end without one: killed, or setup failed)."""
        if self._closed:
            raise trio.ClosedResourceError("sandbox process is closed")
        while not self._reader.exited and not self._reader.at_eof:
            await self._read_some()
        if not self._reader.exited:
            await trio.lowlevel.wait_readable(self.pidfd)
        return self._reader.result()

    async def wait_closed(self) -> bool:
        """Wait until PID 1 is gone and its report is drained; whether the network namespace
        was reported clean for reuse."""
        while not self._reader.at_eof:
            await self._read_some()
        await trio.lowlevel.wait_readable(self.pidfd)
        clean = self._reader.network_clean
        if self.on_closed is not None:
            callback, self.on_closed = self.on_closed, None
            callback(clean)
        return clean

    async def _read_some(self) -> None:
        await trio.lowlevel.wait_readable(self._report_fd)
        try:
            chunk = os.read(self._report_fd, 65536)
        except BlockingIOError:
            return
        self._reader.feed(chunk)

    def kill(self) -> None:
        """SIGKILL PID 1 through the pidfd, ending the whole namespace; idempotent."""
        if self._closed:
            return
        with contextlib.suppress(ProcessLookupError):
            libc.pidfd_send_signal(self.pidfd, signal.SIGKILL)

    def signal_program(self, signum: int) -> None:
        """Ask PID 1 to send ``signum`` to the program's process group (best effort).

        Raises:
            ValueError: ``signum`` is not a signal number.
        """
        if not 0 < signum < signal.NSIG:
            raise ValueError(f"not a signal number: {signum}")
        if self._closed:
            return
        with contextlib.suppress(BrokenPipeError, BlockingIOError):
            os.write(self._control_fd, bytes([signum]))

    def close(self) -> None:
        """Close the pidfd and the pipes; idempotent. Does not kill."""
        if self._closed:
            return
        self._closed = True
        for fd in (self.pidfd, self._report_fd, self._control_fd):
            trio.lowlevel.notify_closing(fd)
            os.close(fd)


def _stage_fds(
    handles: StageHandles,
    *,
    box: int,
    stdin: int,
    stdout: int,
    stderr: int,
    report: int,
    control: int,
) -> tuple[list[int], list[FdRole]]:
    """The descriptors of a spawn request and their roles, in the same order."""
    pairs = [
        (stdin, FdRole.STDIN),
        (stdout, FdRole.STDOUT),
        (stderr, FdRole.STDERR),
        (report, FdRole.REPORT),
        (control, FdRole.CONTROL),
        (box, FdRole.BOX),
        (handles.mount_namespace, FdRole.MNTNS),
    ]
    if handles.network_namespace >= 0:
        pairs.append((handles.network_namespace, FdRole.NETNS))
    if handles.cgroup2 >= 0:
        pairs.append((handles.cgroup2, FdRole.CGROUP2))
    pairs += [(fd, FdRole.CGROUP_V1) for fd in handles.cgroup_v1]
    return [fd for fd, _ in pairs], [role for _, role in pairs]


def _launch(
    executable: Path, seccomp_filter: bytes
) -> tuple[subprocess.Popen[bytes], socket.socket, Features]:
    """Start a launcher, send it the filter; the process, our end of its socket, its features."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        configure_socket(ours)
        # argv[0] is the bare name: every PID 1 shows this command line, with no host path.
        process = subprocess.Popen(
            [EXECUTABLE_NAME, "serve", str(theirs.fileno())],
            executable=str(executable),
            stdin=subprocess.DEVNULL,
            pass_fds=(theirs.fileno(),),
            cwd="/",
            env={},
        )
    except OSError as exc:
        ours.close()
        raise SandboxError(f"cannot start the launcher: {exc.strerror}") from None
    finally:
        theirs.close()
    try:
        ours.settimeout(_STOP_TIMEOUT)
        ours.send(launchspec.request(launchspec.MSG_HELLO, 0, seccomp_filter))
        reply = launchspec.decode_reply(ours.recv(_RECEIVE_SIZE))
        if reply.result < 0:
            raise SandboxError(f"launcher refused its set-up: {reply.error}")
        features = launchspec.decode_features(reply.payload)
        if features.protocol != launchspec.PROTOCOL_VERSION:
            raise SandboxError(
                f"launcher speaks protocol {features.protocol}, "
                f"not {launchspec.PROTOCOL_VERSION}: rebuild it (reinstall pistond)"
            )
    except (OSError, ValueError, SandboxError) as exc:
        ours.close()
        process.kill()
        process.wait()
        if isinstance(exc, SandboxError):
            raise
        raise SandboxError(f"launcher did not start: {exc}") from None
    ours.setblocking(False)
    return process, ours, features


async def _wait_exit(process: subprocess.Popen[bytes]) -> None:
    """Wait (shielded, at most _STOP_TIMEOUT) for the launcher to exit, then reap it."""
    try:
        pidfd = os.pidfd_open(process.pid)
    except ProcessLookupError:
        process.wait()
        return
    try:
        with trio.move_on_after(_STOP_TIMEOUT, shield=True):
            await trio.lowlevel.wait_readable(pidfd)
    finally:
        trio.lowlevel.notify_closing(pidfd)
        os.close(pidfd)
    process.poll()
