"""The ordered child steps of DESIGN.md "Sandbox", run in the fork server's child.

Two processes take part; each step is its own function, called in DESIGN.md's order:

- **init**: the fork server forks it directly as PID 1 of a new PID namespace (the fork server
  unshares ``CLONE_NEWPID`` for its next child just before the fork), so the fork server holds
  its pidfd at once. Step 1: new session; the fork server writes PID 1's pid into the job's
  ``cgroup.procs`` files meanwhile (it pays the kernel's slow cgroup migration while PID 1
  builds the sandbox) and then sends one byte on the start pipe. Step 2: unshare the IPC and
  UTS namespaces, and enter the mount and network namespaces a helper prepared for this
  sandbox (never used before; without them, it unshares new ones and does step 3 in full).
  Step 3, the per-sandbox mounts; step 4, loopback and hostname. Then PID 1 waits for the
  start byte (nothing of the job has run yet), unshares the cgroup namespace (rooted at the
  job's group), forks the program and becomes the waiter of
  :func:`pistond.sandbox.namespaces.serve_as_init`.
- **program**: new session (its own process group, no controlling terminal); stdio; step 5,
  rlimits; step 6, the privilege drop; step 7, no_new_privs, seccomp, close other fds, exec
  with exactly the stage's environment.

Failures: a cgroup join the fork server cannot do kills PID 1 and fails the spawn. Any failed
step of PID 1 becomes a setup-error record on the report pipe (the program's exec failure
reaches PID 1 through a close-on-exec pipe: silence means exec succeeded). Error texts name
the step and the errno's text; they never hold host paths.

Timing mode (for ``bench/sandbox_overhead.py --breakdown``): when the fork server starts with
``PISTOND_SANDBOX_TIMING=1`` in its environment, every step records a CLOCK_MONOTONIC timestamp
named ``<process>.<step>``, and each process writes its stamps to the report pipe as a timings
record (the program just before it closes its descriptors and execs). Off, a step costs one
attribute test more.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import os
import signal
import sys
import time
import traceback
from typing import TYPE_CHECKING, Final, NoReturn, ParamSpec

import attrs

from pistond.sandbox import credentials, landlock, libc, mounts, namespaces, rlimits, seccomp
from pistond.sandbox.spec import root_plan

LANDLOCK_ABI = landlock.abi_version()
"""The kernel's Landlock ABI, read once in the fork server; 0 means no Landlock."""

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from pistond.sandbox.spec import SpawnSpec, StageSpec

P = ParamSpec("P")

INIT_NAME: Final = b"pistond-init"
SETUP_FAILED: Final = 127
"""Exit status of a setup or init process whose step failed."""
START: Final = b"1"
"""The start pipe's byte: PID 1 is in the job's cgroups."""
_CATCHABLE: Final = tuple(
    signum for signum in signal.valid_signals() if signum not in {signal.SIGKILL, signal.SIGSTOP}
)
_argv_area: list[object] = []
"""Keeps PID 1's replacement command line alive."""
_FD_LIMIT: Final = 2**31 - 1
TIMING_ENV: Final = "PISTOND_SANDBOX_TIMING"
"""Environment variable of the fork server that turns timing mode on (value ``1``)."""


@attrs.define
class _Timing:
    """Timing mode's state in this process (each fork inherits a copy)."""

    enabled: bool = False
    role: str = "forkserver"
    marks: list[tuple[str, int]] = attrs.Factory(list)


_timing = _Timing()


def enable_timing() -> None:
    """Turn timing mode on in this process and the sandboxes it forks from now on."""
    _timing.enabled = True


def timing_enabled() -> bool:
    """Whether timing mode is on."""
    return _timing.enabled


def mark(step: str) -> None:
    """Record that ``step`` of this process ended now (timing mode only)."""
    if _timing.enabled:
        _timing.marks.append(
            (f"{_timing.role}.{step}", time.clock_gettime_ns(time.CLOCK_MONOTONIC))
        )


def flush_marks(report_fd: int) -> None:
    """Write the marks of this process to the report pipe and forget them (timing mode only)."""
    if _timing.enabled and _timing.marks:
        namespaces.write_report(report_fd, namespaces.encode_timings(_timing.marks))
        _timing.marks.clear()


def _become(role: str) -> None:
    """Start a forked process: no garbage collection (it is short-lived, and a collection
    would copy the fork server's pages); in timing mode, name it in its marks."""
    gc.disable()
    if _timing.enabled:
        _timing.marks.clear()
        _timing.role = role
        mark("start")


@attrs.frozen
class ChildFds:
    """Descriptors the fork server's child receives (all copies it owns)."""

    stdin: int
    stdout: int
    stderr: int
    report: int
    """Write end of the report pipe (only PID 1 keeps it)."""
    control: int
    """Read end of the control pipe (only PID 1 keeps it)."""
    start: int
    """Read end of the start pipe: one byte once PID 1 is in the job's cgroups, else EOF."""
    netns: int = -1
    """A fresh network namespace (loopback up) made for this sandbox alone, or -1.

    Made by :func:`build_root_ahead` with the mount namespace ``mntns``."""
    mntns: int = -1
    """A mount namespace holding this sandbox's static root (:func:`build_root_ahead`), made
    for it alone, or -1."""


class SetupFailed(Exception):
    """Raised by a recipe step that failed; its text is safe to send to a client."""


def join_cgroups(pid: int, procs_files: Iterable[str]) -> None:
    """Step 1, done by the fork server: move ``pid`` (PID 1) into the job's cgroups.

    Raises:
        SetupFailed: a ``cgroup.procs`` file could not be written (the text names the step).
    """
    _step("cgroup join", _write_pid, pid, procs_files)


def run_init(spec: SpawnSpec, fds: ChildFds, bpf: bytes) -> NoReturn:
    """PID 1: steps 1-4, fork the program, then wait for it as the namespace's init."""
    _become("init")
    try:
        _step("new session", os.setsid)
        _step("reset signals", _reset_signals)
        _step("close fds", _close_fds_except, {0, 1, 2, *attrs.astuple(fds)} - {-1})
        _step(
            "namespaces",
            namespaces.enter_namespaces,
            network=spec.stage.network,
            netns_fd=fds.netns,
            mounts=fds.mntns < 0,
        )
        _step("init name", _rename_init)
        _step("mounts", mounts.build_root, spec, fds.mntns)
        _step("network", _configure_network, spec, fds.netns)
        _step("hostname", namespaces.set_hostname, spec.hostname)
        _step("cgroup join", _await_start, fds.start)
        _step("cgroup namespace", namespaces.enter_cgroup_namespace)
        exec_r, exec_w = os.pipe2(os.O_CLOEXEC)
        program = _step("fork program", os.fork)
    except BaseException as exc:  # every failure must reach the report pipe
        namespaces.write_report(fds.report, namespaces.encode_error(_describe(exc, log=True)))
        os._exit(SETUP_FAILED)
    if program == 0:
        _run_program(spec, fds, exec_w, bpf)
    try:
        # Only now: the program is born with default dispositions and no wakeup fd, so it has
        # no signal state to reset. An exit before this is found by the first reap.
        wakeup = namespaces.install_child_wakeup()
        for fd in (exec_w, fds.stdin, fds.stdout, fds.stderr):
            os.close(fd)
        failure = _read_all(exec_r)
        mark("exec seen")
        if failure:
            error = namespaces.encode_error(failure.decode("utf-8", "replace"))
            namespaces.write_report(fds.report, error)
        namespaces.serve_as_init(
            program,
            control_fd=fds.control,
            report_fd=fds.report,
            wakeup_fd=wakeup,
            on_exit=_on_program_exit if _timing.enabled else None,
        )
    except BaseException:  # init must exit, ending the namespace
        traceback.print_exc()
        os._exit(SETUP_FAILED)
    os._exit(0)


def build_root_ahead(spec: SpawnSpec, ready_fd: int, hold_fd: int) -> NoReturn:
    """A helper of the fork server: build ``spec``'s static root in a new mount namespace.

    Unless the sandbox shares the host's network, it also makes the sandbox's network
    namespace (loopback up): creating one is slow too.

    Writes :data:`START` on ``ready_fd`` once the root is built (the fork server then opens
    this process's mount namespace), and stays until ``hold_fd`` reaches EOF. Never returns;
    a failure just ends the process (the sandbox that would have used the namespace builds
    its own root and reports the error).
    """
    _become("builder")
    try:
        _reset_signals()
        _close_fds_except({0, 1, 2, ready_fd, hold_fd})
        if spec.stage.network:
            libc.unshare(libc.CLONE_NEWNS)
        else:
            libc.unshare(libc.CLONE_NEWNS | libc.CLONE_NEWNET)
            namespaces.bring_up_loopback()
        mounts.prepare_root(root_plan(spec))
        os.write(ready_fd, START)
        os.read(hold_fd, 1)
    except BaseException:  # the fork server sees EOF instead of START
        os._exit(SETUP_FAILED)
    os._exit(0)


def _run_program(spec: SpawnSpec, fds: ChildFds, exec_fd: int, bpf: bytes) -> NoReturn:
    """The program: session, stdio, steps 5-7, exec. Never returns."""
    _become("program")
    try:
        # Signals: PID 1 reset every disposition and the mask, and forked before it set any.
        _step("new session", os.setsid)
        _step("stdio", _attach_stdio, fds)
        _step("rlimits", rlimits.apply, spec.stage.limits)
        # --- privilege drop: from here on this process is the box uid, without capabilities ---
        _step("privilege drop", credentials.drop_privileges, spec.uid)
        _step("working directory", os.chdir, spec.stage.cwd)
        _step("no_new_privs", credentials.set_no_new_privs)
        if LANDLOCK_ABI:
            _step(
                "landlock",
                landlock.restrict,
                writable_paths(spec),
                DEVICE_WRITABLE,
                abi=LANDLOCK_ABI,
            )
        _step("seccomp", seccomp.install, bpf)
        flush_marks(fds.report)
        _close_fds_except({0, 1, 2, exec_fd})
        _exec(spec.stage)
    except BaseException as exc:  # reported to PID 1, then exit
        _write_all(exec_fd, _describe(exc, log=False).encode())
    os._exit(SETUP_FAILED)


DEVICE_WRITABLE: Final = ("/dev",)
"""Directories whose existing files (the null, zero and full nodes) the program may write."""


def writable_paths(spec: SpawnSpec) -> list[str]:
    """Where the program may create and write files (Landlock): its writable mounts."""
    binds = [bind.target for bind in spec.stage.root.binds if bind.writable]
    return ["/box", "/tmp", "/dev/shm", *binds]


def _step(name: str, fn: Callable[P, object], *args: P.args, **kwargs: P.kwargs) -> int:
    """Run one recipe step; an OSError becomes a SetupFailed naming the step."""
    try:
        result = fn(*args, **kwargs)
    except OSError as exc:
        raise SetupFailed(f"{name}: {_reason(exc)}") from None
    except ValueError as exc:
        raise SetupFailed(f"{name}: {exc}") from None
    if _timing.enabled:
        mark(name)
    return result if isinstance(result, int) else 0


def _reason(exc: OSError) -> str:
    """An OSError's text without its file names (they could be host paths)."""
    if exc.strerror:
        return exc.strerror
    return errno.errorcode.get(exc.errno or 0, "error")


def _describe(exc: BaseException, *, log: bool) -> str:
    if isinstance(exc, SetupFailed):
        return str(exc)
    if log:
        traceback.print_exception(exc, file=sys.stderr)
    return f"internal error ({type(exc).__name__})"


def _on_program_exit(report_fd: int) -> None:
    """Timing mode: PID 1 saw the program's exit; send its marks before the status."""
    mark("program reaped")
    flush_marks(report_fd)


def _write_pid(pid: int, procs_files: Iterable[str]) -> None:
    """Write ``pid`` into each ``cgroup.procs`` file (so it and all it forks later are in)."""
    data = str(pid).encode()
    for path in procs_files:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)


def _rename_init() -> None:
    """Where the kernel allows it, give PID 1 a command line naming nothing of the host.

    Its name (``comm``) it has from birth: the fork server takes that name around the fork.

    Replacing the command line needs CAP_SYS_RESOURCE, which some containers withhold; the
    program cannot see PID 1 anyway (``/proc`` is mounted ``hidepid=2``), so that part is a
    second layer only.
    """
    with contextlib.suppress(OSError):
        _argv_area.append(libc.set_argv_area(INIT_NAME))


def _configure_network(spec: SpawnSpec, netns_fd: int) -> None:
    """Step 4: in a private network namespace only ``lo`` exists; bring it up.

    A namespace from the fork server's pool has it up already.
    """
    if not spec.stage.network and netns_fd < 0:
        namespaces.bring_up_loopback()


def _await_start(start_fd: int) -> None:
    """Wait until the fork server has moved this process into the job's cgroups."""
    try:
        data = os.read(start_fd, 1)
    finally:
        os.close(start_fd)
    if data != START:
        raise OSError(errno.ECANCELED, "not done by the fork server")


def _reset_signals() -> None:
    """Default dispositions and an empty mask (Python ignores SIGPIPE and SIGXFSZ).

    Only the signals whose disposition is not already the default are reset: Python knows
    every disposition (it reads the inherited ones at start and tracks its own changes).
    """
    signal.set_wakeup_fd(-1)
    for signum in _CATCHABLE:
        if signal.getsignal(signum) != signal.SIG_DFL:
            with contextlib.suppress(OSError, ValueError):
                signal.signal(signum, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, ())


def _attach_stdio(fds: ChildFds) -> None:
    os.dup2(fds.stdin, 0)
    os.dup2(fds.stdout, 1)
    os.dup2(fds.stderr, 2)


def _close_fds_except(keep: set[int]) -> None:
    """Close every descriptor not in ``keep`` (``os.closerange`` is one close_range(2) call)."""
    low = 0
    for fd in sorted(keep):
        if fd > low:
            os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, _FD_LIMIT)


def _exec(stage: StageSpec) -> NoReturn:
    """Step 7's last act: exec the stage's argv with exactly its environment."""
    argv = list(stage.argv)
    env = dict(stage.env)
    try:
        if "/" in argv[0]:
            os.execve(argv[0], argv, env)
        else:
            os.execvpe(argv[0], argv, env)
    except OSError as exc:
        name = errno.errorcode.get(exc.errno or 0, "EIO")
        raise SetupFailed(f"exec failed: {name}") from None


def _read_all(fd: int) -> bytes:
    chunks = []
    try:
        while chunk := os.read(fd, 4096):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)


def _write_all(fd: int, data: bytes) -> None:
    with contextlib.suppress(OSError):
        while data:
            data = data[os.write(fd, data) :]
