"""The daemon side of the native launcher: start it, spawn sandboxes, get network namespaces.

The launcher (``launcher/``, C, built at install time) is the fast spawner: one small
single-threaded process that forks each sandbox's PID 1 with clone3, directly into its new
namespaces and its stage's cgroup, from a complete spec this side builds
(:mod:`pistond.sandbox.launchspec`). Every policy decision stays here; the launcher carries
the spec out.

Requests go through a :class:`~pistond.sandbox.channel.HelperChannel` (many in flight, replies
routed by id; a dead launcher is restarted once per call, logged, and the call retried);
sandboxes of a dead launcher die with it (their PID 1 has SIGKILL as parent-death signal).

What a stage needs besides its spec (:class:`StageHandles`) comes as descriptors: the box's
detached mount copy, the prepared root's mount namespace (:mod:`pistond.sandbox.templates`),
the slot's network namespace (:mod:`pistond.sandbox.netpool`) and the stage group's cgroup
handles.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Final

import attrs
import trio

from pistond.errors import SandboxError
from pistond.sandbox import launchspec, libc, namespaces, recipe, seccomp
from pistond.sandbox.channel import RECEIVE_SIZE, HelperChannel, Pid1Handle
from pistond.sandbox.forkserver import configure_socket
from pistond.sandbox.launchspec import FdRole, Features, Reply

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from pistond.sandbox.spec import SpawnSpec

logger = logging.getLogger(__name__)

EXECUTABLE_NAME: Final = "pistond-launcher"
_HELLO_TIMEOUT: Final = 5.0


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


def _decode(data: bytes) -> tuple[int | None, Reply]:
    reply = launchspec.decode_reply(data)
    return reply.request_id, reply


@attrs.define(eq=False)
class Launcher:
    """Handle on the launcher process and its socket."""

    executable: Path
    _filter: bytes = attrs.field(alias="filter")
    features: Features
    timing: bool = False
    """Ask for step timings (``bench/sandbox_overhead.py --breakdown``)."""
    _channel: HelperChannel[Reply] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._channel = HelperChannel(name="launcher", launch=self._launch, decode=_decode)

    def _launch(self) -> tuple[subprocess.Popen[bytes], socket.socket]:
        process, sock, self.features = _launch(self.executable, self._filter)
        return process, sock

    @classmethod
    def start(cls, executable: Path, seccomp_filter: bytes, *, timing: bool = False) -> Launcher:
        """Start the launcher and greet it (synchronously: call before or outside trio's loop).

        Raises:
            SandboxError: it could not be started, or speaks another protocol version.
        """
        return cls(
            executable=executable,
            filter=seccomp_filter,
            features=Features(protocol=0, landlock_abi=0),
            timing=timing,
        )

    @property
    def pid(self) -> int:
        """Pid of the current launcher process."""
        return self._channel.pid

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
        if self._channel.closed:
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
            reply, pidfd = await self._request(launchspec.MSG_SPAWN, payload, fds)
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
            NetworkUnavailable: the kernel refused it (the text names the step).
            SandboxError: the launcher is gone.
        """
        reply, fd = await self._request(launchspec.MSG_NETNS, b"", [])
        if reply.result < 0 or fd is None:
            if fd is not None:
                os.close(fd)
            raise NetworkUnavailable(reply.error or "network: no namespace descriptor")
        return fd

    async def aclose(self) -> None:
        """Stop the launcher (it kills every sandbox still alive) and wait for it."""
        await self._channel.aclose()

    async def _request(
        self, kind: bytes, payload: bytes, fds: Sequence[int]
    ) -> tuple[Reply, int | None]:
        request_id = self._channel.next_id()
        return await self._channel.call(
            request_id, launchspec.request(kind, request_id, payload), fds
        )


class NetworkUnavailable(SandboxError):
    """Raised by :meth:`Launcher.network_namespace` when the kernel refused the namespace; the
    text names the step and the reason (``network: Operation not permitted``)."""


@attrs.define(eq=False)
class LaunchedSandbox(Pid1Handle):
    """A running sandbox of the launcher, seen through its PID 1.

    :meth:`wait` returns as soon as PID 1 reports the program's exit: by then every process of
    the sandbox is gone, so the result is final (the short exit path). PID 1's own exit, which
    tears the namespaces down, is awaited by :meth:`wait_closed`.
    """

    on_closed: Callable[[bool], None] | None = None
    """Called by :meth:`wait_closed` with whether the network namespace may be reused."""
    _reader: namespaces.ReportReader = attrs.field(factory=namespaces.ReportReader, init=False)

    async def wait(self) -> namespaces.SandboxExit:
        """Wait for PID 1's exit record (or its end without one: killed, or setup failed)."""
        self._ensure_open()
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
        chunk = await self._read_report()
        if chunk is not None:
            self._reader.feed(chunk)


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
        ours.settimeout(_HELLO_TIMEOUT)
        ours.send(launchspec.request(launchspec.MSG_HELLO, 0, seccomp_filter))
        reply = launchspec.decode_reply(ours.recv(RECEIVE_SIZE))
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
