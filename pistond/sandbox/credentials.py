"""The privilege drop: box slot uid and gid, no groups, no capabilities, no new privileges.

Order matters: the capability bounding set is emptied while the process still holds
CAP_SETPCAP, then groups, gid and uid change (a uid change from 0 to non-zero with every uid
non-zero clears the permitted and effective sets), then ambient capabilities are cleared.

The process stays dumpable: PR_SET_DUMPABLE 0 would make ``/proc/self/*`` owned by root and
break programs that read their own ``/proc`` entries. Core files are off through RLIMIT_CORE 0.
"""

from __future__ import annotations

import contextlib
import os

from pistond.sandbox import libc

_CAP_LAST_CAP_FILE = "/proc/sys/kernel/cap_last_cap"
_CAP_LIMIT = 64
_last_cap: list[int] = []
"""The kernel's highest capability number, once known (it cannot change while running)."""


def drop_privileges(uid: int) -> None:
    """Become ``uid``:``uid`` with no groups and no capabilities, irreversibly.

    Raises:
        ValueError: ``uid`` is 0 or negative.
        OSError: a step failed; the process must not go on.
    """
    if uid <= 0:
        raise ValueError("the box uid must not be 0")
    drop_bounding_set()
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    libc.prctl(libc.PR_CAP_AMBIENT, libc.PR_CAP_AMBIENT_CLEAR_ALL)
    if os.getresuid() != (uid, uid, uid) or os.getresgid() != (uid, uid, uid) or os.getgroups():
        raise OSError(0, "privilege drop did not take effect")


def drop_bounding_set() -> None:
    """Remove every capability from the bounding set (needs CAP_SETPCAP)."""
    if not _last_cap:
        _last_cap.append(last_capability())
    for cap in range(_last_cap[0] + 1):
        libc.prctl(libc.PR_CAPBSET_DROP, cap)


def prepare() -> None:
    """Learn the kernel's capability count now (the fork server, once), not in each sandbox."""
    if not _last_cap:
        _last_cap.append(last_capability())


def last_capability() -> int:
    """The highest capability number the kernel knows."""
    with contextlib.suppress(OSError, ValueError), open(_CAP_LAST_CAP_FILE, "rb") as file:
        return int(file.read())
    last = 0
    for cap in range(_CAP_LIMIT):
        try:
            libc.prctl(libc.PR_CAPBSET_READ, cap)
        except OSError:
            break
        last = cap
    return last


def set_no_new_privs() -> None:
    """Set no_new_privs: exec can never grant privileges again (setuid bits, file caps)."""
    libc.prctl(libc.PR_SET_NO_NEW_PRIVS, 1)
