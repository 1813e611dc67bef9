"""The fork server: ``python -m pistond.sandbox.forkserver FD``, started by the daemon before trio.

The daemon starts it through :func:`launch_command`, which skips the heavy package
initialisers.

Single-threaded and small (every sandbox process is a fork of it, and forks and exits cost
in proportion to its memory): it runs without ``site``, imports the standard library, attrs and
the child-side sandbox modules, and has the seccomp filter compiled by a short-lived child, so
pyseccomp is never loaded in it. It never runs job code: each spawn forks
the sandbox's PID 1 directly into a new PID namespace, and the child builds the sandbox
(:mod:`pistond.sandbox.recipe`) while the fork server moves it into the job's cgroups, tells it
to go on, and answers the daemon with its pidfd. After each spawn it has a helper
build the next sandbox's static root (same root view, uid, hostname and network) in a mount
namespace of its own, with a fresh network namespace (loopback up) beside it, so the next
spawn enters both instead of paying for their creation, the mounts and the old root's detach
(see :func:`pistond.sandbox.recipe.build_root_ahead`). A prepared
namespace is used by one sandbox only, and dropped unused after READY_ROOT_MAX_AGE.

Protocol over the inherited ``SOCK_SEQPACKET`` socket ``FD`` (one JSON object per message):

- request: ``{"id": int, "spec": <spec_to_wire(SpawnSpec)>}`` with five descriptors attached
  (SCM_RIGHTS): stdin, stdout, stderr, report pipe write end, control pipe read end.
- reply: ``{"id": int, "pid": int}`` with PID 1's pidfd attached, or ``{"id": int, "error": str}``.
- event: ``{"exited": pid, "status": raw_wait_status}`` when a sandbox's PID 1 is reaped
  (best effort: dropped if the daemon is not reading).

Every sandbox's PID 1 is its child; it reaps them (it is also a child subreaper). It survives
crashing children and exits when the daemon's end of the socket closes (or on SIGTERM),
SIGKILLing every sandbox still alive.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import select
import signal
import socket
import sys
import time
from typing import Any, Final

import attrs

from pistond.sandbox import credentials, libc, mounts, recipe, seccomp
from pistond.sandbox.spec import RootPlan, SpawnSpec, spec_from_wire

logger = logging.getLogger(__name__)

MAX_MESSAGE: Final = 4 * 1024 * 1024
"""Largest request accepted (an exec cannot take more argv and environment anyway)."""
SOCKET_BUFFER: Final = 2 * MAX_MESSAGE
FD_COUNT: Final = 5
_SO_SNDBUFFORCE: Final = 32
_SO_RCVBUFFORCE: Final = 33
READY_ROOTS: Final = 32
"""Prepared mount namespaces (and helpers building one) at most: each keeps a sleeping helper
process (a few MiB of its own memory) until used or expired."""
READY_DEPTH: Final = 2
"""Prepared mount namespaces (and helpers building one) per root key: two, so that back-to-back
stages find one ready while the next is still being built."""
READY_ROOT_MAX_AGE: Final = 10.0
"""Seconds a prepared mount namespace may wait for its sandbox (host files may change)."""


@attrs.define(eq=False)
class _Builder:
    """A helper process building a static root ahead (see recipe.build_root_ahead)."""

    key: RootPlan
    network: bool
    """The sandbox shares the host's network (no network namespace is made)."""
    pid: int
    ready: int
    """Read end: START once built, EOF if it failed."""
    hold: int
    """Write end: closing it lets the helper exit."""
    pidfd: int
    """Opened before the helper can be reaped: proves its pid was not reused (see _on_builder)."""


@attrs.frozen
class _ReadyRoot:
    """A mount namespace holding a built static root, not used yet."""

    key: RootPlan
    fd: int
    """The mount namespace."""
    netns: int
    """The network namespace made with it (-1 for a sandbox on the host's network)."""
    made_at: float
    hold: int
    """Its builder's hold pipe: the builder stays in the namespace until this is closed, so
    the namespace's teardown (slow: an RCU grace period) happens in the builder's exit, not
    in the exit of the sandbox's PID 1."""
    builder_pid: int

    def close(self) -> None:
        """Drop the namespaces unused."""
        for fd in (self.fd, self.netns, self.hold):
            if fd >= 0:
                os.close(fd)


def configure_socket(sock: socket.socket) -> None:
    """Buffers big enough for the largest request (forced: both ends run as root)."""
    for force, plain in ((_SO_SNDBUFFORCE, socket.SO_SNDBUF), (_SO_RCVBUFFORCE, socket.SO_RCVBUF)):
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, SOCKET_BUFFER)
        except PermissionError:
            sock.setsockopt(socket.SOL_SOCKET, plain, SOCKET_BUFFER)


class SpawnFailed(Exception):
    """Raised by the fork server's spawn when no sandbox could be started; sent as the error."""


class ForkServer:
    """The fork server's state: its socket, the compiled filter, the live sandboxes."""

    def __init__(self, sock: socket.socket, bpf: bytes) -> None:
        self.sock = sock
        self.bpf = bpf
        self.live: set[int] = set()
        self.stopping = False
        self.own_pidns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        self.ready_roots: list[_ReadyRoot] = []
        """Oldest first."""
        self.builders: dict[int, _Builder] = {}
        self.unpreparable: dict[RootPlan, float] = {}
        """Keys whose root a builder failed to make, and when (retried after the max age)."""
        self.next_root: SpawnSpec | None = None
        self.holds: dict[int, tuple[int, int]] = {}
        """PID 1 of a sandbox on a prepared root -> its builder's hold pipe and pid."""
        self.comm_fd = os.open("/proc/thread-self/comm", os.O_RDWR | os.O_CLOEXEC)
        self.comm = os.read(self.comm_fd, 64).rstrip(b"\n") or b"pistond-forkserver"

    def serve(self) -> None:
        """Answer requests until the daemon's end closes or SIGTERM arrives."""
        libc.prctl(libc.PR_SET_CHILD_SUBREAPER, 1)
        wake_r, wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGCHLD, _noop)
        signal.signal(signal.SIGTERM, _noop)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        try:
            while not self.stopping:
                watched = [self.sock.fileno(), wake_r, *self.builders]
                readable, _, _ = select.select(watched, [], [], self._drop_stale_roots())
                for fd in readable:
                    if fd in self.builders:
                        self._on_builder(self.builders.pop(fd))
                if wake_r in readable:
                    self._on_signals(wake_r)
                if self.sock.fileno() in readable and not self.stopping:
                    self._on_message()
        finally:
            self._kill_all()

    def _drop_stale_roots(self) -> float | None:
        """Drop prepared roots older than the max age; seconds until the next one is, or None."""
        now = time.monotonic()
        while self.ready_roots and now - self.ready_roots[0].made_at > READY_ROOT_MAX_AGE:
            self.ready_roots.pop(0).close()
        if not self.ready_roots:
            return None
        return max(0.0, self.ready_roots[0].made_at + READY_ROOT_MAX_AGE - now) + 0.01

    def _take_ready_root(self, key: RootPlan) -> _ReadyRoot | None:
        """The oldest prepared mount namespace for ``key`` (now out of the pool), or None."""
        self._drop_stale_roots()
        for index, ready in enumerate(self.ready_roots):
            if ready.key == key:
                return self.ready_roots.pop(index)
        return None

    def _prepare_root(self, spec: SpawnSpec, key: RootPlan) -> None:
        """Have helpers build static roots for the next sandboxes like ``spec`` (READY_DEPTH)."""
        now = time.monotonic()
        for failed in [k for k, at in self.unpreparable.items() if now - at >= READY_ROOT_MAX_AGE]:
            del self.unpreparable[failed]
        if key in self.unpreparable:
            return
        have = sum(ready.key == key for ready in self.ready_roots)
        have += sum(builder.key == key for builder in self.builders.values())
        for _ in range(READY_DEPTH - have):
            if len(self.ready_roots) + len(self.builders) >= READY_ROOTS:
                if not self.ready_roots:
                    return
                self.ready_roots.pop(0).close()
            if not self._start_builder(spec, key):
                return

    def _start_builder(self, spec: SpawnSpec, key: RootPlan) -> bool:
        """Fork a helper building ``spec``'s static root; whether it started."""
        ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
        hold_r, hold_w = os.pipe2(os.O_CLOEXEC)
        try:
            pid = os.fork()
            if pid == 0:
                try:
                    recipe.build_root_ahead(spec, ready_w, hold_r)
                finally:
                    os._exit(recipe.SETUP_FAILED)
        except OSError as exc:
            logger.warning("cannot fork a root builder: %s", exc.strerror)
            os.close(ready_r)
            os.close(hold_w)
            return False
        finally:
            os.close(ready_w)
            os.close(hold_r)
        # No reap can run before this line, so the pidfd is the builder's own.
        pidfd = os.pidfd_open(pid)
        self.builders[ready_r] = _Builder(
            key=key, network=spec.stage.network, pid=pid, ready=ready_r, hold=hold_w, pidfd=pidfd
        )
        return True

    def _on_builder(self, builder: _Builder) -> None:
        """A root builder is done: keep its mount namespace, or remember that it failed."""
        try:
            done = os.read(builder.ready, 1) == recipe.START
            if done:
                fd = os.open(f"/proc/{builder.pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
                netns = -1
                if not builder.network:
                    try:
                        netns = os.open(f"/proc/{builder.pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
                    except OSError:
                        os.close(fd)
                        raise
                try:
                    # The helper is alive (its namespaces were just opened) and unreaped, so
                    # /proc/<pid> was its own: never a reused pid's, never a live sandbox's.
                    signal.pidfd_send_signal(builder.pidfd, 0)
                except OSError:
                    for namespace in (fd, netns):
                        if namespace >= 0:
                            os.close(namespace)
                    raise
                self.ready_roots.append(
                    _ReadyRoot(
                        key=builder.key,
                        fd=fd,
                        netns=netns,
                        made_at=time.monotonic(),
                        hold=builder.hold,
                        builder_pid=builder.pid,
                    )
                )
                return
            self.unpreparable[builder.key] = time.monotonic()
        except OSError as exc:
            logger.warning("root builder %d: %s", builder.pid, exc.strerror)
        finally:
            os.close(builder.ready)
            os.close(builder.pidfd)
        os.close(builder.hold)

    def _on_signals(self, wake_r: int) -> None:
        with contextlib.suppress(BlockingIOError):
            if signal.SIGTERM in os.read(wake_r, 4096):
                self.stopping = True
        self._reap()

    def _on_message(self) -> None:
        try:
            data, fds, flags, _ = socket.recv_fds(self.sock, MAX_MESSAGE, FD_COUNT + 1)
        except ConnectionResetError:
            data, fds, flags = b"", [], 0
        except OSError:
            logger.exception("fork server socket failed")
            self.stopping = True
            return
        if not data and not fds:
            self.stopping = True
            return
        recipe.mark("request received")
        try:
            if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
                logger.error("dropped a truncated spawn request")
                return
            self._answer(data, fds)
        finally:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
        if self.next_root is not None:
            spec, self.next_root = self.next_root, None
            # Stopping may mean the PID namespace could not be restored after the spawn: a
            # root builder forked now would land in the job's PID namespace.
            if not self.stopping:
                self._prepare_root(spec, mounts.root_key(spec))

    def _answer(self, data: bytes, fds: list[int]) -> None:
        try:
            request = json.loads(data)
            request_id = int(request["id"])
        except (ValueError, KeyError, TypeError):
            logger.error("dropped a malformed spawn request")
            return
        try:
            if len(fds) != FD_COUNT:
                raise SpawnFailed(f"expected {FD_COUNT} descriptors, got {len(fds)}")
            spec = spec_from_wire(request["spec"])
            pid, pidfd = self._spawn(spec, fds)
        except SpawnFailed as exc:
            self._send({"id": request_id, "error": str(exc)})
            return
        except (ValueError, KeyError, TypeError):
            logger.exception("bad spawn spec in request %d", request_id)
            self._send({"id": request_id, "error": "malformed spawn spec"})
            return
        except OSError as exc:
            logger.error("spawn %d failed: %s", request_id, exc)
            self._send({"id": request_id, "error": f"fork server: {exc.strerror}"})
            return
        try:
            self.live.add(pid)
            self._send({"id": request_id, "pid": pid}, [pidfd])
        finally:
            os.close(pidfd)
        if recipe.timing_enabled():
            recipe.mark("replied")
            recipe.flush_marks(fds[3])
        self.next_root = spec

    def _spawn(self, spec: SpawnSpec, fds: list[int]) -> tuple[int, int]:
        """Fork PID 1 of a new sandbox, move it into its cgroups, let it go on; pid and pidfd."""
        if spec.uid <= 0:
            raise SpawnFailed("the box uid must not be 0")
        if not spec.stage.argv:
            raise SpawnFailed("empty argv")
        ready = self._take_ready_root(mounts.root_key(spec))
        mntns = -1 if ready is None else ready.fd
        netns = -1 if ready is None else ready.netns
        start_r = start_w = -1
        try:
            start_r, start_w = os.pipe2(os.O_CLOEXEC)
            stdin, stdout, stderr, report, control = fds
            child_fds = recipe.ChildFds(
                stdin, stdout, stderr, report, control, start_r, netns, mntns
            )
            child = self._fork_init(spec, child_fds)
        except BaseException:
            if start_w >= 0:
                os.close(start_w)
            if ready is not None:
                os.close(ready.hold)
            raise
        finally:
            if start_r >= 0:
                os.close(start_r)
            for fd in (netns, mntns):
                if fd >= 0:
                    os.close(fd)
        if ready is not None:
            self.holds[child] = (ready.hold, ready.builder_pid)
        recipe.mark("forked")
        try:
            pidfd = os.pidfd_open(child)
        except BaseException:
            os.close(start_w)
            os.kill(child, signal.SIGKILL)
            raise
        try:
            try:
                recipe.join_cgroups(child, spec.cgroup_procs)
            except recipe.SetupFailed as exc:
                raise SpawnFailed(str(exc)) from None
            recipe.mark("cgroup joined")
            # A PID 1 that failed already (its report says why) no longer reads the pipe.
            with contextlib.suppress(BrokenPipeError):
                os.write(start_w, recipe.START)
        except BaseException:
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            os.close(pidfd)
            raise
        finally:
            os.close(start_w)
        # PID 1 is not reaped before this point: only _reap() reaps, and it has not run.
        return child, pidfd

    def _fork_init(self, spec: SpawnSpec, child_fds: recipe.ChildFds) -> int:
        """Fork the sandbox's PID 1 into a new PID namespace (this process stays in its own)."""
        try:
            libc.unshare(libc.CLONE_NEWPID)
        except OSError as exc:
            raise SpawnFailed(f"namespaces: {exc.strerror}") from None
        try:
            recipe.mark("parsed")
            # PID 1 is born with its name (the daemon may look before it runs).
            os.write(self.comm_fd, recipe.INIT_NAME)
            child = os.fork()
            if child == 0:
                try:
                    recipe.run_init(spec, child_fds, self.bpf)
                finally:
                    os._exit(recipe.SETUP_FAILED)
        finally:
            # The next fork would join the same PID namespace: back to this process's own.
            try:
                libc.setns(self.own_pidns, libc.CLONE_NEWPID)
            except OSError:
                logger.exception("cannot return to the fork server's PID namespace; stopping")
                self.stopping = True
            os.write(self.comm_fd, self.comm)
        return child

    def _send(self, message: dict[str, Any], fds: list[int] | None = None) -> None:
        payload = json.dumps(message).encode()
        try:
            socket.send_fds(self.sock, [payload], fds or [])
        except OSError:
            logger.exception("cannot reply to the daemon")
            self.stopping = True

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            hold = self.holds.pop(pid, None)
            if hold is not None:
                os.close(hold[0])
            if pid in self.live:
                self.live.discard(pid)
                payload = json.dumps({"exited": pid, "status": status}).encode()
                with contextlib.suppress(OSError):
                    self.sock.send(payload, socket.MSG_DONTWAIT)

    def _kill_all(self) -> None:
        """SIGKILL every live sandbox (ending its namespace) and reap it."""
        for pid in self.live:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        for pid in self.live:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        self.live.clear()
        builders = [ready.builder_pid for ready in self.ready_roots]
        for ready in self.ready_roots:
            ready.close()
        self.ready_roots.clear()
        for hold, builder_pid in self.holds.values():
            os.close(hold)
            builders.append(builder_pid)
        self.holds.clear()
        for builder_pid in builders:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(builder_pid, 0)
        for pending in self.builders.values():
            os.close(pending.ready)
            os.close(pending.hold)
            os.close(pending.pidfd)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pending.pid, 0)
        self.builders.clear()


_BOOTSTRAP: Final = """\
import sys, types
package, module, *rest = sys.argv[1:]
count = int(rest[0])
paths, args = rest[1 : 1 + count], rest[1 + count :]
sys.path.extend(paths)
for name, path in (("pistond", package), ("pistond.sandbox", package + "/sandbox")):
    stub = types.ModuleType(name)
    stub.__path__ = [path]
    sys.modules[name] = stub
sys.argv = [module, *args]
main = __import__(module, fromlist=["main"]).main
sys.exit(main())
"""
_LIBRARIES: Final = ("attrs", "attr", "pyseccomp")
"""Third-party modules the fork server (or its filter-compiling child) imports."""


def launch_command(executable: str, fd: int) -> list[str]:
    """The argv that starts a fork server serving on ``fd`` (see :func:`light_command`)."""
    return light_command(executable, "pistond.sandbox.forkserver", str(fd))


def light_command(executable: str, module: str, *args: str) -> list[str]:
    """The argv that runs ``module.main()`` of ``pistond.sandbox`` in a light interpreter.

    It loads the module without running the ``pistond`` and ``pistond.sandbox`` package
    initialisers, which pull in trio, pluggy and the daemon side, and without ``site`` (its
    path hooks and ``.pth`` files): only the directories of the few libraries it needs are put
    on its path. The fork server (and every sandbox process, a fork of it) and the template
    builders hold only the standard library, attrs and the child-side modules.
    ``python -m pistond.sandbox.forkserver FD`` also works, just heavier.
    """
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    paths = _library_paths()
    return [
        executable,
        "-P",
        "-S",
        "-c",
        _BOOTSTRAP,
        package,
        module,
        str(len(paths)),
        *paths,
        *args,
    ]


def _library_paths() -> list[str]:
    """The ``sys.path`` entries holding :data:`_LIBRARIES`, as this interpreter finds them."""
    import importlib.util  # noqa: PLC0415 - daemon side only: the fork server never needs it

    paths: list[str] = []
    for name in _LIBRARIES:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            continue
        location = os.path.dirname(spec.origin)
        if spec.submodule_search_locations:
            location = os.path.dirname(location)
        if location not in paths:
            paths.append(location)
    return paths


def _compile_filter() -> bytes:
    """The seccomp filter, compiled in a child (so libseccomp's memory stays out of this one).

    Raises:
        RuntimeError: the child could not compile it.
    """
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            os.close(read_end)
            data = seccomp.build_filter()
            while data:
                data = data[os.write(write_end, data) :]
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    chunks = []
    try:
        while chunk := os.read(read_end, 65536):
            chunks.append(chunk)
    finally:
        os.close(read_end)
        _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0 or not chunks:
        raise RuntimeError("the seccomp filter could not be compiled")
    return b"".join(chunks)


def _noop(_signum: int, _frame: object) -> None:
    """Signal handler: the wakeup fd carries the signal."""


def main(argv: list[str] | None = None) -> int:
    """Entry point: serve on the socket whose fd number is the only argument."""
    args = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="pistond-forkserver: %(levelname)s %(message)s")
    if len(args) != 1 or not args[0].isdigit():
        logger.error("usage: python -m pistond.sandbox.forkserver FD")
        return 2
    sock = socket.socket(fileno=int(args[0]))
    os.set_inheritable(sock.fileno(), False)
    configure_socket(sock)
    if os.environ.get(recipe.TIMING_ENV) == "1":
        recipe.enable_timing()
    server = ForkServer(sock, _compile_filter())
    credentials.prepare()
    # Everything allocated so far lives as long as the server: keep the collector off it, so
    # sandboxes (forks that run briefly) copy fewer pages.
    gc.freeze()
    server.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
