"""The ordered child steps of DESIGN.md "Sandbox", run in the fork server's child.

Three processes take part; each step is its own function, called in DESIGN.md's order:

- **setup** (the fork server's direct child, in the host namespaces): step 1, new session and
  cgroup join; step 2, unshare the namespaces and fork PID 1; it tells the fork server PID 1's
  host pid over the handshake pipe and exits. PID 1 is reparented to the fork server, which is
  a child subreaper, so the fork server reaps it and holds its pidfd race-free (it opens the
  pidfd before it reaps anything).
- **init** (PID 1 of the new PID namespace, root inside the namespaces): step 3, mounts and
  pivot_root; step 4, loopback and hostname; then it forks the program and becomes the waiter
  of :func:`pistond.sandbox.namespaces.serve_as_init`.
- **program**: new session (its own process group, no controlling terminal); stdio; step 5,
  rlimits; step 6, the privilege drop; step 7, no_new_privs, seccomp, close other fds, exec
  with exactly the stage's environment.

Failures: before PID 1 exists, the error goes to the fork server over the handshake pipe and
the spawn fails. After, PID 1 writes a setup-error record to the report pipe (the program's
exec failure reaches PID 1 through a close-on-exec pipe: silence means exec succeeded). Error
texts name the step and the errno's text; they never hold host paths.

Timing mode (for ``bench/sandbox_overhead.py --breakdown``): when the fork server starts with
``PISTOND_SANDBOX_TIMING=1`` in its environment, every step records a CLOCK_MONOTONIC timestamp
named ``<process>.<step>``, and each process writes its stamps to the report pipe as a timings
record (the program just before it closes its descriptors and execs). Off, a step costs one
attribute test more.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import sys
import time
import traceback
from typing import TYPE_CHECKING, Final, NoReturn, ParamSpec

import attrs

from pistond.sandbox import credentials, libc, mounts, namespaces, rlimits, seccomp

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from pistond.sandbox.spec import SpawnSpec, StageSpec

P = ParamSpec("P")

INIT_NAME: Final = b"pistond-init"
SETUP_FAILED: Final = 127
"""Exit status of a setup or init process whose step failed."""
HANDSHAKE_PID: Final = b"P"
HANDSHAKE_ERROR: Final = b"E"
_UNCATCHABLE: Final = frozenset({signal.SIGKILL, signal.SIGSTOP})
_argv_area: list[object] = []
"""Keeps PID 1's replacement command line alive."""
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
    """Name this (new) process in its marks; the parent's marks are the parent's to send."""
    if _timing.enabled:
        _timing.marks.clear()
        _timing.role = role
        mark("start")


@attrs.frozen
class ChildFds:
    """Descriptors the fork server's child receives (all inheritable copies it owns)."""

    stdin: int
    stdout: int
    stderr: int
    report: int
    """Write end of the report pipe (only PID 1 keeps it)."""
    control: int
    """Read end of the control pipe (only PID 1 keeps it)."""
    handshake: int
    """Write end of the pipe to the fork server: PID 1's host pid or an early error."""


class SetupFailed(Exception):
    """Raised by a recipe step that failed; its text is safe to send to a client."""


def run_child(spec: SpawnSpec, fds: ChildFds, bpf: bytes) -> NoReturn:
    """The fork server's child: steps 1-2, then fork PID 1 and exit. Never returns."""
    _become("setup")
    try:
        _step("new session", os.setsid)
        _step("cgroup join", _join_cgroups, spec.cgroup_procs)
        _step("reset signals", _reset_signals)
        _step("close fds", _close_fds_except, {0, 1, 2, *attrs.astuple(fds)})
        _step("namespaces", namespaces.enter_namespaces, network=spec.stage.network)
        pid = _step("fork init", os.fork)
    except BaseException as exc:  # every failure must reach the fork server
        _write_all(fds.handshake, HANDSHAKE_ERROR + _describe(exc, log=True).encode())
        os._exit(SETUP_FAILED)
    if pid == 0:
        _run_init(spec, fds, bpf)
    flush_marks(fds.report)
    _write_all(fds.handshake, HANDSHAKE_PID + str(pid).encode())
    os._exit(0)


def decode_handshake(data: bytes) -> int:
    """PID 1's host pid from the handshake pipe's content.

    Raises:
        SetupFailed: the child reported an error, or died without a word.
    """
    if data.startswith(HANDSHAKE_PID) and data[1:].isdigit():
        return int(data[1:])
    if data.startswith(HANDSHAKE_ERROR):
        raise SetupFailed(data[1:].decode("utf-8", "replace"))
    raise SetupFailed("sandbox setup process died")


def _run_init(spec: SpawnSpec, fds: ChildFds, bpf: bytes) -> NoReturn:
    """PID 1: steps 3-4, fork the program, then wait for it as the namespace's init."""
    _become("init")
    try:
        os.close(fds.handshake)
        _step("init name", _rename_init)
        _step("mounts", mounts.build_root, spec)
        _step("network", _configure_network, spec)
        _step("hostname", namespaces.set_hostname, spec.hostname)
        wakeup = namespaces.install_child_wakeup()
        exec_r, exec_w = os.pipe2(os.O_CLOEXEC)
        program = _step("fork program", os.fork)
    except BaseException as exc:  # every failure must reach the report pipe
        namespaces.write_report(fds.report, namespaces.encode_error(_describe(exc, log=True)))
        os._exit(SETUP_FAILED)
    if program == 0:
        _run_program(spec, fds, exec_w, bpf)
    try:
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


def _run_program(spec: SpawnSpec, fds: ChildFds, exec_fd: int, bpf: bytes) -> NoReturn:
    """The program: session, stdio, steps 5-7, exec. Never returns."""
    _become("program")
    try:
        _step("reset signals", _reset_signals)
        _step("new session", os.setsid)
        _step("stdio", _attach_stdio, fds)
        _step("rlimits", rlimits.apply, spec.stage.limits)
        # --- privilege drop: from here on this process is the box uid, without capabilities ---
        _step("privilege drop", credentials.drop_privileges, spec.uid)
        _step("working directory", os.chdir, spec.stage.cwd)
        _step("no_new_privs", credentials.set_no_new_privs)
        _step("seccomp", seccomp.install, bpf)
        flush_marks(fds.report)
        _close_fds_except({0, 1, 2, exec_fd})
        _exec(spec.stage)
    except BaseException as exc:  # reported to PID 1, then exit
        _write_all(exec_fd, _describe(exc, log=False).encode())
    os._exit(SETUP_FAILED)


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


def _join_cgroups(procs_files: Iterable[str]) -> None:
    """Step 1: move this process (and so everything it forks) into the job's cgroups."""
    pid = str(os.getpid()).encode()
    for path in procs_files:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        try:
            os.write(fd, pid)
        finally:
            os.close(fd)


def _rename_init() -> None:
    """Give PID 1 a name, and where the kernel allows it a command line, naming nothing of the host.

    Replacing the command line needs CAP_SYS_RESOURCE, which some containers withhold; the
    program cannot see PID 1 anyway (``/proc`` is mounted ``hidepid=2``), so that part is a
    second layer only.
    """
    with open("/proc/self/comm", "wb") as file:
        file.write(INIT_NAME)
    with contextlib.suppress(OSError):
        _argv_area.append(libc.set_argv_area(INIT_NAME))


def _configure_network(spec: SpawnSpec) -> None:
    """Step 4: in a private network namespace only ``lo`` exists; bring it up."""
    if not spec.stage.network:
        namespaces.bring_up_loopback()


def _reset_signals() -> None:
    """Default dispositions and an empty mask (Python ignores SIGPIPE and SIGXFSZ)."""
    signal.set_wakeup_fd(-1)
    for signum in signal.valid_signals():
        if signum in _UNCATCHABLE:
            continue
        with contextlib.suppress(OSError, ValueError):
            signal.signal(signum, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def _attach_stdio(fds: ChildFds) -> None:
    os.dup2(fds.stdin, 0)
    os.dup2(fds.stdout, 1)
    os.dup2(fds.stderr, 2)


def _close_fds_except(keep: set[int]) -> None:
    """Close every descriptor not in ``keep``."""
    low = 0
    for fd in sorted(keep):
        if fd > low:
            os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, os.sysconf("SC_OPEN_MAX"))


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
