"""Namespaces of a sandbox: which ones it gets, their network and hostname, and its PID-1 waiter.

The waiter is the sandbox's PID 1. It stays root inside the namespaces, runs no job code, and
loops: it reaps every child (it is the namespace's init), forwards signal numbers read from the
daemon's control pipe to the program's process group, and when the program exits writes the
program's raw wait status to the report pipe and exits. Its exit makes the kernel SIGKILL every
process left in the PID namespace.

Report pipe format (read by :mod:`pistond.sandbox.spawn` and :mod:`pistond.sandbox.launch`):
a byte stream of records, each one kind byte, a 4-byte big-endian length and that many payload
bytes. Kind ``E``: a setup error, UTF-8 text without host paths. Kind ``S``: the program's raw
wait status as a big-endian int32. Kind ``T`` (timing mode only, see
:mod:`pistond.sandbox.recipe`): step timestamps, each a 1-byte name length, the ASCII name and
a big-endian uint64 of CLOCK_MONOTONIC nanoseconds. The native launcher's PID 1 writes ``X``
instead of ``S``: the raw status (int32), then user and system CPU microseconds and the peak
RSS in bytes (uint64 each), once every process of the sandbox is gone; and then ``N``: one
byte, 1 when the sandbox's network namespace is clean for reuse.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import signal
import socket
import struct
from typing import TYPE_CHECKING, Final

import attrs

from pistond.sandbox import libc

if TYPE_CHECKING:
    from collections.abc import Callable

REPORT_ERROR: Final = b"E"
REPORT_STATUS: Final = b"S"
REPORT_TIMINGS: Final = b"T"
REPORT_EXIT: Final = b"X"
REPORT_NETWORK: Final = b"N"
MAX_ERROR_BYTES: Final = 512
_HEADER: Final = struct.Struct("!cI")
_STATUS: Final = struct.Struct("!i")
_STAMP: Final = struct.Struct("!Q")
_EXIT: Final = struct.Struct("!iQQQ")

_SIOCGIFFLAGS: Final = 0x8913
_SIOCSIFFLAGS: Final = 0x8914
_IFF_UP: Final = 0x1
_IFREQ: Final = struct.Struct("16sH22x")


def namespace_flags(*, network: bool) -> int:
    """The namespaces PID 1 unshares (the PID namespace is the fork server's, cgroup comes last).

    Without ``network`` a new network namespace too; with it, the host's network is shared.
    """
    flags = libc.CLONE_NEWNS | libc.CLONE_NEWIPC | libc.CLONE_NEWUTS
    if not network:
        flags |= libc.CLONE_NEWNET
    return flags


def enter_namespaces(*, network: bool, netns_fd: int = -1, mounts: bool = True) -> None:
    """Unshare the sandbox's mount, IPC, UTS (and network) namespaces.

    Args:
        network: share the host's network namespace.
        mounts: unshare the mount namespace too (False: a prepared one is entered later).
        netns_fd: a fresh network namespace made for this sandbox alone (by the fork
            server's root builder); entered, then closed, instead of unsharing one.
    """
    flags = namespace_flags(network=network)
    if not mounts:
        flags &= ~libc.CLONE_NEWNS
    if netns_fd >= 0 and not network:
        flags &= ~libc.CLONE_NEWNET
    libc.unshare(flags)
    if netns_fd >= 0:
        if not network:
            libc.setns(netns_fd, libc.CLONE_NEWNET)
        os.close(netns_fd)


def enter_cgroup_namespace() -> None:
    """Unshare the cgroup namespace, rooted at the cgroup this process is in now."""
    libc.unshare(libc.CLONE_NEWCGROUP)


def bring_up_loopback() -> None:
    """Set ``lo`` up in this (new) network namespace, so programs can bind localhost."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = _IFREQ.pack(b"lo", 0)
        flags = _IFREQ.unpack(fcntl.ioctl(sock.fileno(), _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock.fileno(), _SIOCSIFFLAGS, _IFREQ.pack(b"lo", flags | _IFF_UP))


def set_hostname(name: str) -> None:
    """Set the hostname of this (new) UTS namespace."""
    socket.sethostname(name)


def encode_error(message: str) -> bytes:
    """A setup-error record for the report pipe (text cut to MAX_ERROR_BYTES)."""
    payload = message.encode("utf-8", "replace")[:MAX_ERROR_BYTES]
    return _HEADER.pack(REPORT_ERROR, len(payload)) + payload


def encode_status(status: int) -> bytes:
    """A program-status record for the report pipe."""
    return _HEADER.pack(REPORT_STATUS, _STATUS.size) + _STATUS.pack(status)


def encode_timings(marks: list[tuple[str, int]]) -> bytes:
    """A timings record for the report pipe: ``(step name, monotonic ns)`` pairs."""
    payload = b"".join(
        bytes((len(name),)) + name.encode("ascii") + _STAMP.pack(stamp)
        for name, stamp in marks
        if len(name) < 256
    )
    return _HEADER.pack(REPORT_TIMINGS, len(payload)) + payload


def decode_timings(data: bytes) -> tuple[tuple[str, int], ...]:
    """Every ``(step name, monotonic ns)`` of the timings records in a report, in time order."""
    marks: list[tuple[str, int]] = []
    offset = 0
    while offset + _HEADER.size <= len(data):
        kind, length = _HEADER.unpack_from(data, offset)
        offset += _HEADER.size
        payload = data[offset : offset + length]
        offset += length
        if kind != REPORT_TIMINGS or len(payload) != length:
            continue
        at = 0
        while at < length:
            size = payload[at]
            name = payload[at + 1 : at + 1 + size].decode("ascii", "replace")
            at += 1 + size
            if at + _STAMP.size > length:
                break
            marks.append((name, _STAMP.unpack_from(payload, at)[0]))
            at += _STAMP.size
    return tuple(sorted(marks, key=lambda mark: mark[1]))


def decode_report(data: bytes) -> tuple[int | None, str | None]:
    """The (program status, setup error) in a report pipe's whole content; junk is ignored."""
    status: int | None = None
    errors: list[str] = []
    offset = 0
    while offset + _HEADER.size <= len(data):
        kind, length = _HEADER.unpack_from(data, offset)
        offset += _HEADER.size
        payload = data[offset : offset + length]
        offset += length
        if len(payload) != length:
            break
        if kind == REPORT_STATUS and length == _STATUS.size:
            status = _STATUS.unpack(payload)[0]
        elif kind == REPORT_ERROR:
            errors.append(payload.decode("utf-8", "replace"))
    return status, ("; ".join(errors) if errors else None)


@attrs.frozen
class SandboxExit:
    """How a sandbox ended, as its PID 1 reported it."""

    program_status: int | None
    """Raw wait status of the program; None if PID 1 was killed before reporting."""
    setup_error: str | None
    """Set when the recipe failed before exec (the stage's status is XX)."""
    timings: tuple[tuple[str, int], ...] = ()
    """Timing mode only: ``(process.step, CLOCK_MONOTONIC ns)`` of each recipe step, in order."""
    complete: bool = False
    """Every process of the sandbox was gone when the exit was reported (the launcher's PID 1
    kills and reaps what the program left): the stage's cgroup readings are final."""
    cpu_time_us: int | None = None
    """User plus system CPU of the program and the children it waited for (launcher only)."""
    max_rss: int | None = None
    """Peak resident set of the program, bytes (launcher only)."""

    @property
    def exit_code(self) -> int | None:
        """The program's exit code, or None if it did not exit normally."""
        if self.program_status is None or not os.WIFEXITED(self.program_status):
            return None
        return os.WEXITSTATUS(self.program_status)

    @property
    def term_signal(self) -> int | None:
        """The signal that killed the program, or None."""
        if self.program_status is None or not os.WIFSIGNALED(self.program_status):
            return None
        return os.WTERMSIG(self.program_status)


@attrs.define
class ReportReader:
    """Reads a report pipe incrementally: records are parsed as soon as they are whole."""

    _buffer: bytearray = attrs.field(factory=bytearray)
    _errors: list[str] = attrs.field(factory=list)
    _timings: list[bytes] = attrs.field(factory=list)
    status: int | None = None
    exited: bool = False
    """An ``X`` record arrived: the program's exit is final."""
    cpu_time_us: int | None = None
    max_rss: int | None = None
    network_clean: bool = False
    """An ``N`` record said the network namespace may be reused."""
    at_eof: bool = False

    def feed(self, chunk: bytes) -> None:
        """Add what was read; an empty chunk is EOF."""
        if not chunk:
            self.at_eof = True
            return
        self._buffer += chunk
        while len(self._buffer) >= _HEADER.size:
            kind, length = _HEADER.unpack_from(self._buffer)
            if len(self._buffer) < _HEADER.size + length:
                return
            payload = bytes(self._buffer[_HEADER.size : _HEADER.size + length])
            del self._buffer[: _HEADER.size + length]
            self._record(kind, payload)

    def _record(self, kind: bytes, payload: bytes) -> None:
        if kind == REPORT_EXIT and len(payload) == _EXIT.size:
            self.status, user, system, self.max_rss = _EXIT.unpack(payload)
            self.cpu_time_us = user + system
            self.exited = True
        elif kind == REPORT_STATUS and len(payload) == _STATUS.size:
            self.status = _STATUS.unpack(payload)[0]
        elif kind == REPORT_ERROR:
            self._errors.append(payload.decode("utf-8", "replace"))
        elif kind == REPORT_NETWORK and len(payload) == 1:
            self.network_clean = payload == b"\x01"
        elif kind == REPORT_TIMINGS:
            self._timings.append(_HEADER.pack(kind, length := len(payload)) + payload[:length])

    def result(self) -> SandboxExit:
        """The exit as known now."""
        return SandboxExit(
            program_status=self.status,
            setup_error="; ".join(self._errors) if self._errors else None,
            timings=decode_timings(b"".join(self._timings)),
            complete=self.exited,
            cpu_time_us=self.cpu_time_us,
            max_rss=self.max_rss,
        )


def write_report(fd: int, record: bytes) -> None:
    """Write one record to the report pipe; a gone reader is not an error."""
    with contextlib.suppress(OSError):
        os.write(fd, record)


def install_child_wakeup() -> int:
    """Make SIGCHLD wake :func:`serve_as_init`; returns the wakeup pipe's read end.

    Called after the program is forked (which so inherits no handler and no wakeup fd): an
    exit before the call is not missed, since :func:`serve_as_init` reaps before it waits.
    """
    wake_r, wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    signal.signal(signal.SIGCHLD, _ignore_signal)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    return wake_r


def serve_as_init(
    program: int,
    *,
    control_fd: int,
    report_fd: int,
    wakeup_fd: int,
    on_exit: Callable[[int], None] | None = None,
) -> None:
    """Be the namespace's init until ``program`` exits; then report its wait status.

    Args:
        program: pid of the program (a process-group leader: it called setsid).
        control_fd: read end of the daemon's control pipe; each byte is a signal number for
            the program's process group. EOF only stops the forwarding.
        report_fd: write end of the report pipe.
        wakeup_fd: from :func:`install_child_wakeup`.
        on_exit: called with ``report_fd`` once the program is reaped, before its status is
            written (timing mode).
    """
    watched = [control_fd, wakeup_fd]
    while True:
        status = _reap(program)
        if status is not None:
            if on_exit is not None:
                on_exit(report_fd)
            write_report(report_fd, encode_status(status))
            return
        readable, _, _ = select.select(watched, [], [])
        if wakeup_fd in readable:
            with contextlib.suppress(BlockingIOError):
                os.read(wakeup_fd, 4096)
        if control_fd in readable:
            data = os.read(control_fd, 256)
            if not data:
                watched.remove(control_fd)
            for signum in data:
                _forward(program, signum)


def _reap(program: int) -> int | None:
    """Reap every exited child; the program's raw status if it was among them."""
    found: int | None = None
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return found
        if pid == 0:
            return found
        if pid == program:
            found = status


def _forward(program: int, signum: int) -> None:
    if 0 < signum < signal.NSIG:
        with contextlib.suppress(OSError):
            os.killpg(program, signum)


def _ignore_signal(_signum: int, _frame: object) -> None:
    """SIGCHLD handler: the wakeup fd does the work."""
