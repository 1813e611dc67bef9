"""Control-file I/O on cgroupfs: small synchronous reads, writes, mkdir and rmdir.

Every failure becomes a :class:`~pistond.errors.SandboxError` whose message names the group
and the control file, never a host path.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import time
from typing import TYPE_CHECKING, Final

import attrs

from pistond.errors import SandboxError

if TYPE_CHECKING:
    from pathlib import Path

logger = logging.getLogger(__name__)

_WRITE_FLAGS: Final = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS: Final = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
_RMDIR_DELAYS: Final = (0.001, 0.002, 0.005, 0.01, 0.02)
_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


def _reason(exc: OSError) -> str:
    return os.strerror(exc.errno) if exc.errno else exc.__class__.__name__


def check_name(name: str) -> None:
    """Reject group names that are not one plain path component of letters, digits, ``_.-``.

    Raises:
        SandboxError: the name is not usable as a cgroup directory name.
    """
    if not _NAME.fullmatch(name):
        raise SandboxError(f"invalid cgroup name {name!r}")


def write(path: Path, value: str, *, group: str) -> None:
    """Write ``value`` to the control file ``path`` in one write call.

    Raises:
        SandboxError: the kernel refused the value or the file is missing.
    """
    try:
        fd = os.open(path, _WRITE_FLAGS, 0o644)
    except OSError as exc:
        missing = exc.errno in (errno.ENOENT, errno.EACCES) and not os.path.lexists(path)
        reason = "no such control file" if missing else _reason(exc)
        raise SandboxError(f"cgroup {group}: cannot open {path.name} ({reason})") from None
    try:
        os.write(fd, value.encode())
    except OSError as exc:
        raise SandboxError(f"cgroup {group}: cannot write {path.name} ({_reason(exc)})") from None
    finally:
        os.close(fd)


def write_optional(path: Path, value: str, *, group: str) -> bool:
    """Like :func:`write`, but a control file the kernel does not offer is skipped (False).

    Raises:
        SandboxError: the file exists and the kernel refused the value.
    """
    try:
        write(path, value, group=group)
    except SandboxError:
        if os.path.lexists(path):
            raise
        return False
    return True


def read(path: Path, *, group: str) -> str:
    """The whole text of the control file ``path``.

    Raises:
        SandboxError: the file cannot be read (the group is gone, the controller is missing).
    """
    try:
        fd = os.open(path, _READ_FLAGS)
    except OSError as exc:
        raise SandboxError(f"cgroup {group}: cannot open {path.name} ({_reason(exc)})") from None
    try:
        chunks: list[bytes] = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    except OSError as exc:
        raise SandboxError(f"cgroup {group}: cannot read {path.name} ({_reason(exc)})") from None
    finally:
        os.close(fd)
    return b"".join(chunks).decode("ascii", "replace")


def read_int(path: Path, *, group: str) -> int:
    """A control file holding one integer (``max`` reads as -1).

    Raises:
        SandboxError: unreadable, or not an integer.
    """
    text = read(path, group=group).strip()
    if text == "max":
        return -1
    try:
        return int(text)
    except ValueError:
        raise SandboxError(f"cgroup {group}: {path.name} is not an integer") from None


def read_keyed(path: Path, *, group: str) -> dict[str, int]:
    """A flat-keyed control file (``key value`` lines, as cpu.stat or memory.events).

    Raises:
        SandboxError: unreadable.
    """
    values: dict[str, int] = {}
    for line in read(path, group=group).splitlines():
        key, _, value = line.partition(" ")
        try:
            values[key] = int(value.strip())
        except ValueError:
            continue
    return values


def read_pids(path: Path, *, group: str) -> list[int]:
    """The pids listed in a ``cgroup.procs`` file.

    Raises:
        SandboxError: unreadable.
    """
    return [int(line) for line in read(path, group=group).split() if line.isdigit()]


def make_dir(path: Path, *, group: str) -> None:
    """mkdir one cgroup directory, which must not exist yet.

    Raises:
        SandboxError: it exists already or cannot be made.
    """
    try:
        os.mkdir(path, 0o755)
    except FileExistsError:
        raise SandboxError(f"cgroup {group} already exists") from None
    except OSError as exc:
        raise SandboxError(f"cgroup {group}: cannot create ({_reason(exc)})") from None


def ensure_dir(path: Path, *, group: str) -> bool:
    """mkdir -p a cgroup directory; returns whether the last component was made.

    Raises:
        SandboxError: a component cannot be made or is not a directory.
    """
    if path.is_dir():
        return False
    try:
        os.makedirs(path, 0o755, exist_ok=True)
    except OSError as exc:
        raise SandboxError(f"cgroup {group}: cannot create ({_reason(exc)})") from None
    return True


def remove_dir(path: Path, *, group: str) -> None:
    """rmdir one cgroup directory, retrying briefly while the kernel still reports it busy.

    A directory that does not exist counts as removed. Nothing inside is ever unlinked:
    cgroupfs removes a group's control files with the rmdir.

    Raises:
        SandboxError: the group still has tasks or children after the retries.
    """
    for delay in (*_RMDIR_DELAYS, None):
        try:
            os.rmdir(path)
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno == errno.EBUSY and delay is not None:
                time.sleep(delay)
                continue
            logger.warning("cannot remove cgroup %s: %s", path, _reason(exc))
            raise SandboxError(f"cgroup {group}: cannot remove ({_reason(exc)})") from None
        return


def subdirectories(path: Path) -> list[str]:
    """Names of the child groups of ``path`` (none if it does not exist)."""
    try:
        with os.scandir(path) as entries:
            return sorted(e.name for e in entries if e.is_dir(follow_symlinks=False))
    except FileNotFoundError:
        return []


def open_directory(path: Path, *, group: str) -> int:
    """An open descriptor of a cgroup directory (for clone3 CLONE_INTO_CGROUP).

    Raises:
        SandboxError: the directory cannot be opened.
    """
    try:
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise SandboxError(f"cgroup {group}: cannot open the group ({_reason(exc)})") from None


def open_for_write(path: Path, *, group: str) -> int:
    """An open descriptor of a control file, for writing (a v1 ``tasks`` file).

    Raises:
        SandboxError: the file cannot be opened.
    """
    try:
        return os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise SandboxError(f"cgroup {group}: cannot open {path.name} ({_reason(exc)})") from None


@attrs.define(eq=False)
class PeakCounter:
    """cgroup2 ``memory.peak`` held open: since Linux 6.12 a write to it resets the peak seen
    through that descriptor. Where the kernel refuses the write (or the file is no counter),
    ``resettable`` is False and the caller samples ``memory.current`` instead."""

    fd: int
    resettable: bool = True

    @classmethod
    def open(cls, path: Path) -> PeakCounter:
        """Open ``path`` (a missing file gives a counter that is not resettable)."""
        try:
            return cls(fd=os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC))
        except OSError:
            return cls(fd=-1, resettable=False)

    def reset(self) -> None:
        """Restart the peak from the current use (if the kernel can)."""
        if not self.resettable:
            return
        try:
            os.write(self.fd, b"reset\n")
        except OSError:
            self.resettable = False
            return
        if self.read() is None:
            self.resettable = False

    def read(self) -> int | None:
        """The peak since the reset, or None if it cannot be read as a number."""
        if not self.resettable:
            return None
        try:
            return int(os.pread(self.fd, 64, 0))
        except (OSError, ValueError):
            self.resettable = False
            return None

    def close(self) -> None:
        """Close the descriptor."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
