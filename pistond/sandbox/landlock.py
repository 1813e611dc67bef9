"""Landlock: the program may write only beneath its writable mounts, and nowhere in /proc.

The mounts already make ``/`` and the runtime read-only; Landlock adds what they cannot say:
no write access to ``/proc`` (a job's own ``/proc/<pid>/mem``, ``/proc/self/attr/*``,
``/proc/sys``), no file creation outside the writable mounts, and, from ABI 6, no connecting to
abstract Unix sockets or signalling processes outside the job's own Landlock domain. Pipes and
sockets passed as descriptors are not affected. Applied in the program child after
``no_new_privs`` and before seccomp; a kernel without Landlock skips it (logged by the daemon).
"""

from __future__ import annotations

import ctypes
import os
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Iterable

_SYS_CREATE_RULESET: Final = 444
_SYS_ADD_RULE: Final = 445
_SYS_RESTRICT_SELF: Final = 446
_CREATE_RULESET_VERSION: Final = 1 << 0
_RULE_PATH_BENEATH: Final = 1

WRITE_FILE: Final = 1 << 1
REMOVE_DIR: Final = 1 << 4
REMOVE_FILE: Final = 1 << 5
MAKE_CHAR: Final = 1 << 6
MAKE_DIR: Final = 1 << 7
MAKE_REG: Final = 1 << 8
MAKE_SOCK: Final = 1 << 9
MAKE_FIFO: Final = 1 << 10
MAKE_BLOCK: Final = 1 << 11
MAKE_SYM: Final = 1 << 12
REFER: Final = 1 << 13
TRUNCATE: Final = 1 << 14
SCOPE_ABSTRACT_UNIX_SOCKET: Final = 1 << 0
SCOPE_SIGNAL: Final = 1 << 1

_ABI1_WRITES: Final = (
    WRITE_FILE | REMOVE_DIR | REMOVE_FILE | MAKE_CHAR | MAKE_DIR | MAKE_REG | MAKE_SOCK
    | MAKE_FIFO | MAKE_BLOCK | MAKE_SYM
)  # fmt: skip
_FILE_WRITES: Final = WRITE_FILE | TRUNCATE

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class _RulesetAttr(ctypes.Structure):
    _fields_ = (
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    )


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = (("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32))


def _check(result: int, what: str) -> int:
    if result < 0:
        error = ctypes.get_errno()
        raise OSError(error, f"{what}: {os.strerror(error)}")
    return result


def abi_version() -> int:
    """The kernel's Landlock ABI version; 0 when Landlock is absent or disabled."""
    result = _libc.syscall(_SYS_CREATE_RULESET, None, ctypes.c_size_t(0), _CREATE_RULESET_VERSION)
    return max(int(result), 0)


def handled_writes(abi: int) -> int:
    """Every write-like filesystem access the ABI can restrict."""
    handled = _ABI1_WRITES
    if abi >= 2:
        handled |= REFER
    if abi >= 3:
        handled |= TRUNCATE
    return handled


def restrict(writable: Iterable[str], file_writable: Iterable[str], *, abi: int) -> None:
    """Restrict this process (and its future children) to writing beneath ``writable``.

    Args:
        writable: directories where files may be created, written and removed.
        file_writable: directories whose existing files may be written but nothing created
            (``/dev``: the null, zero and full nodes).
        abi: the kernel's ABI version (:func:`abi_version`), at least 1.

    Raises:
        OSError: a Landlock call failed, or a path could not be opened.
    """
    handled = handled_writes(abi)
    scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if abi >= 6 else 0
    attr = _RulesetAttr(handled, 0, scoped)
    size = ctypes.sizeof(_RulesetAttr) if abi >= 6 else 8
    ruleset = _check(
        _libc.syscall(_SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), 0),
        "landlock_create_ruleset",
    )
    try:
        # Device creation stays allowed here so that mknod fails as it always did, EPERM for want
        # of CAP_MKNOD (and the mounts are nodev): Landlock would answer EACCES first.
        rules = [(path, handled) for path in writable]
        rules += [(path, handled & _FILE_WRITES) for path in file_writable]
        for path, access in rules:
            fd = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                rule = _PathBeneathAttr(access, fd)
                _check(
                    _libc.syscall(
                        _SYS_ADD_RULE, ruleset, _RULE_PATH_BENEATH, ctypes.byref(rule), 0
                    ),
                    f"landlock_add_rule {path}",
                )
            finally:
                os.close(fd)
        _check(_libc.syscall(_SYS_RESTRICT_SELF, ruleset, 0), "landlock_restrict_self")
    finally:
        os.close(ruleset)
