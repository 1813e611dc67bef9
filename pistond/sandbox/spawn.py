"""Daemon side of the fork server: spawn a sandbox from a SpawnSpec, get its PID 1 as a pidfd.

:meth:`ForkServer.start` runs before ``trio.run`` (the daemon never forks itself); afterwards
every call is async. Many spawns may be in flight: each request carries an id, and one reader
task (a trio system task, started on first use) routes replies. The fork server's
``exited`` events are not needed here: the pidfd says when PID 1 is gone.

Each :class:`SandboxProcess` owns PID 1's pidfd, the read end of its report pipe and the write
end of its control pipe; the caller owns the stdio pipes it passed in.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import signal
import socket
import subprocess
import sys
from typing import Any, Final

import attrs
import trio

from pistond.errors import SandboxError
from pistond.sandbox import libc, namespaces
from pistond.sandbox.forkserver import FD_COUNT, MAX_MESSAGE, configure_socket, launch_command
from pistond.sandbox.namespaces import SandboxExit
from pistond.sandbox.spec import SpawnSpec, spec_to_wire

__all__ = ["ForkServer", "SandboxExit", "SandboxProcess"]

logger = logging.getLogger(__name__)

_STOP_TIMEOUT: Final = 5.0
_REPLY_TIMEOUT: Final = 30.0
"""Seconds to wait for the fork server's reply (its own setup timeout is shorter)."""


@attrs.define(eq=False)
class SandboxProcess:
    """A running sandbox, seen through its PID 1."""

    pid: int
    """Host pid of the sandbox's PID 1."""
    pidfd: int
    _report_fd: int = attrs.field(alias="report_fd")
    _control_fd: int = attrs.field(alias="control_fd")
    _report: bytearray = attrs.field(factory=bytearray, init=False)
    _report_done: bool = attrs.field(default=False, init=False)
    _closed: bool = attrs.field(default=False, init=False)

    async def wait(self) -> SandboxExit:
        """Wait until PID 1 has exited and the report pipe is drained.

        Cancellation leaves the sandbox running; call :meth:`kill` (shielded) and wait again.
        """
        if self._closed:
            raise trio.ClosedResourceError("sandbox process is closed")
        while not self._report_done:
            await trio.lowlevel.wait_readable(self._report_fd)
            try:
                chunk = os.read(self._report_fd, 65536)
            except BlockingIOError:
                continue
            if chunk:
                self._report += chunk
            else:
                self._report_done = True
        await trio.lowlevel.wait_readable(self.pidfd)
        report = bytes(self._report)
        status, error = namespaces.decode_report(report)
        return SandboxExit(
            program_status=status, setup_error=error, timings=namespaces.decode_timings(report)
        )

    async def wait_closed(self) -> bool:
        """Wait until PID 1 is gone (:meth:`wait` already waited for it); a fork server's
        sandbox never hands its network namespace on, so this says False."""
        await trio.lowlevel.wait_readable(self.pidfd)
        return False

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


class _ServerGone(SandboxError):
    """Raised by a send when the fork server's end of the socket is gone."""


@attrs.define(eq=False)
class _Pending:
    done: trio.Event = attrs.field(factory=trio.Event)
    reply: dict[str, Any] | None = None
    pidfd: int | None = None


@attrs.define(eq=False)
class ForkServer:
    """Handle on the fork server process and its socket."""

    _process: subprocess.Popen[bytes] = attrs.field(alias="process")
    _sock: socket.socket = attrs.field(alias="sock")
    _next_id: int = attrs.field(default=1, init=False)
    _pending: dict[int, _Pending] = attrs.field(factory=dict, init=False)
    _reader: trio.CancelScope | None = attrs.field(default=None, init=False)
    _dead: bool = attrs.field(default=False, init=False)
    _closed: bool = attrs.field(default=False, init=False)
    _send_lock: trio.Lock | None = attrs.field(default=None, init=False)

    @classmethod
    def start(cls) -> ForkServer:
        """Start ``python -m pistond.sandbox.forkserver``; call before ``trio.run``.

        Raises:
            SandboxError: the process could not be started.
        """
        process, sock = _launch()
        return cls(process=process, sock=sock)

    @property
    def pid(self) -> int:
        """Pid of the current fork server process."""
        return self._process.pid

    async def spawn(
        self, spec: SpawnSpec, *, stdin: int, stdout: int, stderr: int
    ) -> SandboxProcess:
        """Start a sandbox running ``spec``, its stdio on the given descriptors.

        The descriptors stay the caller's (the sandbox gets copies). If the fork server has
        died, it is restarted once (logged) before the request is sent.

        Cancellation: before the request is sent, nothing happens. After, the reply is awaited
        shielded (the sandbox may already exist) and the new sandbox is killed before
        ``Cancelled`` propagates, so a cancelled spawn never leaves a sandbox running.

        Raises:
            SandboxError: the fork server is gone or the sandbox could not be started
                (the message is safe to log; it holds no host paths).
        """
        if self._closed:
            raise SandboxError("fork server is closed")
        report_r, report_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        control_r, control_w = os.pipe2(os.O_CLOEXEC)
        os.set_blocking(control_w, False)
        try:
            os.set_blocking(report_w, True)
            reply, pidfd = await self._call(spec, [stdin, stdout, stderr, report_w, control_r])
        except BaseException:
            os.close(report_r)
            os.close(control_w)
            raise
        finally:
            os.close(report_w)
            os.close(control_r)
        if "error" in reply or pidfd is None:
            if pidfd is not None:
                os.close(pidfd)
            os.close(report_r)
            os.close(control_w)
            raise SandboxError(f"sandbox setup failed: {reply.get('error', 'no pidfd')}")
        process = SandboxProcess(
            pid=int(reply["pid"]), pidfd=pidfd, report_fd=report_r, control_fd=control_w
        )
        try:
            await trio.lowlevel.checkpoint_if_cancelled()
        except BaseException:
            process.kill()
            process.close()
            raise
        return process

    async def aclose(self) -> None:
        """Stop the fork server (it SIGKILLs any sandbox still alive) and wait for it."""
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

    async def _call(self, spec: SpawnSpec, fds: list[int]) -> tuple[dict[str, Any], int | None]:
        payload_spec = spec_to_wire(spec)
        if self._dead or self._process.poll() is not None:
            self._restart()
        if self._send_lock is None:
            self._send_lock = trio.Lock()
        if self._reader is None:
            self._start_reader()
        request_id = self._next_id
        self._next_id += 1
        payload = json.dumps({"id": request_id, "spec": payload_spec}).encode()
        if len(payload) > MAX_MESSAGE:
            raise SandboxError("spawn request too large")
        pending = self._pending[request_id] = _Pending()
        try:
            async with self._send_lock:
                try:
                    await self._send(payload, fds)
                except _ServerGone:
                    self._restart()
                    self._start_reader()
                    pending = self._pending[request_id] = _Pending()
                    await self._send(payload, fds)
        except BaseException:
            self._pending.pop(request_id, None)
            raise
        # Sent: the sandbox may exist now, so the reply is awaited even under cancellation
        # (spawn() kills it if the caller was cancelled meanwhile).
        with trio.CancelScope(shield=True), trio.move_on_after(_REPLY_TIMEOUT):
            await pending.done.wait()
        self._pending.pop(request_id, None)
        if not pending.done.is_set():
            raise SandboxError("fork server did not answer")
        if pending.reply is None:
            raise SandboxError("fork server died during the spawn")
        return pending.reply, pending.pidfd

    async def _send(self, payload: bytes, fds: list[int]) -> None:
        while True:
            try:
                socket.send_fds(self._sock, [payload], fds, socket.MSG_DONTWAIT)
                return
            except BlockingIOError:
                await trio.lowlevel.wait_writable(self._sock)
            except OSError as exc:
                self._mark_dead()
                raise _ServerGone(errno.errorcode.get(exc.errno or 0, "EIO")) from None

    def _start_reader(self) -> None:
        scope = trio.CancelScope()
        self._reader = scope
        trio.lowlevel.spawn_system_task(
            self._read_replies, self._sock, scope, name="forkserver-reader"
        )

    def _stop_reader(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            self._reader = None

    async def _read_replies(self, sock: socket.socket, scope: trio.CancelScope) -> None:
        """Route every message of the fork server to its pending spawn, until EOF."""
        with scope:
            while True:
                try:
                    await trio.lowlevel.wait_readable(sock)
                    data, fds, _, _ = socket.recv_fds(sock, 65536, FD_COUNT, socket.MSG_DONTWAIT)
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
            message = json.loads(data)
        except ValueError:
            message = None
        if not isinstance(message, dict):
            message = {}
        request_id = message.get("id")
        pending = self._pending.get(request_id) if isinstance(request_id, int) else None
        if pending is None:
            # A reply nobody waits for any more (timed out): its sandbox must not run on.
            for fd in fds:
                with contextlib.suppress(OSError):
                    libc.pidfd_send_signal(fd, signal.SIGKILL)
                os.close(fd)
            if "exited" not in message:
                logger.warning("unexpected message from the fork server")
            return
        pending.reply = message
        pending.pidfd = fds[0] if fds else None
        for fd in fds[1:]:
            os.close(fd)
        pending.done.set()

    def _mark_dead(self) -> None:
        if not self._dead:
            self._dead = True
            logger.error("fork server (pid %d) is gone", self._process.pid)
        self._reader = None
        self._fail_pending()

    def _fail_pending(self) -> None:
        """Wake every waiting spawn; those without a reply fail."""
        for pending in self._pending.values():
            pending.done.set()

    def _restart(self) -> None:
        """Replace a dead fork server with a fresh one (one attempt)."""
        logger.warning("restarting the fork server (old pid %d)", self._process.pid)
        self._stop_reader()
        trio.lowlevel.notify_closing(self._sock)
        self._sock.close()
        with contextlib.suppress(OSError):
            self._process.kill()
        self._process.wait()
        try:
            self._process, self._sock = _launch()
        except SandboxError:
            logger.exception("fork server restart failed")
            raise
        self._dead = False


def _launch() -> tuple[subprocess.Popen[bytes], socket.socket]:
    """Start a fork server process; our end of its socket (non-blocking)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        configure_socket(ours)
        process = subprocess.Popen(
            launch_command(sys.executable, theirs.fileno()),
            stdin=subprocess.DEVNULL,
            pass_fds=(theirs.fileno(),),
            cwd="/",
        )
    except OSError as exc:
        ours.close()
        raise SandboxError(f"cannot start the fork server: {exc.strerror}") from None
    finally:
        theirs.close()
    ours.setblocking(False)
    return process, ours


async def _wait_exit(process: subprocess.Popen[bytes]) -> None:
    """Wait (shielded, at most _STOP_TIMEOUT) for a child process to exit, then reap it."""
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
