"""Isolation attacks (reference/attacks.md cases 3, 5, 6, 14, 18, 19, 20, 21, 22, 30, 34 and the
further cases on reverse shells, other jobs' files and the file-lock channel): what one job
can see of the host and of other jobs through namespaces, mounts and uids."""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import socket
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from pistond.models import StageResult, StageStatus

from .conftest import Attack, table

if TYPE_CHECKING:
    from .conftest import Gateway

if TYPE_CHECKING:
    from collections.abc import Iterator

REPOSITORY = Path(__file__).parents[3]
_MODULES_ABSENT = not Path("/proc/modules").exists()
SYSV_KEY = 0x5049


def _host_address() -> str:
    """The host's main IPv4 address (the source of its default route), else loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
        except OSError:
            return "127.0.0.1"
        return str(probe.getsockname()[0])


@contextlib.contextmanager
def _listener() -> Iterator[tuple[socket.socket, int]]:
    """A TCP listener on every host address; yields it and its port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("0.0.0.0", 0))
        server.listen(8)
        server.setblocking(False)
        yield server, server.getsockname()[1]


def _accepted_nothing(server: socket.socket) -> bool:
    try:
        server.accept()[0].close()
    except BlockingIOError:
        return True
    return False


def _read(path: str) -> str:
    with open(path) as file:
        return file.read()


def _sysv_keys(kind: str) -> set[int]:
    lines = Path(f"/proc/sysvipc/{kind}").read_text().splitlines()[1:]
    return {int(line.split()[0]) for line in lines if line.strip()}


def _environment_file(package: str) -> dict[str, str]:
    """The variables a host package's ``environment`` file exports."""
    variables = {}
    text = (REPOSITORY / "packages" / package / "host" / "environment").read_text()
    for line in text.splitlines():
        if line.startswith("export "):
            key, _, value = line.removeprefix("export ").partition("=")
            variables[key] = value
    return variables


async def test_network_is_unreachable(attack: Attack) -> None:
    """Case 3: fetches, literal-IP connects, DNS and the host's own listeners all fail; the
    host listener accepts nothing."""
    address = _host_address()
    with _listener() as (server, port):
        run = await attack.stage("network.py", address, str(port))
        assert _accepted_nothing(server)
    expected = {
        "urllib": "fail",
        "resolve": "fail",
        "tcp-literal": "ENETUNREACH",
        "udp-dns": "ENETUNREACH",
        "host-loopback": "ECONNREFUSED",
        "host-address": "ECONNREFUSED" if address == "127.0.0.1" else "ENETUNREACH",
    }
    assert table(run.stdout) == expected
    assert run.status is None


async def test_reverse_shell_cannot_connect(attack: Attack) -> None:
    """Further case: Python and bash reverse shells towards a host listener fail to connect."""
    address = _host_address()
    unreachable = "ECONNREFUSED" if address == "127.0.0.1" else "ENETUNREACH"
    with _listener() as (server, port):
        python = await attack.stage("reverse_shell.py", address, str(port))
        bash = await attack.stage("reverse_shell.sh", address, str(port))
        assert _accepted_nothing(server)
    assert table(python.stdout) == {
        "python-loopback": "ECONNREFUSED",
        "python-host": unreachable,
    }
    assert table(bash.stdout) == {"bash-127.0.0.1": "fail", f"bash-{address}": "fail"}


async def test_files_do_not_persist_across_jobs(attack: Attack) -> None:
    """Case 5: a second run finds none of the first run's beans; none exists on the host."""
    host_beans = [Path(d, "bean") for d in ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")]
    existing = {path for path in host_beans if path.exists()}
    first = await attack.stage("persistence.py")
    second = await attack.stage("persistence.py")
    assert "/tmp/bean created" in first.stderr
    assert "/dev/shm/bean created" in first.stderr
    assert "/box/submission/bean created" in first.stderr
    assert (first.stdout, second.stdout) == ("", "")
    assert {path for path in host_beans if path.exists()} == existing
    await attack.wait_clean()  # a job's box is unmounted just after its result goes out
    assert not list(attack.host.directory.rglob("bean"))


async def test_mqueue_does_not_outlive_its_job(attack: Attack) -> None:
    """Case 6: a POSIX message queue made by one job is gone for the next (ENOENT), and never
    appears in the host's IPC namespace."""
    first = await attack.stage("mqueue.py", "create")
    second = await attack.stage("mqueue.py", "open")
    assert table(first.stdout)["create"] in ("ok", "EMFILE")
    assert table(second.stdout) == {"open": "ENOENT"}
    rt = ctypes.CDLL("librt.so.1", use_errno=True)
    rt.mq_open.argtypes = [ctypes.c_char_p, ctypes.c_int]
    assert rt.mq_open(b"/pistond-probe", os.O_RDONLY) == -1
    assert ctypes.get_errno() == 2


async def test_environment_is_built_from_scratch(attack: Attack) -> None:
    """Case 14: the environment is exactly the package's plus HOME, PISTON_LANGUAGE, PWD and
    SHLVL (what bash would export); the daemon's secret appears nowhere; /proc/1/environ is
    unreadable."""
    run = await attack.stage("env_leak.py")
    assert attack.host.secret not in run.stdout + run.stderr
    environment = dict(value.split("=", 1) for name, value in _rows(run.stdout) if name == "env")
    expected = {*_environment_file("python"), "HOME", "PISTON_LANGUAGE", "PWD", "SHLVL"}
    # The python run script is one plain exec: no bash runs it, so bash's `_` is not there.
    assert set(environment) == expected
    assert (environment["PWD"], environment["SHLVL"]) == ("/box/submission", "0")
    assert environment["PISTON_LANGUAGE"] == "python"
    for value in environment.values():
        assert str(attack.host.directory) not in value
    rows = table(run.stdout)
    assert rows["self-environ-matches"] == "True"
    assert rows["proc1-environ"] in ("ENOENT", "EACCES", "ESRCH")
    assert rows["done"] == "0"
    assert "hit" not in rows


def _rows(text: str) -> list[tuple[str, str]]:
    return [(line.partition(" ")[0], line.partition(" ")[2]) for line in text.splitlines()]


async def test_proc_shows_only_the_sandbox(attack: Attack) -> None:
    """Case 18: /proc lists the sandbox's own processes only, hides kernel addresses, shows
    only the sandbox's mounts with the box as its own root, cgroups at /; kcore and writes
    fail."""
    run = await attack.stage("procfs.py")
    rows = table(run.stdout)
    pids = [int(pid) for pid in rows["pids"].split(",")]
    assert all(pid < 100 for pid in pids), pids
    uids = rows["uids"].split(",")
    assert len(uids) == 1
    assert int(uids[0]) in attack.host.box_uids
    restrict = int(_read("/proc/sys/kernel/kptr_restrict"))
    paranoid = int(_read("/proc/sys/kernel/perf_event_paranoid"))
    if restrict > 0 or paranoid > 1:
        assert rows["kallsyms"] == "zero"
        modules_absent = "No such file or directory"  # a kernel built without modules
        assert rows["modules"] in ("zero", modules_absent if _MODULES_ABSENT else "zero")
    roots = rows["mount-roots"].split(",")
    deliberate = ("/", "/usr", "/null", "/zero", "/full", "/random", "/urandom", "/sys")
    packages = str(attack.host.daemon.data_directory / "packages") + "/"
    for root in roots:
        assert root in deliberate or root.startswith(("/etc/", "/sysrq-trigger", packages)), root
    assert rows["box-root"] == "/"
    assert rows["cgroup"] == "/"
    assert rows["kcore"] != "ok"
    assert rows["sysrq-trigger"] != "ok"
    assert rows["core_pattern"] != "ok"


async def test_sys_does_not_exist(attack: Attack) -> None:
    """Case 30: /sys does not exist in the sandbox and sysfs cannot be mounted."""
    run = await attack.stage("sysfs.py")
    rows = table(run.stdout)
    assert rows.pop("mount-sysfs") == "EPERM"
    assert set(rows.values()) == {"ENOENT"}, rows


async def test_unix_sockets_do_not_cross_sandboxes(attack: Attack) -> None:
    """Case 19: B cannot reach A's path or abstract sockets, the daemon's or journald's
    socket; A accepts nothing."""
    async with attack.hold("unix_sockets.py", "listen", ready="listening") as listener:
        run = await attack.stage("unix_sockets.py", "connect", str(attack.host.socket))
    assert table(run.stdout) == {
        "tmp": "ENOENT",
        "box": "ENOENT",
        "abstract": "ECONNREFUSED",
        "rpc": "ENOENT",
        "journal": "ENOENT",
    }
    assert table(listener.stdout.decode())["accepted"] == "0"
    assert listener.run.status is None


async def test_sysv_shared_memory_does_not_cross_sandboxes(attack: Attack) -> None:
    """Case 20: B finds none of A's shared memory, by key, by index or in /proc/sysvipc;
    no segment is left on the host."""
    before = _sysv_keys("shm")
    async with attack.hold("sysv.py", "hold", "shm", ready="holding") as holder:
        run = await attack.stage("sysv.py", "seek", "shm")
    assert table(run.stdout) == {"shmget": "ENOENT", "found": "nothing"}
    assert holder.run.status is None
    assert SYSV_KEY not in _sysv_keys("shm")
    assert _sysv_keys("shm") <= before


async def test_sysv_queues_and_semaphores_do_not_cross_or_survive(attack: Attack) -> None:
    """Case 21: B and a second A find none of the first A's message queue or semaphores;
    nothing survives its job."""
    before = {kind: _sysv_keys(kind) for kind in ("msg", "sem")}
    async with attack.hold("sysv.py", "hold", "msg", "sem", ready="holding") as first:
        seeker = await attack.stage("sysv.py", "seek", "msg", "sem")
    async with attack.hold("sysv.py", "hold", "msg", "sem", ready="holding") as second:
        pass
    nothing = {"msgget": "ENOENT", "semget": "ENOENT", "found": "nothing"}
    assert table(seeker.stdout) == nothing
    second_look = table(second.stdout.decode())
    assert {key: second_look[key] for key in nothing} == nothing
    assert first.run.status is None
    assert second.run.status is None
    for kind, keys in before.items():
        assert SYSV_KEY not in _sysv_keys(kind)
        assert _sysv_keys(kind) <= keys


async def test_ptrace_and_process_memory_are_denied(attack: Attack) -> None:
    """Case 22: ptrace, process_vm_*, pidfd_getfd and kcmp fail EPERM for every target; no
    other pid is visible; a concurrent job's output is intact."""
    results: dict[str, StageResult] = {}

    async def one(key: str, name: str, *args: str) -> None:
        results[key] = await attack.stage(name, *args)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(one, "writer", "concurrent_writer.py", "1")
        nursery.start_soon(one, "ptrace", "ptrace.c")
    rows = table(results["ptrace"].stdout)
    assert results["ptrace"].status is None, results["ptrace"]
    assert rows.pop("seize-all-pids") == "0"
    assert rows.pop("pidfd-open-child") == "ok"
    assert rows.pop("mem-init") in ("ENOENT", "EACCES")
    rows.pop("mem-child")  # test_ptrace_child_memory_is_not_writable
    assert rows == {
        "attach-init": "EPERM",
        "seize-init": "EPERM",
        "attach-child": "EPERM",
        "seize-child": "EPERM",
        "traceme": "EPERM",
        "vm-readv-init": "EPERM",
        "vm-readv-child": "EPERM",
        "vm-writev-child": "EPERM",
        "pidfd-getfd": "EPERM",
        "kcmp": "EPERM",
    }
    writer = results["writer"]
    lines = writer.stdout.splitlines()
    assert lines[-1] == "done"
    assert lines[:-1] == [f"line {n}" for n in range(len(lines) - 1)]
    assert writer.status is None


async def test_ptrace_child_memory_is_not_writable(attack: Attack) -> None:
    """Case 22: /proc/<pid>/mem of the program's own child and of PID 1 cannot be opened for
    writing."""
    run = await attack.stage("mem_child.py")
    rows = table(run.stdout)
    assert rows["mem-init"] in ("ENOENT", "EACCES")
    assert rows["mem-child"] in ("EACCES", "EPERM")


async def test_cross_process_kill_reaches_only_its_own_processes(
    attack: Attack, gateway: Gateway
) -> None:
    """Case 34: B's kill sweeps reach only its own processes, never PID 1, another job, the
    daemon, the fork server or the gateway; A finishes with its output and nil status."""
    assert gateway.process.poll() is None
    results: dict[str, StageResult] = {}

    async def one(key: str, name: str, *args: str) -> None:
        results[key] = await attack.stage(name, *args)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(one, "victim", "concurrent_writer.py", "1.5")
        await trio.sleep(0.3)
        nursery.start_soon(one, "killer", "cross_kill.py")
    victim, killer = results["victim"], results["killer"]
    assert victim.status is None
    assert victim.stdout.endswith("done\n")
    rows = table(killer.stdout)
    assert "kill-all" in rows, killer
    own = rows["child"]
    assert rows["init-before"] == rows["kill-init"] == rows["init-after"] == "EPERM"
    assert rows["killed"] == own
    assert rows["groups"] in ("none", own)
    assert rows["pidfd"] in ("none", own)
    assert killer.status in (None, StageStatus.SIGNALED), killer
    assert gateway.process.poll() is None, "the gateway died"


async def test_other_jobs_files_are_out_of_reach(attack: Attack) -> None:
    """Further case: B finds nothing of A's marker in any path, guessed box path or /proc."""
    marker = secrets.token_hex(12)
    async with attack.hold("other_job.py", "hold", marker, ready="holding"):
        run = await attack.stage("other_job.py", "hunt", marker, str(attack.host.boxes))
    assert table(run.stdout) == {"found": "nothing"}


async def test_file_lock_channel_is_blocked_or_documented(attack: Attack) -> None:
    """Further case: a flock on a shared read-only file either fails, or the channel it opens
    between jobs is documented in docs/security.md."""
    async with attack.hold("file_lock.py", "hold", ready="lock") as holder:
        run = await attack.stage("file_lock.py", "probe")
    held = table(holder.stdout.decode())["lock"]
    probed = table(run.stdout)["lock"]
    if held == "ok" and probed != "ok":
        security = (REPOSITORY / "docs" / "security.md").read_text()
        assert "file-lock channel" in security.lower()
