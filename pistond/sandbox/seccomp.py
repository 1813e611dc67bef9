"""The seccomp deny-list of reference/attacks.md: built once, installed last before exec.

The filter allows by default and makes each denied call fail with its group's errno, never
killing, so programs print a clear error. It is compiled with libseccomp once, when the fork
server starts (:func:`build_filter`, in a short-lived child of it), and each sandbox loads the
ready BPF bytes with one ``prctl`` (:func:`install`), after no_new_privs.

Details:
- Non-native ABIs (i386 through ``int 0x80``, x32 through syscall numbers with bit 0x40000000)
  fail with ENOSYS: the filter's bad-architecture action.
- ``clone`` with any CLONE_NEW* flag fails EPERM (masked compare of the flags' low 32 bits);
  ``clone3`` fails ENOSYS, since its flags sit behind a pointer; libc then falls back to clone.
- ``socket`` families other than AF_UNIX, AF_INET, AF_INET6 and AF_NETLINK fail EAFNOSUPPORT.
  The family is compared as a 64-bit value, so any junk in its high half is denied too.
  ``socketpair`` allows only AF_UNIX. SCTP and DCCP protocols fail EPROTONOSUPPORT.
- ``personality`` other than the query (0xffffffff) and PER_LINUX (0) fails EPERM: 32 masked
  rules "bit i set and bit i+1 clear" match exactly the low halves that are neither all zeros
  nor all ones, whatever the high half holds.
- ``adjtimex`` and ``clock_adjtime`` are denied entirely (EPERM): whether a call only reads
  (``modes == 0``) sits behind a pointer the filter cannot read.
- File-lock calls (``flock``, ``fcntl`` locks) are not filtered: build tools and sqlite need
  them; the cross-box channel they open needs a shared writable-by-lock inode, and every box
  has its own files (read-only shared files can still be locked: documented, not blocked).
"""

from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING, Final

from pistond.sandbox import libc

if TYPE_CHECKING:
    from collections.abc import Mapping

    import pyseccomp

NAMESPACE_CALLS: Final = (
    "unshare",
    "setns",
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "open_tree",
    "move_mount",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
)
SYSTEM_CALLS: Final = (
    "init_module",
    "finit_module",
    "delete_module",
    "kexec_load",
    "kexec_file_load",
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "syslog",
    "quotactl",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "iopl",
    "ioperm",
)
KERNEL_SURFACE_CALLS: Final = (
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "keyctl",
    "add_key",
    "request_key",
    "fanotify_init",
    "open_by_handle_at",
    "name_to_handle_at",
)
MEMORY_CALLS: Final = (
    "modify_ldt",
    "memfd_secret",
    "mbind",
    "move_pages",
    "migrate_pages",
)
"""Memory features no sandboxed program needs, closed as container runtimes' default profiles
close them: a per-process LDT (16-bit code; a recurring source of kernel bugs), secret memory
(pages the kernel itself can no longer inspect), and NUMA page placement of the caller's or
another process's memory. ENOSYS, as on a kernel built without them: runtimes that probe NUMA
(libnuma, the JVM's -XX:+UseNUMA) fall back to ordinary allocation."""
PROCESS_CALLS: Final = (
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    "pidfd_getfd",
    "process_madvise",
)

DENIED: Final[Mapping[str, int]] = {
    **dict.fromkeys(NAMESPACE_CALLS, errno.EPERM),
    "clone3": errno.ENOSYS,
    **dict.fromkeys(SYSTEM_CALLS, errno.EPERM),
    **dict.fromkeys(KERNEL_SURFACE_CALLS, errno.ENOSYS),
    **dict.fromkeys(MEMORY_CALLS, errno.ENOSYS),
    **dict.fromkeys(PROCESS_CALLS, errno.EPERM),
}
"""Calls denied whatever their arguments, with their errno."""

CLONE_NEW_FLAGS: Final = (
    libc.CLONE_NEWNS,
    libc.CLONE_NEWCGROUP,
    libc.CLONE_NEWUTS,
    libc.CLONE_NEWIPC,
    libc.CLONE_NEWUSER,
    libc.CLONE_NEWPID,
    libc.CLONE_NEWNET,
)
ALLOWED_FAMILIES: Final = frozenset({1, 2, 10, 16})
"""AF_UNIX, AF_INET, AF_INET6, AF_NETLINK."""
FIRST_UNLISTED_FAMILY: Final = 17
DENIED_PROTOCOLS: Final = (132, 33)
"""IPPROTO_SCTP, IPPROTO_DCCP."""
PERSONALITY_QUERY: Final = 0xFFFFFFFF
_LOW32: Final = 0xFFFFFFFF


def build_filter() -> bytes:
    """Compile the deny-list to classic BPF for the native architecture.

    pyseccomp is imported here only: the fork server compiles in a short-lived child, so it
    (and every sandbox forked from it) never carries the library's memory.
    """
    import pyseccomp  # noqa: PLC0415 - see above

    flt = pyseccomp.SyscallFilter(pyseccomp.ALLOW)
    flt.set_attr(pyseccomp.Attr.ACT_BADARCH, pyseccomp.ERRNO(errno.ENOSYS))
    for name, err in DENIED.items():
        flt.add_rule(pyseccomp.ERRNO(err), name)
    eperm = pyseccomp.ERRNO(errno.EPERM)
    for flag in CLONE_NEW_FLAGS:
        flt.add_rule(eperm, "clone", pyseccomp.Arg(0, pyseccomp.MASKED_EQ, flag, flag))
    for bit in range(32):
        mask = (1 << bit) | (1 << ((bit + 1) % 32))
        flt.add_rule(eperm, "personality", pyseccomp.Arg(0, pyseccomp.MASKED_EQ, mask, 1 << bit))
    _add_socket_rules(flt)
    fd = os.memfd_create("pistond-seccomp", os.MFD_CLOEXEC)
    try:
        with os.fdopen(os.dup(fd), "wb") as file:
            flt.export_bpf(file)
        size = os.fstat(fd).st_size
        return os.pread(fd, size, 0)
    finally:
        os.close(fd)


def _add_socket_rules(flt: pyseccomp.SyscallFilter) -> None:
    import pyseccomp  # noqa: PLC0415 - see build_filter

    no_family = pyseccomp.ERRNO(errno.EAFNOSUPPORT)
    for family in range(FIRST_UNLISTED_FAMILY):
        if family not in ALLOWED_FAMILIES:
            flt.add_rule(no_family, "socket", pyseccomp.Arg(0, pyseccomp.EQ, family))
    flt.add_rule(no_family, "socket", pyseccomp.Arg(0, pyseccomp.GE, FIRST_UNLISTED_FAMILY))
    flt.add_rule(no_family, "socketpair", pyseccomp.Arg(0, pyseccomp.NE, 1))
    no_protocol = pyseccomp.ERRNO(errno.EPROTONOSUPPORT)
    for protocol in DENIED_PROTOCOLS:
        flt.add_rule(
            no_protocol,
            "socket",
            pyseccomp.Arg(2, pyseccomp.MASKED_EQ, _LOW32, protocol),
        )


def install(bpf: bytes) -> None:
    """Load the compiled filter in this process (no_new_privs must already be set)."""
    libc.install_seccomp_filter(bpf)
