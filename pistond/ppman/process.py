"""Running the builder's commands: output streamed as lines, a deadline, the whole group killed.

Every command the package manager starts (mmdebstrap, apt, the build jail helper) goes through
:func:`run_command`: it gets no stdin and a new session; its output is read as it comes, line by
line; at the deadline its whole process group is killed with SIGKILL, even when it prints
nothing. Builds run in worker threads, so this is plain blocking code.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import time
from typing import TYPE_CHECKING, Final

import attrs

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

LINE_LIMIT: Final = 1000
"""Characters kept of one output line (the rest is cut)."""
_PARTIAL_LIMIT: Final = 64 * 1024
"""Bytes of an unfinished line buffered before it is passed on anyway."""
MAX_CAPTURE: Final = 64 * 1024 * 1024
"""Bytes of stdout kept when it is captured; more is an error."""


class CommandError(RuntimeError):
    """Raised by :func:`run_command` when a command cannot start, times out or floods stdout."""


@attrs.frozen
class Completed:
    """A finished command."""

    code: int
    """Exit status; 128 + n when killed by signal n."""
    stdout: bytes
    """Captured standard output (empty unless ``capture`` was set)."""
    tail: tuple[str, ...]
    """The last few output lines, for error messages."""


def run_command(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    timeout: float,
    on_line: Callable[[str], None],
    capture: bool = False,
    cwd: str | None = None,
    tail_lines: int = 5,
    name: str | None = None,
) -> Completed:
    """Run ``argv`` to completion within ``timeout`` seconds.

    Args:
        argv: the command; ``argv[0]`` is an absolute path or found on ``env["PATH"]``.
        env: its complete environment.
        timeout: seconds before the whole process group is killed.
        on_line: receives each output line (stdout and stderr merged, or stderr only when
            ``capture`` is set), cut to :data:`LINE_LIMIT` characters.
        capture: keep stdout as bytes instead of passing it to ``on_line``.
        cwd: working directory.
        tail_lines: how many of the last lines :attr:`Completed.tail` keeps.
        name: what error messages call the command (default: ``argv[0]``'s base name).

    Raises:
        CommandError: it could not start, ran past ``timeout``, or wrote more than
            :data:`MAX_CAPTURE` bytes of captured stdout.
    """
    name = name or os.path.basename(argv[0])
    try:
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE if capture else subprocess.STDOUT,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
        )
    except OSError as exc:
        raise CommandError(f"cannot run {name}: {exc.strerror or exc}") from None
    tail: list[str] = []

    def line(raw: bytes) -> None:
        text = raw.decode("utf-8", "replace").rstrip("\r\n")[:LINE_LIMIT]
        tail.append(text)
        del tail[:-tail_lines]
        on_line(text)

    try:
        captured, expired = _pump(process, timeout, line, capture=capture)
    finally:
        _kill_group(process.pid)
        process.wait()
    if expired:
        raise CommandError(f"{name} timed out after {timeout:.0f} s")
    if len(captured) > MAX_CAPTURE:
        raise CommandError(f"{name} wrote more than {MAX_CAPTURE} bytes")
    code = process.returncode
    return Completed(code if code >= 0 else 128 - code, bytes(captured), tuple(tail))


def _pump(
    process: subprocess.Popen[bytes],
    timeout: float,
    line: Callable[[bytes], None],
    *,
    capture: bool,
) -> tuple[bytearray, bool]:
    """Read the process's pipes until both close or the deadline passes (then True)."""
    deadline = time.monotonic() + timeout
    captured = bytearray()
    partial: dict[int, bytes] = {}
    streams = {process.stdout: not capture, process.stderr: True}
    with selectors.DefaultSelector() as selector:
        for stream, as_lines in streams.items():
            if stream is not None:
                selector.register(stream, selectors.EVENT_READ, as_lines)
        while selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return captured, True
            for key, _events in selector.select(remaining):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    selector.unregister(key.fileobj)
                    if partial.get(key.fd):
                        line(partial.pop(key.fd))
                    continue
                if not key.data:
                    captured += chunk
                    if len(captured) > MAX_CAPTURE:
                        return captured, False
                    continue
                *complete, rest = (partial.get(key.fd, b"") + chunk).split(b"\n")
                if len(rest) > _PARTIAL_LIMIT:
                    complete.append(rest)
                    rest = b""
                partial[key.fd] = rest
                for text in complete:
                    line(text)
    return captured, False


def _kill_group(pid: int) -> None:
    """SIGKILL the command's process group (its session); gone already is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
