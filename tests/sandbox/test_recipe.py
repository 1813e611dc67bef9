"""The child recipe, observed from inside real sandboxes.

Rules: every test builds real sandboxes, once through the native launcher and once through the
Python fork server, as root, over a box tmpfs mounted by a fixture; probes
(``programs/observe.py``, /bin/sh) print what they see and the test compares whole tables.
Tests skip, with the reason, where namespaces or root are absent.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import trio

from pistond.sandbox import rlimits
from pistond.sandbox.spec import Bind, RootView, StageLimits

if TYPE_CHECKING:
    from pistond.sandbox.spawn import SandboxProcess

PYTHON = "/usr/bin/python3.11"
PROBE = "observe.py"
BOX_UID = 61234
"""The conftest's box uid (also its ``box_uid`` fixture)."""


async def wait_for_output(stdout: bytearray, marker: bytes) -> None:
    """Wait (at most 5 s) until ``marker`` appears in the collected stdout."""
    with trio.fail_after(5):
        while marker not in stdout:  # noqa: ASYNC110 - another task fills the buffer
            await trio.sleep(0.01)


BASE_LIMITS = StageLimits(
    wall_time_ms=5000,
    cpu_time_ms=3000,
    memory_bytes=None,
    max_processes=32,
    max_open_files=128,
    max_file_size=1_000_000,
    output_max_size=65536,
)


def make_limits(**changes: int) -> StageLimits:
    """The tests' small stage limits, with changes."""
    return attrs.evolve(BASE_LIMITS, **changes)


async def _observe(run_box: Any, box: Path, probe: str, *args: str, **options: Any) -> Any:
    program = f"/box/{PROBE}"
    shutil.copyfile(Path(__file__).parent / "programs" / PROBE, box / PROBE)
    ran = await run_box((PYTHON, program, probe, *args), **options)
    assert ran.exit.setup_error is None, ran.exit.setup_error
    assert ran.exit.exit_code == 0, ran.stderr.decode()
    return json.loads(ran.stdout)


async def test_recipe_program_runs_as_box_uid_without_privileges(run_box: Any, box: Path) -> None:
    """The program is the box uid, with no groups, no capabilities, no_new_privs and seccomp."""
    seen = await _observe(run_box, box, "identity")
    assert seen == {
        "resuid": [BOX_UID] * 3,
        "resgid": [BOX_UID] * 3,
        "groups": [],
        "status": {
            "CapInh": "0000000000000000",
            "CapPrm": "0000000000000000",
            "CapEff": "0000000000000000",
            "CapBnd": "0000000000000000",
            "CapAmb": "0000000000000000",
            "NoNewPrivs": "1",
            "Seccomp": "2",
        },
    }


async def test_recipe_escalation_attempts_fail(run_box: Any, box: Path) -> None:
    """setuid, setgroups, chroot and unshare fail; no shadow file; PID 1's environ is unreadable."""
    seen = await _observe(run_box, box, "escape")
    assert seen == {
        "setuid0": "EPERM",
        "setgroups": "EPERM",
        "chroot": "EPERM",
        "unshare": seen["unshare"] if seen["unshare"] == "n/a" else "EPERM",
        "shadow": False,
        "proc1_environ": "ENOENT",
    }


def _ns_status(pid: int) -> dict[str, str]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


async def test_recipe_pid_namespace_holds_only_the_sandbox(run_box: Any, put_program: Any) -> None:
    """PID 1 is the waiter; the program is PID 2 and sees only its own processes."""
    outside: dict[str, str] = {}

    async def look(process: SandboxProcess, _stdout: bytearray) -> None:
        outside.update(_ns_status(process.pid))

    program = put_program(PROBE)
    ran = await run_box(
        ("/bin/sh", "-c", f"read line; exec {PYTHON} {program} processes"),
        stdin=b"go\n",
        during=look,
    )
    assert ran.exit.exit_code == 0, ran.stderr
    seen = json.loads(ran.stdout)
    assert outside["NSpid"].split()[-1] == "1"
    assert outside["Name"] == "pistond-init"
    assert outside["Uid"].split()[0] == "0"
    assert seen == {"self": 2, "ppid": 1, "pids": [2], "pid1_visible": False}


async def test_recipe_mounts_show_no_host_path_beyond_binds(run_box: Any, box: Path) -> None:
    """mountinfo lists only the sandbox's mounts, with host roots only for /usr and /etc binds."""
    seen = await _observe(run_box, box, "mounts")
    points = {mount["point"] for mount in seen}
    assert {"/", "/usr", "/box", "/tmp", "/dev", "/dev/shm", "/proc", "/proc/sys"} <= points
    fixed = {"/", "/usr", "/box", "/tmp", "/dev", "/dev/shm", "/proc", "/proc/sys"}
    devices = {f"/dev/{name}" for name in ("null", "zero", "full", "random", "urandom")}
    for mount in seen:
        point, root = mount["point"], mount["root"]
        assert "nosuid" in mount["options"], mount
        assert point in fixed | devices | {"/proc/sysrq-trigger"} or point.startswith("/etc/"), (
            mount
        )
        if point in devices:
            assert root == point.removeprefix("/dev"), mount
        elif point.startswith(("/etc/", "/usr", "/proc/")):
            assert root == point.removeprefix("/proc"), mount
        else:
            assert root == "/", mount
    assert not any(point.startswith("/sys") or point == "/old_root" for point in points)
    read_only = {m["point"] for m in seen if "ro" in m["options"]}
    assert {"/", "/usr", "/dev", "/proc/sys"} <= read_only
    assert not {"/box", "/tmp", "/dev/shm"} & read_only


async def test_recipe_only_box_tmp_and_shm_are_writable(run_box: Any, box: Path) -> None:
    """Writes fail under /, /usr, /etc, /dev and /proc, and succeed in /box, /tmp and /dev/shm."""
    seen = await _observe(run_box, box, "writes")
    assert seen == {
        "/probe": "EROFS",
        "/usr/probe": "EROFS",
        "/etc/probe": "EROFS",
        "/etc/passwd": "EROFS",
        "/box/probe": "ok",
        "/tmp/probe": "ok",
        "/dev/shm/probe": "ok",
        "/dev/probe": "EROFS",
        "/proc/probe": "ENOENT",
    }
    assert (box / "probe").exists()


def _host_has(name: str) -> bool:
    return any(os.path.exists(os.path.join(d, name)) for d in ("/tmp", "/dev/shm"))


async def test_recipe_tmp_and_shm_are_fresh_per_spawn(run_box: Any, box: Path) -> None:
    """A file left in /tmp or /dev/shm by one sandbox is gone in the next; the box persists."""
    marker = f"bean-{os.getpid()}"
    first = await _observe(run_box, box, "mark", marker)
    second = await _observe(run_box, box, "mark", marker)
    assert first == {f"/tmp/{marker}": False, f"/dev/shm/{marker}": False, f"/box/{marker}": False}
    assert second == {f"/tmp/{marker}": False, f"/dev/shm/{marker}": False, f"/box/{marker}": True}
    assert not _host_has(marker)


async def test_recipe_dev_holds_only_harmless_nodes(run_box: Any, box: Path) -> None:
    """/dev has null, zero, full, random, urandom (working), the fd links and shm; mknod fails."""
    seen = await _observe(run_box, box, "devices")
    assert seen == {
        "entries": {
            "fd": "link",
            "full": "char",
            "null": "char",
            "random": "char",
            "shm": "dir",
            "stderr": "link",
            "stdin": "link",
            "stdout": "link",
            "urandom": "char",
            "zero": "char",
        },
        "zero": "00000000",
        "urandom": 16,
        "random": 16,
        "full": "ENOSPC",
        "mknod": {"/tmp": "EPERM", "/box": "EPERM"},
        "missing": {
            "/dev/mem": "ENOENT",
            "/dev/tty": "ENOENT",
            "/dev/sda": "ENOENT",
            "/dev/ptmx": "ENOENT",
            "/dev/console": "ENOENT",
        },
    }


async def test_recipe_proc_is_fresh_and_sys_absent(run_box: Any, box: Path) -> None:
    """/proc is of the new PID and cgroup namespaces; /sys does not exist; cwd is the spec's."""
    seen = await _observe(run_box, box, "filesystems")
    assert seen["sys"] is False
    assert seen["proc_self_pid"] == "2"
    assert all(line.endswith(":/") for line in seen["cgroup"]), seen["cgroup"]
    assert seen["core_pattern_write"] in {"EROFS", "EACCES"}
    assert seen["cwd"] == "/box/submission"


async def test_recipe_network_is_loopback_only(run_box: Any, box: Path) -> None:
    """Only lo exists, it is up, nothing outside is reachable; the hostname is the spec's."""
    seen = await _observe(run_box, box, "network")
    assert seen == {
        "interfaces": ["lo"],
        "loopback": "ok",
        "outside": "ENETUNREACH",
        "hostname": "pistond-test",
    }


async def test_recipe_program_inherits_only_stdio(run_box: Any, box: Path) -> None:
    """The program holds fds 0-2 only: no report, control, fork-server or other descriptor."""
    seen = await _observe(run_box, box, "fds")
    assert sorted(seen) == ["0", "1", "2"]
    assert all(target.startswith("pipe:") for target in seen.values()), seen


async def test_recipe_network_option_shares_the_host_network(run_box: Any, box: Path) -> None:
    """With ``network`` the sandbox stays in the host's network namespace (and no other)."""
    shared = await _observe(run_box, box, "netns", network=True)
    private = await _observe(run_box, box, "netns")
    host = os.readlink("/proc/self/ns/net")
    assert shared == {"netns": host}
    assert private["netns"] != host


async def test_recipe_box_symlink_is_refused(
    run_box_python: Any, box: Path, tmp_path: Path
) -> None:
    """A box path that is a symlink is never followed: the spawn fails at the box bind.

    Fork server only: it opens the box by path. The native launcher is handed the box as a
    descriptor the daemon opened without following links (``test_box``)."""
    link = tmp_path / "box-link"
    link.symlink_to(box)
    ran = await run_box_python(("/bin/true",), box_path=str(link))
    assert ran.exit.setup_error is not None
    assert ran.exit.setup_error.startswith("mounts: bind source of box: ")
    assert str(tmp_path) not in ran.exit.setup_error


async def test_recipe_rlimits_are_lowered_as_set(run_box: Any, box: Path) -> None:
    """Each rlimit is the stage's ceiling (or the host's lower value), and hard limits hold."""
    limits = make_limits(
        max_open_files=77, max_file_size=123_456, max_processes=21, cpu_time_ms=1500
    )
    seen = await _observe(run_box, box, "rlimits", limits=limits)
    expected = {}
    for which, ceiling in rlimits.wanted_limits(limits).items():
        soft, hard = resource.getrlimit(which)
        new_hard = ceiling if hard == resource.RLIM_INFINITY else min(hard, ceiling)
        new_soft = new_hard if soft == resource.RLIM_INFINITY else min(soft, new_hard)
        if which in (resource.RLIMIT_CPU, resource.RLIMIT_CORE):
            new_soft = new_hard
        expected[which] = [new_soft, new_hard]
    names = {getattr(resource, "RLIMIT_" + name): name for name in seen["limits"]}
    assert {names[which]: value for which, value in expected.items()} == seen["limits"]
    assert seen["limits"]["NOFILE"] == [77, 77]
    assert seen["limits"]["FSIZE"] == [123_456, 123_456]
    assert seen["limits"]["CPU"] == [3, 3]
    assert seen["raise_hard"] == "ValueError"


async def test_recipe_environment_is_exactly_the_spec(run_box: Any) -> None:
    """The program's environment is the spec's env and nothing else."""
    env = {"PATH": "/usr/bin:/bin", "HOME": "/box", "PISTON_LANGUAGE": "sh", "ODD": "a=b c"}
    ran = await run_box(("/usr/bin/env", "-0"), env=env)
    assert ran.exit.exit_code == 0
    pairs = [item.split("=", 1) for item in ran.stdout.decode().split("\0") if item]
    assert dict(pairs) == env
    assert len(pairs) == len(env)


async def test_recipe_exec_failure_is_a_setup_error(run_box: Any) -> None:
    """A missing program is reported as setup error ``exec failed: ENOENT``, status 127."""
    ran = await run_box(("/box/no-such-program",))
    assert ran.exit.setup_error == "exec failed: ENOENT"
    assert ran.exit.exit_code == 127


async def test_recipe_missing_cwd_is_a_setup_error(run_box: Any) -> None:
    """A working directory that does not exist fails before exec, naming the step only."""
    ran = await run_box(("/bin/true",), cwd="/box/missing")
    assert ran.exit.setup_error == "working directory: No such file or directory"


async def test_recipe_reports_exit_code_and_signal(run_box: Any) -> None:
    """The program's exit code and terminating signal come back in the raw status."""
    exited = await run_box(("/bin/sh", "-c", "echo out; echo err >&2; exit 3"))
    assert (exited.exit.exit_code, exited.stdout, exited.stderr) == (3, b"out\n", b"err\n")
    killed = await run_box(("/bin/sh", "-c", "kill -SEGV $$"))
    assert killed.exit.term_signal == signal.SIGSEGV
    assert killed.exit.setup_error is None


async def test_recipe_stdin_reaches_the_program(run_box: Any) -> None:
    """Bytes written to the stdin descriptor are the program's stdin."""
    ran = await run_box(("/bin/cat",), stdin=b"hello\x00world")
    assert ran.stdout == b"hello\x00world"


async def test_recipe_signal_program_reaches_the_process_group(run_box: Any) -> None:
    """signal_program(SIGINT) is forwarded by PID 1 to the program's process group."""

    async def interrupt(process: SandboxProcess, stdout: bytearray) -> None:
        await wait_for_output(stdout, b"ready")
        process.signal_program(signal.SIGINT)

    ran = await run_box(("/bin/sh", "-c", "echo ready; exec sleep 30"), during=interrupt)
    assert ran.exit.term_signal == signal.SIGINT


def _box_uid_pids() -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == BOX_UID:
                    pids.append(int(entry))
            except FileNotFoundError:
                continue
    return pids


async def _no_box_processes_left() -> None:
    with trio.fail_after(3):
        while _box_uid_pids():  # noqa: ASYNC110 - the kernel has no event for this
            await trio.sleep(0.02)


SPAWNER = """
import os, signal, time
for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
    signal.signal(s, signal.SIG_IGN)
for _ in range(3):
    if os.fork() == 0:
        os.setsid()
        while True:
            time.sleep(1)
print("ready", flush=True)
while True:
    time.sleep(1)
"""


async def test_recipe_kill_ends_a_resisting_forking_program(run_box: Any) -> None:
    """kill() ends a program that ignores signals and forks session leaders: nothing survives."""

    async def kill(process: SandboxProcess, stdout: bytearray) -> None:
        await wait_for_output(stdout, b"ready")
        assert len(_box_uid_pids()) == 4
        process.kill()
        process.kill()

    ran = await run_box((PYTHON, "-c", SPAWNER), during=kill)
    assert ran.exit.program_status is None
    await _no_box_processes_left()


async def test_recipe_program_exit_ends_leftover_processes(run_box: Any) -> None:
    """When the program exits, PID 1 exits and its background children die with the namespace."""
    ran = await run_box(("/bin/sh", "-c", "sleep 60 & echo started"))
    assert ran.exit.exit_code == 0
    assert ran.stdout == b"started\n"
    await _no_box_processes_left()


async def test_recipe_runtime_root_is_bound_read_only(run_box: Any, tmp_path: Path) -> None:
    """A RootView path becomes a read-only /, with read-only and writable binds on top."""
    root = tmp_path / "root"
    for name in ("usr", "box", "tmp", "dev", "proc", "data", "shared"):
        (root / name).mkdir(parents=True)
    for name in ("bin", "lib", "lib64"):
        (root / name).symlink_to(f"usr/{name}")
    (root / "marker").write_text("runtime root\n")
    data = tmp_path / "data"
    data.mkdir()
    os.chown(data, BOX_UID, BOX_UID)
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "file").write_text("shared\n")
    view = RootView(
        path=str(root),
        binds=(
            Bind("/usr", "/usr"),
            Bind(str(data), "/data", writable=True),
            Bind(str(shared), "/shared"),
        ),
    )
    script = (
        "cat /marker /shared/file; echo x > /data/out && echo data-ok; "
        "touch /new 2>/dev/null || echo root-ro; touch /shared/new 2>/dev/null || echo shared-ro"
    )
    ran = await run_box(("/bin/sh", "-c", script), root=view)
    assert ran.exit.setup_error is None
    assert ran.stdout == b"runtime root\nshared\ndata-ok\nroot-ro\nshared-ro\n"
    assert (data / "out").read_text() == "x\n"
    assert sorted(p.name for p in root.iterdir()) == sorted(
        ["usr", "box", "tmp", "dev", "proc", "data", "shared", "bin", "lib", "lib64", "marker"]
    )


async def test_recipe_runtime_root_without_mount_points_fails_clearly(
    run_box: Any, tmp_path: Path
) -> None:
    """A runtime root lacking /box is a setup error naming the sandbox path, not the host's."""
    root = tmp_path / "bare"
    root.mkdir()
    ran = await run_box(("/bin/true",), root=RootView(path=str(root)))
    assert ran.exit.setup_error is not None
    assert ran.exit.setup_error.startswith("mounts: bind /box")
    assert str(tmp_path) not in ran.exit.setup_error
