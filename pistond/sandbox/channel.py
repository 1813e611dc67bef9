"""What both spawners share on the daemon side: a request channel to a helper process, and the
handle on a sandbox's PID 1.

:class:`HelperChannel` speaks to a helper (the native launcher, or the Python fork server) over a
``SOCK_SEQPACKET`` socket: one message a request, descriptors as SCM_RIGHTS, replies routed by
request id (many requests may be in flight), one reader task (a trio system task, started on
first use). If the helper dies, it is restarted once per call (logged) and the call is retried.
A reply nobody waits for any more (it timed out) carries a sandbox that must not run on: its
pidfd is killed. The message format is the spawner's: it gives the channel a way to start the
helper and to read a reply's id.

:class:`Pid1Handle` is a sandbox seen through its PID 1: the pidfd, the read end of its report
pipe and the write end of its control pipe; each spawner says how its report ends.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import socket
from typing import TYPE_CHECKING, Final, Generic, TypeVar

import attrs
import trio

from pistond.errors import SandboxError
from pistond.sandbox import libc

if TYPE_CHECKING:
    import subprocess
    from collections.abc import Callable, Sequence

logger = logging.getLogger(__name__)

REPLY_TIMEOUT: Final = 30.0
"""Seconds to wait for a helper's reply."""
STOP_TIMEOUT: Final = 5.0
RECEIVE_SIZE: Final = 65536

ReplyT = TypeVar("ReplyT")


class HelperGone(SandboxError):
    """Raised by a send when the helper's end of the socket is gone."""


@attrs.define(eq=False)
class _Pending(Generic[ReplyT]):
    done: trio.Event = attrs.field(factory=trio.Event)
    reply: ReplyT | None = None
    fd: int | None = None


@attrs.define(eq=False)
class HelperChannel(Generic[ReplyT]):
    """Requests to a helper process and its replies, routed by id.

    Args:
        name: the helper's name in logs and errors (``launcher``, ``fork server``).
        launch: starts the helper; returns the process and the daemon's end of its socket
            (non-blocking).
        decode: a reply's request id (None for a message that answers no request) and the
            reply itself; raises ValueError for a malformed message.
    """

    name: str
    launch: Callable[[], tuple[subprocess.Popen[bytes], socket.socket]]
    decode: Callable[[bytes], tuple[int | None, ReplyT]]
    _process: subprocess.Popen[bytes] = attrs.field(init=False)
    _sock: socket.socket = attrs.field(init=False)
    _next_id: int = attrs.field(default=1, init=False)
    _pending: dict[int, _Pending[ReplyT]] = attrs.field(factory=dict, init=False)
    _reader: trio.CancelScope | None = attrs.field(default=None, init=False)
    _dead: bool = attrs.field(default=False, init=False)
    _send_lock: trio.Lock | None = attrs.field(default=None, init=False)
    """One sender at a time (two tasks may not wait for one socket's writability)."""
    closed: bool = attrs.field(default=False, init=False)

    def __attrs_post_init__(self) -> None:
        self._process, self._sock = self.launch()

    @property
    def pid(self) -> int:
        """Pid of the current helper process."""
        return self._process.pid

    def next_id(self) -> int:
        """A fresh request id (a u32, never 0)."""
        request_id = self._next_id
        self._next_id = self._next_id % 0xFFFFFFFF + 1
        return request_id

    async def call(
        self, request_id: int, message: bytes, fds: Sequence[int]
    ) -> tuple[ReplyT, int | None]:
        """Send ``message`` (with copies of ``fds``); the reply and the descriptor it carried.

        Sent, the reply is awaited even under cancellation (it may carry a new sandbox, which
        the caller then kills).

        Raises:
            SandboxError: the helper is closed, gone, or did not answer in time.
        """
        if self.closed:
            raise SandboxError(f"{self.name} is closed")
        if self._dead or self._process.poll() is not None:
            self._restart()
        if self._reader is None:
            self._start_reader()
        if self._send_lock is None:
            self._send_lock = trio.Lock()
        pending: _Pending[ReplyT] = _Pending()
        self._pending[request_id] = pending
        try:
            async with self._send_lock:
                try:
                    await self._send(message, fds)
                except HelperGone:
                    self._restart()
                    self._start_reader()
                    pending = self._pending[request_id] = _Pending()
                    await self._send(message, fds)
        except BaseException:
            self._pending.pop(request_id, None)
            raise
        with trio.CancelScope(shield=True), trio.move_on_after(REPLY_TIMEOUT):
            await pending.done.wait()
        self._pending.pop(request_id, None)
        if not pending.done.is_set():
            raise SandboxError(f"{self.name} did not answer")
        if pending.reply is None:
            raise SandboxError(f"{self.name} died during the request")
        return pending.reply, pending.fd

    async def aclose(self) -> None:
        """Stop the helper (it kills every sandbox still alive) and wait for it."""
        if self.closed:
            return
        self.closed = True
        self._stop_reader()
        self._fail_pending()
        trio.lowlevel.notify_closing(self._sock)
        self._sock.close()
        await _wait_exit(self._process)
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()

    async def _send(self, message: bytes, fds: Sequence[int]) -> None:
        while True:
            try:
                socket.send_fds(self._sock, [message], list(fds), socket.MSG_DONTWAIT)
                return
            except BlockingIOError:
                await trio.lowlevel.wait_writable(self._sock)
            except OSError as exc:
                self._mark_dead()
                raise HelperGone(errno.errorcode.get(exc.errno or 0, "EIO")) from None

    def _start_reader(self) -> None:
        scope = trio.CancelScope()
        self._reader = scope
        trio.lowlevel.spawn_system_task(
            self._read_replies, self._sock, scope, name=f"{self.name}-reader"
        )

    def _stop_reader(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            self._reader = None

    async def _read_replies(self, sock: socket.socket, scope: trio.CancelScope) -> None:
        """Route every message of the helper to its pending request, until EOF."""
        with scope:
            while True:
                try:
                    await trio.lowlevel.wait_readable(sock)
                    data, fds, _, _ = socket.recv_fds(sock, RECEIVE_SIZE, 8, socket.MSG_DONTWAIT)
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
            request_id, reply = self.decode(data)
        except ValueError:
            logger.warning("malformed message from the %s", self.name)
            request_id, reply = None, None
        pending = self._pending.get(request_id) if request_id is not None else None
        if pending is None or reply is None:
            # Nobody waits for it (timed out, or an event): a sandbox it carries must not run.
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
            logger.error("%s (pid %d) is gone", self.name, self._process.pid)
        self._reader = None
        self._fail_pending()

    def _fail_pending(self) -> None:
        """Wake every waiting request; those without a reply fail."""
        for pending in self._pending.values():
            pending.done.set()

    def _restart(self) -> None:
        """Replace a dead helper with a fresh one (one attempt).

        Raises:
            SandboxError: the new one did not start.
        """
        logger.warning("restarting the %s (old pid %d)", self.name, self._process.pid)
        self._stop_reader()
        trio.lowlevel.notify_closing(self._sock)
        self._sock.close()
        with contextlib.suppress(OSError):
            self._process.kill()
        self._process.wait()
        self._process, self._sock = self.launch()
        self._dead = False


async def _wait_exit(process: subprocess.Popen[bytes]) -> None:
    """Wait (shielded, at most STOP_TIMEOUT) for a child process to exit, then reap it."""
    try:
        pidfd = os.pidfd_open(process.pid)
    except ProcessLookupError:
        process.wait()
        return
    try:
        with trio.move_on_after(STOP_TIMEOUT, shield=True):
            await trio.lowlevel.wait_readable(pidfd)
    finally:
        trio.lowlevel.notify_closing(pidfd)
        os.close(pidfd)
    process.poll()


@attrs.define(eq=False)
class Pid1Handle:
    """A running sandbox seen through its PID 1 (subclassed by each spawner's own handle)."""

    pid: int
    """Host pid of the sandbox's PID 1."""
    pidfd: int
    _report_fd: int = attrs.field(alias="report_fd")
    _control_fd: int = attrs.field(alias="control_fd")
    _closed: bool = attrs.field(default=False, init=False)

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

    def _ensure_open(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("sandbox process is closed")

    async def _read_report(self) -> bytes | None:
        """One chunk of the report pipe once it is readable: b"" at EOF, None if a wakeup
        found nothing to read."""
        await trio.lowlevel.wait_readable(self._report_fd)
        try:
            return os.read(self._report_fd, 65536)
        except BlockingIOError:
            return None
