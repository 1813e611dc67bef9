"""Daemon side of the fork server: spawn a sandbox from a SpawnSpec, get its PID 1 as a pidfd.

:meth:`ForkServer.start` runs before ``trio.run`` (the daemon never forks itself); afterwards
every call is async, through a :class:`~pistond.sandbox.channel.HelperChannel` (JSON requests
with the stdio, report and control descriptors; replies with PID 1's pidfd). The fork server's
``exited`` events are not needed here: the pidfd says when PID 1 is gone.

Each :class:`SandboxProcess` owns PID 1's pidfd, the read end of its report pipe and the write
end of its control pipe; the caller owns the stdio pipes it passed in.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from typing import Any

import attrs
import trio

from pistond.errors import SandboxError
from pistond.sandbox import namespaces
from pistond.sandbox.channel import HelperChannel, Pid1Handle
from pistond.sandbox.forkserver import MAX_MESSAGE, configure_socket, launch_command
from pistond.sandbox.namespaces import SandboxExit
from pistond.sandbox.spec import SpawnSpec, spec_to_wire

__all__ = ["ForkServer", "SandboxExit", "SandboxProcess"]


@attrs.define(eq=False)
class SandboxProcess(Pid1Handle):
    """A running sandbox of the fork server, seen through its PID 1."""

    _report: bytearray = attrs.field(factory=bytearray, init=False)
    _report_done: bool = attrs.field(default=False, init=False)

    async def wait(self) -> SandboxExit:
        """Wait until PID 1 has exited and the report pipe is drained.

        Cancellation leaves the sandbox running; call :meth:`kill` (shielded) and wait again.
        """
        self._ensure_open()
        while not self._report_done:
            chunk = await self._read_report()
            if chunk:
                self._report += chunk
            elif chunk is not None:
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


def _decode(data: bytes) -> tuple[int | None, dict[str, Any]]:
    """A fork server message: its request id (None for an ``exited`` event) and itself."""
    message = json.loads(data)
    if not isinstance(message, dict):
        raise ValueError("not a JSON object")
    request_id = message.get("id")
    return (request_id if isinstance(request_id, int) else None), message


@attrs.define(eq=False)
class ForkServer:
    """Handle on the fork server process and its socket."""

    _channel: HelperChannel[dict[str, Any]] = attrs.field(alias="channel")

    @classmethod
    def start(cls) -> ForkServer:
        """Start ``python -m pistond.sandbox.forkserver``; call before ``trio.run``.

        Raises:
            SandboxError: the process could not be started.
        """
        return cls(channel=HelperChannel(name="fork server", launch=_launch, decode=_decode))

    @property
    def pid(self) -> int:
        """Pid of the current fork server process."""
        return self._channel.pid

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
        if self._channel.closed:
            raise SandboxError("fork server is closed")
        request_id = self._channel.next_id()
        payload = json.dumps({"id": request_id, "spec": spec_to_wire(spec)}).encode()
        if len(payload) > MAX_MESSAGE:
            raise SandboxError("spawn request too large")
        report_r, report_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        control_r, control_w = os.pipe2(os.O_CLOEXEC)
        os.set_blocking(control_w, False)
        try:
            os.set_blocking(report_w, True)
            reply, pidfd = await self._channel.call(
                request_id, payload, [stdin, stdout, stderr, report_w, control_r]
            )
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
        await self._channel.aclose()


def _launch() -> tuple[subprocess.Popen[bytes], socket.socket]:
    """Start a fork server process; our end of its socket (non-blocking).

    Raises:
        SandboxError: it could not be started.
    """
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
