"""Symlink-safe host access to box contents: every path is resolved beneath a directory fd.

A box belongs to a job, so any of its entries may be a symlink or a directory swapped for one.
The daemon (root) never resolves a box path by name from ``/``: it holds an fd of the box
directory and opens each entry relative to it, with ``openat2(RESOLVE_BENEATH |
RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV)`` where the kernel has it and
one ``O_NOFOLLOW`` component at a time otherwise. New files use ``O_CREAT | O_EXCL``, which
never follows a link, and are chowned through their fd.

:func:`read_tree` and :func:`write_tree` copy a whole directory out of a box and into another
(the compile cache and tests runs restore the box a compile left) on the same rules: bounded,
entry by entry beneath an fd, links kept as links and never followed, special files left out.
"""

from __future__ import annotations

import ctypes
import enum
import errno
import functools
import os
import stat
from contextlib import contextmanager
from typing import TYPE_CHECKING, Final

import attrs

from pistond.errors import SandboxError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

_SYS_OPENAT2: Final = 437
_RESOLVE_NO_XDEV: Final = 0x01
_RESOLVE_NO_MAGICLINKS: Final = 0x02
_RESOLVE_NO_SYMLINKS: Final = 0x04
_RESOLVE_BENEATH: Final = 0x08
_RESOLVE_IN_ROOT: Final = 0x10
_RESOLVE_FLAGS: Final = (
    _RESOLVE_BENEATH | _RESOLVE_NO_SYMLINKS | _RESOLVE_NO_MAGICLINKS | _RESOLVE_NO_XDEV
)
DIRECTORY_FLAGS: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE_FLAGS: Final = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
MAX_NAME_BYTES: Final = 255
MAX_DEPTH: Final = 64


class _OpenHow(ctypes.Structure):
    _fields_ = (
        ("flags", ctypes.c_uint64),
        ("mode", ctypes.c_uint64),
        ("resolve", ctypes.c_uint64),
    )


@attrs.define(eq=False)
class _Openat2:
    """The openat2 syscall through ctypes, switched off after the kernel says ENOSYS."""

    available: bool = True

    def __call__(
        self, dir_fd: int, path: str, flags: int, mode: int, resolve: int = _RESOLVE_FLAGS
    ) -> int | None:
        """Open ``path`` beneath ``dir_fd``; None when openat2 is not available."""
        if not self.available:
            return None
        syscall = _libc_syscall()
        how = _OpenHow(flags=flags, mode=mode, resolve=resolve)
        raw = os.fsencode(path)
        while True:
            fd = syscall(
                ctypes.c_long(_SYS_OPENAT2),
                ctypes.c_int(dir_fd),
                ctypes.c_char_p(raw),
                ctypes.byref(how),
                ctypes.c_size_t(ctypes.sizeof(how)),
            )
            if fd >= 0:
                return int(fd)
            err = ctypes.get_errno()
            if err == errno.EINTR:
                continue
            if err in (errno.ENOSYS, errno.EPERM) and self.available:
                # ENOSYS: kernel < 5.6; EPERM: a seccomp filter of our own host denies it.
                self.available = False
                return None
            raise OSError(err, os.strerror(err), path)


_openat2: Final = _Openat2()


@functools.cache
def _libc_syscall() -> Callable[..., int]:
    syscall: Callable[..., int] = ctypes.CDLL(None, use_errno=True).syscall
    syscall.restype = ctypes.c_long  # type: ignore[attr-defined]  # a ctypes function object
    return syscall


def split_name(name: str) -> tuple[str, ...]:
    """The components of a submitted file name, checked again here as defence in depth.

    Raises:
        SandboxError: the name is absolute, empty, has an empty or ``..`` component, a NUL
            byte, a component longer than 255 bytes, or more than 64 components.
    """
    if not name or "\0" in name:
        raise SandboxError("file name is empty or holds a NUL byte")
    if name.startswith("/"):
        raise SandboxError("file name is absolute")
    parts = name.split("/")
    if any(part in ("", "..") for part in parts):
        raise SandboxError("file name has an empty or '..' component")
    components = tuple(part for part in parts if part != ".")
    if not components:
        raise SandboxError("file name names no file")
    if len(components) > MAX_DEPTH:
        raise SandboxError("file name is nested too deeply")
    if any(len(os.fsencode(part)) > MAX_NAME_BYTES for part in components):
        raise SandboxError("file name has a component that is too long")
    return components


def open_directory(path: str) -> int:
    """Open a directory the daemon itself owns (a box mount point) without following a link."""
    return os.open(path, DIRECTORY_FLAGS)


def open_in_root(root: str, path: str) -> int | None:
    """Open ``path`` read-only as a process whose ``/`` is ``root`` would see it.

    Links are followed inside ``root`` (an absolute target starts again at ``root``, ``..``
    stops there: openat2's RESOLVE_IN_ROOT), never into the host's own tree. None where the
    kernel has no openat2.

    Raises:
        OSError: the path does not resolve inside ``root``, or any open error.
    """
    root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK
        return _openat2(root_fd, path, flags, 0, _RESOLVE_IN_ROOT | _RESOLVE_NO_MAGICLINKS)
    finally:
        os.close(root_fd)


def open_beneath(dir_fd: int, components: tuple[str, ...], flags: int, mode: int = 0) -> int:
    """Open ``components`` beneath ``dir_fd``, failing on any symlink or ``..`` on the way.

    Uses openat2 with RESOLVE_BENEATH and RESOLVE_NO_SYMLINKS when the kernel offers it, else
    walks one ``O_NOFOLLOW`` component at a time.

    Raises:
        OSError: ELOOP or ENOTDIR where a link or a non-directory is met, or any open error.
    """
    flags |= os.O_NOFOLLOW | os.O_CLOEXEC
    fd = _openat2(dir_fd, "/".join(components), flags, mode)
    if fd is not None:
        return fd
    parent = os.dup(dir_fd)
    try:
        for part in components[:-1]:
            child = os.open(part, DIRECTORY_FLAGS, dir_fd=parent)
            os.close(parent)
            parent = child
        return os.open(components[-1], flags, mode, dir_fd=parent)
    finally:
        os.close(parent)


@contextmanager
def opened_fd(fd: int) -> Iterator[int]:
    """Close ``fd`` when the block ends."""
    try:
        yield fd
    finally:
        os.close(fd)


def make_directories(
    dir_fd: int, components: tuple[str, ...], *, uid: int, gid: int, mode: int = 0o755
) -> int:
    """Create (as needed) and open the directory ``components`` beneath ``dir_fd``.

    Each missing directory is created, opened with ``O_NOFOLLOW | O_DIRECTORY`` and chowned to
    ``uid``/``gid`` through its fd. An existing entry that is a symlink or not a directory
    fails the call. Returns an fd of the last directory (a dup of ``dir_fd`` when empty).

    Raises:
        OSError: a component is a link (ELOOP), not a directory (ENOTDIR), or cannot be made.
    """
    current = os.dup(dir_fd)
    try:
        for part in components:
            created = False
            try:
                os.mkdir(part, mode, dir_fd=current)
                created = True
            except FileExistsError:
                pass
            child = os.open(part, DIRECTORY_FLAGS, dir_fd=current)
            os.close(current)
            current = child
            if created:
                os.fchown(current, uid, gid)
                os.fchmod(current, mode)
    except BaseException:
        os.close(current)
        raise
    return current


def write_new_file(
    dir_fd: int, name: str, content: bytes, *, uid: int, gid: int, mode: int = 0o644
) -> None:
    """Create the file ``name`` beneath ``dir_fd`` (parents included) and write ``content``.

    The file must not exist yet: ``O_CREAT | O_EXCL | O_NOFOLLOW`` refuses any entry already
    there, a symlink included. Parents are made by :func:`make_directories`. File and new
    directories belong to ``uid``/``gid``.

    Raises:
        SandboxError: the name is invalid, or the file or a parent could not be made; the
            message names the submitted file, never a host path.
    """
    components = split_name(name)
    try:
        with (
            opened_fd(make_directories(dir_fd, components[:-1], uid=uid, gid=gid)) as parent,
            opened_fd(os.open(components[-1], _NEW_FILE_FLAGS, mode, dir_fd=parent)) as fd,
        ):
            os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)
            view = memoryview(content)
            while view:
                written = os.write(fd, view)
                view = view[written:]
    except OSError as exc:
        reason = _REASONS.get(exc.errno or 0, os.strerror(exc.errno or errno.EIO))
        raise SandboxError(f"cannot write file {name!r}: {reason}") from exc


_REASONS: Final = {
    errno.EEXIST: "a file or link of that name already exists",
    errno.ELOOP: "a symbolic link is in the way",
    errno.ENOTDIR: "a parent is not a directory",
    errno.ENOSPC: "the box is full",
    errno.EFBIG: "the file is too large",
    errno.EXDEV: "the path leaves the box",
}


class EntryKind(enum.Enum):
    """What an entry of a :class:`BoxTree` is."""

    DIRECTORY = "d"
    FILE = "f"
    SYMLINK = "l"


@attrs.frozen
class TreeEntry:
    """One entry of a directory tree copied out of a box."""

    path: str
    """Relative, ``/``-separated, checked by :func:`split_name` before every use."""
    kind: EntryKind
    mode: int
    """Permission bits (``0o777`` at most: set-id and sticky bits are never kept)."""
    mtime_ns: int
    """Modification time of a file (kept on restore); 0 for directories and links."""
    content: bytes = b""
    """A file's bytes, or a link's target (never followed, never read through)."""


@attrs.frozen
class BoxTree:
    """A directory's contents, read without following links: directories come before the
    entries inside them."""

    mode: int
    """Permission bits of the directory itself."""
    entries: tuple[TreeEntry, ...]

    @property
    def size(self) -> int:
        """Bytes of file contents and link targets."""
        return sum(len(entry.content) for entry in self.entries)


class TreeTooLarge(SandboxError):
    """Raised by :func:`read_tree` when a tree holds more entries or bytes than allowed, or
    nests too deeply, or crosses into another file system."""


@attrs.define(eq=False)
class _TreeReader:
    """One :func:`read_tree` walk: its bounds, what it skips and what it has read."""

    device: int
    entries_left: int
    bytes_left: int
    skip: Callable[[str, bool], bool] | None
    entries: list[TreeEntry] = attrs.field(factory=list)

    def charge(self, entries: int, size: int) -> None:
        self.entries_left -= entries
        self.bytes_left -= size
        if self.entries_left < 0 or self.bytes_left < 0:
            raise TreeTooLarge("the tree is larger than allowed")

    def directory(self, fd: int, prefix: str, depth: int) -> None:
        if depth >= MAX_DEPTH:
            raise TreeTooLarge("the tree nests too deeply")
        for name in sorted(os.listdir(fd)):
            info = os.stat(name, dir_fd=fd, follow_symlinks=False)
            path = prefix + name
            is_directory = stat.S_ISDIR(info.st_mode)
            if self.skip is not None and self.skip(path, is_directory):
                continue
            mode = stat.S_IMODE(info.st_mode) & _PERMISSIONS
            if is_directory:
                if info.st_dev != self.device:
                    raise TreeTooLarge("the tree crosses into another file system")
                self.charge(1, 0)
                with opened_fd(os.open(name, DIRECTORY_FLAGS, dir_fd=fd)) as child:
                    opened = os.fstat(child)
                    if (opened.st_dev, opened.st_ino) != (info.st_dev, info.st_ino):
                        raise OSError(errno.ESTALE, "directory changed while it was read", path)
                    self.entries.append(TreeEntry(path, EntryKind.DIRECTORY, mode, 0))
                    self.directory(child, path + "/", depth + 1)
            elif stat.S_ISREG(info.st_mode):
                self.charge(1, 0)
                with opened_fd(os.open(name, _READ_FLAGS, dir_fd=fd)) as file:
                    opened = os.fstat(file)
                    if not stat.S_ISREG(opened.st_mode):
                        continue
                    content = self.file(file)
                self.entries.append(
                    TreeEntry(path, EntryKind.FILE, mode, opened.st_mtime_ns, content)
                )
            elif stat.S_ISLNK(info.st_mode):
                target = os.readlink(os.fsencode(name), dir_fd=fd)
                self.charge(1, len(target))
                self.entries.append(TreeEntry(path, EntryKind.SYMLINK, 0o777, 0, target))

    def file(self, fd: int) -> bytes:
        """A file's bytes, charged as they are read."""
        chunks: list[bytes] = []
        while True:
            chunk = os.read(fd, min(_READ_CHUNK, self.bytes_left + 1))
            if not chunk:
                return b"".join(chunks)
            self.charge(0, len(chunk))
            chunks.append(chunk)


_READ_FLAGS: Final = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_PERMISSIONS: Final = 0o777
_READ_CHUNK: Final = 1024 * 1024


def read_tree(
    dir_fd: int,
    *,
    max_entries: int,
    max_bytes: int,
    skip: Callable[[str, bool], bool] | None = None,
) -> BoxTree:
    """Copy the tree beneath ``dir_fd`` into memory, never following a link.

    Every entry is reached by ``openat`` / ``fstatat`` relative to its parent's fd with
    ``O_NOFOLLOW``; a directory is opened ``O_DIRECTORY | O_NOFOLLOW`` and checked to be the
    one ``fstatat`` saw; a file is opened ``O_NOFOLLOW | O_NONBLOCK`` and read only if its fd is
    a regular file. Symbolic links are kept as links (their target is text, never resolved).
    FIFOs, sockets and device nodes are left out. Entries come in name order.

    Args:
        dir_fd: the directory to read (not closed).
        max_entries: most entries (directories, files and links) to accept.
        max_bytes: most bytes of file contents and link targets to accept.
        skip: ``skip(path, is_directory)`` True leaves an entry (and all beneath it) out.

    Raises:
        TreeTooLarge: a bound is exceeded, the tree nests deeper than 64 levels, or a
            directory lies on another file system.
        OSError: a read failed.
    """
    top = os.fstat(dir_fd)
    reader = _TreeReader(
        device=top.st_dev, entries_left=max_entries, bytes_left=max_bytes, skip=skip
    )
    reader.directory(dir_fd, "", 0)
    return BoxTree(mode=stat.S_IMODE(top.st_mode) & _PERMISSIONS, entries=tuple(reader.entries))


def write_tree(dir_fd: int, tree: BoxTree, *, uid: int, gid: int) -> None:
    """Recreate ``tree`` in the empty directory ``dir_fd``; everything belongs to ``uid``/``gid``.

    Every entry is created new beneath an fd of its parent, opened with ``O_NOFOLLOW`` by
    :func:`open_beneath` (files ``O_CREAT | O_EXCL | O_NOFOLLOW``, then chowned, written and
    chmodded through their fd); links are created as links and never followed.

    Raises:
        SandboxError: a path is invalid, or an entry could not be made (the box is full).
    """
    try:
        for entry in tree.entries:
            components = split_name(entry.path)
            parent = (
                open_beneath(dir_fd, components[:-1], os.O_RDONLY | os.O_DIRECTORY)
                if len(components) > 1
                else os.dup(dir_fd)
            )
            with opened_fd(parent):
                _write_entry(parent, components[-1], entry, uid, gid)
        os.fchmod(dir_fd, tree.mode)
    except OSError as exc:
        reason = _REASONS.get(exc.errno or 0, os.strerror(exc.errno or errno.EIO))
        raise SandboxError(f"the box could not be restored: {reason}") from exc


def _write_entry(parent: int, name: str, entry: TreeEntry, uid: int, gid: int) -> None:
    mode = entry.mode & _PERMISSIONS
    if entry.kind is EntryKind.DIRECTORY:
        os.mkdir(name, 0o700, dir_fd=parent)
        with opened_fd(os.open(name, DIRECTORY_FLAGS, dir_fd=parent)) as fd:
            os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)
    elif entry.kind is EntryKind.FILE:
        with opened_fd(os.open(name, _NEW_FILE_FLAGS, 0o600, dir_fd=parent)) as fd:
            os.fchown(fd, uid, gid)
            view = memoryview(entry.content)
            while view:
                view = view[os.write(fd, view) :]
            os.fchmod(fd, mode)
            os.utime(fd, ns=(entry.mtime_ns, entry.mtime_ns))
    else:
        os.symlink(entry.content, name, dir_fd=parent)
        os.chown(name, uid, gid, dir_fd=parent, follow_symlinks=False)
