"""The seccomp deny-list of reference/attacks.md, observed from inside real sandboxes.

Rules: the compiled filter is checked without root; everything else runs probes in real
sandboxes (root, namespaces) and compares the whole printed table with attacks.md's. Raw
syscalls come from ctypes ``libc.syscall`` in ``programs/seccomp_probe.py``; the i386 ABI needs
an instruction, so ``programs/i386_getpid.c`` is compiled with gcc (skipped without gcc).
"""

from __future__ import annotations

import errno
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pyseccomp
import pytest

from pistond.sandbox import libc, seccomp

PROGRAMS = Path(__file__).parent / "programs"
PYTHON = "/usr/bin/python3.11"

EXPECTED_DENIED = {
    **dict.fromkeys(
        [
            "unshare", "setns", "mount", "umount2", "pivot_root", "chroot", "open_tree",
            "move_mount", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
        ],
        "EPERM",
    ),
    "clone3": "ENOSYS",
    **dict.fromkeys(
        [
            "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load",
            "reboot", "swapon", "swapoff", "acct", "syslog", "quotactl", "settimeofday",
            "clock_settime", "clock_adjtime", "adjtimex", "iopl", "ioperm",
        ],
        "EPERM",
    ),
    **dict.fromkeys(
        [
            "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter",
            "io_uring_register", "keyctl", "add_key", "request_key", "fanotify_init",
            "open_by_handle_at", "name_to_handle_at",
        ],
        "ENOSYS",
    ),
    **dict.fromkeys(
        ["modify_ldt", "memfd_secret", "mbind", "move_pages", "migrate_pages"], "ENOSYS"
    ),
    **dict.fromkeys(
        [
            "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
            "process_madvise",
        ],
        "EPERM",
    ),
}  # fmt: skip
"""attacks.md's table: every call denied whatever its arguments, with its errno."""

CLONE_FLAGS = {
    "CLONE_NEWNS": libc.CLONE_NEWNS,
    "CLONE_NEWCGROUP": libc.CLONE_NEWCGROUP,
    "CLONE_NEWUTS": libc.CLONE_NEWUTS,
    "CLONE_NEWIPC": libc.CLONE_NEWIPC,
    "CLONE_NEWUSER": libc.CLONE_NEWUSER,
    "CLONE_NEWPID": libc.CLONE_NEWPID,
    "CLONE_NEWNET": libc.CLONE_NEWNET,
}

EXPECTED_ARGUMENT_RULES = {
    **{f"clone {name}": "EPERM" for name in CLONE_FLAGS},
    "clone plain": "ok",
    "clone3": "ENOSYS",
    "socket 0x1": "ok",
    "socket 0x2": "ok",
    "socket 0xa": "ok",
    "socket 0x10": "ok",
    **{
        f"socket {family:#x}": "EAFNOSUPPORT"
        for family in (3, 4, 5, 15, 17, 21, 29, 30, 31, 38, 40, 44, 45)
    },
    "socket 0x100000001": "EAFNOSUPPORT",
    "socket 0x100000002": "EAFNOSUPPORT",
    "socket 0xffffffff": "EAFNOSUPPORT",
    "socket inet proto 0x0": "ok",
    "socket inet proto 0x84": "EPROTONOSUPPORT",
    "socket inet proto 0x21": "EPROTONOSUPPORT",
    "socket inet proto 0x100000084": "EPROTONOSUPPORT",
    "socketpair 0x1": "ok",
    "socketpair 0x2": "EAFNOSUPPORT",
    "socketpair 0x100000001": "EAFNOSUPPORT",
    "personality 0xffffffff": "ok",
    "personality 0x0": "ok",
    "personality 0x40000": "EPERM",
    "personality 0x8": "EPERM",
    "personality 0xfffffffe": "EPERM",
    "personality 0x1ffffffff": "ok",
    "personality 0x100000008": "EPERM",
    "personality 0xffffffffffffffff": "ok",
    "x32 getpid": "ENOSYS",
    "getpid": "ok",
}
"""Argument-dependent rules: CLONE_NEW* flags, socket families and protocols (low and high
halves), personality other than query and PER_LINUX, and the x32 ABI."""


def test_seccomp_filter_compiles_to_bpf() -> None:
    """The deny-list compiles to classic BPF that checks the architecture first."""
    bpf = seccomp.build_filter()
    assert bpf
    assert len(bpf) % 8 == 0
    first_load = int.from_bytes(bpf[4:8], "little")
    assert first_load == 4, "the first instruction loads seccomp_data.arch"


def test_seccomp_deny_list_is_attacks_md() -> None:
    """The module's deny-list is exactly attacks.md's table, errno for errno."""
    names = {name: _errno_name(err) for name, err in seccomp.DENIED.items()}
    assert names == EXPECTED_DENIED


def _errno_name(err: int) -> str:
    return errno.errorcode[err]


def _syscall_numbers() -> dict[str, int]:
    arch = pyseccomp.system_arch()
    return {name: pyseccomp.resolve_syscall(arch, name) for name in EXPECTED_DENIED}


async def test_seccomp_denied_calls_return_their_errno(run_box: Any, put_program: Any) -> None:
    """Each deny-list call fails with its errno; the process is not killed."""
    program = put_program("seccomp_probe.py")
    ran = await run_box((PYTHON, program, json.dumps(_syscall_numbers()), json.dumps(CLONE_FLAGS)))
    assert ran.exit.exit_code == 0, ran.stderr.decode()
    table = json.loads(ran.stdout)
    denied = {name: table[name] for name in EXPECTED_DENIED}
    assert denied == EXPECTED_DENIED


async def test_seccomp_argument_rules_compare_low_halves(run_box: Any, put_program: Any) -> None:
    """clone flags, socket families and protocols, personality and x32 give attacks.md's table."""
    program = put_program("seccomp_probe.py")
    ran = await run_box((PYTHON, program, json.dumps({}), json.dumps(CLONE_FLAGS)))
    assert ran.exit.exit_code == 0, ran.stderr.decode()
    assert json.loads(ran.stdout) == EXPECTED_ARGUMENT_RULES


@pytest.fixture(scope="module")
def i386_program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """programs/i386_getpid.c compiled; skipped without gcc."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is needed to build the i386 ABI probe")
    output = tmp_path_factory.mktemp("i386") / "i386_getpid"
    subprocess.run(
        [gcc, "-O1", "-o", str(output), str(PROGRAMS / "i386_getpid.c")],
        check=True,
        capture_output=True,
    )
    return output


async def test_seccomp_rejects_the_i386_abi(run_box: Any, box: Path, i386_program: Path) -> None:
    """``int 0x80`` from a sandboxed program gets ENOSYS (the bad-architecture action)."""
    outside = subprocess.run([str(i386_program)], capture_output=True, check=False)  # noqa: ASYNC221 - a few ms
    if outside.returncode != 0:
        pytest.skip("this kernel has no i386 ABI (int 0x80 faults even unfiltered)")
    assert int(outside.stdout) > 0, "unfiltered, the i386 getpid returns a pid"
    shutil.copy(i386_program, box / "i386_getpid")
    ran = await run_box(("/box/i386_getpid",))
    assert ran.exit.exit_code == 0
    assert ran.stdout == b"-38\n"
