"""Privilege attacks (reference/attacks.md cases 9, 10, 11, 15, 16, 17, 23, 24, 25, 29, 31, 32,
33, 35 and the further cases on TIOCSTI, runtime binaries and clocks): the uid drop, the
mounts, the rlimits and the seccomp deny-list hold against a program that tries everything."""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import trio
from pistond_packages.layout import PISTON_PACKAGES

from pistond.models import StageResult, StageStatus

from .conftest import MAX_FILE_SIZE, RUN_TIMEOUT, Attack, table

WALL_SLACK = 200
FAILED_WRITES = {"EROFS", "EACCES", "EPERM", "EBUSY", "ETXTBSY", "EXDEV", "ENOTEMPTY"}
"""How a write to a read-only place may fail."""
UNREACHABLE = {"ENOENT", "EACCES"}
INTERPRETER = Path(os.path.realpath("/usr/bin/python3"))
"""The host interpreter the python host runtime runs."""
DENY_LIST = (
    # (call, errno) in the order of reference/attacks.md's table and raw_syscalls.c.
    *(
        (name, "EPERM")
        for name in (
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
    ),
    ("clone3", "ENOSYS"),
    *(
        (name, "EPERM")
        for name in (
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
            "personality",
        )
    ),
    *(
        (name, "ENOSYS")
        for name in (
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
            "modify_ldt",
            "memfd_secret",
            "mbind",
            "move_pages",
            "migrate_pages",
        )
    ),
    *(
        (name, "EPERM")
        for name in (
            "ptrace",
            "process_vm_readv",
            "process_vm_writev",
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
        )
    ),
)
ARGUMENT_FILTERS = {
    **{
        f"clone-new{kind}": "EPERM"
        for kind in ("ns", "cgroup", "uts", "ipc", "user", "pid", "net", "user-junk")
    },
    "socket-packet": "EAFNOSUPPORT",
    "socket-packet-junk": "EAFNOSUPPORT",
    "socket-vsock": "EAFNOSUPPORT",
    "socket-bluetooth": "EAFNOSUPPORT",
    "socket-unix": "ok",
    "socket-inet": "ok",
    "socket-inet6": "ok",
    "socket-netlink": "ok",
    "socket-sctp": "EPROTONOSUPPORT",
    "socket-sctp-junk": "EPROTONOSUPPORT",
    "socket-dccp": "EPROTONOSUPPORT",
    "socketpair-unix": "ok",
    "socketpair-inet": "EAFNOSUPPORT",
    "personality-query": "ok",
    "personality-linux": "ok",
    "personality-junk": "EPERM",
}


def _fingerprint(path: Path) -> tuple[str, int, int, int]:
    """Content hash, mode, owner and mtime of a host file."""
    info = path.stat()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return digest, info.st_mode, info.st_uid, info.st_mtime_ns


def _stored_python_cores() -> list[str]:
    """Python core files in systemd-coredump's store, if the host has one."""
    store = "/var/lib/systemd/coredump"
    if not os.path.isdir(store):
        return []
    return [name for name in os.listdir(store) if "python" in name]


def _module_names() -> set[str] | None:
    """Names of the host's loaded modules; None on a kernel built without modules."""
    try:
        with open("/proc/modules") as file:
            return {line.split()[0] for line in file}
    except FileNotFoundError:
        return None


@contextlib.contextmanager
def _root_canary() -> Iterator[str]:
    """A canary file in the host's ``/``, removed afterwards; yields its name."""
    name = f"pistond-canary-{secrets.token_hex(6)}"
    path = Path("/", name)
    path.write_text("host canary\n")
    try:
        yield name
    finally:
        path.unlink()


async def _gather(attack: Attack, *calls: tuple[str, ...]) -> list[StageResult]:
    results: list[StageResult | None] = [None] * len(calls)

    async def one(index: int, call: tuple[str, ...]) -> None:
        results[index] = await attack.stage(*call)

    async with trio.open_nursery() as nursery:
        for index, call in enumerate(calls):
            nursery.start_soon(one, index, call)
    return [result for result in results if result is not None]


async def test_symlinks_never_reach_the_host(attack: Attack) -> None:
    """Case 9: links planted to host paths resolve inside the sandbox only; the host canary's
    content, mode, owner and mtime are unchanged; cleanup removes links, never targets."""
    canary = attack.host.directory / "canary.txt"
    canary.write_text("do not touch\n")
    canary.chmod(0o600)
    before = _fingerprint(canary)
    run = await attack.stage(
        "symlinks.py", str(canary), str(attack.host.daemon.data_directory), str(attack.host.socket)
    )
    rows = table(run.stdout)
    targets = {
        "shadow": "/etc/shadow",
        "data": str(attack.host.daemon.data_directory),
        "init-root": "/proc/1/root",
        "socket": str(attack.host.socket),
        "canary": str(canary),
    }
    for name, target in targets.items():
        resolved, read = rows[name].rsplit(" ", 1)
        assert resolved == target, (name, rows[name])  # resolved in the sandbox's own root
        assert read in UNREACHABLE, (name, rows[name])
    assert rows["box-entries"] == "EACCES"
    assert rows["canary-chmod"] == "ENOENT"
    assert rows["canary-write"] == "ENOENT"
    assert run.status is None, run
    await attack.wait_clean()
    assert _fingerprint(canary) == before
    assert attack.host.socket.is_socket()


async def test_privilege_escalation_fails(attack: Attack) -> None:
    """Case 10: sudo, su, setuid files, setuid(0), setgroups, capset, a chmod u+s copy, uid_map
    and attr writes all fail; the process has no capabilities, NoNewPrivs 1, Seccomp 2."""
    run = await attack.stage("privesc.py")
    rows = table(run.stdout)
    assert "euid" in rows, run.stderr
    uid = rows["euid"]
    assert int(uid) in attack.host.box_uids
    assert rows.pop("sudo") in ("absent", "fail")
    assert rows.pop("su") in ("absent", "fail", "timeout")
    count, nosuid = rows.pop("setuid-files").split()
    assert nosuid == "nosuid=yes", count
    assert rows.pop("attr-current") != "ok"
    assert rows.pop("uid_map") != "ok"
    assert rows == {
        "setuid0": "EPERM",
        "seteuid0": "EPERM",
        "setgroups0": "EPERM",
        "capset": "EPERM",
        "chmod-setuid": "ok",
        "copied-id": f"ok:{uid}",
        "id": f"ok:{uid}",
        "CapInh": "0000000000000000",
        "CapPrm": "0000000000000000",
        "CapEff": "0000000000000000",
        "CapBnd": "0000000000000000",
        "CapAmb": "0000000000000000",
        "NoNewPrivs": "1",
        "Seccomp": "2",
        "euid": uid,
    }


async def test_devices_are_the_five_harmless_ones(attack: Attack) -> None:
    """Case 11: host devices are absent (ENOENT), mknod fails EPERM, /dev holds only null,
    zero, full, random, urandom (and the fd links and shm), which work."""
    run = await attack.stage("devices.py")
    rows = table(run.stdout)
    devices = [
        f"/dev/{name}"
        for name in (
            [
                "mem",
                "kmem",
                "port",
                "kmsg",
                "sda",
                "vda",
                "nvme0n1",
                "tty",
                "tty0",
                "console",
                "ptmx",
                "net/tun",
                "fuse",
            ]
        )
    ]
    assert {name: rows[name] for name in devices} == dict.fromkeys(devices, "ENOENT")
    assert rows["mknod-box"] == rows["mknod-tmp"] == "EPERM"
    assert rows["dev"] == "fd,full,null,random,shm,stderr,stdin,stdout,urandom,zero"
    assert rows["null-write"] == "ok"
    assert rows["zero-read"] == "True"
    assert rows["full-write"] == "ENOSPC"
    assert rows["random-read"] == rows["urandom-read"] == "16"


async def test_rlimits_cannot_be_raised(attack: Attack) -> None:
    """Case 15: raising a hard limit fails, soft up to hard works, prlimit on PID 1 fails
    EPERM; writes and opens past the limits still fail."""
    run = await attack.stage("rlimits.py")
    rows = table(run.stdout)
    for name in ("NOFILE", "NPROC", "FSIZE", "CORE", "CPU", "STACK", "MEMLOCK", "MSGQUEUE"):
        assert rows[name] == "ValueError ok EPERM EPERM", (name, rows[name])
    assert rows["fsize-write"] == "EFBIG"
    assert rows["nofile"] == f"EMFILE {attack.host.limits['max_open_files']}"
    assert MAX_FILE_SIZE < 4 * 2**20


async def test_signal_resistance_ends_at_the_wall_limit(attack: Attack) -> None:
    """Case 16: ignoring signals, stopping itself or hiding in a new session all end TO (wall
    clock) by SIGKILL within the limit plus 200 ms."""
    results = await _gather(
        attack,
        ("signals.py", "ignore"),
        ("signals.py", "stop"),
        ("signals.py", "setsid"),
    )
    for run in results:
        assert (run.status, run.signal, run.message) == (
            StageStatus.TIMEOUT,
            "SIGKILL",
            "Time limit exceeded (wall clock)",
        ), run
        assert RUN_TIMEOUT <= run.wall_time <= RUN_TIMEOUT + WALL_SLACK, run.wall_time


async def test_read_only_filesystem_stays_read_only(attack: Attack) -> None:
    """Case 17: every write to /, /usr, /etc, /bin, /lib, the interpreter and the package's
    files fails; host files are unchanged; later jobs run the unmodified runtime."""
    version = attack.host.versions["python"]
    package = f"{PISTON_PACKAGES}/python/{version}"
    host_files = [
        Path("/etc/passwd"),
        INTERPRETER,
        attack.host.daemon.data_directory / "packages" / "python" / version / "run",
    ]
    before = [_fingerprint(path) for path in host_files]
    run = await attack.stage("readonly_fs.py", f"{package}/run", package)
    rows = table(run.stdout)
    assert len(rows) == 10, run.stdout
    for target, results in rows.items():
        for result in results.split(","):
            assert result == "-" or result in FAILED_WRITES, (target, results)
    assert [_fingerprint(path) for path in host_files] == before


async def test_mount_family_fails(attack: Attack) -> None:
    """Case 23: mount, bind, remount, umount2, pivot_root and the new mount API all fail EPERM;
    mountinfo is identical before and after."""
    run = await attack.stage("mount_escape.py")
    rows = table(run.stdout)
    assert rows.pop("mountinfo-same") == "True"
    assert rows == dict.fromkeys(rows, "EPERM")
    assert len(rows) == 12


async def test_chroot_escapes_fail(attack: Attack) -> None:
    """Case 24: chroot fails EPERM, '..' of / is /, /proc/1/root is unreadable, and a canary in
    the host's / is never found."""
    with _root_canary() as canary:
        c, python = await _gather(attack, ("chroot_escape.c", canary), ("root_walk.py", canary))
    assert table(c.stdout) == {
        "chroot-x": "EPERM",
        "chroot-dot": "EPERM",
        "fchdir": "ok",
        "cwd": "/",
        "dotdot-is-root": "yes",
        "canary-relative": "ENOENT",
        "canary-root": "ENOENT",
    }
    rows = table(python.stdout)
    assert rows.pop("dotdot") == "/"
    assert rows.pop("self-root") == "/"
    assert rows.pop("init-root") in UNREACHABLE
    assert set(rows.values()) <= UNREACHABLE, rows
    assert len(rows) == 4


async def test_new_namespaces_are_refused(attack: Attack) -> None:
    """Case 25: unshare, setns and namespace-flagged clone fail EPERM, clone3 ENOSYS, the
    unshare tool fails, and read-only mounts stay read-only."""
    run = await attack.stage("unshare_escape.py")
    rows = table(run.stdout)
    for name in ("user", "mnt", "pid", "net"):
        assert rows.pop(f"open-init-ns-{name}") in UNREACHABLE
        assert rows.pop(f"setns-self-{name}") == "EPERM"
    assert rows.pop("uid_map") != "ok"
    assert rows == {
        "unshare-user-mnt": "EPERM",
        "unshare-user": "EPERM",
        "unshare-net": "EPERM",
        "clone-newuser": "EPERM",
        "clone-newpid": "EPERM",
        "clone3-newuser": "ENOSYS",
        "clone3-plain": "ENOSYS",
        "unshare-tool": "fail",
        "write-usr": "EROFS",
    }


async def test_core_dumps_are_never_written(attack: Attack) -> None:
    """Case 29: after trying to raise RLIMIT_CORE and to set core_pattern, a C SIGSEGV and a
    Python abort end SG with their signal and leave no core file anywhere."""
    c, python = await _gather(attack, ("core_dump.c",), ("core_dump.py",))
    assert (c.status, c.signal) == (StageStatus.SIGNALED, "SIGSEGV"), c
    assert (python.status, python.signal) == (StageStatus.SIGNALED, "SIGABRT"), python
    assert table(c.stdout) == {
        "raise-core": "fail",
        "dumpable": "0",
        "core_pattern": "fail",
        "child": "signal=11 core=no",
        "core-files": "0",
    }
    rows = table(python.stdout)
    assert rows["raise-core"] == "ValueError"
    assert rows["core_pattern"] != "ok"
    assert rows["child"] == "signal=6 core=no"
    assert rows["core-files"] == "none"
    await attack.wait_clean()  # the box (holding core_dump.c) goes just after the results
    assert not list(attack.host.directory.rglob("core*"))
    assert not _stored_python_cores()


async def test_cache_timing_probe_gets_ordinary_limits(attack: Attack) -> None:
    """Case 31: a flush+reload or perf_counter timing probe ends nil or TO within the limits
    and the output cap (pistond claims nothing about what it measures)."""
    c, python = await _gather(attack, ("cache_timing.c",), ("cache_timing.py",))
    for run in (c, python):
        assert run.status in (None, StageStatus.TIMEOUT), run
        assert run.wall_time <= RUN_TIMEOUT + WALL_SLACK
        assert len(run.stdout.encode()) <= 1024
    assert set(table(c.stdout)) <= {"hit", "miss"}


async def test_kernel_modules_cannot_be_loaded(attack: Attack) -> None:
    """Case 32: module calls fail EPERM, the tools fail, modprobe's path is read-only, and
    rare socket families and protocols are refused; the host's module list is unchanged."""
    before = _module_names()
    run = await attack.stage("modules.py")
    rows = table(run.stdout)
    assert rows.pop("modprobe") in ("absent", "fail")
    assert rows.pop("insmod") in ("absent", "fail")
    assert rows.pop("modprobe-path") in FAILED_WRITES | {"ENOENT"}
    assert rows == {
        "init_module": "EPERM",
        "finit_module": "EPERM",
        "delete_module": "EPERM",
        "socket-tipc": "EAFNOSUPPORT",
        "socket-rds": "EAFNOSUPPORT",
        "socket-can": "EAFNOSUPPORT",
        "socket-sctp": "EPROTONOSUPPORT",
        "socket-dccp": "EPROTONOSUPPORT",
    }
    assert _module_names() == before


async def test_deny_list_table_is_exact(attack: Attack) -> None:
    """Case 33: every deny-list call fails with its configured errno, argument filters compare
    the low 32 bits, and the i386 and x32 ABIs fail ENOSYS or die by SIGSYS; exit 0."""
    run = await attack.stage("raw_syscalls.c")
    assert run.stdout.splitlines() == [f"{name} {error}" for name, error in DENY_LIST]
    rows = table(run.stderr)
    assert rows.pop("i386") in ("ENOSYS", "SIGSYS")
    assert rows.pop("x32") in ("ENOSYS", "SIGSYS")
    assert rows == ARGUMENT_FILTERS
    assert (run.status, run.code) == (None, 0), run


async def test_raw_and_packet_sockets_fail(attack: Attack) -> None:
    """Case 35: raw and packet sockets fail, the ping socket fails EACCES, exotic families are
    refused, netlink opens but cannot change the interfaces."""
    run = await attack.stage("raw_sockets.py")
    assert table(run.stdout) == {
        "packet": "EAFNOSUPPORT",
        "inet-raw-icmp": "EPERM",
        "ping": "EACCES",
        "inet6-raw": "EPERM",
        "vsock": "EAFNOSUPPORT",
        "alg": "EAFNOSUPPORT",
        "key": "EAFNOSUPPORT",
        "xdp": "EAFNOSUPPORT",
        "netlink-open": "ok",
        "netlink-lo-up": "EPERM",
        "netlink-add-address": "EPERM",
    }


async def test_tiocsti_has_no_terminal(attack: Attack) -> None:
    """Further case: TIOCSTI on fds 0-2 fails ENOTTY and /dev/tty does not exist: the job has
    no controlling terminal."""
    run = await attack.stage("tiocsti.py")
    assert table(run.stdout) == {
        "tiocsti-0": "ENOTTY",
        "tiocsti-1": "ENOTTY",
        "tiocsti-2": "ENOTTY",
        "dev-tty": "ENOENT",
        "sid-leader": "True",
    }


async def test_runtime_binaries_cannot_be_overwritten(attack: Attack) -> None:
    """Further case: /proc/self/exe, the interpreter and PID 1's binary cannot be opened for
    writing; the host binary is unchanged."""
    before = _fingerprint(INTERPRETER)
    run = await attack.stage("overwrite_runtime.py")
    rows = table(run.stdout)
    assert rows.pop("self-exe") in FAILED_WRITES
    assert rows.pop("interpreter") in FAILED_WRITES
    assert rows.pop("init-exe") in UNREACHABLE
    assert rows.pop("parent-exe") in UNREACHABLE
    assert _fingerprint(INTERPRETER) == before


async def test_clocks_cannot_be_changed(attack: Attack) -> None:
    """Further case: clock_settime, settimeofday, adjtimex, a time namespace and timens
    offsets all fail; the host clock is intact."""
    offset = time.time() - time.monotonic()
    run = await attack.stage("clock_tamper.py")
    rows = table(run.stdout)
    assert rows.pop("timens_offsets") in ("EPERM", "EACCES", "ENOENT")
    assert rows == {
        "clock_settime": "EPERM",
        "settimeofday": "EPERM",
        "adjtimex": "EPERM",
        "unshare-newtime": "EPERM",
    }
    assert abs(time.time() - time.monotonic() - offset) < 1
    assert run.wall_time < RUN_TIMEOUT
