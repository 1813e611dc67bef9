"""Errno-checked ctypes bindings for the kernel calls the os module lacks.

Every wrapper raises :class:`OSError` with the call's errno and a short description of what
failed (never a host path: messages may reach a client as a setup error). Where the standard
library already has the call (``os.pidfd_open``, ``signal.pidfd_send_signal``,
``socket.sethostname``, ``os.mknod``, ``os.setresuid``), that is what the sandbox uses.
"""

from __future__ import annotations

import ctypes
import os
import signal
from typing import Final

# unshare(2) / clone(2) namespace flags.
CLONE_NEWNS: Final = 0x00020000
CLONE_NEWCGROUP: Final = 0x02000000
CLONE_NEWUTS: Final = 0x04000000
CLONE_NEWIPC: Final = 0x08000000
CLONE_NEWUSER: Final = 0x10000000
CLONE_NEWPID: Final = 0x20000000
CLONE_NEWNET: Final = 0x40000000
CLONE_NEWTIME: Final = 0x00000080

# mount(2) flags.
MS_RDONLY: Final = 0x1
MS_NOSUID: Final = 0x2
MS_NODEV: Final = 0x4
MS_NOEXEC: Final = 0x8
MS_REMOUNT: Final = 0x20
MS_BIND: Final = 0x1000
MS_REC: Final = 0x4000
MS_PRIVATE: Final = 0x40000
MNT_DETACH: Final = 0x2

# open_tree(2), move_mount(2), mount_setattr(2).
AT_FDCWD: Final = -100
AT_SYMLINK_NOFOLLOW: Final = 0x100
AT_EMPTY_PATH: Final = 0x1000
AT_RECURSIVE: Final = 0x8000
OPEN_TREE_CLONE: Final = 0x1
OPEN_TREE_CLOEXEC: Final = os.O_CLOEXEC
MOVE_MOUNT_F_EMPTY_PATH: Final = 0x4
MOUNT_ATTR_RDONLY: Final = 0x1
MOUNT_ATTR_NOSUID: Final = 0x2
MOUNT_ATTR_NODEV: Final = 0x4
MOUNT_ATTR_NOEXEC: Final = 0x8

# prctl(2) options.
PR_SET_PDEATHSIG: Final = 1
PR_SET_DUMPABLE: Final = 4
PR_SET_SECCOMP: Final = 22
PR_CAPBSET_READ: Final = 23
PR_CAPBSET_DROP: Final = 24
PR_SET_MM: Final = 35
PR_SET_CHILD_SUBREAPER: Final = 36
PR_SET_NO_NEW_PRIVS: Final = 38
PR_GET_NO_NEW_PRIVS: Final = 39
PR_CAP_AMBIENT: Final = 47
PR_CAP_AMBIENT_CLEAR_ALL: Final = 4
PR_SET_MM_ARG_START: Final = 8
PR_SET_MM_ARG_END: Final = 9
SECCOMP_MODE_FILTER: Final = 2

# x86-64 syscall numbers of calls glibc 2.36 has no wrapper for.
SYS_PIVOT_ROOT: Final = 155
SYS_OPEN_TREE: Final = 428
SYS_MOVE_MOUNT: Final = 429
SYS_MOUNT_SETATTR: Final = 442


_libc: Final = ctypes.CDLL(None, use_errno=True)
"""The C library's symbols as linked into this interpreter (``ctypes.util.find_library`` would run
ldconfig and import subprocess, tempfile and random, whose fork hooks every sandbox would run)."""
_libc.syscall.restype = ctypes.c_long
_libc.mount.argtypes = (
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_char_p,
)
_libc.mount.restype = ctypes.c_int
_libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)
_libc.umount2.restype = ctypes.c_int
_libc.unshare.argtypes = (ctypes.c_int,)
_libc.unshare.restype = ctypes.c_int
_libc.setns.argtypes = (ctypes.c_int, ctypes.c_int)
_libc.setns.restype = ctypes.c_int
_libc.prctl.argtypes = (
    ctypes.c_int,
    ctypes.c_ulong,
    ctypes.c_ulong,
    ctypes.c_ulong,
    ctypes.c_ulong,
)
_libc.prctl.restype = ctypes.c_int


class SockFprog(ctypes.Structure):
    """``struct sock_fprog``: a classic BPF program for PR_SET_SECCOMP."""

    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def _path(path: str | None) -> bytes | None:
    return None if path is None else os.fsencode(path)


def unshare(flags: int) -> None:
    """Move the calling process into new namespaces (``unshare(2)``)."""
    _check(_libc.unshare(flags), "unshare")


def setns(fd: int, nstype: int) -> None:
    """Move the calling process into the namespace behind ``fd`` (``setns(2)``)."""
    _check(_libc.setns(fd, nstype), "setns")


class _MountAttr(ctypes.Structure):
    """``struct mount_attr`` of mount_setattr(2)."""

    _fields_ = (
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    )


def mount_setattr(
    dirfd: int,
    path: str,
    flags: int,
    attr_set: int,
    *,
    propagation: int = 0,
    what: str = "mount_setattr",
) -> None:
    """``mount_setattr(2)``: set ``MOUNT_ATTR_*`` flags (and a propagation type) on a mount.

    ``flags`` takes ``AT_RECURSIVE`` (the whole tree) and ``AT_EMPTY_PATH`` (``dirfd`` itself,
    e.g. a detached tree from :func:`open_tree`).
    """
    attr = _MountAttr(attr_set, 0, propagation, 0)
    _check(
        _libc.syscall(
            ctypes.c_long(SYS_MOUNT_SETATTR),
            ctypes.c_int(dirfd),
            ctypes.c_char_p(os.fsencode(path)),
            ctypes.c_uint(flags),
            ctypes.byref(attr),
            ctypes.c_size_t(ctypes.sizeof(attr)),
        ),
        what,
    )


def open_tree(dirfd: int, path: str, flags: int, *, what: str = "open_tree") -> int:
    """``open_tree(2)``: with ``OPEN_TREE_CLONE``, a detached copy of a mount, as an fd."""
    return _check(
        _libc.syscall(
            ctypes.c_long(SYS_OPEN_TREE),
            ctypes.c_int(dirfd),
            ctypes.c_char_p(os.fsencode(path)),
            ctypes.c_uint(flags),
        ),
        what,
    )


def move_mount(
    from_dirfd: int,
    from_path: str,
    to_dirfd: int,
    to_path: str,
    flags: int,
    *,
    what: str = "move_mount",
) -> None:
    """``move_mount(2)``: attach a (detached) mount at a path of this mount namespace."""
    _check(
        _libc.syscall(
            ctypes.c_long(SYS_MOVE_MOUNT),
            ctypes.c_int(from_dirfd),
            ctypes.c_char_p(os.fsencode(from_path)),
            ctypes.c_int(to_dirfd),
            ctypes.c_char_p(os.fsencode(to_path)),
            ctypes.c_uint(flags),
        ),
        what,
    )


def mount(
    source: str | None,
    target: str,
    fstype: str | None,
    flags: int,
    data: str | None = None,
    *,
    what: str = "mount",
) -> None:
    """``mount(2)``; ``what`` names the step in the error message."""
    _check(
        _libc.mount(_path(source), _path(target), _path(fstype), flags, _path(data)),
        what,
    )


def umount2(target: str, flags: int, *, what: str = "umount") -> None:
    """``umount2(2)``."""
    _check(_libc.umount2(_path(target), flags), what)


def pivot_root(new_root: str, put_old: str) -> None:
    """``pivot_root(2)`` (a raw syscall: glibc has no wrapper)."""
    _check(
        _libc.syscall(
            ctypes.c_long(SYS_PIVOT_ROOT),
            ctypes.c_char_p(os.fsencode(new_root)),
            ctypes.c_char_p(os.fsencode(put_old)),
        ),
        "pivot_root",
    )


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    """``prctl(2)`` with integer arguments; returns its non-negative result."""
    return _check(_libc.prctl(option, arg2, arg3, arg4, arg5), f"prctl({option})")


def install_seccomp_filter(bpf: bytes) -> None:
    """Load a classic BPF program (8-byte instructions) as this thread's seccomp filter.

    no_new_privs must be set first (or the caller must hold CAP_SYS_ADMIN).
    """
    if not bpf or len(bpf) % 8:
        raise OSError(0, "seccomp: malformed filter")
    buffer = ctypes.create_string_buffer(bpf, len(bpf))
    prog = SockFprog(len(bpf) // 8, ctypes.addressof(buffer))
    _check(
        _libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(prog), 0, 0),
        "seccomp",
    )


def pidfd_open(pid: int) -> int:
    """A pidfd for ``pid`` (close-on-exec)."""
    return os.pidfd_open(pid)


def pidfd_send_signal(pidfd: int, signum: int) -> None:
    """Send ``signum`` to the process behind ``pidfd``."""
    signal.pidfd_send_signal(pidfd, signum)


def set_argv_area(text: bytes) -> ctypes.Array[ctypes.c_char]:
    """Point this process's ``/proc/self/cmdline`` at ``text`` (needs CAP_SYS_RESOURCE).

    Returns the buffer, which the caller must keep alive for as long as the process runs.
    """
    buffer = ctypes.create_string_buffer(text + b"\0")
    start = ctypes.addressof(buffer)
    prctl(PR_SET_MM, PR_SET_MM_ARG_START, start)
    prctl(PR_SET_MM, PR_SET_MM_ARG_END, start + len(text) + 1)
    return buffer
